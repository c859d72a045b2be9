// kiln eval's math against plain references: log-softmax and NLL against a long-double
// brute force, the standard-error formulas against two-pass computations, KL divergence and Δp
// on small fixed distributions; then the whole pipeline on real checkpoints: perplexity of
// stories260K on text it generated itself (equal to a token-by-token recomputation), KL of a
// model with itself (exactly 0), a saved base file against the base on the fly, and the random
// llama-2-tiny on War and Peace (perplexity near the vocabulary size). Bad inputs: one-line errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "core/error.h"
#include "eval/chunks.h"
#include "eval/compare.h"
#include "eval/eval_stats.h"
#include "eval/kl_divergence.h"
#include "eval/log_softmax.h"
#include "eval/logits_file.h"
#include "eval/perplexity.h"
#include "eval/svg_plot.h"
#include "format/gguf_file.h"
#include "model/llama_model.h"
#include "test_support.h"
#include "tokenizer/load_tokenizer.h"

namespace kiln::eval {
namespace {

// ---- references -------------------------------------------------------------------------------

long double ref_log_sum_exp(const std::vector<float>& x) {
  long double m = x[0];
  for (float v : x) m = std::max<long double>(m, v);
  long double s = 0;
  for (float v : x) s += std::exp(static_cast<long double>(v) - m);
  return m + std::log(s);
}

// Expects `fn` to throw kiln::Error with a one-line message containing `needle`.
template <typename Fn>
void expect_one_line_error(Fn&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(needle), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << "not one line: " << m;
  }
}

std::vector<float> fixed_logits(int n, unsigned seed, float scale, float offset) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> x(static_cast<std::size_t>(n));
  for (float& v : x) v = d(rng) + offset;
  return x;
}

// ---- log-softmax and NLL ------------------------------------------------------------------------

TEST(EvalMath, TokenNllMatchesLongDoubleBruteForce) {
  // Offsets far beyond exp's range check the max subtraction; the wide row checks the double sum.
  for (float offset : {0.0f, 1000.0f, -1000.0f, 80.0f}) {
    for (int n : {2, 7, 512, 32000}) {
      const std::vector<float> x = fixed_logits(n, static_cast<unsigned>(n), 3.0f, offset);
      const long double lse = ref_log_sum_exp(x);
      // Terms are exponentiated in float (relative error ~6e-8 each) and summed in double.
      const double tol = 3e-7 + 1e-12 * std::fabs(offset);
      EXPECT_NEAR(log_sum_exp(x.data(), n), static_cast<double>(lse), tol);
      for (int target : {0, n / 2, n - 1}) {
        const double ref = static_cast<double>(lse - x[static_cast<std::size_t>(target)]);
        EXPECT_NEAR(token_nll(x.data(), n, target), ref, tol) << n << " " << offset;
        EXPECT_GE(token_nll(x.data(), n, target), 0.0);
      }
      std::vector<float> lp(x.size());
      log_softmax(x.data(), n, lp.data());
      double total = 0;
      for (float v : lp) total += std::exp(static_cast<double>(v));
      EXPECT_NEAR(total, 1.0, 1e-5);
    }
  }
}

TEST(EvalMath, ArgmaxTakesTheLowestIndexAmongTies) {
  const std::vector<float> x = {1, 5, 3, 5, -2};
  EXPECT_EQ(argmax(x.data(), 5), 1);
}

TEST(EvalMath, StandardErrorIsLlamaPerplexityFormula) {
  const std::vector<double> nll = {2.1, 1.7, 3.3, 0.4, 2.9, 2.2, 1.1};
  RunningStats s;
  for (double v : nll) s.add(v);
  double mean = 0;
  for (double v : nll) mean += v;
  mean /= nll.size();
  double ss = 0;  // population variance, two-pass
  for (double v : nll) ss += (v - mean) * (v - mean);
  const double var = ss / nll.size();
  const double se = std::sqrt(var / (nll.size() - 1));
  const Estimate m = s.mean_estimate();
  EXPECT_NEAR(m.value, mean, 1e-12);
  EXPECT_NEAR(m.std_err, se, 1e-12);
  const Estimate ppl = perplexity_estimate(s);
  EXPECT_NEAR(ppl.value, std::exp(mean), 1e-12);
  EXPECT_NEAR(ppl.std_err, std::exp(mean) * se, 1e-12);
  RunningStats one;
  one.add(3.0);
  EXPECT_EQ(one.mean_estimate().std_err, 0.0);
}

