// Single-thread speed of the AMX prefill gemm (kernels/amx_gemm.h) on the shape of a 1.1B
// Llama's FFN up/gate projection: K = 2048, N = 5632, M = 128 or 512 activation rows.
// The counter GFLOP/s counts 2 * M * N * K per iteration (the weight decode is included in
// the time, the activation conversion is not: it is shared by all projections of a layer).
//
//   ninja -C build-amx amx_gemm_bench && build-amx/bench/amx_gemm_bench
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
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

void BM_AmxGemm(benchmark::State& state, DType type) {
  if (!amx_supports(type)) {
    state.SkipWithError("AMX is not available for this type on this CPU/OS");
    return;
  }
  const std::int64_t M = state.range(0);
  const std::size_t stride = row_bytes(type, kK);
  const std::vector<std::uint8_t> w = make_weights(type, stride);
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> x(M * kK);
  for (float& v : x) v = dist(rng);
  std::vector<std::uint16_t> a(M * kK);
  amx_convert_activations(x.data(), M, kK, a.data());
  std::vector<float> y(M * kN);
  for (auto _ : state) {
    amx_gemm(type, kK, w.data(), stride, a.data(), kK, M, 0, kN, y.data(), kN);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double gflop_per_call = 2.0 * static_cast<double>(M * kN * kK) / 1e9;
  state.counters["GFLOP/s"] =
      benchmark::Counter(gflop_per_call * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

BENCHMARK_CAPTURE(BM_AmxGemm, q4_0, DType::Q4_0)->Arg(128)->Arg(512)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_AmxGemm, q8_0, DType::Q8_0)->Arg(128)->Arg(512)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_AmxGemm, f16, DType::F16)->Arg(128)->Arg(512)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace kiln::kernels
