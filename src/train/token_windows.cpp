#include "train/token_windows.h"

#include <algorithm>
#include <cstring>
#include <random>
#include <type_traits>

#include "core/error.h"

namespace kiln::train {

// read_window hands ShardReader's int32 ids straight to the model's int buffers.
static_assert(std::is_same_v<int, std::int32_t>);

TokenWindows TokenWindows::open(const std::string& data_dir, const std::string& split, int context) {
  if (context <= 0) fail("{}: a window needs a positive context, not {}", data_dir, context);
  TokenWindows windows;
  windows.manifest_ = data::read_manifest(data_dir + "/" + data::kManifestName);
  windows.split_ = split;
  windows.context_ = context;
  const data::Manifest& manifest = windows.manifest_;
  windows.shard_begin_.push_back(0);
  for (const data::ManifestShard& m : manifest.shards) {
    if (m.split != split) continue;
    data::ShardReader shard = data::ShardReader::open(data_dir + "/" + m.file);
    const data::ShardHeader& h = shard.header();
    if (h.tokenizer_hash != manifest.tokenizer_hash)
      fail("{}: tokenizer sha256 {} differs from the manifest's {}", shard.path(), data::hash_hex(h.tokenizer_hash),
           data::hash_hex(manifest.tokenizer_hash));
    if (h.vocab_size != manifest.vocab_size)
      fail("{}: vocabulary size {} differs from the manifest's {}", shard.path(), h.vocab_size, manifest.vocab_size);
    if (h.n_tokens != m.tokens) fail("{}: {} tokens, the manifest says {}", shard.path(), h.n_tokens, m.tokens);
    windows.n_tokens_ += h.n_tokens;
    windows.shard_begin_.push_back(windows.n_tokens_);
    windows.shards_.push_back(std::move(shard));
  }
  if (windows.shards_.empty()) fail("{}: the manifest lists no \"{}\" shard", data_dir, split);
  if (windows.n_tokens_ < static_cast<std::uint64_t>(context) + 1)
    fail("{}: the \"{}\" split has {} tokens, fewer than one window of context {} + 1", data_dir, split,
         windows.n_tokens_, context);
  return windows;
}

void TokenWindows::read_stream(std::uint64_t begin, std::uint64_t n, int* out) const {
  // The shard holding `begin`: the last one starting at or before it (empty shards start where
  // the next one does and are skipped by upper_bound).
  std::size_t s = static_cast<std::size_t>(std::upper_bound(shard_begin_.begin(), shard_begin_.end(), begin) -
                                           shard_begin_.begin()) -
                  1;
  while (n > 0) {
    const std::uint64_t local = begin - shard_begin_[s];
    const std::uint64_t take = std::min(n, shard_begin_[s + 1] - begin);
    shards_[s].read_tokens(local, std::span<std::int32_t>(out, static_cast<std::size_t>(take)));
    out += take, begin += take, n -= take;
    ++s;
  }
}

void TokenWindows::read_window(std::uint64_t w, int* tokens, int* targets) const {
  if (w >= n_windows()) fail("window {} of the \"{}\" split does not exist ({} windows)", w, split_, n_windows());
  const auto T = static_cast<std::uint64_t>(context_);
  const std::uint64_t begin = w * T;
  // tokens = stream [begin, begin + T); targets = stream [begin + 1, begin + T + 1).
  read_stream(begin, T, tokens);
  std::memcpy(targets, tokens + 1, (T - 1) * sizeof(int));
  read_stream(begin + T, 1, targets + T - 1);
}

namespace {

// A uniform draw from [0, bound) without modulo bias: values below 2^64 mod bound are redrawn,
// so that the accepted range is a whole number of copies of [0, bound).
std::uint64_t draw_below(std::mt19937_64& rng, std::uint64_t bound) {
  const std::uint64_t reject_below = (0 - bound) % bound;
  for (;;) {
    const std::uint64_t r = rng();
    if (r >= reject_below) return r % bound;
  }
}

}  // namespace

WindowSampler::WindowSampler(std::uint64_t n_windows, std::uint64_t seed) : n_windows_(n_windows), seed_(seed) {
  if (n_windows == 0) fail("there are no windows to sample");
}

std::vector<std::uint64_t> WindowSampler::permutation(std::uint64_t epoch) const {
  // seed_seq's mixing is specified by the standard, so the engine's state is the same everywhere.
  std::seed_seq seq{static_cast<std::uint32_t>(seed_), static_cast<std::uint32_t>(seed_ >> 32),
                    static_cast<std::uint32_t>(epoch), static_cast<std::uint32_t>(epoch >> 32)};
  std::mt19937_64 rng(seq);
  std::vector<std::uint64_t> order(n_windows_);
  for (std::uint64_t i = 0; i < n_windows_; ++i) order[i] = i;
  for (std::uint64_t i = n_windows_ - 1; i > 0; --i) std::swap(order[i], order[draw_below(rng, i + 1)]);
  return order;
}

std::uint64_t WindowSampler::next() {
  if (!have_order_ || order_epoch_ != cursor_.epoch) {
    order_ = permutation(cursor_.epoch);
    order_epoch_ = cursor_.epoch;
    have_order_ = true;
  }
  const std::uint64_t w = order_[cursor_.position];
  if (++cursor_.position == n_windows_) cursor_ = {cursor_.epoch + 1, 0};
  return w;
}

void WindowSampler::set_cursor(WindowCursor c) {
  if (c.position >= n_windows_)
    fail("cursor position {} is outside the epoch's {} windows (was the data folder changed?)", c.position, n_windows_);
  cursor_ = c;
}

}  // namespace kiln::train
