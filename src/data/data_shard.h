#pragma once
// Token shards: the files `kiln data prepare` writes and training reads (docs/formats.md,
// "Token shards"). A shard is a fixed 72-byte header, the tokens (2 or 4 bytes each, chosen from
// the vocabulary size), zero padding to 8 bytes, and a table of document start offsets. The
// reader maps the file and validates every field against the file size, every offset and every
// token id against the vocabulary size before it hands anything out.
#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/mapped_file.h"

namespace kiln {
struct Vocab;
}

namespace kiln::data {

inline constexpr char kShardMagic[8] = {'K', 'I', 'L', 'N', 'T', 'O', 'K', '\0'};
inline constexpr std::uint32_t kShardVersion = 1;
inline constexpr std::size_t kShardHeaderBytes = 72;

using TokenizerHash = std::array<std::uint8_t, 32>;

// SHA-256 of a canonical serialization of what decides how text becomes ids: the model kind,
// pre-tokenizer, every token's text, score and type, the merges, the special ids and the
// encoding flags (not the file the vocabulary came from). Two tokenizers with equal hashes
// encode every text alike, so shards made with one are valid for the other.
TokenizerHash tokenizer_hash(const Vocab& vocab);
std::string hash_hex(const TokenizerHash& hash);
// Parses 64 hex digits; throws kiln::Error naming `what` otherwise.
TokenizerHash parse_hash_hex(const std::string& hex, const std::string& what);

// 2 while every id fits in 16 bits, else 4.
std::uint32_t token_width_for_vocab(std::uint32_t vocab_size);

struct ShardHeader {
  std::uint32_t version = kShardVersion;
  std::uint32_t token_bytes = 0;  // 2 or 4
  std::uint64_t n_tokens = 0;
  std::uint64_t n_documents = 0;
  std::uint32_t vocab_size = 0;
  TokenizerHash tokenizer_hash{};
};

// Streams documents into a shard: tokens go straight to a temporary file beside `path`, only the
// document offsets stay in memory, and finish() writes the offsets, the header and renames the
// file into place. A writer destroyed without finish() removes its temporary file.
class ShardWriter {
 public:
  ShardWriter(std::string path, std::uint32_t vocab_size, const TokenizerHash& hash);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Appends one document. Throws kiln::Error on an id outside the vocabulary or a write error.
  void add_document(std::span<const std::int32_t> tokens);
  std::uint64_t n_tokens() const { return n_tokens_; }
  std::uint64_t n_documents() const { return offsets_.size() - 1; }
  // Completes the file and renames it to `path`.
  void finish();

 private:
  std::string path_;
  std::string temp_path_;
  std::FILE* file_ = nullptr;
  std::uint32_t vocab_size_;
  std::uint32_t token_bytes_;
  TokenizerHash hash_;
  std::uint64_t n_tokens_ = 0;
  std::vector<std::uint64_t> offsets_{0};
  std::vector<std::uint8_t> buffer_;
};

// A validated, memory-mapped shard.
class ShardReader {
 public:
  // Maps and validates `path`; throws kiln::Error with a one-line message naming the path and
  // the field on any inconsistency (magic, version, width, sizes, offsets, token ids).
  static ShardReader open(const std::string& path);

  const ShardHeader& header() const { return header_; }
  std::uint64_t n_tokens() const { return header_.n_tokens; }
  std::uint64_t n_documents() const { return header_.n_documents; }
  std::uint32_t token(std::uint64_t i) const;
  // Copies tokens [begin, begin + out.size()) into `out`.
  void read_tokens(std::uint64_t begin, std::span<std::int32_t> out) const;
  // Document d spans tokens [document_begin(d), document_begin(d + 1)); d may be n_documents.
  std::uint64_t document_begin(std::uint64_t d) const;
  const std::string& path() const { return file_->path(); }

 private:
  std::unique_ptr<MappedFile> file_;
  ShardHeader header_;
  const std::uint8_t* tokens_ = nullptr;
  const std::uint8_t* offsets_ = nullptr;
};

}  // namespace kiln::data
