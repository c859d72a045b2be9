// The gradient all-reduce of data-parallel training: DataParallel::average over a float buffer
// the size of a model's gradients. Run it as the ranks of a job:
//
//   mpirun -np 2 --bind-to none build/bench/data_parallel_bench
//
// (plus --allow-run-as-root as root, --oversubscribe with more ranks than cores). Every rank runs
// the same fixed number of iterations, since each is one collective that all ranks must join;
// only rank 0 reports. Without mpirun it times the single-process path (no MPI, no copy).
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <cstdint>
#include <vector>

#include "train/data_parallel.h"

namespace {

using kiln::train::DataParallel;

// Discards every result: ranks other than 0 run the benchmarks but do not print them.
class SilentReporter : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}
};

long minor_page_faults() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

// Arguments: floats in the buffer, the most bytes per MPI call (DataParallel's default, 4 MiB,
// against 1 TiB: the whole buffer in one call).
void BM_AverageFloats(benchmark::State& state) {
  DataParallel& dp = DataParallel::instance();
  const std::int64_t n = state.range(0);
  const std::int64_t default_chunk = dp.max_chunk_bytes();
  dp.set_max_chunk_bytes(state.range(1));
  std::vector<float> grads(static_cast<std::size_t>(n), 1.0f + static_cast<float>(dp.rank()));  // (n)
  dp.barrier();
  const long faults_before = minor_page_faults();
  for (auto _ : state) {
    dp.average(grads.data(), n);
    benchmark::DoNotOptimize(grads.data());
  }
  // Page faults show whether MPI's scratch memory is reused or freshly mapped on every call.
  state.counters["faults_per_call"] =
      static_cast<double>(minor_page_faults() - faults_before) / static_cast<double>(state.iterations());
  state.SetBytesProcessed(state.iterations() * n * static_cast<std::int64_t>(sizeof(float)));
  state.counters["ranks"] = dp.size();
  dp.set_max_chunk_bytes(default_chunk);
}
BENCHMARK(BM_AverageFloats)
    ->Args({1 << 20, 4 << 20})
    ->Args({50'000'000, 4 << 20})
    ->Args({50'000'000, std::int64_t{1} << 40})
    ->Iterations(10)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  DataParallel& dp = DataParallel::instance();
  benchmark::Initialize(&argc, argv);
  if (dp.is_root()) {
    benchmark::RunSpecifiedBenchmarks();
  } else {
    SilentReporter silent;
    benchmark::RunSpecifiedBenchmarks(&silent);
  }
  benchmark::Shutdown();
  return 0;
}
