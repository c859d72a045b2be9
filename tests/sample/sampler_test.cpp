#include "sample/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"

namespace kiln {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Logits whose softmax at temperature 1 is exactly the given distribution (up to rounding).
std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> logits;
  for (double p : probs) logits.push_back(static_cast<float>(std::log(p)));
  return logits;
}

std::vector<int> candidate_ids(const Sampler& sampler) {
  std::vector<int> ids;
  for (const TokenProb& tp : sampler.candidates()) ids.push_back(tp.id);
  return ids;
}

std::set<int> candidate_set(const Sampler& sampler) {
  std::vector<int> ids = candidate_ids(sampler);
  return {ids.begin(), ids.end()};
}

// Checks that the candidate set is exactly `ids` and that its probabilities are the softmax of
// logits[ids] / temperature.
void expect_softmax_over(const Sampler& sampler, const std::vector<float>& logits, const std::vector<int>& ids,
                         float temperature) {
  ASSERT_EQ(candidate_set(sampler), std::set<int>(ids.begin(), ids.end()));
  double total = 0.0;
  for (int id : ids) total += std::exp(logits[id] / temperature);
  for (const TokenProb& tp : sampler.candidates())
    EXPECT_NEAR(tp.prob, std::exp(logits[tp.id] / temperature) / total, 1e-6) << "token " << tp.id;
}

SamplerParams plain(float temperature = 1.0f) {
  SamplerParams p;
  p.temperature = temperature;
  return p;
}

TEST(Sampler, GreedyReturnsArgmaxWithTiesToLowestId) {
  Sampler sampler(plain(0.0f));
  std::vector<float> logits = {1.0f, 3.0f, 2.0f, 3.0f, kNegInf};
  EXPECT_EQ(sampler.sample(logits, {}), 1);
  ASSERT_EQ(sampler.candidates().size(), 1u);
  EXPECT_EQ(sampler.candidates()[0].id, 1);
  EXPECT_EQ(sampler.candidates()[0].prob, 1.0f);

  std::vector<float> descending = {5.0f, 4.0f, 5.0f};
  EXPECT_EQ(sampler.sample(descending, {}), 0);
  std::vector<float> last = {-1.0f, -2.0f, -0.5f};
  EXPECT_EQ(sampler.sample(last, {}), 2);
}

TEST(Sampler, GreedyIgnoresTheRngAndTheFilters) {
  SamplerParams params = plain(0.0f);
  params.top_k = 2;
  params.top_p = 0.1f;
  params.min_p = 0.9f;
  std::vector<float> logits = {0.1f, 0.7f, 0.3f, 0.69f};
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    params.seed = seed;
    Sampler sampler(params);
    for (int i = 0; i < 10; ++i) EXPECT_EQ(sampler.sample(logits, {}), 1);
  }
}

TEST(Sampler, TopKKeepsTheKHighestWithTiesToLowestIds) {
  SamplerParams params = plain();
  params.top_k = 2;
  Sampler sampler(params);
  std::vector<float> logits = {0.5f, 2.0f, -1.0f, 3.0f, 1.0f};
  sampler.sample(logits, {});
  EXPECT_EQ(candidate_set(sampler), (std::set<int>{3, 1}));
  expect_softmax_over(sampler, logits, {3, 1}, 1.0f);

  std::vector<float> tied = {1.0f, 2.0f, 2.0f, 2.0f, 0.0f};
  sampler.sample(tied, {});
  EXPECT_EQ(candidate_set(sampler), (std::set<int>{1, 2}));

  // k at or above the vocabulary size keeps everything.
  params.top_k = 5;
  Sampler all(params);
  all.sample(logits, {});
  EXPECT_EQ(all.candidates().size(), 5u);
}

TEST(Sampler, TopKMatchesAFullSortOnALargeVocabulary) {
  // 128k logits with many duplicates so that ties at the boundary matter.
  std::mt19937 gen(7);
  std::vector<float> logits(128 * 1024);
  for (float& x : logits) x = static_cast<float>(static_cast<int>(gen() % 20000)) / 1000.0f;
  std::vector<int> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });

  for (int k : {1, 40, 1000}) {
    SamplerParams params = plain();
    params.top_k = k;
    Sampler sampler(params);
    int token = sampler.sample(logits, {});
    EXPECT_EQ(candidate_set(sampler), std::set<int>(order.begin(), order.begin() + k)) << "k=" << k;
    EXPECT_TRUE(candidate_set(sampler).count(token));
  }
}

