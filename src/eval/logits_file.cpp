#include "eval/logits_file.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <unistd.h>

#include "core/error.h"
#include "core/half.h"
#include "eval/log_softmax.h"

namespace kiln::eval {

namespace {

std::size_t row_bytes(int n_vocab) { return 8 + 2 * static_cast<std::size_t>(n_vocab); }

void put_u32(std::uint8_t* p, std::uint32_t v) { std::memcpy(p, &v, 4); }
std::uint32_t get_u32(const std::uint8_t* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace

LogitsFileWriter::LogitsFileWriter(const std::string& path, const ChunkPlan& plan, int n_vocab)
    : path_(path),
      temp_path_(path + ".tmp-" + std::to_string(::getpid())),
      n_vocab_(n_vocab),
      rows_expected_(static_cast<std::int64_t>(plan.n_chunks) * plan.n_scored()),
      half_(static_cast<std::size_t>(n_vocab)) {
  file_ = std::fopen(temp_path_.c_str(), "wb");
  if (file_ == nullptr) fail("{}: cannot create ({})", temp_path_, std::strerror(errno));
  std::uint8_t header[kLogitsHeaderBytes] = {};
  std::memcpy(header, kLogitsMagic, 8);
  put_u32(header + 8, kLogitsVersion);
  put_u32(header + 12, kLogitsEncodingF16);
  put_u32(header + 16, static_cast<std::uint32_t>(n_vocab));
  put_u32(header + 20, static_cast<std::uint32_t>(plan.n_ctx));
  put_u32(header + 24, static_cast<std::uint32_t>(plan.n_chunks));
  put_u32(header + 28, static_cast<std::uint32_t>(plan.first));
  put_u32(header + 32, static_cast<std::uint32_t>(plan.bos_id));
  write(header, sizeof header);
  write(plan.tokens.data(), plan.tokens.size() * sizeof(std::int32_t));
}

LogitsFileWriter::~LogitsFileWriter() {
  if (file_ != nullptr) {
    std::fclose(file_);
    std::remove(temp_path_.c_str());
  }
}

void LogitsFileWriter::write(const void* data, std::size_t n) {
  if (std::fwrite(data, 1, n, file_) != n) fail("{}: write failed ({})", temp_path_, std::strerror(errno));
}

void LogitsFileWriter::add_row(const BaseRow& row) {
  KILN_CHECK(rows_written_ < rows_expected_, "{}: more rows than the {} the header announces", path_, rows_expected_);
  for (int v = 0; v < n_vocab_; ++v) {
    // f16 ends at -65504; a log-probability below it is a probability of 0 for any purpose.
    const float lp = std::max(row.log_probs[v], -65504.0f);
    half_[static_cast<std::size_t>(v)] = f32_to_f16(lp);
  }
  const std::int32_t argmax = row.argmax;
  write(&row.target_log_prob, 4);
  write(&argmax, 4);
  write(half_.data(), half_.size() * 2);
  ++rows_written_;
}

void LogitsFileWriter::finish() {
  KILN_CHECK(rows_written_ == rows_expected_, "{}: {} rows written, the header announces {}", path_, rows_written_,
             rows_expected_);
  const bool ok = std::fflush(file_) == 0 && ::fsync(::fileno(file_)) == 0;
  const int err = errno;
  std::fclose(file_);
  file_ = nullptr;
  if (!ok) {
    std::remove(temp_path_.c_str());
    fail("{}: write failed ({})", temp_path_, std::strerror(err));
  }
  if (std::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    const int rerr = errno;
    std::remove(temp_path_.c_str());
    fail("{}: cannot rename {} into place ({})", path_, temp_path_, std::strerror(rerr));
  }
}

LogitsFile::LogitsFile(const std::string& path) : file_(path) {
  const std::uint8_t* d = file_.data();
  const std::size_t size = file_.size();
  KILN_CHECK(size >= kLogitsHeaderBytes, "{}: {} bytes is too short for a logits file header ({} bytes)", path, size,
             kLogitsHeaderBytes);
  KILN_CHECK(std::memcmp(d, kLogitsMagic, 8) == 0, "{}: not a kiln logits file (magic is not \"KILNLOGP\")", path);
  const std::uint32_t version = get_u32(d + 8), encoding = get_u32(d + 12);
  KILN_CHECK(version == kLogitsVersion, "{}: version {} is not supported (expected {})", path, version, kLogitsVersion);
  KILN_CHECK(encoding == kLogitsEncodingF16, "{}: encoding {} is not supported (expected {}: f16 log-probabilities)",
             path, encoding, kLogitsEncodingF16);
  const std::uint32_t n_vocab = get_u32(d + 16), n_ctx = get_u32(d + 20), n_chunks = get_u32(d + 24);
  const std::uint32_t first = get_u32(d + 28);
  const std::int32_t bos = static_cast<std::int32_t>(get_u32(d + 32));
  KILN_CHECK(n_vocab >= 2 && n_vocab <= (1u << 24), "{}: n_vocab = {} (expected 2 .. 16777216)", path, n_vocab);
  KILN_CHECK(n_ctx >= 4 && n_ctx <= (1u << 20), "{}: n_ctx = {} (expected 4 .. 1048576)", path, n_ctx);
  KILN_CHECK(n_chunks >= 1 && n_chunks <= (1u << 24), "{}: n_chunks = {} (expected 1 .. 16777216)", path, n_chunks);
  KILN_CHECK(first == n_ctx / 2, "{}: first scored position = {} (expected n_ctx / 2 = {})", path, first, n_ctx / 2);
  KILN_CHECK(bos >= -1 && bos < static_cast<std::int32_t>(n_vocab), "{}: bos_id = {} (expected -1 .. {})", path, bos,
             n_vocab - 1);
  n_vocab_ = static_cast<int>(n_vocab);
  plan_.n_ctx = static_cast<int>(n_ctx);
  plan_.n_chunks = static_cast<int>(n_chunks);
  plan_.first = static_cast<int>(first);
  plan_.bos_id = bos;
  // All products below fit in 64 bits thanks to the bounds above.
  const std::uint64_t n_tokens = static_cast<std::uint64_t>(n_ctx) * n_chunks;
  const std::uint64_t n_rows = static_cast<std::uint64_t>(n_chunks) * static_cast<std::uint64_t>(plan_.n_scored());
  row_bytes_ = row_bytes(n_vocab_);
  rows_offset_ = kLogitsHeaderBytes + n_tokens * 4;
  const std::uint64_t expected = rows_offset_ + n_rows * row_bytes_;
  KILN_CHECK(size == expected,
             "{}: file size is {} bytes, but the header (n_vocab {}, n_ctx {}, n_chunks {}) needs exactly {}", path,
             size, n_vocab, n_ctx, n_chunks, expected);
  plan_.tokens.resize(n_tokens);
  std::memcpy(plan_.tokens.data(), d + kLogitsHeaderBytes, n_tokens * 4);
  for (std::size_t i = 0; i < plan_.tokens.size(); ++i)
    KILN_CHECK(plan_.tokens[i] >= 0 && plan_.tokens[i] < n_vocab_, "{}: token {} is id {}, outside n_vocab {}", path,
               i + 1, plan_.tokens[i], n_vocab_);
}

BaseRow LogitsFile::row(int chunk, int r, float* scratch) const {
  KILN_CHECK(chunk >= 0 && chunk < plan_.n_chunks && r >= 0 && r < plan_.n_scored(),
             "{}: row {} of chunk {} is outside the file", path(), r, chunk);
  const std::uint8_t* p =
      file_.data() + rows_offset_ + (static_cast<std::size_t>(chunk) * static_cast<std::size_t>(plan_.n_scored()) +
                                     static_cast<std::size_t>(r)) * row_bytes_;
  BaseRow row;
  std::int32_t argmax;
  std::memcpy(&row.target_log_prob, p, 4);
  std::memcpy(&argmax, p + 4, 4);
  KILN_CHECK(std::isfinite(row.target_log_prob) && row.target_log_prob <= 1e-3f,
             "{}: chunk {} row {}: target log-probability {} is not a finite value <= 0", path(), chunk + 1, r,
             row.target_log_prob);
  KILN_CHECK(argmax >= 0 && argmax < n_vocab_, "{}: chunk {} row {}: argmax {} is outside n_vocab {}", path(),
             chunk + 1, r, argmax, n_vocab_);
  row.argmax = argmax;
  for (int v = 0; v < n_vocab_; ++v) {
    std::uint16_t h;
    std::memcpy(&h, p + 8 + 2 * static_cast<std::size_t>(v), 2);
    scratch[v] = f16_to_f32(h);
    KILN_CHECK(std::isfinite(scratch[v]) && scratch[v] <= 1e-3f,
               "{}: chunk {} row {}: log-probability of token {} is {}, not a finite value <= 0", path(), chunk + 1, r,
               v, scratch[v]);
  }
  log_softmax(scratch, n_vocab_, scratch);
  row.log_probs = scratch;
  return row;
}

}  // namespace kiln::eval