TEST(EvalMath, PercentileInterpolatesBetweenRanks) {
  const std::vector<double> v = {1, 2, 3, 4, 5};
  EXPECT_DOUBLE_EQ(percentile(v, 0.0), 1);
  EXPECT_DOUBLE_EQ(percentile(v, 0.5), 3);
  EXPECT_DOUBLE_EQ(percentile(v, 1.0), 5);
  EXPECT_DOUBLE_EQ(percentile(v, 0.1), 1.4);
  EXPECT_DOUBLE_EQ(percentile({7}, 0.9), 7);
}

// Builds a row as logits_to_rows would from explicit logits.
struct OwnedRow {
  std::vector<float> lp;
  BaseRow row;
};
OwnedRow make_row(std::vector<float> logits, int target, ThreadPool& pool) {
  OwnedRow o;
  o.lp = std::move(logits);
  logits_to_rows(o.lp.data(), 1, static_cast<int>(o.lp.size()), &target, &o.row, pool);
  return o;
}

TEST(EvalMath, KlDivergenceMatchesBruteForceOnSmallRows) {
  ThreadPool pool(1);
  const std::vector<float> base_logits = {2.0f, 1.0f, 0.1f, -1.5f};
  const std::vector<float> model_logits = {1.5f, 1.4f, -0.2f, -1.0f};
  const int target = 1;
  OwnedRow b = make_row(base_logits, target, pool), m = make_row(model_logits, target, pool);
  const long double lb = ref_log_sum_exp(base_logits), lm = ref_log_sum_exp(model_logits);
  long double kld = 0;
  for (std::size_t v = 0; v < 4; ++v) {
    const long double pb = std::exp(base_logits[v] - lb), pm = std::exp(model_logits[v] - lm);
    kld += pb * std::log(pb / pm);
  }
  const TokenComparison t = compare_token(b.row, m.row, 4);
  EXPECT_NEAR(t.kld, static_cast<double>(kld), 1e-6);
  EXPECT_GT(t.kld, 0);
  EXPECT_NEAR(t.nll_base, static_cast<double>(lb - base_logits[1]), 1e-6);
  EXPECT_NEAR(t.nll_model, static_cast<double>(lm - model_logits[1]), 1e-6);
  EXPECT_NEAR(t.dp, static_cast<double>(std::exp(model_logits[1] - lm) - std::exp(base_logits[1] - lb)), 1e-6);
  EXPECT_TRUE(t.same_top);  // both put token 0 first
  // A model whose top token moves.
  OwnedRow m2 = make_row({0.0f, 3.0f, 0.0f, 0.0f}, target, pool);
  EXPECT_FALSE(compare_token(b.row, m2.row, 4).same_top);
  // Identical rows: exactly zero, not merely small.
  const TokenComparison self = compare_token(b.row, make_row(base_logits, target, pool).row, 4);
  EXPECT_EQ(self.kld, 0.0);
  EXPECT_EQ(self.dp, 0.0);
  EXPECT_TRUE(self.same_top);
}

