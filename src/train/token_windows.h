#pragma once
// What training reads: the tokens of one split of a prepared data folder (docs/formats.md, "Data
// manifest" and "Token shards") cut into fixed windows, and the order it visits them in.
//
// The split's shards, in manifest order, are read as one stream of tokens; document boundaries
// are not window boundaries (a window may hold the end of one document and the start of the
// next, as in GPT-2's and llm.c's data loaders). Window w holds tokens
// [w·context, w·context + context + 1): its first `context` tokens are the inputs and its last
// `context` the targets, so consecutive windows share one token and every token but the very
// first is a target exactly once.
#include <cstdint>
#include <string>
#include <vector>

#include "data/data_shard.h"
#include "data/manifest.h"

namespace kiln::train {

class TokenWindows {
 public:
  // Reads DIR/manifest.json and opens every shard of `split` (ShardReader validates each);
  // throws kiln::Error (one line naming the folder or file) when the split has no shard, a
  // shard's tokenizer hash, vocabulary size or token count differs from the manifest's, or the
  // split has fewer than context + 1 tokens.
  static TokenWindows open(const std::string& data_dir, const std::string& split, int context);

  const data::Manifest& manifest() const { return manifest_; }
  const std::string& split() const { return split_; }
  int context() const { return context_; }
  std::uint64_t n_tokens() const { return n_tokens_; }
  std::uint64_t n_windows() const { return (n_tokens_ - 1) / static_cast<std::uint64_t>(context_); }
  // tokens and targets: `context` ints each. Throws kiln::Error when w >= n_windows().
  void read_window(std::uint64_t w, int* tokens, int* targets) const;

 private:
  TokenWindows() = default;
  // Copies stream tokens [begin, begin + n) into out, across shard boundaries.
  void read_stream(std::uint64_t begin, std::uint64_t n, int* out) const;

  data::Manifest manifest_;
  std::string split_;
  int context_ = 0;
  std::vector<data::ShardReader> shards_;
  std::vector<std::uint64_t> shard_begin_;  // (shards + 1) the stream position of each shard's first token
  std::uint64_t n_tokens_ = 0;
};

// The training cursor: epoch e, and the position inside epoch e's permutation of windows.
struct WindowCursor {
  std::uint64_t epoch = 0, position = 0;
};

// The order training visits windows in: every epoch is a permutation of [0, n_windows) drawn
// with std::mt19937_64 seeded through std::seed_seq from (seed, epoch). The shuffle is a
// Fisher-Yates written out with an unbiased bounded draw, not std::shuffle or
// std::uniform_int_distribution, whose algorithms are implementation-defined, so an order is the
// same with every standard library and a run resumed from its cursor continues exactly where
// it stopped.
class WindowSampler {
 public:
  // Throws kiln::Error when n_windows is 0.
  WindowSampler(std::uint64_t n_windows, std::uint64_t seed);

  // The window at the cursor; advances the cursor (to position 0 of the next epoch after the
  // last window of an epoch).
  std::uint64_t next();
  WindowCursor cursor() const { return cursor_; }
  // Throws kiln::Error when c.position >= n_windows.
  void set_cursor(WindowCursor c);

  std::uint64_t n_windows() const { return n_windows_; }
  std::uint64_t seed() const { return seed_; }
  // Epoch `epoch`'s permutation, computed afresh (for tests and tools; next() keeps its own).
  std::vector<std::uint64_t> permutation(std::uint64_t epoch) const;

 private:
  std::uint64_t n_windows_;
  std::uint64_t seed_;
  WindowCursor cursor_;
  std::vector<std::uint64_t> order_;  // (n_windows) the permutation of order_epoch_
  std::uint64_t order_epoch_ = 0;
  bool have_order_ = false;
};

}  // namespace kiln::train
