// The serving engine on a real (tiny, random-weight) Llama GGUF: batched results must equal the
// same requests run alone, the prefix cache must reuse blocks without changing results, and
// cancellation, deadlines, the queue limit, preemption and drain must behave.
#include "runtime/engine.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <future>
#include <functional>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "format/gguf_file.h"
#include "model/llama_model.h"
#include "runtime/generator.h"
#include "test_support.h"
#include "tokenizer/load_tokenizer.h"

namespace kiln {
namespace {

using namespace std::chrono_literals;

struct Loaded {
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<Tokenizer> tokenizer;
};

Loaded load_tiny(const std::string& path) {
  Loaded l;
  l.model = LlamaModel::load(path);
  l.tokenizer = load_tokenizer(*l.model->source().gguf());
  return l;
}

// Collects one request's events; wait() blocks until on_finish ran.
struct Collector {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::int32_t> ids;
  std::string text;
  std::vector<TokenEvent> events;
  bool done = false;
  Finish finish;
  // Runs on the engine thread after each token is recorded, with the number of tokens so far.
  std::function<void(std::size_t)> after_token;

  GenerationCallbacks callbacks() {
    return {[this](const TokenEvent& e) {
              std::size_t n = 0;
              {
                std::lock_guard<std::mutex> lk(mu);
                ids.push_back(e.id);
                text += e.text;
                events.push_back(e);
                n = ids.size();
              }
              if (after_token) after_token(n);
            },
            [this](const Finish& f) {
              std::lock_guard<std::mutex> lk(mu);
              text += f.text;
              finish = f;
              done = true;
              cv.notify_all();
            }};
  }
  bool wait(std::chrono::milliseconds timeout = 20s) {
    std::unique_lock<std::mutex> lk(mu);
    return cv.wait_for(lk, timeout, [&] { return done; });
  }
};

GenerationRequest greedy(std::vector<std::int32_t> prompt, int max_tokens) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.sampling.temperature = 0;
  r.max_tokens = max_tokens;
  r.ignore_eos = true;
  return r;
}

std::vector<std::int32_t> prompt_of(const Tokenizer& tok, const std::string& text) {
  return tok.encode(text, true, false);
}

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = test::data_file("llama-2-tiny-random.gguf");
    if (path_.empty()) GTEST_SKIP() << "shared data file llama-2-tiny-random.gguf not found (set KILN_DATA_DIR)";
    tiny_ = load_tiny(path_);
  }
  // The request run alone, on an engine of its own that admits one sequence at a time.
  std::vector<std::int32_t> alone(const GenerationRequest& r) {
    EngineOptions o;
    o.threads = 1;
    o.max_running = 1;
    o.prefix_cache = false;
    Engine e(*tiny_.model, *tiny_.tokenizer, o);
    Collector c;
    e.submit(r, c.callbacks());
    EXPECT_TRUE(c.wait());
    return c.ids;
  }
  std::string path_;
  Loaded tiny_;
};

TEST_F(EngineTest, SingleGreedyRequestEqualsTheGenerator) {
  const auto prompt = prompt_of(*tiny_.tokenizer, "Once upon a time");
  // Reference: kiln run's own loop.
  KvCache cache = tiny_.model->make_kv_cache(256);
  ThreadPool pool(1);
  SamplerParams sp;
  sp.temperature = 0;
  Sampler sampler(sp);
  GenerateOptions go;
  go.n_predict = 24;
  go.ignore_eos = true;
  const GenerateResult ref = generate(*tiny_.model, cache, pool, sampler, prompt, go, [](int) { return false; },
                                      [](int) { return true; });

  EngineOptions o;
  o.threads = 2;
  Engine e(*tiny_.model, *tiny_.tokenizer, o);
  Collector c;
  e.submit(greedy(prompt, 24), c.callbacks());
  ASSERT_TRUE(c.wait());
  EXPECT_EQ(c.ids, ref.tokens);
  EXPECT_EQ(c.finish.reason, FinishReason::Length);
  EXPECT_EQ(c.finish.usage.prompt_tokens, static_cast<int>(prompt.size()));
  EXPECT_EQ(c.finish.usage.completion_tokens, 24);
  EXPECT_EQ(c.text, tiny_.tokenizer->decode(ref.tokens));
}

