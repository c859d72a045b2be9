#include "monitor/registry.h"

#include <prometheus/client_metric.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

#include <algorithm>
#include <stdexcept>
#include <utility>

namespace kiln::monitor {

namespace {

prometheus::ClientMetric client_metric(const Labels& labels) {
  prometheus::ClientMetric m;
  for (const auto& [name, value] : labels) m.label.push_back({name, value});
  return m;
}

}  // namespace

prometheus::MetricFamily& Collection::family(const std::string& name, const std::string& help,
                                             prometheus::MetricType type) {
  for (prometheus::MetricFamily& f : families_)
    if (f.name == name) return f;
  families_.push_back({name, help, type, {}});
  return families_.back();
}

void Collection::counter(const std::string& name, const std::string& help, double value, const Labels& labels) {
  prometheus::ClientMetric m = client_metric(labels);
  m.counter.value = value;
  family(name, help, prometheus::MetricType::Counter).metric.push_back(std::move(m));
}

void Collection::gauge(const std::string& name, const std::string& help, double value, const Labels& labels) {
  prometheus::ClientMetric m = client_metric(labels);
  m.gauge.value = value;
  family(name, help, prometheus::MetricType::Gauge).metric.push_back(std::move(m));
}

ScopedCollector::ScopedCollector(ScopedCollector&& other) noexcept
    : registry_(std::exchange(other.registry_, nullptr)), id_(other.id_) {}

ScopedCollector& ScopedCollector::operator=(ScopedCollector&& other) noexcept {
  if (this != &other) {
    reset();
    registry_ = std::exchange(other.registry_, nullptr);
    id_ = other.id_;
  }
  return *this;
}

void ScopedCollector::reset() {
  if (registry_ != nullptr) registry_->remove_collector(id_);
  registry_ = nullptr;
}

Registry::Registry() : recorded_(std::make_shared<prometheus::Registry>()) {}

Counter Registry::counter(const std::string& name, const std::string& help, const Labels& labels) {
  return Counter(&prometheus::BuildCounter().Name(name).Help(help).Register(*recorded_).Add(labels));
}

Gauge Registry::gauge(const std::string& name, const std::string& help, const Labels& labels) {
  return Gauge(&prometheus::BuildGauge().Name(name).Help(help).Register(*recorded_).Add(labels));
}

Histogram Registry::histogram(const std::string& name, const std::string& help, const std::vector<double>& buckets,
                              const Labels& labels) {
  if (!std::is_sorted(buckets.begin(), buckets.end()) ||
      std::adjacent_find(buckets.begin(), buckets.end()) != buckets.end())
    throw std::invalid_argument("histogram " + name + ": bucket bounds must increase");
  auto& family = prometheus::BuildHistogram().Name(name).Help(help).Register(*recorded_);
  return Histogram(&family.Add(labels, prometheus::Histogram::BucketBoundaries(buckets)));
}

ScopedCollector Registry::add_collector(Collector collector) {
  std::lock_guard lock(collectors_mu_);
  const std::uint64_t id = next_id_++;
  collectors_.emplace(id, std::move(collector));
  return ScopedCollector(this, id);
}

void Registry::remove_collector(std::uint64_t id) {
  std::lock_guard lock(collectors_mu_);
  collectors_.erase(id);
}

Families Registry::collect() const {
  Families all = recorded_->Collect();
  {
    std::lock_guard lock(collectors_mu_);
    for (const auto& [id, collector] : collectors_) {
      Collection c;
      collector(c);
      for (prometheus::MetricFamily& f : c.take()) all.push_back(std::move(f));
    }
  }
  // One family per name: two sources of the same name (two HTTP servers, say) are merged. A
  // family that no series belongs to is left out, as the text format has nothing to say for it.
  std::stable_sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  Families merged;
  for (prometheus::MetricFamily& f : all) {
    if (!merged.empty() && merged.back().name == f.name) {
      if (merged.back().type != f.type) throw std::logic_error("metric " + f.name + " is collected with two types");
      for (auto& m : f.metric) merged.back().metric.push_back(std::move(m));
    } else {
      merged.push_back(std::move(f));
    }
  }
  std::erase_if(merged, [](const prometheus::MetricFamily& f) { return f.metric.empty(); });
  // Series in label order: prometheus-cpp keeps them in a hash map, and a stable order makes the
  // page readable and two scrapes comparable.
  for (prometheus::MetricFamily& f : merged)
    std::stable_sort(
        f.metric.begin(), f.metric.end(),
        [](const prometheus::ClientMetric& a, const prometheus::ClientMetric& b) { return a.label < b.label; });
  return merged;
}

}  // namespace kiln::monitor
