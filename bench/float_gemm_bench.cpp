// Float weight gemm (F32, F16, BF16) at the shape of a 1B-class model's FFN up projection:
// k = 2048, n = 5632. M = 1 is the decode matrix-vector product, bound by memory bandwidth
// (counter GB/s: weight bytes streamed per second); M = 128 is a prefill batch, bound by
// arithmetic (counter GFLOP/s: 2·M·n·k per second). Threads split the n range as the model
// does. Activation conversion is outside the timed loop.
//
//   build-float/bench/float_gemm_bench --benchmark_min_time=1
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "kernels/matmul.h"

namespace {

using kiln::DType;

constexpr std::int64_t kK = 2048;
constexpr std::int64_t kN = 5632;

void gemm_bench(benchmark::State& state, DType type) {
  const std::int64_t M = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  const kiln::kernels::WeightKernels& kernels = kiln::kernels::weight_kernels(type);

  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> row(kK);
  const std::size_t w_stride = kiln::row_bytes(type, kK);
  std::vector<char> w(w_stride * kN);  // w is (n, k) of `type`
  for (std::int64_t n = 0; n < kN; ++n) {
    for (float& v : row) v = dist(rng);
    kiln::kernels::quantize_row_ref(type, row.data(), w.data() + n * w_stride, kK);
  }
  const std::size_t a_stride = kiln::row_bytes(kernels.act_type, kK);
  std::vector<char> a(a_stride * M);  // a is (M, k) of act_type
  for (std::int64_t m = 0; m < M; ++m) {
    for (float& v : row) v = dist(rng);
    kernels.quantize_act(row.data(), a.data() + m * a_stride, kK);
  }
  std::vector<float> y(static_cast<std::size_t>(M * kN));  // y is (M, n)

  kiln::ThreadPool pool(threads);
  for (auto _ : state) {
    pool.run([&](int worker, int n_workers) {
      std::int64_t n_begin, n_end;
      kiln::split_range(kN, worker, n_workers, 16, &n_begin, &n_end);
      kernels.gemm(kK, w.data(), w_stride, a.data(), a_stride, M, n_begin, n_end, y.data(), kN);
    });
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(std::string(kiln::dtype_name(type)) + " " + std::string(kiln::simd_level_name(kernels.level)));
  const double iterations = static_cast<double>(state.iterations());
  state.counters["GB/s"] = benchmark::Counter(iterations * static_cast<double>(w.size()), benchmark::Counter::kIsRate,
                                              benchmark::Counter::kIs1000);
  state.counters["GFLOP/s"] = benchmark::Counter(iterations * 2.0 * static_cast<double>(M * kN * kK),
                                                 benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

void args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"M", "threads"})->UseRealTime()->Unit(benchmark::kMillisecond);
  for (int threads : {1, 2}) {
    b->Args({1, threads});
    b->Args({128, threads});
  }
}

BENCHMARK_CAPTURE(gemm_bench, f16, DType::F16)->Apply(args);
BENCHMARK_CAPTURE(gemm_bench, bf16, DType::BF16)->Apply(args);
BENCHMARK_CAPTURE(gemm_bench, f32, DType::F32)->Apply(args);

}  // namespace
