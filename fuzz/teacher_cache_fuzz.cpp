// Feeds arbitrary bytes to the reader of kiln distill's teacher top-k cache (train/
// teacher_cache.h) as one shard of a cache. Rejection must be a kiln::Error. An accepted shard
// must have exactly the size its header describes; when it is the whole of its split, every
// window is read, each row's values checked (ids in the vocabulary and distinct, log-
// probabilities finite, the mass at most 1).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "fuzz_input_file.h"
#include "train/teacher_cache.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string& path = kiln::fuzz::input_file(data, size);
  try {
    kiln::train::TeacherCacheShard shard = kiln::train::read_teacher_cache_shard(path);
    const kiln::train::TeacherCacheKey key = shard.key;
    const std::uint64_t row = static_cast<std::uint64_t>(key.k) * 8 * static_cast<std::uint64_t>(key.context);
    if (shard.records_offset + shard.window_count * row != size) __builtin_trap();
    const std::string split = shard.split;
    std::vector<kiln::train::TeacherCacheShard> shards;
    shards.push_back(std::move(shard));
    const kiln::train::TeacherCache cache = kiln::train::TeacherCache::from_shards(std::move(shards), "fuzz");
    std::vector<int> ids(static_cast<std::size_t>(key.k) * static_cast<std::size_t>(key.context));
    std::vector<float> log_probs(ids.size());
    for (std::uint64_t w = 0; w < cache.windows(split); ++w) {
      try {
        cache.read_window(split, w, ids.data(), log_probs.data());
      } catch (const kiln::Error&) {
      }
    }
  } catch (const kiln::Error&) {
  }
  return 0;
}
