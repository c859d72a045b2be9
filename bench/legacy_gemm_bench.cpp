// Single-thread gemm speed of the legacy formats on the shape of a 1.1B Llama's FFN up
// projection (k = 2048, n = 5632), at M = 1 (decode: weight GB/s) and M = 128 (prefill: GOP/s).
//
// The M = 1 runs come in three kinds: "l2" reuses 512 rows that stay in L2 (the kernel's compute
// ceiling), "hot" reuses one whole weight matrix (it then sits in L3), and
// "stream" walks through a pool of ~2 GB of distinct matrices, as a whole model does per token,
// so the weights come from memory; it also runs on two threads that split the rows (wall-clock
// rates, summed over the threads).
//
//   build-x/bench/legacy_gemm_bench --benchmark_min_time=0.5s
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "core/cpu_features.h"
#include "core/dtype.h"
#include "core/half.h"
#include "kernels/legacy_quants_internal.h"
#include "kernels/matmul.h"

namespace kiln::kernels {
namespace {

constexpr std::int64_t kK = 2048, kN = 5632;

// Random but well-formed weight rows: every byte random, then each block's f16 scale (and q4_1 /
// q5_1 zero point) set to a small normal value, so no NaN or infinity reaches the sums.
std::vector<std::uint8_t> random_weights(DType t, std::int64_t rows, unsigned seed) {  // rows <= kN
  const std::size_t row = row_bytes(t, kK);
  std::vector<std::uint8_t> w(row * rows);
  // splitmix64 fills 8 bytes per step: the stream pool is gigabytes.
  std::uint64_t state = seed * 0x9E3779B97F4A7C15ull;
  for (std::size_t i = 0; i + 8 <= w.size(); i += 8) {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    std::memcpy(&w[i], &z, 8);
  }
  const std::size_t block = traits(t).block_bytes;
  const bool has_min = t == DType::Q4_1 || t == DType::Q5_1;
  for (std::size_t off = 0; off < w.size(); off += block) {
    const std::uint16_t d = f32_to_f16(0.01f + 0.001f * static_cast<float>(w[off + 5] % 16));
    w[off] = static_cast<std::uint8_t>(d);
    w[off + 1] = static_cast<std::uint8_t>(d >> 8);
    if (has_min) w[off + 2] = static_cast<std::uint8_t>(d), w[off + 3] = static_cast<std::uint8_t>(d >> 8);
  }
  return w;
}

std::vector<std::uint8_t> activations(const WeightKernels& kernels, std::int64_t M) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(M * kK);
  for (float& v : x) v = normal(rng);
  const std::size_t row = row_bytes(kernels.act_type, kK);
  std::vector<std::uint8_t> a(row * M);
  for (std::int64_t m = 0; m < M; ++m) kernels.quantize_act(x.data() + m * kK, a.data() + m * row, kK);
  return a;
}

// gemm: the function timed; nullptr: the level's table entry.
void run_gemm_fn(benchmark::State& state, DType t, SimdLevel level, std::int64_t M, int pool_size, std::int64_t n,
                 GemmFn gemm) {
  if (level > max_supported_simd_level()) {
    state.SkipWithError("this CPU lacks the SIMD level");
    return;
  }
  const WeightKernels& kernels = weight_kernels(t, level);
  if (gemm == nullptr) gemm = kernels.gemm;
  std::vector<std::vector<std::uint8_t>> pool;
  for (int i = 0; i < pool_size; ++i) pool.push_back(random_weights(t, n, static_cast<unsigned>(i + 1)));
  const auto a = activations(kernels, M);
  std::vector<float> y(M * n);
  const std::size_t w_stride = row_bytes(t, kK), a_stride = row_bytes(kernels.act_type, kK);
  // With several threads each takes its share of the weight rows, as the model's matmul does.
  const std::int64_t n_begin = n * state.thread_index() / state.threads();
  const std::int64_t n_end = n * (state.thread_index() + 1) / state.threads();
  int next = 0;
  for (auto _ : state) {
    gemm(kK, pool[next].data(), w_stride, a.data(), a_stride, M, n_begin, n_end, y.data(), n);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
    next = (next + 1) % pool_size;
  }
  // M = 1 reads each weight once: weight bytes per second is its measure. M = 128 is compute.
  if (M == 1) {
    const double weight_bytes = static_cast<double>(w_stride) * static_cast<double>(n_end - n_begin);
    state.counters["weight_GB/s"] =
        benchmark::Counter(weight_bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  } else {
    state.counters["GOP/s"] = benchmark::Counter(2.0 * static_cast<double>(M) * kK * (n_end - n_begin) / 1e9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
  }
}

void run_gemm(benchmark::State& state, DType t, SimdLevel level, std::int64_t M, int pool_size, std::int64_t n) {
  run_gemm_fn(state, t, level, M, pool_size, n, nullptr);
}

// A pool of distinct matrices well above the caches (this VM reports a 480 MB L3) for the
// streaming decode runs: each run reads about 2 GB of weights before it sees a matrix again.
int stream_pool(DType t, int threads) {
  const double matrix = static_cast<double>(row_bytes(t, kK)) * kN / threads;  // bytes one thread reads
  return static_cast<int>(2e9 / threads / matrix) + 1;
}

template <DType T>
void columns_gemm(std::int64_t k, const void* w, std::size_t w_stride, const void* a, std::size_t a_stride,
                  std::int64_t M, std::int64_t n_begin, std::int64_t n_end, float* y, std::int64_t ldy) {
  legacy::columns_gemm(T, k, w, w_stride, a, a_stride, M, n_begin, n_end, y, ldy);
}

GemmFn columns_gemm_of(DType t) {
  switch (t) {
    case DType::Q4_0: return columns_gemm<DType::Q4_0>;
    case DType::Q4_1: return columns_gemm<DType::Q4_1>;
    case DType::Q5_0: return columns_gemm<DType::Q5_0>;
    case DType::Q5_1: return columns_gemm<DType::Q5_1>;
    default: return columns_gemm<DType::Q8_0>;
  }
}

void register_all() {
  struct Level {
    SimdLevel level;
    const char* name;
  };
  for (DType t : {DType::Q4_0, DType::Q8_0, DType::Q4_1, DType::Q5_0, DType::Q5_1}) {
    const bool main_type = t == DType::Q4_0 || t == DType::Q8_0;
    for (Level l : {Level{SimdLevel::Avx512, "avx512"}, Level{SimdLevel::Avx2, "avx2"}}) {
      if (!main_type && l.level != SimdLevel::Avx512) continue;
      const std::string base = std::string(dtype_name(t)) + "/" + l.name;
      benchmark::RegisterBenchmark((base + "/M1_hot").c_str(), run_gemm, t, l.level, 1, 1, kN)
          ->Unit(benchmark::kMicrosecond);
      // 512 rows stay in L2 (0.6 to 1.1 MB): the kernel's own speed, without L3 or memory.
      benchmark::RegisterBenchmark((base + "/M1_l2").c_str(), run_gemm, t, l.level, 1, 1, 512)
          ->Unit(benchmark::kMicrosecond);
      if (main_type) {
        benchmark::RegisterBenchmark((base + "/M1_stream").c_str(), run_gemm, t, l.level, 1, stream_pool(t, 1), kN)
            ->Unit(benchmark::kMicrosecond);
        // Two threads splitting the rows, timed by the wall clock: the decode case of the model.
        benchmark::RegisterBenchmark((base + "/M1_stream").c_str(), run_gemm, t, l.level, 1, stream_pool(t, 2), kN)
            ->Threads(2)
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
      }
      benchmark::RegisterBenchmark((base + "/M128").c_str(), run_gemm, t, l.level, 128, 1, kN)
          ->Unit(benchmark::kMillisecond);
      // Decode steps of several sequences, the weights hot in L3: the level's own gemm, and on
      // AVX-512 the column-tile kernel called directly (what the gemm picks for these rows).
      for (std::int64_t M : {5, 8, 12, 16, 24, 32, 48, 64}) {
        const std::string m = "/M" + std::to_string(M) + "_hot";
        benchmark::RegisterBenchmark((base + m).c_str(), run_gemm, t, l.level, M, 1, kN)
            ->Unit(benchmark::kMicrosecond);
        if (l.level == SimdLevel::Avx512)
          benchmark::RegisterBenchmark((std::string(dtype_name(t)) + "/columns" + m).c_str(), run_gemm_fn, t, l.level, M,
                                       1, kN, columns_gemm_of(t))
              ->Unit(benchmark::kMicrosecond);
      }
    }
  }
}

const int registered = (register_all(), 0);

}  // namespace
}  // namespace kiln::kernels
