// K-quant weight gemm (q4_K, q6_K) at the shape of a 1B-class model's FFN up projection:
// k = 2048, n = 5632, activations q8_K.
//   M = 1 is the decode matrix-vector product, bound by memory bandwidth. A real decode step
//   streams the whole model (~600 MB for 1.1B at 4.5 bits), far more than any cache, so with
//   from_memory = 1 it cycles through copies of the weight matrix totalling ~640 MB, one copy
//   per iteration. Counter GB/s: weight bytes streamed per second.
//   M = 128 is a prefill batch, bound by arithmetic; one cached copy. Counter GOP/s: 2·M·n·k
//   multiply-adds per second.
// Threads split the n range as the model does; activation conversion is outside the timed loop.
//
//   build-kquant/bench/kquants_gemm_bench --benchmark_min_time=1
//   KILN_SIMD=avx2 build-kquant/bench/kquants_gemm_bench    (the AVX2 path on an AVX-512 machine)
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "kernels/matmul.h"

namespace {

using kiln::DType;

constexpr std::int64_t kK = 2048;
constexpr std::int64_t kN = 5632;
constexpr std::size_t kStreamBytes = std::size_t{640} << 20;

// One quantized (n, k) weight matrix per type, made once (the reference quantizer is slow).
const std::vector<char>& weight_matrix(DType type) {
  static std::map<DType, std::vector<char>> cache;
  std::vector<char>& w = cache[type];
  if (w.empty()) {
    const std::size_t w_stride = kiln::row_bytes(type, kK);
    w.resize(w_stride * kN);
    std::mt19937 rng(1);
    std::normal_distribution<float> dist(0.0f, 0.02f);
    std::vector<float> row(kK);
    for (std::int64_t n = 0; n < kN; ++n) {
      for (float& v : row) v = dist(rng);
      kiln::kernels::quantize_row_ref(type, row.data(), w.data() + n * w_stride, kK);
    }
  }
  return w;
}

void gemm_bench(benchmark::State& state, DType type) {
  const std::int64_t M = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  const bool from_memory = state.range(2) != 0;
  const kiln::kernels::WeightKernels& kernels = kiln::kernels::weight_kernels(type);
  const std::size_t w_stride = kiln::row_bytes(type, kK);
  const std::vector<char>& matrix = weight_matrix(type);

  // Decode reads every weight from memory: cycle through enough copies to defeat the caches.
  const std::size_t copies = from_memory ? kStreamBytes / matrix.size() + 1 : 1;
  std::vector<char> w(matrix.size() * copies);  // `copies` matrices of (n, k) of `type`
  for (std::size_t c = 0; c < copies; ++c) std::memcpy(w.data() + c * matrix.size(), matrix.data(), matrix.size());

  std::mt19937 rng(2);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> row(kK);
  const std::size_t a_stride = kiln::row_bytes(kernels.act_type, kK);
  std::vector<char> a(a_stride * M);  // a is (M, k) of q8_K
  for (std::int64_t m = 0; m < M; ++m) {
    for (float& v : row) v = dist(rng);
    kernels.quantize_act(row.data(), a.data() + m * a_stride, kK);
  }
  std::vector<float> y(static_cast<std::size_t>(M * kN));  // y is (M, n)

  kiln::ThreadPool pool(threads);
  std::size_t copy = 0;
  for (auto _ : state) {
    const char* w_copy = w.data() + copy * matrix.size();
    copy = (copy + 1) % copies;
    pool.run([&](int worker, int n_workers) {
      std::int64_t n_begin, n_end;
      kiln::split_range(kN, worker, n_workers, 16, &n_begin, &n_end);
      kernels.gemm(kK, w_copy, w_stride, a.data(), a_stride, M, n_begin, n_end, y.data(), kN);
    });
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(std::string(kiln::dtype_name(type)) + " " + std::string(kiln::simd_level_name(kernels.level)));
  const double iterations = static_cast<double>(state.iterations());
  if (M == 1) {
    state.counters["GB/s"] = benchmark::Counter(iterations * static_cast<double>(matrix.size()),
                                                benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  }
  state.counters["GOP/s"] = benchmark::Counter(iterations * 2.0 * static_cast<double>(M * kN * kK),
                                               benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

void args(benchmark::internal::Benchmark* b) {
  // from_memory = 0 keeps one copy in cache: the kernel's own speed, without the memory wall.
  b->ArgNames({"M", "threads", "from_memory"})->UseRealTime()->Unit(benchmark::kMillisecond);
  for (int threads : {1, 2}) {
    b->Args({1, threads, 1});
    b->Args({1, threads, 0});
    b->Args({128, threads, 0});
  }
}

BENCHMARK_CAPTURE(gemm_bench, q4_K, DType::Q4_K)->Apply(args);
BENCHMARK_CAPTURE(gemm_bench, q6_K, DType::Q6_K)->Apply(args);

}  // namespace