// Finish splits a request's time into queue, prefill and decode, which add up to its total; a
// request that waits for the only running slot spends that wait in the queue.
TEST_F(EngineTest, FinishSplitsItsTimeIntoQueuePrefillAndDecode) {
  EngineOptions o;
  o.threads = 1;
  o.max_running = 1;
  Engine e(*tiny_.model, *tiny_.tokenizer, o);
  Collector first, second;
  e.submit(greedy(prompt_of(*tiny_.tokenizer, "Once upon a time"), 32), first.callbacks());
  e.submit(greedy(prompt_of(*tiny_.tokenizer, "The quick brown fox"), 8), second.callbacks());
  ASSERT_TRUE(first.wait());
  ASSERT_TRUE(second.wait());
  for (const Finish* f : {&first.finish, &second.finish}) {
    EXPECT_GE(f->queue_s, 0);
    EXPECT_GT(f->prefill_s, 0);
    EXPECT_GT(f->decode_s, 0);
    EXPECT_NEAR(f->queue_s + f->prefill_s + f->decode_s, f->total_s, 1e-9);
    // The first token is the first one sampled: queue and prefill are the time to it.
    EXPECT_NEAR(f->queue_s + f->prefill_s, f->time_to_first_token_s, 1e-9);
  }
  // The second waited for the first to finish (one running slot).
  EXPECT_GT(second.finish.queue_s, first.finish.decode_s * 0.5);
  EXPECT_GT(second.finish.queue_s, first.finish.queue_s);
}

TEST_F(EngineTest, ConcurrentRequestsEqualTheSameRequestsRunAlone) {
  const std::vector<std::string> texts = {"Hello", "The quick brown fox", "1 2 3 4 5 6 7 8 9 10 11 12", "a",
                                          "Paris is the capital of", "Long ago, in a galaxy far away, there",
                                          "x y z", "Once upon a time there was a little girl"};
  std::vector<GenerationRequest> reqs;
  for (std::size_t i = 0; i < texts.size(); ++i) reqs.push_back(greedy(prompt_of(*tiny_.tokenizer, texts[i]), 16 + 4 * static_cast<int>(i)));
  // A seeded sampled request too: its draws must not depend on the others.
  GenerationRequest sampled = greedy(prompt_of(*tiny_.tokenizer, "Seeded"), 20);
  sampled.sampling.temperature = 0.9f;
  sampled.sampling.top_k = 40;
  sampled.sampling.seed = 1234;
  reqs.push_back(sampled);

  std::vector<std::vector<std::int32_t>> expected;
  for (const auto& r : reqs) expected.push_back(alone(r));

  EngineOptions o;
  o.threads = 2;
  o.max_batch_tokens = 16;  // forces prompts to be prefilled in chunks beside running decodes
  Engine e(*tiny_.model, *tiny_.tokenizer, o);
  std::vector<std::unique_ptr<Collector>> cs;
  for (const auto& r : reqs) {
    cs.push_back(std::make_unique<Collector>());
    e.submit(r, cs.back()->callbacks());
  }
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_TRUE(cs[i]->wait());
    EXPECT_EQ(cs[i]->ids, expected[i]) << "request " << i;
    EXPECT_EQ(cs[i]->finish.reason, FinishReason::Length);
  }
  const EngineStats st = e.stats();
  EXPECT_EQ(st.requests_total, reqs.size());
  EXPECT_EQ(st.running, 0);
}

