// The text exposition format as /metrics writes it: HELP and TYPE lines, escaping of label values
// and help text, a histogram's buckets, sum and count; the whole checked by a strict reader of the
// format (exposition.h) and, where Prometheus is installed, by its own promtool.
#include "monitor/text_format.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "exposition.h"
#include "monitor/build_info.h"
#include "monitor/process_metrics.h"
#include "test_support.h"

namespace kiln::monitor {
namespace {

bool contains(const std::string& text, const std::string& line) { return text.find(line) != std::string::npos; }

TEST(TextFormat, CountersAndGaugesHaveHelpTypeAndValue) {
  Registry r;
  r.counter("t_requests_total", "Requests answered.", {{"model", "a"}, {"status", "200"}}).inc(3);
  r.gauge("t_running", "Running now.").set(2);
  const std::string text = to_text(r.collect());
  EXPECT_TRUE(contains(text,
                       "# HELP t_requests_total Requests answered.\n# TYPE t_requests_total counter\n"
                       "t_requests_total{model=\"a\",status=\"200\"} 3\n"))
      << text;
  EXPECT_TRUE(contains(text, "# HELP t_running Running now.\n# TYPE t_running gauge\nt_running 2\n")) << text;
  EXPECT_TRUE(test::parse_exposition(text).errors.empty());
}

TEST(TextFormat, LabelValuesAndHelpAreEscaped) {
  Registry r;
  // A model name can be any text a flag or a file name gave: backslash, quote and newline must
  // not end the label value or the line.
  r.counter("t_escaped_total", "Help with a \\ backslash\nand a newline.", {{"model", "a\\b \"q\"\nz"}}).inc();
  const std::string text = to_text(r.collect());
  EXPECT_TRUE(contains(text, "# HELP t_escaped_total Help with a \\\\ backslash\\nand a newline.\n")) << text;
  EXPECT_TRUE(contains(text, "t_escaped_total{model=\"a\\\\b \\\"q\\\"\\nz\"} 1\n")) << text;
  const test::Exposition e = test::parse_exposition(text);
  ASSERT_TRUE(e.errors.empty()) << e.errors.front();
  ASSERT_EQ(e.samples.size(), 1u);
  EXPECT_EQ(e.samples[0].labels.at("model"), "a\\b \"q\"\nz");  // read back exactly
}

TEST(TextFormat, HistogramsHaveCumulativeBucketsSumAndCount) {
  Registry r;
  Histogram h = r.histogram("t_latency_seconds", "Latency.", {0.005, 0.25, 1}, {{"model", "m"}});
  for (double v : {0.001, 0.2, 0.25, 7.5}) h.observe(v);
  const std::string text = to_text(r.collect());
  for (const char* line :
       {"# TYPE t_latency_seconds histogram\n", "t_latency_seconds_count{model=\"m\"} 4\n",
        "t_latency_seconds_sum{model=\"m\"} 7.951\n", "t_latency_seconds_bucket{model=\"m\",le=\"0.005\"} 1\n",
        "t_latency_seconds_bucket{model=\"m\",le=\"0.25\"} 3\n", "t_latency_seconds_bucket{model=\"m\",le=\"1\"} 3\n",
        "t_latency_seconds_bucket{model=\"m\",le=\"+Inf\"} 4\n"})
    EXPECT_TRUE(contains(text, line)) << line << " is not in\n" << text;
  const test::Exposition e = test::parse_exposition(text);
  EXPECT_TRUE(e.errors.empty()) << e.errors.front();
}

// A registry with every kind of series kiln writes, as kiln serve's has.
void record_samples(Registry& r) {
  r.counter("kiln_t_generated_tokens_total", "Tokens generated.", {{"model", "m"}}).inc(42);
  r.gauge("kiln_t_requests_running", "Running.", {{"model", "m"}}).set(1);
  r.histogram("kiln_t_time_to_first_token_seconds", "TTFT.", {0.01, 0.1, 1}, {{"model", "m"}}).observe(0.05);
}

TEST(TextFormat, ACompleteRegistryIsValid) {
  Registry r;
  record_samples(r);
  const ScopedCollector build = add_build_info(r);
  const ScopedCollector process = add_process_metrics(r);
  const std::string text = to_text(r.collect());
  const test::Exposition e = test::parse_exposition(text);
  EXPECT_TRUE(e.errors.empty()) << e.errors.front() << "\n" << text;
  EXPECT_EQ(e.sum("kiln_t_generated_tokens_total"), 42);
  EXPECT_EQ(e.sum("kiln_build_info"), 1);
  EXPECT_EQ(e.types.at("process_cpu_seconds_total"), "counter");
}

// promtool (Debian's prometheus package) checks the format and Prometheus' naming conventions
// (counters end in _total, units are base units, every metric has help).
TEST(TextFormat, PromtoolAcceptsTheExposition) {
  std::string out;
  if (test::run_command("command -v promtool", &out) != 0)
    GTEST_SKIP() << "promtool is not installed (scripts/install-deps.sh --test installs Debian's prometheus)";
  Registry r;
  record_samples(r);
  const ScopedCollector build = add_build_info(r);
  const ScopedCollector process = add_process_metrics(r);
  const std::string file = test::temp_dir() + "/metrics.txt";
  std::ofstream(file) << to_text(r.collect());
  const int code = test::run_command("promtool check metrics < " + file, &out, true);
  EXPECT_EQ(code, 0) << out;
}

}  // namespace
}  // namespace kiln::monitor
