#include "model/kv_cache.h"

#include <cstring>

#include "core/error.h"
#include "kernels/kv_quants.h"

namespace kiln {

bool is_kv_cache_type(DType t) { return t == DType::F16 || t == DType::F32 || kernels::is_kv_block_type(t); }

std::size_t kv_row_bytes(DType t, int kv_dim) {
  KILN_CHECK(is_kv_cache_type(t), "kv cache type {} is not supported (expected {})", dtype_name(t), kKvCacheTypeNames);
  const std::int64_t block = traits(t).block_size;
  KILN_CHECK(kv_dim % block == 0, "kv cache type {} needs rows of a multiple of {} values; this model's are {}",
             dtype_name(t), block, kv_dim);
  return row_bytes(t, kv_dim);
}

KvCache::KvCache(const KvCacheOptions& o) : options_(o) {
  KILN_CHECK(is_kv_cache_type(o.dtype), "kv cache type {} is not supported (expected {})", dtype_name(o.dtype),
             kKvCacheTypeNames);
  KILN_CHECK(o.block_size > 0 && o.capacity_tokens > 0 && o.n_layer > 0 && o.kv_dim > 0,
             "kv cache: invalid options");
  n_blocks_ = (o.capacity_tokens + o.block_size - 1) / o.block_size;
  row_bytes_ = kv_row_bytes(o.dtype, o.kv_dim);
  const std::size_t layer_bytes = row_bytes_ * static_cast<std::size_t>(o.block_size) * static_cast<std::size_t>(n_blocks_);
  bytes_ = 2 * layer_bytes * static_cast<std::size_t>(o.n_layer);
  storage_ = AnonymousRegion(bytes_);
  for (int l = 0; l < o.n_layer; ++l) {
    k_.push_back(storage_.data() + 2 * static_cast<std::size_t>(l) * layer_bytes);
    v_.push_back(storage_.data() + (2 * static_cast<std::size_t>(l) + 1) * layer_bytes);
  }
  // Hand out low block ids first so short runs touch little memory.
  for (int b = n_blocks_ - 1; b >= 0; --b) free_.push_back(b);
  refs_.assign(static_cast<std::size_t>(n_blocks_), 0);
}

int KvCache::add_sequence() {
  for (std::size_t i = 0; i < seqs_.size(); ++i)
    if (!seqs_[i].live) {
      seqs_[i] = Sequence{true, 0, {}};
      return static_cast<int>(i);
    }
  seqs_.push_back(Sequence{true, 0, {}});
  return static_cast<int>(seqs_.size() - 1);
}

void KvCache::remove_sequence(int seq) {
  Sequence& s = seqs_.at(static_cast<std::size_t>(seq));
  for (auto it = s.blocks.rbegin(); it != s.blocks.rend(); ++it) release_block(*it);
  s = Sequence{};
}

void KvCache::attach_prefix(int seq, const std::vector<int>& blocks) {
  Sequence& s = seqs_.at(static_cast<std::size_t>(seq));
  KILN_CHECK(s.live && s.blocks.empty() && s.length == 0, "internal: kv cache sequence {} is not empty", seq);
  for (int b : blocks) {
    KILN_CHECK(b >= 0 && b < n_blocks_ && refs_[static_cast<std::size_t>(b)] > 0,
               "internal: kv block {} is not in use", b);
    ++refs_[static_cast<std::size_t>(b)];
  }
  s.blocks = blocks;
  s.length = static_cast<int>(blocks.size()) * options_.block_size;
}

void KvCache::retain_block(int block) {
  KILN_CHECK(block >= 0 && block < n_blocks_ && refs_[static_cast<std::size_t>(block)] > 0,
             "internal: kv block {} is not in use", block);
  ++refs_[static_cast<std::size_t>(block)];
}

void KvCache::release_block(int block) {
  int& r = refs_.at(static_cast<std::size_t>(block));
  KILN_CHECK(r > 0, "internal: kv block {} released more often than held", block);
  if (--r == 0) free_.push_back(block);
}

void KvCache::truncate(int seq, int n_tokens) {
  Sequence& s = seqs_.at(static_cast<std::size_t>(seq));
  if (n_tokens < s.length) s.length = n_tokens;
  const std::size_t keep = static_cast<std::size_t>((n_tokens + options_.block_size - 1) / options_.block_size);
  while (s.blocks.size() > keep) {
    release_block(s.blocks.back());
    s.blocks.pop_back();
  }
}

void KvCache::reserve(int seq, int n_tokens) {
  Sequence& s = seqs_.at(static_cast<std::size_t>(seq));
  KILN_CHECK(s.live, "internal: kv cache sequence {} is not live", seq);
  const std::size_t need = static_cast<std::size_t>((n_tokens + options_.block_size - 1) / options_.block_size);
  if (need > s.blocks.size() && need - s.blocks.size() > free_.size())
    fail("kv cache is full: {} positions requested, {} of {} blocks of {} free (raise the context size)", n_tokens,
         free_.size(), n_blocks_, options_.block_size);
  while (s.blocks.size() < need) {
    const int b = free_.back();
    free_.pop_back();
    refs_[static_cast<std::size_t>(b)] = 1;
    s.blocks.push_back(b);
  }
}

void KvCache::set_length(int seq, int n_tokens) {
  Sequence& s = seqs_.at(static_cast<std::size_t>(seq));
  KILN_CHECK(static_cast<std::size_t>(n_tokens) <= s.blocks.size() * static_cast<std::size_t>(options_.block_size),
             "internal: kv length {} beyond reserved blocks", n_tokens);
  s.length = n_tokens;
}

void* KvCache::row(std::uint8_t* layer_base, int seq, int pos) {
  const Sequence& s = seqs_[static_cast<std::size_t>(seq)];
  const int block = s.blocks[static_cast<std::size_t>(pos / options_.block_size)];
  const std::size_t index = static_cast<std::size_t>(block) * static_cast<std::size_t>(options_.block_size) +
                            static_cast<std::size_t>(pos % options_.block_size);
  return layer_base + index * row_bytes_;
}

}  // namespace kiln