// Stall-free batching: a prompt that arrives while a stream decodes is prefilled in chunks of
// at most decode_step_tokens - 1 beside that stream's decode token, so the stream gets a token in
// every step of the prefill (never starved), and no step carries more than its budget (the
// prefill takes at least ceil(prompt / (budget - 1)) steps). The results stay those of the
// requests run alone.
TEST_F(EngineTest, APromptArrivingDuringDecodeIsChunkedWithinTheStepBudget) {
  std::vector<std::int32_t> long_prompt;
  const std::vector<std::int32_t> piece = prompt_of(*tiny_.tokenizer, "Long ago, in a galaxy far away, there was a");
  while (long_prompt.size() < 200) long_prompt.insert(long_prompt.end(), piece.begin(), piece.end());
  long_prompt.resize(200);
  const GenerationRequest stream = greedy(prompt_of(*tiny_.tokenizer, "Once upon a time"), 40);
  const GenerationRequest late = greedy(long_prompt, 4);
  const auto expected_stream = alone(stream), expected_late = alone(late);

  EngineOptions o;
  o.threads = 2;
  o.max_batch_tokens = 512;  // the whole prompt would fit one step without the decode budget
  o.decode_step_tokens = 32;
  Engine e(*tiny_.model, *tiny_.tokenizer, o);
  Collector running, arriving;
  std::mutex mu;
  int stream_tokens_during_prefill = -1;  // the stream's tokens from the arrival to the late prompt's first
  running.after_token = [&](std::size_t n) {
    if (n == 2) e.submit(late, arriving.callbacks());  // on the engine thread: arrives at the next step
    std::lock_guard<std::mutex> lk(mu);
    if (stream_tokens_during_prefill >= 0) ++stream_tokens_during_prefill;
    if (n == 2) stream_tokens_during_prefill = 0;
  };
  int at_first_token = -1;
  arriving.after_token = [&](std::size_t n) {
    std::lock_guard<std::mutex> lk(mu);
    if (n == 1) at_first_token = stream_tokens_during_prefill;
  };
  e.submit(stream, running.callbacks());
  ASSERT_TRUE(running.wait());
  ASSERT_TRUE(arriving.wait());
  EXPECT_EQ(running.ids, expected_stream);
  EXPECT_EQ(arriving.ids, expected_late);
  // 200 prompt tokens in chunks of at most 31: at least 7 steps, each with the stream's token
  // (sampled before the late prompt's in the step that ends its prefill).
  EXPECT_GE(at_first_token, (200 + 30) / 31);
}

TEST_F(EngineTest, DecodeStepTokensAreResolvedWithinTheBatchBudget) {
  const LlamaConfig& c = tiny_.model->config();
  EngineOptions o;
  o.max_batch_tokens = 128;
  o.decode_step_tokens = 0;
  EXPECT_EQ(resolve_engine_options(c, o).decode_step_tokens, 128);
  o.decode_step_tokens = 1000;
  EXPECT_EQ(resolve_engine_options(c, o).decode_step_tokens, 128);
  o.decode_step_tokens = 48;
  EXPECT_EQ(resolve_engine_options(c, o).decode_step_tokens, 48);
  o.decode_step_tokens = -1;
  EXPECT_THROW(resolve_engine_options(c, o), Error);
}

TEST_F(EngineTest, PrefixCacheReusesBlocksWithoutChangingResults) {
  // A 40-token shared "system prompt" followed by different questions.
  std::string system = "You are a helpful assistant. Answer briefly and precisely, and never make things up. ";
  auto a = greedy(prompt_of(*tiny_.tokenizer, system + "What is two plus two?"), 12);
  auto b = greedy(prompt_of(*tiny_.tokenizer, system + "Name a colour."), 12);
  const auto expect_b = alone(b);

  EngineOptions o;
  o.threads = 1;
  Engine e(*tiny_.model, *tiny_.tokenizer, o);
  Collector ca, cb;
  e.submit(a, ca.callbacks());
  ASSERT_TRUE(ca.wait());
  EXPECT_EQ(ca.finish.usage.cached_tokens, 0);
  e.submit(b, cb.callbacks());
  ASSERT_TRUE(cb.wait());
  EXPECT_EQ(cb.ids, expect_b);
  // Whole blocks of 16 of the common prefix were reused.
  std::size_t common = 0;
  while (common < a.prompt.size() && common < b.prompt.size() && a.prompt[common] == b.prompt[common]) ++common;
  EXPECT_EQ(cb.finish.usage.cached_tokens, static_cast<int>(common / 16 * 16));
  EXPECT_GE(cb.finish.usage.cached_tokens, 16);
  EXPECT_GT(e.stats().prompt_tokens_cached, 0u);

  // The identical request again: everything but the last prompt token comes from the cache,
  // including blocks that hold generated tokens of the first run.
  Collector cb2;
  e.submit(b, cb2.callbacks());
  ASSERT_TRUE(cb2.wait());
  EXPECT_EQ(cb2.ids, expect_b);
  EXPECT_EQ(cb2.finish.usage.cached_tokens, static_cast<int>((b.prompt.size() - 1) / 16 * 16));
}

