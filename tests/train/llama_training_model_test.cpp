// The whole training model's gradient against central finite differences of its loss, on a
// tiny config (grouped-query attention, two layers, untied and tied output), f32 products;
// bf16 products agree with f32 ones to bf16's precision; a target of -1 takes no part.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "train/llama_training_model.h"
#include "train/tiny_llama_config.h"

namespace kiln::train {
namespace {

LlamaConfig tiny_config(bool tied) { return test::tiny_llama_config({.tied = tied}); }

void randomize(LlamaTrainingModel& m, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.35f);
  for (const ParameterInfo& p : m.table().entries())
    for (std::int64_t i = 0; i < p.size(); ++i) m.params()[p.offset + i] = p.decay ? dist(rng) : 1.0f + 0.2f * dist(rng);
}

struct Data {
  int B = 2, T = 7;
  std::vector<int> tokens, targets;
};

Data random_data(int vocab, std::uint32_t seed) {
  Data d;
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> tok(0, vocab - 1);
  for (int i = 0; i < d.B * d.T; ++i) {
    d.tokens.push_back(tok(rng));
    d.targets.push_back(tok(rng));
  }
  d.targets[3] = -1;  // a position without a target
  return d;
}

void check_gradient(bool tied) {
  ThreadPool pool(2);
  LlamaTrainingModel m(tiny_config(tied), kernels::GemmPrecision::F32, pool);
  randomize(m, 11);
  Data d = random_data(m.config().n_vocab, 5);
  const TokenBatch batch{d.B, d.T, d.tokens.data(), d.targets.data()};
  m.zero_grads();
  const double loss = m.forward_backward(batch, 1.0f);
  ASSERT_TRUE(std::isfinite(loss));
  std::vector<float> grads(m.grads(), m.grads() + m.table().total());
  std::mt19937 rng(3);
  int checked = 0;
  for (const ParameterInfo& p : m.table().entries()) {
    // A few elements of every tensor; all of the small ones.
    for (int s = 0; s < std::min<std::int64_t>(p.size(), 12); ++s) {
      const std::int64_t i = p.offset + std::uniform_int_distribution<std::int64_t>(0, p.size() - 1)(rng);
      float& w = m.params()[i];
      const float keep = w, h = 1e-2f;
      w = keep + h;
      const double up = m.loss(batch);
      w = keep - h;
      const double down = m.loss(batch);
      w = keep;
      const double fd = (up - down) / (2.0 * h);
      EXPECT_NEAR(grads[static_cast<std::size_t>(i)], fd, 2e-4 + 2e-2 * std::fabs(fd))
          << p.name << " element " << i - p.offset << (tied ? " (tied)" : "");
      ++checked;
    }
  }
  EXPECT_GT(checked, 100);
}

TEST(LlamaTrainingModel, GradientMatchesFiniteDifferences) { check_gradient(false); }
TEST(LlamaTrainingModel, TiedOutputGradientMatchesFiniteDifferences) { check_gradient(true); }

TEST(LlamaTrainingModel, Bf16ProductsAgreeWithF32) {
  ThreadPool pool(2);
  LlamaTrainingModel m(tiny_config(false), kernels::GemmPrecision::F32, pool);
  randomize(m, 12);
  Data d = random_data(m.config().n_vocab, 6);
  const TokenBatch batch{d.B, d.T, d.tokens.data(), d.targets.data()};
  m.zero_grads();
  const double l32 = m.forward_backward(batch, 1.0f);
  std::vector<float> g32(m.grads(), m.grads() + m.table().total());
  m.set_precision(kernels::GemmPrecision::BF16);
  m.zero_grads();
  const double l16 = m.forward_backward(batch, 1.0f);
  EXPECT_NEAR(l16, l32, 0.02 * l32);
  double dot = 0, n32 = 0, n16 = 0;
  for (std::int64_t i = 0; i < m.table().total(); ++i) {
    dot += static_cast<double>(g32[static_cast<std::size_t>(i)]) * m.grads()[i];
    n32 += static_cast<double>(g32[static_cast<std::size_t>(i)]) * g32[static_cast<std::size_t>(i)];
    n16 += static_cast<double>(m.grads()[i]) * m.grads()[i];
  }
  EXPECT_GT(dot / std::sqrt(n32 * n16), 0.999);  // the same direction, to bf16's precision
}

// The gradient is a function of the weights and the batch alone: not of which worker ran which
// rows, nor of the number of threads (sums over rows go in a fixed order). Resuming a run from
// its checkpoint, with any -t, repeats the uninterrupted run bit for bit because of this.
TEST(LlamaTrainingModel, GradientsDoNotDependOnThreads) {
  for (const auto precision : {kernels::GemmPrecision::F32, kernels::GemmPrecision::BF16}) {
    std::vector<float> first;
    for (int run = 0; run < 8; ++run) {
      ThreadPool pool(run == 0 ? 1 : 2);
      LlamaTrainingModel m(tiny_config(true), precision, pool);
      randomize(m, 21);
      // 8 x 16 rows: several chunks of the row sums, spread over both workers.
      std::mt19937 rng(7);
      std::vector<int> tokens(8 * 16), targets(8 * 16);
      for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int>(rng() % 37), targets[i] = static_cast<int>(rng() % 37);
      m.zero_grads();
      m.forward_backward(TokenBatch{8, 16, tokens.data(), targets.data()}, 1.0f);
      std::vector<float> g(m.grads(), m.grads() + m.table().total());
      if (run == 0) first = g;
      else ASSERT_EQ(g, first) << "run " << run;
    }
  }
}

TEST(LlamaTrainingModel, RejectsOutOfRangeTokens) {
  ThreadPool pool(1);
  LlamaTrainingModel m(tiny_config(false), kernels::GemmPrecision::F32, pool);
  std::vector<int> tokens{1, 2, 99}, targets{2, 3, 4};
  const TokenBatch batch{1, 3, tokens.data(), targets.data()};
  EXPECT_THROW(m.forward_backward(batch, 1.0f), Error);
}

}  // namespace
}  // namespace kiln::train
