#include "runtime/engine_metrics.h"

#include <vector>

#include "monitor/registry.h"

namespace kiln {

namespace {

// Bucket bounds. CPU serving spans three decades: a small model's first token comes in a few
// milliseconds, a 7B model's under load in tens of seconds, so the latency buckets run from 1 ms
// to minutes, closer together where service objectives usually sit (0.1 to 5 s).
const std::vector<double> kWaitSeconds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15,
                                          0.2,   0.3,    0.5,   0.75, 1,     1.5,  2,     3,   5,
                                          7.5,   10,     15,    20,   30,    60,   120,   300};
const std::vector<double> kRequestSeconds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,   2,   3,   5,   7.5,
                                             10,    15,   20,    30,   45,  60,   90,  120, 180, 300, 600, 1200};
// Decode of one token: 1 ms (a tiny model) to a few seconds (a large one under heavy batching).
const std::vector<double> kTokenSeconds = {0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02,
                                           0.025,  0.03,  0.04,   0.05,  0.075,  0.1,  0.15,  0.2,
                                           0.3,    0.4,   0.5,    0.75,  1,      2.5,  5};
const std::vector<double> kTokenCounts = {1,    2,    5,    10,    20,    50,    100,    200,   500,
                                          1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000};
const std::vector<double> kStepTokens = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384};
const std::vector<double> kStepSequences = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};

}  // namespace

EngineMetrics::EngineMetrics(monitor::Registry& r, const std::string& model) {
  const monitor::Labels m = {{"model", model}};
  running =
      r.gauge("kiln_requests_running", "Requests in the engine's batch, prefilling or decoding (one per choice).", m);
  waiting =
      r.gauge("kiln_requests_waiting", "Requests waiting for admission to the engine's batch (one per choice).", m);
  kv_blocks = r.gauge("kiln_kv_cache_blocks", "Blocks in the KV cache pool.", m);
  kv_blocks_used =
      r.gauge("kiln_kv_cache_blocks_used", "KV cache blocks held by running requests or the prefix cache.", m);
  kv_blocks_cached =
      r.gauge("kiln_kv_cache_blocks_cached", "KV cache blocks held only by the prefix cache (reclaimable).", m);
  kv_block_tokens = r.gauge("kiln_kv_cache_block_tokens", "Token positions per KV cache block.", m);

  requests = r.counter("kiln_engine_requests_total", "Requests submitted to the engine (one per choice).", m);
  for (FinishReason reason : {FinishReason::Stop, FinishReason::Length, FinishReason::Cancelled, FinishReason::Deadline,
                              FinishReason::Error}) {
    finished_by(reason) = r.counter("kiln_engine_requests_finished_total", "Requests the engine finished, by reason.",
                                    {{"model", model}, {"reason", finish_reason_name(reason)}});
  }
  prompt_tokens = r.counter("kiln_prompt_tokens_total", "Prompt tokens of the requests submitted.", m);
  prompt_tokens_cached = r.counter("kiln_prompt_tokens_cached_total",
                                   "Prompt tokens whose KV came from the prefix cache when first admitted.", m);
  generated_tokens = r.counter("kiln_generated_tokens_total", "Tokens generated.", m);
  prefix_cache_queries =
      r.counter("kiln_prefix_cache_queries_total", "Tokens looked up in the prefix cache, at every admission.", m);
  prefix_cache_hits =
      r.counter("kiln_prefix_cache_hits_total", "Tokens found in the prefix cache, at every admission.", m);
  preemptions =
      r.counter("kiln_preemptions_total", "Running requests pushed out of the KV cache, to be recomputed.", m);
  steps = r.counter("kiln_engine_steps_total", "Forward steps of the engine.", m);
  busy_seconds = r.counter("kiln_engine_busy_seconds_total", "Time spent in forward steps.", m);
  draft_tokens = r.counter("kiln_spec_decode_draft_tokens_total",
                           "Tokens a draft model proposed for speculative decoding.", m);
  accepted_tokens = r.counter("kiln_spec_decode_accepted_tokens_total",
                              "Tokens a draft model proposed that the model accepted.", m);

  time_to_first_token = r.histogram("kiln_time_to_first_token_seconds",
                                    "From a request's submission to its first generated token.", kWaitSeconds, m);
  time_per_output_token = r.histogram(
      "kiln_time_per_output_token_seconds",
      "A finished request's decode time per token after the first (requests of 2 tokens or more).", kTokenSeconds, m);
  e2e_latency =
      r.histogram("kiln_e2e_request_latency_seconds",
                  "From a request's submission to its end (requests finished by stop or length).", kRequestSeconds, m);
  queue_time = r.histogram("kiln_request_queue_time_seconds", "From a request's submission to its first admission.",
                           kWaitSeconds, m);
  prompt_length = r.histogram("kiln_request_prompt_tokens", "Prompt tokens of finished requests.", kTokenCounts, m);
  generation_length =
      r.histogram("kiln_request_generation_tokens", "Generated tokens of finished requests.", kTokenCounts, m);
  step_tokens = r.histogram("kiln_engine_step_tokens", "Tokens in the batch of each forward step.", kStepTokens, m);
  step_sequences = r.histogram("kiln_engine_step_sequences", "Requests with tokens in the batch of each forward step.",
                               kStepSequences, m);
}

EngineStats EngineMetrics::stats() const {
  EngineStats s;
  s.running = static_cast<int>(running.value());
  s.queued = static_cast<int>(waiting.value());
  s.kv_blocks_total = static_cast<int>(kv_blocks.value());
  s.kv_blocks_used = static_cast<int>(kv_blocks_used.value());
  s.kv_blocks_cached = static_cast<int>(kv_blocks_cached.value());
  s.kv_block_tokens = static_cast<int>(kv_block_tokens.value());
  s.requests_total = static_cast<std::uint64_t>(requests.value());
  s.requests_cancelled =
      static_cast<std::uint64_t>(finished[static_cast<std::size_t>(FinishReason::Cancelled)].value() +
                                 finished[static_cast<std::size_t>(FinishReason::Deadline)].value());
  s.prompt_tokens_total = static_cast<std::uint64_t>(prompt_tokens.value());
  s.prompt_tokens_cached = static_cast<std::uint64_t>(prompt_tokens_cached.value());
  s.generated_tokens_total = static_cast<std::uint64_t>(generated_tokens.value());
  s.steps_total = static_cast<std::uint64_t>(steps.value());
  s.preemptions_total = static_cast<std::uint64_t>(preemptions.value());
  s.busy_seconds = busy_seconds.value();
  s.draft_tokens_total = static_cast<std::uint64_t>(draft_tokens.value());
  s.accepted_tokens_total = static_cast<std::uint64_t>(accepted_tokens.value());
  return s;
}

}  // namespace kiln
