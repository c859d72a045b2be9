// The benchmarks kiln bench prints, as library code: the speed bench returns the asked number of
// repetitions with positive rates whose summary is eval_stats' mean_stdev; the serving bench
// returns one result per stream count with every token accounted for; bad options are one-line
// errors. Only counts and signs are checked: how fast this machine is is not a test result.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "eval/bench_prompt.h"
#include "eval/eval_stats.h"
#include "eval/serving_bench.h"
#include "eval/speed_bench.h"
#include "model/llama_model.h"
#include "runtime/loaded_model.h"
#include "test_support.h"

namespace kiln::eval {
namespace {

TEST(BenchPrompt, IsThePeerScriptsPromptShiftedPerStream) {
  const std::vector<int> p = bench_prompt(200, 32000);
  ASSERT_EQ(p.size(), 200u);
  for (int i = 0; i < 200; ++i) EXPECT_EQ(p[static_cast<std::size_t>(i)], 100 + (i * 7) % 1000);
  const std::vector<int> small = bench_prompt(50, 512);
  for (int id : small) EXPECT_LT(id, 512);
  EXPECT_NE(bench_prompt(16, 32000, 1), bench_prompt(16, 32000, 0));
  EXPECT_EQ(bench_prompt(16, 32000, 1)[0], 113);
}

TEST(MeanStdev, MatchesTheTwoPassSampleFormula) {
  const MeanStdev e = mean_stdev({});
  EXPECT_EQ(e.mean, 0);
  EXPECT_EQ(e.stdev, 0);
  const MeanStdev one = mean_stdev({5});
  EXPECT_EQ(one.mean, 5);
  EXPECT_EQ(one.stdev, 0);
  // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, squared deviations sum to 32, sample variance 32 / 7.
  const MeanStdev m = mean_stdev({2, 4, 4, 4, 5, 5, 7, 9});
  EXPECT_DOUBLE_EQ(m.mean, 5);
  EXPECT_DOUBLE_EQ(m.stdev, std::sqrt(32.0 / 7.0));
}

TEST(SpeedBench, ReturnsTheAskedRepetitionsOnStories260K) {
  KILN_REQUIRE_DATA(path, "stories260K.bin");
  std::unique_ptr<LlamaModel> model = LlamaModel::load(path);
  ThreadPool pool(2);
  const SpeedBenchOptions o{.n_prompt = 20, .n_gen = 8, .repetitions = 3, .batch = 7};
  KvCache cache = model->make_kv_cache(speed_bench_positions(o));
  std::vector<int> reported;
  const SpeedBenchResult r = run_speed_bench(*model, cache, pool, o, [&](int rep) { reported.push_back(rep); });
  EXPECT_EQ(reported, (std::vector<int>{0, 1, 2, 3})) << "the warm-up (0), then each timed repetition";
  ASSERT_EQ(r.prefill_tok_s.size(), 3u);
  ASSERT_EQ(r.decode_tok_s.size(), 3u);
  for (double x : r.prefill_tok_s) EXPECT_GT(x, 0);
  for (double x : r.decode_tok_s) EXPECT_GT(x, 0);
  const MeanStdev pf = mean_stdev(r.prefill_tok_s), dc = mean_stdev(r.decode_tok_s);
  EXPECT_EQ(r.prefill.mean, pf.mean);
  EXPECT_EQ(r.prefill.stdev, pf.stdev);
  EXPECT_EQ(r.decode.mean, dc.mean);
  EXPECT_EQ(r.decode.stdev, dc.stdev);
  // Every repetition gave its sequence back: the cache is as free as before.
  EXPECT_EQ(cache.free_blocks(), cache.total_blocks());

  // No decode steps: prefill only.
  const SpeedBenchOptions prefill_only{.n_prompt = 8, .n_gen = 0, .repetitions = 2, .batch = 512};
  const SpeedBenchResult p = run_speed_bench(*model, cache, pool, prefill_only);
  EXPECT_EQ(p.prefill_tok_s.size(), 2u);
  EXPECT_TRUE(p.decode_tok_s.empty());
  EXPECT_EQ(p.decode.mean, 0);
}

TEST(SpeedBench, RejectsBadOptionsAndASmallCache) {
  KILN_REQUIRE_DATA(path, "stories260K.bin");
  std::unique_ptr<LlamaModel> model = LlamaModel::load(path);
  ThreadPool pool(1);
  KvCache cache = model->make_kv_cache(32);
  EXPECT_THROW(run_speed_bench(*model, cache, pool, {.n_prompt = 0}), Error);
  EXPECT_THROW(run_speed_bench(*model, cache, pool, {.n_prompt = 8, .n_gen = 1, .repetitions = 0}), Error);
  try {
    run_speed_bench(*model, cache, pool, {.n_prompt = 100, .n_gen = 8});
    ADD_FAILURE() << "a cache of 32 positions ran 108";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("KV cache"), std::string::npos) << e.what();
  }
}

TEST(ServingBench, OneResultPerStreamCountWithEveryTokenGenerated) {
  KILN_REQUIRE_DATA(path, "llama-2-tiny-random.gguf");
  LoadedModel m = load_model(path, {.tokenizer = TokenizerNeed::required});
  const ServingBenchOptions o{.n_prompt = 12, .n_gen = 5, .batch = 64, .threads = 2};
  std::vector<int> announced;
  const std::vector<ServingBenchResult> rs =
      run_serving_bench(*m.model, *m.tokenizer, o, {1, 3}, [&](int n) { announced.push_back(n); });
  EXPECT_EQ(announced, (std::vector<int>{1, 3}));
  ASSERT_EQ(rs.size(), 2u);
  for (std::size_t i = 0; i < rs.size(); ++i) {
    const ServingBenchResult& r = rs[i];
    EXPECT_EQ(r.streams, i == 0 ? 1 : 3);
    EXPECT_GT(r.wall_s, 0);
    // gen_tok_s is the generated tokens over the wall time: all n_gen of every stream.
    EXPECT_NEAR(r.gen_tok_s * r.wall_s, r.streams * o.n_gen, 1e-6 * r.streams * o.n_gen);
    EXPECT_GT(r.ttft_p50_ms, 0);
    EXPECT_LE(r.ttft_p50_ms, r.ttft_p99_ms);
    EXPECT_GE(r.itl_p50_ms, 0);
    EXPECT_LE(r.itl_p50_ms, r.itl_p99_ms);
  }
  EXPECT_THROW(run_serving_bench(*m.model, *m.tokenizer, o, {0}), Error);
  EXPECT_THROW(run_serving_bench(*m.model, *m.tokenizer, {.n_prompt = 4, .n_gen = 0}, {1}), Error);
}

}  // namespace
}  // namespace kiln::eval
