// Embeddings through the serving engine, on kiln's default model: the hidden states the forward
// pass hands out are the output product's input (the logits follow from them), the engine's
// pooled vectors equal the same input run alone through the model, however the inputs are
// batched, chunked or mixed with generation; the KV cache is freed afterwards; bad inputs,
// cancellation and a full queue are handled. Plus the pooling and normalisation pieces alone.
#include <gtest/gtest.h>

#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <mutex>

#include "core/error.h"
#include "core/thread_pool.h"
#include "format/gguf_metadata.h"
#include "kernels/matmul.h"
#include "model/llama_model.h"
#include "runtime/embedding_pooling.h"
#include "runtime/engine.h"
#include "tokenizer/load_tokenizer.h"

namespace kiln {
namespace {

using namespace std::chrono_literals;

std::string default_model_path() {
  const char* src = std::getenv("KILN_SOURCE_DIR");
  return std::string(src ? src : ".") + "/models/kiln-default.gguf";
}

double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    ab += double(a[i]) * b[i], aa += double(a[i]) * a[i], bb += double(b[i]) * b[i];
  return ab / std::sqrt(aa * bb);
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - b[i]));
  return m;
}

EngineOptions engine_options(int threads, int context_tokens = 0) {
  EngineOptions o;
  o.threads = threads;
  o.context_tokens = context_tokens;
  return o;
}

// Collects the results of one submit_embeddings call.
struct Results {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<EmbeddingResult> results;
  std::vector<int> calls;  // per input: how many times its callback ran
  std::size_t done = 0;

  explicit Results(std::size_t n) : results(n), calls(n, 0) {}
  EmbeddingCallback callback() {
    return [this](std::size_t i, const EmbeddingResult& r) {
      std::lock_guard<std::mutex> lk(mu);
      results[i] = r;
      ++calls[i];
      ++done;
      cv.notify_all();
    };
  }
  bool wait(std::chrono::milliseconds timeout = 60s) {
    std::unique_lock<std::mutex> lk(mu);
    return cv.wait_for(lk, timeout, [&] { return done == results.size(); });
  }
};

class EmbeddingEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = LlamaModel::load(default_model_path());
    // forward() is not re-entrant: references are computed on a model object of their own while
    // an engine runs on model_.
    reference_ = LlamaModel::load(default_model_path());
    tokenizer_ = load_tokenizer(*model_->source().gguf());
    E_ = model_->config().n_embd;
  }

  std::vector<std::int32_t> tokens(const std::string& text) const { return tokenizer_->encode(text, true, false); }

  // Every position's final hidden state (n, E) of one sequence, from one forward pass of its own.
  std::vector<float> hidden_alone(const std::vector<std::int32_t>& t) {
    KvCache cache = reference_->make_kv_cache(256);
    ThreadPool pool(1);
    const int seq = cache.add_sequence();
    Batch b;
    for (int i = 0; i < static_cast<int>(t.size()); ++i) {
      b.add(t[static_cast<std::size_t>(i)], i, seq, false);
      b.hidden_rows.push_back(i);
    }
    std::vector<float> h(t.size() * static_cast<std::size_t>(E_));
    reference_->forward(b, cache, pool, nullptr, h.data());
    return h;
  }

  std::vector<float> pooled_alone(const std::vector<std::int32_t>& t, Pooling p) {
    const std::vector<float> h = hidden_alone(t);
    const std::size_t E = static_cast<std::size_t>(E_), n = t.size();
    if (p == Pooling::None) return h;
    if (p == Pooling::Cls) return {h.begin(), h.begin() + static_cast<long>(E)};
    if (p == Pooling::Last) return {h.end() - static_cast<long>(E), h.end()};
    std::vector<float> mean(E, 0.0f);
    for (std::size_t r = 0; r < n; ++r)
      for (std::size_t i = 0; i < E; ++i) mean[i] += h[r * E + i] / static_cast<float>(n);
    return mean;
  }

  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<LlamaModel> reference_;
  std::unique_ptr<Tokenizer> tokenizer_;
  int E_ = 0;
};