TEST(EvalMath, KldAccumulatorStatisticsMatchDirectComputation) {
  KldAccumulator acc;
  std::vector<TokenComparison> ts;
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> u(0, 1);
  for (int i = 0; i < 101; ++i) {
    TokenComparison t;
    t.kld = u(rng) * u(rng);
    t.nll_base = 1 + u(rng);
    t.nll_model = t.nll_base + 0.2 * u(rng) - 0.05;
    t.dp = u(rng) - 0.6;
    t.same_top = u(rng) < 0.8;
    ts.push_back(t);
    acc.add(t);
  }
  const KldResult r = acc.finish();
  ASSERT_EQ(r.n_tokens, 101);
  std::vector<double> k, d;
  double sum_k = 0, sum_top = 0, sum_dp2 = 0, sum_diff = 0, sum_nb = 0;
  for (const TokenComparison& t : ts) {
    k.push_back(t.kld), d.push_back(t.dp);
    sum_k += t.kld, sum_top += t.same_top, sum_dp2 += t.dp * t.dp;
    sum_diff += t.nll_model - t.nll_base, sum_nb += t.nll_base;
  }
  std::sort(k.begin(), k.end());
  std::sort(d.begin(), d.end());
  EXPECT_NEAR(r.kld.value, sum_k / 101, 1e-12);
  EXPECT_DOUBLE_EQ(r.kld_median, k[50]);  // odd count: the middle value
  EXPECT_DOUBLE_EQ(r.kld_max, k.back());
  EXPECT_DOUBLE_EQ(r.kld_p90, k[90]);     // 0.9 * 100 lands on a rank
  EXPECT_DOUBLE_EQ(r.kld_p99, k[99]);
  EXPECT_DOUBLE_EQ(r.dp_percentiles[4], d[50]);
  EXPECT_DOUBLE_EQ(r.dp_percentiles[0], d[1]);
  EXPECT_NEAR(r.same_top.value, sum_top / 101, 1e-12);
  EXPECT_NEAR(r.same_top.std_err, std::sqrt(r.same_top.value * (1 - r.same_top.value) / 100), 1e-12);
  EXPECT_NEAR(r.rms_dp.value, std::sqrt(sum_dp2 / 101), 1e-12);
  EXPECT_NEAR(r.ln_ppl_ratio.value, sum_diff / 101, 1e-12);
  EXPECT_NEAR(r.ppl_ratio.value, std::exp(sum_diff / 101), 1e-12);
  EXPECT_NEAR(r.ppl_base.value, std::exp(sum_nb / 101), 1e-12);
  EXPECT_GT(r.nll_correlation, 0.5);
}

// ---- chunking and inputs ------------------------------------------------------------------------

TEST(EvalChunks, PlanWritesBosAndScoresTheSecondHalf) {
  std::vector<int> ids(1000);
  for (int i = 0; i < 1000; ++i) ids[static_cast<std::size_t>(i)] = 3 + i % 50;
  const ChunkPlan p = make_chunk_plan(ids, 128, 0, 1, "ids");
  EXPECT_EQ(p.n_chunks, 7);  // 1000 / 128, the tail dropped
  EXPECT_EQ(p.first, 64);
  EXPECT_EQ(p.n_scored(), 63);
  for (int c = 0; c < p.n_chunks; ++c) {
    EXPECT_EQ(p.chunk(c)[0], 1);
    EXPECT_EQ(p.chunk(c)[1], ids[static_cast<std::size_t>(c * 128 + 1)]);
  }
  EXPECT_EQ(p.target(2, 0), ids[2 * 128 + 65]);
  EXPECT_EQ(p.target(2, 62), ids[2 * 128 + 127]);
  EXPECT_EQ(make_chunk_plan(ids, 128, 3, -1, "ids").n_chunks, 3);
  EXPECT_EQ(make_chunk_plan(ids, 128, 3, -1, "ids").chunk(1)[0], ids[128]);
}

TEST(EvalChunks, ShortOrEmptyInputIsAOneLineError) {
  const std::vector<int> few(100, 5);
  expect_one_line_error([&] { make_chunk_plan(few, 128, 0, 1, "short.txt"); }, "short.txt has 100 tokens, fewer than one chunk of 128");
  expect_one_line_error([&] { make_chunk_plan({}, 128, 0, 1, "empty.txt"); }, "empty.txt has no tokens");
  expect_one_line_error([&] { make_chunk_plan(few, 2, 0, 1, "x"); }, "too small");
  const std::string dir = test::temp_dir();
  std::ofstream(dir + "/empty_ids.txt") << "  \n";
  expect_one_line_error([&] { read_token_file(dir + "/empty_ids.txt"); }, "no token ids");
  std::ofstream(dir + "/bad_ids.txt") << "1 2 3\n4 x5 6\n";
  expect_one_line_error([&] { read_token_file(dir + "/bad_ids.txt"); }, "token 5 'x5' is not a token id");
  std::ofstream(dir + "/neg_ids.txt") << "1 -2";
  expect_one_line_error([&] { read_token_file(dir + "/neg_ids.txt"); }, "'-2'");
  std::ofstream(dir + "/ok_ids.txt") << "1 2\t3\n\n 44 ";
  EXPECT_EQ(read_token_file(dir + "/ok_ids.txt"), (std::vector<int>{1, 2, 3, 44}));
  expect_one_line_error([&] { check_token_range(std::vector<int>{1, 600}, 512, "ids.txt"); }, "ids.txt: token 2 is id 600");
}

// ---- the logits file ----------------------------------------------------------------------------

