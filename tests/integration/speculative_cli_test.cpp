// --draft through the kiln binary: run with a draft prints the target's own greedy text and the
// draft's acceptance; bench --draft reports identical output; serve answers the same completion
// with and without a draft and counts drafted tokens in /metrics; a draft with another
// vocabulary is refused in one line by every command before any work starts.
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "kiln_server.h"
#include "test_support.h"

namespace kiln {
namespace {

using test::expect_clean_error;
using test::run_kiln;

std::string default_model() { return std::string(std::getenv("KILN_SOURCE_DIR")) + "/models/kiln-default.gguf"; }

TEST(SpeculativeCli, RunWithADraftPrintsTheTargetsOwnText) {
  if (!std::getenv("KILN_SOURCE_DIR")) GTEST_SKIP() << "KILN_SOURCE_DIR is not set (run through ctest)";
  const std::string m = default_model();
  const std::string base = "run " + m + " -p 'The prince' -n 40 --temp 0 --ignore-eos -t 2";
  const test::KilnRun plain = run_kiln(base + " -q", false);
  const test::KilnRun spec = run_kiln(base + " -q --draft " + m + " --draft-max 5", false);
  ASSERT_EQ(plain.code, 0) << plain.out;
  ASSERT_EQ(spec.code, 0) << spec.out;
  EXPECT_EQ(spec.out, plain.out);
  const test::KilnRun timed = run_kiln(base + " --draft " + m);
  EXPECT_NE(timed.out.find("kiln run: draft accepted"), std::string::npos) << timed.out;
}

TEST(SpeculativeCli, BenchReportsSpeedAndAcceptance) {
  if (!std::getenv("KILN_SOURCE_DIR")) GTEST_SKIP() << "KILN_SOURCE_DIR is not set (run through ctest)";
  const std::string m = default_model();
  const test::KilnRun r = run_kiln("bench " + m + " --draft " + m + " -n 24 -r 1 -t 2 --json --progress none", false);
  ASSERT_EQ(r.code, 0) << r.out;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j.at("identical").get<bool>());
  EXPECT_GT(j.at("drafted").get<int>(), 0);
  EXPECT_GT(j.at("acceptance_rate").get<double>(), 0.9);  // the model as its own draft
  EXPECT_GT(j.at("speculative_tok_s_mean").get<double>(), 0.0);
}

TEST(SpeculativeCli, ADraftWithAnotherTokenizerIsRefused) {
  if (!std::getenv("KILN_SOURCE_DIR")) GTEST_SKIP() << "KILN_SOURCE_DIR is not set (run through ctest)";
  KILN_REQUIRE_DATA(other, "llama-2-tiny-random.gguf");
  const std::string m = default_model();
  const std::string why = "the draft model cannot draft for this target";
  expect_clean_error(run_kiln("run " + m + " -p hi -n 4 --draft " + other), why);
  expect_clean_error(run_kiln("bench " + m + " -n 4 --draft " + other), why);
  expect_clean_error(run_kiln("chat " + m + " --draft " + other + " </dev/null"), why);
  expect_clean_error(run_kiln("serve " + m + " --port 0 --draft " + other), why);
  expect_clean_error(run_kiln("run " + m + " -p hi --draft " + m + " --draft-min 5 --draft-max 2"), "draft-min = 5");
}

TEST(SpeculativeCli, ServeAnswersTheSameWithADraftAndCountsIt) {
  if (!std::getenv("KILN_SOURCE_DIR")) GTEST_SKIP() << "KILN_SOURCE_DIR is not set (run through ctest)";
  const std::string m = default_model();
  const nlohmann::json body = {{"model", "kiln-default"}, {"prompt", "The prince"}, {"max_tokens", 30}, {"temperature", 0}, {"ignore_eos", true}};
  std::string plain_text;
  {
    test::KilnServer server(m, {});
    const test::Reply r = test::post(server.port(), "/v1/completions", body);
    ASSERT_EQ(r.status, 200) << r.raw;
    plain_text = r.body["choices"][0]["text"].get<std::string>();
  }
  test::KilnServer server(m, {"--draft", m, "--draft-max", "4"});
  const test::Reply r = test::post(server.port(), "/v1/completions", body);
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["choices"][0]["text"].get<std::string>(), plain_text);
  const test::Reply metrics = test::request(server.port(), "GET", "/metrics");
  const std::size_t at = metrics.raw.find("kiln_spec_decode_draft_tokens_total{");
  ASSERT_NE(at, std::string::npos) << metrics.raw;
  const std::size_t value = metrics.raw.find("} ", at);
  EXPECT_GT(std::stod(metrics.raw.substr(value + 2)), 0.0);
  EXPECT_NE(metrics.raw.find("kiln_spec_decode_accepted_tokens_total{"), std::string::npos);
}

}  // namespace
}  // namespace kiln