TEST(Sampler, TopPKeepsTheSmallestPrefixReachingP) {
  // Token probabilities at temperature 1: id 3 -> 0.5, id 0 -> 0.25, id 2 -> 0.15, id 1 -> 0.1.
  std::vector<float> logits = logits_of({0.25, 0.1, 0.15, 0.5});
  struct Case {
    float p;
    std::vector<int> kept;
  };
  for (const Case& c : {Case{0.0f, {3}}, Case{0.4f, {3}}, Case{0.7f, {3, 0}}, Case{0.8f, {3, 0, 2}},
                        Case{0.95f, {3, 0, 2, 1}}, Case{1.0f, {0, 1, 2, 3}}}) {
    SamplerParams params = plain();
    params.top_p = c.p;
    Sampler sampler(params);
    sampler.sample(logits, {});
    expect_softmax_over(sampler, logits, c.kept, 1.0f);
  }
}

TEST(Sampler, TopPOnAFlatLargeVocabularySortsAsFarAsNeeded) {
  // 10000 equal logits: each token has mass 1e-4, so p = 0.50005 needs exactly 5001 tokens, and
  // the tie rule makes them ids 0..5000. The prefix grows past several sorted slices.
  std::vector<float> logits(10000, 0.25f);
  SamplerParams params = plain();
  params.top_p = 0.50005f;
  Sampler sampler(params);
  sampler.sample(logits, {});
  std::vector<int> expected(5001);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(candidate_set(sampler), std::set<int>(expected.begin(), expected.end()));
}

// The candidate sets the chain may produce, computed the plain way: full sort, double-precision
// softmax. The sampler's softmax is float with a polynomial exp, so where the running mass
// passes within kMassTolerance of p, both neighbouring cut points are accepted.
std::vector<std::set<int>> reference_candidates(const std::vector<float>& logits, int top_k, float top_p, float min_p) {
  constexpr double kMassTolerance = 2e-6;
  std::vector<int> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  if (top_k > 0 && static_cast<std::size_t>(top_k) < order.size()) order.resize(top_k);
  std::vector<std::size_t> cuts = {order.size()};
  if (top_p < 1.0f) {
    cuts.clear();
    double total = 0.0;
    for (int id : order) total += std::exp(static_cast<double>(logits[id]) - logits[order[0]]);
    double mass = 0.0;
    for (std::size_t i = 0; i < order.size(); ++i) {
      const double before = mass;
      mass += std::exp(static_cast<double>(logits[order[i]]) - logits[order[0]]) / total;
      // Keeping i + 1 tokens is right if the mass reaches p there and not before.
      if (mass >= top_p - kMassTolerance && before < top_p + kMassTolerance) cuts.push_back(i + 1);
      if (before >= top_p + kMassTolerance) break;
    }
  }
  std::vector<std::set<int>> sets;
  for (std::size_t cut : cuts) {
    std::vector<int> kept(order.begin(), order.begin() + static_cast<long>(cut));
    if (min_p > 0.0f) {
      const float threshold = logits[kept[0]] + std::log(min_p);
      while (logits[kept.back()] < threshold) kept.pop_back();
    }
    sets.emplace_back(kept.begin(), kept.end());
  }
  return sets;
}