ChunkPlan small_plan() {
  std::vector<int> ids(24);
  for (int i = 0; i < 24; ++i) ids[static_cast<std::size_t>(i)] = (i * 7) % 10;
  return make_chunk_plan(ids, 8, 0, 1, "ids");  // 3 chunks of 8, 3 scored rows each
}

std::string write_small_logits(const std::string& path, std::vector<std::vector<float>>* rows_out = nullptr) {
  const ChunkPlan plan = small_plan();
  ThreadPool pool(1);
  LogitsFileWriter w(path, plan, 10);
  for (int c = 0; c < plan.n_chunks; ++c)
    for (int r = 0; r < plan.n_scored(); ++r) {
      OwnedRow o = make_row(fixed_logits(10, static_cast<unsigned>(c * 10 + r), 2.0f, 0.0f), plan.target(c, r), pool);
      w.add_row(o.row);
      if (rows_out) rows_out->push_back(o.lp);
    }
  w.finish();
  return path;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(LogitsFile, RoundTripKeepsTokensExactAndRowsToHalfPrecision) {
  std::vector<std::vector<float>> rows;
  const std::string path = write_small_logits(test::temp_dir() + "/small.kll", &rows);
  const LogitsFile f(path);
  const ChunkPlan plan = small_plan();
  EXPECT_EQ(f.n_vocab(), 10);
  EXPECT_EQ(f.plan().tokens, plan.tokens);
  EXPECT_EQ(f.plan().n_ctx, 8);
  EXPECT_EQ(f.plan().bos_id, 1);
  std::vector<float> scratch(10);
  ThreadPool pool(1);
  int i = 0;
  for (int c = 0; c < 3; ++c)
    for (int r = 0; r < 3; ++r, ++i) {
      const BaseRow row = f.row(c, r, scratch.data());
      const std::vector<float>& lp = rows[static_cast<std::size_t>(i)];
      EXPECT_EQ(row.target_log_prob, lp[static_cast<std::size_t>(plan.target(c, r))]);  // stored exactly
      EXPECT_EQ(row.argmax, static_cast<int>(std::max_element(lp.begin(), lp.end()) - lp.begin()));
      for (int v = 0; v < 10; ++v) EXPECT_NEAR(row.log_probs[v], lp[static_cast<std::size_t>(v)], 4e-3) << v;
    }
}

TEST(LogitsFile, WriterWithoutFinishLeavesNoFile) {
  const std::string path = test::temp_dir() + "/unfinished.kll";
  {
    LogitsFileWriter w(path, small_plan(), 10);
  }
  std::ifstream in(path);
  EXPECT_FALSE(in.good());
  EXPECT_TRUE(slurp(path + ".tmp-" + std::to_string(::getpid())).empty());
}

TEST(LogitsFile, MalformedFilesAreOneLineErrors) {
  const std::string dir = test::temp_dir();
  const std::string good = slurp(write_small_logits(dir + "/good.kll"));
  auto with = [&](const std::string& name, std::string bytes) {
    std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
    return dir + "/" + name;
  };
  auto patch_u32 = [&](std::size_t off, std::uint32_t v) {
    std::string b = good;
    std::memcpy(b.data() + off, &v, 4);
    return b;
  };
  expect_one_line_error([&] { LogitsFile f(with("short.kll", good.substr(0, 20))); }, "too short for a logits file header");
  std::string magic = good;
  magic[0] = 'X';
  expect_one_line_error([&] { LogitsFile f(with("magic.kll", magic)); }, "not a kiln logits file");
  expect_one_line_error([&] { LogitsFile f(with("version.kll", patch_u32(8, 7))); }, "version 7 is not supported");
  expect_one_line_error([&] { LogitsFile f(with("enc.kll", patch_u32(12, 2))); }, "encoding 2 is not supported");
  expect_one_line_error([&] { LogitsFile f(with("vocab.kll", patch_u32(16, 0))); }, "n_vocab = 0");
  expect_one_line_error([&] { LogitsFile f(with("chunks.kll", patch_u32(24, 4))); }, "needs exactly");
  expect_one_line_error([&] { LogitsFile f(with("trunc.kll", good.substr(0, good.size() - 1))); }, "trunc.kll: file size is");
  expect_one_line_error([&] { LogitsFile f(with("first.kll", patch_u32(28, 3))); }, "first scored position = 3");
  expect_one_line_error([&] { LogitsFile f(with("token.kll", patch_u32(40, 99))); }, "token 1 is id 99");
  // Row fields are checked when the row is read.
  const std::size_t rows_at = 40 + 24 * 4;
  LogitsFile bad_argmax(with("argmax.kll", patch_u32(rows_at + 4, 10)));
  std::vector<float> scratch(10);
  expect_one_line_error([&] { bad_argmax.row(0, 0, scratch.data()); }, "argmax 10 is outside n_vocab 10");
  LogitsFile bad_target(with("target.kll", patch_u32(rows_at, 0x7fc00000u)));  // NaN
  expect_one_line_error([&] { bad_target.row(0, 0, scratch.data()); }, "target log-probability");
  expect_one_line_error([&] { LogitsFile f(dir + "/missing.kll"); }, "missing.kll");
}

// ---- real checkpoints ---------------------------------------------------------------------------

// Text of stories260K's own: `n_stories` sequences that start with BOS and continue with tokens
// sampled at temperature 1 (plain softmax, no truncation) from a fixed seed.
std::vector<int> sample_stories(LlamaModel& model, ThreadPool& pool, int n_stories, int length, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int n_vocab = model.config().n_vocab;
  std::vector<int> out;
  std::vector<float> logits(static_cast<std::size_t>(n_vocab));
  std::vector<double> probs(static_cast<std::size_t>(n_vocab));
  for (int s = 0; s < n_stories; ++s) {
    KvCache cache = model.make_kv_cache(length);
    const int seq = cache.add_sequence();
    int token = 1;
    for (int pos = 0; pos < length; ++pos) {
      out.push_back(token);
      Batch b;
      b.add(token, pos, seq, true);
      model.forward(b, cache, pool, logits.data());
      const double lse = log_sum_exp(logits.data(), n_vocab);
      for (int v = 0; v < n_vocab; ++v) probs[static_cast<std::size_t>(v)] = std::exp(logits[static_cast<std::size_t>(v)] - lse);
      token = std::discrete_distribution<int>(probs.begin(), probs.end())(rng);
    }
  }
  return out;
}

// The reference perplexity: every chunk run one token at a time (decode, not one batched
// forward of several chunks), each scored row's NLL by the long-double brute force.
double direct_mean_nll(LlamaModel& model, const ChunkPlan& plan, ThreadPool& pool, std::int64_t* count) {
  const int n_vocab = model.config().n_vocab;
  std::vector<float> logits(static_cast<std::size_t>(n_vocab));
  long double sum = 0;
  *count = 0;
  for (int c = 0; c < plan.n_chunks; ++c) {
    KvCache cache = model.make_kv_cache(plan.n_ctx);
    const int seq = cache.add_sequence();
    for (int pos = 0; pos < plan.n_ctx - 1; ++pos) {
      Batch b;
      b.add(plan.chunk(c)[static_cast<std::size_t>(pos)], pos, seq, true);
      model.forward(b, cache, pool, logits.data());
      if (pos < plan.first) continue;
      sum += ref_log_sum_exp(logits) - logits[static_cast<std::size_t>(plan.chunk(c)[static_cast<std::size_t>(pos + 1)])];
      ++*count;
    }
  }
  return static_cast<double>(sum / *count);
}

TEST(EvalModels, Stories260kPerplexityOnItsOwnTextEqualsTokenByTokenComputation) {
  KILN_REQUIRE_DATA(path, "stories260K.bin");
  std::unique_ptr<LlamaModel> model = LlamaModel::load(path);
  ThreadPool pool(2);
  // One story per chunk: the model was trained on stories that start at BOS, and a chunk cut
  // from the middle of a story (BOS written over its first token) costs it a perplexity in the
  // hundreds, which would say nothing about the evaluation.
  const std::vector<int> ids = sample_stories(*model, pool, 6, 128, 42);
  const ChunkPlan plan = make_chunk_plan(ids, 128, 0, 1, "stories");
  ASSERT_EQ(plan.n_chunks, 6);
  const PerplexityResult packed = perplexity(*model, plan, pool, 2048);  // all 6 chunks in one forward
  const PerplexityResult single = perplexity(*model, plan, pool, 128);   // one chunk per forward
  EXPECT_EQ(packed.chunks_per_forward, 6);
  EXPECT_EQ(single.chunks_per_forward, 1);
  EXPECT_EQ(packed.n_scored, 6 * 63);
  EXPECT_EQ(packed.n_evaluated, 6 * 128);
  ASSERT_EQ(packed.running_ppl.size(), 6u);
  EXPECT_DOUBLE_EQ(packed.running_ppl.back(), packed.ppl.value);
  ASSERT_TRUE(std::isfinite(packed.ppl.value));
  // A trained 260K model on text sampled from itself at temperature 1: the perplexity is
  // exp(its own entropy), about 20 here; a broken pass gives hundreds (vocabulary of 512).
  std::printf("stories260K on 6 of its own stories of 128 tokens: PPL %.4f +/- %.4f\n", packed.ppl.value, packed.ppl.std_err);
  EXPECT_GT(packed.ppl.value, 3);
  EXPECT_LT(packed.ppl.value, 60);
  EXPECT_GT(packed.ppl.std_err, 0);
  EXPECT_LT(packed.ppl.std_err, packed.ppl.value * 0.2);
  std::int64_t count = 0;
  const double ref = direct_mean_nll(*model, plan, pool, &count);
  EXPECT_EQ(count, packed.n_scored);
  EXPECT_NEAR(packed.nll.value, ref, 1e-4 * ref);
  EXPECT_NEAR(single.nll.value, packed.nll.value, 1e-5 * ref);
}

// Several chunks of a context that is not a multiple of the KV cache's block size in one forward:
// each chunk's sequence needs whole blocks of its own (the cache was once sized in positions
// alone, and refused the second chunk as full).
TEST(EvalModels, ContextsOfPartialCacheBlocksPackSeveralChunks) {
  KILN_REQUIRE_DATA(path, "stories260K.bin");
  std::unique_ptr<LlamaModel> model = LlamaModel::load(path);
  ThreadPool pool(2);
  std::vector<int> ids(200);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int>(1 + (i * 37) % 500);
  const ChunkPlan plan = make_chunk_plan(ids, 8, 0, 1, "ids");
  const PerplexityResult packed = perplexity(*model, plan, pool, 2048);
  const PerplexityResult single = perplexity(*model, plan, pool, 8);
  EXPECT_GT(packed.chunks_per_forward, 1);
  EXPECT_NEAR(packed.nll.value, single.nll.value, 1e-5 * single.nll.value);
}

// A variant of stories260K: every weight rounded to a symmetric 4-bit grid per block of 32
// (stored back as f32, so the file is a valid llama2.c checkpoint of the same shape).
std::string write_rounded_stories(const std::string& src, const std::string& dst) {
  std::string bytes = slurp(src);
  const std::size_t n = (bytes.size() - 28) / 4;
  std::vector<float> w(n);
  std::memcpy(w.data(), bytes.data() + 28, n * 4);
  for (std::size_t b = 0; b < n; b += 32) {
    const std::size_t e = std::min(n, b + 32);
    float amax = 0;
    for (std::size_t i = b; i < e; ++i) amax = std::max(amax, std::fabs(w[i]));
    const float scale = amax / 7;
    if (scale > 0)
      for (std::size_t i = b; i < e; ++i) w[i] = std::clamp(std::nearbyint(w[i] / scale), -8.0f, 7.0f) * scale;
  }
  std::memcpy(bytes.data() + 28, w.data(), n * 4);
  std::ofstream(dst, std::ios::binary) << bytes;
  return dst;
}

TEST(EvalModels, KlDivergenceOfAModelWithItselfIsExactlyZero) {
  KILN_REQUIRE_DATA(path, "stories260K.bin");
  std::unique_ptr<LlamaModel> a = LlamaModel::load(path), b = LlamaModel::load(path);
  ThreadPool pool(2);
  const ChunkPlan plan = make_chunk_plan(sample_stories(*a, pool, 4, 128, 7), 128, 0, 1, "stories");
  const KldResult r = kl_divergence(*a, *b, plan, pool, 2048, nullptr);
  EXPECT_EQ(r.n_tokens, plan.n_chunks * 63);
  EXPECT_EQ(r.kld.value, 0.0);
  EXPECT_EQ(r.kld_max, 0.0);
  EXPECT_EQ(r.same_top.value, 1.0);
  EXPECT_EQ(r.dp_max, 0.0);
  EXPECT_EQ(r.dp_min, 0.0);
  EXPECT_EQ(r.ppl_ratio.value, 1.0);
  EXPECT_EQ(r.ppl_base.value, r.ppl_model.value);
}

TEST(EvalModels, SavedBaseLogitsGiveTheSameKldAsOnTheFly) {
  KILN_REQUIRE_DATA(path, "stories260K.bin");
  const std::string variant_path = write_rounded_stories(path, test::temp_dir() + "/stories_q4grid.bin");
  std::unique_ptr<LlamaModel> base = LlamaModel::load(path), variant = LlamaModel::load(variant_path);
  ThreadPool pool(2);
  const ChunkPlan plan = make_chunk_plan(sample_stories(*base, pool, 6, 128, 11), 128, 0, 1, "stories");
  const std::string saved = test::temp_dir() + "/stories_base.kll";
  LogitsFileWriter writer(saved, plan, base->config().n_vocab);
  const KldResult fly = kl_divergence(*base, *variant, plan, pool, 256, &writer);  // 2 chunks per forward
  writer.finish();
  const LogitsFile file(saved);
  EXPECT_EQ(file.plan().tokens, plan.tokens);
  const KldResult from_file = kl_divergence(file, *variant, pool, 2048);
  // The 4-bit grid costs the tiny model a lot: a clearly nonzero divergence.
  EXPECT_GT(fly.kld.value, 0.05);
  EXPECT_LT(fly.same_top.value, 0.95);
  EXPECT_GT(fly.ppl_model.value, fly.ppl_base.value);
  // Stored exactly: the target log-probabilities and the argmax.
  EXPECT_DOUBLE_EQ(from_file.ppl_base.value, fly.ppl_base.value);
  EXPECT_DOUBLE_EQ(from_file.same_top.value, fly.same_top.value);
  EXPECT_NEAR(from_file.ppl_model.value, fly.ppl_model.value, 1e-9 * fly.ppl_model.value);
  // Stored as f16 log-probabilities: the divergence moves by far less than its own error bar.
  EXPECT_NEAR(from_file.kld.value, fly.kld.value, 1e-4 * fly.kld.value + 1e-6);
  EXPECT_LT(std::fabs(from_file.kld.value - fly.kld.value), 0.01 * fly.kld.std_err);
  EXPECT_NEAR(from_file.kld_median, fly.kld_median, 1e-3 * fly.kld_median + 1e-6);
  // The save-only path gives the same base perplexity.
  const std::string saved2 = test::temp_dir() + "/stories_base2.kll";
  LogitsFileWriter w2(saved2, plan, base->config().n_vocab);
  const PerplexityResult base_ppl = save_base_logits(*base, plan, pool, 2048, w2);
  w2.finish();
  EXPECT_DOUBLE_EQ(base_ppl.ppl.value, fly.ppl_base.value);
  EXPECT_EQ(slurp(saved2), slurp(saved));
  // The vocabulary must match.
  KILN_REQUIRE_DATA(tiny, "llama-2-tiny-random.gguf");
  std::unique_ptr<LlamaModel> other = LlamaModel::load(tiny);
  expect_one_line_error([&] { kl_divergence(file, *other, pool, 2048); }, "KL divergence needs the same vocabulary");
}

TEST(EvalModels, RandomTinyLlamaOnWarAndPeaceIsNearTheVocabularySize) {
  KILN_REQUIRE_DATA(path, "llama-2-tiny-random.gguf");
  KILN_REQUIRE_DATA(text_path, "war-and-peace.txt");
  std::unique_ptr<LlamaModel> model = LlamaModel::load(path);
  std::unique_ptr<Tokenizer> tok = load_tokenizer(*model->source().gguf());
  // The first 64 KB are plenty for 4 chunks of 512 tokens.
  const std::string text = read_text_file(text_path).substr(0, 65536);
  const std::vector<std::int32_t> t = tok->encode(text, true, false);
  const std::vector<int> ids(t.begin(), t.end());
  ThreadPool pool(2);
  const ChunkPlan plan = make_chunk_plan(ids, 512, 4, tok->bos_id(), "war-and-peace");
  const PerplexityResult r = perplexity(*model, plan, pool, 2048);
  // Random weights with a width of 8 spread the probability almost evenly over the 32000
  // tokens: the perplexity measured is about 32100, within 1% of the vocabulary size.
  std::printf("llama-2-tiny-random on War and Peace, 4 x 512 tokens: PPL %.1f +/- %.1f\n", r.ppl.value, r.ppl.std_err);
  EXPECT_GT(r.ppl.value, 0.97 * 32000);
  EXPECT_LT(r.ppl.value, 1.03 * 32000);
  std::int64_t count = 0;
  EXPECT_NEAR(r.nll.value, direct_mean_nll(*model, plan, pool, &count), 1e-5);
}

TEST(EvalCompare, MatrixWeightsCountTwoDimensionalTensorsOnly) {
  KILN_REQUIRE_DATA(path, "llama-2-tiny-random.gguf");
  std::unique_ptr<LlamaModel> model = LlamaModel::load(path);
  const MatrixWeights m = matrix_weights(*model);
  // token_embd and output (8 x 32000 each), 4 x (8 x 8) attention, 3 x (8 x 32) feed-forward.
  EXPECT_EQ(m.n_params, 2 * 8 * 32000 + 4 * 64 + 3 * 256);
  EXPECT_EQ(m.bytes, static_cast<std::uint64_t>(m.n_params) * 2);  // all f16
  EXPECT_DOUBLE_EQ(m.bits_per_weight(), 16.0);
}

// ---- the SVG plot -------------------------------------------------------------------------------

TEST(SvgPlot, NiceTicksAndAWellFormedDocument) {
  EXPECT_EQ(nice_ticks(0, 10, 5), (std::vector<double>{0, 2, 4, 6, 8, 10}));
  EXPECT_EQ(nice_ticks(3.3, 16.4, 7), (std::vector<double>{4, 6, 8, 10, 12, 14, 16}));
  Plot p;
  p.title = "KLD <vs> size & more";
  p.x_label = "bits";
  p.y_label = "KLD";
  p.log_y = true;
  p.points = {{4.5, 0.03, "q4_k_m"}, {8.5, 0.001, "q8_0"}, {6.6, 0.005, "a\"b"}};
  const std::string svg = render_svg(p);
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_NE(svg.find("KLD &lt;vs&gt; size &amp; more"), std::string::npos);
  EXPECT_NE(svg.find("a&quot;b"), std::string::npos);
  EXPECT_NE(svg.find(">q8_0</text>"), std::string::npos);
  EXPECT_NE(svg.find(">0.001</text>"), std::string::npos);  // decade labels
  EXPECT_NE(svg.find(">0.1</text>"), std::string::npos);
  std::size_t circles = 0;
  for (std::size_t at = svg.find("<circle"); at != std::string::npos; at = svg.find("<circle", at + 1)) ++circles;
  EXPECT_EQ(circles, 3u);
  p.points.push_back({3, 0, "zero"});
  expect_one_line_error([&] { render_svg(p); }, "log scale cannot show");
  p.points.clear();
  expect_one_line_error([&] { render_svg(p); }, "has no points");
}

TEST(SvgPlot, LinesAreDrawnInOrderAndNamedInTheLegend) {
  Plot p;
  p.title = "loss";
  p.x_label = "step";
  p.y_label = "loss";
  p.lines = {{"train", {{0, 8.3}, {10, 5.0}, {20, 4.1}}}, {"validation <val>", {{20, 4.4}}}};
  const std::string svg = render_svg(p);
  std::size_t polylines = 0;
  for (std::size_t at = svg.find("<polyline"); at != std::string::npos; at = svg.find("<polyline", at + 1)) ++polylines;
  EXPECT_EQ(polylines, 2u);
  EXPECT_NE(svg.find(">train</text>"), std::string::npos);
  EXPECT_NE(svg.find(">validation &lt;val&gt;</text>"), std::string::npos);
  // The first line's points go left to right: step 0 at the frame's left, step 20 at its right.
  const std::size_t first = svg.find("points=\"");
  ASSERT_NE(first, std::string::npos);
  const double x_first = std::stod(svg.substr(first + 8));
  const std::size_t last_space = svg.rfind(' ', svg.find('"', first + 8) - 1);
  const std::size_t prev_space = svg.rfind(' ', last_space - 1);
  const double x_last = std::stod(svg.substr(prev_space + 1));
  EXPECT_LT(x_first, x_last);
  p.lines[0].points.push_back({30, std::nan("")});
  expect_one_line_error([&] { render_svg(p); }, "is not finite");
}

}  // namespace
}  // namespace kiln::eval
