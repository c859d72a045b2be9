// Speculative decoding (runtime/speculative.h): the acceptance rule keeps the target's
// distribution (checked statistically on a tiny vocabulary, penalties and top-k included), greedy
// output with a draft is the target's own token for token, in `generate` and through the serving
// engine (with a draft that agrees and one that mostly does not, several draft lengths, stop
// strings, max_tokens and the prefix cache), and a draft with another vocabulary is refused.
#include "runtime/speculative.h"

#include <gtest/gtest.h>

#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>

#include "core/error.h"
#include "format/gguf_file.h"
#include "format/gguf_writer.h"
#include "runtime/engine.h"
#include "runtime/generator.h"
#include "runtime/loaded_model.h"
#include "test_support.h"

namespace kiln {
namespace {

using namespace std::chrono_literals;

// ---- The acceptance rule on synthetic logits ----

constexpr int kVocab = 6;

// Logits of a toy "model" over kVocab tokens that depend on the last token of the history.
std::vector<float> toy_logits(std::span<const int> history, std::uint32_t salt) {
  std::vector<float> row(kVocab);
  const int last = history.empty() ? 0 : history.back();
  for (int i = 0; i < kVocab; ++i)
    row[static_cast<std::size_t>(i)] = static_cast<float>(std::sin(1.7 * i + 0.9 * last + salt) * 2.0);
  return row;
}

std::map<int, double> dense(std::span<const TokenProb> d) {
  std::map<int, double> m;
  for (const TokenProb& t : d) m[t.id] += t.prob;
  return m;
}

// Draws the first two tokens a round of speculative decoding emits (history + up to 2 drafted
// tokens, then the rule), many times, and compares their joint distribution with the target's
// exact one: the total variation distance must stay within the sampling noise.
TEST(VerifyDraft, SamplingKeepsTheTargetsDistribution) {
  SamplerParams params;
  params.temperature = 0.9f;
  params.top_k = 5;
  params.presence_penalty = 0.7f;  // p depends on the history, accepted tokens included
  const std::vector<int> history = {1, 3};

  // The exact joint distribution of the target's next two tokens.
  std::map<std::pair<int, int>, double> exact;
  {
    Sampler target(params);
    const auto first = dense(target.distribution(toy_logits(history, 0), history));
    for (const auto& [a, pa] : first) {
      std::vector<int> h = history;
      h.push_back(a);
      for (const auto& [b, pb] : dense(target.distribution(toy_logits(h, 0), h))) exact[{a, b}] += pa * pb;
    }
  }
  // The draft's own joint distribution, to show that the test could tell the difference.
  std::map<std::pair<int, int>, double> draft_joint;
  {
    Sampler draft(params);
    const auto first = dense(draft.distribution(toy_logits(history, 5), history));
    for (const auto& [a, pa] : first) {
      std::vector<int> h = history;
      h.push_back(a);
      for (const auto& [b, pb] : dense(draft.distribution(toy_logits(h, 5), h))) draft_joint[{a, b}] += pa * pb;
    }
  }

  constexpr int kDraws = 40000;
  std::map<std::pair<int, int>, double> seen;
  SamplerParams draft_params = params;
  draft_params.seed = 99;
  Sampler target(params), draft(draft_params);
  VerifyScratch scratch;
  int drafted = 0, accepted = 0;
  for (int n = 0; n < kDraws; ++n) {
    std::vector<int> h = history;
    std::vector<int> emitted;
    while (emitted.size() < 2) {
      // Draft up to 2 tokens from the draft's distribution.
      DraftProposal proposal;
      std::vector<int> dh = h;
      for (int i = 0; i < 2; ++i) {
        const auto q = draft.distribution(toy_logits(dh, 5), dh);
        const int x = draw_from(q, draft.uniform());
        proposal.tokens.push_back(x);
        proposal.q.emplace_back(q.begin(), q.end());
        dh.push_back(x);
      }
      // The target's rows for every drafted position.
      std::vector<float> rows;
      std::vector<int> th = h;
      for (std::size_t i = 0; i <= proposal.tokens.size(); ++i) {
        const std::vector<float> r = toy_logits(th, 0);
        rows.insert(rows.end(), r.begin(), r.end());
        if (i < proposal.tokens.size()) th.push_back(proposal.tokens[i]);
      }
      const std::vector<int> out = verify_draft(target, rows, kVocab, h, proposal, scratch);
      ASSERT_GE(out.size(), 1u);
      ASSERT_LE(out.size(), proposal.tokens.size() + 1);
      for (std::size_t i = 0; i + 1 < out.size(); ++i) EXPECT_EQ(out[i], proposal.tokens[i]);
      drafted += static_cast<int>(proposal.tokens.size());
      accepted += static_cast<int>(out.size()) - 1;
      for (int t : out) {
        emitted.push_back(t);
        h.push_back(t);
      }
    }
    seen[{emitted[0], emitted[1]}] += 1.0 / kDraws;
  }
  double tv = 0, tv_draft = 0;
  for (const auto& [k, p] : exact) {
    tv += std::abs(p - (seen.count(k) ? seen[k] : 0.0));
    tv_draft += std::abs(p - (draft_joint.count(k) ? draft_joint[k] : 0.0));
  }
  for (const auto& [k, p] : seen)
    if (!exact.count(k)) tv += p;  // a pair the target can never emit
  tv /= 2, tv_draft /= 2;
  // About 2.4 / sqrt(draws) = 0.012 expected from sampling noise over 25 pairs.
  EXPECT_LT(tv, 0.025) << "speculative sampling drifted from the target's distribution";
  EXPECT_GT(tv_draft, 0.1) << "the draft is too close to the target for the test to mean anything";
  // Some proposals were accepted and some were not: both branches of the rule ran.
  EXPECT_GT(accepted, drafted / 10);
  EXPECT_LT(accepted, drafted);
}

TEST(VerifyDraft, GreedyAcceptsExactlyTheTargetsPicks) {
  SamplerParams params;
  params.temperature = 0;
  Sampler target(params);
  VerifyScratch scratch;
  const std::vector<int> history = {2};
  // The target's greedy chain from the history.
  std::vector<int> chain;
  std::vector<int> h = history;
  std::vector<float> rows;
  for (int i = 0; i < 4; ++i) {
    const std::vector<float> r = toy_logits(h, 0);
    const int best = static_cast<int>(std::max_element(r.begin(), r.end()) - r.begin());
    chain.push_back(best);
    h.push_back(best);
  }
  // A proposal that agrees on two tokens and then differs.
  DraftProposal proposal;
  proposal.tokens = {chain[0], chain[1], (chain[2] + 1) % kVocab};
  for (int t : proposal.tokens) proposal.q.push_back({TokenProb{t, 1.0f}});
  h = history;
  for (std::size_t i = 0; i <= proposal.tokens.size(); ++i) {
    const std::vector<float> r = toy_logits(h, 0);
    rows.insert(rows.end(), r.begin(), r.end());
    if (i < proposal.tokens.size()) h.push_back(proposal.tokens[i]);
  }
  EXPECT_EQ(verify_draft(target, rows, kVocab, history, proposal, scratch),
            (std::vector<int>{chain[0], chain[1], chain[2]}));
}

TEST(DraftLength, GrowsWhileAcceptedAndShrinksOnRejection) {
  SpeculativeOptions o;
  o.draft_min = 2;
  o.draft_max = 8;
  DraftLength n(o);
  EXPECT_EQ(n.current(), 4);
  n.update(4, 4);
  EXPECT_EQ(n.current(), 6);
  n.update(6, 6);
  EXPECT_EQ(n.current(), 8);
  n.update(8, 8);
  EXPECT_EQ(n.current(), 8);
  n.update(8, 3);
  EXPECT_EQ(n.current(), 4);
  n.update(4, 0);
  EXPECT_EQ(n.current(), 2);
  SpeculativeOptions bad;
  bad.draft_min = 5;
  bad.draft_max = 3;
  EXPECT_THROW(bad.validate(), Error);
}

// ---- Real models: the shared tiny random Llama and drafts made to share its tokenizer ----

// A random f32 Llama GGUF with the tokenizer of `tokenizer_from` (its tokenizer.* keys), whose
// token `changed_token` (when >= 0) has another text.
std::string write_draft(const std::string& tokenizer_from, const std::string& name, int changed_token = -1) {
  const std::string path = test::temp_dir() + "/" + name;
  auto src = GgufFile::open(tokenizer_from);
  GgufWriter w;
  using gguf_value::u32;
  int n_vocab = 0;
  for (const auto& [k, v] : src->metadata()) {
    if (k.rfind("tokenizer.", 0) != 0) continue;
    if (k == "tokenizer.ggml.tokens") {
      GgufArray a = *v.as_array();
      n_vocab = static_cast<int>(a.size());
      if (changed_token >= 0) a.strings[static_cast<std::size_t>(changed_token)] += "_changed";
      w.add_metadata(k, gguf_value::array(std::move(a)));
      continue;
    }
    w.add_metadata(k, v);
  }
  const int n_embd = 32, n_layer = 1, n_head = 2, head_dim = 16, n_ff = 48;
  w.add_metadata("general.architecture", gguf_value::string("llama"));
  w.add_metadata("llama.context_length", u32(512));
  w.add_metadata("llama.embedding_length", u32(n_embd));
  w.add_metadata("llama.block_count", u32(n_layer));
  w.add_metadata("llama.feed_forward_length", u32(n_ff));
  w.add_metadata("llama.attention.head_count", u32(n_head));
  w.add_metadata("llama.attention.head_count_kv", u32(n_head));
  w.add_metadata("llama.vocab_size", u32(static_cast<std::uint32_t>(n_vocab)));
  std::mt19937 rng(11);
  std::normal_distribution<float> dist(0.0f, 0.3f);
  auto tensor = [&](const std::string& tname, std::int64_t rows, std::int64_t cols, float mean) {
    auto data = std::make_shared<std::vector<float>>(static_cast<std::size_t>(rows * cols));
    for (float& x : *data) x = mean + dist(rng);
    w.add_tensor(GgufTensorSpec(tname, DType::F32, rows > 1 ? 2 : 1, {cols, rows, 1, 1}),
                 [data](GgufDataSink& out) { out.write(data->data(), data->size() * sizeof(float)); });
  };
  tensor("token_embd.weight", n_vocab, n_embd, 0.0f);
  const int qd = n_head * head_dim;
  tensor("blk.0.attn_norm.weight", 1, n_embd, 1.0f);
  tensor("blk.0.attn_q.weight", qd, n_embd, 0.0f);
  tensor("blk.0.attn_k.weight", qd, n_embd, 0.0f);
  tensor("blk.0.attn_v.weight", qd, n_embd, 0.0f);
  tensor("blk.0.attn_output.weight", n_embd, qd, 0.0f);
  tensor("blk.0.ffn_norm.weight", 1, n_embd, 1.0f);
  tensor("blk.0.ffn_gate.weight", n_ff, n_embd, 0.0f);
  tensor("blk.0.ffn_up.weight", n_ff, n_embd, 0.0f);
  tensor("blk.0.ffn_down.weight", n_embd, n_ff, 0.0f);
  tensor("output_norm.weight", 1, n_embd, 1.0f);
  tensor("output.weight", n_vocab, n_embd, 0.0f);
  w.write(path);
  return path;
}

class SpeculativeModels : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = test::data_file("llama-2-tiny-random.gguf");
    if (path_.empty()) GTEST_SKIP() << "shared data file llama-2-tiny-random.gguf not found (set KILN_DATA_DIR)";
    target_ = load_model(path_, {.tokenizer = TokenizerNeed::required});
    self_draft_ = load_draft_model(path_, target_);  // agrees with the target: nearly everything accepted
    bad_path_ = write_draft(path_, "bad-draft.gguf");
    bad_draft_ = load_draft_model(bad_path_, target_);  // random: nearly everything rejected
  }
  std::vector<int> prompt(const std::string& text) const {
    const std::vector<std::int32_t> ids = target_.tokenizer->encode(text, true, false);
    return {ids.begin(), ids.end()};
  }
  GenerateResult run(const std::vector<int>& p, int n, LlamaModel* draft, int draft_max, SamplerParams sp = greedy()) {
    KvCache cache = target_.model->make_kv_cache(512);
    ThreadPool pool(2);
    Sampler sampler(sp);
    GenerateOptions go;
    go.n_predict = n;
    go.ignore_eos = true;
    if (!draft) return generate(*target_.model, cache, pool, sampler, p, go, [](int) { return false; }, [](int) { return true; });
    KvCache draft_cache = draft->make_kv_cache(512);
    SpeculativeOptions so;
    so.draft_max = draft_max;
    const SpeculativeDraft d{draft, &draft_cache, so};
    return generate(*target_.model, cache, pool, sampler, p, go, [](int) { return false; }, [](int) { return true; }, &d);
  }
  static SamplerParams greedy() {
    SamplerParams sp;
    sp.temperature = 0;
    return sp;
  }
  std::string path_, bad_path_;
  LoadedModel target_, self_draft_, bad_draft_;
};

