// `kiln serve` as a child process on a free port, driven by real clients over real sockets: the
// official openai npm client, curl for bad input and auth, and a plain socket client for
// concurrency, stop strings, overload, disconnects and SIGTERM drain. Model: the tiny random
// Llama 2 (real tokenizer, random weights, fast), so each test takes about a second.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
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
using test::send_raw;
using test::TestClient;

constexpr const char* kModel = "llama-2-tiny-random";

// Text of a completion request, non-streamed.
std::string complete_text(int port, const json& body) {
  Reply r = post(port, "/v1/completions", body);
  EXPECT_EQ(r.status, 200) << r.raw;
  return r.body["choices"][0]["text"];
}

// Events of an SSE body ("data: ..." lines).
std::vector<std::string> sse_data(const std::string& body) {
  std::vector<std::string> out;
  std::istringstream in(body);
  for (std::string line; std::getline(in, line);)
    if (line.rfind("data: ", 0) == 0) out.push_back(line.substr(6));
  return out;
}

json stats(int port) { return request(port, "GET", "/stats").body; }

#define REQUIRE_SERVER(server)                                                        \
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");                         \
  ASSERT_GT(server.port(), 0) << server.log()

TEST(ServeApi, OfficialOpenAiClient) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  const char* src = std::getenv("KILN_SOURCE_DIR");
  if (src == nullptr || !std::ifstream(std::string(src) + "/node_modules/openai/package.json"))
    GTEST_SKIP() << "the openai npm package is not installed (npm ci in the source folder)";
  KilnServer server(model_path, {"--api-key", "sk-kiln-test"});
  ASSERT_GT(server.port(), 0) << server.log();
  std::string out;
  const int code = test::run_command(
      "node " + std::string(src) + "/tests/integration/serve_openai_client.mjs " + server.url() + " " + kModel + " sk-kiln-test", &out, true);
  EXPECT_EQ(code, 0) << out << "\n" << server.log();
}

TEST(ServeApi, CurlBadInputGetsOpenAiErrors) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KilnServer server(model_path, {"--max-body-bytes", "20000"});
  ASSERT_GT(server.port(), 0) << server.log();
  const std::string curl = "curl -s -o /dev/stdout -w '\\n%{http_code}' -H 'Content-Type: application/json' " + server.url();
  struct Case {
    std::string args, status, needle;
  };
  const std::vector<Case> cases = {
      {"/v1/chat/completions -d '{\"model\":'", "400", "\"code\":\"invalid_json\""},
      {"/v1/chat/completions -d '[1,2]'", "400", "must be a JSON object"},
      {"/v1/chat/completions -d '{\"model\":\"llama-2-tiny-random\",\"messages\":\"hi\"}'", "400", "\"param\":\"messages\""},
      {"/v1/chat/completions -d '{\"model\":\"llama-2-tiny-random\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":\"hot\"}'",
       "400", "\"param\":\"temperature\""},
      {"/v1/completions -d '{\"model\":\"llama-2-tiny-random\",\"prompt\":\"x\",\"max_tokens\":-1}'", "400", "\"param\":\"max_tokens\""},
      {"/v1/completions -d '{\"model\":\"llama-2-tiny-random\",\"prompt\":[1,99999999]}'", "400", "outside the vocabulary"},
      {"/v1/completions -d '{\"model\":\"gpt-4\",\"prompt\":\"x\"}'", "404", "\"code\":\"model_not_found\""},
      {"/v1/nothing-here", "404", "\"error\""},
      {"/v1/completions", "405", "use POST"},
      {"/tokenize -d '{\"content\":5}'", "400", "\"param\":\"content\""},
      {"/detokenize -d '{\"tokens\":[1,-1]}'", "400", "\"param\":\"tokens[1]\""},
      // A number beyond double's range: 400 naming the field, not the parser's own message.
      {"/v1/completions -d '{\"model\":\"llama-2-tiny-random\",\"prompt\":\"x\",\"temperature\":1e400}'", "400",
       "\"param\":\"temperature\""},
  };
  for (const Case& c : cases) {
    std::string out;
    test::run_command(curl + c.args, &out);
    const std::string status = out.substr(out.rfind('\n') + 1);
    EXPECT_EQ(status, c.status) << c.args << " -> " << out;
    EXPECT_NE(out.find(c.needle), std::string::npos) << c.args << " -> " << out;
    EXPECT_NE(out.find("\"type\""), std::string::npos) << out;
    // No internal exception text reaches a client.
    EXPECT_EQ(out.find("[json.exception"), std::string::npos) << c.args << " -> " << out;
    EXPECT_EQ(out.find("internal error"), std::string::npos) << c.args << " -> " << out;
  }
  // A huge body: refused with 413 before it is read, and the server is fine afterwards.
  const std::string big = test::temp_dir() + "/big.json";
  std::ofstream(big) << "{\"model\":\"x\",\"prompt\":\"" << std::string(1 << 20, 'a') << "\"}";
  std::string out;
  test::run_command(curl + "/v1/completions --data-binary @" + big, &out);
  EXPECT_EQ(out.substr(out.rfind('\n') + 1), "413") << out.substr(0, 300);
  // Its code is a string, as every other error's.
  EXPECT_NE(out.find("\"code\":\"request_too_large\""), std::string::npos) << out.substr(0, 300);
  EXPECT_EQ(request(server.port(), "GET", "/health").status, 200);
}

