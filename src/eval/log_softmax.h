#pragma once
// Log-probabilities from logits, computed the numerically careful way: the row's maximum is
// subtracted before exponentiating (no overflow), and the sum of exponentials is accumulated in
// double (a 32000-wide row summed in float loses about four digits). Every score in src/eval/
// (perplexity, KL divergence) goes through these, so the two agree to the last bit.
#include <cstdint>

namespace kiln::eval {

// log(sum_v exp(x[v])) of a row of n logits.
double log_sum_exp(const float* x, std::int64_t n);

// The negative log-likelihood of `target` under softmax(x): log_sum_exp(x) - x[target].
double token_nll(const float* x, std::int64_t n, int target);

// out[v] = x[v] - log_sum_exp(x), stored as float (out may alias x). Returns log_sum_exp(x).
double log_softmax(const float* x, std::int64_t n, float* out);

// Index of the largest value (the lowest index among equal maxima, like a greedy sampler).
int argmax(const float* x, std::int64_t n);

}  // namespace kiln::eval
