// Single-thread speed of the AMX prefill gemm (kernels/amx_gemm.h) on the shape of a 1.1B
// Llama's FFN up/gate projection: K = 2048, N = 5632, M = 128 or 512 activation rows; and,
// for choosing the dispatch, smaller M and chunked calls, next to the VNNI kernels.
// The counter GFLOP/s counts 2 * M * N * K per iteration (the weight decode is included in
// the time, the activation conversion is not: it is shared by all projections of a layer).
//
//   ninja -C build-amx amx_gemm_bench && build-amx/bench/amx_gemm_bench
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <random>
#include <vector>

#include "core/half.h"
#include "kernels/amx_gemm.h"
#include "kernels/matmul.h"

namespace kiln::kernels {
namespace {

constexpr std::int64_t kK = 2048, kN = 5632;

// N rows of K weights in the stored type, from one random row repeated with different scales
// (quantizing 11.5M weights with the reference quantizer would dominate the start-up).
std::vector<std::uint8_t> make_weights(DType type, std::size_t stride) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> row(kK);
  std::vector<std::uint8_t> w(stride * kN);
  for (std::int64_t n = 0; n < kN; ++n) {
    if (n < 64)
      for (float& v : row) v = dist(rng);
    if (type == DType::F16) {
      auto* h = reinterpret_cast<std::uint16_t*>(w.data() + n * stride);
      for (std::int64_t k = 0; k < kK; ++k) h[k] = f32_to_f16(row[k]);
    } else if (n < 64) {
      quantize_row_ref(type, row.data(), w.data() + n * stride, kK);
    } else {
      std::copy_n(w.data() + (n % 64) * stride, stride, w.data() + n * stride);
    }
  }
  return w;
}

struct Activations {
  std::vector<float> x;          // (M, K) floats
  std::vector<std::uint16_t> a;  // (M, K) bf16
};

Activations make_activations(std::int64_t M) {
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  Activations act;
  act.x.resize(M * kK);
  for (float& v : act.x) v = dist(rng);
  act.a.resize(M * kK);
  amx_convert_activations(act.x.data(), M, kK, act.a.data());
  return act;
}

void set_gflops(benchmark::State& state, std::int64_t M) {
  const double gflop_per_call = 2.0 * static_cast<double>(M * kN * kK) / 1e9;
  state.counters["GFLOP/s"] =
      benchmark::Counter(gflop_per_call * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

// Args: M, and the number of weight rows per call (as threads would hand out chunks).
void BM_AmxGemm(benchmark::State& state, DType type) {
  if (!amx_supports(type)) {
    state.SkipWithError("AMX is not available for this type on this CPU/OS");
    return;
  }
  const std::int64_t M = state.range(0), chunk = state.range(1);
  const std::size_t stride = row_bytes(type, kK);
  const std::vector<std::uint8_t> w = make_weights(type, stride);
  const Activations act = make_activations(M);
  std::vector<float> y(M * kN);
  for (auto _ : state) {
    for (std::int64_t n0 = 0; n0 < kN; n0 += chunk)
      amx_gemm(type, kK, w.data(), stride, act.a.data(), kK, M, n0, std::min(n0 + chunk, kN), y.data(), kN);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_gflops(state, M);
}

// The same product through the VNNI kernels of matmul.h (activation quantization included),
// to place the M threshold between the two paths.
void BM_VnniGemm(benchmark::State& state, DType type) {
  const std::int64_t M = state.range(0);
  const WeightKernels* kern = nullptr;
  try {
    kern = &weight_kernels(type);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  const std::size_t stride = row_bytes(type, kK);
  const std::vector<std::uint8_t> w = make_weights(type, stride);
  const Activations act = make_activations(M);
  const std::size_t a_stride = row_bytes(kern->act_type, kK);
  std::vector<std::uint8_t> a(a_stride * M);
  std::vector<float> y(M * kN);
  for (auto _ : state) {
    for (std::int64_t m = 0; m < M; ++m) kern->quantize_act(act.x.data() + m * kK, a.data() + m * a_stride, kK);
    kern->gemm(kK, w.data(), stride, a.data(), a_stride, M, 0, kN, y.data(), kN);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_gflops(state, M);
}

// The brief's shapes: whole N in one call, M = 128 and 512.
BENCHMARK_CAPTURE(BM_AmxGemm, q4_0, DType::Q4_0)->Args({128, kN})->Args({512, kN})->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_AmxGemm, q8_0, DType::Q8_0)->Args({128, kN})->Args({512, kN})->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_AmxGemm, f16, DType::F16)->Args({128, kN})->Args({512, kN})->Unit(benchmark::kMillisecond);
// Chunk size per call and small M, for the lead's dispatch (filter with --benchmark_filter=Chunk|Small).
BENCHMARK_CAPTURE(BM_AmxGemm, q4_0_Chunk, DType::Q4_0)
    ->Args({128, 32})
    ->Args({128, 64})
    ->Args({128, 128})
    ->Args({128, 256})
    ->Args({512, 64})
    ->Args({512, 256})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_AmxGemm, q4_0_Small, DType::Q4_0)
    ->Args({8, 64})
    ->Args({16, 64})
    ->Args({32, 64})
    ->Args({64, 64})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_VnniGemm, q4_0_Small, DType::Q4_0)
    ->Arg(8)
    ->Arg(16)
    ->Arg(32)
    ->Arg(64)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_VnniGemm, q8_0_Small, DType::Q8_0)
    ->Arg(8)
    ->Arg(16)
    ->Arg(32)
    ->Arg(64)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace kiln::kernels