// Load balancers and probes send HEAD: the head GET would send, without the body.
TEST(ServeApi, HeadOnHealthIsAnswered) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KilnServer server(model_path, {});
  ASSERT_GT(server.port(), 0) << server.log();
  const Reply get = request(server.port(), "GET", "/health");
  TestClient c(server.port());
  ASSERT_TRUE(c.send("HEAD /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
  const test::ClientResponse head = c.read_response(1000);  // waits for a body that must not come
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.headers.at("content-length"), get.headers.at("content-length"));
  EXPECT_TRUE(c.pending().empty());
  // The connection stays usable for the next request.
  ASSERT_TRUE(c.send(test::http_get("/health")));
  EXPECT_EQ(c.read_response().status, 200);
}

// CPU seconds a process has used (user + system), from /proc.
double cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2));
  std::string f;
  double ticks = 0;
  for (int i = 3; fields >> f; ++i)
    if (i == 14 || i == 15) ticks += std::stod(f);
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// A soft open-file limit below --max-connections (1024 is a common default): the cap and the
// probe reserve follow the limit, so a full connection table is handled by the server instead of
// accept() failing with EMFILE, retrying at once (100% CPU) and leaving every new client, /health
// included, without answer.
TEST(ServeApi, AFullFileTableIsAnsweredAndDoesNotSpin) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KilnServer server(model_path, {}, {"/usr/bin/prlimit", "--nofile=96:96", "--"});
  ASSERT_GT(server.port(), 0) << server.log();
  EXPECT_NE(server.log().find("connections: at most 28 and 4 more for /health and /ready (the open-file limit is 96"),
            std::string::npos)
      << server.log();
  std::vector<std::unique_ptr<TestClient>> idle;
  for (int i = 0; i < 150; ++i) idle.push_back(std::make_unique<TestClient>(server.port()));
  std::this_thread::sleep_for(500ms);
  // With the table full of connections that sent nothing, a new client takes the slot of the
  // one that waited longest and is answered, not left hanging...
  TestClient late(server.port());
  ASSERT_TRUE(late.send(test::http_get("/health")));
  const test::ClientResponse r = late.read_response(5000);
  EXPECT_EQ(r.status, 200) << server.log();
  // ...and the server does not spin while the table stays full: an idle server uses next to no
  // CPU; a retrying accept loop uses a whole core.
  const double before = cpu_seconds(server.pid());
  std::this_thread::sleep_for(2s);
  EXPECT_LT(cpu_seconds(server.pid()) - before, 0.5);
  // Once clients go, new ones are served again.
  idle.clear();
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(request(server.port(), "GET", "/health").status, 200);
}

// Slowloris: more connections than --max-connections, each sending a header line every half
// second and never finishing. Probes and real requests from the same address are still
// answered at once: a new connection takes the slot of the one that has waited longest.
TEST(ServeApi, TricklingClientsDoNotLockOutProbesOrRequests) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KilnServer server(model_path, {"--max-connections", "64"});
  ASSERT_GT(server.port(), 0) << server.log();
  test::Trickler slow(server.port(), 72, 500ms);
  std::this_thread::sleep_for(300ms);
  for (const char* path : {"/health", "/ready"}) {
    const auto t0 = std::chrono::steady_clock::now();
    TestClient c(server.port());
    ASSERT_TRUE(c.send(test::http_get(path)));
    const test::ClientResponse r = c.read_response(2000);
    EXPECT_EQ(r.status, 200) << path << "\n" << server.log();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s) << path;
  }
  const auto t0 = std::chrono::steady_clock::now();
  TestClient c(server.port());
  ASSERT_TRUE(c.send(test::http_post("/v1/completions", json{{"model", kModel}, {"prompt", "Once"}, {"max_tokens", 4}}.dump())));
  const test::ClientResponse r = c.read_response(2000);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  ASSERT_TRUE(c.send(test::http_get("/stats")));
  const json st = json::parse(c.read_response(2000).body, nullptr, false);
  EXPECT_GT(st["connections"]["evicted"].get<int>(), 0) << st.dump();
}

