// Feeds arbitrary bytes to the structured-output readers a client's request reaches: the first
// byte picks GBNF text, a JSON Schema, or a regular expression; the rest is the input. A refusal
// must be a kiln::Error. What the converters write must always parse as GBNF (a converter that
// emits a grammar the parser refuses is a bug), and every grammar that parses is then walked
// over a small byte-level vocabulary: the fast mask must equal the token-by-token reference at
// each step, and the walk must stay within the matcher's limits.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "grammar/gbnf.h"
#include "grammar/grammar_matcher.h"
#include "grammar/json_schema_grammar.h"

namespace {

// Single bytes of JSON's alphabet and a few multi-byte tokens, so that walks get somewhere.
std::shared_ptr<const kiln::grammar::TokenVocabulary> vocabulary() {
  static const auto vocab = [] {
    std::vector<std::string> tokens;
    for (const char* t : {"{", "}", "[", "]", "\"", ":", ",", " ", "\n", "a", "b", "0", "1", "9", "-", ".", "e", "true",
                          "false", "null", "\"a\"", "{\"", "\":", "ab", "é", "\\", "x", "Z"})
      tokens.emplace_back(t);
    tokens.emplace_back();  // a control token: no bytes
    return kiln::grammar::TokenVocabulary::make(std::move(tokens), {static_cast<std::int32_t>(28)});
  }();
  return vocab;
}

void walk(const std::string& gbnf, std::uint32_t seed) {
  kiln::grammar::GbnfLimits limits;
  limits.max_elements = 1 << 14;  // small grammars keep each input fast
  kiln::grammar::Grammar g = kiln::grammar::parse_gbnf(gbnf, limits);
  auto compiled = std::make_shared<const kiln::grammar::CompiledGrammar>(std::move(g), vocabulary(), 1 << 20);
  kiln::grammar::MatcherLimits ml;
  ml.max_stacks = 256;
  ml.max_nodes = 1 << 16;
  kiln::grammar::GrammarMatcher m(compiled, ml);
  std::vector<std::uint32_t> fast(compiled->mask_words()), ref(compiled->mask_words());
  for (int step = 0; step < 16; ++step) {
    m.fill_mask(fast);
    m.fill_mask_reference(ref);
    if (fast != ref) __builtin_trap();
    std::vector<std::int32_t> allowed;
    for (std::int32_t id = 0; id < compiled->n_vocab(); ++id)
      if (fast[static_cast<std::size_t>(id) / 32] >> (id % 32) & 1) allowed.push_back(id);
    if (allowed.empty()) break;
    seed = seed * 1664525u + 1013904223u;
    const std::int32_t pick = allowed[seed % allowed.size()];
    if (!m.accept(pick)) __builtin_trap();  // the mask allowed it
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string gbnf;
  bool converted = false;
  try {
    switch (data[0] % 3) {
      case 0:
        gbnf = text;
        break;
      case 1: {
        const nlohmann::ordered_json schema = nlohmann::ordered_json::parse(text, nullptr, false);
        if (schema.is_discarded()) return 0;
        gbnf = kiln::grammar::json_schema_to_gbnf(schema);
        converted = true;
        break;
      }
      default:
        gbnf = kiln::grammar::regex_to_gbnf(text);
        converted = true;
        break;
    }
  } catch (const kiln::Error&) {
    return 0;
  }
  try {
    walk(gbnf, size);
  } catch (const kiln::Error& e) {
    // A converter's grammar may be refused only for its size (a schema that expands past the
    // fuzz limits) or for ambiguity the matcher bounds, never for its syntax.
    const std::string what = e.what();
    bool limit = false;
    for (const char* word : {"more than", "limit", "deeper than", "too ambiguous", "at most"})
      limit = limit || what.find(word) != std::string::npos;
    if (converted && !limit) {
      std::fprintf(stderr, "converter output refused: %s\n%s\n", what.c_str(), gbnf.c_str());
      __builtin_trap();
    }
  }
  return 0;
}
