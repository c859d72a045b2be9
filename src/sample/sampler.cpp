#include "sample/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace kiln {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Descending logit, then ascending id: a strict total order on candidates with non-NaN logits,
// so every sort below gives one well-defined result.
struct HigherLogitFirst {
  template <typename C>
  bool operator()(const C& a, const C& b) const {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  }
};

// The first stage that finds a parameter out of range names it and its range.
void check_range(bool ok, const char* name, double value, const char* range) {
  KILN_CHECK(ok, "sampler: {} = {} is outside its allowed range {}", name, value, range);
}

}  // namespace

void SamplerParams::validate() const {
  // Written as positive conditions so that NaN fails every one of them.
  check_range(temperature >= 0.0f && temperature < kInf, "temperature", temperature, "[0, inf) (0 = greedy)");
  check_range(top_k >= 0, "top_k", top_k, "[0, inf) (0 = off)");
  check_range(top_p >= 0.0f && top_p <= 1.0f, "top_p", top_p, "[0, 1] (1 = off)");
  check_range(min_p >= 0.0f && min_p <= 1.0f, "min_p", min_p, "[0, 1] (0 = off)");
  check_range(repeat_penalty > 0.0f && repeat_penalty < kInf, "repeat_penalty", repeat_penalty, "(0, inf) (1 = off)");
  check_range(repeat_last_n >= -1, "repeat_last_n", repeat_last_n, "[-1, inf) (0 = off, -1 = whole history)");
  check_range(presence_penalty >= -2.0f && presence_penalty <= 2.0f, "presence_penalty", presence_penalty,
              "[-2, 2] (0 = off)");
  check_range(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f, "frequency_penalty", frequency_penalty,
              "[-2, 2] (0 = off)");
}

Sampler::Sampler(const SamplerParams& params) : params_(params), rng_(params.seed) { params_.validate(); }

void Sampler::reseed(std::uint64_t seed) {
  params_.seed = seed;
  rng_.seed(seed);
}

int Sampler::sample(std::span<const float> logits, std::span<const int> history) {
  const std::size_t n_vocab = logits.size();
  KILN_CHECK(n_vocab > 0, "sampler: the logits row is empty (expected one logit per vocabulary entry)");
  KILN_CHECK(n_vocab <= static_cast<std::size_t>(std::numeric_limits<int>::max()),
             "sampler: vocabulary of {} entries does not fit token ids of type int", n_vocab);

  // candidates_ is indexed by token id until the first filter reorders it.
  candidates_.resize(n_vocab);
  bool all_valid = true;
  for (std::size_t i = 0; i < n_vocab; ++i) {
    candidates_[i] = {static_cast<int>(i), logits[i]};
    all_valid &= logits[i] < kInf;  // false for NaN and +inf; -inf is a legitimate mask
  }
  if (!all_valid) {
    for (std::size_t i = 0; i < n_vocab; ++i)
      KILN_CHECK(logits[i] < kInf, "sampler: logit of token {} is {} (expected a finite value or -inf)", i, logits[i]);
  }
  sorted_ = false;

  apply_penalties(history);

  const int best = pick_greedy();
  KILN_CHECK(candidates_[best].logit > -kInf, "sampler: every logit is -inf, no token can be drawn");
  if (params_.temperature == 0.0f) {
    probs_.assign(1, TokenProb{best, 1.0f});
    return best;
  }
  keep_top_k(params_.top_k);
  keep_top_p(params_.top_p);
  keep_min_p(params_.min_p);
  return draw(params_.temperature);
}

void Sampler::apply_penalties(std::span<const int> history) {
  const bool repeat_on = params_.repeat_penalty != 1.0f && params_.repeat_last_n != 0;
  const bool openai_on = params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f;
  if (!repeat_on && !openai_on) return;

  const std::size_t n_vocab = candidates_.size();
  for (std::size_t i = 0; i < history.size(); ++i)
    KILN_CHECK(history[i] >= 0 && static_cast<std::size_t>(history[i]) < n_vocab,
               "sampler: history[{}] = {} is outside the vocabulary [0, {})", i, history[i], n_vocab);

  // The count arrays stay all-zero between calls; only the ids listed in touched_ are set.
  window_count_.resize(n_vocab, 0);
  history_count_.resize(n_vocab, 0);
  touched_.clear();
  const std::size_t window = params_.repeat_last_n < 0
                                 ? history.size()
                                 : std::min(history.size(), static_cast<std::size_t>(params_.repeat_last_n));
  if (repeat_on) {
    for (std::size_t i = history.size() - window; i < history.size(); ++i)
      if (window_count_[history[i]]++ == 0) touched_.push_back(history[i]);
  }
  if (openai_on) {
    for (int id : history)
      if (history_count_[id]++ == 0 && window_count_[id] == 0) touched_.push_back(id);
  }

  for (int id : touched_) {
    float logit = candidates_[id].logit;
    if (window_count_[id] > 0) logit = logit <= 0.0f ? logit * params_.repeat_penalty : logit / params_.repeat_penalty;
    const int count = history_count_[id];
    if (count > 0) logit -= static_cast<float>(count) * params_.frequency_penalty + params_.presence_penalty;
    candidates_[id].logit = logit;
    window_count_[id] = 0;
    history_count_[id] = 0;
  }
}