// X-Request-Id: the client's is echoed in a stream's head and ends the access log line; without
// one the server makes one up.
TEST(ServeApi, RequestIdIsEchoedInStreamsAndLogged) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KilnServer server(model_path, {});
  ASSERT_GT(server.port(), 0) << server.log();
  const json body = {{"model", kModel},
                     {"messages", json::array({{{"role", "user"}, {"content", "Hi"}}})},
                     {"max_tokens", 3},
                     {"stream", true}};
  const Reply r = request(server.port(), "POST", "/v1/chat/completions", body.dump(), "X-Request-Id: it-chat-42\r\n");
  EXPECT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.headers.at("content-type"), "text/event-stream");
  EXPECT_EQ(r.headers.at("x-request-id"), "it-chat-42");
  ASSERT_FALSE(sse_data(r.raw).empty()) << r.raw;
  EXPECT_EQ(sse_data(r.raw).back(), "[DONE]");
  const Reply plain = request(server.port(), "GET", "/health");
  EXPECT_TRUE(std::regex_match(plain.headers.at("x-request-id"), std::regex("[0-9a-f]{32}"))) << plain.headers.at("x-request-id");
  // The line is written once the last byte is out, just after the client has it.
  std::string line;
  for (int i = 0; i < 200 && line.empty(); ++i) {
    std::istringstream log(server.log());
    for (std::string l; std::getline(log, l);)
      if (l.find("\"POST /v1/chat/completions\" 200") != std::string::npos) line = l;
    if (line.empty()) std::this_thread::sleep_for(10ms);
  }
  ASSERT_FALSE(line.empty()) << server.log();
  EXPECT_EQ(line.substr(line.size() - 14), " id=it-chat-42") << line;
}

// A model file that is not a model (here a link to a text file of secrets): the client gets a
// 503 naming the model, never the file's path or bytes; the detail is in the server's log.
TEST(ServeApi, AModelThatFailsToLoadIsNamedNotQuoted) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  const std::string secret = test::temp_dir() + "/serve_secret_" + std::to_string(::getpid()) + ".txt";
  std::ofstream(secret) << "root:x:0:0:root:/root:/bin/bash\n" << std::string(4096, 'z');
  const std::string link = test::temp_dir() + "/serve_bad_" + std::to_string(::getpid()) + ".gguf";
  std::remove(link.c_str());
  ASSERT_EQ(::symlink(secret.c_str(), link.c_str()), 0);
  KilnServer server(model_path, {"--model", "bad=" + link, "--lazy"});
  ASSERT_GT(server.port(), 0) << server.log();
  for (int i = 0; i < 2; ++i) {
    const Reply r = post(server.port(), "/v1/completions", json{{"model", "bad"}, {"prompt", "x"}, {"max_tokens", 1}});
    EXPECT_EQ(r.status, 503) << r.raw;
    EXPECT_EQ(r.body["error"]["code"], "model_load_failed") << r.raw;
    EXPECT_NE(r.raw.find("'bad'"), std::string::npos) << r.raw;
    EXPECT_EQ(r.raw.find("root"), std::string::npos) << r.raw;
    EXPECT_EQ(r.raw.find(link), std::string::npos) << r.raw;
    EXPECT_EQ(r.headers.count("retry-after"), 1u) << r.raw;
  }
  // Read once: the second request came within the backoff.
  const std::string log = server.log();
  const auto first = log.find("loading model 'bad' failed");
  ASSERT_NE(first, std::string::npos) << log;
  EXPECT_EQ(log.find("loading model 'bad' failed", first + 1), std::string::npos) << log;
  const json st = request(server.port(), "GET", "/stats").body;
  EXPECT_EQ(st["models"][1]["failed_loads"], 1) << st.dump();
  EXPECT_EQ(st.dump().find("root"), std::string::npos) << st.dump();
  std::remove(link.c_str());
  std::remove(secret.c_str());
}

// An empty key would quietly serve without authentication: refused, as an empty key file is.
TEST(ServeApi, EmptyApiKeyIsAnError) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  std::string out;
  const int code = test::run_command("timeout 20 " + test::kiln_binary() + " serve " + model_path + " --port 0 --api-key ''", &out, true);
  EXPECT_NE(code, 0) << out;
  EXPECT_NE(out.find("--api-key is empty"), std::string::npos) << out;
}

