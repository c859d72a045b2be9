// AdamW against the update written out in double (PyTorch's torch.optim.AdamW: decoupled decay
// p·(1 − lr·λ), bias-corrected moments), decay only where the table says; gradient clipping;
// the warmup + cosine schedule; and a tiny model that overfits one batch to near-zero loss.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "train/adamw.h"
#include "train/tiny_llama_config.h"
#include "train/llama_training_model.h"

namespace kiln::train {
namespace {

LlamaConfig tiny_config() { return test::tiny_llama_config({.n_vocab = 23, .n_ff = 64}); }

TEST(AdamW, MatchesTheUpdateWrittenOutInDouble) {
  const ParameterTable table(tiny_config());
  ThreadPool pool(2);
  const AdamWOptions o{0.9f, 0.95f, 1e-8f, 0.1f};
  AdamW opt(table, o);
  const auto n = static_cast<std::size_t>(table.total());
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> p(n), g(n);
  for (float& x : p) x = dist(rng);
  std::vector<double> rp(p.begin(), p.end()), rm(n, 0.0), rv(n, 0.0);
  for (int step = 1; step <= 5; ++step) {
    for (float& x : g) x = dist(rng);
    const float lr = 1e-2f * static_cast<float>(step);
    opt.step(p.data(), g.data(), lr, pool);
    for (const ParameterInfo& info : table.entries())
      for (std::int64_t k = info.offset; k < info.offset + info.size(); ++k) {
        const auto i = static_cast<std::size_t>(k);
        if (info.decay) rp[i] *= 1.0 - static_cast<double>(lr) * o.weight_decay;
        rm[i] = o.beta1 * rm[i] + (1 - o.beta1) * static_cast<double>(g[i]);
        rv[i] = o.beta2 * rv[i] + (1 - o.beta2) * static_cast<double>(g[i]) * g[i];
        const double mh = rm[i] / (1 - std::pow(static_cast<double>(o.beta1), step));
        const double vh = rv[i] / (1 - std::pow(static_cast<double>(o.beta2), step));
        rp[i] -= lr * mh / (std::sqrt(vh) + o.eps);
      }
  }
  for (const ParameterInfo& info : table.entries())
    for (std::int64_t k = info.offset; k < info.offset + info.size(); ++k)
      ASSERT_NEAR(p[static_cast<std::size_t>(k)], rp[static_cast<std::size_t>(k)], 2e-5) << info.name;
  EXPECT_EQ(opt.steps(), 5);
}

TEST(AdamW, ClippingScalesTheGradientToTheMaximumNorm) {
  ThreadPool pool(2);
  std::vector<float> g(200000, 0.01f);
  const double norm = clip_gradient_norm(g.data(), static_cast<std::int64_t>(g.size()), 1.0, pool);
  EXPECT_NEAR(norm, 0.01 * std::sqrt(200000.0), 1e-6);
  double s = 0;
  for (float x : g) s += static_cast<double>(x) * x;
  EXPECT_NEAR(std::sqrt(s), 1.0, 1e-5);
  // Below the maximum: unchanged.
  std::vector<float> small(10, 0.1f);
  clip_gradient_norm(small.data(), 10, 1.0, pool);
  EXPECT_EQ(small[3], 0.1f);
}

TEST(AdamW, WarmupThenCosine) {
  EXPECT_FLOAT_EQ(warmup_cosine_lr(0, 10, 110, 1.0f, 0.1f), 0.1f);
  EXPECT_FLOAT_EQ(warmup_cosine_lr(9, 10, 110, 1.0f, 0.1f), 1.0f);
  EXPECT_FLOAT_EQ(warmup_cosine_lr(10, 10, 110, 1.0f, 0.1f), 1.0f);
  EXPECT_NEAR(warmup_cosine_lr(60, 10, 110, 1.0f, 0.1f), 0.55f, 1e-6);
  EXPECT_FLOAT_EQ(warmup_cosine_lr(110, 10, 110, 1.0f, 0.1f), 0.1f);
  EXPECT_FLOAT_EQ(warmup_cosine_lr(500, 10, 110, 1.0f, 0.1f), 0.1f);
}

TEST(AdamW, ATinyModelOverfitsOneBatch) {
  for (kernels::GemmPrecision precision : {kernels::GemmPrecision::F32, kernels::GemmPrecision::BF16}) {
    ThreadPool pool(2);
    LlamaTrainingModel m(tiny_config(), precision, pool);
    std::mt19937 rng(2);
    std::normal_distribution<float> dist(0.0f, 0.02f);
    for (const ParameterInfo& p : m.table().entries())
      for (std::int64_t i = 0; i < p.size(); ++i) m.params()[p.offset + i] = p.decay ? dist(rng) : 1.0f;
    std::vector<int> tokens, targets;
    std::uniform_int_distribution<int> tok(0, m.config().n_vocab - 1);
    for (int i = 0; i < 2 * 12; ++i) tokens.push_back(tok(rng));
    for (int i = 0; i < 2 * 12; ++i) targets.push_back(tok(rng));
    const TokenBatch batch{2, 12, tokens.data(), targets.data()};
    AdamW opt(m.table(), AdamWOptions{0.9f, 0.95f, 1e-8f, 0.0f});
    double first = 0, last = 0;
    for (int step = 0; step < 150; ++step) {
      m.zero_grads();
      last = m.forward_backward(batch, 1.0f);
      if (step == 0) first = last;
      clip_gradient_norm(m.grads(), m.table().total(), 1.0, pool);
      opt.step(m.params(), m.grads(), 1e-2f, pool);
    }
    EXPECT_NEAR(first, std::log(23.0), 0.2);  // near uniform at the start
    EXPECT_LT(last, 0.05) << (precision == kernels::GemmPrecision::F32 ? "f32" : "bf16");
  }
}

}  // namespace
}  // namespace kiln::train