TEST_F(SpeculativeModels, GreedyOutputIsTheTargetsOwn) {
  for (const std::string text : {"Once upon a time", "The quick brown fox", "In a hole in the ground"}) {
    const std::vector<int> p = prompt(text);
    const GenerateResult plain = run(p, 40, nullptr, 0);
    ASSERT_EQ(plain.tokens.size(), 40u);
    for (int draft_max : {1, 3, 8}) {
      const GenerateResult good = run(p, 40, self_draft_.model.get(), draft_max);
      EXPECT_EQ(good.tokens, plain.tokens) << text << ", self draft, draft-max " << draft_max;
      EXPECT_GT(good.drafted, 0);
      EXPECT_GE(good.accepted, good.drafted * 9 / 10) << "a draft equal to the target should nearly always agree";
      EXPECT_LT(good.rounds, 40) << "several tokens per target forward";
      const GenerateResult bad = run(p, 40, bad_draft_.model.get(), draft_max);
      EXPECT_EQ(bad.tokens, plain.tokens) << text << ", random draft, draft-max " << draft_max;
      EXPECT_GT(bad.drafted, 0);
      EXPECT_LT(bad.accepted, bad.drafted / 2) << "a random draft should mostly be rejected";
    }
  }
}

TEST_F(SpeculativeModels, SampledOutputRunsToLengthWithPenalties) {
  SamplerParams sp;
  sp.temperature = 0.8f;
  sp.top_k = 40;
  sp.repeat_penalty = 1.1f;
  sp.seed = 5;
  const GenerateResult r = run(prompt("Once upon a time"), 30, bad_draft_.model.get(), 4, sp);
  EXPECT_EQ(r.tokens.size(), 30u);
  EXPECT_GT(r.drafted, 0);
}

