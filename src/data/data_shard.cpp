#include "data/data_shard.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string_view>

#include "core/error.h"
#include "core/sha256.h"
#include "tokenizer/vocab.h"

namespace kiln::data {
namespace {

void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out += static_cast<char>((v >> (8 * i)) & 0xFF);
}
void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out += static_cast<char>((v >> (8 * i)) & 0xFF);
}
// Length-prefixed, so that no two different field lists serialize alike.
void put_str(std::string& out, std::string_view s) {
  put_u64(out, s.size());
  out.append(s);
}
std::uint32_t get_u32(const std::uint8_t* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
std::uint64_t get_u64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::uint64_t padded(std::uint64_t bytes) { return (bytes + 7) / 8 * 8; }

}  // namespace

TokenizerHash tokenizer_hash(const Vocab& vocab) {
  std::string s = "kiln-tokenizer-v1";
  put_str(s, vocab.model);
  put_str(s, vocab.pre);
  put_u64(s, vocab.tokens.size());
  for (std::size_t i = 0; i < vocab.tokens.size(); ++i) {
    put_str(s, vocab.tokens[i]);
    std::uint32_t bits = 0;
    const float score = i < vocab.scores.size() ? vocab.scores[i] : 0.0f;
    std::memcpy(&bits, &score, 4);
    put_u32(s, bits);
    put_u32(s, static_cast<std::uint32_t>(i < vocab.types.size() ? vocab.types[i] : TokenType::Normal));
  }
  put_u64(s, vocab.merges.size());
  for (const auto& [left, right] : vocab.merges) {
    put_str(s, left);
    put_str(s, right);
  }
  put_u64(s, vocab.pre_patterns.size());
  for (const std::string& p : vocab.pre_patterns) put_str(s, p);
  for (std::int32_t id : {vocab.bos_id, vocab.eos_id, vocab.unk_id, vocab.pad_id, vocab.eot_id, vocab.eom_id})
    put_u32(s, static_cast<std::uint32_t>(id));
  for (bool flag : {vocab.ignore_merges, vocab.add_bos, vocab.add_eos, vocab.add_space_prefix})
    s += static_cast<char>(flag ? 1 : 0);
  return sha256(s);
}

std::string hash_hex(const TokenizerHash& hash) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (std::uint8_t b : hash) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

TokenizerHash parse_hash_hex(const std::string& hex, const std::string& what) {
  TokenizerHash h{};
  if (hex.size() != 64) fail("{}: expected 64 hex digits, got '{}'", what, hex);
  for (std::size_t i = 0; i < 64; ++i) {
    const char c = hex[i];
    const int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) fail("{}: expected lower-case hex digits, got '{}'", what, hex);
    h[i / 2] = static_cast<std::uint8_t>(h[i / 2] | (v << (i % 2 ? 0 : 4)));
  }
  return h;
}

std::uint32_t token_width_for_vocab(std::uint32_t vocab_size) { return vocab_size <= 65536 ? 2 : 4; }

ShardWriter::ShardWriter(std::string path, std::uint32_t vocab_size, const TokenizerHash& hash)
    : path_(std::move(path)),
      temp_path_(path_ + ".tmp"),
      vocab_size_(vocab_size),
      token_bytes_(token_width_for_vocab(vocab_size)),
      hash_(hash) {
  if (vocab_size == 0) fail("{}: a shard needs a vocabulary of at least one token", path_);
  file_ = std::fopen(temp_path_.c_str(), "wb");
  if (!file_) fail("{}: cannot create: {}", temp_path_, std::strerror(errno));
  // The header is rewritten by finish(); zeros until then, so a half-written file never validates.
  const std::string zeros(kShardHeaderBytes, '\0');
  if (std::fwrite(zeros.data(), 1, zeros.size(), file_) != zeros.size()) fail("{}: write error", temp_path_);
}

ShardWriter::~ShardWriter() {
  if (file_) {
    std::fclose(file_);
    std::remove(temp_path_.c_str());
  }
}

void ShardWriter::add_document(std::span<const std::int32_t> tokens) {
  if (!file_) fail("{}: shard already finished", path_);
  buffer_.resize(tokens.size() * token_bytes_);
  std::uint8_t* out = buffer_.data();
  for (std::int32_t id : tokens) {
    if (id < 0 || static_cast<std::uint32_t>(id) >= vocab_size_)
      fail("{}: token id {} is outside the vocabulary (0..{})", path_, id, vocab_size_ - 1);
    const auto v = static_cast<std::uint32_t>(id);
    for (std::uint32_t b = 0; b < token_bytes_; ++b) *out++ = static_cast<std::uint8_t>(v >> (8 * b));
  }
  if (!buffer_.empty() && std::fwrite(buffer_.data(), 1, buffer_.size(), file_) != buffer_.size())
    fail("{}: write error: {}", temp_path_, std::strerror(errno));
  n_tokens_ += tokens.size();
  offsets_.push_back(n_tokens_);
}

