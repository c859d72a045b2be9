#pragma once
// The serving engine: continuous batching of many generation requests through one model.
//
// One engine thread owns the model, the paged KV cache and the thread pool, and loops over
// steps. Each step builds one Batch for LlamaModel::forward from
//   - one new token of every running (decoding) sequence, and
//   - chunks of waiting prompts, admitted in arrival order while the step's token budget
//     and the cache have room (`decode_step_tokens` while streams decode, `max_batch_tokens`
//     otherwise),
// so a long prompt is prefilled over several steps and never stalls the running streams.
// Embedding inputs (submit_embeddings) are scheduled as prompts that are never sampled: their
// final hidden states are pooled into a vector, and their KV blocks freed.
// Prompts that share a prefix with a sequence already in the cache (a system prompt, a chat
// history) reuse its KV blocks instead of recomputing them (prefix caching, whole blocks).
//
// Requests arrive from any thread through submit(); their results leave through callbacks that
// run on the engine thread and must be quick (the HTTP layer posts them to its own loop).
// Text, not only tokens, comes out: the engine detokenizes incrementally (valid UTF-8 at every
// event) and applies the stop strings, holding back text that might still turn into one, so a
// stop string that spans token boundaries is caught and never shown.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "runtime/embedding_pooling.h"
#include "runtime/speculative_options.h"
#include "sample/sampler.h"

namespace kiln {

class LlamaModel;
class Tokenizer;
struct LlamaConfig;
namespace monitor {
class Registry;
}
namespace grammar {
class CompiledGrammar;
}

// Why a sequence ended, as the OpenAI API spells the first two.
enum class FinishReason {
  Stop,       // an end-of-generation token or a stop string
  Length,     // max_tokens reached, or the context is full
  Cancelled,  // the client went away (RequestHandle::cancel)
  Deadline,   // the request's deadline passed
  Error,      // see Finish::error
};
const char* finish_reason_name(FinishReason r);  // "stop", "length", "cancelled", "deadline", "error"

struct GenerationRequest {
  std::vector<std::int32_t> prompt;   // token ids, BOS included if wanted; must be non-empty
  SamplerParams sampling;             // validated by submit()
  int max_tokens = 256;               // new tokens at most (the context may end it earlier)
  std::vector<std::string> stop;      // stop strings (matched in the generated text)
  bool ignore_eos = false;            // keep going past end-of-generation tokens
  int top_logprobs = -1;              // -1: no logprobs; 0..20: logprob of the chosen token and this many alternatives
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  // Sequences of one client request (its prompts x n choices) share a group; running slots are
  // shared fairly between groups (see EngineOptions::max_running). 0: a group of its own.
  std::uint64_t group = 0;
  // Constrained decoding: each logit row is masked to the tokens the grammar allows next
  // (others -inf, before the sampler and the logprobs), end-of-generation tokens are allowed
  // only where the grammar may end, and the sequence stops (FinishReason::Stop) as soon as the
  // grammar can take nothing more. It must be compiled for the engine's tokenizer.
  std::shared_ptr<const grammar::CompiledGrammar> grammar;
};

// Log-probability of one token (natural log, after penalties, at temperature 1 over the whole vocabulary).
struct TokenLogprob {
  std::int32_t id = 0;
  float logprob = 0;
};

// One generated token as the client sees it.
struct TokenEvent {
  std::int32_t id = 0;
  std::string text;                    // text this token releases (may be empty while a stop string or UTF-8 char is pending)
  float logprob = 0;                   // of the chosen token (when top_logprobs >= 0)
  std::vector<TokenLogprob> top;       // the top_logprobs most likely alternatives, best first
};

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int cached_tokens = 0;  // prompt tokens whose KV came from the prefix cache
};

struct Finish {
  FinishReason reason = FinishReason::Stop;
  std::string text;   // text released at the end (held-back text that turned out not to be a stop string)
  std::string error;  // for FinishReason::Error
  Usage usage;
  double time_to_first_token_s = 0;  // from submit to the first token event
  double total_s = 0;                // from submit to finish
  // The three parts of total_s: waiting to be admitted (submit to the first admission), prefill
  // (admission to the first token sampled), and decode (the rest: every later token, and any
  // wait after a preemption). A request that ended before admission was all queue.
  double queue_s = 0;
  double prefill_s = 0;
  double decode_s = 0;
};

