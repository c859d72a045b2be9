#include "runtime/engine.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <limits>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <unistd.h>

#include "core/error.h"
#include "core/thread_pool.h"
#include "grammar/grammar_matcher.h"
#include "model/llama_model.h"
#include "monitor/registry.h"
#include "runtime/engine_metrics.h"
#include "runtime/prefix_cache.h"
#include "runtime/speculative.h"
#include "runtime/stop_strings.h"
#include "tokenizer/text_stream_decoder.h"
#include "tokenizer/tokenizer.h"

namespace kiln {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Cancelled: return "cancelled";
    case FinishReason::Deadline: return "deadline";
    case FinishReason::Error: return "error";
  }
  return "error";
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// One request on its way through the engine. Waiting sequences hold no cache; running ones own
// a cache sequence whose first n_computed positions hold the keys and values of tokens[0..).
struct Sequence {
  Sequence(const Tokenizer& tokenizer, GenerationRequest r, GenerationCallbacks c, std::shared_ptr<RequestHandle> h)
      : request(std::move(r)),
        callbacks(std::move(c)),
        handle(std::move(h)),
        sampler(request.sampling),
        decoder(tokenizer),
        stops(request.stop) {}

  GenerationRequest request;
  GenerationCallbacks callbacks;
  std::shared_ptr<RequestHandle> handle;
  Sampler sampler;
  TextStreamDecoder decoder;
  StopStringMatcher stops;
  std::unique_ptr<grammar::GrammarMatcher> matcher;  // with request.grammar
  std::vector<std::uint32_t> allowed;                // (n_vocab / 32) the matcher's mask, reused per token
  std::vector<float> masked;                         // (n_vocab) the logit row with disallowed tokens at -inf

  // Speculative decoding (EngineOptions::draft): the sequence in the draft's cache (-1: none yet),
  // the draft's sampler (the request's parameters, a seed of its own), the adaptive length, and
  // this step's proposal (empty when the sequence does not speculate this step).
  int draft_seq = -1;
  std::unique_ptr<Sampler> draft_sampler;
  DraftLength draft_length;
  DraftProposal proposal;

  std::uint64_t group = 0;           // fairness group (GenerationRequest::group, or a group of its own)
  std::vector<std::int32_t> tokens;  // (n_prompt + n_generated) prompt, then generated ids
  int n_prompt = 0;
  int n_generated = 0;
  int kv_seq = -1;       // cache sequence while running, -1 while waiting
  int n_computed = 0;    // positions of tokens[] already in the cache
  int n_registered = 0;  // leading full blocks already offered to the prefix cache
  int cached_tokens = -1;  // prompt tokens served by the prefix cache at first admission
  std::uint64_t admitted_order = 0;
  Clock::time_point submitted;
  Clock::time_point admitted;        // the first admission (for Finish)
  Clock::time_point first_token;     // the first token event (for Finish)
  Clock::time_point first_sampled;   // the first token sampled, end of generation included (for the metrics)
  bool sent_first_token = false;
  bool sampled = false;

  // An input of an embedding request (submit_embeddings): its tokens are computed, nothing is
  // sampled; the pooler collects the hidden states it wants and on_embedding reports the result.
  bool embedding = false;
  std::size_t embedding_index = 0;
  EmbeddingPooler pooler;
  EmbeddingCallback on_embedding;

  // Tokens that still need a forward pass before the next token can be sampled.
  int pending() const { return static_cast<int>(tokens.size()) - n_computed; }
};

std::size_t physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<std::size_t>(pages) * static_cast<std::size_t>(page) : std::size_t{8} << 30;
}

}  // namespace

std::size_t kv_bytes_per_token(const LlamaConfig& c, DType kv_type) {
  return static_cast<std::size_t>(c.n_layer) * 2 * kv_row_bytes(kv_type, c.kv_dim());
}

EngineOptions resolve_engine_options(const LlamaConfig& config, EngineOptions r) {
  if (r.threads <= 0) r.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const std::size_t per_token = std::max<std::size_t>(1, kv_bytes_per_token(config, r.kv_type));
  const std::size_t budget = r.kv_memory_bytes > 0 ? r.kv_memory_bytes : physical_memory_bytes() / 4;
  constexpr int kBlock = 16;  // KvCacheOptions::block_size: the budget is rounded down to whole blocks
  const std::size_t fit = std::min<std::size_t>(budget / per_token / kBlock * kBlock, std::numeric_limits<int>::max() / 2);
  const int budget_tokens = static_cast<int>(fit);
  if (r.context_tokens <= 0) {
    const int trained = config.n_ctx_train > 0 ? config.n_ctx_train : 2048;
    const int fitted = r.kv_cache_tokens > 0 ? std::min(trained, r.kv_cache_tokens) : std::min(trained, budget_tokens);
    KILN_CHECK(fitted >= 64,
               "engine: the KV memory budget ({} MiB) holds only {} positions of this model ({} KiB each); raise it or "
               "give the context explicitly",
               budget >> 20, budget_tokens, per_token >> 10);
    r.context_tokens = fitted;
  }
  if (r.kv_cache_tokens <= 0) {
    const long long four = 4LL * r.context_tokens;
    r.kv_cache_tokens = static_cast<int>(std::max<long long>(r.context_tokens, std::min<long long>(four, budget_tokens)));
  }
  KILN_CHECK(r.kv_cache_tokens >= r.context_tokens, "engine: kv cache ({} tokens) is smaller than the context ({})",
             r.kv_cache_tokens, r.context_tokens);
  KILN_CHECK(r.max_running >= 1, "engine: max_running must be at least 1");
  KILN_CHECK(r.max_queued >= 0, "engine: max_queued must not be negative");
  // Every running sequence gets its decode token each step, so the budget covers them.
  r.max_batch_tokens = std::max(r.max_batch_tokens, r.max_running);
  KILN_CHECK(r.decode_step_tokens >= 0, "engine: decode_step_tokens must not be negative");
  if (r.decode_step_tokens == 0 || r.decode_step_tokens > r.max_batch_tokens) r.decode_step_tokens = r.max_batch_tokens;
  return r;
}

