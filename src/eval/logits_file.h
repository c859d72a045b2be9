#pragma once
// A base model's next-token distributions over the chunks of an evaluation, saved so that
// variants can be compared with it later without running (or even having) the base model:
// `kiln eval kld --save-base-logits FILE` writes it, `--base-logits FILE` reads it. The layout
// is in docs/formats.md ("Base logits file"):
//
//   header (40 bytes) | tokens: i32 (n_chunks, n_ctx) |
//   rows: (n_chunks, n_scored) x [ f32 target log-prob | i32 argmax | f16 log-probs (n_vocab) ]
//
// Log-probabilities (not raw logits) are stored, so a row needs no normalisation constant; the
// scored token's log-probability and the argmax are stored exactly beside the f16 row, so the
// base's perplexity and top-1 token are the same as when the base runs on the fly.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "eval/chunks.h"

namespace kiln::eval {

inline constexpr char kLogitsMagic[8] = {'K', 'I', 'L', 'N', 'L', 'O', 'G', 'P'};
inline constexpr std::uint32_t kLogitsVersion = 1;
inline constexpr std::uint32_t kLogitsEncodingF16 = 1;  // full rows of f16 log-probabilities
inline constexpr std::size_t kLogitsHeaderBytes = 40;

// One scored position of the base model.
struct BaseRow {
  const float* log_probs = nullptr;  // (n_vocab) log-softmax of the base's logits
  float target_log_prob = 0;         // log-probability of the token that follows
  int argmax = 0;                    // the base's most likely token
};

// Writes a logits file to `path` through a temporary file in the same directory, renamed over
// `path` by finish(); destroyed without finish(), it removes the temporary file.
class LogitsFileWriter {
 public:
  LogitsFileWriter(const std::string& path, const ChunkPlan& plan, int n_vocab);
  ~LogitsFileWriter();
  LogitsFileWriter(const LogitsFileWriter&) = delete;
  LogitsFileWriter& operator=(const LogitsFileWriter&) = delete;

  // Appends the next row (chunk-major, then scored position).
  void add_row(const BaseRow& row);
  // Checks that every row was written, flushes and renames the file into place.
  void finish();

 private:
  void write(const void* data, std::size_t n);

  std::string path_, temp_path_;
  std::FILE* file_ = nullptr;
  int n_vocab_ = 0;
  std::int64_t rows_expected_ = 0, rows_written_ = 0;
  std::vector<std::uint16_t> half_;  // (n_vocab) one row being encoded
};

// A logits file opened for reading (memory-mapped) and validated: header fields, the exact
// file size, token ids; each row's argmax and target log-probability are checked when read.
class LogitsFile {
 public:
  explicit LogitsFile(const std::string& path);

  const std::string& path() const { return file_.path(); }
  int n_vocab() const { return n_vocab_; }
  // The chunks the file was made from (tokens as evaluated, BOS written).
  const ChunkPlan& plan() const { return plan_; }

  // Decodes row r of chunk c into `scratch` (n_vocab) and returns it. The f16 row is
  // renormalised (its log-sum-exp subtracted) so that its probabilities sum to 1 again.
  BaseRow row(int chunk, int r, float* scratch) const;

 private:
  MappedFile file_;
  int n_vocab_ = 0;
  ChunkPlan plan_;
  std::size_t rows_offset_ = 0;
  std::size_t row_bytes_ = 0;
};

}  // namespace kiln::eval