// Callbacks run on the engine thread. on_token is called once per generated token, in order;
// on_finish exactly once, last (also for cancelled or failed requests).
struct GenerationCallbacks {
  std::function<void(const TokenEvent&)> on_token;
  std::function<void(const Finish&)> on_finish;
};

// Lets the submitter cancel; cancellation takes effect at the next step (the sequence's KV
// blocks are freed then), and on_finish still runs with FinishReason::Cancelled.
class RequestHandle {
 public:
  void cancel() { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }
  std::uint64_t id() const { return id_; }
  explicit RequestHandle(std::uint64_t id) : id_(id) {}
  void set_id(std::uint64_t id) { id_ = id; }

 private:
  std::atomic<bool> cancelled_{false};
  std::uint64_t id_;
};

// One input of an embedding request: its tokens are run through the model like a prompt (in
// chunks of the step's token budget, beside other work), nothing is sampled, and the final
// hidden states (after the output norm) of the positions the pooling wants are pooled.
struct EmbeddingRequest {
  std::vector<std::int32_t> tokens;  // BOS/EOS included as wanted; 1..context_tokens ids
  Pooling pooling = Pooling::Mean;
};

struct EmbeddingResult {
  FinishReason reason = FinishReason::Stop;  // Stop when computed; Cancelled, Deadline or Error otherwise
  std::string error;                         // for FinishReason::Error
  // (n_embd) pooled, or (n_tokens, n_embd) with Pooling::None; not normalised.
  std::vector<float> embedding;
  int prompt_tokens = 0;
  double queue_s = 0;  // from submit to the first admission
  double total_s = 0;  // from submit to the result
};

// Called once per input, on the engine thread, with the input's index in the submitted batch.
using EmbeddingCallback = std::function<void(std::size_t index, const EmbeddingResult&)>;

struct EngineOptions {
  int threads = 0;              // compute threads; 0 = all cores
  int context_tokens = 0;       // longest sequence (prompt + generated); 0 = the model's training context, within the KV budget
  int kv_cache_tokens = 0;      // KV pool size in positions over all sequences; 0 = 4 x context_tokens, within the KV budget
  std::size_t kv_memory_bytes = 0;  // what the defaults above may spend on the KV pool; 0 = a quarter of physical memory
  DType kv_type = DType::F16;   // KV cache element type (model/kv_cache.h): q8_0 / q4_0 / q4_1 fit 1.9 / 3.6 / 3.2 x the positions in a budget
  int max_batch_tokens = 512;   // token budget of one step (decode tokens + prefill chunks)
  // Token budget of a step that carries decode tokens (stall-free batching, as Sarathi-Serve
  // schedules it): the decodes go first and prompt chunks fill the rest, so a prompt that arrives
  // while streams run makes no step much longer than a decode step. Prefill keeps at least
  // as many tokens as there are decodes (kMinPrefillChunk at least). Steps without decodes (nothing
  // to stall) use max_batch_tokens. 0: max_batch_tokens always.
  int decode_step_tokens = 64;
  // Sequences decoding at once. While sequences of several groups compete for them, each group
  // gets an equal share (max_running / groups with work, at least 1): a group over its share gives
  // up its youngest sequences to a group under it (preemption), so one request of many choices
  // cannot hold every slot while other requests wait. Slots no other group wants are used in full.
  int max_running = 64;
  int max_queued = 256;         // requests waiting for admission; submit() refuses beyond it
  bool prefix_cache = true;     // share KV blocks of common prompt prefixes
  // Where the engine records its metrics (runtime/engine_metrics.h), every series labelled
  // model=metrics_model; a server passes its one registry. nullptr: a registry of the engine's
  // own, so that stats() works without one. record_metrics = false records nothing at all (stats()
  // then reads zeros): the baseline the metrics' overhead is measured against (kiln bench --no-metrics).
  std::shared_ptr<monitor::Registry> metrics;
  std::string metrics_model;
  bool record_metrics = true;
  // Speculative decoding (runtime/speculative.h): a draft model that shares the model's tokenizer
  // (check_draft_compatible) proposes tokens for decoding sequences, and the step's one forward
  // verifies them beside everything else. It runs while at most speculative.max_sequences
  // sequences decode; sequences with a grammar or logprobs decode without it. nullptr: off. Not
  // owned; it must outlive the engine. Its KV cache holds kv_cache_tokens positions.
  LlamaModel* draft = nullptr;
  SpeculativeOptions speculative;
};