struct Engine::Impl {
  Impl(LlamaModel& m, const Tokenizer& t, const EngineOptions& o);
  ~Impl();

  void loop();
  bool step();
  void take_incoming();
  void expire_and_cancel();
  bool admit(Sequence& s);
  void share_slots();
  std::size_t next_to_admit() const;
  bool ensure_free_blocks(int n);
  bool reserve(Sequence& s, int n_tokens);
  void preempt(Sequence& s);
  void sample_and_emit(Sequence& s, const float* logits);
  void emit(Sequence& s, TokenEvent& ev);
  void plan_speculation();
  void verify_and_emit(Sequence& s, const float* logits);
  void drop_draft(Sequence& s);
  bool apply_grammar(Sequence& s, std::span<const float>& row);
  void register_full_blocks(Sequence& s);
  void finish(Sequence& s, FinishReason reason, const std::string& error = {});
  void finish_embedding(Sequence& s, FinishReason reason, const std::string& error);
  void publish_stats();
  void run_finish_callbacks();
  int blocks_for(int n_tokens) const { return (n_tokens + cache.block_size() - 1) / cache.block_size(); }

  LlamaModel& model;
  const Tokenizer& tokenizer;
  EngineOptions options;
  KvCache cache;
  ThreadPool pool;
  PrefixCache prefix;
  FloatBuffer logits;  // (max_running, n_vocab)
  FloatBuffer hidden;  // (hidden rows of a step, n_embd) final hidden states for embeddings
  // Speculative decoding (EngineOptions::draft): the draft's cache and the Drafter over it.
  std::unique_ptr<KvCache> draft_cache;
  std::unique_ptr<Drafter> drafter;
  VerifyScratch verify_scratch;

  // Shared with submitters, under mu.
  mutable std::mutex mu;
  std::condition_variable wake;      // the engine thread waits here for work
  std::condition_variable idle;      // drain() waits here for the engine to run dry
  std::deque<std::unique_ptr<Sequence>> incoming;
  int n_waiting_shared = 0;          // waiting (admitted by nobody yet), for the queue limit
  int n_running_shared = 0;
  bool stopping = false;
  bool draining = false;
  bool cancel_all = false;
  bool callbacks_pending = false;    // on_finish calls of the last step not yet made (drain waits for them)
  std::uint64_t next_id = 1;

  // Recorded by the engine thread, and by submit() for what arrives; read by stats() from any thread.
  std::shared_ptr<monitor::Registry> registry;
  EngineMetrics metrics;

  // Engine-thread state.
  std::deque<std::unique_ptr<Sequence>> waiting;  // arrival order
  std::vector<std::unique_ptr<Sequence>> running;  // admission order
  std::uint64_t admissions = 0;
  // on_finish calls wait until the stats say the sequence is gone, so that a client that has
  // seen its request end also sees it gone from stats().
  std::vector<std::pair<std::function<void(const Finish&)>, Finish>> finished;
  std::thread thread;
};

Engine::Impl::Impl(LlamaModel& m, const Tokenizer& t, const EngineOptions& o)
    : model(m),
      tokenizer(t),
      options(resolve_engine_options(m.config(), o)),
      cache(m.make_kv_cache(options.kv_cache_tokens, options.kv_type)),
      pool(options.threads),
      prefix(options.prefix_cache ? cache.block_size() : 0) {
  logits.resize(static_cast<std::size_t>(options.max_running) * static_cast<std::size_t>(m.config().n_vocab));
  if (options.draft != nullptr) {
    options.speculative.validate();
    KILN_CHECK(options.draft->config().n_vocab == m.config().n_vocab,
               "engine: the draft model's vocabulary ({} tokens) is not the model's ({})", options.draft->config().n_vocab,
               m.config().n_vocab);
    draft_cache = std::make_unique<KvCache>(options.draft->make_kv_cache(options.kv_cache_tokens, options.kv_type));
    drafter = std::make_unique<Drafter>(*options.draft, *draft_cache, pool, options.speculative.p_min);
  }
  if (options.record_metrics) {
    registry = options.metrics ? options.metrics : std::make_shared<monitor::Registry>();
    metrics = EngineMetrics(*registry, options.metrics_model);
  }
  metrics.kv_block_tokens.set(cache.block_size());
  metrics.kv_blocks.set(cache.total_blocks());
  thread = std::thread([this] { loop(); });
}

Engine::Impl::~Impl() {
  {
    std::lock_guard<std::mutex> lk(mu);
    stopping = true;
  }
  wake.notify_all();
  if (thread.joinable()) thread.join();
  // The pool is gone; the counters stay, for an engine of the same model that may follow.
  for (const monitor::Gauge& g : {metrics.running, metrics.waiting, metrics.kv_blocks, metrics.kv_blocks_used,
                                  metrics.kv_blocks_cached})
    g.set(0);
}