TEST(ServeApi, ApiKeyIsRequiredExceptForProbes) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  const std::string key_file = test::temp_dir() + "/key.txt";
  std::ofstream(key_file) << "sk-secret\n";
  KilnServer server(model_path, {"--api-key-file", key_file});
  ASSERT_GT(server.port(), 0) << server.log();
  const std::string curl = "curl -s -o /dev/stdout -w '\\n%{http_code}' " + server.url();
  std::string out;
  test::run_command(curl + "/v1/models", &out);
  EXPECT_EQ(out.substr(out.rfind('\n') + 1), "401") << out;
  EXPECT_NE(out.find("invalid_api_key"), std::string::npos);
  test::run_command(curl + "/v1/models -H 'Authorization: Bearer sk-wrong'", &out);
  EXPECT_EQ(out.substr(out.rfind('\n') + 1), "401") << out;
  test::run_command(curl + "/v1/models -H 'Authorization: Bearer sk-secret'", &out);
  EXPECT_EQ(out.substr(out.rfind('\n') + 1), "200") << out;
  test::run_command(curl + "/health", &out);
  EXPECT_EQ(out.substr(out.rfind('\n') + 1), "200") << out;
  test::run_command(curl + "/ready", &out);
  EXPECT_EQ(out.substr(out.rfind('\n') + 1), "200") << out;
}

// A request with exactly these header lines ("Name: value\r\n" each; no Host unless given).
std::string raw_request(const std::string& method, const std::string& path, const std::string& header_lines,
                        const std::string& body = "") {
  const std::string length = method == "POST" ? "Content-Length: " + std::to_string(body.size()) + "\r\n" : "";
  return method + " " + path + " HTTP/1.1\r\n" + header_lines + length + "\r\n" + body;
}

std::string completion_body() { return json{{"model", kModel}, {"prompt", "Once"}, {"max_tokens", 2}}.dump(); }

// DNS rebinding: a page whose own name resolves to 127.0.0.1 is same-origin for the browser,
// but its requests carry that name in Host.
TEST(ServeApi, ForeignHostNamesAreRefused) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KilnServer server(model_path, {});
  ASSERT_GT(server.port(), 0) << server.log();
  const std::string port = std::to_string(server.port());
  Reply r = send_raw(server.port(), raw_request("POST", "/v1/completions",
                                                "Host: evil.example:" + port + "\r\nContent-Type: application/json\r\n",
                                                completion_body()));
  EXPECT_EQ(r.status, 403) << r.raw;
  EXPECT_EQ(r.body["error"]["code"], "host_not_allowed") << r.raw;
  EXPECT_NE(r.raw.find("--allowed-hosts evil.example"), std::string::npos) << r.raw;
  // The probes too: the Host check comes before anything else.
  r = send_raw(server.port(), raw_request("GET", "/health", "Host: evil.example\r\n"));
  EXPECT_EQ(r.status, 403) << r.raw;
  // HTTP/1.1 without Host is malformed (RFC 9112): 400.
  r = send_raw(server.port(), raw_request("GET", "/v1/models", ""));
  EXPECT_EQ(r.status, 400) << r.raw;
  EXPECT_EQ(r.body["error"]["code"], "invalid_host") << r.raw;
  // Names of this machine, with or without port, in any case, with a trailing dot.
  for (const std::string& host : std::vector<std::string>{"localhost:" + port, "127.0.0.1:" + port, "LOCALHOST.:" + port, "[::1]:" + port, "localhost"}) {
    r = send_raw(server.port(), raw_request("GET", "/v1/models", "Host: " + host + "\r\n"));
    EXPECT_EQ(r.status, 200) << host << ": " << r.raw;
  }
  r = send_raw(server.port(), raw_request("POST", "/v1/completions",
                                          "Host: 127.0.0.1:" + port + "\r\nContent-Type: application/json\r\n", completion_body()));
  EXPECT_EQ(r.status, 200) << r.raw;
  const json st = stats(server.port());
  EXPECT_EQ(st["requests"]["refused_host"], 3) << st.dump();
  EXPECT_EQ(st["requests"]["total"], 1) << st.dump();
}

