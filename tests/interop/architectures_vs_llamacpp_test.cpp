// Every family kiln runs against llama.cpp (node-llama-cpp 3.21.1) on the same file: kiln synth
// writes a small model of the family with random weights and peaked logits (several layers,
// grouped-query attention, the family's own tensors and metadata), llama.cpp gives its
// next-token log-probabilities at each of 16 positions and its 16 greedy tokens
// (tests/interop/llamacpp_logprobs.mjs, f32 KV cache), and kiln's LlamaModel::forward (f32 KV
// cache of 256 positions, llama.cpp's smallest context) must give
//   - for each of llama.cpp's top 8 tokens at every position, the same log-probability within
//     kLogprobTolerance (where it is above kLogprobFloor, which float probabilities still resolve);
//   - the same most likely token wherever llama.cpp's first two are further apart than twice
//     that;
//   - the same 16 greedy tokens.
// A family's helper adds its cases to the table (kCases).
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

// f32 weights in both; what is left is the order of summation and the rope's float rounding.
constexpr double kLogprobTolerance = 0.02;
constexpr int kTop = 8;
// Log-probabilities below this are not compared (see the loop).
constexpr double kLogprobFloor = -40.0;
constexpr int kGreedy = 16;
constexpr int kContext = 256;

struct FamilyCase {
  const char* name;
  const char* synth_args;  // after `kiln synth`: ARCH and shape/metadata flags
};

const FamilyCase kCases[] = {
    {"llama", "llama --layers 3"},
    {"llama_linear_rope", "llama --layers 2 --set llama.rope.scaling.type=linear --set llama.rope.scaling.factor=4.0"},
    {"qwen2", "qwen2 --layers 3"},
    // qwen3: heads of 64 over a width of 256 (q_dim 512 != width), per-head q/k norms.
    {"qwen3", "qwen3 --layers 3 --heads 8 --kv-heads 2 --head-dim 64 --set qwen3.rope.freq_base=1000000.0"},
    {"qwen3_tied", "qwen3 --layers 2 --tied"},
    // YaRN as Qwen3 ships it for long contexts (factor 4 over the original 4096), here over an
    // original context of 64 so that the ramp crosses the pairs.
    {"qwen3_yarn", "qwen3 --layers 3 --heads 8 --kv-heads 2 --head-dim 64 --ctx 256 --set qwen3.rope.scaling.type=yarn "
                   "--set qwen3.rope.scaling.factor=4.0 --set qwen3.rope.scaling.original_context_length=64"},
    // phi3: fused attn_qkv and gate-up, 4k-style (no LongRoPE factors). (llama.cpp wants
    // <|endoftext|> in the vocabulary of a model whose general.name says phi3: not Llama 2's.)
    {"phi3", "phi3 --set general.name=tiny --layers 3 --heads 8 --kv-heads 8 --head-dim 32"},
    // phi3 128k-style: LongRoPE factors and the attention factor; the context (256) is within the
    // original 512, so both pick the short factors...
    {"phi3_longrope_short", "phi3 --set general.name=tiny --layers 3 --heads 8 --kv-heads 4 --ctx 4096 --set phi3.rope.scaling.original_context_length=512 "
                            "--set phi3.rope.scaling.attn_factor=1.19"},
    // ...and past an original context of 128, the long ones.
    {"phi3_longrope_long", "phi3 --set general.name=tiny --layers 3 --heads 8 --kv-heads 4 --ctx 4096 --set phi3.rope.scaling.original_context_length=128 "
                           "--set phi3.rope.scaling.attn_factor=1.19"},
};

const std::vector<int> kTokens = {1, 450, 4996, 17354, 1701, 29916, 432, 17204, 975, 278, 17366, 11203, 29889, 13, 3492, 29871};

std::string source_dir() {
  const char* src = std::getenv("KILN_SOURCE_DIR");
  return src != nullptr ? src : ".";
}