void Engine::Impl::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu);
      // Sleep only when there is nothing to do; waiting work that cannot be admitted yet
      // (cache full) is retried after a short nap, since only the engine itself frees blocks.
      wake.wait_for(lk, std::chrono::milliseconds(1000),
                    [&] { return stopping || cancel_all || !incoming.empty() || !running.empty() || !waiting.empty(); });
      if (stopping) cancel_all = true;
    }
    take_incoming();
    bool stop_now;
    {
      std::lock_guard<std::mutex> lk(mu);
      stop_now = stopping;
    }
    if (stop_now) {
      expire_and_cancel();  // cancels everything (cancel_all)
      publish_stats();
      run_finish_callbacks();
      return;
    }
    if (running.empty() && waiting.empty()) {
      publish_stats();
      continue;
    }
    bool progressed = false;
    try {
      progressed = step();
    } catch (const std::exception& e) {
      // A failed forward pass leaves the cache of the sequences in it undefined: fail them all.
      std::vector<std::unique_ptr<Sequence>> failed;
      failed.swap(running);
      for (auto& s : failed) finish(*s, FinishReason::Error, e.what());
      progressed = true;
    }
    publish_stats();
    run_finish_callbacks();
    // Waiting work that cannot be admitted yet (the cache is full of sequences still being
    // prefilled) is retried after a short nap rather than in a busy loop.
    if (!progressed) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void Engine::Impl::take_incoming() {
  std::lock_guard<std::mutex> lk(mu);
  while (!incoming.empty()) {
    waiting.push_back(std::move(incoming.front()));
    incoming.pop_front();
    ++n_waiting_shared;
  }
}

// Cancelled, expired (and, when stopping or after a drain's grace, all) requests finish here.
void Engine::Impl::expire_and_cancel() {
  bool all;
  {
    std::lock_guard<std::mutex> lk(mu);
    all = cancel_all;
    // A drain's cancel-everything is consumed here (draining already refuses new work); left
    // set, it would keep the engine thread from ever sleeping again.
    if (!stopping) cancel_all = false;
  }
  const Clock::time_point now = Clock::now();
  auto verdict = [&](const Sequence& s) -> int {
    if (all || s.handle->cancelled()) return 1;
    if (now >= s.request.deadline) return 2;
    return 0;
  };
  for (auto it = waiting.begin(); it != waiting.end();) {
    const int v = verdict(**it);
    if (v == 0) {
      ++it;
      continue;
    }
    std::unique_ptr<Sequence> s = std::move(*it);
    it = waiting.erase(it);
    finish(*s, v == 1 ? FinishReason::Cancelled : FinishReason::Deadline);
  }
  for (auto it = running.begin(); it != running.end();) {
    const int v = verdict(**it);
    if (v == 0) {
      ++it;
      continue;
    }
    std::unique_ptr<Sequence> s = std::move(*it);
    it = running.erase(it);
    finish(*s, v == 1 ? FinishReason::Cancelled : FinishReason::Deadline);
  }
}

// Frees blocks held only by the prefix cache (least recently used first) until n are free.
bool Engine::Impl::ensure_free_blocks(int n) {
  if (cache.free_blocks() >= n) return true;
  prefix.evict(cache, n - cache.free_blocks());
  return cache.free_blocks() >= n;
}

// Makes room for positions [0, n_tokens) of a running sequence.
bool Engine::Impl::reserve(Sequence& s, int n_tokens) {
  const int have = static_cast<int>(cache.blocks(s.kv_seq).size());
  const int need = blocks_for(n_tokens) - have;
  if (need > 0 && !ensure_free_blocks(need)) return false;
  cache.reserve(s.kv_seq, n_tokens);
  return true;
}

// Takes a running sequence out of the cache and puts it back at the head of the queue; it
// resumes later by recomputing its tokens (usually in part from the prefix cache), the way
// vLLM preempts under memory pressure. Its sampler and text state carry on unchanged.
void Engine::Impl::preempt(Sequence& s) {
  metrics.preemptions.inc();
  register_full_blocks(s);
  cache.remove_sequence(s.kv_seq);
  s.kv_seq = -1;
  s.n_computed = 0;
  s.n_registered = 0;
  drop_draft(s);
  if (s.embedding) s.pooler.reset();
}

void Engine::Impl::drop_draft(Sequence& s) {
  if (s.draft_seq >= 0) draft_cache->remove_sequence(s.draft_seq);
  s.draft_seq = -1;
  s.proposal.clear();
}

bool Engine::Impl::admit(Sequence& s) {
  const int n = static_cast<int>(s.tokens.size());
  // Reuse whole cached blocks of the prefix, but always leave the last token to compute: its
  // logits are what the next step samples from.
  // An embedding pools the hidden states of its own positions, which cached keys and values do
  // not give back: it computes everything.
  std::vector<int> shared = s.embedding ? std::vector<int>{} : prefix.match(s.tokens, (n - 1) / cache.block_size());
  // Attach before making room: attaching takes references, so making room cannot evict the
  // very blocks just matched.
  s.kv_seq = cache.add_sequence();
  if (!shared.empty()) cache.attach_prefix(s.kv_seq, shared);
  if (!ensure_free_blocks(blocks_for(n) - static_cast<int>(shared.size()))) {
    cache.remove_sequence(s.kv_seq);
    s.kv_seq = -1;
    return false;
  }
  // Take the whole prompt's blocks now: admissions in the same step must not count the same
  // free blocks twice, and a sequence being prefilled then never waits for blocks that a
  // younger decoding sequence holds (only decode steps need new blocks, and they may preempt).
  cache.reserve(s.kv_seq, n);
  s.n_computed = static_cast<int>(shared.size()) * cache.block_size();
  s.n_registered = static_cast<int>(shared.size());
  if (prefix.enabled() && !s.embedding) {
    metrics.prefix_cache_queries.inc(n);
    metrics.prefix_cache_hits.inc(s.n_computed);
  }
  if (s.cached_tokens < 0) {
    s.cached_tokens = std::min(s.n_computed, s.n_prompt);
    metrics.prompt_tokens_cached.inc(s.cached_tokens);
    s.admitted = Clock::now();
    metrics.queue_time.observe(seconds_between(s.submitted, s.admitted));
  }
  s.admitted_order = ++admissions;
  return true;
}

// Running slots per group, for the fair share.
using GroupCounts = std::unordered_map<std::uint64_t, int>;