TEST_F(EngineTest, CancelFreesTheSequenceAtTheNextStep) {
  EngineOptions o;
  o.threads = 1;
  o.prefix_cache = false;
  Engine e(*tiny_.model, *tiny_.tokenizer, o);
  Collector c;
  std::promise<void> first;
  bool fired = false;
  GenerationCallbacks cb = c.callbacks();
  auto on_token = cb.on_token;
  cb.on_token = [&, on_token](const TokenEvent& ev) {
    on_token(ev);
    if (!fired) {
      fired = true;
      first.set_value();
    }
  };
  auto handle = e.submit(greedy(prompt_of(*tiny_.tokenizer, "Cancel me"), 3000), cb);
  first.get_future().wait();
  handle->cancel();
  ASSERT_TRUE(c.wait());
  EXPECT_EQ(c.finish.reason, FinishReason::Cancelled);
  EXPECT_LT(c.finish.usage.completion_tokens, 3000);
  // Stats are published after the step that finished it.
  // (Up to 10 s: on a loaded machine the engine thread may wait a while for a core.)
  for (int i = 0; i < 1000 && e.stats().kv_blocks_used != 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(e.stats().kv_blocks_used, 0);
  EXPECT_EQ(e.stats().requests_cancelled, 1u);
}

TEST_F(EngineTest, DeadlineEndsARequest) {
  EngineOptions o;
  o.threads = 1;
  Engine e(*tiny_.model, *tiny_.tokenizer, o);
  Collector c;
  auto r = greedy(prompt_of(*tiny_.tokenizer, "Slow"), 3900);
  r.deadline = std::chrono::steady_clock::now() + 30ms;
  e.submit(r, c.callbacks());
  ASSERT_TRUE(c.wait());
  EXPECT_EQ(c.finish.reason, FinishReason::Deadline);
}

TEST_F(EngineTest, StopStringsEndGenerationAndAreNotShown) {
  const auto prompt = prompt_of(*tiny_.tokenizer, "Tell me");
  auto r = greedy(prompt, 40);
  EngineOptions o;
  o.threads = 1;
  Engine e(*tiny_.model, *tiny_.tokenizer, o);
  Collector c0;
  e.submit(r, c0.callbacks());
  ASSERT_TRUE(c0.wait());
  const std::string full = c0.text;
  ASSERT_GE(full.size(), 12u);
  // A stop string taken from the middle of the greedy text, spanning token boundaries.
  const std::string stop = full.substr(full.size() / 2, 5);
  r.stop = {stop};
  Collector c;
  e.submit(r, c.callbacks());
  ASSERT_TRUE(c.wait());
  EXPECT_EQ(c.finish.reason, FinishReason::Stop);
  EXPECT_EQ(c.text, full.substr(0, full.find(stop)));
}

TEST_F(EngineTest, LogprobsAreNormalizedAndIncludeTheGreedyChoice) {
  auto r = greedy(prompt_of(*tiny_.tokenizer, "Probabilities"), 4);
  r.top_logprobs = 3;
  Collector c;
  EngineOptions o;
  o.threads = 1;
  Engine e(*tiny_.model, *tiny_.tokenizer, o);
  e.submit(r, c.callbacks());
  ASSERT_TRUE(c.wait());
  ASSERT_EQ(c.events.size(), 4u);
  for (const TokenEvent& ev : c.events) {
    ASSERT_EQ(ev.top.size(), 3u);
    EXPECT_EQ(ev.top[0].id, ev.id);  // greedy picks the most likely token
    EXPECT_FLOAT_EQ(ev.top[0].logprob, ev.logprob);
    EXPECT_LE(ev.logprob, 0.0f);
    EXPECT_GE(ev.top[0].logprob, ev.top[1].logprob);
  }
}

TEST_F(EngineTest, FullQueueRefusesAndBadRequestsThrow) {
  EngineOptions o;
  o.threads = 1;
  o.max_running = 1;
  o.max_queued = 2;
  Engine e(*tiny_.model, *tiny_.tokenizer, o);
  const auto p = prompt_of(*tiny_.tokenizer, "Queue");
  std::vector<std::unique_ptr<Collector>> cs;
  std::vector<std::shared_ptr<RequestHandle>> hs;
  int refused = 0;
  for (int i = 0; i < 8; ++i) {
    cs.push_back(std::make_unique<Collector>());
    try {
      hs.push_back(e.submit(greedy(p, 3000), cs.back()->callbacks()));
    } catch (const QueueFullError&) {
      ++refused;
      cs.pop_back();
    }
  }
  EXPECT_GE(refused, 8 - 3);  // one running, two queued at most
  for (auto& h : hs) h->cancel();
  for (auto& c : cs) ASSERT_TRUE(c->wait());

  Collector c;
  EXPECT_THROW(e.submit(greedy({}, 4), c.callbacks()), Error);
  EXPECT_THROW(e.submit(greedy({1, 999999}, 4), c.callbacks()), Error);
  EXPECT_THROW(e.submit(greedy(std::vector<std::int32_t>(5000, 1), 4), c.callbacks()), Error);
  auto bad = greedy(p, 4);
  bad.sampling.top_p = 2.0f;
  EXPECT_THROW(e.submit(bad, c.callbacks()), Error);
}

TEST_F(EngineTest, PreemptionUnderCachePressureKeepsResults) {
  // A cache of 4096 positions (the context) with 6 requests of 700+ tokens each: they cannot all
  // hold their blocks at once, so younger ones are preempted and recomputed later.
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 6; ++i) {
    std::string text;
    for (int w = 0; w < 120; ++w) text += "word" + std::to_string(i * 1000 + w) + " ";
    reqs.push_back(greedy(prompt_of(*tiny_.tokenizer, text), 200));
  }
  std::vector<std::vector<std::int32_t>> expected;
  for (const auto& r : reqs) expected.push_back(alone(r));
  EngineOptions o;
  o.threads = 2;
  o.kv_cache_tokens = 4096;
  o.context_tokens = 4096;
  Engine e(*tiny_.model, *tiny_.tokenizer, o);
  std::vector<std::unique_ptr<Collector>> cs;
  for (const auto& r : reqs) {
    cs.push_back(std::make_unique<Collector>());
    e.submit(r, cs.back()->callbacks());
  }
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_TRUE(cs[i]->wait(60s));
    std::size_t d = 0;
    while (d < cs[i]->ids.size() && d < expected[i].size() && cs[i]->ids[d] == expected[i][d]) ++d;
    EXPECT_EQ(cs[i]->ids, expected[i]) << "request " << i << ": " << cs[i]->ids.size() << " vs " << expected[i].size()
                                       << " tokens, first difference at " << d << " finish " << finish_reason_name(cs[i]->finish.reason) << " " << cs[i]->finish.error;
  }
  EXPECT_GT(e.stats().preemptions_total, 0u);
}

