// gemma2 and gemma3 in kiln against llama.cpp (node-llama-cpp 3.21.1, tests/interop/
// llamacpp_logprobs.mjs) on models kiln synth writes with random weights at a small but faithful
// shape: grouped-query attention, several layers, a sliding window shorter than the test sequence
// (so that the windowed layers' masking decides the result), soft-capping tight enough to bite
// (gemma2), local layers with their own rope base next to global ones with another base and linear
// scaling (gemma3). Both sides run with an f32 KV cache. Checked per position: every token of
// llama.cpp's top 8 has kiln's log-probability within kTolerance, and kiln's most likely token is
// llama.cpp's wherever llama.cpp's top two are further apart than twice that; then the 16 greedy
// tokens after the sequence are equal. kiln's side is its prefill (the whole sequence as one
// batch) for the log-probabilities and its decode (one token per step) for the continuation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "core/thread_pool.h"
#include "model/llama_model.h"
#include "test_support.h"

namespace kiln {
namespace {

// llama.cpp computes GELU through an f16 table, kiln exactly: with logits of spread ~16 that
// moves log-probabilities by a few 1e-3; 0.03 leaves room and still fails any real difference
// (a wrong window, cap, base or scale moves them by 0.1 to several units).
constexpr double kTolerance = 0.03;
constexpr int kTop = 8;
constexpr int kGreedy = 16;

struct GemmaCase {
  const char* name;
  const char* synth_args;  // after `kiln synth`, before -o
};

std::vector<int> test_tokens() {
  // 20 ids of the Llama-2 vocabulary (no BOS magic: ids are passed as they are).
  return {1, 450, 4996, 17354, 1701, 432, 17204, 975, 278, 17366, 11203, 29889, 13, 3492, 526, 263, 2217, 1243, 310, 278};
}

std::vector<float> log_softmax(const float* logits, int n) {
  double mx = logits[0];
  for (int i = 1; i < n; ++i) mx = std::max<double>(mx, logits[i]);
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(logits[i] - mx);
  const double lse = mx + std::log(sum);
  std::vector<float> out(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) out[static_cast<std::size_t>(i)] = static_cast<float>(logits[i] - lse);
  return out;
}

// llama.cpp's log-probability; JSON has no -inf, so a probability that underflowed comes as null.
double logprob_of(const nlohmann::json& v) { return v.is_null() ? -INFINITY : v.get<double>(); }

class GemmaVsLlamaCpp : public ::testing::TestWithParam<GemmaCase> {};

TEST_P(GemmaVsLlamaCpp, LogprobsAndGreedyTokensMatch) {
  const GemmaCase& tc = GetParam();
  KILN_REQUIRE_DATA(donor, "llama-2-tiny-random.gguf");
  const char* src = std::getenv("KILN_SOURCE_DIR");
  ASSERT_NE(src, nullptr);
  struct stat st {};
  if (::stat((std::string(src) + "/node_modules/node-llama-cpp").c_str(), &st) != 0)
    GTEST_SKIP() << "node-llama-cpp is not installed (run scripts/install-deps.sh)";

  const std::string model = test::temp_dir() + "/" + tc.name + ".gguf";
  const test::KilnRun synth = test::run_kiln(std::string("synth ") + tc.synth_args + " --vocab " +
                                             test::shell_quote(donor) + " -o " + test::shell_quote(model) +
                                             " -q");
  ASSERT_EQ(synth.code, 0) << synth.out;

  const std::vector<int> tokens = test_tokens();
  std::string ids;
  for (int t : tokens) ids += (ids.empty() ? "" : ",") + std::to_string(t);
  std::string out;
  const std::string node_cmd = "cd " + test::shell_quote(src) + " && node tests/interop/llamacpp_logprobs.mjs " +
                               test::shell_quote(model) + " --tokens " + ids + " --top " + std::to_string(kTop) +
                               " -n " + std::to_string(kGreedy) + " --kv-type f32";
  ASSERT_EQ(test::run_command(node_cmd, &out), 0) << node_cmd << "\n" << out;
  const nlohmann::json ref = nlohmann::json::parse(out);
  ASSERT_EQ(ref["positions"].size(), tokens.size());

  auto m = LlamaModel::load(model);
  const int V = m->config().n_vocab;
  const int T = static_cast<int>(tokens.size());
  ASSERT_GT(m->config().n_swa, 0);
  ASSERT_LT(m->config().n_swa, T) << "the window must be shorter than the sequence for the test to mean anything";
  ThreadPool pool(2);
  KvCache cache = m->make_kv_cache(T + kGreedy + 1, DType::F32);
  const int seq = cache.add_sequence();
  Batch prompt;
  for (int i = 0; i < T; ++i) prompt.add(tokens[static_cast<std::size_t>(i)], i, seq, true);
  std::vector<float> logits(static_cast<std::size_t>(T) * V);
  m->forward(prompt, cache, pool, logits.data());

  double worst = 0;
  for (int i = 0; i < T; ++i) {
    const std::vector<float> lp = log_softmax(&logits[static_cast<std::size_t>(i) * V], V);
    const auto& top = ref["positions"][static_cast<std::size_t>(i)]["top"];
    for (const auto& pair : top) {
      const int id = pair[0].get<int>();
      const double want = logprob_of(pair[1]);
      ASSERT_TRUE(std::isfinite(want)) << tc.name << " position " << i << ": llama.cpp's top " << kTop
                                       << " has a zero probability: the model's logits are too peaked to compare";
      const double d = std::fabs(lp[static_cast<std::size_t>(id)] - want);
      worst = std::max(worst, d);
      EXPECT_LE(d, kTolerance) << tc.name << " position " << i << " token " << id << ": kiln "
                               << lp[static_cast<std::size_t>(id)] << ", llama.cpp " << want;
    }
    const double gap = logprob_of(top[0][1]) - logprob_of(top[1][1]);
    const int kiln_best = static_cast<int>(std::max_element(lp.begin(), lp.end()) - lp.begin());
    if (gap > 2 * kTolerance) {
      EXPECT_EQ(kiln_best, top[0][0].get<int>()) << tc.name << " position " << i;
    }
  }
  std::printf("%s: worst |delta logprob| over the top %d of %d positions: %.5f\n", tc.name, kTop, T, worst);

  // Greedy continuation by decode steps.
  std::vector<int> greedy;
  int next = static_cast<int>(std::max_element(logits.end() - V, logits.end()) - (logits.end() - V));
  std::vector<float> step(static_cast<std::size_t>(V));
  for (int k = 0; k < kGreedy; ++k) {
    greedy.push_back(next);
    if (k + 1 == kGreedy) break;
    Batch b;
    b.add(next, T + k, seq, true);
    m->forward(b, cache, pool, step.data());
    next = static_cast<int>(std::max_element(step.begin(), step.end()) - step.begin());
  }
  EXPECT_EQ(greedy, ref["tokens"].get<std::vector<int>>()) << tc.name << ": greedy continuation differs";
}

// Default synth shape: width 256, 8 heads (2 KV) of 32, FFN 512. gemma2: 4 layers (0 and 2
// windowed) over a window of 6; caps of 2 on the scores and 40 on the logits (whose top ones are ~60) so that both bite.
// gemma3: 7 layers (0-4 and 6 windowed, 5 global) over a window of 5, global base 1e6 with linear
// scaling 4 against the local layers' 10000.
const GemmaCase kCases[] = {
    {"gemma2", "gemma2 --tied --layers 4 --set gemma2.attention.sliding_window=6 "
               "--set gemma2.attn_logit_softcapping=2.0 --set gemma2.final_logit_softcapping=40.0"},
    {"gemma3", "gemma3 --tied --layers 7 --set gemma3.attention.sliding_window=5 "
               "--set gemma3.rope.freq_base=1000000.0 --set gemma3.rope.scaling.type=linear "
               "--set gemma3.rope.scaling.factor=4.0"},
};

INSTANTIATE_TEST_SUITE_P(Families, GemmaVsLlamaCpp, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<GemmaCase>& i) { return std::string(i.param.name); });

}  // namespace
}  // namespace kiln