// When every slot is taken and a waiting group runs fewer sequences than its share, the group
// running the most (above its share) gives up its youngest sequence: it is preempted (its full
// blocks stay in the prefix cache) and queued again, and the admission below picks the group
// with the fewest running sequences first.
void Engine::Impl::share_slots() {
  if (waiting.empty() || static_cast<int>(running.size()) < options.max_running) return;
  GroupCounts run_count, wait_count;
  for (const auto& s : running) ++run_count[s->group];
  for (const auto& s : waiting) ++wait_count[s->group];
  std::size_t groups = run_count.size();
  for (const auto& [g, n] : wait_count) groups += run_count.count(g) ? 0 : 1;
  const int share = std::max(1, options.max_running / static_cast<int>(groups));
  int wanted = 0;  // slots the groups under their share could use now
  for (const auto& [g, n] : wait_count) {
    const auto it = run_count.find(g);
    const int have = it == run_count.end() ? 0 : it->second;
    if (have < share) wanted += std::min(n, share - have);
  }
  for (; wanted > 0; --wanted) {
    std::uint64_t richest = 0;
    int most = share;
    for (const auto& [g, n] : run_count)
      if (n > most) richest = g, most = n;
    if (most <= share) break;
    // Its youngest sequence (the least work lost).
    std::size_t victim = running.size();
    for (std::size_t i = 0; i < running.size(); ++i)
      if (running[i]->group == richest && (victim == running.size() || running[i]->admitted_order > running[victim]->admitted_order))
        victim = i;
    Sequence& s = *running[victim];
    if (s.kv_seq >= 0) preempt(s);
    waiting.push_back(std::move(running[victim]));
    running.erase(running.begin() + static_cast<std::ptrdiff_t>(victim));
    --run_count[richest];
  }
}

// The waiting sequence to admit next: of the group running the fewest sequences, the first in
// the queue (preempted sequences are at its front, then arrival order).
std::size_t Engine::Impl::next_to_admit() const {
  GroupCounts run_count;
  for (const auto& s : running) ++run_count[s->group];
  std::size_t best = 0;
  int fewest = std::numeric_limits<int>::max();
  for (std::size_t i = 0; i < waiting.size() && fewest > 0; ++i) {
    const auto it = run_count.find(waiting[i]->group);
    const int n = it == run_count.end() ? 0 : it->second;
    if (n < fewest) best = i, fewest = n;
  }
  return best;
}

bool Engine::Impl::step() {
  expire_and_cancel();
  share_slots();
  const int bs = cache.block_size();

  // Decoding sequences first: each needs room for one more position. When the pool is short,
  // the most recently admitted sequences give theirs up (preemption), oldest keep going.
  std::sort(running.begin(), running.end(),
            [](const auto& a, const auto& b) { return a->admitted_order < b->admitted_order; });
  for (std::size_t i = 0; i < running.size(); ++i) {
    Sequence& s = *running[i];
    if (s.kv_seq < 0 || s.pending() != 1 || s.embedding) continue;
    while (!reserve(s, s.n_computed + 1)) {
      // Preempt the youngest other running sequence that still holds cache.
      Sequence* victim = nullptr;
      for (std::size_t j = running.size(); j-- > i + 1;)
        if (running[j]->kv_seq >= 0) {
          victim = running[j].get();
          break;
        }
      if (victim == nullptr) break;
      preempt(*victim);
    }
  }
  // Preempted sequences return to the front of the queue, oldest first.
  for (std::size_t j = running.size(); j-- > 0;) {
    if (running[j]->kv_seq >= 0) continue;
    waiting.push_front(std::move(running[j]));
    running.erase(running.begin() + static_cast<std::ptrdiff_t>(j));
  }

  // Draft proposals for the decoding sequences, when speculation is on and the load is low.
  plan_speculation();

  Batch batch;
  // (logit rows) the sequence each row samples for; a speculating sequence owns 1 + its drafted
  // tokens consecutive rows.
  std::vector<Sequence*> logit_owner;
  std::vector<std::pair<Sequence*, int>> hidden_owner;  // (hidden rows) the embedding and position of each
  int batch_sequences = 0;
  for (auto& sp : running) {
    Sequence& s = *sp;
    if (s.embedding) continue;
    if (s.pending() != 1 || static_cast<int>(cache.blocks(s.kv_seq).size()) * bs < s.n_computed + 1) continue;
    batch.add(s.tokens.back(), s.n_computed, s.kv_seq, true);
    logit_owner.push_back(&s);
    for (std::size_t i = 0; i < s.proposal.tokens.size(); ++i) {
      batch.add(s.proposal.tokens[i], s.n_computed + 1 + static_cast<int>(i), s.kv_seq, true);
      logit_owner.push_back(&s);
    }
    ++batch_sequences;
  }
  // Stall-free budget: a step with decodes stays near a decode step's length (see
  // EngineOptions::decode_step_tokens); without decodes prefill may take the whole budget.
  // Drafted tokens count as decode rows.
  const int decodes = batch.size();
  const int prefill_floor = std::max(kMinPrefillChunk, decodes);
  const int step_tokens = decodes == 0 ? options.max_batch_tokens
                                       : std::min(options.max_batch_tokens,
                                                  std::max(options.decode_step_tokens, decodes + prefill_floor));
  int budget = std::max(0, step_tokens - decodes);
  // Then prompt chunks: first of sequences already prefilling, then newly admitted ones, in
  // arrival order, while the step's budget lasts.
  auto add_chunk = [&](Sequence& s) {
    const int chunk = std::min(s.pending(), budget);
    if (chunk <= 0) return;
    if (!reserve(s, s.n_computed + chunk)) return;
    const int last = static_cast<int>(s.tokens.size()) - 1;
    for (int i = 0; i < chunk; ++i) {
      const int pos = s.n_computed + i;
      const bool sample = pos == last && !s.embedding;
      batch.add(s.tokens[static_cast<std::size_t>(pos)], pos, s.kv_seq, sample);
      if (sample) logit_owner.push_back(&s);
      if (s.embedding && s.pooler.wants(pos)) {
        batch.hidden_rows.push_back(batch.size() - 1);
        hidden_owner.emplace_back(&s, pos);
      }
    }
    budget -= chunk;
    ++batch_sequences;
  };
  // (An embedding has no decode token: its last prompt token is a chunk too.)
  for (auto& sp : running)
    if ((sp->pending() > 1 || (sp->embedding && sp->pending() > 0)) && budget > 0) add_chunk(*sp);
  while (budget > 0 && !waiting.empty() && static_cast<int>(running.size()) < options.max_running) {
    const std::size_t pick = next_to_admit();
    Sequence& s = *waiting[pick];
    if (!admit(s)) break;  // the cache is full; try again when something finishes
    running.push_back(std::move(waiting[pick]));
    waiting.erase(waiting.begin() + static_cast<std::ptrdiff_t>(pick));
    add_chunk(s);
  }
  if (batch.size() == 0) return false;

  const Clock::time_point t0 = Clock::now();
  const std::size_t n_embd = static_cast<std::size_t>(model.config().n_embd);
  float* hidden_rows = hidden_owner.empty() ? nullptr : hidden.resize(hidden_owner.size() * n_embd);
  const std::size_t n_vocab = static_cast<std::size_t>(model.config().n_vocab);
  if (logits.size() < logit_owner.size() * n_vocab) logits.resize(logit_owner.size() * n_vocab);
  model.forward(batch, cache, pool, logits.data(), hidden_rows);
  metrics.busy_seconds.inc(seconds_between(t0, Clock::now()));
  metrics.steps.inc();
  metrics.step_tokens.observe(static_cast<double>(batch.size()));
  metrics.step_sequences.observe(batch_sequences);
  for (auto& sp : running) {
    Sequence& s = *sp;
    if (s.kv_seq >= 0) s.n_computed = cache.length(s.kv_seq);
  }
  for (std::size_t r = 0; r < logit_owner.size();) {
    Sequence& s = *logit_owner[r];
    const std::size_t rows = 1 + s.proposal.tokens.size();
    if (rows == 1) {
      // One logit row samples one token (an end-of-generation token counts too).
      metrics.generated_tokens.inc();
      sample_and_emit(s, logits.data() + r * n_vocab);
    } else {
      verify_and_emit(s, logits.data() + r * n_vocab);
    }
    r += rows;
  }
  for (std::size_t r = 0; r < hidden_owner.size(); ++r)
    hidden_owner[r].first->pooler.add(hidden_owner[r].second, hidden_rows + r * n_embd);
  for (auto& sp : running)
    if (sp->embedding && sp->kv_seq >= 0 && sp->pending() == 0) finish(*sp, FinishReason::Stop);

  // Offer newly completed blocks to the prefix cache, then retire finished sequences.
  for (auto it = running.begin(); it != running.end();) {
    Sequence& s = **it;
    if (s.kv_seq >= 0 && s.pending() > 0) {
      register_full_blocks(s);
      ++it;
      continue;
    }
    // pending() == 0 marks a finished sequence (see finish()).
    it = running.erase(it);
  }
  return true;
}

