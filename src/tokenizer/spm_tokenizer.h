#pragma once
// SentencePiece BPE ("llama" vocabularies), token for token identical to sentencepiece's BPE
// model with an identity normalizer (what Llama 1/2, Mistral and TinyLlama ship):
//   normalize: invalid UTF-8 bytes -> U+FFFD, ' ' -> U+2581 "▁", and a leading "▁" (the dummy
//              prefix) when add_space_prefix and the text is not empty;
//   split:     one symbol per character (user-defined pieces are one frozen symbol each);
//   merge:     repeatedly join the adjacent pair whose concatenation is a vocabulary piece with
//              the highest score (ties: leftmost), kept in a priority queue, O(n log n);
//   fall back: a character with no piece becomes its UTF-8 bytes as <0xXX> tokens, or the
//              unknown token when the vocabulary has no byte tokens.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/special_tokens.h"
#include "tokenizer/merge_work.h"
#include "tokenizer/tokenizer.h"

namespace kiln {

class SpmTokenizer final : public Tokenizer {
 public:
  // Throws kiln::Error if the vocabulary has neither byte tokens nor an unknown token.
  explicit SpmTokenizer(Vocab vocab);

  std::vector<std::int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const override;
  // Appends the ids of one stretch of plain text, as sentencepiece's Encode does, and adds what
  // the merges took to `work` when given.
  void encode_text(std::string_view text, bool add_space_prefix, std::vector<std::int32_t>& out,
                   MergeWork* work = nullptr) const;

  void decode_token(std::int32_t id, DecodeState& state, std::string& out) const override;
  void decode_finish(DecodeState& state, std::string& out) const override;
  std::string token_to_piece(std::int32_t id) const override;

 private:
  // Writes to `normalized` the form of `text` that the merges run on.
  void normalize(std::string_view text, bool add_space_prefix, std::string& normalized) const;
  // Byte length of the user-defined piece at the start of `s`, or 0.
  std::size_t match_user_defined(std::string_view s) const;
  // Splits normalized text into characters, merges them and appends the resulting ids.
  void merge_segment(std::string_view norm, bool& prev_unknown, std::vector<std::int32_t>& out,
                     MergeWork& work) const;
  // Appends the ids for one final symbol, with byte fallback or the unknown token.
  void emit_piece(std::string_view piece, bool& prev_unknown, std::vector<std::int32_t>& out) const;

  std::vector<std::uint8_t> mergeable_;     // id -> 1 if merges may produce it (normal, user-defined, unused)
  std::array<std::int32_t, 256> byte_ids_;  // byte -> id of its <0xXX> token, or -1
  std::vector<std::int16_t> byte_values_;   // id -> byte value of a byte token, or -1
  bool byte_fallback_ = false;              // the vocabulary has byte tokens
  bool has_unused_ = false;                 // merges may pass through unused pieces
  // User-defined pieces by first byte, longest first (sentencepiece's PrefixMatcher).
  std::array<std::vector<std::int32_t>, 256> user_defined_by_first_byte_;
  bool has_user_defined_ = false;
  // No piece has "▁" after another character, so text can be cut before such a "▁" and the
  // parts merged separately with the same result (true of Llama-2; checked per vocabulary).
  // Off with unused pieces, whose un-merging sentencepiece resolves over the whole text.
  bool split_before_spaces_ = false;
  SpecialTokenSplitter specials_;  // control and unknown tokens, for parse_special
};

}  // namespace kiln
