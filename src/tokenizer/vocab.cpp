#include "tokenizer/vocab.h"

#include "core/error.h"

namespace kiln {
namespace {

bool is_byte_piece(std::string_view piece) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'); };
  return piece.size() == 6 && piece.substr(0, 3) == "<0x" && hex(piece[3]) && hex(piece[4]) && piece[5] == '>';
}

void check_special_id(std::string_view source, std::string_view key, std::int32_t id, std::int32_t n_tokens) {
  KILN_CHECK(id >= -1 && id < n_tokens, "{}: tokenizer.ggml.{} = {} is out of range (vocabulary has {} tokens)", source,
             key, id, n_tokens);
}

}  // namespace

void Vocab::finalize(std::string_view source) {
  this->source = std::string(source);
  const auto n = static_cast<std::int32_t>(tokens.size());
  KILN_CHECK(!tokens.empty(), "{}: tokenizer.ggml.tokens is empty", source);
  if (scores.empty()) scores.assign(tokens.size(), 0.0f);
  if (types.empty()) types.assign(tokens.size(), TokenType::Normal);
  KILN_CHECK(scores.size() == tokens.size(), "{}: tokenizer.ggml.scores has {} entries, expected {} (one per token)",
             source, scores.size(), tokens.size());
  KILN_CHECK(types.size() == tokens.size(), "{}: tokenizer.ggml.token_type has {} entries, expected {} (one per token)",
             source, types.size(), tokens.size());

  check_special_id(source, "bos_token_id", bos_id, n);
  check_special_id(source, "eos_token_id", eos_id, n);
  check_special_id(source, "unknown_token_id", unk_id, n);
  check_special_id(source, "padding_token_id", pad_id, n);
  check_special_id(source, "eot_token_id", eot_id, n);
  check_special_id(source, "eom_token_id", eom_id, n);

  for (std::int32_t id = 0; id < n; ++id) {
    const std::string& piece = tokens[static_cast<std::size_t>(id)];
    const auto t = static_cast<std::int32_t>(types[static_cast<std::size_t>(id)]);
    KILN_CHECK(t >= 0 && t <= static_cast<std::int32_t>(TokenType::Byte),
               "{}: tokenizer.ggml.token_type[{}] = {} is not a token type (0..6)", source, id, t);
    KILN_CHECK(type(id) != TokenType::Byte || is_byte_piece(piece),
               "{}: tokenizer.ggml.tokens[{}] = \"{}\" has type byte but is not of the form <0xXX>", source, id, piece);
    // Sentencepiece refuses empty pieces; an empty token could never be produced by encoding.
    KILN_CHECK(!piece.empty() || type(id) == TokenType::Unused || type(id) == TokenType::Undefined,
               "{}: tokenizer.ggml.tokens[{}] is empty", source, id);
  }
  const std::int32_t duplicate = index_.build(tokens);
  if (duplicate >= 0) {
    const std::string& piece = tokens[static_cast<std::size_t>(duplicate)];
    fail("{}: tokenizer.ggml.tokens has \"{}\" twice (ids {} and {})", source, piece, index_.find(piece), duplicate);
  }
}

}  // namespace kiln
