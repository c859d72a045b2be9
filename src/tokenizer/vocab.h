#pragma once
// A tokenizer vocabulary as GGUF stores it (tokenizer.ggml.*): token strings, merge scores,
// token types, the merge rules and pre-tokenizer of byte-level BPE, the special ids and the
// flags that steer encoding, plus a piece -> id index. The other tokenizer files kiln reads
// (tokenizer.model, tokenizer.json, encoder.json + vocab.bpe) are turned into the same struct.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/piece_index.h"

namespace kiln {

class GgufMetadata;

// tokenizer.ggml.token_type values (llama.cpp's llama_token_type, sentencepiece's piece types).
enum class TokenType : std::int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
};

struct Vocab {
  std::string model;                // tokenizer.ggml.model: "llama" is SentencePiece BPE, "gpt2" byte-level BPE
  std::vector<std::string> tokens;  // id -> piece text, with U+2581 for spaces in "llama" vocabs
                                    // and GPT-2's byte-to-unicode mapping in "gpt2" vocabs
  std::vector<float> scores;        // id -> merge priority (higher merges first); 0 when absent
  std::vector<TokenType> types;     // id -> type; Normal when absent
  // "gpt2" only: merge rules (left, right piece), highest priority first (tokenizer.ggml.merges
  // writes each as "left right"), and the pre-tokenizer's name (tokenizer.ggml.pre).
  std::vector<std::pair<std::string, std::string>> merges;
  std::string pre;
  // A Hugging Face tokenizer.json spells its pre-tokenizer out instead of naming it: when
  // pre_patterns is not empty, it and ignore_merges are used instead of what `pre` names.
  std::vector<std::string> pre_patterns;
  bool ignore_merges = false;
  std::string source;  // the file the vocabulary came from (set by finalize), for error messages

  // Special ids; -1 when the vocabulary has none.
  std::int32_t bos_id = -1;
  std::int32_t eos_id = -1;
  std::int32_t unk_id = -1;
  std::int32_t pad_id = -1;
  std::int32_t eot_id = -1;  // end of turn (chat models), also ends generation
  std::int32_t eom_id = -1;  // end of message (tool calls), also ends generation

  bool add_bos = false;          // tokenizer.ggml.add_bos_token: prepend BOS to prompts
  bool add_eos = false;          // tokenizer.ggml.add_eos_token
  bool add_space_prefix = true;  // tokenizer.ggml.add_space_prefix: sentencepiece's dummy prefix
                                 // ("gpt2": a space before text that does not start with one)

  // Reads and validates the tokenizer.ggml.* keys. Throws kiln::Error naming the key on missing
  // tokens, lengths that disagree, ids out of range, duplicate tokens or values of the wrong type.
  static Vocab from_gguf(const GgufMetadata& gguf);  // a GGUF file, or any model source's metadata

  // Checks the invariants above and builds the piece index; from_gguf calls it, and code that
  // fills a Vocab by hand (tests, converters) must call it before use. `source` prefixes messages.
  void finalize(std::string_view source);

  std::int32_t size() const { return static_cast<std::int32_t>(tokens.size()); }
  bool contains(std::int32_t id) const { return id >= 0 && id < size(); }
  TokenType type(std::int32_t id) const { return types[static_cast<std::size_t>(id)]; }
  // The id of a piece, or -1.
  std::int32_t find(std::string_view piece) const { return index_.find(piece); }

 private:
  PieceIndex index_;
};

}  // namespace kiln
