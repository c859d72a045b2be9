// kiln's perplexity against llama.cpp's (node-llama-cpp@3.21.1, prebuilt CPU binaries) on the
// same chunks of War and Peace for the same GGUF: every scored token's negative log-likelihood
// must agree, not only the mean. llama.cpp's side is tests/interop/llamacpp_perplexity.mjs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include "eval/chunks.h"
#include "eval/eval_stats.h"
#include "eval/perplexity.h"
#include "format/gguf_file.h"
#include "model/llama_model.h"
#include "test_support.h"
#include "tokenizer/load_tokenizer.h"

namespace kiln {
namespace {

TEST(PerplexityVsLlamaCpp, SamePerTokenNllOnWarAndPeace) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KILN_REQUIRE_DATA(text_path, "war-and-peace.txt");
  const char* src = std::getenv("KILN_SOURCE_DIR");
  ASSERT_NE(src, nullptr);
  struct stat st {};
  if (::stat((std::string(src) + "/node_modules/node-llama-cpp").c_str(), &st) != 0)
    GTEST_SKIP() << "node-llama-cpp is not installed (run scripts/install-deps.sh)";

  std::unique_ptr<LlamaModel> model = LlamaModel::load(model_path);
  std::unique_ptr<Tokenizer> tok = load_tokenizer(*model->source().gguf());
  const std::string text = eval::read_text_file(text_path).substr(0, 8000);
  const std::vector<std::int32_t> t = tok->encode(text, true, false);
  const std::vector<int> ids(t.begin(), t.end());
  const int n_ctx = 128;
  const eval::ChunkPlan plan = eval::make_chunk_plan(ids, n_ctx, 3, tok->bos_id(), "war-and-peace");
  ASSERT_EQ(plan.n_chunks, 3);

  const std::string tokens_file = test::temp_dir() + "/wp_chunks.txt";
  {
    std::ofstream out(tokens_file);
    for (int id : plan.tokens) out << id << ' ';
  }
  std::string out;
  const std::string cmd = "cd " + test::shell_quote(src) + " && node tests/interop/llamacpp_perplexity.mjs " +
                          test::shell_quote(model_path) + " --tokens " + test::shell_quote(tokens_file) + " --ctx " +
                          std::to_string(n_ctx);
  ASSERT_EQ(test::run_command(cmd, &out), 0) << cmd << "\n" << out;
  const nlohmann::json ref = nlohmann::json::parse(out);
  const std::vector<double> ref_nll = ref["nll"].get<std::vector<double>>();
  ASSERT_EQ(ref_nll.size(), static_cast<std::size_t>(plan.n_chunks * plan.n_scored()));

  // kiln's per-token NLL through the same evaluator `kiln eval perplexity` uses.
  ThreadPool pool(2);
  eval::ChunkEvaluator evaluator(*model, plan, pool, 2048);
  ASSERT_EQ(evaluator.chunks_per_forward(), 3);
  const float* logits = evaluator.evaluate(0, 3);
  std::vector<int> targets;
  for (int c = 0; c < 3; ++c)
    for (int r = 0; r < plan.n_scored(); ++r) targets.push_back(plan.target(c, r));
  std::vector<double> nll(targets.size());
  eval::score_rows(logits, static_cast<int>(targets.size()), model->config().n_vocab, targets.data(), nll.data(), pool);

  double max_diff = 0;
  eval::RunningStats kiln_stats, ref_stats;
  for (std::size_t i = 0; i < nll.size(); ++i) {
    max_diff = std::max(max_diff, std::fabs(nll[i] - ref_nll[i]));
    kiln_stats.add(nll[i]);
    ref_stats.add(ref_nll[i]);
  }
  const double kiln_ppl = eval::perplexity_estimate(kiln_stats).value;
  const double ref_ppl = eval::perplexity_estimate(ref_stats).value;
  std::printf("PPL kiln %.4f, llama.cpp %.4f over %zu tokens; largest per-token NLL difference %.2e\n", kiln_ppl,
              ref_ppl, nll.size(), max_diff);
  // The per-token NLLs spread over about ±0.1 around ln(32000); both engines keep f16 keys and
  // values, and llama.cpp normalises its probabilities in float: agreement to ~1e-4 per token.
  EXPECT_LT(max_diff, 1e-3);
  EXPECT_NEAR(kiln_ppl, ref_ppl, 1e-4 * ref_ppl);
  // And the whole `perplexity` entry point gives the same value as the per-token path.
  EXPECT_NEAR(eval::perplexity(*model, plan, pool, 2048).ppl.value, kiln_ppl, 1e-9 * kiln_ppl);
}

}  // namespace
}  // namespace kiln
