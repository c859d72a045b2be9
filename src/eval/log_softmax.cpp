#include "eval/log_softmax.h"

#include <cmath>

namespace kiln::eval {

double log_sum_exp(const float* x, std::int64_t n) {
  float max = x[0];
  for (std::int64_t v = 1; v < n; ++v) max = x[v] > max ? x[v] : max;
  // Each term is in (0, 1] and exact to float precision; only the sum needs double.
  double sum = 0;
  for (std::int64_t v = 0; v < n; ++v) sum += static_cast<double>(std::exp(x[v] - max));
  return static_cast<double>(max) + std::log(sum);
}

double token_nll(const float* x, std::int64_t n, int target) {
  return log_sum_exp(x, n) - static_cast<double>(x[target]);
}

double log_softmax(const float* x, std::int64_t n, float* out) {
  const double lse = log_sum_exp(x, n);
  for (std::int64_t v = 0; v < n; ++v) out[v] = static_cast<float>(static_cast<double>(x[v]) - lse);
  return lse;
}

int argmax(const float* x, std::int64_t n) {
  std::int64_t best = 0;
  for (std::int64_t v = 1; v < n; ++v)
    if (x[v] > x[best]) best = v;
  return static_cast<int>(best);
}

}  // namespace kiln::eval
