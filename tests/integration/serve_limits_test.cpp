// `kiln serve` under heavy clients: prompts too long for the context are refused by their size
// before they are tokenized, large bodies do not delay small requests, /tokenize of a large text
// keeps the server's memory bounded and gives it back, one request cannot take a model's whole
// capacity, and a waiting request gets running slots while a request of many choices runs.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <regex>
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
using test::post;
using test::Reply;
using test::request;
using test::TestClient;

constexpr const char* kModel = "llama-2-tiny-random";

// A text of about `bytes` bytes of ordinary words.
std::string words(std::size_t bytes) {
  std::string s;
  s.reserve(bytes + 64);
  for (int i = 0; s.size() < bytes; ++i) s += "word" + std::to_string(i % 997) + " and more text, ";
  s.resize(bytes);
  return s;
}

// VmRSS or VmHWM of a process in MiB.
long memory_mib(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1)) / 1024;
  return -1;
}

TEST(ServeLimits, APromptTooLongForTheContextIsRefusedByItsSize) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KilnServer server(model_path, {});
  ASSERT_GT(server.port(), 0) << server.log();
  const std::string text = words(3 << 20);
  Reply r = post(server.port(), "/v1/completions", {{"model", kModel}, {"prompt", text}, {"max_tokens", 1}});
  EXPECT_EQ(r.status, 400) << r.raw.substr(0, 300);
  EXPECT_EQ(r.body["error"]["param"], "prompt");
  EXPECT_NE(r.body["error"]["message"].get<std::string>().find("bytes"), std::string::npos) << r.raw.substr(0, 300);
  Reply c = post(server.port(), "/v1/chat/completions",
                 {{"model", kModel}, {"messages", {{{"role", "user"}, {"content", text}}}}, {"max_tokens", 1}});
  EXPECT_EQ(c.status, 400) << c.raw.substr(0, 300);
  EXPECT_EQ(c.body["error"]["param"], "messages");
  EXPECT_NE(c.body["error"]["message"].get<std::string>().find("bytes"), std::string::npos) << c.raw.substr(0, 300);
  // A prompt that fits is still served.
  Reply ok = post(server.port(), "/v1/completions", {{"model", kModel}, {"prompt", words(2000)}, {"max_tokens", 2}});
  EXPECT_EQ(ok.status, 200) << ok.raw.substr(0, 300);
}

TEST(ServeLimits, LargeBodiesDoNotDelaySmallRequests) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KilnServer server(model_path, {});
  ASSERT_GT(server.port(), 0) << server.log();
  // Two large /tokenize requests (seconds of tokenizing each) take the API threads they are
  // given; a small completion sent after them must not wait for them: it is answered in a
  // fraction of their time (when it queued behind them, it took as long as they did).
  const std::string big = json{{"content", words(3500000)}, {"with_pieces", true}}.dump();
  using Clock = std::chrono::steady_clock;
  const Clock::time_point t0 = Clock::now();
  std::mutex mu;
  std::vector<double> large_seconds;
  std::vector<std::thread> large;
  for (int i = 0; i < 2; ++i) {
    large.emplace_back([&] {
      TestClient c(server.port());
      c.send(test::http_post("/tokenize", big));
      const test::ClientResponse r = c.read_response(120000);
      std::lock_guard lock(mu);
      large_seconds.push_back(r.status == 200 ? std::chrono::duration<double>(Clock::now() - t0).count() : -1);
    });
  }
  std::this_thread::sleep_for(300ms);  // both are being tokenized
  const Clock::time_point s0 = Clock::now();
  Reply small = post(server.port(), "/v1/completions", {{"model", kModel}, {"prompt", "Once upon"}, {"max_tokens", 2}});
  const double small_seconds = std::chrono::duration<double>(Clock::now() - s0).count();
  EXPECT_EQ(small.status, 200);
  for (auto& t : large) t.join();
  ASSERT_EQ(large_seconds.size(), 2u);
  const double first_large = std::min(large_seconds[0], large_seconds[1]);
  EXPECT_GT(first_large, 0) << "a large request failed";
  EXPECT_LT(small_seconds, 0.5 * (first_large - 0.3)) << "small " << small_seconds << " s, large " << first_large << " s";
}

TEST(ServeLimits, TokenizeOfALargeTextKeepsMemoryBoundedAndGivesItBack) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KilnServer server(model_path, {});
  ASSERT_GT(server.port(), 0) << server.log();
  const long start = memory_mib(server.pid(), "VmRSS");
  // A 4 MB text is about a million tokens; with their pieces, a JSON tree of them took about
  // 900 MB and the allocator kept most of it.
  Reply r = request(server.port(), "POST", "/tokenize", json{{"content", words(4000000)}, {"with_pieces", true}}.dump());
  ASSERT_EQ(r.status, 200);
  ASSERT_TRUE(r.body["tokens"].is_array());
  EXPECT_GT(r.body["tokens"].size(), 500000u);
  EXPECT_TRUE(r.body["tokens"][1]["piece"].is_string());
  const long peak = memory_mib(server.pid(), "VmHWM");
  const long after = memory_mib(server.pid(), "VmRSS");
  EXPECT_LT(peak, start + 250) << "peak " << peak << " MiB from " << start << " MiB";
  EXPECT_LT(after, start + 60) << "after " << after << " MiB from " << start << " MiB";
}

