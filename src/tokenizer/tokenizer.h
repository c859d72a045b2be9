#pragma once
// The tokenizer interface every vocabulary kind implements (SentencePiece BPE now, byte-level
// BPE next): text -> ids, ids -> text, and the per-token decoding step that the streaming
// decoder and decode() share, so that decoding one id at a time equals decoding all at once.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace kiln {

// What decoding has carried over from earlier tokens of the same sequence.
struct DecodeState {
  std::string pending_bytes;  // bytes of a UTF-8 character not yet complete
  bool text_empty = true;     // nothing has been emitted yet
  // SentencePiece drops the space of the dummy prefix from the first token that starts with
  // U+2581; these track whether that is still to come (see SpmTokenizer::decode_token).
  bool expect_leading_space = true;
  bool leading_space_taken = false;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Implementations may keep pointers into their own vocabulary.
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Text to ids. `add_bos` prepends the BOS id (callers usually pass vocab().add_bos);
  // `parse_special` turns the texts of control tokens (such as "<s>") into their ids instead of
  // encoding them as plain text.
  virtual std::vector<std::int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const = 0;

  // Ids to text: always valid UTF-8 (stray bytes become U+FFFD). Throws on ids out of range.
  std::string decode(std::span<const std::int32_t> ids) const;

  // One decoding step: appends to `out` the complete UTF-8 text that token `id` finishes, given
  // and updating the carried `state`. Throws kiln::Error on ids out of range.
  virtual void decode_token(std::int32_t id, DecodeState& state, std::string& out) const = 0;
  // Ends a sequence: appends whatever `state` still holds (incomplete bytes become U+FFFD).
  virtual void decode_finish(DecodeState& state, std::string& out) const = 0;

  // The bytes one token stands for on its own (spaces restored, byte tokens as their byte,
  // control tokens empty): may be part of a UTF-8 character.
  virtual std::string token_to_piece(std::int32_t id) const = 0;

  const Vocab& vocab() const { return vocab_; }
  std::int32_t n_vocab() const { return vocab_.size(); }
  std::int32_t bos_id() const { return vocab_.bos_id; }
  std::int32_t eos_id() const { return vocab_.eos_id; }
  // True for the tokens that end generation: EOS, end of turn, end of message.
  bool is_eog(std::int32_t id) const {
    return id >= 0 && (id == vocab_.eos_id || id == vocab_.eot_id || id == vocab_.eom_id);
  }

 protected:
  explicit Tokenizer(Vocab vocab) : vocab_(std::move(vocab)) {}
  // Throws kiln::Error unless `id` is a token of the vocabulary.
  void check_id(std::int32_t id) const;

  Vocab vocab_;
};

// Building a tokenizer from a vocabulary or a file: tokenizer/load_tokenizer.h.

}  // namespace kiln
