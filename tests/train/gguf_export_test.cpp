// A training model exported as GGUF runs in kiln's inference forward (LlamaModel, paged KV
// cache) with the logits the training forward gives on the same weights: both are the same
// model. F16 and BF16 exports load too, to their precision. Tied output has no output tensor.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "format/gguf_file.h"
#include "model/llama_model.h"
#include "test_support.h"
#include "train/gguf_export.h"
#include "train/llama_training_model.h"

namespace kiln::train {
namespace {

LlamaConfig export_config(bool tied) {
  LlamaConfig c;
  c.arch = "llama";
  c.n_vocab = 64;
  c.n_embd = 64;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_head_kv = 2;
  c.head_dim = 16;
  c.n_rot = 16;
  c.n_ff = 96;
  c.n_ctx_train = 32;
  c.tied_output = tied;
  return c;
}

void check(bool tied, DType type, double tolerance) {
  ThreadPool pool(2);
  LlamaTrainingModel m(export_config(tied), kernels::GemmPrecision::F32, pool);
  std::mt19937 rng(4);
  std::normal_distribution<float> dist(0.0f, 0.2f);
  for (const ParameterInfo& p : m.table().entries())
    for (std::int64_t i = 0; i < p.size(); ++i) m.params()[p.offset + i] = p.decay ? dist(rng) : 1.0f + dist(rng);
  // Two sequences: the training forward attends within each, the inference forward keeps them
  // apart in the paged cache.
  const int B = 2, T = 20;
  std::vector<int> tokens(B * T), targets(B * T, 0);
  std::uniform_int_distribution<int> tok(0, m.config().n_vocab - 1);
  for (int& t : tokens) t = tok(rng);
  std::vector<float> train_logits(static_cast<std::size_t>(B * T * m.config().n_vocab));
  m.logits(TokenBatch{B, T, tokens.data(), targets.data()}, train_logits.data());

  const std::string path = test::temp_dir() + "/exported.gguf";
  GgufExportOptions o;
  o.type = type;
  export_gguf(m, path, o);
  const auto gguf = GgufFile::open(path);
  EXPECT_EQ(gguf->find_tensor("output.weight") == nullptr, tied);
  EXPECT_NE(gguf->find_tensor("token_embd.weight"), nullptr);

  auto model = LlamaModel::load(path);
  EXPECT_EQ(model->config().tied_output, tied);
  KvCache cache = model->make_kv_cache(64, DType::F32);
  Batch batch;
  for (int b = 0; b < B; ++b) {
    const int seq = cache.add_sequence();
    for (int t = 0; t < T; ++t) batch.add(tokens[static_cast<std::size_t>(b * T + t)], t, seq, true);
  }
  std::vector<float> logits(train_logits.size());
  model->forward(batch, cache, pool, logits.data());
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < logits.size(); ++i) {
    diff += (static_cast<double>(logits[i]) - train_logits[i]) * (static_cast<double>(logits[i]) - train_logits[i]);
    norm += static_cast<double>(train_logits[i]) * train_logits[i];
  }
  EXPECT_LT(std::sqrt(diff / norm), tolerance) << (tied ? "tied " : "untied ") << dtype_name(type);
}

TEST(GgufExport, InferenceLogitsEqualTrainingLogits) {
  check(false, DType::F32, 1e-5);
  check(true, DType::F32, 1e-5);
}

TEST(GgufExport, HalfPrecisionExportsLoad) {
  check(false, DType::F16, 2e-3);
  check(false, DType::BF16, 2e-2);
}

}  // namespace
}  // namespace kiln::train
