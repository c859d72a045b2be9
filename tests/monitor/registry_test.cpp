// The metrics registry: recorded series found again by name and labels, handles that record
// nothing, Prometheus' naming rules enforced, collectors added and removed, values read back
// through Snapshot, and counts that stay exact under concurrent recording and collection.
#include "monitor/registry.h"

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/cpu_features.h"
#include "monitor/build_info.h"
#include "monitor/process_metrics.h"
#include "monitor/process_stats.h"
#include "monitor/snapshot.h"

namespace kiln::monitor {
namespace {

TEST(Registry, SeriesAreFoundAgainByNameAndLabels) {
  Registry r;
  Counter a = r.counter("t_requests_total", "Requests.", {{"model", "a"}});
  Counter a_again = r.counter("t_requests_total", "Requests.", {{"model", "a"}});
  Counter b = r.counter("t_requests_total", "Requests.", {{"model", "b"}});
  a.inc();
  a_again.inc(2);
  b.inc(5);
  EXPECT_EQ(a.value(), 3);
  EXPECT_EQ(b.value(), 5);
  Gauge g = r.gauge("t_running", "Running.");
  g.set(4);
  g.add(-1);
  EXPECT_EQ(g.value(), 3);

  const Snapshot s(r.collect());
  EXPECT_EQ(s.sum("t_requests_total"), 8);
  EXPECT_EQ(s.sum("t_requests_total", {{"model", "a"}}), 3);
  EXPECT_EQ(s.sum("t_requests_total", {{"model", "c"}}), 0);
  EXPECT_FALSE(s.has("t_requests_total", {{"model", "c"}}));
  EXPECT_EQ(s.sum("t_running"), 3);
  EXPECT_EQ(s.label_values("t_requests_total", "model"), (std::vector<std::string>{"a", "b"}));
}

TEST(Registry, HistogramBucketsHoldValuesUpToTheirBound) {
  Registry r;
  Histogram h = r.histogram("t_latency_seconds", "Latency.", {0.1, 1, 10});
  for (double v : {0.05, 0.1, 0.5, 1.0, 3.0, 100.0}) h.observe(v);
  const Families f = r.collect();
  ASSERT_EQ(f.size(), 1u);
  const prometheus::ClientMetric::Histogram& m = f[0].metric.at(0).histogram;
  EXPECT_EQ(m.sample_count, 6u);
  EXPECT_DOUBLE_EQ(m.sample_sum, 104.65);
  ASSERT_EQ(m.bucket.size(), 4u);  // 0.1, 1, 10, +Inf: cumulative, a value on a bound counts in it (le)
  EXPECT_EQ(m.bucket[0].cumulative_count, 2u);
  EXPECT_EQ(m.bucket[1].cumulative_count, 4u);
  EXPECT_EQ(m.bucket[2].cumulative_count, 5u);
  EXPECT_EQ(m.bucket[3].cumulative_count, 6u);
  const Snapshot s(f);
  EXPECT_EQ(s.histogram_count("t_latency_seconds"), 6);
  EXPECT_DOUBLE_EQ(s.histogram_sum("t_latency_seconds"), 104.65);
}

TEST(Registry, DefaultHandlesRecordNothing) {
  Counter c;
  Gauge g;
  Histogram h;
  c.inc();
  g.set(3);
  h.observe(1);
  EXPECT_EQ(c.value(), 0);
  EXPECT_EQ(g.value(), 0);
}

TEST(Registry, NamesFollowPrometheusRules) {
  Registry r;
  EXPECT_THROW(r.counter("t-bad-name", "x"), std::invalid_argument);
  EXPECT_THROW(r.counter("t_ok_total", "x", {{"bad-label", "v"}}), std::invalid_argument);
  r.counter("t_clash", "x");
  EXPECT_THROW(r.gauge("t_clash", "x"), std::invalid_argument);  // one name, one type
  EXPECT_THROW(r.histogram("t_h", "x", {1, 0.5}), std::invalid_argument);
  EXPECT_THROW(r.histogram("t_h", "x", {1, 1}), std::invalid_argument);
}

TEST(Registry, CollectorsRunAtEachCollectionUntilTheirHandleGoes) {
  Registry r;
  r.counter("t_b_recorded_total", "Recorded.").inc();
  int calls = 0;
  ScopedCollector first = r.add_collector([&](Collection& c) {
    ++calls;
    c.gauge("t_a_state", "State.", calls, {{"source", "first"}});
  });
  {
    ScopedCollector second = r.add_collector([](Collection& c) {
      c.gauge("t_a_state", "State.", 10, {{"source", "second"}});
    });
    const Families f = r.collect();
    // One family per name, sorted by name: two collectors' series of one name are merged.
    ASSERT_EQ(f.size(), 2u);
    EXPECT_EQ(f[0].name, "t_a_state");
    EXPECT_EQ(f[0].metric.size(), 2u);
    EXPECT_EQ(f[1].name, "t_b_recorded_total");
    EXPECT_EQ(Snapshot(r.collect()).sum("t_a_state"), 12);  // the first collector's second call
  }
  EXPECT_EQ(Snapshot(r.collect()).sum("t_a_state"), 3);
  ScopedCollector moved = std::move(first);
  EXPECT_EQ(Snapshot(r.collect()).sum("t_a_state"), 4);
  moved.reset();
  EXPECT_FALSE(Snapshot(r.collect()).has("t_a_state"));
  EXPECT_EQ(calls, 4);
}

TEST(Registry, CollectingTwoTypesUnderOneNameIsAnError) {
  Registry r;
  r.counter("t_x", "x").inc();
  ScopedCollector c = r.add_collector([](Collection& c) { c.gauge("t_x", "x", 1); });
  EXPECT_THROW(r.collect(), std::logic_error);
}

TEST(Registry, CountsStayExactUnderConcurrentRecordingAndCollection) {
  Registry r;
  Counter c = r.counter("t_events_total", "Events.");
  Histogram h = r.histogram("t_sizes", "Sizes.", {1, 2, 4});
  std::atomic<bool> stop{false};
  std::thread collector([&] {
    while (!stop) {
      const Families f = r.collect();
      for (const auto& fam : f)
        for (const auto& m : fam.metric)
          if (fam.type == prometheus::MetricType::Histogram) {
            // Buckets and count are taken together: the +Inf bucket always equals the count.
            EXPECT_EQ(m.histogram.bucket.back().cumulative_count, m.histogram.sample_count);
          }
    }
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < 3; ++t)
    writers.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        c.inc();
        h.observe(i % 5);
      }
    });
  for (auto& w : writers) w.join();
  stop = true;
  collector.join();
  const Snapshot s(r.collect());
  EXPECT_EQ(s.sum("t_events_total"), 60000);
  EXPECT_EQ(s.histogram_count("t_sizes"), 60000);
  EXPECT_EQ(s.histogram_sum("t_sizes"), 3 * 4000 * (0 + 1 + 2 + 3 + 4));
}