TEST(Sampler, FilterChainMatchesAFullSortReferenceOnRandomLogits) {
  struct Case {
    int top_k;
    float top_p, min_p;
  };
  for (std::uint32_t seed : {1u, 2u, 3u}) {
    std::mt19937 gen(seed);
    std::vector<float> logits(32000);
    // A wide spread (sigma 3) and a flat one (sigma 0.3) so that top-p keeps few or many.
    const float sigma = seed == 2 ? 0.3f : 3.0f;
    for (float& x : logits) x = std::normal_distribution<float>(0.0f, sigma)(gen);
    for (const Case& c : {Case{0, 0.9f, 0.0f}, Case{0, 0.5f, 0.0f}, Case{0, 0.99f, 0.0f}, Case{40, 0.95f, 0.05f},
                          Case{1000, 0.8f, 0.0f}, Case{0, 1.0f, 0.02f}, Case{0, 0.95f, 0.01f}}) {
      SamplerParams params = plain(0.7f);
      params.top_k = c.top_k;
      params.top_p = c.top_p;
      params.min_p = c.min_p;
      Sampler sampler(params);
      const int token = sampler.sample(logits, {});
      const std::vector<std::set<int>> allowed = reference_candidates(logits, c.top_k, c.top_p, c.min_p);
      ASSERT_FALSE(allowed.empty());
      const std::set<int> got = candidate_set(sampler);
      EXPECT_TRUE(std::find(allowed.begin(), allowed.end(), got) != allowed.end())
          << "seed " << seed << " k " << c.top_k << " p " << c.top_p << " min_p " << c.min_p << ": " << got.size()
          << " candidates, expected " << allowed.front().size() << " (" << allowed.size() << " acceptable cuts)";
      EXPECT_TRUE(got.count(token));
    }
  }
}

TEST(Sampler, MinPKeepsTokensAboveAFractionOfTheBest) {
  std::vector<float> logits = logits_of({0.25, 0.1, 0.15, 0.5});
  struct Case {
    float min_p;
    std::vector<int> kept;
  };
  for (const Case& c :
       {Case{0.1f, {0, 1, 2, 3}}, Case{0.25f, {0, 2, 3}}, Case{0.4f, {0, 3}}, Case{0.6f, {3}}, Case{1.0f, {3}}}) {
    SamplerParams params = plain();
    params.min_p = c.min_p;
    Sampler sampler(params);
    sampler.sample(logits, {});
    expect_softmax_over(sampler, logits, c.kept, 1.0f);
  }
}

TEST(Sampler, TemperatureScalesTheFinalSoftmax) {
  std::vector<float> logits = {0.0f, 1.0f, 2.0f, -1.0f, 0.5f};
  for (float t : {0.25f, 1.0f, 3.0f}) {
    Sampler sampler(plain(t));
    sampler.sample(logits, {});
    expect_softmax_over(sampler, logits, {0, 1, 2, 3, 4}, t);
  }
}

TEST(Sampler, ChainRunsTopKThenTopPThenMinPBeforeTemperature) {
  std::vector<float> logits = logits_of({0.25, 0.1, 0.15, 0.5});

  // top-p judges temperature-1 probabilities: at T = 0.1 the best token alone would carry
  // almost all the mass, yet p = 0.7 still keeps two tokens.
  SamplerParams cold = plain(0.1f);
  cold.top_p = 0.7f;
  Sampler cold_sampler(cold);
  cold_sampler.sample(logits, {});
  expect_softmax_over(cold_sampler, logits, {3, 0}, 0.1f);

  // top-p runs after top-k, on the renormalized survivors: with k = 2 the masses are 2/3 and
  // 1/3, so p = 0.6 keeps one token (without top-k it keeps two).
  SamplerParams kp = plain();
  kp.top_k = 2;
  kp.top_p = 0.6f;
  Sampler kp_sampler(kp);
  kp_sampler.sample(logits, {});
  EXPECT_EQ(candidate_set(kp_sampler), (std::set<int>{3}));
  kp.top_k = 0;
  Sampler p_only(kp);
  p_only.sample(logits, {});
  EXPECT_EQ(candidate_set(p_only), (std::set<int>{3, 0}));

  // min-p runs after top-p: top-p 0.95 keeps all four, min-p 0.4 then drops 0.15 and 0.1.
  SamplerParams pm = plain(2.0f);
  pm.top_p = 0.95f;
  pm.min_p = 0.4f;
  Sampler pm_sampler(pm);
  pm_sampler.sample(logits, {});
  expect_softmax_over(pm_sampler, logits, {3, 0}, 2.0f);
}