std::string join(const std::vector<int>& v) {
  std::string s;
  for (int x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
  return s;
}

// log-softmax of one row of logits.
std::vector<double> log_softmax(const float* logits, int n) {
  const double mx = *std::max_element(logits, logits + n);
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  const double lse = mx + std::log(sum);
  std::vector<double> out(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) out[static_cast<std::size_t>(i)] = logits[i] - lse;
  return out;
}

class ArchitectureVsLlamaCpp : public ::testing::TestWithParam<FamilyCase> {};

TEST_P(ArchitectureVsLlamaCpp, SameLogprobsAndGreedyTokens) {
  const FamilyCase& fc = GetParam();
  struct stat st {};
  if (::stat((source_dir() + "/node_modules/node-llama-cpp").c_str(), &st) != 0)
    GTEST_SKIP() << "node-llama-cpp is not installed (run scripts/install-deps.sh)";
  KILN_REQUIRE_DATA(vocab, "llama-2-tiny-random.gguf");
  const std::string model = test::temp_dir() + "/family_" + fc.name + ".gguf";
  const test::KilnRun synth =
      test::run_kiln(std::string("synth ") + fc.synth_args + " --vocab " + test::shell_quote(vocab) + " -o " +
                     test::shell_quote(model) + " --progress none");
  ASSERT_EQ(synth.code, 0) << synth.out;

  std::string out;
  const std::string node_cmd = "cd " + test::shell_quote(source_dir()) + " && node tests/interop/llamacpp_logprobs.mjs " +
                               test::shell_quote(model) + " --tokens " + join(kTokens) + " --top " +
                               std::to_string(kTop) + " -n " + std::to_string(kGreedy) + " --kv-type f32";
  ASSERT_EQ(test::run_command(node_cmd, &out), 0) << node_cmd << "\n" << out;
  const nlohmann::json ref = nlohmann::json::parse(out);
  ASSERT_EQ(ref["positions"].size(), kTokens.size());
  const std::vector<int> ref_greedy = ref["tokens"].get<std::vector<int>>();

  std::unique_ptr<LlamaModel> m = LlamaModel::load(model);
  const int V = m->config().n_vocab;
  ThreadPool pool(2);
  KvCache cache = m->make_kv_cache(kContext, DType::F32);
  const int seq = cache.add_sequence();
  Batch batch;
  for (std::size_t i = 0; i < kTokens.size(); ++i) batch.add(kTokens[i], static_cast<int>(i), seq, true);
  std::vector<float> logits(kTokens.size() * static_cast<std::size_t>(V));
  m->forward(batch, cache, pool, logits.data());

  double max_diff = 0;
  int top1_checked = 0;
  for (std::size_t p = 0; p < kTokens.size(); ++p) {
    SCOPED_TRACE("position " + std::to_string(p));
    const std::vector<double> lp = log_softmax(logits.data() + p * static_cast<std::size_t>(V), V);
    const nlohmann::json& top = ref["positions"][p]["top"];
    for (const nlohmann::json& pair : top) {
      // llama.cpp's probabilities are floats: below e^-40 they lose digits, and 0 prints as null.
      if (!pair[1].is_number() || pair[1].get<double>() < kLogprobFloor) continue;
      const int id = pair[0].get<int>();
      const double want = pair[1].get<double>();
      const double diff = std::abs(lp[static_cast<std::size_t>(id)] - want);
      max_diff = std::max(max_diff, diff);
      EXPECT_LE(diff, kLogprobTolerance) << "token " << id << ": kiln " << lp[static_cast<std::size_t>(id)]
                                         << ", llama.cpp " << want;
    }
    const double second = top.size() >= 2 && top[1][1].is_number() ? top[1][1].get<double>() : -1e9;
    if (top[0][1].is_number() && top[0][1].get<double>() - second > 2 * kLogprobTolerance) {
      const int kiln_top = static_cast<int>(std::max_element(lp.begin(), lp.end()) - lp.begin());
      EXPECT_EQ(kiln_top, top[0][0].get<int>());
      ++top1_checked;
    }
  }
  EXPECT_GE(top1_checked, 8) << "too few positions with a clear most likely token: the logits are too flat";

  std::vector<int> greedy;
  std::vector<float> row(static_cast<std::size_t>(V));
  const float* last = logits.data() + (kTokens.size() - 1) * static_cast<std::size_t>(V);
  int pos = static_cast<int>(kTokens.size());
  for (int i = 0; i < kGreedy; ++i) {
    const int next = static_cast<int>(std::max_element(last, last + V) - last);
    greedy.push_back(next);
    Batch step;
    step.add(next, pos++, seq, true);
    m->forward(step, cache, pool, row.data());
    last = row.data();
  }
  EXPECT_EQ(greedy, ref_greedy);
  std::printf("%s: max |logprob difference| %.2e over llama.cpp's top %d at %zu positions; %d clear top-1s agree\n",
              fc.name, max_diff, kTop, kTokens.size(), top1_checked);
}

INSTANTIATE_TEST_SUITE_P(Families, ArchitectureVsLlamaCpp, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<FamilyCase>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace kiln