TEST(Registry, ProcessMetricsDescribeThisProcess) {
  // CPU time is counted in clock ticks (10 ms): spend a few first.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (process_times().cpu_seconds <= 0 && std::chrono::steady_clock::now() < until) {
  }
  Registry r;
  ScopedCollector p = add_process_metrics(r);
  const Snapshot s(r.collect());
  EXPECT_GT(s.sum("process_resident_memory_bytes"), 1e6);
  EXPECT_GE(s.sum("process_virtual_memory_bytes"), s.sum("process_resident_memory_bytes"));
  EXPECT_GT(s.sum("process_open_fds"), 2);
  EXPECT_GT(s.sum("process_max_fds"), s.sum("process_open_fds"));
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_LE(s.sum("process_start_time_seconds"), now + 1);
  EXPECT_GT(s.sum("process_start_time_seconds"), now - 3600);
  EXPECT_GT(s.sum("process_cpu_seconds_total"), 0);
}

TEST(Registry, BuildInfoNamesVersionCommitAndSimdLevel) {
  Registry r;
  ScopedCollector b = add_build_info(r);
  const Snapshot s(r.collect());
  EXPECT_EQ(
      s.sum("kiln_build_info", {{"version", build_version()}, {"simd", std::string(simd_level_name(simd_level()))}}),
      1);
  EXPECT_EQ(s.label_values("kiln_build_info", "git_sha"), std::vector<std::string>{build_git_sha()});
  EXPECT_FALSE(build_git_sha().empty());
}

}  // namespace
}  // namespace kiln::monitor
