#include "tokenizer/text_stream_decoder.h"

namespace kiln {

void TextStreamDecoder::prime(std::span<const std::int32_t> context) {
  std::string seen;
  for (std::int32_t id : context) tokenizer_->decode_token(id, state_, seen);
}

std::string TextStreamDecoder::push(std::int32_t id) {
  std::string text;
  tokenizer_->decode_token(id, state_, text);
  return text;
}

std::string TextStreamDecoder::finish() {
  std::string text;
  tokenizer_->decode_finish(state_, text);
  state_ = DecodeState{};
  return text;
}

}  // namespace kiln