TEST_F(EmbeddingEngineTest, HiddenStatesAreTheInputOfTheOutputProduct) {
  // The logits of a row must be output · hidden: the hidden state is the one after the output
  // norm (what llama.cpp pools), not the residual stream before it.
  const std::vector<std::int32_t> t = tokens("The prince said that the war was over");
  KvCache cache = model_->make_kv_cache(256);
  ThreadPool pool(1);
  const int seq = cache.add_sequence();
  Batch b;
  for (int i = 0; i < static_cast<int>(t.size()); ++i) b.add(t[static_cast<std::size_t>(i)], i, seq, true);
  b.hidden_rows = {0, static_cast<int>(t.size()) - 1};
  const int V = model_->config().n_vocab;
  std::vector<float> logits(t.size() * static_cast<std::size_t>(V));
  std::vector<float> hidden(2 * static_cast<std::size_t>(E_));
  model_->forward(b, cache, pool, logits.data(), hidden.data());

  const TensorView& out = model_->config().tied_output ? model_->weights().token_embd : model_->weights().output;
  std::vector<float> w(static_cast<std::size_t>(E_));
  for (int k = 0; k < 2; ++k) {
    const std::size_t row = k == 0 ? 0 : t.size() - 1;
    double worst = 0, largest = 0;
    for (int v = 0; v < V; ++v) {
      kernels::dequantize_row(out.dtype, out.row(v), w.data(), E_);
      double dot = 0;
      for (int i = 0; i < E_; ++i)
        dot += double(w[static_cast<std::size_t>(i)]) * hidden[static_cast<std::size_t>(k * E_ + i)];
      const double got = logits[row * static_cast<std::size_t>(V) + static_cast<std::size_t>(v)];
      worst = std::max(worst, std::fabs(dot - got));
      largest = std::max(largest, std::fabs(got));
    }
    // Summed in another order than the model sums (and in double): a rounding difference only.
    EXPECT_LT(worst, 1e-3 * largest) << "row " << row;
  }
}

TEST_F(EmbeddingEngineTest, BatchedChunkedAndMixedEqualsAlone) {
  const std::vector<std::string> texts = {
      "Natasha looked at him",
      "It was in July, 1805, and Anna Pavlovna Scherer, maid of honour and favourite of the Empress, was receiving",
      "ROMEO:", "  leading spaces and\ttabs\nand newlines",
      "Prince Andrew shrugged his shoulders and frowned, as lovers of music do when they hear a false note."};
  EngineOptions o;
  o.threads = 2;
  o.max_batch_tokens = 16;  // long inputs are cut into chunks over several steps
  Engine engine(*model_, *tokenizer_, o);

  // A generation request runs beside the embeddings, and its tokens must not change.
  GenerationRequest g;
  g.prompt = tokens("The prince said");
  g.sampling.temperature = 0;
  g.max_tokens = 24;
  g.ignore_eos = true;
  std::vector<std::int32_t> alone_ids;
  {
    EngineOptions one = engine_options(1);
    one.max_running = 1;
    one.prefix_cache = false;
    Engine solo(*model_, *tokenizer_, one);
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    solo.submit(g, {[&](const TokenEvent& ev) { alone_ids.push_back(ev.id); },
                    [&](const Finish&) {
                      std::lock_guard<std::mutex> lk(mu);
                      done = true;
                      cv.notify_all();
                    }});
    std::unique_lock<std::mutex> lk(mu);
    ASSERT_TRUE(cv.wait_for(lk, 60s, [&] { return done; }));
  }

  for (Pooling p : {Pooling::Mean, Pooling::Last, Pooling::Cls, Pooling::None}) {
    SCOPED_TRACE(pooling_name(p));
    std::mutex gmu;
    std::condition_variable gcv;
    std::vector<std::int32_t> gen_ids;
    bool gen_done = false;
    engine.submit(g, {[&](const TokenEvent& ev) { gen_ids.push_back(ev.id); },
                      [&](const Finish&) {
                        std::lock_guard<std::mutex> lk(gmu);
                        gen_done = true;
                        gcv.notify_all();
                      }});
    std::vector<EmbeddingRequest> inputs;
    for (const std::string& text : texts) inputs.push_back({tokens(text), p});
    Results r(inputs.size());
    engine.submit_embeddings(inputs, r.callback());
    ASSERT_TRUE(r.wait());
    for (std::size_t i = 0; i < texts.size(); ++i) {
      EXPECT_EQ(r.calls[i], 1);
      const EmbeddingResult& got = r.results[i];
      ASSERT_EQ(got.reason, FinishReason::Stop) << got.error;
      EXPECT_EQ(got.prompt_tokens, static_cast<int>(inputs[i].tokens.size()));
      const std::vector<float> want = pooled_alone(inputs[i].tokens, p);
      ASSERT_EQ(got.embedding.size(), want.size()) << texts[i];
      EXPECT_GT(cosine(got.embedding, want), 0.99999) << texts[i];
      EXPECT_LT(max_abs_diff(got.embedding, want), 0.02) << texts[i];
    }
    std::unique_lock<std::mutex> lk(gmu);
    ASSERT_TRUE(gcv.wait_for(lk, 60s, [&] { return gen_done; }));
    EXPECT_EQ(gen_ids, alone_ids) << "a generation beside embeddings changed its tokens";
  }
  // Every block went back to the pool except the generations' prefixes, which the prefix cache
  // keeps: the embeddings left nothing behind.
  const EngineStats st = engine.stats();
  EXPECT_EQ(st.kv_blocks_used, st.kv_blocks_cached);
  EXPECT_EQ(st.requests_total, 4u * (texts.size() + 1));
}

