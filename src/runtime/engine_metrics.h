#pragma once
// What an Engine records in a monitor::Registry, every series labelled model="<name>": the live
// state of its batch and KV pool (gauges, set once per step), what went through it (counters) and
// how long it took (histograms of time to first token, time per output token, end-to-end latency,
// queue time, prompt and generation length, and the tokens and sequences of each forward step).
// The names and meanings are listed in docs/metrics.md.
//
// Handles are taken once, when the engine starts; recording is then an atomic update (a histogram
// observation an uncontended lock), so the engine thread never looks a series up. A default
// EngineMetrics records nothing: the engine's metrics switched off.
#include <array>
#include <string>

#include "monitor/metrics.h"
#include "runtime/engine.h"

namespace kiln {

namespace monitor {
class Registry;
}

struct EngineMetrics {
  EngineMetrics() = default;
  EngineMetrics(monitor::Registry& registry, const std::string& model);

  // Live state, set by the engine thread after each step.
  monitor::Gauge running, waiting, kv_blocks, kv_blocks_used, kv_blocks_cached, kv_block_tokens;

  monitor::Counter requests;                 // submitted (one per choice of a client request)
  std::array<monitor::Counter, 5> finished;  // by FinishReason
  monitor::Counter prompt_tokens;            // of submitted requests
  monitor::Counter prompt_tokens_cached;     // served by the prefix cache at a request's first admission
  monitor::Counter generated_tokens;
  monitor::Counter prefix_cache_queries, prefix_cache_hits;  // tokens looked up / found, every admission
  monitor::Counter preemptions, steps, busy_seconds;
  monitor::Counter draft_tokens, accepted_tokens;  // speculative decoding: proposed by the draft / accepted

  monitor::Histogram time_to_first_token, time_per_output_token, e2e_latency, queue_time;
  monitor::Histogram prompt_length, generation_length;
  monitor::Histogram step_tokens, step_sequences;

  monitor::Counter& finished_by(FinishReason r) { return finished[static_cast<std::size_t>(r)]; }

  // The same numbers as the engine's typed snapshot (Engine::stats()).
  EngineStats stats() const;
};

}  // namespace kiln