void Engine::Impl::register_full_blocks(Sequence& s) {
  // An embedding's blocks are freed, not cached: a stream of documents to embed would otherwise
  // push the chat prefixes worth keeping out of the prefix cache.
  if (!prefix.enabled() || s.kv_seq < 0 || s.embedding) return;
  const int full = s.n_computed / cache.block_size();
  if (full > s.n_registered) {
    prefix.insert(cache, s.tokens, cache.blocks(s.kv_seq), s.n_registered, full);
    s.n_registered = full;
  }
}

void Engine::Impl::sample_and_emit(Sequence& s, const float* row) {
  const int n_vocab = model.config().n_vocab;
  std::span<const float> lg(row, static_cast<std::size_t>(n_vocab));
  if (s.matcher && !apply_grammar(s, lg)) return;
  const std::int32_t id = s.sampler.sample(lg, s.tokens);
  TokenEvent ev;
  ev.id = id;
  const bool ends = tokenizer.is_eog(id) && (!s.request.ignore_eos || s.matcher);
  if (s.request.top_logprobs >= 0 && !ends) {
    // Natural-log probabilities of the model's distribution (temperature 1, before penalties).
    float mx = -std::numeric_limits<float>::infinity();
    for (float v : lg) mx = std::max(mx, v);
    double sum = 0;
    for (float v : lg) sum += std::exp(static_cast<double>(v - mx));
    const float log_z = mx + static_cast<float>(std::log(sum));
    ev.logprob = lg[static_cast<std::size_t>(id)] - log_z;
    const int k = std::min(s.request.top_logprobs, n_vocab);
    if (k > 0) {
      std::vector<std::int32_t> ids(static_cast<std::size_t>(n_vocab));
      for (int i = 0; i < n_vocab; ++i) ids[static_cast<std::size_t>(i)] = i;
      std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](std::int32_t a, std::int32_t b) {
        const float la = lg[static_cast<std::size_t>(a)], lb = lg[static_cast<std::size_t>(b)];
        return la > lb || (la == lb && a < b);
      });
      for (int i = 0; i < k; ++i) {
        const float l = lg[static_cast<std::size_t>(ids[static_cast<std::size_t>(i)])];
        if (l == -std::numeric_limits<float>::infinity()) break;  // masked by a grammar: not an alternative
        ev.top.push_back({ids[static_cast<std::size_t>(i)], l - log_z});
      }
    }
  }
  emit(s, ev);
}

