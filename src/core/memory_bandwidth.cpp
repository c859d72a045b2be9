#include "core/memory_bandwidth.h"

#include <emmintrin.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "core/anonymous_memory.h"
#include "core/error.h"

namespace kiln {

std::uint64_t sum_words(const std::uint8_t* p, std::size_t n) {
  __m128i a0 = _mm_setzero_si128(), a1 = a0, a2 = a0, a3 = a0;
  for (std::size_t i = 0; i + 64 <= n; i += 64) {
    a0 = _mm_add_epi64(a0, _mm_load_si128(reinterpret_cast<const __m128i*>(p + i)));
    a1 = _mm_add_epi64(a1, _mm_load_si128(reinterpret_cast<const __m128i*>(p + i + 16)));
    a2 = _mm_add_epi64(a2, _mm_load_si128(reinterpret_cast<const __m128i*>(p + i + 32)));
    a3 = _mm_add_epi64(a3, _mm_load_si128(reinterpret_cast<const __m128i*>(p + i + 48)));
  }
  const __m128i s = _mm_add_epi64(_mm_add_epi64(a0, a1), _mm_add_epi64(a2, a3));
  return static_cast<std::uint64_t>(_mm_cvtsi128_si64(s)) +
         static_cast<std::uint64_t>(_mm_cvtsi128_si64(_mm_unpackhi_epi64(s, s)));
}

double measure_read_bandwidth(ThreadPool& pool, std::size_t bytes, double min_seconds) {
  constexpr std::size_t kAlign = kHugePageBytes;
  bytes = (bytes + kAlign - 1) / kAlign * kAlign;
  auto* p = static_cast<std::uint8_t*>(map_anonymous_huge(bytes));
  if (p == nullptr)
    throw Error("memory bandwidth: cannot map a " + std::to_string(bytes >> 20) + " MiB buffer: " + std::strerror(errno));
  const int n = pool.size();
  std::vector<std::uint64_t> sums(static_cast<std::size_t>(n) * 8);  // a cache line per worker
  auto pass = [&](bool fill) {
    pool.run([&](int w, int workers) {
      std::int64_t b, e;
      split_range(static_cast<std::int64_t>(bytes), w, workers, kAlign, &b, &e);
      if (fill) {
        std::memset(p + b, w + 1, static_cast<std::size_t>(e - b));  // touch every page, from its reader
      } else {
        sums[static_cast<std::size_t>(w) * 8] += sum_words(p + b, static_cast<std::size_t>(e - b));
      }
    });
  };
  pass(true);
  pass(false);  // untimed: the first read may still fault or migrate pages
  int passes = 0;
  const auto t0 = std::chrono::steady_clock::now();
  double elapsed = 0;
  while (passes < 2 || elapsed < min_seconds) {
    pass(false);
    ++passes;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  // Keeps the sums observable so the reads cannot be optimized away.
  std::uint64_t total = 0;
  for (std::uint64_t s : sums) total += s;
  volatile std::uint64_t sink = total;
  (void)sink;
  unmap_anonymous(p, bytes);
  return static_cast<double>(bytes) * passes / elapsed;
}

}  // namespace kiln
