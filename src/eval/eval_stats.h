#pragma once
// The statistics evaluation reports: means with their standard error, perplexity with its
// uncertainty propagated through exp, means with the spread of the samples, and percentiles.
#include <cstdint>
#include <vector>

namespace kiln::eval {

struct Estimate {
  double value = 0;
  double std_err = 0;  // standard error of `value`; 0 when fewer than two samples
};

// Sums of x and x² in double, enough for a mean and its standard error.
class RunningStats {
 public:
  void add(double x) {
    sum_ += x, sum2_ += x * x, ++count_;
  }
  std::int64_t count() const { return count_; }
  double mean() const { return count_ > 0 ? sum_ / static_cast<double>(count_) : 0.0; }
  // The mean and its standard error sqrt(var / (n - 1)) with var = E[x²] - E[x]² (the formula
  // llama-perplexity uses).
  Estimate mean_estimate() const;

 private:
  double sum_ = 0, sum2_ = 0;
  std::int64_t count_ = 0;
};

// Perplexity exp(mean NLL) with its standard error: d exp(m) = exp(m) dm, so the error of the
// mean NLL scales by the perplexity itself.
Estimate perplexity_estimate(const RunningStats& nll);

struct MeanStdev {
  double mean = 0;
  double stdev = 0;  // sample standard deviation (n - 1); 0 when fewer than two samples
};

// Mean and spread of a few samples (benchmark repetitions), two-pass so that close values keep
// their digits. {0, 0} for an empty vector.
MeanStdev mean_stdev(const std::vector<double>& samples);

// Linear interpolation between the closest ranks of `sorted` (ascending) at fraction q in [0,1]
// (numpy's default). 0 for an empty vector.
double percentile(const std::vector<double>& sorted, double q);

// Pearson correlation of two equally long series; 0 when either is constant.
double correlation(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace kiln::eval
