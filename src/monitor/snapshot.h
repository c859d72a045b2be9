#pragma once
// Reading values back out of one collection of a Registry, by name and labels: what /stats (a
// JSON view of the same registry as /metrics) and tests use.
#include <string>
#include <string_view>
#include <vector>

#include "monitor/registry.h"

namespace kiln::monitor {

class Snapshot {
 public:
  explicit Snapshot(Families families) : families_(std::move(families)) {}

  // The sum of the values of every counter or gauge series of `name` whose labels include all of
  // `match` (so {} sums the whole family); 0 when there is none.
  double sum(std::string_view name, const Labels& match = {}) const;
  // The sum of the observation counts (or of the observed values) of the matching histogram series.
  double histogram_count(std::string_view name, const Labels& match = {}) const;
  double histogram_sum(std::string_view name, const Labels& match = {}) const;
  bool has(std::string_view name, const Labels& match = {}) const;
  // The values label `label` takes among the series of `name`, in order of first appearance.
  std::vector<std::string> label_values(std::string_view name, const std::string& label) const;

  const Families& families() const { return families_; }

 private:
  template <typename F>
  void each(std::string_view name, const Labels& match, F&& f) const;

  Families families_;
};

}  // namespace kiln::monitor
