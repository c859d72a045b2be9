#pragma once
// Prefix caching over the paged KV cache: full blocks of computed keys and values, indexed by
// the token ids they hold and by everything before them, so that a new sequence whose prompt
// starts with the same tokens (a shared system prompt, a chat history, the n choices of one
// request) attaches those blocks instead of recomputing them.
//
// An entry's key chains the hash of the previous block's key with this block's tokens, so one
// lookup per block walks a prompt from its start; entries store their tokens and parent key
// too, so a hash collision can never attach the wrong keys and values. The cache holds one
// reference on each block it indexes (KvCache::retain_block); a block that only the cache
// holds is reclaimable, least recently used first.
#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "model/kv_cache.h"

namespace kiln {

class PrefixCache {
 public:
  // block_size 0 disables the cache: match() finds nothing and insert() keeps nothing.
  explicit PrefixCache(int block_size) : block_size_(block_size) {}

  bool enabled() const { return block_size_ > 0; }

  // The blocks that hold tokens[0, k * block_size) for the largest k <= max_blocks found
  // (each marked as just used), or none.
  std::vector<int> match(std::span<const std::int32_t> tokens, int max_blocks);

  // Indexes blocks [from, to) of a sequence's block table, whose positions hold
  // tokens[0, to * block_size); blocks whose content is already indexed are skipped.
  void insert(KvCache& cache, std::span<const std::int32_t> tokens, const std::vector<int>& blocks, int from, int to);

  // Drops least recently used entries whose block nobody else holds, until `n` blocks have
  // returned to the pool or no such entry is left. Returns the number freed.
  int evict(KvCache& cache, int n);

  // Blocks referenced by the cache alone (reclaimable).
  int blocks_held_only_by_cache(const KvCache& cache) const;
  int entries() const { return static_cast<int>(entries_.size()); }

 private:
  struct Entry {
    std::uint64_t parent = 0;           // key of the previous block (0 for the first)
    std::vector<std::int32_t> tokens;   // (block_size) the ids this block holds
    int block = -1;
    std::uint64_t last_used = 0;
  };
  std::uint64_t key_of(std::uint64_t parent, std::span<const std::int32_t> block_tokens) const;
  const Entry* find(std::uint64_t key, std::uint64_t parent, std::span<const std::int32_t> block_tokens) const;

  int block_size_;
  std::uint64_t tick_ = 0;
  std::unordered_map<std::uint64_t, Entry> entries_;
};

}  // namespace kiln
