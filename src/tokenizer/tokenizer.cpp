#include "tokenizer/tokenizer.h"

#include "core/error.h"

namespace kiln {

std::string Tokenizer::decode(std::span<const std::int32_t> ids) const {
  DecodeState state;
  std::string text;
  for (std::int32_t id : ids) decode_token(id, state, text);
  decode_finish(state, text);
  return text;
}

void Tokenizer::check_id(std::int32_t id) const {
  KILN_CHECK(vocab_.contains(id), "token id {} is out of range (vocabulary has {} tokens)", id, vocab_.size());
}

}  // namespace kiln
