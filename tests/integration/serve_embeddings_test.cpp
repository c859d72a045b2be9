// kiln serve's /v1/embeddings end to end on kiln's default model: the official openai client
// (strings, arrays, token ids, float and base64, dimensions, typed 400s), the metrics it leaves,
// the same vectors as kiln embed, a request of more inputs than the queue holds, --pooling, and
// the flags refused at startup.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "kiln_server.h"
#include "test_support.h"

namespace kiln::test {
namespace {

constexpr const char* kModel = "kiln-default";

std::string default_model() {
  const char* src = std::getenv("KILN_SOURCE_DIR");
  return std::string(src ? src : ".") + "/models/kiln-default.gguf";
}

double cosine(const std::vector<double>& a, const std::vector<double>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) ab += a[i] * b[i], aa += a[i] * a[i], bb += b[i] * b[i];
  return ab / std::sqrt(aa * bb);
}

// The float vectors /v1/embeddings answers for `texts`.
std::vector<std::vector<double>> server_vectors(int port, const std::vector<std::string>& texts) {
  const Reply r = post(port, "/v1/embeddings", json{{"model", kModel}, {"input", texts}});
  EXPECT_EQ(r.status, 200) << r.raw;
  std::vector<std::vector<double>> out;
  for (const json& d : r.body["data"]) out.push_back(d["embedding"].get<std::vector<double>>());
  return out;
}

// kiln embed's vectors for `texts` with `flags`.
std::vector<std::vector<double>> cli_vectors(const std::vector<std::string>& texts, const std::string& flags) {
  std::string args = "embed " + shell_quote(default_model()) + " -q -t 1 " + flags;
  for (const std::string& t : texts) args += " " + shell_quote(t);
  const KilnRun r = run_kiln(args, false);
  EXPECT_EQ(r.code, 0) << r.out;
  std::vector<std::vector<double>> out;
  std::stringstream lines(r.out);
  for (std::string line; std::getline(lines, line);)
    out.push_back(json::parse(line)["embedding"].get<std::vector<double>>());
  return out;
}

// The value of a metric line that starts with `series`, or -1.
double metric(const std::string& page, const std::string& series) {
  std::stringstream lines(page);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  return -1;
}

TEST(ServeEmbeddings, OfficialOpenAiClient) {
  const char* src = std::getenv("KILN_SOURCE_DIR");
  if (src == nullptr || !std::ifstream(std::string(src) + "/node_modules/openai/package.json"))
    GTEST_SKIP() << "the openai npm package is not installed (npm ci in the source folder)";
  KilnServer server(default_model(), {"--api-key", "sk-kiln-test"});
  ASSERT_GT(server.port(), 0) << server.log();
  std::string out;
  const int code = run_command("node " + std::string(src) + "/tests/integration/serve_embeddings_client.mjs " +
                                   server.url() + " " + kModel + " sk-kiln-test",
                               &out, true);
  EXPECT_EQ(code, 0) << out << "\n" << server.log();
}

TEST(ServeEmbeddings, MetricsCountRequestsAndTokens) {
  KilnServer server(default_model(), {});
  ASSERT_GT(server.port(), 0) << server.log();
  const Reply ok = post(server.port(), "/v1/embeddings", json{{"model", kModel}, {"input", {{1, 2, 3}, {4, 5}}}});
  ASSERT_EQ(ok.status, 200) << ok.raw;
  EXPECT_EQ(ok.body["usage"]["prompt_tokens"], 5);
  // Refused after the model is known (a field the parser rejects is counted without a model).
  const Reply bad =
      post(server.port(), "/v1/embeddings", json{{"model", kModel}, {"input", "x"}, {"dimensions", 1000}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.body["error"]["param"], "dimensions");
  const std::string page = request(server.port(), "GET", "/metrics").raw;
  EXPECT_EQ(metric(page, "kiln_requests_total{endpoint=\"/v1/embeddings\",model=\"kiln-default\",status=\"200\"}"), 1)
      << page;
  EXPECT_EQ(metric(page, "kiln_requests_total{endpoint=\"/v1/embeddings\",model=\"kiln-default\",status=\"400\"}"), 1)
      << page;
  EXPECT_EQ(metric(page, "kiln_requests_accepted_total{model=\"kiln-default\"}"), 1) << page;
  EXPECT_EQ(metric(page, "kiln_requests_active{model=\"kiln-default\"}"), 0) << page;
  // The engine counts each input as a request and its tokens as prompt tokens.
  EXPECT_EQ(metric(page, "kiln_engine_requests_total{model=\"kiln-default\"}"), 2) << page;
  EXPECT_EQ(metric(page, "kiln_prompt_tokens_total{model=\"kiln-default\"}"), 5) << page;
  EXPECT_EQ(metric(page, "kiln_engine_requests_finished_total{model=\"kiln-default\",reason=\"stop\"}"), 2) << page;
  // Nothing is left in the KV cache: embeddings are not offered to the prefix cache.
  EXPECT_EQ(metric(page, "kiln_kv_cache_blocks_used{model=\"kiln-default\"}"), 0) << page;
}

TEST(ServeEmbeddings, SameVectorsAsKilnEmbed) {
  const std::vector<std::string> texts = {"Hello world", "It was in July, 1805, and Anna Pavlovna", "ROMEO:"};
  KilnServer server(default_model(), {});
  ASSERT_GT(server.port(), 0) << server.log();
  const auto served = server_vectors(server.port(), texts);
  const auto printed = cli_vectors(texts, "");
  ASSERT_EQ(served.size(), texts.size());
  ASSERT_EQ(printed.size(), texts.size());
  for (std::size_t i = 0; i < texts.size(); ++i) EXPECT_GT(cosine(served[i], printed[i]), 0.99999) << texts[i];
}

TEST(ServeEmbeddings, PoolingFlagIsUsed) {
  const std::vector<std::string> texts = {"Hello world", "Natasha looked at him"};
  KilnServer server(default_model(), {"--pooling", "last", "--embd-normalize", "-1"});
  ASSERT_GT(server.port(), 0) << server.log();
  const auto served = server_vectors(server.port(), texts);
  const auto last = cli_vectors(texts, "--pooling last --normalize -1");
  const auto mean = cli_vectors(texts, "--pooling mean --normalize -1");
  ASSERT_EQ(served.size(), texts.size());
  for (std::size_t i = 0; i < texts.size(); ++i) {
    EXPECT_GT(cosine(served[i], last[i]), 0.99999) << texts[i];
    EXPECT_LT(cosine(served[i], mean[i]), 0.999) << texts[i];
    // Not normalised: the length of the pooled hidden state itself.
    double n = 0;
    for (double x : served[i]) n += x * x;
    EXPECT_GT(std::sqrt(n), 2.0) << texts[i];
  }
}

TEST(ServeEmbeddings, MoreInputsThanTheQueueHoldsAreTakenWhole) {
  KilnServer server(default_model(), {"--max-queued", "4"});
  ASSERT_GT(server.port(), 0) << server.log();
  std::vector<std::string> texts;
  for (int i = 0; i < 40; ++i) texts.push_back("text number " + std::to_string(i));
  const Reply r = post(server.port(), "/v1/embeddings", json{{"model", kModel}, {"input", texts}});
  ASSERT_EQ(r.status, 200) << r.raw.substr(0, 300);
  ASSERT_EQ(r.body["data"].size(), 40u);
  for (std::size_t i = 0; i < 40; ++i) EXPECT_EQ(r.body["data"][i]["index"], i);
}

TEST(ServeEmbeddings, BadFlagsAreRefusedAtStartup) {
  expect_clean_error(run_kiln("serve " + shell_quote(default_model()) + " --port 0 --pooling none", true, 30),
                     "--pooling none gives a vector per token");
  expect_clean_error(run_kiln("serve " + shell_quote(default_model()) + " --port 0 --pooling rank", true, 30),
                     "--pooling");
  expect_clean_error(run_kiln("serve " + shell_quote(default_model()) + " --port 0 --embd-normalize -2", true, 30),
                     "--embd-normalize -2");
}

TEST(ServeEmbeddings, KilnEmbedRefusesBadInput) {
  expect_clean_error(run_kiln("embed " + shell_quote(default_model())), "nothing to embed");
  expect_clean_error(run_kiln("embed " + shell_quote(default_model()) + " --tokens 1,x"), "'x' is not a token id");
  expect_clean_error(run_kiln("embed " + shell_quote(default_model()) + " --tokens 1,99999"), "outside the vocabulary");
  expect_clean_error(run_kiln("embed " + shell_quote(default_model()) + " -f /nonexistent/file"), "cannot read");
  // Pooling none: one vector per token.
  const KilnRun r = run_kiln("embed " + shell_quote(default_model()) + " -q --pooling none --tokens 1,2,3", false);
  ASSERT_EQ(r.code, 0) << r.out;
  const json line = json::parse(r.out);
  EXPECT_EQ(line["tokens"], 3);
  ASSERT_EQ(line["embedding"].size(), 3u);
  EXPECT_EQ(line["embedding"][0].size(), 256u);
}

}  // namespace
}  // namespace kiln::test
