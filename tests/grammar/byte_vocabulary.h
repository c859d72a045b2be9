#pragma once
// A vocabulary of the 256 single bytes plus one end token (id 256), so that grammar tests can
// ask whether a whole string matches, independent of any real tokenizer.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "grammar/gbnf.h"
#include "grammar/grammar_matcher.h"

namespace kiln::grammar::test {

inline std::shared_ptr<const TokenVocabulary> byte_vocabulary() {
  static const std::shared_ptr<const TokenVocabulary> v = [] {
    std::vector<std::string> bytes(257);
    for (int b = 0; b < 256; ++b) bytes[static_cast<std::size_t>(b)] = std::string(1, static_cast<char>(b));
    return TokenVocabulary::make(std::move(bytes), {256});
  }();
  return v;
}

inline std::shared_ptr<const CompiledGrammar> compile_bytes(std::string_view gbnf) {
  return std::make_shared<const CompiledGrammar>(parse_gbnf(gbnf), byte_vocabulary());
}

// True when `text` is a complete sentence of the grammar.
inline bool matches(const std::shared_ptr<const CompiledGrammar>& g, std::string_view text) {
  GrammarMatcher m(g);
  return m.accept_bytes(text) && m.can_end();
}

inline bool matches(std::string_view gbnf, std::string_view text) { return matches(compile_bytes(gbnf), text); }

}  // namespace kiln::grammar::test