// Delivers one chosen token: the end of generation, the grammar, the text and its stop strings,
// the client's callback, max_tokens and the context. The sequence may finish here.
void Engine::Impl::emit(Sequence& s, TokenEvent& ev) {
  const std::int32_t id = ev.id;
  const Clock::time_point now = Clock::now();
  if (!s.sampled) {
    s.sampled = true;
    s.first_sampled = now;
    metrics.time_to_first_token.observe(seconds_between(s.submitted, now));
  }

  if (tokenizer.is_eog(id) && (!s.request.ignore_eos || s.matcher)) {
    ++s.n_generated;
    finish(s, FinishReason::Stop);
    return;
  }
  if (s.matcher && !s.matcher->accept(id)) {
    finish(s, FinishReason::Error, fmt::format("grammar: the sampler chose token {}, which the grammar does not allow", id));
    return;
  }
  s.tokens.push_back(id);
  ++s.n_generated;
  const StopStringMatcher::Result m = s.stops.push(s.decoder.push(id));
  ev.text = m.released;
  if (!s.sent_first_token) {
    s.sent_first_token = true;
    s.first_token = now;
  }
  if (s.callbacks.on_token) {
    try {
      s.callbacks.on_token(ev);
    } catch (...) {
      // The receiver is broken (out of memory, gone): end this request only, at the next step.
      s.handle->cancel();
    }
  }
  if (m.stopped || (s.matcher && s.matcher->is_exhausted())) {
    finish(s, FinishReason::Stop);
    return;
  }
  if (s.n_generated >= s.request.max_tokens || static_cast<int>(s.tokens.size()) >= options.context_tokens) {
    finish(s, FinishReason::Length);
    return;
  }
}

// Speculative decoding, before a step's batch is built: proposals from the draft for the
// sequences that decode this step. The policy: only while at most speculative.max_sequences
// sequences decode (beyond that the step's forward is no longer bound by reading the weights, and
// verification rows cost about what they save); not for sequences with a grammar (the matcher
// would have to follow and undo every drafted token) or logprobs (reported per sampled row);
// never past max_tokens or the context; and only when both caches have room for the drafted
// positions without preempting anyone.
void Engine::Impl::plan_speculation() {
  for (auto& sp : running) sp->proposal.clear();
  if (!drafter) return;
  const int bs = cache.block_size();
  std::vector<Sequence*> decoding;
  for (auto& sp : running) {
    Sequence& s = *sp;
    if (s.embedding || s.kv_seq < 0 || s.pending() != 1) continue;
    if (static_cast<int>(cache.blocks(s.kv_seq).size()) * bs < s.n_computed + 1) continue;
    decoding.push_back(&s);
  }
  if (decoding.empty() || static_cast<int>(decoding.size()) > options.speculative.max_sequences) return;
  std::vector<DraftJob> jobs;
  for (Sequence* sp : decoding) {
    Sequence& s = *sp;
    if (s.matcher || s.request.top_logprobs >= 0) continue;
    if (!s.draft_sampler) {
      SamplerParams params = s.request.sampling;
      params.seed ^= 0x9e3779b97f4a7c15ULL;  // a stream of its own: the draft's draws must not repeat the target's
      s.draft_sampler = std::make_unique<Sampler>(params);
      s.draft_length = DraftLength(options.speculative);
    }
    const int n = static_cast<int>(s.tokens.size());
    const int k = std::min({s.draft_length.current(), s.request.max_tokens - s.n_generated - 1,
                            options.context_tokens - n - 1});
    if (k <= 0) continue;
    if (!reserve(s, s.n_computed + 1 + k)) continue;
    if (s.draft_seq < 0) s.draft_seq = draft_cache->add_sequence();
    const int need = (n + k + bs - 1) / bs - static_cast<int>(draft_cache->blocks(s.draft_seq).size());
    if (need > draft_cache->free_blocks()) {
      drop_draft(s);
      continue;
    }
    draft_cache->reserve(s.draft_seq, n + k);
    jobs.push_back(DraftJob{s.draft_seq, s.tokens, k, s.draft_sampler.get(), &s.proposal});
  }
  if (!jobs.empty()) drafter->propose(jobs);
}

// The acceptance rule over a speculating sequence's rows (1 + drafted, consecutive from
// `logits`): emits the accepted drafted tokens and the model's own next one, and drops the
// rejected positions from both caches before anything can offer them to the prefix cache.
void Engine::Impl::verify_and_emit(Sequence& s, const float* logits) {
  const int n_vocab = model.config().n_vocab;
  const int drafted = static_cast<int>(s.proposal.tokens.size());
  const int pos = static_cast<int>(s.tokens.size()) - 1;  // the pending token's position
  const std::span<const float> rows(logits, static_cast<std::size_t>(drafted + 1) * static_cast<std::size_t>(n_vocab));
  const std::vector<int> out = verify_draft(s.sampler, rows, n_vocab, s.tokens, s.proposal, verify_scratch);
  const int accepted = static_cast<int>(out.size()) - 1;
  cache.truncate(s.kv_seq, pos + 1 + accepted);
  if (s.draft_seq >= 0) draft_cache->truncate(s.draft_seq, pos + 1 + accepted);
  metrics.draft_tokens.inc(drafted);
  metrics.accepted_tokens.inc(accepted);
  s.draft_length.update(drafted, accepted);
  s.proposal.clear();
  for (int token : out) {
    // The cache holds the keys of every token so far (the pending one and the accepted ones).
    s.n_computed = static_cast<int>(s.tokens.size());
    TokenEvent ev;
    ev.id = token;
    metrics.generated_tokens.inc();
    emit(s, ev);
    if (s.kv_seq < 0) return;  // finished: a stop string, an end token, max_tokens or the context
  }
  s.n_computed = static_cast<int>(s.tokens.size()) - 1;
}

