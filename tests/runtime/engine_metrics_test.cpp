// What the engine records in a metrics registry, on the tiny random-weight Llama: exact counts of
// requests and tokens, one histogram observation per request (or per step) with the values the
// requests saw, finish reasons, the prefix cache's queries and hits, gauges back to zero when the
// work is done, counters that continue across engines of one model, and nothing at all when the
// metrics are switched off.
#include "runtime/engine_metrics.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <numeric>

#include "model/llama_model.h"
#include "monitor/registry.h"
#include "monitor/snapshot.h"
#include "runtime/engine.h"
#include "test_support.h"
#include "tokenizer/load_tokenizer.h"

namespace kiln {
namespace {

using namespace std::chrono_literals;

// Waits for the on_finish of `n` requests and keeps their Finish.
struct Finishes {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Finish> done;
  GenerationCallbacks callbacks() {
    return {{}, [this](const Finish& f) {
              std::lock_guard lk(mu);
              done.push_back(f);
              cv.notify_all();
            }};
  }
  bool wait(std::size_t n) {
    std::unique_lock lk(mu);
    return cv.wait_for(lk, 30s, [&] { return done.size() >= n; });
  }
};

GenerationRequest request(std::vector<std::int32_t> prompt, int max_tokens) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.sampling.temperature = 0;
  r.max_tokens = max_tokens;
  r.ignore_eos = true;
  return r;
}

class EngineMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = test::data_file("llama-2-tiny-random.gguf");
    if (path.empty()) GTEST_SKIP() << "shared data file llama-2-tiny-random.gguf not found (set KILN_DATA_DIR)";
    model_ = LlamaModel::load(path);
    tokenizer_ = load_tokenizer(*model_->source().gguf());
  }
  EngineOptions options(bool prefix_cache = false) {
    EngineOptions o;
    o.threads = 1;
    o.prefix_cache = prefix_cache;
    o.metrics = registry_;
    o.metrics_model = "tiny";
    return o;
  }
  std::vector<std::int32_t> prompt(const std::string& text) { return tokenizer_->encode(text, true, false); }
  monitor::Snapshot snapshot() const { return monitor::Snapshot(registry_->collect()); }

  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::shared_ptr<monitor::Registry> registry_ = std::make_shared<monitor::Registry>();
  const monitor::Labels tiny_ = {{"model", "tiny"}};
};

TEST_F(EngineMetricsTest, CountsAndHistogramsMatchTheRequests) {
  Finishes f;
  double prompt_tokens = 0, generated = 0;
  {
    Engine e(*model_, *tokenizer_, options());
    const std::vector<std::pair<std::string, int>> work = {{"Once upon a time", 7}, {"The cat sat", 12}, {"Hello", 3}};
    for (const auto& [text, n] : work) {
      GenerationRequest r = request(prompt(text), n);
      prompt_tokens += static_cast<double>(r.prompt.size());
      generated += n;
      e.submit(std::move(r), f.callbacks());
    }
    ASSERT_TRUE(f.wait(3));
    const monitor::Snapshot s = snapshot();
    EXPECT_EQ(s.sum("kiln_engine_requests_total", tiny_), 3);
    EXPECT_EQ(s.sum("kiln_engine_requests_finished_total", {{"model", "tiny"}, {"reason", "length"}}), 3);
    EXPECT_EQ(s.sum("kiln_engine_requests_finished_total", tiny_), 3);
    EXPECT_EQ(s.sum("kiln_prompt_tokens_total", tiny_), prompt_tokens);
    EXPECT_EQ(s.sum("kiln_generated_tokens_total", tiny_), generated);
    for (const char* h :
         {"kiln_time_to_first_token_seconds", "kiln_time_per_output_token_seconds", "kiln_e2e_request_latency_seconds",
          "kiln_request_queue_time_seconds", "kiln_request_prompt_tokens", "kiln_request_generation_tokens"})
      EXPECT_EQ(s.histogram_count(h, tiny_), 3) << h;
    EXPECT_EQ(s.histogram_sum("kiln_request_prompt_tokens", tiny_), prompt_tokens);
    EXPECT_EQ(s.histogram_sum("kiln_request_generation_tokens", tiny_), generated);
    // The end-to-end latencies are the very times the requests' Finish reported.
    double total = 0, first = 0;
    for (const Finish& x : f.done) total += x.total_s, first += x.time_to_first_token_s;
    EXPECT_NEAR(s.histogram_sum("kiln_e2e_request_latency_seconds", tiny_), total, 1e-9);
    EXPECT_LE(s.histogram_sum("kiln_time_to_first_token_seconds", tiny_), total);
    EXPECT_NEAR(s.histogram_sum("kiln_time_to_first_token_seconds", tiny_), first, 1e-9);
    // One step-size observation per step; the steps fed every prompt token and every generated
    // token but each request's last one.
    const double steps = s.sum("kiln_engine_steps_total", tiny_);
    EXPECT_GT(steps, 0);
    EXPECT_EQ(s.histogram_count("kiln_engine_step_tokens", tiny_), steps);
    EXPECT_EQ(s.histogram_count("kiln_engine_step_sequences", tiny_), steps);
    EXPECT_EQ(s.histogram_sum("kiln_engine_step_tokens", tiny_), prompt_tokens + generated - 3);
    EXPECT_GT(s.sum("kiln_engine_busy_seconds_total", tiny_), 0);
    // Everything finished: nothing runs, waits or holds blocks (the prefix cache is off).
    EXPECT_EQ(s.sum("kiln_requests_running", tiny_), 0);
    EXPECT_EQ(s.sum("kiln_requests_waiting", tiny_), 0);
    EXPECT_EQ(s.sum("kiln_kv_cache_blocks_used", tiny_), 0);
    EXPECT_EQ(s.sum("kiln_kv_cache_blocks", tiny_), e.stats().kv_blocks_total);
    EXPECT_EQ(s.sum("kiln_kv_cache_block_tokens", tiny_), 16);
    // stats() is the same numbers.
    const EngineStats st = e.stats();
    EXPECT_EQ(st.requests_total, 3u);
    EXPECT_EQ(static_cast<double>(st.generated_tokens_total), generated);
    EXPECT_EQ(static_cast<double>(st.steps_total), steps);
  }
  // The engine is gone: its pool with it; its counters stay for the model's next engine.
  const monitor::Snapshot after = snapshot();
  EXPECT_EQ(after.sum("kiln_kv_cache_blocks", tiny_), 0);
  EXPECT_EQ(after.sum("kiln_generated_tokens_total", tiny_), generated);
  Engine again(*model_, *tokenizer_, options());
  Finishes g;
  again.submit(request(prompt("Again"), 2), g.callbacks());
  ASSERT_TRUE(g.wait(1));
  EXPECT_EQ(snapshot().sum("kiln_generated_tokens_total", tiny_), generated + 2);
  EXPECT_EQ(again.stats().requests_total, 4u);
}

