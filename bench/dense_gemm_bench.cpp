// dense_gemm at the shapes one training step of a small Llama runs (2048 tokens: batch 8 ×
// context 256), for f32 and bf16, on 1 and 2 threads. Counter GFLOP/s: 2·M·N·K per second.
//   fwd   Y (T, out)  = X (T, in) · Wᵀ        A as stored, B stored transposed
//   dx    dX (T, in)  = dY (T, out) · W       both as stored
//   dw    dW (out, in) = dYᵀ · X              A stored transposed
// with (in, out) = (384, 1024), the FFN of the 11M-parameter config, and (640, 8192), the
// output layer of the 51M one.
//
//   build/bench/dense_gemm_bench --benchmark_min_time=1
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/dense_gemm.h"

namespace {

using kiln::kernels::GemmPrecision;
using kiln::kernels::MatrixArg;

constexpr std::int64_t kTokens = 2048;

void gemm_bench(benchmark::State& state, GemmPrecision precision, int kind) {
  const std::int64_t in = state.range(0), out = state.range(1);
  const int threads = static_cast<int>(state.range(2));
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  auto random = [&](std::int64_t n) {
    std::vector<float> v(static_cast<std::size_t>(n));
    for (float& x : v) x = dist(rng);
    return v;
  };
  const std::vector<float> x = random(kTokens * in), w = random(out * in), dy = random(kTokens * out);
  std::vector<float> c(static_cast<std::size_t>(std::max(kTokens * std::max(in, out), in * out)));
  kiln::ThreadPool pool(threads);
  std::int64_t M = 0, N = 0, K = 0;
  MatrixArg a, b;
  switch (kind) {
    case 0: M = kTokens, N = out, K = in, a = {x.data(), in, false}, b = {w.data(), in, true}; break;
    case 1: M = kTokens, N = in, K = out, a = {dy.data(), out, false}, b = {w.data(), in, false}; break;
    default: M = out, N = in, K = kTokens, a = {dy.data(), out, true}, b = {x.data(), in, false}; break;
  }
  for (auto _ : state) {
    kiln::kernels::dense_gemm(M, N, K, a, b, c.data(), N, false, precision, pool);
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(M * N * K),
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

void args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"in", "out", "threads"})->UseRealTime()->Unit(benchmark::kMillisecond);
  for (int threads : {1, 2}) {
    b->Args({384, 1024, threads});
    b->Args({640, 8192, threads});
  }
}

BENCHMARK_CAPTURE(gemm_bench, f32_fwd, GemmPrecision::F32, 0)->Apply(args);
BENCHMARK_CAPTURE(gemm_bench, f32_dx, GemmPrecision::F32, 1)->Apply(args);
BENCHMARK_CAPTURE(gemm_bench, f32_dw, GemmPrecision::F32, 2)->Apply(args);
BENCHMARK_CAPTURE(gemm_bench, bf16_fwd, GemmPrecision::BF16, 0)->Apply(args);
BENCHMARK_CAPTURE(gemm_bench, bf16_dx, GemmPrecision::BF16, 1)->Apply(args);
BENCHMARK_CAPTURE(gemm_bench, bf16_dw, GemmPrecision::BF16, 2)->Apply(args);

}  // namespace