// What a page on another site can send without a preflight: a POST with a text/plain (or form)
// body, from fetch or an HTML form. Refused before anything runs.
TEST(ServeApi, CrossSiteSimplePostsAreRefusedBeforeGenerating) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KilnServer server(model_path, {});
  ASSERT_GT(server.port(), 0) << server.log();
  const std::string host = "Host: 127.0.0.1:" + std::to_string(server.port()) + "\r\n";
  for (const std::string origin : {"https://evil.example", "null"}) {
    for (const std::string type : {"text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "application/json"}) {
      const Reply r = send_raw(server.port(), raw_request("POST", "/v1/completions",
                                                          host + "Origin: " + origin + "\r\nContent-Type: " + type + "\r\n",
                                                          completion_body()));
      EXPECT_EQ(r.status, 403) << origin << " " << type << ": " << r.raw;
      EXPECT_EQ(r.body["error"]["code"], "origin_not_allowed") << r.raw;
      EXPECT_NE(r.raw.find("--cors-origins"), std::string::npos) << r.raw;
      EXPECT_EQ(r.headers.count("access-control-allow-origin"), 0u) << r.raw;
    }
  }
  const json st = stats(server.port());
  EXPECT_EQ(st["requests"]["total"], 0) << st.dump();
  EXPECT_EQ(st["models"][0]["engine"]["requests_total"], 0) << st.dump();
  EXPECT_EQ(st["requests"]["refused_origin"], 6) << st.dump();
}

// Without Origin (curl, scripts): the body must still be declared JSON. `curl -d` sends
// application/x-www-form-urlencoded.
TEST(ServeApi, NonJsonContentTypesAre415) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KilnServer server(model_path, {});
  ASSERT_GT(server.port(), 0) << server.log();
  const std::string curl = "curl -s -o /dev/stdout -w '\\n%{http_code}' " + server.url();
  const std::string body = " -d '" + completion_body() + "'";
  for (const std::string& args : std::vector<std::string>{"/v1/completions" + body, "/v1/completions -H 'Content-Type: text/plain'" + body,
                                 "/tokenize -d '{\"content\":\"x\"}'", "/v1/chat/completions -F 'x=y'"}) {
    std::string out;
    test::run_command(curl + args, &out);
    EXPECT_EQ(out.substr(out.rfind('\n') + 1), "415") << args << " -> " << out;
    EXPECT_NE(out.find("\"code\":\"unsupported_media_type\""), std::string::npos) << out;
    EXPECT_NE(out.find("Content-Type: application/json"), std::string::npos) << out;
  }
  std::string out;
  test::run_command(curl + "/v1/completions -H 'Content-Type: application/json; charset=utf-8'" + body, &out);
  EXPECT_EQ(out.substr(out.rfind('\n') + 1), "200") << out;
  // No Content-Type at all is accepted: a browser cannot send that cross-site without Origin.
  const Reply r = send_raw(server.port(), raw_request("POST", "/v1/completions", "Host: localhost\r\n", completion_body()));
  EXPECT_EQ(r.status, 200) << r.raw;
  const json st = stats(server.port());
  EXPECT_EQ(st["requests"]["refused_content_type"], 4) << st.dump();
  EXPECT_EQ(st["requests"]["total"], 2) << st.dump();
}