TEST_F(EngineTest, DrainFinishesInFlightWorkAndRefusesNewWork) {
  EngineOptions o;
  o.threads = 1;
  Engine e(*tiny_.model, *tiny_.tokenizer, o);
  Collector a, b;
  // The long request holds the engine thread in its 64th token's callback for twice the grace
  // period, long after the short one (32 tokens) finished: it cannot finish within the grace
  // period however fast the machine is, and the short one has the whole period.
  constexpr auto grace = 2s;
  b.after_token = [&](std::size_t n) {
    if (n == 64) std::this_thread::sleep_for(2 * grace);
  };
  e.submit(greedy(prompt_of(*tiny_.tokenizer, "Drain a"), 32), a.callbacks());
  auto slow = e.submit(greedy(prompt_of(*tiny_.tokenizer, "Drain b"), 3900), b.callbacks());
  // The short one finishes within the grace period; the long one is cut.
  const bool clean = e.drain(grace);
  EXPECT_FALSE(clean);
  ASSERT_TRUE(a.wait());
  ASSERT_TRUE(b.wait());
  EXPECT_EQ(a.finish.reason, FinishReason::Length);
  EXPECT_EQ(b.finish.reason, FinishReason::Cancelled);
  Collector c;
  EXPECT_THROW(e.submit(greedy(prompt_of(*tiny_.tokenizer, "late"), 4), c.callbacks()), QueueFullError);
}

