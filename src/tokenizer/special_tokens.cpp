#include "tokenizer/special_tokens.h"

#include <algorithm>

namespace kiln {

SpecialTokenSplitter::SpecialTokenSplitter(const Vocab& vocab, std::initializer_list<TokenType> types)
    : vocab_(&vocab) {
  for (std::int32_t id = 0; id < vocab.size(); ++id) {
    const bool wanted = std::find(types.begin(), types.end(), vocab.type(id)) != types.end();
    if (wanted && !vocab.tokens[static_cast<std::size_t>(id)].empty()) specials_.push_back(id);
  }
  std::stable_sort(specials_.begin(), specials_.end(), [&](std::int32_t a, std::int32_t b) {
    return vocab.tokens[static_cast<std::size_t>(a)].size() > vocab.tokens[static_cast<std::size_t>(b)].size();
  });
}

std::vector<TextFragment> SpecialTokenSplitter::split(std::string_view text) const {
  std::vector<TextFragment> fragments;
  if (!text.empty()) fragments.push_back({text, -1});
  std::vector<TextFragment> next;
  for (std::int32_t id : specials_) {
    const std::string_view special = vocab_->tokens[static_cast<std::size_t>(id)];
    next.clear();
    for (const TextFragment& f : fragments) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      std::string_view rest = f.text;
      for (std::size_t at; (at = rest.find(special)) != std::string_view::npos;) {
        if (at > 0) next.push_back({rest.substr(0, at), -1});
        next.push_back({special, id});
        rest.remove_prefix(at + special.size());
      }
      if (!rest.empty()) next.push_back({rest, -1});
    }
    fragments.swap(next);
  }
  return fragments;
}

}  // namespace kiln