// A web app on an origin given with --cors-origins: its preflight is answered without the API
// key, and every answer to it carries the CORS headers, errors and streams included.
TEST(ServeApi, AllowedOriginsGetCorsAnswers) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KilnServer server(model_path, {"--cors-origins", "https://app.example", "--api-key", "sk-cors"});
  ASSERT_GT(server.port(), 0) << server.log();
  const std::string host = "Host: 127.0.0.1:" + std::to_string(server.port()) + "\r\n";
  const std::string app = host + "Origin: https://app.example\r\n";
  Reply r = send_raw(server.port(),
                     raw_request("OPTIONS", "/v1/chat/completions",
                                 app + "Access-Control-Request-Method: POST\r\n"
                                       "Access-Control-Request-Headers: authorization,content-type,x-stainless-os,x-stainless-retry-count,x-other\r\n"));
  EXPECT_EQ(r.status, 204) << r.raw;
  EXPECT_EQ(r.headers["access-control-allow-origin"], "https://app.example");
  EXPECT_NE(r.headers["access-control-allow-methods"].find("POST"), std::string::npos);
  EXPECT_EQ(r.headers["access-control-allow-headers"], "authorization, content-type, x-stainless-os, x-stainless-retry-count");
  EXPECT_EQ(r.headers["access-control-max-age"], "600");
  EXPECT_EQ(r.headers["vary"], "Origin");
  // The request itself.
  const std::string key = "Authorization: Bearer sk-cors\r\n";
  const std::string json_type = "Content-Type: application/json\r\n";
  const std::string chat = json{{"model", kModel}, {"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"max_tokens", 2}}.dump();
  r = send_raw(server.port(), raw_request("POST", "/v1/chat/completions", app + key + json_type, chat));
  EXPECT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.headers["access-control-allow-origin"], "https://app.example");
  EXPECT_NE(r.headers["access-control-expose-headers"].find("Retry-After"), std::string::npos);
  json streamed = json::parse(chat);
  streamed["stream"] = true;
  r = send_raw(server.port(), raw_request("POST", "/v1/chat/completions", app + key + json_type, streamed.dump()));
  EXPECT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.headers["content-type"], "text/event-stream");
  EXPECT_EQ(r.headers["access-control-allow-origin"], "https://app.example");
  // Errors too, so that the page can read them: a wrong key, an unknown model.
  r = send_raw(server.port(), raw_request("POST", "/v1/chat/completions", app + json_type, chat));
  EXPECT_EQ(r.status, 401) << r.raw;
  EXPECT_EQ(r.headers["access-control-allow-origin"], "https://app.example");
  r = send_raw(server.port(), raw_request("GET", "/v1/models/nope", app + key));
  EXPECT_EQ(r.status, 404) << r.raw;
  EXPECT_EQ(r.headers["access-control-allow-origin"], "https://app.example");
  // Pages on this machine may call by default.
  r = send_raw(server.port(), raw_request("GET", "/v1/models", host + "Origin: http://localhost:3000\r\n" + key));
  EXPECT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.headers["access-control-allow-origin"], "http://localhost:3000");
  // Another origin: its preflight and its request are refused, with no CORS answer.
  const std::string evil = host + "Origin: https://evil.example\r\n";
  r = send_raw(server.port(), raw_request("OPTIONS", "/v1/chat/completions", evil + "Access-Control-Request-Method: POST\r\n"));
  EXPECT_EQ(r.status, 403) << r.raw;
  EXPECT_EQ(r.headers.count("access-control-allow-origin"), 0u);
  r = send_raw(server.port(), raw_request("POST", "/v1/chat/completions", evil + key + json_type, chat));
  EXPECT_EQ(r.status, 403) << r.raw;
  EXPECT_EQ(r.headers.count("access-control-allow-origin"), 0u);
}

TEST(ServeApi, AllowedHostsLetNamedHostsThrough) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KilnServer server(model_path, {"--host", "127.0.0.1", "--allowed-hosts", "kiln.internal,*.corp.example"});
  ASSERT_GT(server.port(), 0) << server.log();
  const std::string port = std::to_string(server.port());
  for (const std::string& host : std::vector<std::string>{"kiln.internal:" + port, "kiln.internal", "api.corp.example:" + port}) {
    const Reply r = send_raw(server.port(), raw_request("POST", "/v1/completions",
                                                        "Host: " + host + "\r\nContent-Type: application/json\r\n", completion_body()));
    EXPECT_EQ(r.status, 200) << host << ": " << r.raw;
  }
  for (const std::string& host : std::vector<std::string>{"other.internal:" + port, "corp.example"}) {
    const Reply r = send_raw(server.port(), raw_request("GET", "/v1/models", "Host: " + host + "\r\n"));
    EXPECT_EQ(r.status, 403) << host << ": " << r.raw;
  }
}