TEST(Sampler, RepeatPenaltyDividesPositiveAndMultipliesNegativeLogitsInTheWindow) {
  SamplerParams params = plain();
  params.repeat_penalty = 2.0f;
  params.repeat_last_n = 3;
  Sampler sampler(params);
  std::vector<float> logits = {2.0f, -2.0f, 1.0f, 0.5f, 0.0f};
  // Token 3 is outside the window of the last 3; token 0 repeats but is penalized once.
  std::vector<int> history = {3, 0, 1, 0};
  sampler.sample(logits, history);
  std::vector<float> expected = {1.0f, -4.0f, 1.0f, 0.5f, 0.0f};
  expect_softmax_over(sampler, expected, {0, 1, 2, 3, 4}, 1.0f);

  // -1 covers the whole history; 0 turns the penalty off.
  params.repeat_last_n = -1;
  Sampler whole(params);
  whole.sample(logits, history);
  expected[3] = 0.25f;
  expect_softmax_over(whole, expected, {0, 1, 2, 3, 4}, 1.0f);
  params.repeat_last_n = 0;
  Sampler off(params);
  off.sample(logits, history);
  expect_softmax_over(off, logits, {0, 1, 2, 3, 4}, 1.0f);
}

TEST(Sampler, PresenceAndFrequencyPenaltiesSubtractOverTheWholeHistory) {
  SamplerParams params = plain();
  params.presence_penalty = 0.5f;
  params.frequency_penalty = 0.25f;
  params.repeat_last_n = 1;  // the window does not limit these two
  Sampler sampler(params);
  std::vector<float> logits = {1.0f, 1.0f, 1.0f, 1.0f};
  std::vector<int> history = {2, 2, 2, 3};
  sampler.sample(logits, history);
  std::vector<float> expected = {1.0f, 1.0f, 1.0f - 3 * 0.25f - 0.5f, 1.0f - 0.25f - 0.5f};
  expect_softmax_over(sampler, expected, {0, 1, 2, 3}, 1.0f);

  // Counts do not leak into the next call.
  sampler.sample(logits, {});
  expect_softmax_over(sampler, logits, {0, 1, 2, 3}, 1.0f);
  sampler.sample(logits, history);
  expect_softmax_over(sampler, expected, {0, 1, 2, 3}, 1.0f);
}

TEST(Sampler, RepeatWindowDoesNotLimitPresenceAndFrequency) {
  SamplerParams params = plain();
  params.repeat_penalty = 2.0f;
  params.repeat_last_n = 2;
  params.presence_penalty = 0.5f;
  Sampler sampler(params);
  std::vector<float> logits = {1.0f, 1.0f, 1.0f, 1.0f};
  // Every history token pays the presence penalty; only the last two are also halved.
  sampler.sample(logits, std::vector<int>{3, 0, 1});
  std::vector<float> expected = {0.5f - 0.5f, 0.5f - 0.5f, 1.0f, 1.0f - 0.5f};
  expect_softmax_over(sampler, expected, {0, 1, 2, 3}, 1.0f);
}

TEST(Sampler, RepeatPenaltyComesBeforeTheSubtractivePenalties) {
  SamplerParams params = plain();
  params.repeat_penalty = 2.0f;
  params.presence_penalty = 1.0f;
  Sampler sampler(params);
  std::vector<float> logits = {3.0f, -1.0f, 0.0f};
  sampler.sample(logits, std::vector<int>{0, 1});
  std::vector<float> expected = {3.0f / 2 - 1.0f, -1.0f * 2 - 1.0f, 0.0f};
  expect_softmax_over(sampler, expected, {0, 1, 2}, 1.0f);
}

TEST(Sampler, PenaltiesCanChangeTheGreedyPick) {
  SamplerParams params = plain(0.0f);
  params.repeat_penalty = 1.5f;
  Sampler sampler(params);
  std::vector<float> logits = {1.0f, 1.2f, 0.9f};
  EXPECT_EQ(sampler.sample(logits, {}), 1);
  EXPECT_EQ(sampler.sample(logits, std::vector<int>{1}), 0);  // 1.2 / 1.5 = 0.8 < 1.0
}