TEST_F(EngineMetricsTest, CancelledAndExpiredRequestsAreCountedByReasonOnly) {
  Engine e(*model_, *tokenizer_, options());
  Finishes f;
  GenerationRequest expired = request(prompt("Too late"), 3000);
  expired.deadline = std::chrono::steady_clock::now();
  e.submit(std::move(expired), f.callbacks());
  auto handle = e.submit(request(prompt("Cancel me"), 3000), f.callbacks());
  handle->cancel();
  ASSERT_TRUE(f.wait(2));
  const monitor::Snapshot s = snapshot();
  EXPECT_EQ(s.sum("kiln_engine_requests_finished_total", {{"model", "tiny"}, {"reason", "deadline"}}), 1);
  EXPECT_EQ(s.sum("kiln_engine_requests_finished_total", {{"model", "tiny"}, {"reason", "cancelled"}}), 1);
  EXPECT_EQ(s.histogram_count("kiln_e2e_request_latency_seconds", tiny_), 0);
  EXPECT_EQ(s.histogram_count("kiln_request_generation_tokens", tiny_), 0);
  EXPECT_EQ(e.stats().requests_cancelled, 2u);
}

TEST_F(EngineMetricsTest, PrefixCacheQueriesAndHitsCountTokens) {
  Engine e(*model_, *tokenizer_, options(true));
  const std::vector<std::int32_t> p = prompt(
      "A prompt long enough to fill more than two blocks of sixteen tokens of the key-value cache, surely: it "
      "goes on and on, clause after clause, so that the whole of it spans several blocks.");
  ASSERT_GT(p.size(), 33u);
  Finishes f;
  e.submit(request(p, 4), f.callbacks());
  ASSERT_TRUE(f.wait(1));
  e.submit(request(p, 4), f.callbacks());
  ASSERT_TRUE(f.wait(2));
  const monitor::Snapshot s = snapshot();
  EXPECT_EQ(s.sum("kiln_prefix_cache_queries_total", tiny_), 2.0 * static_cast<double>(p.size()));
  const double cached = f.done[1].usage.cached_tokens;
  EXPECT_GE(cached, 32);
  EXPECT_EQ(s.sum("kiln_prefix_cache_hits_total", tiny_), cached);
  EXPECT_EQ(s.sum("kiln_prompt_tokens_cached_total", tiny_), cached);
}

TEST_F(EngineMetricsTest, SwitchedOffTheEngineRecordsNothing) {
  EngineOptions o = options();
  o.record_metrics = false;
  Engine e(*model_, *tokenizer_, o);
  Finishes f;
  e.submit(request(prompt("Quiet"), 5), f.callbacks());
  ASSERT_TRUE(f.wait(1));
  EXPECT_EQ(f.done[0].usage.completion_tokens, 5);
  EXPECT_TRUE(registry_->collect().empty());
  EXPECT_EQ(e.stats().generated_tokens_total, 0u);
}

}  // namespace
}  // namespace kiln
