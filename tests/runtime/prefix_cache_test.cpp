#include "runtime/prefix_cache.h"

#include <gtest/gtest.h>

#include <numeric>

namespace kiln {
namespace {

KvCache small_cache(int blocks) {
  KvCacheOptions o;
  o.n_layer = 1;
  o.kv_dim = 4;
  o.block_size = 4;
  o.capacity_tokens = blocks * 4;
  return KvCache(o);
}

std::vector<std::int32_t> iota_tokens(int n, int start = 100) {
  std::vector<std::int32_t> t(static_cast<std::size_t>(n));
  std::iota(t.begin(), t.end(), start);
  return t;
}

TEST(PrefixCache, MatchesWholeBlocksOfACommonPrefix) {
  KvCache cache = small_cache(16);
  PrefixCache pc(4);
  const auto a = iota_tokens(10);  // blocks [0,4) [4,8) full, [8,10) partial
  const int sa = cache.add_sequence();
  cache.reserve(sa, 10);
  pc.insert(cache, a, cache.blocks(sa), 0, 2);
  EXPECT_EQ(pc.entries(), 2);

  auto b = a;
  b[6] = 7;  // differs inside the second block
  const std::vector<int> got = pc.match(b, 8);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], cache.blocks(sa)[0]);
  EXPECT_EQ(pc.match(a, 8).size(), 2u);
  EXPECT_EQ(pc.match(a, 1).size(), 1u);  // max_blocks caps it
  EXPECT_TRUE(pc.match(iota_tokens(10, 5), 8).empty());
}

TEST(PrefixCache, SharedBlocksSurviveTheirSequenceAndAreEvictedLeastRecentlyUsedFirst) {
  KvCache cache = small_cache(8);
  PrefixCache pc(4);
  const auto a = iota_tokens(8, 0), b = iota_tokens(8, 50);
  const int sa = cache.add_sequence();
  cache.reserve(sa, 8);
  pc.insert(cache, a, cache.blocks(sa), 0, 2);
  const int sb = cache.add_sequence();
  cache.reserve(sb, 8);
  pc.insert(cache, b, cache.blocks(sb), 0, 2);
  cache.remove_sequence(sa);
  cache.remove_sequence(sb);
  EXPECT_EQ(cache.free_blocks(), 4);  // the four indexed blocks are still held
  EXPECT_EQ(pc.blocks_held_only_by_cache(cache), 4);

  // A new sequence attaches a's prefix: those blocks are no longer reclaimable.
  const int sc = cache.add_sequence();
  cache.attach_prefix(sc, pc.match(a, 2));
  EXPECT_EQ(cache.length(sc), 8);
  EXPECT_EQ(pc.blocks_held_only_by_cache(cache), 2);
  EXPECT_EQ(pc.evict(cache, 4), 2);  // only b's blocks can go
  EXPECT_EQ(cache.free_blocks(), 6);
  EXPECT_TRUE(pc.match(b, 2).empty());
  EXPECT_EQ(pc.match(a, 2).size(), 2u);
  cache.remove_sequence(sc);
  EXPECT_EQ(pc.evict(cache, 10), 2);
  EXPECT_EQ(cache.free_blocks(), 8);
}

TEST(PrefixCache, InsertSkipsContentAlreadyIndexed) {
  KvCache cache = small_cache(8);
  PrefixCache pc(4);
  const auto a = iota_tokens(4);
  const int s1 = cache.add_sequence(), s2 = cache.add_sequence();
  cache.reserve(s1, 4);
  cache.reserve(s2, 4);
  pc.insert(cache, a, cache.blocks(s1), 0, 1);
  pc.insert(cache, a, cache.blocks(s2), 0, 1);  // same tokens computed twice: keep the first
  EXPECT_EQ(pc.entries(), 1);
  EXPECT_EQ(cache.block_refs(cache.blocks(s2)[0]), 1);
  EXPECT_EQ(cache.block_refs(cache.blocks(s1)[0]), 2);
}

TEST(PrefixCache, DisabledCacheKeepsNothing) {
  KvCache cache = small_cache(4);
  PrefixCache pc(0);
  const auto a = iota_tokens(8);
  const int s = cache.add_sequence();
  cache.reserve(s, 8);
  pc.insert(cache, a, cache.blocks(s), 0, 2);
  EXPECT_EQ(pc.entries(), 0);
  EXPECT_TRUE(pc.match(a, 2).empty());
}

TEST(KvCacheRefs, ReleasingMoreThanHeldIsAnError) {
  KvCache cache = small_cache(2);
  const int s = cache.add_sequence();
  cache.reserve(s, 4);
  const int b = cache.blocks(s)[0];
  cache.retain_block(b);
  cache.remove_sequence(s);
  EXPECT_EQ(cache.free_blocks(), 1);
  cache.release_block(b);
  EXPECT_EQ(cache.free_blocks(), 2);
  EXPECT_ANY_THROW(cache.release_block(b));
}

}  // namespace
}  // namespace kiln
