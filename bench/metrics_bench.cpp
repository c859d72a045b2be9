// What recording a metric costs on the engine's hot path, and what a scrape costs:
//   BM_CounterInc, BM_GaugeSet      a counter's and a gauge's update through a handle (atomics)
//   BM_HistogramObserve             a histogram observation (prometheus-cpp takes the histogram's mutex)
//   BM_HistogramObserveScraped      the same while another thread collects the registry without pause
//   BM_CounterLookup                finding a labelled series by name and labels (once per request)
//   BM_EngineStepRecording          what the engine records per decode step of 16 sequences
//   BM_Scrape                       collect + text format of one model's engine series
// docs/metrics.md puts these beside a decode step (milliseconds) and docs/benchmarks.md gives the
// whole-engine comparison with the metrics off.
#include <benchmark/benchmark.h>

#include <atomic>
#include <thread>

#include "monitor/registry.h"
#include "monitor/text_format.h"
#include "runtime/engine_metrics.h"

namespace {

using kiln::monitor::Registry;

void BM_CounterInc(benchmark::State& state) {
  Registry r;
  const kiln::monitor::Counter c = r.counter("b_total", "b", {{"model", "m"}});
  for (auto _ : state) c.inc();
}
BENCHMARK(BM_CounterInc);

void BM_GaugeSet(benchmark::State& state) {
  Registry r;
  const kiln::monitor::Gauge g = r.gauge("b", "b", {{"model", "m"}});
  double v = 0;
  for (auto _ : state) g.set(v += 1);
}
BENCHMARK(BM_GaugeSet);

void BM_HistogramObserve(benchmark::State& state) {
  Registry r;
  const kiln::monitor::Histogram h =
      r.histogram("b_seconds", "b", {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}, {{"model", "m"}});
  double v = 0;
  for (auto _ : state) h.observe(v = v > 10 ? 0 : v + 0.013);
}
BENCHMARK(BM_HistogramObserve);

void BM_HistogramObserveScraped(benchmark::State& state) {
  Registry r;
  const kiln::monitor::Histogram h =
      r.histogram("b_seconds", "b", {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}, {{"model", "m"}});
  std::atomic<bool> stop{false};
  std::thread scraper([&] {
    while (!stop) benchmark::DoNotOptimize(r.collect());
  });
  double v = 0;
  for (auto _ : state) h.observe(v = v > 10 ? 0 : v + 0.013);
  stop = true;
  scraper.join();
}
BENCHMARK(BM_HistogramObserveScraped)->UseRealTime();

void BM_CounterLookup(benchmark::State& state) {
  Registry r;
  kiln::EngineMetrics engine(r, "m");  // a registry with the engine's families in it
  for (auto _ : state)
    r.counter("kiln_requests_total", "Requests.", {{"endpoint", "/v1/completions"}, {"model", "m"}, {"status", "200"}})
        .inc();
}
BENCHMARK(BM_CounterLookup);

void BM_EngineStepRecording(benchmark::State& state) {
  Registry r;
  kiln::EngineMetrics m(r, "m");
  for (auto _ : state) {
    m.busy_seconds.inc(0.02);
    m.steps.inc();
    m.step_tokens.observe(16);
    m.step_sequences.observe(16);
    m.generated_tokens.inc(16);
    m.running.set(16);
    m.kv_blocks_used.set(100);
    m.kv_blocks_cached.set(3);
    m.kv_blocks.set(1000);
    m.waiting.set(0);
  }
}
BENCHMARK(BM_EngineStepRecording);

void BM_Scrape(benchmark::State& state) {
  Registry r;
  kiln::EngineMetrics m(r, "m");
  for (auto _ : state) benchmark::DoNotOptimize(kiln::monitor::to_text(r.collect()));
}
BENCHMARK(BM_Scrape);

}  // namespace