TEST(ServeLimits, OneRequestCannotTakeAModelsWholeCapacity) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KilnServer server(model_path, {});
  ASSERT_GT(server.port(), 0) << server.log();
  // 64 prompts x n=4 x 4000 tokens: a 1 KB body asking for a million tokens.
  json prompts = json::array();
  for (int i = 0; i < 64; ++i) prompts.push_back("Once upon a time " + std::to_string(i));
  Reply r = post(server.port(), "/v1/completions",
                 {{"model", kModel}, {"prompt", prompts}, {"n", 4}, {"max_tokens", 4000}, {"ignore_eos", true}});
  EXPECT_EQ(r.status, 400) << r.raw.substr(0, 300);
  EXPECT_EQ(r.body["error"]["code"], "too_many_tokens");
  EXPECT_EQ(r.body["error"]["param"], "max_tokens");
  EXPECT_NE(r.body["error"]["message"].get<std::string>().find("--max-request-tokens"), std::string::npos);
  // The flag sets the bound.
  KilnServer strict(model_path, {"--max-request-tokens", "100"});
  ASSERT_GT(strict.port(), 0) << strict.log();
  EXPECT_EQ(post(strict.port(), "/v1/completions", {{"model", kModel}, {"prompt", "Once"}, {"max_tokens", 90}}).status, 200);
  EXPECT_EQ(post(strict.port(), "/v1/completions", {{"model", kModel}, {"prompt", "Once"}, {"max_tokens", 50}, {"n", 2}}).status,
            400);
}

TEST(ServeLimits, AWaitingRequestIsServedWhileARequestOfManyChoicesRuns) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KilnServer server(model_path, {"--max-running", "2"});
  ASSERT_GT(server.port(), 0) << server.log();
  // Request A: 6 long streamed choices; with 2 slots, 4 of them wait. Request B arrives after
  // A started and must finish before any of A's choices does.
  TestClient a(server.port());
  a.send(test::http_post("/v1/completions", json{{"model", kModel},
                                                 {"prompt", "Request A"},
                                                 {"n", 6},
                                                 {"max_tokens", 3000},
                                                 {"ignore_eos", true},
                                                 {"stream", true}}
                                                .dump()));
  // Wait for A's first token, so that A is running when B arrives.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (a.pending().find("data: {") == std::string::npos && std::chrono::steady_clock::now() < until) a.fill_for(200);
  ASSERT_NE(a.pending().find("data: {"), std::string::npos) << "A never streamed a token";
  Reply b = post(server.port(), "/v1/completions",
                 {{"model", kModel}, {"prompt", "Request B"}, {"max_tokens", 4}, {"ignore_eos", true}});
  EXPECT_EQ(b.status, 200) << b.raw;
  // Fewer tokens than one of A's choices has in all: none of them can have finished. (Queued
  // behind A, B would have run after four of them: 12000 tokens.)
  const json s = test::request(server.port(), "GET", "/stats").body;
  EXPECT_LT(s["models"][0]["engine"]["generated_tokens_total"].get<int>(), 3000) << "B waited for choices of A to finish";
  // A still completes in full.
  const test::ClientResponse rest = a.read_response(120000);
  EXPECT_EQ(rest.status, 200);
  int finished = 0;
  for (std::size_t pos = 0; (pos = rest.body.find("\"finish_reason\":\"length\"", pos)) != std::string::npos; ++pos) ++finished;
  EXPECT_EQ(finished, 6);
  // No check that B preempted one of A's choices: when B arrives, A's second slot may still be
  // free (its next choice is admitted at the engine's next step), and B then takes it. The
  // fairness asserted above holds either way; engine_test covers the preemption itself.
}

TEST(ServeLimits, TheContextIsTheTrainedOneWithinTheKvBudgetAndSaidAtStartup) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  {
    KilnServer server(model_path, {});
    ASSERT_GT(server.port(), 0) << server.log();
    EXPECT_NE(server.log().find("context 4096 tokens (trained 4096), KV pool 16384 positions"), std::string::npos)
        << server.log();
  }
  // A KV budget of 64 KiB holds fewer positions than the trained context: the context shrinks
  // to fit (instead of the pool outgrowing the budget), and the log says so.
  KilnServer small(model_path, {"--kv-memory", "64K"});
  ASSERT_GT(small.port(), 0) << small.log();
  std::smatch m;
  const std::string log = small.log();
  ASSERT_TRUE(std::regex_search(log, m, std::regex("context ([0-9]+) tokens \\(trained 4096\\), KV pool ([0-9]+) positions")))
      << log;
  const int ctx = std::stoi(m[1]);
  EXPECT_LT(ctx, 4096);
  EXPECT_GE(ctx, 64);
  EXPECT_EQ(std::stoi(m[2]), ctx);
  Reply r = post(small.port(), "/v1/completions", {{"model", kModel}, {"prompt", words(ctx * 8)}, {"max_tokens", 1}});
  EXPECT_EQ(r.status, 400) << r.raw.substr(0, 300);
  EXPECT_EQ(post(small.port(), "/v1/completions", {{"model", kModel}, {"prompt", "Once"}, {"max_tokens", 4}}).status, 200);
}

}  // namespace
}  // namespace kiln
