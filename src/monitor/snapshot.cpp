#include "monitor/snapshot.h"

#include <algorithm>

namespace kiln::monitor {

namespace {

bool matches(const prometheus::ClientMetric& m, const Labels& match) {
  // Not a structured binding: clang before 16 cannot capture one in a lambda.
  for (const auto& wanted : match) {
    const bool found = std::any_of(m.label.begin(), m.label.end(), [&](const prometheus::ClientMetric::Label& l) {
      return l.name == wanted.first && l.value == wanted.second;
    });
    if (!found) return false;
  }
  return true;
}

}  // namespace

template <typename F>
void Snapshot::each(std::string_view name, const Labels& match, F&& f) const {
  for (const prometheus::MetricFamily& family : families_) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& m : family.metric)
      if (matches(m, match)) f(family.type, m);
  }
}

double Snapshot::sum(std::string_view name, const Labels& match) const {
  double total = 0;
  each(name, match, [&](prometheus::MetricType type, const prometheus::ClientMetric& m) {
    if (type == prometheus::MetricType::Counter)
      total += m.counter.value;
    else if (type == prometheus::MetricType::Gauge)
      total += m.gauge.value;
  });
  return total;
}

double Snapshot::histogram_count(std::string_view name, const Labels& match) const {
  double total = 0;
  each(name, match, [&](prometheus::MetricType type, const prometheus::ClientMetric& m) {
    if (type == prometheus::MetricType::Histogram) total += static_cast<double>(m.histogram.sample_count);
  });
  return total;
}

double Snapshot::histogram_sum(std::string_view name, const Labels& match) const {
  double total = 0;
  each(name, match, [&](prometheus::MetricType type, const prometheus::ClientMetric& m) {
    if (type == prometheus::MetricType::Histogram) total += m.histogram.sample_sum;
  });
  return total;
}

bool Snapshot::has(std::string_view name, const Labels& match) const {
  bool found = false;
  each(name, match, [&](prometheus::MetricType, const prometheus::ClientMetric&) { found = true; });
  return found;
}

std::vector<std::string> Snapshot::label_values(std::string_view name, const std::string& label) const {
  std::vector<std::string> out;
  each(name, {}, [&](prometheus::MetricType, const prometheus::ClientMetric& m) {
    for (const auto& l : m.label)
      if (l.name == label && std::find(out.begin(), out.end(), l.value) == out.end()) out.push_back(l.value);
  });
  return out;
}

}  // namespace kiln::monitor
