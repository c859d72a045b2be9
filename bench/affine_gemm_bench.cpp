// Single-thread gemm speed of kiln's affine formats beside their nearest ggml types (q4_0, q4_1,
// q8_0), on the shape of a 1.1B Llama's FFN up projection (k = 2048, n = 5632): M = 1 (decode,
// weight GB/s; "hot" reuses one matrix, "stream" walks ~2 GB of distinct matrices as a whole
// model does per token, also on two threads splitting the rows) and M = 16 / 128 (prefill,
// GOP/s; 16 rows and more go to AMX-INT8 tiles where the CPU has them).
//
//   build-x/bench/affine_gemm_bench --benchmark_min_time=0.5s --benchmark_filter=M1_hot
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/dtype.h"
#include "core/half.h"
#include "kernels/matmul.h"

namespace kiln::kernels {
namespace {

constexpr std::int64_t kK = 2048, kN = 5632;

bool has_min(DType t) { return t != DType::Q4_0 && t != DType::Q8_0; }

// Random but well-formed weight rows: every byte random, then each block's f16 scale (and
// minimum) set to a small normal value, so no NaN or infinity reaches the sums.
std::vector<std::uint8_t> random_weights(DType t, std::int64_t rows, unsigned seed) {
  const std::size_t row = row_bytes(t, kK);
  std::vector<std::uint8_t> w(row * rows);
  std::uint64_t state = seed * 0x9E3779B97F4A7C15ull;  // splitmix64, 8 bytes per step
  for (std::size_t i = 0; i + 8 <= w.size(); i += 8) {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    std::memcpy(&w[i], &z, 8);
  }
  const std::size_t block = traits(t).block_bytes;
  for (std::size_t off = 0; off < w.size(); off += block) {
    const std::uint16_t d = f32_to_f16(0.01f + 0.001f * static_cast<float>(w[off + 5] % 16));
    w[off] = static_cast<std::uint8_t>(d);
    w[off + 1] = static_cast<std::uint8_t>(d >> 8);
    if (has_min(t)) w[off + 2] = static_cast<std::uint8_t>(d), w[off + 3] = static_cast<std::uint8_t>(d >> 8);
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

void run_gemm(benchmark::State& state, DType t, SimdLevel level, std::int64_t M, int pool_size) {
  if (level > max_supported_simd_level()) {
    state.SkipWithError("this CPU lacks the SIMD level");
    return;
  }
  const WeightKernels& kernels = weight_kernels(t, level);
  std::vector<std::vector<std::uint8_t>> pool;
  for (int i = 0; i < pool_size; ++i) pool.push_back(random_weights(t, kN, static_cast<unsigned>(i + 1)));
  const auto a = activations(kernels, M);
  std::vector<float> y(M * kN);
  const std::size_t w_stride = row_bytes(t, kK), a_stride = row_bytes(kernels.act_type, kK);
  const std::int64_t n_begin = kN * state.thread_index() / state.threads();
  const std::int64_t n_end = kN * (state.thread_index() + 1) / state.threads();
  int next = 0;
  for (auto _ : state) {
    // Chunks of 32 rows as linear() hands them out for prefill; the whole share for decode.
    const std::int64_t chunk = M == 1 ? n_end - n_begin : 32;
    for (std::int64_t n0 = n_begin; n0 < n_end; n0 += chunk)
      kernels.gemm(kK, pool[next].data(), w_stride, a.data(), a_stride, M, n0, std::min(n0 + chunk, n_end), y.data(),
                   kN);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
    next = (next + 1) % pool_size;
  }
  if (M == 1) {
    const double weight_bytes = static_cast<double>(w_stride) * static_cast<double>(n_end - n_begin);
    state.counters["weight_GB/s"] =
        benchmark::Counter(weight_bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  } else {
    state.counters["GOP/s"] = benchmark::Counter(2.0 * static_cast<double>(M) * kK * (n_end - n_begin) / 1e9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
  }
}

// A pool of distinct matrices well above the caches for the streaming decode runs.
int stream_pool(DType t, int threads) {
  const double matrix = static_cast<double>(row_bytes(t, kK)) * kN / threads;
  return static_cast<int>(2e9 / threads / matrix) + 1;
}

void register_all() {
  for (DType t : {DType::A4G64, DType::A4G128, DType::A8G32, DType::A8G64, DType::A8G128, DType::Q4_0, DType::Q4_1,
                  DType::Q8_0}) {
    const std::string base = std::string(dtype_name(t)) + "/avx512";
    benchmark::RegisterBenchmark((base + "/M1_hot").c_str(), run_gemm, t, SimdLevel::Avx512, 1, 1)
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark((base + "/M1_stream").c_str(), run_gemm, t, SimdLevel::Avx512, 1, stream_pool(t, 2))
        ->Threads(2)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark((base + "/M16").c_str(), run_gemm, t, SimdLevel::Avx512, 16, 1)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark((base + "/M128").c_str(), run_gemm, t, SimdLevel::Avx512, 128, 1)
        ->Unit(benchmark::kMillisecond);
    if (t == DType::A4G64 || t == DType::A8G32)
      benchmark::RegisterBenchmark((std::string(dtype_name(t)) + "/avx2/M1_hot").c_str(), run_gemm, t,
                                   SimdLevel::Avx2, 1, 1)
          ->Unit(benchmark::kMicrosecond);
  }
}

const int registered = (register_all(), 0);

}  // namespace
}  // namespace kiln::kernels