void ShardWriter::finish() {
  if (!file_) fail("{}: shard already finished", path_);
  std::string tail(padded(n_tokens_ * token_bytes_) - n_tokens_ * token_bytes_, '\0');
  for (std::uint64_t o : offsets_) put_u64(tail, o);
  std::string header(kShardMagic, 8);
  put_u32(header, kShardVersion);
  put_u32(header, token_bytes_);
  put_u64(header, n_tokens_);
  put_u64(header, n_documents());
  put_u32(header, vocab_size_);
  put_u32(header, 0);
  header.append(reinterpret_cast<const char*>(hash_.data()), hash_.size());
  bool ok = std::fwrite(tail.data(), 1, tail.size(), file_) == tail.size() && std::fseek(file_, 0, SEEK_SET) == 0 &&
            std::fwrite(header.data(), 1, header.size(), file_) == header.size() && std::fflush(file_) == 0;
  ok = (std::fclose(file_) == 0) && ok;
  file_ = nullptr;
  if (!ok) {
    std::remove(temp_path_.c_str());
    fail("{}: write error: {}", temp_path_, std::strerror(errno));
  }
  std::error_code ec;
  std::filesystem::rename(temp_path_, path_, ec);
  if (ec) {
    std::remove(temp_path_.c_str());
    fail("{}: cannot rename into place: {}", path_, ec.message());
  }
}

ShardReader ShardReader::open(const std::string& path) {
  ShardReader r;
  r.file_ = std::make_unique<MappedFile>(path, LoadMode::map);
  const std::uint8_t* p = r.file_->data();
  const std::uint64_t size = r.file_->size();
  if (size < kShardHeaderBytes)
    fail("{}: not a kiln token shard: {} bytes, shorter than the {}-byte header", path, size, kShardHeaderBytes);
  if (std::memcmp(p, kShardMagic, 8) != 0) fail("{}: not a kiln token shard (bad magic)", path);
  ShardHeader& h = r.header_;
  h.version = get_u32(p + 8);
  if (h.version != kShardVersion) fail("{}: unsupported token shard version {} (kiln reads {})", path, h.version, kShardVersion);
  h.token_bytes = get_u32(p + 12);
  h.n_tokens = get_u64(p + 16);
  h.n_documents = get_u64(p + 24);
  h.vocab_size = get_u32(p + 32);
  const std::uint32_t reserved = get_u32(p + 36);
  std::memcpy(h.tokenizer_hash.data(), p + 40, 32);
  if (h.token_bytes != 2 && h.token_bytes != 4) fail("{}: token width {} bytes (must be 2 or 4)", path, h.token_bytes);
  if (h.vocab_size == 0) fail("{}: vocabulary size is 0", path);
  if (h.token_bytes != token_width_for_vocab(h.vocab_size))
    fail("{}: token width {} bytes does not match the vocabulary size {}", path, h.token_bytes, h.vocab_size);
  if (reserved != 0) fail("{}: reserved header field is {} (must be 0)", path, reserved);
  // Bounds before arithmetic, so that no product below can overflow.
  const std::uint64_t room = size - kShardHeaderBytes;
  if (h.n_tokens > room / h.token_bytes)
    fail("{}: header says {} tokens but the file has only {} bytes after the header (truncated?)", path, h.n_tokens, room);
  const std::uint64_t token_area = padded(h.n_tokens * h.token_bytes);
  if (token_area > room || room - token_area < 8 || h.n_documents > (room - token_area) / 8 - 1)
    fail("{}: header says {} tokens and {} documents but the file has {} bytes (truncated?)", path, h.n_tokens,
         h.n_documents, size);
  const std::uint64_t expected = kShardHeaderBytes + token_area + (h.n_documents + 1) * 8;
  if (expected != size)
    fail("{}: file is {} bytes, the header's {} tokens and {} documents make {}", path, size, h.n_tokens, h.n_documents,
         expected);
  r.tokens_ = p + kShardHeaderBytes;
  for (std::uint64_t i = h.n_tokens * h.token_bytes; i < token_area; ++i)
    if (r.tokens_[i] != 0) fail("{}: padding after the tokens is not zero", path);
  r.offsets_ = r.tokens_ + token_area;
  std::uint64_t prev = 0;
  for (std::uint64_t d = 0; d <= h.n_documents; ++d) {
    const std::uint64_t o = get_u64(r.offsets_ + 8 * d);
    if ((d == 0 && o != 0) || o < prev || o > h.n_tokens || (d == h.n_documents && o != h.n_tokens))
      fail("{}: document offset {} is {} (offsets must run from 0 up to the token count {})", path, d, o, h.n_tokens);
    prev = o;
  }
  for (std::uint64_t i = 0; i < h.n_tokens; ++i) {
    const std::uint32_t id = r.token(i);
    if (id >= h.vocab_size) fail("{}: token {} is id {}, outside the vocabulary of {}", path, i, id, h.vocab_size);
  }
  return r;
}

std::uint32_t ShardReader::token(std::uint64_t i) const {
  const std::uint8_t* q = tokens_ + i * header_.token_bytes;
  return header_.token_bytes == 2 ? static_cast<std::uint32_t>(q[0] | (q[1] << 8)) : get_u32(q);
}

void ShardReader::read_tokens(std::uint64_t begin, std::span<std::int32_t> out) const {
  if (begin > header_.n_tokens || out.size() > header_.n_tokens - begin)
    fail("{}: tokens [{}, {}) are outside the shard's {}", path(), begin, begin + out.size(), header_.n_tokens);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::int32_t>(token(begin + i));
}

std::uint64_t ShardReader::document_begin(std::uint64_t d) const {
  if (d > header_.n_documents) fail("{}: document {} is outside the shard's {}", path(), d, header_.n_documents);
  return get_u64(offsets_ + 8 * d);
}

}  // namespace kiln::data
