// Decode attention over one KV head at the 1.1B shape (rows of 256 values, head size 64, 8 query
// heads per KV head) for each KV cache type: the scores (q·kᵀ) and the weighted sum of values
// over `positions` cached rows, as LlamaModel's paged attention calls them a block of 16 rows at
// a time. The rows of 22 layers are walked in turn, so the cache (tens of MB) is read from
// memory as in decode rather than from the CPU's caches. One thread; counter rows/s is cached
// positions attended per second, GB/s the cache bytes of the head's slices read.
//
//   build/bench/kv_attention_bench --benchmark_min_time=1
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "core/cpu_features.h"
#include "core/dtype.h"
#include "kernels/kv_quants.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"

namespace {

using kiln::DType;

constexpr std::int64_t kKvDim = 256, kHeadDim = 64, kGroup = 8, kLayers = 22, kBlock = 16;

void attention_bench(benchmark::State& state, DType type) {
  const std::int64_t positions = state.range(0);
  const std::size_t row_bytes = kiln::row_bytes(type, kKvDim);
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> row(kKvDim);
  // (layers, K and V, positions, kv_dim) of `type`.
  std::vector<std::uint8_t> cache(static_cast<std::size_t>(kLayers * 2 * positions) * row_bytes);
  for (std::size_t r = 0; r < static_cast<std::size_t>(kLayers * 2 * positions); ++r) {
    for (float& v : row) v = dist(rng);
    kiln::kernels::quantize_row_ref(type, row.data(), cache.data() + r * row_bytes, kKvDim);
  }
  std::vector<float> q(kGroup * kHeadDim), scores(static_cast<std::size_t>(kGroup * positions)),
      out(kGroup * kHeadDim);
  for (float& v : q) v = dist(rng);
  const std::size_t head_bytes = row_bytes / (kKvDim / kHeadDim);  // the slice of KV head 1
  for (auto _ : state) {
    for (std::int64_t l = 0; l < kLayers; ++l) {
      const std::uint8_t* k = cache.data() + static_cast<std::size_t>(2 * l * positions) * row_bytes + head_bytes;
      const std::uint8_t* v = k + static_cast<std::size_t>(positions) * row_bytes;
      for (std::int64_t p0 = 0; p0 < positions; p0 += kBlock) {
        const std::uint8_t* kr = k + static_cast<std::size_t>(p0) * row_bytes;
        if (type == DType::F16)
          kiln::kernels::attn_scores_f16(reinterpret_cast<const std::uint16_t*>(kr), kKvDim, kBlock, q.data(),
                                         kHeadDim, kGroup, kHeadDim, 0.125f, scores.data() + p0, positions);
        else
          kiln::kernels::attn_scores_q(type, kr, row_bytes, kBlock, q.data(), kHeadDim, kGroup, kHeadDim, 0.125f,
                                       scores.data() + p0, positions);
      }
      for (std::int64_t p0 = 0; p0 < positions; p0 += kBlock) {
        const std::uint8_t* vr = v + static_cast<std::size_t>(p0) * row_bytes;
        if (type == DType::F16)
          kiln::kernels::attn_values_f16(reinterpret_cast<const std::uint16_t*>(vr), kKvDim, kBlock,
                                         scores.data() + p0, positions, kGroup, kHeadDim, out.data(), kHeadDim);
        else
          kiln::kernels::attn_values_q(type, vr, row_bytes, kBlock, scores.data() + p0, positions, kGroup, kHeadDim,
                                       out.data(), kHeadDim);
      }
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetLabel(std::string(kiln::dtype_name(type)) + " " + std::string(kiln::simd_level_name(kiln::simd_level())));
  const double rows = static_cast<double>(state.iterations()) * static_cast<double>(kLayers * positions);
  state.counters["rows/s"] = benchmark::Counter(rows, benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  state.counters["GB/s"] = benchmark::Counter(rows * 2.0 * static_cast<double>(head_bytes), benchmark::Counter::kIsRate,
                                              benchmark::Counter::kIs1000);
}

}  // namespace

BENCHMARK_CAPTURE(attention_bench, f16, DType::F16)->Arg(1024)->Arg(4096);
BENCHMARK_CAPTURE(attention_bench, q8_0, DType::Q8_0)->Arg(1024)->Arg(4096);
BENCHMARK_CAPTURE(attention_bench, q4_1, DType::Q4_1)->Arg(1024)->Arg(4096);
BENCHMARK_CAPTURE(attention_bench, q4_0, DType::Q4_0)->Arg(1024)->Arg(4096);