// The engine's metrics as a typed snapshot, read from its series in the registry (the numbers
// /metrics and /stats show); cheap to take from any thread. Cumulative fields count since the
// series were made: a server's engine that is unloaded and loaded again continues them.
struct EngineStats {
  int running = 0;               // sequences in the batch (prefilling or decoding)
  int queued = 0;                // waiting for admission
  int kv_blocks_total = 0;
  int kv_blocks_used = 0;        // held by live sequences or the prefix cache
  int kv_blocks_cached = 0;      // held only by the prefix cache (reclaimable)
  int kv_block_tokens = 0;       // positions per block
  std::uint64_t requests_total = 0;
  std::uint64_t requests_cancelled = 0;
  std::uint64_t prompt_tokens_total = 0;
  std::uint64_t prompt_tokens_cached = 0;  // prefix-cache hits
  std::uint64_t generated_tokens_total = 0;
  std::uint64_t steps_total = 0;
  std::uint64_t preemptions_total = 0;     // sequences pushed out of the cache and recomputed later
  std::uint64_t draft_tokens_total = 0;    // tokens a draft model proposed (speculative decoding)
  std::uint64_t accepted_tokens_total = 0; // of those, accepted by the model
  double busy_seconds = 0;       // time spent in forward passes
};

// Prompt tokens a step that carries decode tokens still gives to prefill when the decodes alone
// fill its budget: as many as there are decodes, and at least kMinPrefillChunk, so that admitted
// prompts keep moving while many streams decode (with 64 streams a fixed 16 left the last
// prompts of a burst waiting 50 s for their first token) while the step stays within about twice
// the cost of its decodes alone (the products' cost grows with their rows once compute-bound).
constexpr int kMinPrefillChunk = 16;

// Bytes of one position of the engine's KV cache over all layers (K and V, of kv_type).
std::size_t kv_bytes_per_token(const LlamaConfig& config, DType kv_type = DType::F16);

// The options an engine over this model really runs with: zeros replaced by defaults, checked.
// With context_tokens 0 the context is the model's training context; with kv_cache_tokens 0 the
// pool holds four such sequences. Both defaults shrink to fit kv_memory_bytes (a model trained
// on 128k tokens would otherwise ask for tens of GiB); explicit values are taken as given.
// Throws kiln::Error when the budget cannot hold one useful sequence.
EngineOptions resolve_engine_options(const LlamaConfig& config, EngineOptions requested);

// Thrown by submit() when the queue is full (the HTTP layer answers 429 with Retry-After).
struct QueueFullError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Engine {
 public:
  // The engine does not own the model or tokenizer; they must outlive it. Starts its thread.
  Engine(LlamaModel& model, const Tokenizer& tokenizer, const EngineOptions& options);
  ~Engine();  // stops: cancels everything still queued or running, joins the thread
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request. Throws kiln::Error on invalid requests (empty prompt, prompt longer than
  // the context, bad sampling parameters, token ids outside the vocabulary) and QueueFullError
  // when max_queued requests are already waiting. Callbacks run on the engine thread.
  std::shared_ptr<RequestHandle> submit(GenerationRequest request, GenerationCallbacks callbacks);

  // Queues the inputs of one embedding request; each becomes a sequence of its own, scheduled
  // as prompts are (several in one forward pass) and freed from the cache when pooled (never
  // offered to the prefix cache). The inputs share one fairness group and one handle, whose
  // cancel() ends them all. The queue limit is checked once for the whole batch: a request of
  // many inputs is taken whole or refused (QueueFullError). Throws kiln::Error naming the input
  // ("input 3: ...") when one is empty, longer than the context or outside the vocabulary.
  std::shared_ptr<RequestHandle> submit_embeddings(
      std::vector<EmbeddingRequest> inputs, EmbeddingCallback on_result,
      std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max());

  // Stops admitting new work (submit throws QueueFullError) and waits until everything in
  // flight has finished or `grace` has passed; what is left is then cancelled. Returns true
  // when everything finished on its own.
  bool drain(std::chrono::milliseconds grace);

  EngineStats stats() const;
  const EngineOptions& options() const;  // with defaults resolved
  int context_tokens() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln
