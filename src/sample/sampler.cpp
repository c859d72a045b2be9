#include "sample/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/error.h"
#include "kernels/ops.h"

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

// One pass over the row: its largest value, and whether every value is below +inf (no NaN, no
// +inf; -inf is a legitimate mask). Written with SSE (part of x86-64) because compilers do not
// vectorize a float max reduction without -ffast-math, and this pass runs on every token.
std::pair<float, bool> scan_logits(std::span<const float> logits) {
  const float* x = logits.data();
  const std::size_t n = logits.size();
  std::size_t i = 0;
  float max_value = -kInf;
  bool all_valid = true;
#if defined(__SSE2__)
  const __m128 inf = _mm_set1_ps(kInf);
  __m128 max0 = _mm_set1_ps(-kInf), max1 = max0;
  __m128 valid0 = _mm_castsi128_ps(_mm_set1_epi32(-1)), valid1 = valid0;
  for (; i + 8 <= n; i += 8) {
    const __m128 a = _mm_loadu_ps(x + i), b = _mm_loadu_ps(x + i + 4);
    valid0 = _mm_and_ps(valid0, _mm_cmplt_ps(a, inf));  // NaN compares false
    valid1 = _mm_and_ps(valid1, _mm_cmplt_ps(b, inf));
    max0 = _mm_max_ps(a, max0);  // a NaN in `a` yields max0 unchanged; valid already fails
    max1 = _mm_max_ps(b, max1);
  }
  alignas(16) float lanes[4];
  _mm_store_ps(lanes, _mm_max_ps(max0, max1));
  for (float lane : lanes) max_value = std::max(max_value, lane);
  all_valid = _mm_movemask_ps(_mm_and_ps(valid0, valid1)) == 0xF;
#endif
  for (; i < n; ++i) {
    all_valid &= x[i] < kInf;
    max_value = std::max(max_value, x[i]);
  }
  return {max_value, all_valid};
}

}  // namespace

void SamplerParams::validate() const {
  // Written as positive conditions so that NaN fails every one of them.
  check_range(temperature >= 0.0f && temperature < kInf, "temperature", temperature, "[0, inf) (0 = greedy)");
  check_range(top_k >= 0, "top_k", top_k, "[0, inf) (0 = off)");
  check_range(top_p >= 0.0f && top_p <= 1.0f, "top_p", top_p, "[0, 1] (1 = off)");
  check_range(typical_p >= 0.0f && typical_p <= 1.0f, "typical_p", typical_p, "[0, 1] (1 = off)");
  check_range(min_p >= 0.0f && min_p <= 1.0f, "min_p", min_p, "[0, 1] (0 = off)");
  check_range(repeat_penalty > 0.0f && repeat_penalty < kInf, "repeat_penalty", repeat_penalty, "(0, inf) (1 = off)");
  check_range(repeat_last_n >= -1, "repeat_last_n", repeat_last_n, "[-1, inf) (0 = off, -1 = whole history)");
  check_range(presence_penalty >= -2.0f && presence_penalty <= 2.0f, "presence_penalty", presence_penalty,
              "[-2, 2] (0 = off)");
  check_range(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f, "frequency_penalty", frequency_penalty,
              "[-2, 2] (0 = off)");
  for (const LogitBias& b : logit_bias) {
    check_range(b.id >= 0, "logit_bias token id", b.id, "[0, n_vocab)");
    // Bounded so that a biased finite logit stays finite: the chain relies on no +inf.
    check_range(b.bias == -kInf || (b.bias >= -100.0f && b.bias <= 100.0f), "logit_bias", b.bias,
                "[-100, 100] or -inf");
  }
}

Sampler::Sampler(const SamplerParams& params) : params_(params), rng_(params.seed) { params_.validate(); }

void Sampler::reseed(std::uint64_t seed) {
  params_.seed = seed;
  rng_.seed(seed);
}

int Sampler::run_chain(std::span<const float> logits, std::span<const int> history) {
  const std::size_t n_vocab = logits.size();
  KILN_CHECK(n_vocab > 0, "sampler: the logits row is empty (expected one logit per vocabulary entry)");
  KILN_CHECK(n_vocab <= static_cast<std::size_t>(std::numeric_limits<int>::max()),
             "sampler: vocabulary of {} entries does not fit token ids of type int", n_vocab);
  const auto [max_logit, all_valid] = scan_logits(logits);
  if (!all_valid) {
    for (std::size_t i = 0; i < n_vocab; ++i)
      KILN_CHECK(logits[i] < kInf, "sampler: logit of token {} is {} (expected a finite value or -inf)", i, logits[i]);
  }
  // Penalties keep finite logits finite, so this check on the raw row covers the whole chain.
  KILN_CHECK(max_logit > -kInf, "sampler: every logit is -inf, no token can be drawn");

  const bool penalties_on = (params_.repeat_penalty != 1.0f && params_.repeat_last_n != 0) ||
                            params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f;
  const bool bias_on = !params_.logit_bias.empty();
  if (params_.temperature == 0.0f && !penalties_on && !bias_on) {
    // Plain greedy needs no candidate list: the first maximum is the lowest id among ties.
    const int best = static_cast<int>(std::find(logits.begin(), logits.end(), max_logit) - logits.begin());
    probs_.assign(1, TokenProb{best, 1.0f});
    return best;
  }

  // candidates_ is indexed by token id until the first filter reorders it.
  candidates_.resize(n_vocab);
  for (std::size_t i = 0; i < n_vocab; ++i) candidates_[i] = {static_cast<int>(i), logits[i], 0.0f};
  apply_logit_bias();
  apply_penalties(history);

  if (params_.temperature == 0.0f) {
    const int best = pick_greedy();
    probs_.assign(1, TokenProb{best, 1.0f});
    return best;
  }
  keep_top_k(params_.top_k);
  keep_typical_p(params_.typical_p);
  keep_top_p(params_.top_p);
  keep_min_p(params_.min_p);
  return -1;
}

int Sampler::sample(std::span<const float> logits, std::span<const int> history) {
  const int greedy = run_chain(logits, history);
  return greedy >= 0 ? greedy : draw(params_.temperature);
}

std::span<const TokenProb> Sampler::distribution(std::span<const float> logits, std::span<const int> history) {
  if (run_chain(logits, history) < 0) fill_probs(params_.temperature);
  return probs_;
}

double Sampler::uniform() {
  // A uniform double in [0, 1) from the top 53 bits: unlike std::uniform_real_distribution its
  // result is pinned down by the standard, so it does not depend on the standard library.
  return static_cast<double>(rng_() >> 11) * 0x1.0p-53;
}


void Sampler::apply_logit_bias() {
  if (params_.logit_bias.empty()) return;
  const std::size_t n_vocab = candidates_.size();
  bool bans = false;
  for (const LogitBias& b : params_.logit_bias) {
    KILN_CHECK(static_cast<std::size_t>(b.id) < n_vocab,
               "sampler: logit_bias names token {}, outside the vocabulary [0, {})", b.id, n_vocab);
    candidates_[b.id].logit += b.bias;
    bans |= b.bias == -kInf;
  }
  // Finite biases keep finite logits finite; a ban may have removed the last drawable token.
  if (bans) KILN_CHECK(max_logit() > -kInf, "sampler: logit_bias bans every token that could be drawn");
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

float Sampler::max_logit() const {
  float m = -kInf;
  for (const Candidate& c : candidates_) m = std::max(m, c.logit);
  return m;
}

void Sampler::select_best(CandidateIt begin, CandidateIt end, std::size_t k) {
  const std::size_t n = static_cast<std::size_t>(end - begin);
  if (k == 0 || k >= n) return;
  if (k > 256 || n / k < 16) {
    std::nth_element(begin, begin + static_cast<std::ptrdiff_t>(k), end, HigherLogitFirst{});
    return;
  }
  // For a small k one pass with a heap of the k best so far is cheaper than nth_element: after
  // the first few hundred tokens almost every logit is rejected by a single comparison with the
  // heap's worst member. The k-th best then splits the range in one partition pass.
  heap_.assign(begin, begin + static_cast<std::ptrdiff_t>(k));
  std::make_heap(heap_.begin(), heap_.end(), HigherLogitFirst{});  // front: the worst of the k
  for (CandidateIt it = begin + static_cast<std::ptrdiff_t>(k); it != end; ++it) {
    if (it->logit < heap_.front().logit || !HigherLogitFirst{}(*it, heap_.front())) continue;
    std::pop_heap(heap_.begin(), heap_.end(), HigherLogitFirst{});
    heap_.back() = *it;
    std::push_heap(heap_.begin(), heap_.end(), HigherLogitFirst{});
  }
  const Candidate kth = heap_.front();
  std::partition(begin, end, [&](const Candidate& c) { return !HigherLogitFirst{}(kth, c); });
}

void Sampler::keep_top_k(int k) {
  if (k <= 0 || static_cast<std::size_t>(k) >= candidates_.size()) return;
  // Selection is linear in the vocabulary; the survivors stay unsorted.
  select_best(candidates_.begin(), candidates_.end(), static_cast<std::size_t>(k));
  candidates_.resize(static_cast<std::size_t>(k));
}

void Sampler::keep_typical_p(float p) {
  if (p >= 1.0f) return;
  const std::size_t n = candidates_.size();
  // Probabilities in double precision (exp of the logit minus the highest), so that the order
  // by distance and the cut are the same on every machine.
  const double top = max_logit();
  typical_.resize(n);
  double total = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    typical_[i].prob = std::exp(static_cast<double>(candidates_[i].logit) - top);
    typical_[i].index = static_cast<std::uint32_t>(i);
    total += typical_[i].prob;
  }
  double entropy = 0.0;
  for (TypicalRank& r : typical_) {
    r.prob /= total;
    if (r.prob > 0.0) entropy -= r.prob * std::log(r.prob);
  }
  // A masked token (probability 0) has infinite surprise: it sorts last and adds no mass.
  for (TypicalRank& r : typical_) r.distance = r.prob > 0.0 ? std::abs(-std::log(r.prob) - entropy) : kInf;
  std::sort(typical_.begin(), typical_.end(), [&](const TypicalRank& a, const TypicalRank& b) {
    return a.distance < b.distance || (a.distance == b.distance && candidates_[a.index].id < candidates_[b.index].id);
  });
  // llama.cpp's rule: stop at the first token whose running mass exceeds p (strictly).
  std::size_t kept = n;
  double mass = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    mass += typical_[i].prob;
    if (mass > p) {
      kept = i + 1;
      break;
    }
  }
  heap_.clear();
  for (std::size_t i = 0; i < kept; ++i) heap_.push_back(candidates_[typical_[i].index]);
  candidates_.assign(heap_.begin(), heap_.end());
}

void Sampler::keep_top_p(float p) {
  if (p >= 1.0f) return;
  const std::size_t n = candidates_.size();
  weights_.resize(n);
  for (std::size_t i = 0; i < n; ++i) weights_[i] = candidates_[i].logit;
  kernels::softmax_inplace(weights_.data(), static_cast<std::int64_t>(n));
  // The kernel normalizes with a float sum; the masses below are compared against p times a
  // double-precision total instead, so only the exp approximation (~3e-7 relative) remains.
  double total = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    candidates_[i].prob = weights_[i];
    total += weights_[i];
  }
  const double target = p * total;
  auto mass = [&](std::size_t begin, std::size_t end) {
    double m = 0.0;
    for (std::size_t i = begin; i < end; ++i) m += candidates_[i].prob;
    return m;
  };
  auto at = [&](std::size_t i) { return candidates_.begin() + static_cast<std::ptrdiff_t>(i); };

  // The kept set is the shortest prefix of the descending order whose mass reaches p. It is
  // found by selection, not by sorting: [0, lo) always holds candidates that are kept and that
  // beat everything after them, with mass `kept`. First grow a slice [lo, hi) of the next-best
  // candidates (64, then 4x larger) until the crossing lies inside it; the usual peaked
  // distributions stop at the first slice.
  std::size_t lo = 0, hi = std::min<std::size_t>(n, 64);
  double kept = 0.0;
  for (;;) {
    if (hi < n) select_best(at(lo), candidates_.end(), hi - lo);
    const double slice = mass(lo, hi);
    if (kept + slice >= target || hi == n) break;
    kept += slice;
    lo = hi;
    hi = std::min(n, hi * 4);
  }
  // Then halve the slice around the crossing until it is small enough to sort and scan.
  while (hi - lo > 32) {
    const std::size_t mid = lo + (hi - lo) / 2;
    select_best(at(lo), at(hi), mid - lo);
    const double front = mass(lo, mid);
    if (kept + front >= target) {
      hi = mid;
    } else {
      kept += front;
      lo = mid;
    }
  }
  std::sort(at(lo), at(hi), HigherLogitFirst{});
  for (std::size_t i = lo; i < hi; ++i) {
    kept += candidates_[i].prob;
    if (kept >= target) {
      candidates_.resize(i + 1);
      return;
    }
  }
  // Rounding kept the running mass just below p: the whole slice survives.
  candidates_.resize(hi);
}

void Sampler::keep_min_p(float min_p) {
  if (min_p <= 0.0f) return;
  // p_i >= min_p * p_max  <=>  logit_i >= max_logit + log(min_p); no softmax needed.
  const float threshold = max_logit() + std::log(min_p);
  std::size_t kept = 0;
  for (const Candidate& c : candidates_)
    if (c.logit >= threshold) candidates_[kept++] = c;
  candidates_.resize(kept);
}

double Sampler::fill_probs(float temperature) {
  const std::size_t n = candidates_.size();
  weights_.resize(n);
  for (std::size_t i = 0; i < n; ++i) weights_[i] = candidates_[i].logit / temperature;
  kernels::softmax_inplace(weights_.data(), static_cast<std::int64_t>(n));
  double total = 0.0;
  for (float w : weights_) total += w;
  const double inv_total = 1.0 / total;
  probs_.resize(n);
  for (std::size_t i = 0; i < n; ++i) probs_[i] = {candidates_[i].id, static_cast<float>(weights_[i] * inv_total)};
  return inv_total;
}

int Sampler::draw(float temperature) {
  const double inv_total = fill_probs(temperature);
  const double u = uniform();
  const std::size_t n = probs_.size();
  std::size_t chosen = n;
  double cumulative = 0.0;
  for (std::size_t i = 0; i < n && chosen == n; ++i) {
    cumulative += weights_[i] * inv_total;
    if (u < cumulative) chosen = i;
  }
  if (chosen == n) {
    // Rounding left u past the last partial sum: take the last token with weight.
    chosen = n - 1;
    while (chosen > 0 && probs_[chosen].prob == 0.0f) --chosen;
  }
  return probs_[chosen].id;
}

}  // namespace kiln
