#pragma once
// Splitting text on the written form of special tokens ("<s>", "<|eot_id|>", ...) so that the
// prompt text can name them, as llama.cpp does when asked to parse specials.
#include <cstdint>
#include <initializer_list>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace kiln {

// A piece of the input: either raw text to encode (token == -1) or one special token.
struct TextFragment {
  std::string_view text;
  std::int32_t token = -1;
};

class SpecialTokenSplitter {
 public:
  // Splits on the texts of the tokens of `vocab` whose type is one of `types`. Keeps a pointer
  // to `vocab`, which must outlive the splitter.
  SpecialTokenSplitter(const Vocab& vocab, std::initializer_list<TokenType> types);

  // Longer specials are matched first, each leftmost-first over what remains (llama.cpp's
  // order), so a special that contains another wins. Returns one raw fragment when nothing
  // matches; no fragment is empty.
  std::vector<TextFragment> split(std::string_view text) const;

 private:
  const Vocab* vocab_;
  std::vector<std::int32_t> specials_;  // longest text first
};

}  // namespace kiln