TEST(ServeApi, ConcurrentStreamsEqualTheSameRequestsAlone) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KilnServer server(model_path, {});
  ASSERT_GT(server.port(), 0) << server.log();
  const std::vector<std::string> prompts = {"Once upon a time", "The quick brown fox", "Hello", "In a galaxy far away",
                                            "Once upon a time there was", "1 2 3 4", "Lorem ipsum dolor", "The"};
  auto body = [&](std::size_t i, bool stream) {
    return json{{"model", kModel}, {"prompt", prompts[i]}, {"max_tokens", 40}, {"temperature", 0}, {"ignore_eos", true}, {"stream", stream}};
  };
  std::vector<std::string> alone;
  for (std::size_t i = 0; i < prompts.size(); ++i) alone.push_back(complete_text(server.port(), body(i, false)));
  std::vector<std::string> together(prompts.size());
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    threads.emplace_back([&, i] {
      Reply r = request(server.port(), "POST", "/v1/completions", body(i, true).dump());
      for (const std::string& d : sse_data(r.raw)) {
        if (d == "[DONE]") break;
        json j = json::parse(d);
        if (!j["choices"].empty()) together[i] += j["choices"][0]["text"].get<std::string>();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (std::size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(together[i], alone[i]) << prompts[i];
  EXPECT_GE(stats(server.port())["models"][0]["engine"]["requests_total"].get<int>(), 16);
}

TEST(ServeApi, StopStringAcrossTokenBoundaries) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KilnServer server(model_path, {});
  ASSERT_GT(server.port(), 0) << server.log();
  json body = {{"model", kModel}, {"prompt", "Once upon a time"}, {"max_tokens", 40}, {"temperature", 0}, {"ignore_eos", true}, {"logprobs", 0}};
  Reply full = post(server.port(), "/v1/completions", body);
  ASSERT_EQ(full.status, 200) << full.raw;
  const std::string text = full.body["choices"][0]["text"];
  const json tokens = full.body["choices"][0]["logprobs"]["tokens"];
  const json offsets = full.body["choices"][0]["logprobs"]["text_offset"];
  // A stop string made of the last byte of one ASCII token and the first of the next.
  std::string stop;
  std::size_t boundary = 0;
  for (std::size_t i = 2; i + 1 < tokens.size() && stop.empty(); ++i) {
    const std::string a = tokens[i], b = tokens[i + 1];
    auto ascii = [](const std::string& s) { return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c > ' ' && c < 127; }); };
    if (!ascii(a.substr(a.size() - 1)) || b.empty() || !ascii(b.substr(0, 1))) continue;
    boundary = offsets[i + 1].get<std::size_t>();
    const std::string candidate = a.substr(a.size() - 1) + b.substr(0, 1);
    if (text.find(candidate) == boundary - 1) stop = candidate;  // its first occurrence is at this boundary
  }
  ASSERT_FALSE(stop.empty()) << "no suitable token boundary in: " << text;
  body["stop"] = {stop, "never-appears"};
  for (bool stream : {false, true}) {
    body["stream"] = stream;
    Reply r = post(server.port(), "/v1/completions", body);
    std::string got, finish;
    if (!stream) {
      got = r.body["choices"][0]["text"];
      finish = r.body["choices"][0]["finish_reason"];
    } else {
      for (const std::string& d : sse_data(r.raw)) {
        if (d == "[DONE]") break;
        json j = json::parse(d);
        got += j["choices"][0]["text"].get<std::string>();
        if (j["choices"][0]["finish_reason"].is_string()) finish = j["choices"][0]["finish_reason"];
      }
    }
    EXPECT_EQ(got, text.substr(0, boundary - 1)) << "stop '" << stop << "' stream " << stream;
    EXPECT_EQ(finish, "stop");
  }
}

TEST(ServeApi, OverloadIs429WithRetryAfter) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KilnServer server(model_path, {"--max-running", "1", "--max-queued", "1"});
  ASSERT_GT(server.port(), 0) << server.log();
  std::atomic<int> ok{0}, refused{0}, other{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      Reply r = post(server.port(), "/v1/completions",
                     {{"model", kModel}, {"prompt", "Once"}, {"max_tokens", 1500}, {"ignore_eos", true}, {"temperature", 0}});
      if (r.status == 200) ok.fetch_add(1);
      else if (r.status == 429 && r.headers.count("retry-after") && r.body["error"]["type"] == "rate_limit_error") refused.fetch_add(1);
      else other.fetch_add(1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_GE(ok.load(), 1);
  EXPECT_GE(refused.load(), 1);
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(stats(server.port())["requests"]["rejected_queue_full"].get<int>(), refused.load());
}

TEST(ServeApi, DisconnectMidStreamFreesTheSlot) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KilnServer server(model_path, {"--ctx", "100000"});
  ASSERT_GT(server.port(), 0) << server.log();
  {
    TestClient c(server.port());
    c.send(test::http_post("/v1/completions", json{{"model", kModel}, {"prompt", "Once"}, {"max_tokens", 90000}, {"ignore_eos", true}, {"stream", true}}.dump()));
    ASSERT_TRUE(c.fill_for(5000));  // the stream has started
    // The engine's stats are a snapshot taken each step: wait for the sequence to show.
    json s;
    for (int i = 0; i < 200; ++i) {
      s = stats(server.port());
      if (s["models"][0]["engine"]["running"] == 1) break;
      std::this_thread::sleep_for(5ms);
    }
    EXPECT_EQ(s["models"][0]["engine"]["running"], 1) << s.dump();
    EXPECT_EQ(s["requests"]["active"], 1);
  }  // the client goes away
  const auto t0 = std::chrono::steady_clock::now();
  json s;
  while (std::chrono::steady_clock::now() - t0 < 1s) {
    s = stats(server.port());
    // The previous /stats request's connection may still be closing when this one counts.
    if (s["models"][0]["engine"]["running"] == 0 && s["models"][0]["engine"]["requests_cancelled"] == 1 &&
        s["requests"]["active"] == 0 && s["connections"]["open"] == 1)
      break;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(s["models"][0]["engine"]["running"], 0) << s.dump();
  EXPECT_EQ(s["models"][0]["engine"]["requests_cancelled"], 1) << s.dump();
  EXPECT_EQ(s["requests"]["cancelled_by_client"], 1);
  EXPECT_EQ(s["connections"]["open"], 1) << s.dump();  // the /stats request itself
}

TEST(ServeApi, SigtermDrainsInFlightRequestsAndExitsZero) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KilnServer server(model_path, {"--grace-seconds", "20"});
  ASSERT_GT(server.port(), 0) << server.log();
  TestClient c(server.port());
  c.send(test::http_post("/v1/completions", json{{"model", kModel}, {"prompt", "Once"}, {"max_tokens", 1500}, {"ignore_eos", true}, {"stream", true}}.dump()));
  ASSERT_TRUE(c.fill_for(5000));
  std::thread stopper([&] { EXPECT_EQ(server.signal_and_wait(SIGTERM, 30s), 0) << server.log(); });
  test::ClientResponse r = c.read_response(30000);
  stopper.join();
  ASSERT_TRUE(r.ok);
  const std::vector<std::string> events = sse_data(r.body);
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events.back(), "[DONE]");
  EXPECT_EQ(json::parse(events[events.size() - 2])["choices"][0]["finish_reason"], "length");
  EXPECT_NE(server.log().find("draining"), std::string::npos);
}