TEST_F(EmbeddingEngineTest, DifferentTextsGiveDifferentVectorsAndTheSameTextTheSame) {
  Engine engine(*model_, *tokenizer_, engine_options(2));
  std::vector<EmbeddingRequest> inputs = {{tokens("War and peace"), Pooling::Mean},
                                          {tokens("War and peace"), Pooling::Mean},
                                          {tokens("A quiet morning in Moscow"), Pooling::Mean}};
  Results r(inputs.size());
  engine.submit_embeddings(inputs, r.callback());
  ASSERT_TRUE(r.wait());
  EXPECT_EQ(max_abs_diff(r.results[0].embedding, r.results[1].embedding), 0.0);
  EXPECT_LT(cosine(r.results[0].embedding, r.results[2].embedding), 0.999);
}

TEST_F(EmbeddingEngineTest, AnInputAsLongAsTheContextIsTaken) {
  Engine engine(*model_, *tokenizer_, engine_options(2, 64));
  std::vector<std::int32_t> t(64, tokens("the")[1]);
  Results r(1);
  engine.submit_embeddings({{t, Pooling::Last}}, r.callback());
  ASSERT_TRUE(r.wait());
  ASSERT_EQ(r.results[0].reason, FinishReason::Stop) << r.results[0].error;
  EXPECT_EQ(r.results[0].embedding.size(), static_cast<std::size_t>(E_));
}