int Sampler::pick_greedy() const {
  // candidates_ is in id order here, so the strict comparison keeps the lowest id among ties.
  std::size_t best = 0;
  for (std::size_t i = 1; i < candidates_.size(); ++i)
    if (candidates_[i].logit > candidates_[best].logit) best = i;
  return static_cast<int>(best);
}

void Sampler::keep_top_k(int k) {
  if (k <= 0 || static_cast<std::size_t>(k) >= candidates_.size()) return;
  // Selection is linear in the vocabulary; only the k survivors are sorted.
  std::nth_element(candidates_.begin(), candidates_.begin() + k, candidates_.end(), HigherLogitFirst{});
  candidates_.resize(k);
  std::sort(candidates_.begin(), candidates_.end(), HigherLogitFirst{});
  sorted_ = true;
}

void Sampler::keep_top_p(float p) {
  if (p >= 1.0f) return;
  const float max_logit =
      sorted_ ? candidates_.front().logit
              : std::max_element(candidates_.begin(), candidates_.end(), [](const Candidate& a, const Candidate& b) {
                  return a.logit < b.logit;
                })->logit;
  double total = 0.0;
  for (const Candidate& c : candidates_) total += std::exp(static_cast<double>(c.logit - max_logit));

  // The kept prefix is usually short, so sort only as far as the running mass needs: the best
  // 64 first, then ever larger slices of the rest (each slice's members are no better than the
  // sorted prefix, so the prefix stays the true top of the order).
  const std::size_t n = candidates_.size();
  std::size_t sorted_end = sorted_ ? n : 0;
  std::size_t scanned = 0;
  double mass = 0.0;
  for (std::size_t chunk = std::min<std::size_t>(n, 64);; chunk = std::min(n, chunk * 4)) {
    if (sorted_end < chunk) {
      std::partial_sort(candidates_.begin() + sorted_end, candidates_.begin() + chunk, candidates_.end(),
                        HigherLogitFirst{});
      sorted_end = chunk;
    }
    for (; scanned < chunk; ++scanned) {
      mass += std::exp(static_cast<double>(candidates_[scanned].logit - max_logit)) / total;
      if (mass >= p) {
        candidates_.resize(scanned + 1);
        sorted_ = true;
        return;
      }
    }
    if (chunk == n) break;
  }
  // Rounding kept the mass just below p: every candidate survives, now in sorted order.
  sorted_ = true;
}

void Sampler::keep_min_p(float min_p) {
  if (min_p <= 0.0f) return;
  // p_i >= min_p * p_max  <=>  logit_i >= max_logit + log(min_p); no softmax needed.
  float max_logit = -kInf;
  for (const Candidate& c : candidates_) max_logit = std::max(max_logit, c.logit);
  const float threshold = max_logit + std::log(min_p);
  std::size_t kept = 0;
  for (const Candidate& c : candidates_)
    if (c.logit >= threshold) candidates_[kept++] = c;  // order preserved, sorted or not
  candidates_.resize(kept);
}

int Sampler::draw(float temperature) {
  const std::size_t n = candidates_.size();
  float max_logit = -kInf;
  for (const Candidate& c : candidates_) max_logit = std::max(max_logit, c.logit);
  const float inv_t = 1.0f / temperature;

  // probs_ holds exp((logit - max) / T) first and is normalized after the draw.
  probs_.resize(n);
  double total = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const float weight = std::exp((candidates_[i].logit - max_logit) * inv_t);
    probs_[i] = {candidates_[i].id, weight};
    total += weight;
  }

  // A uniform double in [0, 1) from the top 53 bits: unlike std::uniform_real_distribution its
  // result is pinned down by the standard, so a seed gives the same tokens with any library.
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
  const double target = u * total;
  std::size_t chosen = n;
  double cumulative = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    cumulative += probs_[i].prob;
    if (target < cumulative) {
      chosen = i;
      break;
    }
  }
  if (chosen == n) {
    // Rounding put the target past the last partial sum: take the last token with weight.
    chosen = n - 1;
    while (chosen > 0 && probs_[chosen].prob == 0.0f) --chosen;
  }

  const float inv_total = static_cast<float>(1.0 / total);
  for (TokenProb& tp : probs_) tp.prob *= inv_total;
  return probs_[chosen].id;
}

}  // namespace kiln