TEST_F(SpeculativeModels, ADraftWithAnotherVocabularyIsRefused) {
  const std::string other = write_draft(path_, "other-vocab.gguf", 300);
  try {
    (void)load_draft_model(other, target_);
    FAIL() << "a draft with another token 300 was accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("token 300"), std::string::npos) << m;
    EXPECT_NE(m.find("other-vocab.gguf"), std::string::npos) << m;
  }
}

// ---- Through the serving engine ----

struct Collected {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::int32_t> ids;
  std::string text;
  bool done = false;
  Finish finish;
  GenerationCallbacks callbacks() {
    return {[this](const TokenEvent& e) {
              std::lock_guard<std::mutex> lk(mu);
              ids.push_back(e.id);
              text += e.text;
            },
            [this](const Finish& f) {
              std::lock_guard<std::mutex> lk(mu);
              text += f.text;
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

TEST_F(SpeculativeModels, EngineGreedyOutputIsTheTargetsOwnWithStopsAndLimits) {
  const std::vector<std::string> texts = {"Once upon a time", "The quick brown fox", "In a hole in the ground"};
  // The references first: a model runs one forward at a time, and the engine's thread uses it.
  std::vector<GenerateResult> plain_of;
  for (const std::string& t : texts) plain_of.push_back(run(prompt(t), 33, nullptr, 0));
  const GenerateResult plain = plain_of[0];
  const std::vector<int> p = prompt(texts[0]);
  std::vector<int> longer = p;
  longer.insert(longer.end(), plain.tokens.begin(), plain.tokens.end());
  const GenerateResult longer_plain = run(longer, 12, nullptr, 0);
  for (LlamaModel* draft : {self_draft_.model.get(), bad_draft_.model.get()}) {
    EngineOptions o;
    o.threads = 2;
    o.context_tokens = 256;
    o.draft = draft;
    o.speculative.draft_max = 5;
    Engine engine(*target_.model, *target_.tokenizer, o);
    // Three streams at once (within max_sequences), each checked against the target alone.
    std::vector<std::unique_ptr<Collected>> got;
    for (const std::string& t : texts) {
      GenerationRequest r;
      const std::vector<int> p = prompt(t);
      r.prompt.assign(p.begin(), p.end());
      r.sampling.temperature = 0;
      r.max_tokens = 33;
      r.ignore_eos = true;
      got.push_back(std::make_unique<Collected>());
      engine.submit(r, got.back()->callbacks());
    }
    for (std::size_t i = 0; i < texts.size(); ++i) {
      ASSERT_TRUE(got[i]->wait());
      EXPECT_EQ(got[i]->ids, plain_of[i].tokens) << texts[i];
      EXPECT_EQ(got[i]->finish.reason, FinishReason::Length);
      EXPECT_EQ(got[i]->finish.usage.completion_tokens, 33);
      EXPECT_EQ(got[i]->text, target_.tokenizer->decode(plain_of[i].tokens));
    }
    // A stop string inside the output cuts the accepted tokens where the target alone would stop.
    const std::string full = target_.tokenizer->decode(plain.tokens);
    const std::string stop = full.substr(full.size() / 2, 3);
    GenerationRequest r;
    r.prompt.assign(p.begin(), p.end());
    r.sampling.temperature = 0;
    r.max_tokens = 33;
    r.ignore_eos = true;
    r.stop = {stop};
    Collected c;
    engine.submit(r, c.callbacks());
    ASSERT_TRUE(c.wait());
    EXPECT_EQ(c.finish.reason, FinishReason::Stop);
    EXPECT_EQ(c.text, full.substr(0, full.find(stop)));
    // The prefix cache kept only accepted rows: a prompt that continues a finished stream (its
    // blocks come from the cache) still gives the target's own continuation.
    GenerationRequest again;
    again.prompt.assign(longer.begin(), longer.end());
    again.sampling.temperature = 0;
    again.max_tokens = 12;
    again.ignore_eos = true;
    Collected c2;
    engine.submit(again, c2.callbacks());
    ASSERT_TRUE(c2.wait());
    EXPECT_GT(c2.finish.usage.cached_tokens, 0);
    EXPECT_EQ(c2.ids, longer_plain.tokens);
    const EngineStats stats = engine.stats();
    EXPECT_GT(stats.draft_tokens_total, 0u);
    EXPECT_LE(stats.accepted_tokens_total, stats.draft_tokens_total);
  }
}

TEST_F(SpeculativeModels, EngineBacksOffUnderLoadAndForGrammarsAndLogprobs) {
  EngineOptions o;
  o.threads = 2;
  o.context_tokens = 256;
  o.draft = self_draft_.model.get();
  o.speculative.max_sequences = 0;  // never: every stream decodes alone
  Engine engine(*target_.model, *target_.tokenizer, o);
  GenerationRequest r;
  const std::vector<int> p = prompt("Once upon a time");
  r.prompt.assign(p.begin(), p.end());
  r.sampling.temperature = 0;
  r.max_tokens = 10;
  r.ignore_eos = true;
  Collected c;
  engine.submit(r, c.callbacks());
  ASSERT_TRUE(c.wait());
  EXPECT_EQ(engine.stats().draft_tokens_total, 0u);

  EngineOptions o2 = o;
  o2.speculative.max_sequences = 4;
  Engine engine2(*target_.model, *target_.tokenizer, o2);
  r.top_logprobs = 2;  // logprobs: no speculation for this sequence
  Collected c2;
  engine2.submit(r, c2.callbacks());
  ASSERT_TRUE(c2.wait());
  EXPECT_EQ(c2.ids, c.ids);
  EXPECT_EQ(engine2.stats().draft_tokens_total, 0u);
}

}  // namespace
}  // namespace kiln
