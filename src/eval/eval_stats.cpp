#include "eval/eval_stats.h"

#include <cmath>

namespace kiln::eval {

Estimate RunningStats::mean_estimate() const {
  Estimate e;
  if (count_ == 0) return e;
  const double n = static_cast<double>(count_);
  e.value = sum_ / n;
  const double var = sum2_ / n - e.value * e.value;
  if (count_ > 1 && var > 0) e.std_err = std::sqrt(var / (n - 1));
  return e;
}

Estimate perplexity_estimate(const RunningStats& nll) {
  const Estimate m = nll.mean_estimate();
  Estimate e;
  e.value = std::exp(m.value);
  e.std_err = m.std_err * e.value;
  return e;
}

MeanStdev mean_stdev(const std::vector<double>& samples) {
  MeanStdev r;
  if (samples.empty()) return r;
  for (double x : samples) r.mean += x;
  r.mean /= static_cast<double>(samples.size());
  if (samples.size() > 1) {
    double ss = 0;
    for (double x : samples) ss += (x - r.mean) * (x - r.mean);
    r.stdev = std::sqrt(ss / static_cast<double>(samples.size() - 1));
  }
  return r;
}

double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const std::size_t lo = static_cast<std::size_t>(std::floor(pos));
  const std::size_t hi = lo + 1 < sorted.size() ? lo + 1 : lo;
  const double frac = pos - static_cast<double>(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

double correlation(const std::vector<double>& a, const std::vector<double>& b) {
  const std::size_t n = a.size() < b.size() ? a.size() : b.size();
  if (n < 2) return 0;
  double ma = 0, mb = 0;
  for (std::size_t i = 0; i < n; ++i) ma += a[i], mb += b[i];
  ma /= static_cast<double>(n), mb /= static_cast<double>(n);
  double sab = 0, saa = 0, sbb = 0;
  for (std::size_t i = 0; i < n; ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : 0;
}

}  // namespace kiln::eval