TEST(Sampler, SameSeedGivesSameTokensAndDifferentSeedsDiffer) {
  std::vector<float> logits(1000, 0.0f);
  auto draws = [&](std::uint64_t seed) {
    SamplerParams params = plain();
    params.seed = seed;
    params.top_k = 500;
    Sampler sampler(params);
    std::vector<int> out;
    for (int i = 0; i < 200; ++i) out.push_back(sampler.sample(logits, {}));
    return out;
  };
  EXPECT_EQ(draws(42), draws(42));
  EXPECT_NE(draws(42), draws(43));

  SamplerParams params = plain();
  params.seed = 42;
  Sampler sampler(params);
  std::vector<int> first;
  for (int i = 0; i < 50; ++i) first.push_back(sampler.sample(logits, {}));
  sampler.reseed(42);
  std::vector<int> again;
  for (int i = 0; i < 50; ++i) again.push_back(sampler.sample(logits, {}));
  EXPECT_EQ(first, again);
}

TEST(Sampler, DrawFrequenciesFollowTheSoftmax) {
  std::vector<float> logits = {0.0f, 1.0f, 2.0f, 0.5f};
  double total = 0.0;
  for (float x : logits) total += std::exp(x);
  SamplerParams params = plain();
  params.seed = 2024;
  Sampler sampler(params);
  constexpr int kDraws = 100000;
  std::vector<int> counts(4, 0);
  for (int i = 0; i < kDraws; ++i) ++counts[sampler.sample(logits, {})];
  // The standard deviation of each frequency is below 0.0016; 0.01 is over six of them.
  for (int id = 0; id < 4; ++id)
    EXPECT_NEAR(static_cast<double>(counts[id]) / kDraws, std::exp(logits[id]) / total, 0.01) << "token " << id;
}

TEST(Sampler, MaskedTokensAreNeverDrawn) {
  std::vector<float> logits = {kNegInf, 0.0f, kNegInf, 0.0f};
  Sampler sampler(plain());
  for (int i = 0; i < 1000; ++i) {
    int token = sampler.sample(logits, {});
    EXPECT_TRUE(token == 1 || token == 3) << token;
  }
}

TEST(Sampler, CandidateProbabilitiesSumToOne) {
  std::mt19937 gen(3);
  std::vector<float> logits(32000);
  for (float& x : logits) x = std::normal_distribution<float>(0.0f, 3.0f)(gen);
  SamplerParams params = plain(0.8f);
  params.top_k = 40;
  params.top_p = 0.95f;
  params.min_p = 0.05f;
  Sampler sampler(params);
  sampler.sample(logits, {});
  double sum = 0.0;
  for (const TokenProb& tp : sampler.candidates()) sum += tp.prob;
  EXPECT_NEAR(sum, 1.0, 1e-5);
  EXPECT_LE(sampler.candidates().size(), 40u);
}