// Masks the row to what the sequence's grammar allows next (into s.masked, which `row` then
// points at). A grammar that allows nothing here ends the sequence: false.
bool Engine::Impl::apply_grammar(Sequence& s, std::span<const float>& row) {
  const std::size_t n = row.size();
  s.allowed.resize((n + 31) / 32);
  s.masked.resize(n);
  bool any = false;
  try {
    s.matcher->fill_mask(s.allowed);
  } catch (const Error& e) {
    finish(s, FinishReason::Error, e.what());
    return false;
  }
  constexpr float kMasked = -std::numeric_limits<float>::infinity();
  for (std::size_t i = 0; i < n; ++i) {
    const bool ok = (s.allowed[i >> 5] >> (i & 31)) & 1u;
    s.masked[i] = ok ? row[i] : kMasked;
    any = any || ok;
  }
  if (!any) {
    finish(s, FinishReason::Error, "grammar: no token of the vocabulary can continue the grammar here");
    return false;
  }
  row = s.masked;
  return true;
}

// Ends a sequence: frees its cache (after offering its blocks to the prefix cache), reports,
// and marks it so that step() drops it from `running` (pending() == 0 with kv_seq == -1).
void Engine::Impl::finish(Sequence& s, FinishReason reason, const std::string& error) {
  if (s.embedding) return finish_embedding(s, reason, error);
  Finish f;
  f.reason = reason;
  f.error = error;
  if (reason == FinishReason::Stop || reason == FinishReason::Length) {
    // Text held back for a possible stop string, and bytes of an unfinished character.
    if (!s.stops.stopped()) f.text = s.stops.flush(s.decoder.finish());
  }
  if (s.kv_seq >= 0) {
    if (reason != FinishReason::Error) register_full_blocks(s);
    cache.remove_sequence(s.kv_seq);
    s.kv_seq = -1;
  }
  drop_draft(s);
  s.n_computed = static_cast<int>(s.tokens.size());
  f.usage.prompt_tokens = s.n_prompt;
  f.usage.completion_tokens = s.n_generated;
  f.usage.cached_tokens = std::max(0, s.cached_tokens);
  const Clock::time_point now = Clock::now();
  f.time_to_first_token_s = s.sent_first_token ? seconds_between(s.submitted, s.first_token) : 0.0;
  f.total_s = seconds_between(s.submitted, now);
  const bool was_admitted = s.cached_tokens >= 0;
  f.queue_s = seconds_between(s.submitted, was_admitted ? s.admitted : now);
  f.prefill_s = was_admitted ? seconds_between(s.admitted, s.sampled ? s.first_sampled : now) : 0.0;
  f.decode_s = s.sampled ? seconds_between(s.first_sampled, now) : 0.0;
  metrics.finished_by(reason).inc();
  // Latency and length of requests that ran their course; a cancelled, expired or failed request
  // is counted by its reason only (its numbers say when it was stopped, not how fast it ran).
  if (reason == FinishReason::Stop || reason == FinishReason::Length) {
    metrics.e2e_latency.observe(f.total_s);
    metrics.prompt_length.observe(s.n_prompt);
    metrics.generation_length.observe(s.n_generated);
    if (s.n_generated >= 2) metrics.time_per_output_token.observe(seconds_between(s.first_sampled, now) / (s.n_generated - 1));
  }
  if (s.callbacks.on_finish) finished.emplace_back(std::move(s.callbacks.on_finish), std::move(f));
}

// Ends an embedding input: its result (the pooled vector when it was computed) is reported with
// the step's on_finish callbacks, after the stats show it gone.
void Engine::Impl::finish_embedding(Sequence& s, FinishReason reason, const std::string& error) {
  EmbeddingResult r;
  r.reason = reason;
  r.error = error;
  r.prompt_tokens = s.n_prompt;
  if (reason == FinishReason::Stop) {
    try {
      r.embedding = s.pooler.result();
    } catch (const std::exception& e) {
      r.reason = FinishReason::Error;
      r.error = e.what();
    }
  }
  if (s.kv_seq >= 0) {
    cache.remove_sequence(s.kv_seq);
    s.kv_seq = -1;
  }
  s.n_computed = static_cast<int>(s.tokens.size());
  const Clock::time_point now = Clock::now();
  r.total_s = seconds_between(s.submitted, now);
  r.queue_s = seconds_between(s.submitted, s.cached_tokens >= 0 ? s.admitted : now);
  metrics.finished_by(r.reason).inc();
  if (s.on_embedding)
    finished.emplace_back([callback = std::move(s.on_embedding), index = s.embedding_index,
                           result = std::move(r)](const Finish&) { callback(index, result); },
                          Finish{});
}

void Engine::Impl::run_finish_callbacks() {
  for (auto& [callback, f] : finished) {
    try {
      callback(f);
    } catch (...) {
      // A callback must not take the engine down; the request is over either way.
    }
  }
  finished.clear();
  std::lock_guard<std::mutex> lk(mu);
  callbacks_pending = false;
  if (incoming.empty() && waiting.empty() && running.empty()) idle.notify_all();
}

// Called after every step, before its on_finish callbacks run: a client that has seen its request
// end also sees it gone from the gauges.
void Engine::Impl::publish_stats() {
  if (registry) {
    // The pool's size too: an engine of the same model being destroyed meanwhile zeroes it.
    metrics.kv_blocks.set(cache.total_blocks());
    metrics.running.set(static_cast<double>(running.size()));
    metrics.kv_blocks_used.set(cache.total_blocks() - cache.free_blocks());
    metrics.kv_blocks_cached.set(prefix.blocks_held_only_by_cache(cache));
  }
  std::lock_guard<std::mutex> lk(mu);
  metrics.waiting.set(static_cast<double>(incoming.size() + waiting.size()));
  n_waiting_shared = static_cast<int>(waiting.size());
  n_running_shared = static_cast<int>(running.size());
  callbacks_pending = !finished.empty();
  if (!callbacks_pending && incoming.empty() && waiting.empty() && running.empty()) idle.notify_all();
}