TEST(ServeApi, GraceExpiryCutsInFlightRequests) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KilnServer server(model_path, {"--grace-seconds", "0.2", "--ctx", "100000"});
  ASSERT_GT(server.port(), 0) << server.log();
  TestClient c(server.port());
  c.send(test::http_post("/v1/completions", json{{"model", kModel}, {"prompt", "Once"}, {"max_tokens", 90000}, {"ignore_eos", true}, {"stream", true}}.dump()));
  ASSERT_TRUE(c.fill_for(5000));
  EXPECT_EQ(server.signal_and_wait(SIGTERM, 10s), 0) << server.log();
  test::ClientResponse r = c.read_response(5000);
  EXPECT_TRUE(r.ok);
  EXPECT_NE(r.body.find("shutting down"), std::string::npos) << r.body.substr(r.body.size() > 500 ? r.body.size() - 500 : 0);
}

}  // namespace
}  // namespace kiln

namespace kiln {
namespace {

// logit_bias in OpenAI's shape and llama-server's pairs, through a real server: a bias of 100
// makes the greedy answer that token, false bans it, ids outside the vocabulary are a 400;
// typical_p is taken and checked.
TEST(ServeApi, LogitBiasAndTypicalPReachTheSampler) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KilnServer server(model_path, {});
  ASSERT_GT(server.port(), 0) << server.log();
  const auto text_of = [&](std::vector<int> ids) {
    Reply r = post(server.port(), "/detokenize", json{{"tokens", ids}});
    EXPECT_EQ(r.status, 200) << r.raw;
    return r.body["content"].get<std::string>();
  };
  const json greedy = {{"model", kModel}, {"prompt", "Once"}, {"max_tokens", 4}, {"temperature", 0}};
  json b = greedy;
  b["logit_bias"] = {{"1000", 100}};
  EXPECT_EQ(complete_text(server.port(), b), text_of({1000, 1000, 1000, 1000}));
  // Pairs add up: 1000 gets 100 and -inf (banned), so 1001's 99 wins.
  b["logit_bias"] = json::array({json::array({1000, 100}), json::array({1001, 99}), json::array({1000, false})});
  EXPECT_EQ(complete_text(server.port(), b), text_of({1001, 1001, 1001, 1001}));
  b["logit_bias"] = {{"32000", 1}};
  Reply r = post(server.port(), "/v1/completions", b);
  EXPECT_EQ(r.status, 400) << r.raw;
  EXPECT_EQ(r.body["error"]["param"], "logit_bias") << r.raw;
  EXPECT_NE(r.raw.find("outside the vocabulary (0..31999)"), std::string::npos) << r.raw;

  json t = {{"model", kModel}, {"prompt", "Once"}, {"max_tokens", 4}, {"typical_p", 0.5}, {"seed", 3}};
  EXPECT_EQ(complete_text(server.port(), t), complete_text(server.port(), t));  // seeded: the same answer
  t["typical_p"] = 1.5;
  r = post(server.port(), "/v1/completions", t);
  EXPECT_EQ(r.status, 400) << r.raw;
  EXPECT_EQ(r.body["error"]["param"], "typical_p") << r.raw;
}

}  // namespace
}  // namespace kiln
