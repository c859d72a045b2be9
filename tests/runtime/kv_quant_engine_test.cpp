// The serving engine over a quantized KV cache (EngineOptions::kv_type) on kiln's default model:
// a greedy request equals kiln run's loop over a cache of the same type, the prefix cache
// shares quantized blocks without changing results, and the KV memory budget holds as many
// more positions as the type is smaller.
#include <gtest/gtest.h>

#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "model/llama_model.h"
#include "runtime/engine.h"
#include "runtime/generator.h"
#include "tokenizer/load_tokenizer.h"

namespace kiln {
namespace {

using namespace std::chrono_literals;

struct Collector {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::int32_t> ids;
  bool done = false;
  Finish finish;
  GenerationCallbacks callbacks() {
    return {[this](const TokenEvent& e) {
              std::lock_guard<std::mutex> lk(mu);
              ids.push_back(e.id);
            },
            [this](const Finish& f) {
              std::lock_guard<std::mutex> lk(mu);
              finish = f;
              done = true;
              cv.notify_all();
            }};
  }
  bool wait() {
    std::unique_lock<std::mutex> lk(mu);
    return cv.wait_for(lk, 30s, [&] { return done; });
  }
};

GenerationRequest greedy(std::vector<std::int32_t> prompt, int max_tokens) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.sampling.temperature = 0;
  r.max_tokens = max_tokens;
  r.ignore_eos = true;
  return r;
}

class KvQuantEngineTest : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    const char* src = std::getenv("KILN_SOURCE_DIR");
    if (!src) GTEST_SKIP() << "KILN_SOURCE_DIR is not set (run through ctest)";
    model_ = LlamaModel::load(std::string(src) + "/models/kiln-default.gguf");
    tokenizer_ = load_tokenizer(*model_->source().gguf());
  }
  std::vector<std::int32_t> prompt(const std::string& text) const { return tokenizer_->encode(text, true, false); }
  std::vector<std::int32_t> run_engine(const GenerationRequest& r, bool prefix_cache) {
    EngineOptions o;
    o.threads = 2;
    o.max_running = 1;
    o.prefix_cache = prefix_cache;
    o.kv_type = GetParam();
    Engine e(*model_, *tokenizer_, o);
    Collector c;
    e.submit(r, c.callbacks());
    EXPECT_TRUE(c.wait());
    return c.ids;
  }
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_P(KvQuantEngineTest, GreedyRequestEqualsTheGeneratorOverTheSameCacheType) {
  const auto p = prompt("The old prince was sitting in his study, and");
  KvCache cache = model_->make_kv_cache(256, GetParam());
  ThreadPool pool(2);
  SamplerParams sp;
  sp.temperature = 0;
  Sampler sampler(sp);
  GenerateOptions go;
  go.n_predict = 24;
  go.ignore_eos = true;
  const GenerateResult ref =
      generate(*model_, cache, pool, sampler, p, go, [](int) { return false; }, [](int) { return true; });
  EXPECT_EQ(run_engine(greedy(p, 24), false), ref.tokens);
}

TEST_P(KvQuantEngineTest, PrefixCacheSharesQuantizedBlocksWithoutChangingResults) {
  const std::string system =
      "You are a helpful assistant who knows Russian novels well. Answer briefly and precisely, and never make "
      "things up. ";
  const GenerationRequest a = greedy(prompt(system + "Who is Pierre?"), 12);
  const GenerationRequest b = greedy(prompt(system + "Where is Moscow?"), 12);
  const std::vector<std::int32_t> expect_b = run_engine(b, false);

  EngineOptions o;
  o.threads = 2;
  o.kv_type = GetParam();
  Engine e(*model_, *tokenizer_, o);
  Collector ca, cb, cb2;
  e.submit(a, ca.callbacks());
  ASSERT_TRUE(ca.wait());
  e.submit(b, cb.callbacks());
  ASSERT_TRUE(cb.wait());
  EXPECT_EQ(cb.ids, expect_b);
  EXPECT_GE(cb.finish.usage.cached_tokens, 16);
  // The identical request again: all of its prompt's whole blocks come from the cache.
  e.submit(b, cb2.callbacks());
  ASSERT_TRUE(cb2.wait());
  EXPECT_EQ(cb2.ids, expect_b);
  EXPECT_EQ(cb2.finish.usage.cached_tokens, static_cast<int>((b.prompt.size() - 1) / 16 * 16));
}

TEST_P(KvQuantEngineTest, TheMemoryBudgetHoldsMorePositions) {
  const LlamaConfig& c = model_->config();
  const std::size_t f16 = kv_bytes_per_token(c, DType::F16);
  const std::size_t per = kv_bytes_per_token(c, GetParam());
  const std::size_t block_bytes = traits(GetParam()).block_bytes;  // per 32 values, against f16's 64 bytes
  EXPECT_EQ(per * 64, f16 * block_bytes);
  EngineOptions o;
  o.kv_memory_bytes = 64 * f16;  // 64 positions of f16
  o.kv_type = GetParam();
  const EngineOptions r = resolve_engine_options(c, o);
  const int expected = std::min(c.n_ctx_train, static_cast<int>(o.kv_memory_bytes / per / 16 * 16));
  EXPECT_EQ(r.context_tokens, expected);
  EXPECT_GE(r.context_tokens, 64 * 64 / static_cast<int>(block_bytes) - 16);
}

INSTANTIATE_TEST_SUITE_P(Types, KvQuantEngineTest, ::testing::Values(DType::Q8_0, DType::Q4_0, DType::Q4_1),
                         [](const ::testing::TestParamInfo<DType>& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace kiln