TEST(Sampler, InvalidParametersAreRejectedByName) {
  struct Case {
    std::string name;
    std::function<void(SamplerParams&)> set;
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<Case> cases = {
      {"temperature", [](SamplerParams& p) { p.temperature = -0.1f; }},
      {"temperature", [&](SamplerParams& p) { p.temperature = nan; }},
      {"temperature", [](SamplerParams& p) { p.temperature = std::numeric_limits<float>::infinity(); }},
      {"top_k", [](SamplerParams& p) { p.top_k = -1; }},
      {"top_p", [](SamplerParams& p) { p.top_p = 1.01f; }},
      {"top_p", [](SamplerParams& p) { p.top_p = -0.01f; }},
      {"min_p", [](SamplerParams& p) { p.min_p = 1.5f; }},
      {"min_p", [&](SamplerParams& p) { p.min_p = nan; }},
      {"repeat_penalty", [](SamplerParams& p) { p.repeat_penalty = 0.0f; }},
      {"repeat_last_n", [](SamplerParams& p) { p.repeat_last_n = -2; }},
      {"presence_penalty", [](SamplerParams& p) { p.presence_penalty = 2.5f; }},
      {"frequency_penalty", [](SamplerParams& p) { p.frequency_penalty = -3.0f; }},
      {"typical_p", [](SamplerParams& p) { p.typical_p = 1.5f; }},
      {"typical_p", [&](SamplerParams& p) { p.typical_p = nan; }},
      {"logit_bias",
       [](SamplerParams& p) {
         p.logit_bias = {{0, 100.5f}};
       }},
      {"logit_bias",
       [&](SamplerParams& p) {
         p.logit_bias = {{0, nan}};
       }},
      {"logit_bias",
       [](SamplerParams& p) {
         p.logit_bias = {{0, std::numeric_limits<float>::infinity()}};
       }},
      {"logit_bias token id",
       [](SamplerParams& p) {
         p.logit_bias = {{-1, 1.0f}};
       }},
  };
  for (const Case& c : cases) {
    SamplerParams params;
    c.set(params);
    try {
      Sampler sampler(params);
      ADD_FAILURE() << c.name << " out of range was accepted";
    } catch (const Error& e) {
      std::string message = e.what();
      EXPECT_NE(message.find(c.name + " = "), std::string::npos) << message;
      EXPECT_NE(message.find("allowed range"), std::string::npos) << message;
    }
  }
  SamplerParams edges;
  edges.temperature = 0.0f;
  edges.top_p = 0.0f;
  edges.min_p = 1.0f;
  edges.repeat_last_n = -1;
  edges.presence_penalty = -2.0f;
  edges.frequency_penalty = 2.0f;
  edges.typical_p = 0.0f;
  edges.logit_bias = {{0, -100.0f}, {1, 100.0f}, {2, kNegInf}};
  EXPECT_NO_THROW(edges.validate());
}

TEST(Sampler, GreedyAndValidityHoldAtEveryPositionOfTheRow) {
  // Rows longer than the 8-wide vector step put the interesting value in the vector part or in
  // the scalar tail.
  for (std::size_t n : {1u, 7u, 8u, 9u, 20u, 33u}) {
    for (std::size_t pos = 0; pos < n; ++pos) {
      std::vector<float> row(n, -1.0f);
      row[pos] = 2.0f;
      Sampler greedy(plain(0.0f));
      EXPECT_EQ(greedy.sample(row, {}), static_cast<int>(pos)) << "n=" << n;
      if (pos + 1 < n) {
        row[n - 1] = 2.0f;  // a later tie never wins
        EXPECT_EQ(greedy.sample(row, {}), static_cast<int>(pos)) << "n=" << n;
      }
      row[pos] = std::nanf("");
      EXPECT_THROW(greedy.sample(row, {}), Error) << "NaN at " << pos << " of " << n;
      row[pos] = std::numeric_limits<float>::infinity();
      EXPECT_THROW(greedy.sample(row, {}), Error) << "+inf at " << pos << " of " << n;
    }
  }
}

TEST(Sampler, InvalidInputsAreRejected) {
  Sampler sampler(plain());
  EXPECT_THROW(sampler.sample(std::vector<float>{}, {}), Error);
  EXPECT_THROW(sampler.sample(std::vector<float>{0.0f, std::nanf("")}, {}), Error);
  EXPECT_THROW(sampler.sample(std::vector<float>{0.0f, std::numeric_limits<float>::infinity()}, {}), Error);
  EXPECT_THROW(sampler.sample(std::vector<float>{kNegInf, kNegInf}, {}), Error);

  SamplerParams params = plain();
  params.repeat_penalty = 1.1f;
  Sampler penalized(params);
  std::vector<float> logits = {0.0f, 1.0f};
  EXPECT_THROW(penalized.sample(logits, std::vector<int>{0, 2}), Error);
  EXPECT_THROW(penalized.sample(logits, std::vector<int>{-1}), Error);
  EXPECT_NO_THROW(penalized.sample(logits, std::vector<int>{0, 1}));
}

// ---- logit bias ---------------------------------------------------------------------------------

TEST(Sampler, LogitBiasChangesTheLogitsBeforeEveryStage) {
  const std::vector<float> logits = {2.0f, 1.0f, 0.5f, -1.0f};
  // Greedy: the bias can change the winner; -inf bans the favourite.
  SamplerParams greedy = plain(0.0f);
  greedy.logit_bias = {{3, 3.5f}};
  EXPECT_EQ(Sampler(greedy).sample(logits, {}), 3);
  greedy.logit_bias = {{0, kNegInf}};
  EXPECT_EQ(Sampler(greedy).sample(logits, {}), 1);
  // An id listed twice gets both biases: 0.5 + 1 + 1 beats 2.
  greedy.logit_bias = {{2, 1.0f}, {2, 1.0f}};
  EXPECT_EQ(Sampler(greedy).sample(logits, {}), 2);

  // Sampling: the final probabilities are the softmax of the biased logits, and a banned token
  // is never a candidate.
  SamplerParams params = plain(0.7f);
  params.logit_bias = {{1, -100.0f}, {2, 1.25f}, {0, kNegInf}};
  Sampler sampler(params);
  for (int i = 0; i < 50; ++i) EXPECT_NE(sampler.sample(logits, {}), 0);
  const std::vector<float> biased = {kNegInf, 1.0f - 100.0f, 1.75f, -1.0f};
  expect_softmax_over(sampler, biased, {0, 1, 2, 3}, 0.7f);  // token 0 with probability 0

  // The bias comes before the penalties (llama.cpp's order): the repeat penalty divides the
  // biased logit 2 + 2 = 4 to 2; had it run first, token 0 would be at 2 / 2 + 2 = 3 and win.
  SamplerParams order = plain(0.0f);
  order.repeat_penalty = 2.0f;
  order.logit_bias = {{0, 2.0f}, {1, 1.5f}};
  EXPECT_EQ(Sampler(order).sample(logits, std::vector<int>{0}), 1);  // 2.5 beats 2

  // The bias comes before top-k: k = 1 keeps the token the bias lifted.
  SamplerParams topk = plain();
  topk.top_k = 1;
  topk.logit_bias = {{2, 2.0f}};
  Sampler topk_sampler(topk);
  EXPECT_EQ(topk_sampler.sample(logits, {}), 2);
}

TEST(Sampler, LogitBiasOutsideTheVocabularyOrBanningEverythingIsRejected) {
  SamplerParams params = plain();
  params.logit_bias = {{4, 1.0f}};
  Sampler outside(params);
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f, 3.0f};
  try {
    outside.sample(logits, {});
    ADD_FAILURE() << "a logit_bias id outside the vocabulary was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("logit_bias"), std::string::npos) << e.what();
  }
  params.logit_bias = {{0, kNegInf}, {1, kNegInf}, {2, kNegInf}, {3, kNegInf}};
  EXPECT_THROW(Sampler(params).sample(logits, {}), Error);
  params.temperature = 0.0f;
  EXPECT_THROW(Sampler(params).sample(logits, {}), Error);
  params.logit_bias.pop_back();
  EXPECT_EQ(Sampler(params).sample(logits, {}), 3);
}

