#include "runtime/prefix_cache.h"

#include <algorithm>

namespace kiln {

namespace {
// splitmix64's finalizer: a cheap, well-mixed step for chaining token ids into a key.
std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}
}  // namespace

std::uint64_t PrefixCache::key_of(std::uint64_t parent, std::span<const std::int32_t> block_tokens) const {
  std::uint64_t h = mix(parent ^ 0x9e3779b97f4a7c15ULL);
  for (std::int32_t t : block_tokens) h = mix(h ^ static_cast<std::uint32_t>(t));
  return h == 0 ? 1 : h;  // 0 is the parent key of first blocks
}

const PrefixCache::Entry* PrefixCache::find(std::uint64_t key, std::uint64_t parent,
                                            std::span<const std::int32_t> block_tokens) const {
  auto it = entries_.find(key);
  if (it == entries_.end()) return nullptr;
  const Entry& e = it->second;
  if (e.parent != parent || !std::equal(e.tokens.begin(), e.tokens.end(), block_tokens.begin(), block_tokens.end()))
    return nullptr;  // a hash collision: never attach someone else's keys and values
  return &e;
}

std::vector<int> PrefixCache::match(std::span<const std::int32_t> tokens, int max_blocks) {
  std::vector<int> blocks;
  if (!enabled()) return blocks;
  const std::size_t bs = static_cast<std::size_t>(block_size_);
  std::uint64_t parent = 0;
  for (int b = 0; b < max_blocks && (static_cast<std::size_t>(b) + 1) * bs <= tokens.size(); ++b) {
    const auto block_tokens = tokens.subspan(static_cast<std::size_t>(b) * bs, bs);
    const std::uint64_t key = key_of(parent, block_tokens);
    const Entry* e = find(key, parent, block_tokens);
    if (e == nullptr) break;
    const_cast<Entry*>(e)->last_used = ++tick_;
    blocks.push_back(e->block);
    parent = key;
  }
  return blocks;
}

void PrefixCache::insert(KvCache& cache, std::span<const std::int32_t> tokens, const std::vector<int>& blocks,
                         int from, int to) {
  if (!enabled()) return;
  const std::size_t bs = static_cast<std::size_t>(block_size_);
  std::uint64_t parent = 0;
  for (int b = 0; b < to && static_cast<std::size_t>(b) < blocks.size() && (static_cast<std::size_t>(b) + 1) * bs <= tokens.size();
       ++b) {
    const auto block_tokens = tokens.subspan(static_cast<std::size_t>(b) * bs, bs);
    const std::uint64_t key = key_of(parent, block_tokens);
    if (b >= from && entries_.find(key) == entries_.end()) {
      Entry e;
      e.parent = parent;
      e.tokens.assign(block_tokens.begin(), block_tokens.end());
      e.block = blocks[static_cast<std::size_t>(b)];
      e.last_used = ++tick_;
      cache.retain_block(e.block);
      entries_.emplace(key, std::move(e));
    }
    parent = key;
  }
}

int PrefixCache::evict(KvCache& cache, int n) {
  if (n <= 0 || entries_.empty()) return 0;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> candidates;  // (last_used, key)
  for (const auto& [key, e] : entries_)
    if (cache.block_refs(e.block) == 1) candidates.emplace_back(e.last_used, key);
  std::sort(candidates.begin(), candidates.end());
  int freed = 0;
  for (const auto& [used, key] : candidates) {
    if (freed >= n) break;
    auto it = entries_.find(key);
    cache.release_block(it->second.block);
    entries_.erase(it);
    ++freed;
  }
  return freed;
}

int PrefixCache::blocks_held_only_by_cache(const KvCache& cache) const {
  int n = 0;
  for (const auto& [key, e] : entries_)
    if (cache.block_refs(e.block) == 1) ++n;
  return n;
}

}  // namespace kiln
