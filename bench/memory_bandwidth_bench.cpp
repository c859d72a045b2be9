// The machine's read bandwidth, the ceiling of memory-bound decode: threads of kiln's own pool
// sum a 1 GiB buffer (far larger than the caches). docs/benchmarks.md sets kiln's decode GB/s
// (weights streamed per second) beside this number; `kiln bench` measures the 2 MiB-page, SSE2
// case itself (core/memory_bandwidth.h) and prints it beside its decode. Two page sizes, because that is what decode
// sees: weights mapped through 4 KiB pages read markedly slower than through 2 MiB pages (one
// TLB entry per 2 MiB), which is why core/mapped_file.cpp asks for huge pages. Two load widths:
// SSE2 (any x86-64) and AVX-512 where the CPU has it, as kiln's decode kernels use.
//   build/bench/memory_bandwidth_bench --benchmark_min_time=2
// GCC 12 reports its own _mm512_undefined_* placeholders inside _mm512_reduce_add_epi64 as
// uninitialized; the warning is about the header, not this code.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <benchmark/benchmark.h>
#include <immintrin.h>

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/cpu_features.h"
#include "core/memory_bandwidth.h"
#include "core/thread_pool.h"

namespace {

constexpr std::size_t kBytes = std::size_t{1} << 30;

// A 1 GiB buffer, 2 MiB-aligned, with transparent huge pages asked for (huge) or refused.
const std::uint8_t* make_buffer(bool huge) {
  constexpr std::size_t kAlign = std::size_t{2} << 20;
  void* raw = ::mmap(nullptr, kBytes + kAlign, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) std::abort();
  auto* p = reinterpret_cast<std::uint8_t*>((reinterpret_cast<std::uintptr_t>(raw) + kAlign - 1) & ~(kAlign - 1));
  ::madvise(p, kBytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  std::memset(p, 1, kBytes);  // touch every page once
  return p;
}
const std::uint8_t* buffer(bool huge) {
  static const std::uint8_t* small_pages = make_buffer(false);
  static const std::uint8_t* huge_pages = make_buffer(true);
  return huge ? huge_pages : small_pages;
}

// The same with 512-bit loads, four cache lines per step.
__attribute__((target("avx512f"))) std::uint64_t sum_range_avx512(const std::uint8_t* p, std::size_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (std::size_t i = 0; i + 256 <= n; i += 256) {
    a0 = _mm512_add_epi64(a0, _mm512_load_si512(p + i));
    a1 = _mm512_add_epi64(a1, _mm512_load_si512(p + i + 64));
    a2 = _mm512_add_epi64(a2, _mm512_load_si512(p + i + 128));
    a3 = _mm512_add_epi64(a3, _mm512_load_si512(p + i + 192));
  }
  return static_cast<std::uint64_t>(_mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3))));
}

// Args: threads, huge pages (0/1), AVX-512 loads (0/1).
void BM_ReadBandwidth(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const bool huge = state.range(1) != 0;
  const bool wide = state.range(2) != 0;
  if (wide && kiln::simd_level() < kiln::SimdLevel::Avx512) {
    state.SkipWithError("no AVX-512 on this CPU");
    return;
  }
  kiln::ThreadPool pool(threads);
  const std::uint8_t* p = buffer(huge);
  std::uint64_t sink = 0;
  for (auto _ : state) {
    std::uint64_t partial[64] = {};
    pool.run([&](int w, int n) {
      std::int64_t b, e;
      kiln::split_range(static_cast<std::int64_t>(kBytes), w, n, 4096, &b, &e);
      const std::size_t len = static_cast<std::size_t>(e - b);
      partial[w] = wide ? sum_range_avx512(p + b, len) : kiln::sum_words(p + b, len);
    });
    for (int w = 0; w < threads; ++w) sink += partial[w];
  }
  benchmark::DoNotOptimize(sink);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(kBytes));
}
BENCHMARK(BM_ReadBandwidth)
    ->ArgNames({"threads", "huge", "avx512"})
    ->ArgsProduct({{1, 2}, {0, 1}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
