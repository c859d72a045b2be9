// The machine's read bandwidth, the ceiling of memory-bound decode: threads of kiln's own pool
// sum a 1 GiB buffer (far larger than the caches) with 64-byte loads. docs/benchmarks.md sets
// kiln's decode GB/s (weights streamed per second) beside this number.
//   build/bench/memory_bandwidth_bench --benchmark_min_time=2
#include <benchmark/benchmark.h>
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "core/aligned_buffer.h"
#include "core/thread_pool.h"

namespace {

constexpr std::size_t kBytes = std::size_t{1} << 30;

const std::uint8_t* buffer() {
  static kiln::AlignedBuffer buf = [] {
    kiln::AlignedBuffer b;
    b.reserve(kBytes);
    std::memset(b.as<std::uint8_t>(), 1, kBytes);  // touch every page once
    return b;
  }();
  return buf.as<std::uint8_t>();
}

// Sums 64-bit lanes of [p, p + n) with four independent 128-bit accumulators: plain SSE2 loads
// are enough to saturate memory, the point is only to keep many loads in flight.
std::uint64_t sum_range(const std::uint8_t* p, std::size_t n) {
  __m128i a0 = _mm_setzero_si128(), a1 = a0, a2 = a0, a3 = a0;
  for (std::size_t i = 0; i + 64 <= n; i += 64) {
    a0 = _mm_add_epi64(a0, _mm_load_si128(reinterpret_cast<const __m128i*>(p + i)));
    a1 = _mm_add_epi64(a1, _mm_load_si128(reinterpret_cast<const __m128i*>(p + i + 16)));
    a2 = _mm_add_epi64(a2, _mm_load_si128(reinterpret_cast<const __m128i*>(p + i + 32)));
    a3 = _mm_add_epi64(a3, _mm_load_si128(reinterpret_cast<const __m128i*>(p + i + 48)));
  }
  __m128i s = _mm_add_epi64(_mm_add_epi64(a0, a1), _mm_add_epi64(a2, a3));
  return static_cast<std::uint64_t>(_mm_cvtsi128_si64(s)) +
         static_cast<std::uint64_t>(_mm_cvtsi128_si64(_mm_unpackhi_epi64(s, s)));
}

void BM_ReadBandwidth(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  kiln::ThreadPool pool(threads);
  const std::uint8_t* p = buffer();
  std::uint64_t sink = 0;
  for (auto _ : state) {
    std::uint64_t partial[64] = {};
    pool.run([&](int w, int n) {
      std::int64_t b, e;
      kiln::split_range(static_cast<std::int64_t>(kBytes), w, n, 4096, &b, &e);
      partial[w] = sum_range(p + b, static_cast<std::size_t>(e - b));
    });
    for (int w = 0; w < threads; ++w) sink += partial[w];
  }
  benchmark::DoNotOptimize(sink);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(kBytes));
}
BENCHMARK(BM_ReadBandwidth)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
