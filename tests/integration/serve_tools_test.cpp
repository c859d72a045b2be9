// Tool calling, template control and /v1/responses through the official openai npm client
// (serve_tools_client.mjs) against `kiln serve` with a Hermes/Qwen2.5-style template file on the
// repository's default model; and the field policy's log line for unknown fields.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "../serve/http_test_client.h"
#include "kiln_server.h"
#include "test_support.h"

namespace kiln {
namespace {

using json = nlohmann::json;
using test::KilnServer;

std::string source_dir() {
  const char* src = std::getenv("KILN_SOURCE_DIR");
  return src ? src : "";
}

TEST(ServeTools, OfficialOpenAiClient) {
  const std::string src = source_dir();
  if (src.empty() || !std::ifstream(src + "/node_modules/openai/package.json"))
    GTEST_SKIP() << "the openai npm package is not installed (npm ci in the source folder)";
  KilnServer server(src + "/models/kiln-default.gguf",
                    {"--chat-template", src + "/tests/integration/serve_tools_template.jinja"});
  ASSERT_GT(server.port(), 0) << server.log();
  std::string out;
  const int code = test::run_command(
      "node " + src + "/tests/integration/serve_tools_client.mjs " + server.url() + " kiln-default", &out, true);
  EXPECT_EQ(code, 0) << out << "\n" << server.log();
}

TEST(ServeTools, UnknownFieldsAreAcceptedAndLoggedOnce) {
  const std::string src = source_dir();
  if (src.empty()) GTEST_SKIP() << "KILN_SOURCE_DIR is not set";
  KilnServer server(src + "/models/kiln-default.gguf", {});
  ASSERT_GT(server.port(), 0) << server.log();
  const json body = {{"model", "kiln-default"},
                     {"messages", {{{"role", "user"}, {"content", "hi"}}}},
                     {"max_tokens", 1},
                     {"frobnicate_level", 3}};
  for (int i = 0; i < 2; ++i) EXPECT_EQ(test::post(server.port(), "/v1/chat/completions", body).status, 200);
  json refused = body;
  refused["mirostat"] = 2;
  const test::Reply r = test::post(server.port(), "/v1/chat/completions", refused);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body["error"]["param"], "mirostat");
  // The model's own template does not read `tools`: they are described in a system message in
  // the generic call format instead, and only then.
  json tools_body = {{"messages", {{{"role", "user"}, {"content", "hi"}}}},
                     {"tools", {{{"type", "function"}, {"function", {{"name", "get_weather"}}}}}}};
  const test::Reply applied = test::post(server.port(), "/apply-template", tools_body);
  ASSERT_EQ(applied.status, 200) << applied.raw;
  const std::string prompt = applied.body["prompt"];
  EXPECT_NE(prompt.find("answer with only a JSON object {\"name\""), std::string::npos) << prompt;
  EXPECT_NE(prompt.find("{\"name\":\"get_weather\""), std::string::npos) << prompt;
  tools_body["tool_choice"] = "none";
  EXPECT_EQ(
      test::post(server.port(), "/apply-template", tools_body).body["prompt"].get<std::string>().find("get_weather"),
      std::string::npos);
  const std::string log = server.log();
  std::size_t n = 0;
  for (std::size_t at = 0; (at = log.find("'frobnicate_level'", at)) != std::string::npos; ++at) ++n;
  EXPECT_EQ(n, 1u) << log;
}

TEST(ServeTools, BadChatTemplateFlagFailsAtStartup) {
  const std::string src = source_dir();
  if (src.empty()) GTEST_SKIP() << "KILN_SOURCE_DIR is not set";
  std::string out;
  const int code = test::run_command(
      test::kiln_binary() + " serve " + src + "/models/kiln-default.gguf --port 0 --chat-template no-such-template",
      &out, true);
  EXPECT_NE(code, 0);
  EXPECT_NE(out.find("--chat-template 'no-such-template' is neither a built-in template"), std::string::npos) << out;
}

}  // namespace
}  // namespace kiln