TEST_F(EmbeddingEngineTest, BadInputsAreRefusedByIndex) {
  Engine engine(*model_, *tokenizer_, engine_options(1, 64));
  const EmbeddingCallback ignore = [](std::size_t, const EmbeddingResult&) {};
  auto refusal = [&](std::vector<EmbeddingRequest> inputs) {
    try {
      engine.submit_embeddings(std::move(inputs), ignore);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(refusal({}).find("at least one input"), std::string::npos);
  EXPECT_NE(refusal({{{1, 2}, Pooling::Mean}, {{}, Pooling::Mean}}).find("input 1: no tokens"), std::string::npos);
  EXPECT_NE(
      refusal({{std::vector<std::int32_t>(65, 1), Pooling::Mean}}).find("input 0: 65 tokens; the context holds 64"),
      std::string::npos);
  EXPECT_NE(refusal({{{1, 4096}, Pooling::Mean}}).find("input 0: token id 4096 is outside"), std::string::npos);
  EXPECT_EQ(engine.stats().requests_total, 0u);
}

TEST_F(EmbeddingEngineTest, CancelledAndQueueFull) {
  EngineOptions o;
  o.threads = 1;
  o.max_queued = 2;
  o.max_running = 1;
  o.max_batch_tokens = 8;
  Engine engine(*model_, *tokenizer_, o);
  std::vector<EmbeddingRequest> inputs(6, EmbeddingRequest{std::vector<std::int32_t>(200, 300), Pooling::Mean});
  Results r(inputs.size());
  std::shared_ptr<RequestHandle> h = engine.submit_embeddings(inputs, r.callback());
  // The batch was taken whole (six inputs over a queue of two); the queue is now over its limit.
  EXPECT_THROW(engine.submit_embeddings({{{1, 2, 3}, Pooling::Mean}}, [](std::size_t, const EmbeddingResult&) {}),
               QueueFullError);
  h->cancel();
  ASSERT_TRUE(r.wait());
  int cancelled = 0;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_EQ(r.calls[i], 1);
    if (r.results[i].reason == FinishReason::Cancelled) {
      ++cancelled;
      EXPECT_TRUE(r.results[i].embedding.empty());
    }
  }
  EXPECT_GE(cancelled, 5);
  EXPECT_TRUE(engine.drain(10s));
  EXPECT_EQ(engine.stats().kv_blocks_used, 0);
}

TEST_F(EmbeddingEngineTest, APreemptedEmbeddingStartsOverAndGivesTheSameVector) {
  // Five blocks of 16 positions: a generation's prompt (one block) and a 60-token input (four)
  // fill the pool; when the generation needs its second block the input, admitted later and
  // still prefilling in chunks of 7, is preempted, and computed again once the generation ends.
  EngineOptions o;
  o.threads = 1;
  o.context_tokens = 64;
  o.kv_cache_tokens = 80;
  o.max_batch_tokens = 8;
  o.max_running = 2;
  Engine engine(*model_, *tokenizer_, o);
  GenerationRequest g;
  g.prompt = std::vector<std::int32_t>(8, 300);
  g.sampling.temperature = 0;
  g.max_tokens = 40;
  g.ignore_eos = true;
  std::mutex mu;
  std::condition_variable cv;
  bool gen_done = false;
  engine.submit(g, {nullptr, [&](const Finish&) {
                      std::lock_guard<std::mutex> lk(mu);
                      gen_done = true;
                      cv.notify_all();
                    }});
  const std::string text =
      "Prince Andrew shrugged his shoulders and frowned, as lovers of music do when they hear a false note, and then "
      "he "
      "turned away from the window and looked at the room where the guests were talking of the war";
  std::vector<std::int32_t> input = tokens(text + " " + text);
  input.resize(std::min<std::size_t>(input.size(), 60));
  ASSERT_GT(input.size(), 56u);
  Results r(1);
  engine.submit_embeddings({{input, Pooling::Mean}}, r.callback());
  ASSERT_TRUE(r.wait());
  ASSERT_EQ(r.results[0].reason, FinishReason::Stop) << r.results[0].error;
  EXPECT_GE(engine.stats().preemptions_total, 1u);
  const std::vector<float> want = pooled_alone(input, Pooling::Mean);
  EXPECT_GT(cosine(r.results[0].embedding, want), 0.99999);
  EXPECT_LT(max_abs_diff(r.results[0].embedding, want), 0.02);
  std::unique_lock<std::mutex> lk(mu);
  EXPECT_TRUE(cv.wait_for(lk, 60s, [&] { return gen_done; }));
}

TEST(EmbeddingPooling, NamesAndModelMetadata) {
  for (Pooling p : {Pooling::None, Pooling::Mean, Pooling::Cls, Pooling::Last})
    EXPECT_EQ(parse_pooling(pooling_name(p)), p);
  EXPECT_FALSE(parse_pooling("rank").has_value());
  EXPECT_FALSE(parse_pooling("MEAN").has_value());
  GgufMetadata md("m.gguf");
  EXPECT_FALSE(model_pooling(md, "llama").has_value());
  md.add("llama.pooling_type", gguf_value::u32(3));
  EXPECT_EQ(model_pooling(md, "llama"), Pooling::Last);
  EXPECT_FALSE(model_pooling(md, "qwen2").has_value());
  GgufMetadata rank("r.gguf");
  rank.add("qwen2.pooling_type", gguf_value::u32(4));
  EXPECT_THROW(model_pooling(rank, "qwen2"), Error);
}

TEST(EmbeddingPooling, PoolerCollectsRowsInAnyOrder) {
  const std::vector<float> rows = {1, 2, 3, 4, 5, 6};  // (3, 2)
  EmbeddingPooler mean(Pooling::Mean, 2, 3);
  for (int pos : {2, 0, 1}) mean.add(pos, rows.data() + pos * 2);
  EXPECT_EQ(mean.result(), (std::vector<float>{3, 4}));
  EmbeddingPooler last(Pooling::Last, 2, 3);
  EXPECT_FALSE(last.wants(0));
  EXPECT_TRUE(last.wants(2));
  EXPECT_THROW(last.result(), Error);  // nothing added yet
  last.add(2, rows.data() + 4);
  EXPECT_EQ(last.result(), (std::vector<float>{5, 6}));
  EXPECT_THROW(last.add(1, rows.data()), Error);
  EmbeddingPooler cls(Pooling::Cls, 2, 3);
  cls.add(0, rows.data());
  EXPECT_EQ(cls.result(), (std::vector<float>{1, 2}));
  EmbeddingPooler none(Pooling::None, 2, 3);
  for (int pos : {1, 2, 0}) none.add(pos, rows.data() + pos * 2);
  EXPECT_EQ(none.result(), rows);
  none.reset();
  EXPECT_THROW(none.result(), Error);
}

TEST(EmbeddingPooling, NormalisationsFollowLlamaCpp) {
  std::vector<float> v = {3, -4};
  normalize_embedding(v, 2);
  EXPECT_FLOAT_EQ(v[0], 0.6f);
  EXPECT_FLOAT_EQ(v[1], -0.8f);
  v = {3, -4};
  normalize_embedding(v, 1);
  EXPECT_FLOAT_EQ(v[0], 3.0f / 7);
  v = {3, -4};
  normalize_embedding(v, 0);
  EXPECT_FLOAT_EQ(v[1], -32760.0f);
  v = {3, -4};
  normalize_embedding(v, -1);
  EXPECT_EQ(v, (std::vector<float>{3, -4}));
  v = {3, -4};
  normalize_embedding(v, 3);
  EXPECT_NEAR(std::pow(std::fabs(v[0]), 3) + std::pow(std::fabs(v[1]), 3), 1.0, 1e-6);
  v = {0, 0};
  normalize_embedding(v, 2);
  EXPECT_EQ(v, (std::vector<float>{0, 0}));
  EXPECT_THROW(normalize_embedding(v, -2), Error);
}

}  // namespace
}  // namespace kiln