// ---- typical-p ----------------------------------------------------------------------------------

// Locally typical sampling written out plainly: the top-k survivors by a full sort, their
// softmax in double precision, the entropy, every token's |surprise - entropy|, a full sort by
// it (ties to the lower id), and the first prefix whose mass exceeds p (llama.cpp's rule).
std::set<int> reference_typical(const std::vector<float>& logits, int top_k, double p) {
  std::vector<int> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(),
            [&](int a, int b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  if (top_k > 0 && static_cast<std::size_t>(top_k) < ids.size()) ids.resize(top_k);
  double top = -std::numeric_limits<double>::infinity();
  for (int id : ids) top = std::max(top, static_cast<double>(logits[id]));
  std::map<int, double> prob;
  double total = 0.0;
  for (int id : ids) total += prob[id] = std::exp(static_cast<double>(logits[id]) - top);
  double entropy = 0.0;
  for (auto& [id, q] : prob) {
    q /= total;
    if (q > 0.0) entropy -= q * std::log(q);
  }
  auto distance = [&](int id) {
    return prob[id] > 0.0 ? std::abs(-std::log(prob[id]) - entropy) : std::numeric_limits<double>::infinity();
  };
  std::sort(ids.begin(), ids.end(),
            [&](int a, int b) { return distance(a) < distance(b) || (distance(a) == distance(b) && a < b); });
  std::set<int> kept;
  double mass = 0.0;
  for (int id : ids) {
    kept.insert(id);
    mass += prob[id];
    if (mass > p) break;
  }
  return kept;
}

TEST(Sampler, TypicalPKeepsTheTokensWhoseSurpriseIsClosestToTheEntropy) {
  // Probabilities 1/2, 1/4, 1/8, 1/8: entropy 1.75 bits, surprises 1, 2, 3, 3 bits, distances
  // 0.75, 0.25, 1.25, 1.25. The most typical token is the second most probable one.
  const std::vector<float> logits = logits_of({0.5, 0.25, 0.125, 0.125});
  struct Case {
    float p;
    std::set<int> kept;
  };
  for (const Case& c :
       {Case{0.0f, {1}}, Case{0.2f, {1}}, Case{0.5f, {1, 0}}, Case{0.8f, {1, 0, 2}}, Case{0.9f, {0, 1, 2, 3}}}) {
    SamplerParams params = plain(0.5f);
    params.typical_p = c.p;
    Sampler sampler(params);
    sampler.sample(logits, {});
    EXPECT_EQ(candidate_set(sampler), c.kept) << "typical_p " << c.p;
    // Typical-p judges temperature-1 probabilities; the draw is the softmax at T over the kept.
    expect_softmax_over(sampler, logits, std::vector<int>(c.kept.begin(), c.kept.end()), 0.5f);
  }
  // Off at 1, and skipped by greedy.
  SamplerParams off = plain();
  off.typical_p = 1.0f;
  Sampler off_sampler(off);
  off_sampler.sample(logits, {});
  EXPECT_EQ(candidate_set(off_sampler).size(), 4u);
  SamplerParams greedy = plain(0.0f);
  greedy.typical_p = 0.2f;
  EXPECT_EQ(Sampler(greedy).sample(logits, {}), 0);
}

TEST(Sampler, TypicalPMatchesABruteForceReferenceOnRandomLogits) {
  for (std::uint32_t seed : {1u, 2u, 3u, 4u}) {
    std::mt19937 gen(seed);
    const std::size_t n = seed == 4 ? 32000 : 50 + 300 * seed;
    std::vector<float> logits(n);
    const float sigma = seed % 2 == 0 ? 0.5f : 3.0f;
    for (float& x : logits) x = std::normal_distribution<float>(0.0f, sigma)(gen);
    logits[n / 3] = kNegInf;  // a masked token: never kept
    for (int top_k : {0, 40}) {
      for (float p : {0.05f, 0.3f, 0.6f, 0.9f, 0.99f}) {
        SamplerParams params = plain(0.8f);
        params.top_k = top_k;
        params.typical_p = p;
        Sampler sampler(params);
        const int token = sampler.sample(logits, {});
        const std::set<int> expected = reference_typical(logits, top_k, p);
        EXPECT_EQ(candidate_set(sampler), expected) << "seed " << seed << " top_k " << top_k << " p " << p;
        EXPECT_TRUE(expected.count(token));
        EXPECT_FALSE(expected.count(static_cast<int>(n / 3)) && p < 0.99f);
      }
    }
  }
}

TEST(Sampler, TypicalPRunsAfterTopKAndBeforeTopP) {
  const std::vector<float> logits = logits_of({0.5, 0.25, 0.125, 0.125});
  // Typical 0.2 keeps token 1 alone, which top-p then keeps. Had top-p 0.5 run first it would
  // have kept token 0 alone.
  SamplerParams tp = plain();
  tp.typical_p = 0.2f;
  tp.top_p = 0.5f;
  Sampler tp_sampler(tp);
  tp_sampler.sample(logits, {});
  EXPECT_EQ(candidate_set(tp_sampler), (std::set<int>{1}));
  // After top-k 2 the survivors are 2/3 and 1/3: entropy 0.918 bits, surprises 0.585 and 1.585,
  // distances 0.333 and 0.667, so typical 0.2 keeps token 0 (on the full row it keeps token 1).
  SamplerParams kt = plain();
  kt.top_k = 2;
  kt.typical_p = 0.2f;
  Sampler kt_sampler(kt);
  kt_sampler.sample(logits, {});
  EXPECT_EQ(candidate_set(kt_sampler), (std::set<int>{0}));
}

}  // namespace
}  // namespace kiln