TEST_F(EngineTest, AWaitingRequestGetsItsShareOfTheRunningSlots) {
  // Request A (one group of 8 long choices) fills every slot of an engine that runs 4 at once;
  // request B (one short choice) arrives after it. B must get a slot while A still runs (A gives
  // up its youngest sequence), not wait for A's sequences to finish; A's results stay exact.
  EngineOptions o;
  o.threads = 2;
  o.max_running = 4;
  Engine e(*tiny_.model, *tiny_.tokenizer, o);
  std::vector<GenerationRequest> a_reqs;
  for (int i = 0; i < 8; ++i) {
    a_reqs.push_back(greedy(prompt_of(*tiny_.tokenizer, "Request A choice " + std::to_string(i)), 300));
    a_reqs.back().group = 1;
  }
  // Computed first: two engines must not run one model at once (its scratch buffers are shared).
  std::vector<std::vector<std::int32_t>> expected;
  for (int i = 1; i < 4; ++i) expected.push_back(alone(a_reqs[static_cast<std::size_t>(i)]));
  std::vector<std::unique_ptr<Collector>> a;
  std::mutex mu;
  int a_finished = 0;
  int a_finished_when_b_finished = -1;
  for (const auto& r : a_reqs) {
    a.push_back(std::make_unique<Collector>());
    GenerationCallbacks cb = a.back()->callbacks();
    auto inner = cb.on_finish;
    cb.on_finish = [&, inner](const Finish& f) {
      {
        std::lock_guard lock(mu);
        ++a_finished;
      }
      inner(f);
    };
    e.submit(r, std::move(cb));
  }
  // B arrives once A holds every slot.
  for (int i = 0; i < 10000 && e.stats().running < 4; ++i) std::this_thread::sleep_for(1ms);
  ASSERT_EQ(e.stats().running, 4);
  GenerationRequest b_req = greedy(prompt_of(*tiny_.tokenizer, "Request B"), 5);
  b_req.group = 2;
  Collector b;
  GenerationCallbacks bcb = b.callbacks();
  auto inner = bcb.on_finish;
  bcb.on_finish = [&, inner](const Finish& f) {
    {
      std::lock_guard lock(mu);
      a_finished_when_b_finished = a_finished;
    }
    inner(f);
  };
  e.submit(b_req, std::move(bcb));
  ASSERT_TRUE(b.wait(60s));
  EXPECT_EQ(b.finish.reason, FinishReason::Length);
  EXPECT_EQ(a_finished_when_b_finished, 0) << "B waited for A's choices to finish";
  EXPECT_GT(e.stats().preemptions_total, 0u);
  for (auto& c : a) ASSERT_TRUE(c->wait(120s));
  // Choice 3 was the youngest when B arrived: preempted, recomputed, and still the same tokens.
  for (std::size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(a[i + 1]->ids, expected[i]) << "choice " << i + 1;
}

TEST_F(EngineTest, DefaultContextIsTheTrainedOneWithinTheKvBudget) {
  const LlamaConfig& c = tiny_.model->config();
  ASSERT_GT(c.n_ctx_train, 64);
  const std::size_t per_token = kv_bytes_per_token(c);
  EngineOptions o;
  o.kv_memory_bytes = std::size_t{1} << 40;  // room for anything
  EngineOptions r = resolve_engine_options(c, o);
  EXPECT_EQ(r.context_tokens, c.n_ctx_train);
  EXPECT_EQ(r.kv_cache_tokens, 4 * c.n_ctx_train);
  // A budget of 100 positions: the context shrinks to what fits, in whole blocks.
  o.kv_memory_bytes = per_token * 100;
  r = resolve_engine_options(c, o);
  EXPECT_EQ(r.context_tokens, 96);
  EXPECT_EQ(r.kv_cache_tokens, 96);
  // Explicit sizes are taken as given.
  o.context_tokens = 1000;
  r = resolve_engine_options(c, o);
  EXPECT_EQ(r.context_tokens, 1000);
  EXPECT_EQ(r.kv_cache_tokens, 1000);
  o.kv_cache_tokens = 5000;
  EXPECT_EQ(resolve_engine_options(c, o).kv_cache_tokens, 5000);
  // A budget that cannot hold a useful sequence is an error, not a silent 16-token context.
  EngineOptions tiny_budget;
  tiny_budget.kv_memory_bytes = per_token * 20;
  EXPECT_THROW(resolve_engine_options(c, tiny_budget), Error);
}

}  // namespace
}  // namespace kiln