Engine::Engine(LlamaModel& model, const Tokenizer& tokenizer, const EngineOptions& options)
    : impl_(std::make_unique<Impl>(model, tokenizer, options)) {}

Engine::~Engine() = default;

std::shared_ptr<RequestHandle> Engine::submit(GenerationRequest request, GenerationCallbacks callbacks) {
  Impl& m = *impl_;
  const int n = static_cast<int>(request.prompt.size());
  if (n == 0) fail("the prompt is empty");
  if (n >= m.options.context_tokens)
    fail("the prompt has {} tokens; the context holds {} (prompt and completion together)", n,
         m.options.context_tokens);
  const int n_vocab = m.model.config().n_vocab;
  for (std::int32_t id : request.prompt)
    if (id < 0 || id >= n_vocab) fail("prompt token id {} is outside the vocabulary (0..{})", id, n_vocab - 1);
  if (request.max_tokens < 1) fail("max_tokens must be at least 1, got {}", request.max_tokens);
  if (request.top_logprobs > 20) fail("top_logprobs must be at most 20, got {}", request.top_logprobs);
  for (const std::string& s : request.stop)
    if (s.empty()) fail("stop strings must not be empty");
  if (request.grammar && request.grammar->n_vocab() != m.tokenizer.n_vocab())
    fail("the grammar was compiled for a vocabulary of {} tokens; this model's has {}", request.grammar->n_vocab(),
         m.tokenizer.n_vocab());

  auto handle = std::make_shared<RequestHandle>(0);
  auto s = std::make_unique<Sequence>(m.tokenizer, std::move(request), std::move(callbacks), handle);  // validates sampling
  s->tokens = s->request.prompt;
  s->n_prompt = n;
  s->submitted = Clock::now();
  s->decoder.prime(s->tokens);
  if (s->request.grammar) s->matcher = std::make_unique<grammar::GrammarMatcher>(s->request.grammar);

  std::unique_lock<std::mutex> lk(m.mu);
  if (m.draining || m.stopping) throw QueueFullError("the server is shutting down");
  const int queued = static_cast<int>(m.incoming.size()) + m.n_waiting_shared;
  if (queued >= m.options.max_queued) throw QueueFullError(fmt::format("the queue is full ({} waiting)", queued));
  handle->set_id(m.next_id++);
  // A request without a group is a group of its own (ids from the top half never meet callers' groups).
  s->group = s->request.group != 0 ? s->request.group : (std::uint64_t{1} << 63) | handle->id();
  m.metrics.requests.inc();
  m.metrics.prompt_tokens.inc(n);
  m.incoming.push_back(std::move(s));
  lk.unlock();
  m.wake.notify_one();
  return handle;
}

std::shared_ptr<RequestHandle> Engine::submit_embeddings(std::vector<EmbeddingRequest> inputs,
                                                         EmbeddingCallback on_result,
                                                         std::chrono::steady_clock::time_point deadline) {
  Impl& m = *impl_;
  if (inputs.empty()) fail("an embedding request needs at least one input");
  const int n_vocab = m.model.config().n_vocab;
  const int n_embd = m.model.config().n_embd;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const std::vector<std::int32_t>& t = inputs[i].tokens;
    if (t.empty()) fail("input {}: no tokens", i);
    if (static_cast<int>(t.size()) > m.options.context_tokens)
      fail("input {}: {} tokens; the context holds {}", i, t.size(), m.options.context_tokens);
    for (std::int32_t id : t)
      if (id < 0 || id >= n_vocab) fail("input {}: token id {} is outside the vocabulary (0..{})", i, id, n_vocab - 1);
  }

  auto handle = std::make_shared<RequestHandle>(0);
  std::vector<std::unique_ptr<Sequence>> seqs;
  seqs.reserve(inputs.size());
  const Clock::time_point now = Clock::now();
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const int n = static_cast<int>(inputs[i].tokens.size());
    GenerationRequest g;
    g.deadline = deadline;
    auto s = std::make_unique<Sequence>(m.tokenizer, std::move(g), GenerationCallbacks{}, handle);
    s->tokens = std::move(inputs[i].tokens);
    s->n_prompt = n;
    s->submitted = now;
    s->embedding = true;
    s->embedding_index = i;
    s->pooler = EmbeddingPooler(inputs[i].pooling, n_embd, n);
    s->on_embedding = on_result;
    seqs.push_back(std::move(s));
  }

  std::unique_lock<std::mutex> lk(m.mu);
  if (m.draining || m.stopping) throw QueueFullError("the server is shutting down");
  const int queued = static_cast<int>(m.incoming.size()) + m.n_waiting_shared;
  if (queued >= m.options.max_queued) throw QueueFullError(fmt::format("the queue is full ({} waiting)", queued));
  handle->set_id(m.next_id++);
  const std::uint64_t group = (std::uint64_t{1} << 63) | handle->id();
  for (auto& s : seqs) {
    s->group = group;
    m.metrics.requests.inc();
    m.metrics.prompt_tokens.inc(s->n_prompt);
    m.incoming.push_back(std::move(s));
  }
  lk.unlock();
  m.wake.notify_one();
  return handle;
}

bool Engine::drain(std::chrono::milliseconds grace) {
  Impl& m = *impl_;
  std::unique_lock<std::mutex> lk(m.mu);
  m.draining = true;
  auto empty = [&] {
    return m.incoming.empty() && m.n_waiting_shared == 0 && m.n_running_shared == 0 && !m.callbacks_pending;
  };
  m.wake.notify_one();
  if (m.idle.wait_for(lk, grace, empty)) return true;
  m.cancel_all = true;
  m.wake.notify_one();
  m.idle.wait(lk, empty);
  return false;
}

EngineStats Engine::stats() const { return impl_->metrics.stats(); }

const EngineOptions& Engine::options() const { return impl_->options; }
int Engine::context_tokens() const { return impl_->options.context_tokens; }

}  // namespace kiln
