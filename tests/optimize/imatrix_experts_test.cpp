// The importance matrix of a mixture of experts: kiln imatrix's collector keeps the stacked expert
// tensors' sums per expert (in_sum2 (n_expert, n_cols), counts (n_expert)) as llama-imatrix does,
// the file round-trips, and kiln quantize uses each expert's row of it.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "core/thread_pool.h"
#include "model/llama_model.h"
#include "model/synthetic_model.h"
#include "optimize/imatrix.h"
#include "test_support.h"

namespace kiln {
namespace {

TEST(ImatrixExperts, PerExpertSumsAndCountsThenQuantize) {
  SyntheticModelSpec spec;
  LlamaConfig& c = spec.config;
  c.arch = "qwen3moe";
  c.n_vocab = 96, c.n_embd = 64, c.n_layer = 2, c.n_head = 4, c.n_head_kv = 2, c.head_dim = 16, c.n_ff = 64;
  c.n_rot = 16, c.n_ctx_train = 256, c.rms_eps = 1e-6f;
  c.n_expert = 8, c.n_expert_used = 3, c.n_ff_exp = 32;
  const std::string dir = test::temp_dir();
  const std::string model_path = dir + "/imatrix_moe.gguf";
  write_synthetic_model(spec, model_path);

  std::unique_ptr<LlamaModel> m = LlamaModel::load(model_path);
  optimize::ImatrixCollector collector({});
  m->set_observer(&collector);
  ThreadPool pool(2);
  KvCache cache = m->make_kv_cache(64);
  const int seq = cache.add_sequence();
  Batch b;
  const int T = 20;
  for (int i = 0; i < T; ++i) b.add((i * 13 + 1) % c.n_vocab, i, seq, i == T - 1);
  std::vector<float> logits(static_cast<std::size_t>(c.n_vocab));
  m->forward(b, cache, pool, logits.data());
  m->set_observer(nullptr);
  const optimize::Imatrix im = collector.result();

  const optimize::ImatrixEntry* router = im.find("blk.0.ffn_gate_inp.weight");
  ASSERT_NE(router, nullptr);
  EXPECT_EQ(router->n_mat(), 1);
  EXPECT_EQ(router->counts[0], static_cast<float>(T));
  for (const char* name : {"blk.1.ffn_gate_exps.weight", "blk.1.ffn_up_exps.weight", "blk.1.ffn_down_exps.weight"}) {
    const optimize::ImatrixEntry* e = im.find(name);
    ASSERT_NE(e, nullptr) << name;
    EXPECT_EQ(e->n_mat(), 8) << name;
    EXPECT_EQ(e->n_cols, std::string(name).find("down") != std::string::npos ? 32 : 64) << name;
    EXPECT_EQ(e->in_sum2.size(), static_cast<std::size_t>(e->n_cols * 8)) << name;
    // Every token went to 3 experts; an expert that saw no rows has all-zero sums.
    EXPECT_EQ(std::accumulate(e->counts.begin(), e->counts.end(), 0.0f), static_cast<float>(3 * T)) << name;
    for (int x = 0; x < 8; ++x) {
      double s = 0;
      for (std::int64_t j = 0; j < e->n_cols; ++j) s += e->in_sum2[static_cast<std::size_t>(x * e->n_cols + j)];
      EXPECT_EQ(s > 0, e->counts[static_cast<std::size_t>(x)] > 0) << name << " expert " << x;
    }
  }
  // gate and up see the same inputs.
  EXPECT_EQ(im.find("blk.0.ffn_gate_exps.weight")->in_sum2, im.find("blk.0.ffn_up_exps.weight")->in_sum2);

  const std::string imatrix_path = dir + "/moe.imatrix.gguf";
  optimize::write_imatrix(im, imatrix_path);
  const optimize::Imatrix back = optimize::read_imatrix(imatrix_path);
  ASSERT_NE(back.find("blk.1.ffn_down_exps.weight"), nullptr);
  EXPECT_EQ(back.find("blk.1.ffn_down_exps.weight")->counts, im.find("blk.1.ffn_down_exps.weight")->counts);

  // kiln quantize takes it: each expert's rows with that expert's importance (q4_K uses it).
  const test::KilnRun q = test::run_kiln("quantize " + test::shell_quote(model_path) + " " +
                                         test::shell_quote(dir + "/moe-q4_k_s.gguf") + " Q4_K_S --imatrix " +
                                         test::shell_quote(imatrix_path) + " -t 2");
  ASSERT_EQ(q.code, 0) << q.out;
  EXPECT_EQ(q.out.find("ffn_gate_exps.weight: not in the imatrix"), std::string::npos) << q.out;
  std::unique_ptr<LlamaModel> quantized = LlamaModel::load(dir + "/moe-q4_k_s.gguf");
  EXPECT_EQ(quantized->config().n_expert, 8);
}

}  // namespace
}  // namespace kiln
