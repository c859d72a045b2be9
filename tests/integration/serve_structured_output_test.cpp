// Structured outputs through `kiln serve` on a model with random weights (so that only the
// grammar makes an answer valid): the official openai client's response_format, llama-server's
// grammar and json_schema fields and vLLM's guided_* fields over raw HTTP, and bad input (an
// invalid schema or grammar, two constraints at once, a grammar that cannot finish within
// max_tokens): 400 naming the field, or finish_reason length, never a hang.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <regex>

#include "../serve/http_test_client.h"
#include "kiln_server.h"
#include "test_support.h"

namespace kiln {
namespace {

using json = nlohmann::json;
using test::KilnServer;
using test::post;
using test::Reply;

constexpr const char* kModel = "llama-2-tiny-random";

json completion(const json& extra) {
  json b = {{"model", kModel}, {"prompt", "Answer:"}, {"max_tokens", 200}, {"temperature", 1.0}, {"seed", 5}};
  b.update(extra);
  return b;
}

TEST(ServeStructuredOutput, OfficialOpenAiClient) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  const char* src = std::getenv("KILN_SOURCE_DIR");
  if (src == nullptr || !std::ifstream(std::string(src) + "/node_modules/openai/package.json"))
    GTEST_SKIP() << "the openai npm package is not installed (npm ci in the source folder)";
  KilnServer server(model_path, {});
  ASSERT_GT(server.port(), 0) << server.log();
  std::string out;
  const int code = test::run_command(
      "node " + std::string(src) + "/tests/integration/serve_structured_output_client.mjs " + server.url() + " " + kModel, &out, true);
  EXPECT_EQ(code, 0) << out << "\n" << server.log();
}

TEST(ServeStructuredOutput, LlamaServerAndVllmFields) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KilnServer server(model_path, {});
  ASSERT_GT(server.port(), 0) << server.log();
  const int port = server.port();

  Reply r = post(port, "/v1/completions", completion({{"grammar", "root ::= (\"yes\" | \"no\") \"!\"{1,3}"}}));
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_TRUE(std::regex_match(r.body["choices"][0]["text"].get<std::string>(), std::regex("(yes|no)!{1,3}"))) << r.raw;
  EXPECT_EQ(r.body["choices"][0]["finish_reason"], "stop");

  r = post(port, "/v1/completions",
           completion({{"json_schema", {{"type", "array"}, {"items", {{"type", "integer"}, {"minimum", -5}, {"maximum", 5}}}, {"minItems", 1}, {"maxItems", 4}}}}));
  ASSERT_EQ(r.status, 200) << r.raw;
  const json v = json::parse(r.body["choices"][0]["text"].get<std::string>());
  ASSERT_TRUE(v.is_array());
  EXPECT_GE(v.size(), 1u);
  EXPECT_LE(v.size(), 4u);
  for (const json& x : v) EXPECT_TRUE(x.is_number_integer() && x.get<int>() >= -5 && x.get<int>() <= 5) << v;

  r = post(port, "/v1/completions", completion({{"guided_choice", {"red", "green", "blue"}}, {"n", 3}}));
  ASSERT_EQ(r.status, 200) << r.raw;
  for (const json& c : r.body["choices"]) EXPECT_TRUE(c["text"] == "red" || c["text"] == "green" || c["text"] == "blue") << r.raw;

  r = post(port, "/v1/completions", completion({{"guided_regex", "[A-Z]{2}-[0-9]{3}"}}));
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_TRUE(std::regex_match(r.body["choices"][0]["text"].get<std::string>(), std::regex("[A-Z]{2}-[0-9]{3}"))) << r.raw;

  // Streamed: the deltas join into a valid answer; logprobs stay finite.
  r = post(port, "/v1/chat/completions",
           {{"model", kModel}, {"messages", {{{"role", "user"}, {"content", "?"}}}}, {"stream", true}, {"logprobs", true},
            {"top_logprobs", 3}, {"guided_json", {{"type", "object"}, {"properties", {{"ok", {{"type", "boolean"}}}}}, {"required", {"ok"}}}}});
  ASSERT_EQ(r.status, 200) << r.raw;
  std::string text;
  std::istringstream in(r.raw);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("data: {", 0) != 0) continue;
    const json ev = json::parse(line.substr(6));
    for (const json& c : ev["choices"]) {
      if (c["delta"].contains("content") && c["delta"]["content"].is_string()) text += c["delta"]["content"].get<std::string>();
      if (c.contains("logprobs") && c["logprobs"].is_object())
        for (const json& t : c["logprobs"]["content"]) {
          EXPECT_TRUE(t["logprob"].is_number()) << line;
          for (const json& alt : t["top_logprobs"]) EXPECT_TRUE(alt["logprob"].is_number()) << line;
        }
    }
  }
  const json ok = json::parse(text);
  EXPECT_TRUE(ok["ok"].is_boolean()) << text;
}

TEST(ServeStructuredOutput, BadConstraintsAre400OrLengthNeverAHang) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KilnServer server(model_path, {});
  ASSERT_GT(server.port(), 0) << server.log();
  const int port = server.port();
  const std::string curl = "curl -s -m 60 -o /dev/stdout -w '\\n%{http_code}' -H 'Content-Type: application/json' " + server.url();
  struct Case {
    json body;
    std::string param, needle;
  };
  const std::vector<Case> cases = {
      {completion({{"grammar", "root ::= \"a\" missing"}}), "grammar", "undefined rule missing"},
      {completion({{"grammar", "root ::= root \"a\" | \"b\""}}), "grammar", "left-recursive"},
      {completion({{"json_schema", {{"type", "string"}, {"format", "ipv4"}}}}), "json_schema", "format \\\"ipv4\\\" is not supported"},
      {completion({{"guided_json", "{\"type\": \"object\", \"properties\": {\"a\": {\"if\": {}}}}"}}), "guided_json", "at /properties/a: if is not supported"},
      {completion({{"grammar", "root ::= \"a\""}, {"guided_choice", {"b"}}}), "guided_choice", "only one output constraint"},
      {completion({{"response_format", {{"type", "json_object"}}}, {"json_schema", {{"type", "null"}}}}), "json_schema", "only one output constraint"},
      {completion({{"response_format", {{"type", "yaml"}}}}), "response_format.type", "not one of"},
  };
  for (const Case& c : cases) {
    std::string out;
    const std::string file = test::temp_dir() + "/body.json";
    test::write_file(file, c.body.dump());
    test::run_command(curl + "/v1/completions --data-binary @" + file, &out);
    EXPECT_EQ(out.substr(out.rfind('\n') + 1), "400") << c.body.dump() << " -> " << out;
    EXPECT_NE(out.find("\"param\":\"" + c.param + "\""), std::string::npos) << out;
    EXPECT_NE(out.find(c.needle), std::string::npos) << out;
  }
  // A grammar longer than max_tokens: finish_reason length, with what it had so far.
  Reply r = post(port, "/v1/completions", completion({{"grammar", "root ::= \"ab\"{400}"}, {"max_tokens", 10}}));
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(r.body["usage"]["completion_tokens"], 10);
  // Unbounded but finishable: ends by max_tokens at the latest.
  r = post(port, "/v1/completions", completion({{"grammar", "root ::= [a-z ]+"}, {"max_tokens", 30}}));
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_TRUE(r.body["choices"][0]["finish_reason"] == "length" || r.body["choices"][0]["finish_reason"] == "stop");
}

}  // namespace
}  // namespace kiln
