#pragma once
// Turns generated token ids into text one id at a time, emitting only complete UTF-8: a
// character split over several byte tokens is held back until its last byte arrives. What it
// emits over a sequence, finish() included, equals Tokenizer::decode of the whole sequence.
#include <cstdint>
#include <span>
#include <string>

#include "tokenizer/tokenizer.h"

namespace kiln {

class TextStreamDecoder {
 public:
  explicit TextStreamDecoder(const Tokenizer& tokenizer) : tokenizer_(&tokenizer) {}

  // Takes in ids whose text the reader has already seen (the prompt), emitting nothing, so that
  // generated text continues it: without this the first generated token would lose its leading
  // space, as the start of a sentencepiece text does.
  void prime(std::span<const std::int32_t> context);
  // The text that token `id` completes (often empty while a character is still partial).
  std::string push(std::int32_t id);
  // Ends the sequence: whatever is still held back, as U+FFFD per incomplete byte.
  std::string finish();
  // Starts a new sequence.
  void reset() { state_ = DecodeState{}; }
  // Bytes held back, waiting for the rest of a character.
  std::size_t pending_bytes() const { return state_.pending_bytes.size(); }

 private:
  const Tokenizer* tokenizer_;
  DecodeState state_;
};

}  // namespace kiln
