#pragma once
// kiln's metrics registry: one per process (kiln serve makes it; an engine without one makes its
// own), written by every layer above monitor and read by /metrics and /stats.
//
// Two kinds of series live in it:
//   - recorded series (counter(), gauge(), histogram()): stored in a prometheus-cpp registry,
//     updated through the handles of metrics.h where things happen;
//   - collected series: state that already lives elsewhere (a model registry's entries, the
//     process's memory, the HTTP server's connection counts) is read when the registry is
//     collected, by collectors added with add_collector(), instead of being copied on every change.
// collect() returns both, one family per name, sorted by name; text_format.h writes them out.
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "monitor/metrics.h"

namespace kiln::monitor {

using Families = std::vector<prometheus::MetricFamily>;

// What a collector fills: series read at collection time.
class Collection {
 public:
  void counter(const std::string& name, const std::string& help, double value, const Labels& labels = {});
  void gauge(const std::string& name, const std::string& help, double value, const Labels& labels = {});
  Families take() { return std::move(families_); }

 private:
  prometheus::MetricFamily& family(const std::string& name, const std::string& help, prometheus::MetricType type);
  Families families_;
};

using Collector = std::function<void(Collection&)>;

class Registry;

// Keeps a collector in its registry; removing it (destruction) waits for a collection that is
// calling it, so what the collector reads may be destroyed right after. Movable.
class ScopedCollector {
 public:
  ScopedCollector() = default;
  ScopedCollector(Registry* registry, std::uint64_t id) : registry_(registry), id_(id) {}
  ScopedCollector(ScopedCollector&& other) noexcept;
  ScopedCollector& operator=(ScopedCollector&& other) noexcept;
  ~ScopedCollector() { reset(); }
  void reset();

 private:
  Registry* registry_ = nullptr;
  std::uint64_t id_ = 0;
};

class Registry {
 public:
  Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // The series of `name` with `labels`, created at 0 on first use; later calls with the same
  // name and labels return the same series (the help of the first call stays). Names and label
  // names must follow Prometheus' rules, and one name has one type: else std::invalid_argument.
  // A lookup takes locks and hashes the labels: take handles once, not per event.
  Counter counter(const std::string& name, const std::string& help, const Labels& labels = {});
  Gauge gauge(const std::string& name, const std::string& help, const Labels& labels = {});
  // `buckets`: upper bounds, increasing (the +Inf bucket is implied). A series that exists keeps
  // the buckets it was made with.
  Histogram histogram(const std::string& name, const std::string& help, const std::vector<double>& buckets,
                      const Labels& labels = {});

  // Calls `collector` on every collect() until the returned handle goes. Collectors run one at a
  // time under the registry's lock: a collector must not add or remove collectors.
  [[nodiscard]] ScopedCollector add_collector(Collector collector);

  Families collect() const;

 private:
  friend class ScopedCollector;
  void remove_collector(std::uint64_t id);

  std::shared_ptr<prometheus::Registry> recorded_;
  mutable std::mutex collectors_mu_;
  std::map<std::uint64_t, Collector> collectors_;
  std::uint64_t next_id_ = 1;
};

}  // namespace kiln::monitor
