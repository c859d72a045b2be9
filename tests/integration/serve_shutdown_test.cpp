// `kiln serve` shut down (SIGTERM) while requests are still on the API threads, before any
// engine sees them: one tokenizing a long text, one rendering a long conversation with the chat
// template. Each request accepted before the signal must get its complete answer within the
// grace period and the server must exit 0, with no use of a model after it was unloaded (these
// tests also run against the ASan/UBSan build in scripts/test.sh, where such a use is a report).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "../serve/http_test_client.h"
#include "kiln_server.h"
#include "test_support.h"

namespace kiln {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using test::KilnServer;
using test::TestClient;

// Waits until the server has `n` requests in flight (the /stats request itself counts).
bool wait_in_flight(int port, int n) {
  for (int i = 0; i < 2000; ++i) {
    const test::Reply r = test::request(port, "GET", "/stats");
    if (r.status == 200 && r.body["http"]["requests_in_flight"].get<int>() >= n) return true;
    std::this_thread::sleep_for(5ms);
  }
  return false;
}

// About `bytes` of real prose (War and Peace, repeated).
std::string prose(std::size_t bytes) {
  const char* dir = std::getenv("KILN_DATA_DIR");
  std::ifstream in(std::string(dir ? dir : "") + "/war-and-peace.txt", std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string book = ss.str();
  std::string text;
  while (!book.empty() && text.size() < bytes) text += book;
  text.resize(std::min(text.size(), bytes));
  return text;
}

// The text is cut at arbitrary bytes, which may split a UTF-8 character: those become U+FFFD.
std::string as_body(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void expect_clean_log(const KilnServer& server) {
  const std::string log = server.log();
  EXPECT_EQ(log.find("AddressSanitizer"), std::string::npos) << log;
  EXPECT_EQ(log.find("runtime error"), std::string::npos) << log;
  EXPECT_EQ(log.find("internal error"), std::string::npos) << log;
}

TEST(ServeShutdown, SigtermDuringALongTokenizationAnswersItAndExitsZero) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KILN_REQUIRE_DATA(book, "war-and-peace.txt");
  KilnServer server(model_path, {"--grace-seconds", "120", "--max-body-bytes", "67108864"});
  ASSERT_GT(server.port(), 0) << server.log();
  // Long enough that tokenizing takes seconds (about 4 s in a Release build), more than the
  // fixed 2 s the server used to wait at shutdown; the answer (about 20 MB) is also larger than
  // the cap on a stream's unsent bytes, which must not apply to a whole answer.
  const std::string content = prose(16u << 20);
  TestClient c(server.port());
  ASSERT_TRUE(c.send(test::http_post("/tokenize", as_body(json{{"content", content}}))));
  ASSERT_TRUE(wait_in_flight(server.port(), 2)) << server.log();
  std::thread stopper([&] { EXPECT_EQ(server.signal_and_wait(SIGTERM, 180s), 0) << server.log(); });
  const test::ClientResponse r = c.read_response(180000);
  stopper.join();
  ASSERT_TRUE(r.ok) << server.log();
  EXPECT_EQ(r.status, 200) << r.body.substr(0, 500);
  const json body = json::parse(r.body, nullptr, false);
  ASSERT_TRUE(body.is_object()) << r.body.substr(0, 500);
  EXPECT_GT(body["tokens"].size(), content.size() / 8);
  expect_clean_log(server);
}

TEST(ServeShutdown, SigtermDuringALongTemplateRenderAnswersItAndExitsZero) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KILN_REQUIRE_DATA(book, "war-and-peace.txt");
  KilnServer server(model_path, {"--grace-seconds", "120", "--max-body-bytes", "67108864"});
  ASSERT_GT(server.port(), 0) << server.log();
  // The most turns a request may hold, each a paragraph: the template's loop renders about
  // 7 MB on an API thread before any engine sees the request.
  const std::string text = prose(4096u * 1700u);
  json messages = json::array();
  for (std::size_t i = 0; i < 4096; ++i)
    messages.push_back({{"role", i % 2 == 0 ? "user" : "assistant"}, {"content", text.substr(i * 1700, 1700)}});
  TestClient c(server.port());
  ASSERT_TRUE(c.send(test::http_post("/v1/chat/completions", as_body(json{{"model", "llama-2-tiny-random"}, {"messages", messages}, {"max_tokens", 1}}))));
  ASSERT_TRUE(wait_in_flight(server.port(), 2)) << server.log();
  std::thread stopper([&] { EXPECT_EQ(server.signal_and_wait(SIGTERM, 180s), 0) << server.log(); });
  const test::ClientResponse r = c.read_response(180000);
  stopper.join();
  ASSERT_TRUE(r.ok) << server.log();
  // The answer the request gets without a signal: the rendered conversation is longer than the
  // context (known from its size in bytes once rendered).
  const json body = json::parse(r.body, nullptr, false);
  ASSERT_TRUE(body.is_object()) << r.body.substr(0, 500);
  EXPECT_EQ(r.status, 400) << r.body.substr(0, 500);
  EXPECT_EQ(body["error"]["param"], "messages") << body.dump();
  EXPECT_NE(body.dump().find("tokens"), std::string::npos) << body.dump();
  expect_clean_log(server);
}

}  // namespace
}  // namespace kiln
