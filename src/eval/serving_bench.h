#pragma once
// Serving throughput and latency, like vLLM's benchmark_serving without the HTTP layer: N
// streams at once through the continuous-batching engine (the one `kiln serve` runs), each a
// distinct prompt of n_prompt tokens generating n_gen tokens greedily, end of sequence ignored;
// or, with an arrival rate, the same streams arriving one after another (a mixed load).
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "core/dtype.h"

namespace kiln {
class LlamaModel;
class Tokenizer;
}  // namespace kiln

namespace kiln::eval {

struct ServingBenchOptions {
  int n_prompt = 128;
  int n_gen = 64;     // per stream
  int batch = 512;    // the engine's tokens per step (raised to the stream count when smaller)
  int decode_step_tokens = 64;  // the engine's budget of a step with decodes (EngineOptions); 0: `batch`
  // Mixed load: the streams arrive one after another, `arrival_rate` per second (evenly spaced,
  // so runs repeat), new prompts being prefilled while earlier streams decode. 0: all at once.
  double arrival_rate = 0;
  int threads = 0;    // 0: all hardware threads
  // The engine records its metrics into a registry that a thread collects and writes out in the
  // text format every second, as a Prometheus scraping kiln serve at 1 s would. false: the engine
  // records nothing (the baseline of docs/benchmarks.md's overhead comparison).
  bool metrics = true;
  DType kv_type = DType::F16;  // the engine's KV cache type
};

struct ServingBenchResult {
  int streams = 0;
  double wall_s = 0;     // from the first submit to the last finish
  double gen_tok_s = 0;  // generated tokens / wall time, all streams together
  // Decode phase: generated tokens per second from the moment every stream has its first token to
  // the moment the first stream has its last (no prefill in between); 0 when the streams never
  // all decode at once (a staggered run whose first stream ends before the last one starts).
  double decode_tok_s = 0;
  double ttft_p50_ms = 0, ttft_p99_ms = 0;  // time to first token, from the first submit
  double itl_p50_ms = 0, itl_p99_ms = 0;    // inter-token latency within a stream
  std::optional<std::uint64_t> preemptions;  // from the engine's metrics: none when they are off
  std::uint64_t scrapes = 0;                 // collections of the registry during the run
};

// Called before each stream count is measured.
using ServingBenchProgress = std::function<void(int streams)>;

// One short warm-up stream (faults the weights in), then one measurement per entry of
// `stream_counts`, each with a fresh engine and no prefix cache (distinct prompts: the work is
// measured, not the cache). Throws kiln::Error when the options or counts are out of range
// or a stream fails.
std::vector<ServingBenchResult> run_serving_bench(LlamaModel& model, const Tokenizer& tokenizer,
                                                  const ServingBenchOptions& options,
                                                  const std::vector<int>& stream_counts,
                                                  const ServingBenchProgress& progress = {});

}  // namespace kiln::eval
