// The forward pass over a quantized KV cache (q8_0, q4_0, q4_1) against the same model over an
// f16 cache, on kiln's trained default model: a prompt of a few hundred tokens, then greedy
// decode steps fed the same tokens on both sides, comparing the logits of every step. The
// tolerances are stated per type (measured spreads with headroom); the memory per position
// follows the block sizes exactly, and a model whose head size is not whole blocks is refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/kv_cache.h"
#include "model/llama_model.h"
#include "test_support.h"
#include "tokenizer/load_tokenizer.h"

namespace kiln {
namespace {

std::string default_model() {
  const char* src = std::getenv("KILN_SOURCE_DIR");
  return src ? std::string(src) + "/models/kiln-default.gguf" : std::string();
}

constexpr const char* kText =
    "Well, Prince, so Genoa and Lucca are now just family estates of the Buonapartes. But I warn you, if you "
    "don't tell me that this means war, if you still try to defend the infamies and horrors perpetrated by that "
    "Antichrist, I will have nothing more to do with you and you are no longer my friend. ";

struct DecodeRun {
  std::vector<std::vector<float>> logits;  // (steps, n_vocab): after the prompt, then after each decode token
  std::vector<int> tokens;                 // the greedy tokens of the run that chose them
};

// Prefills `prompt` and decodes `steps` tokens; with `forced` the tokens fed back are forced's
// (so that both cache types see the same sequence), otherwise the greedy choice.
DecodeRun run(LlamaModel& model, DType kv_type, const std::vector<int>& prompt, int steps, const std::vector<int>* forced) {
  const int n_vocab = model.config().n_vocab;
  KvCache cache = model.make_kv_cache(static_cast<int>(prompt.size()) + steps + 1, kv_type);
  ThreadPool pool(2);
  const int seq = cache.add_sequence();
  Batch batch;
  for (std::size_t i = 0; i < prompt.size(); ++i)
    batch.add(prompt[i], static_cast<int>(i), seq, i + 1 == prompt.size());
  std::vector<float> logits(static_cast<std::size_t>(n_vocab));
  model.forward(batch, cache, pool, logits.data());
  DecodeRun r;
  int pos = static_cast<int>(prompt.size());
  for (int s = 0; s < steps; ++s) {
    r.logits.push_back(logits);
    const int next = forced ? (*forced)[static_cast<std::size_t>(s)]
                            : static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    r.tokens.push_back(next);
    batch.clear();
    batch.add(next, pos++, seq, true);
    model.forward(batch, cache, pool, logits.data());
  }
  return r;
}

// KL(p || q) of the softmaxes of two logit rows, in nats.
double kl_of_logits(const std::vector<float>& a, const std::vector<float>& b) {
  auto log_softmax = [](const std::vector<float>& x) {
    const double m = *std::max_element(x.begin(), x.end());
    double sum = 0;
    for (float v : x) sum += std::exp(v - m);
    std::vector<double> out(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = x[i] - m - std::log(sum);
    return out;
  };
  const std::vector<double> la = log_softmax(a), lb = log_softmax(b);
  double kl = 0;
  for (std::size_t i = 0; i < a.size(); ++i) kl += std::exp(la[i]) * (la[i] - lb[i]);
  return kl;
}

class KvQuantForwardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = default_model();
    if (path_.empty()) GTEST_SKIP() << "KILN_SOURCE_DIR is not set (run through ctest)";
    model_ = LlamaModel::load(path_);
    const auto tokenizer = load_tokenizer(*model_->source().gguf());
    std::string text;
    for (int i = 0; i < 4; ++i) text += kText;
    for (std::int32_t id : tokenizer->encode(text, true, false)) prompt_.push_back(id);
    ASSERT_GE(prompt_.size(), 200u);
    base_ = run(*model_, DType::F16, prompt_, kSteps, nullptr);
  }
  static constexpr int kSteps = 32;
  std::string path_;
  std::unique_ptr<LlamaModel> model_;
  std::vector<int> prompt_;
  DecodeRun base_;
};

struct Tolerance {
  DType type;
  double max_rel_diff;  // largest |Δlogit| over the base's logit range, any step
  double mean_kl;       // mean KL(f16 || quantized) over the steps, nats
  int min_same_top;     // steps (of kSteps) whose top token agrees
};

TEST_F(KvQuantForwardTest, DecodeLogitsStayCloseToF16) {
  // Measured: q8_0 0.0063 / 1.1e-4 nats / 32 of 32; q4_1 0.069 / 0.011 / 28; q4_0 0.096 / 0.015 / 27.
  for (const Tolerance& tol : {Tolerance{DType::Q8_0, 0.015, 3e-4, kSteps - 1}, Tolerance{DType::Q4_1, 0.12, 0.03, 25},
                               Tolerance{DType::Q4_0, 0.15, 0.04, 24}}) {
    const DecodeRun q = run(*model_, tol.type, prompt_, kSteps, &base_.tokens);
    double worst = 0, kl_sum = 0;
    int same_top = 0;
    for (int s = 0; s < kSteps; ++s) {
      const std::vector<float>& a = base_.logits[static_cast<std::size_t>(s)];
      const std::vector<float>& b = q.logits[static_cast<std::size_t>(s)];
      const auto [lo, hi] = std::minmax_element(a.begin(), a.end());
      double d = 0;
      for (std::size_t i = 0; i < a.size(); ++i) d = std::max(d, static_cast<double>(std::fabs(a[i] - b[i])));
      worst = std::max(worst, d / (*hi - *lo));
      kl_sum += kl_of_logits(a, b);
      same_top += std::max_element(a.begin(), a.end()) - a.begin() == std::max_element(b.begin(), b.end()) - b.begin();
    }
    const double mean_kl = kl_sum / kSteps;
    std::printf("%s: max |dlogit| / range %.5f, mean KL %.3g nats, top-1 %d/%d\n",
                std::string(dtype_name(tol.type)).c_str(), worst, mean_kl, same_top, kSteps);
    EXPECT_LE(worst, tol.max_rel_diff) << dtype_name(tol.type);
    EXPECT_LE(mean_kl, tol.mean_kl) << dtype_name(tol.type);
    EXPECT_GE(same_top, tol.min_same_top) << dtype_name(tol.type);
    EXPECT_GT(worst, 0.0) << dtype_name(tol.type) << ": identical logits, the cache was not quantized";
  }
}

TEST_F(KvQuantForwardTest, F32CacheAgreesWithF16MoreClosely) {
  // The comparison above is meaningful: f16 and f32 caches differ far less than q8_0 and f16.
  const DecodeRun f32 = run(*model_, DType::F32, prompt_, 4, &base_.tokens);
  for (int s = 0; s < 4; ++s) EXPECT_LT(kl_of_logits(base_.logits[static_cast<std::size_t>(s)], f32.logits[static_cast<std::size_t>(s)]), 1e-5);
}

TEST_F(KvQuantForwardTest, BytesPerPositionFollowTheBlockType) {
  const LlamaConfig& c = model_->config();
  const std::size_t f16 = model_->make_kv_cache(64, DType::F16).bytes();
  EXPECT_EQ(f16, 64u * static_cast<std::size_t>(c.n_layer) * 2 * static_cast<std::size_t>(c.kv_dim()) * 2);
  EXPECT_EQ(model_->make_kv_cache(64, DType::Q8_0).bytes() * 64, f16 * 34);
  EXPECT_EQ(model_->make_kv_cache(64, DType::Q4_0).bytes() * 64, f16 * 18);
  EXPECT_EQ(model_->make_kv_cache(64, DType::Q4_1).bytes() * 64, f16 * 20);
  EXPECT_EQ(kv_row_bytes(DType::Q8_0, c.kv_dim()), static_cast<std::size_t>(c.kv_dim() / 32 * 34));
}

TEST(KvQuantTypes, RefusedWhereTheyCannotWork) {
  const std::string stories = test::data_file("stories260K.bin");
  if (stories.empty()) GTEST_SKIP() << "shared data file stories260K.bin not found (set KILN_DATA_DIR)";
  std::unique_ptr<LlamaModel> m = LlamaModel::load(stories);  // head size 8
  ASSERT_EQ(m->config().head_dim, 8);
  try {
    (void)m->make_kv_cache(64, DType::Q8_0);
    FAIL() << "a q8_0 cache over heads of 8 was made";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("head size that is a multiple of 32"), std::string::npos) << e.what();
  }
  EXPECT_THROW(m->set_kv_type(DType::Q4_0), Error);
  EXPECT_THROW(m->set_kv_type(DType::Q5_0), Error);  // not a KV cache type at all
  EXPECT_NO_THROW(m->set_kv_type(DType::F16));
  EXPECT_THROW(kv_row_bytes(DType::Q8_0, 48), Error);
}

}  // namespace
}  // namespace kiln
