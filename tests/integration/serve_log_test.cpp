// kiln serve --log-format json --log-file: completions and chats (plain and streamed), errors and
// a 404, then the file is renamed and SIGHUP sent (what logrotate does), more requests, SIGTERM.
// Every line of both files parses as JSON and carries the ECS fields; each request has exactly
// one line, in the file that was current when it was answered, whose id, status, tokens and
// finish reasons equal what its client got; the lifecycle events are there, in order.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kiln_server.h"
#include "test_support.h"

namespace kiln {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using test::KilnServer;
using test::Reply;

constexpr const char* kModel = "llama-2-tiny-random";
constexpr const char* kKey = "sk-metrics-test-0123456789";
constexpr const char* kKeyId = "9599f1b2";  // sha256 of kKey, first 8 hex digits (as serve_metrics_test)
constexpr const char* kAgent = "kiln-log-test/1.0";

// Every line of a log file, parsed; a line that is not one JSON object fails the test.
std::vector<json> read_json_lines(const std::string& path) {
  std::vector<json> out;
  const std::string text = KilnServer::read_file(path);
  EXPECT_TRUE(text.empty() || text.back() == '\n') << path << " ends in the middle of a line";
  std::istringstream in(text);
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    const json j = json::parse(line, nullptr, false);
    EXPECT_TRUE(j.is_object()) << path << ":" << n << " is not a JSON object: " << line;
    if (j.is_object()) out.push_back(j);
  }
  return out;
}

// What a client saw of one request, to compare with its log line.
struct Sent {
  std::string id, path, body;
  int status = 0;
  bool stream = false;
  json usage;                               // null when the answer has none
  std::vector<std::string> finish_reasons;  // in choice order
  std::string error_code;
  std::size_t response_bytes = 0;
  bool with_key = true;
};

Sent send(int port, const std::string& method, const std::string& path, const json& body, const std::string& id,
          bool with_key = true) {
  Sent s;
  s.id = id;
  s.path = path;
  s.body = body.is_null() ? "" : body.dump();
  s.stream = body.is_object() && body.value("stream", false);
  s.with_key = with_key;
  std::string headers = "X-Request-Id: " + id + "\r\nUser-Agent: " + kAgent + "\r\n";
  if (with_key) headers += std::string("Authorization: Bearer ") + kKey + "\r\n";
  const Reply r = test::request(port, method, path, s.body, headers);
  s.status = r.status;
  s.response_bytes = r.raw.size();
  EXPECT_EQ(r.headers.count("x-request-id") ? r.headers.at("x-request-id") : "", id) << r.raw;
  if (r.body.is_object() && r.body.contains("error")) s.error_code = r.body["error"].value("code", "");
  if (!s.stream) {
    if (r.body.is_object() && r.body.contains("usage")) s.usage = r.body["usage"];
    if (r.body.is_object() && r.body.contains("choices"))
      for (const json& c : r.body["choices"]) s.finish_reasons.push_back(c["finish_reason"]);
    return s;
  }
  std::map<int, std::string> reasons;
  std::istringstream in(r.raw);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("data: {", 0) != 0) continue;
    const json chunk = json::parse(line.substr(6));
    if (chunk.contains("usage") && chunk["usage"].is_object()) s.usage = chunk["usage"];
    for (const json& c : chunk["choices"])
      if (c["finish_reason"].is_string()) reasons[c["index"].get<int>()] = c["finish_reason"];
  }
  for (const auto& [index, reason] : reasons) s.finish_reasons.push_back(reason);
  return s;
}

json completion(bool stream) {
  json b = {{"model", kModel}, {"prompt", "Once upon a time"}, {"max_tokens", 5}, {"stream", stream}};
  if (stream) b["stream_options"] = {{"include_usage", true}};
  return b;
}
json chat(bool stream, int n = 1) {
  json b = {{"model", kModel},
            {"messages", json::array({{{"role", "user"}, {"content", "Hi there"}}})},
            {"max_tokens", 4},
            {"n", n},
            {"stream", stream}};
  if (stream) b["stream_options"] = {{"include_usage", true}};
  return b;
}

// Waits until every id has its request line in `path`.
bool wait_for_lines(const std::string& path, const std::vector<Sent>& sent) {
  for (int i = 0; i < 500; ++i) {
    std::set<std::string> logged;
    for (const json& j : read_json_lines(path))
      if (j.value("event.action", "") == "http-request") logged.insert(j.value("http.request.id", ""));
    bool all = true;
    for (const Sent& s : sent) all = all && logged.count(s.id) > 0;
    if (all) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

bool wait_for_action(const std::string& path, const std::string& action) {
  for (int i = 0; i < 500; ++i) {
    for (const json& j : read_json_lines(path))
      if (j.value("event.action", "") == action) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

void expect_request_line(const json& j, const Sent& s, pid_t pid) {
  SCOPED_TRACE(s.id + ": " + j.dump());
  EXPECT_EQ(j["event.category"], json::array({"web"}));
  EXPECT_EQ(j["http.request.method"], s.body.empty() ? "GET" : "POST");
  EXPECT_EQ(j["url.path"], s.path);
  EXPECT_EQ(j["url.original"], s.path);
  EXPECT_EQ(j["http.response.status_code"], s.status);
  EXPECT_EQ(j["event.outcome"], s.status < 400 ? "success" : "failure");
  EXPECT_EQ(j["client.address"], "127.0.0.1");
  EXPECT_EQ(j["client.ip"], "127.0.0.1");
  EXPECT_GT(j["client.port"].get<int>(), 0);
  EXPECT_EQ(j["user_agent.original"], kAgent);
  EXPECT_EQ(j["http.request.body.bytes"], s.body.size());
  EXPECT_EQ(j["http.response.body.bytes"], s.response_bytes);
  EXPECT_EQ(j["process.pid"], pid);
  ASSERT_TRUE(j["event.duration"].is_number_integer());
  EXPECT_GT(j["event.duration"].get<std::int64_t>(), 0);
  EXPECT_NEAR(j["kiln.timing.total_ms"].get<double>(), j["event.duration"].get<double>() / 1e6, 0.001);
  const std::string message = j["message"];
  EXPECT_NE(message.find(" id=" + s.id), std::string::npos);
  if (s.with_key && s.status != 401) {
    EXPECT_EQ(j["kiln.api_key_id"], kKeyId);
  } else {
    EXPECT_FALSE(j.contains("kiln.api_key_id"));
  }
  // The key itself is never written.
  EXPECT_EQ(j.dump().find(kKey), std::string::npos);
  if (!s.error_code.empty()) {
    EXPECT_EQ(j["error.code"], s.error_code);
    EXPECT_TRUE(j["error.type"].is_string());
    EXPECT_TRUE(j["error.message"].is_string());
  } else {
    EXPECT_FALSE(j.contains("error.code"));
  }
  if (s.usage.is_null()) {
    EXPECT_FALSE(j.contains("kiln.tokens.prompt"));
    return;
  }
  EXPECT_EQ(j["kiln.endpoint"], s.path);
  EXPECT_EQ(j["kiln.model"], kModel);
  EXPECT_EQ(j["kiln.stream"], s.stream);
  EXPECT_EQ(j["kiln.tokens.prompt"], s.usage["prompt_tokens"]);
  EXPECT_EQ(j["kiln.tokens.generated"], s.usage["completion_tokens"]);
  EXPECT_EQ(j["kiln.tokens.cached"], s.usage["prompt_tokens_details"]["cached_tokens"]);
  EXPECT_EQ(j["kiln.finish_reasons"], json(s.finish_reasons));
  for (const char* t :
       {"kiln.timing.queue_ms", "kiln.timing.prefill_ms", "kiln.timing.decode_ms", "kiln.timing.first_token_ms"})
    EXPECT_GE(j[t].get<double>(), 0) << t;
  EXPECT_GT(j["kiln.timing.prefill_ms"].get<double>(), 0);
  // The engine's part of the request is within the request's whole time.
  EXPECT_LE(j["kiln.timing.queue_ms"].get<double>() + j["kiln.timing.prefill_ms"].get<double>() +
                j["kiln.timing.decode_ms"].get<double>(),
            j["kiln.timing.total_ms"].get<double>() + 0.01);
}

TEST(ServeLog, JsonLinesCarryEveryRequestOnceAcrossARotation) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  const std::string path = test::temp_dir() + "/serve_log_" + std::to_string(::getpid()) + ".log";
  const std::string rotated = path + ".1";
  std::remove(path.c_str());
  std::remove(rotated.c_str());
  KilnServer server(model_path, {"--log-format", "json", "--log-file", path, "--api-key", kKey});
  ASSERT_GT(server.port(), 0) << KilnServer::read_file(path) << server.log();
  const int port = server.port();

  std::vector<Sent> before = {
      send(port, "POST", "/v1/completions", completion(false), "log-cmpl"),
      send(port, "POST", "/v1/chat/completions", chat(false, 2), "log-chat"),
      send(port, "POST", "/v1/completions", completion(true), "log-cmpl-stream"),
      send(port, "POST", "/v1/chat/completions", chat(true), "log-chat-stream"),
      send(port, "POST", "/v1/completions", json{{"model", "no-such-model"}, {"prompt", "x"}}, "log-bad-model"),
      send(port, "POST", "/v1/chat/completions", json{{"model", kModel}, {"messages", "not a list"}}, "log-bad-body"),
      send(port, "GET", "/no/such/path", nullptr, "log-404"),
      send(port, "GET", "/v1/models", nullptr, "log-no-key", false),
  };
  EXPECT_EQ(before[0].status, 200);
  EXPECT_EQ(before[1].status, 200);
  EXPECT_EQ(before[1].finish_reasons.size(), 2u);
  EXPECT_EQ(before[2].status, 200);
  EXPECT_EQ(before[3].status, 200);
  EXPECT_FALSE(before[2].usage.is_null());
  EXPECT_FALSE(before[3].usage.is_null());
  EXPECT_EQ(before[4].status, 404);
  EXPECT_EQ(before[4].error_code, "model_not_found");
  EXPECT_EQ(before[5].status, 400);
  EXPECT_EQ(before[6].status, 404);
  EXPECT_EQ(before[6].error_code, "not_found");
  EXPECT_EQ(before[7].status, 401);
  ASSERT_TRUE(wait_for_lines(path, before)) << KilnServer::read_file(path);

  // logrotate: rename, then SIGHUP; the server writes on in the renamed file until it reopens.
  ASSERT_EQ(std::rename(path.c_str(), rotated.c_str()), 0);
  ASSERT_EQ(::kill(server.pid(), SIGHUP), 0);
  ASSERT_TRUE(wait_for_action(path, "log-reopened")) << server.log();

  std::vector<Sent> after = {
      send(port, "POST", "/v1/completions", completion(false), "log-after-cmpl"),
      send(port, "POST", "/v1/chat/completions", chat(true), "log-after-chat-stream"),
  };
  EXPECT_EQ(after[0].status, 200);
  EXPECT_EQ(after[1].status, 200);
  ASSERT_TRUE(wait_for_lines(path, after)) << KilnServer::read_file(path);
  EXPECT_EQ(server.signal_and_wait(SIGTERM, 30s), 0) << server.log();

  const std::vector<json> old_lines = read_json_lines(rotated), new_lines = read_json_lines(path);
  ASSERT_FALSE(old_lines.empty());
  ASSERT_FALSE(new_lines.empty());
  EXPECT_EQ(server.log(), "") << "nothing goes to stderr with --log-file";

  // Every line: the ECS basics.
  const std::regex rfc3339(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)");
  for (const auto* lines : {&old_lines, &new_lines})
    for (const json& j : *lines) {
      SCOPED_TRACE(j.dump());
      ASSERT_TRUE(j["@timestamp"].is_string());
      EXPECT_TRUE(std::regex_match(j["@timestamp"].get<std::string>(), rfc3339));
      EXPECT_TRUE(j["log.level"] == "debug" || j["log.level"] == "info" || j["log.level"] == "warn" ||
                  j["log.level"] == "error");
      EXPECT_TRUE(j["message"].is_string());
      EXPECT_TRUE(j["ecs.version"].is_string());
      EXPECT_EQ(j["service.name"], "kiln");
      EXPECT_TRUE(j["service.version"].is_string());
      EXPECT_EQ(j["process.pid"], server.pid());
      EXPECT_EQ(j["event.kind"], "event");
      EXPECT_TRUE(j["event.action"].is_string());
    }

  // Each request exactly once, in the file that was current when it was answered.
  std::map<std::string, std::vector<json>> old_requests, new_requests;
  for (const json& j : old_lines)
    if (j["event.action"] == "http-request") old_requests[j["http.request.id"]].push_back(j);
  for (const json& j : new_lines)
    if (j["event.action"] == "http-request") new_requests[j["http.request.id"]].push_back(j);
  for (const Sent& s : before) {
    ASSERT_EQ(old_requests[s.id].size(), 1u) << s.id;
    EXPECT_EQ(new_requests.count(s.id), 0u) << s.id;
    expect_request_line(old_requests[s.id][0], s, server.pid());
  }
  for (const Sent& s : after) {
    ASSERT_EQ(new_requests[s.id].size(), 1u) << s.id;
    EXPECT_EQ(old_requests.count(s.id), 0u) << s.id;
    expect_request_line(new_requests[s.id][0], s, server.pid());
  }
  EXPECT_EQ(old_requests.size(), before.size());  // nothing else was asked
  EXPECT_EQ(new_requests.size(), after.size());

  // The lifecycle, in order.
  const auto actions = [](const std::vector<json>& lines) {
    std::vector<std::string> out;
    for (const json& j : lines)
      if (j["event.action"] != "http-request") out.push_back(j["event.action"]);
    return out;
  };
  EXPECT_EQ(actions(old_lines),
            (std::vector<std::string>{"server-listening", "model-loading", "model-loaded", "server-ready"}));
  EXPECT_EQ(actions(new_lines), (std::vector<std::string>{"log-reopened", "server-draining", "server-stopped"}));
  EXPECT_EQ(new_lines.front()["event.action"], "log-reopened");
  for (const json& j : old_lines) {
    if (j["event.action"] == "server-listening") {
      EXPECT_EQ(j["server.port"], port);
      EXPECT_EQ(j["kiln.models"], json::array({kModel}));
      EXPECT_EQ(j["kiln.api_key_required"], true);
    }
    if (j["event.action"] == "model-loaded") {
      EXPECT_EQ(j["kiln.model"], kModel);
      EXPECT_EQ(j["file.path"], model_path);
      EXPECT_GT(j["event.duration"].get<std::int64_t>(), 0);
      EXPECT_GT(j["kiln.context_tokens"].get<int>(), 0);
    }
  }
  EXPECT_EQ(new_lines.back()["event.outcome"], "success");
}

// A log file gets JSON unless told otherwise; --log-level debug adds answered probes, which
// info leaves out; a format or level kiln does not know is refused before anything starts.
TEST(ServeLog, LogFileDefaultsToJsonAndDebugAddsProbes) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  const std::string path = test::temp_dir() + "/serve_log_debug_" + std::to_string(::getpid()) + ".log";
  std::remove(path.c_str());
  KilnServer server(model_path, {"--log-file", path, "--log-level", "debug"});
  ASSERT_GT(server.port(), 0) << KilnServer::read_file(path) << server.log();
  const Reply r = test::request(server.port(), "GET", "/health", "", "X-Request-Id: log-probe\r\n");
  EXPECT_EQ(r.status, 200);
  ASSERT_TRUE(wait_for_lines(path, {Sent{"log-probe"}})) << KilnServer::read_file(path);
  EXPECT_EQ(server.signal_and_wait(SIGTERM, 30s), 0) << server.log();
  for (const json& j : read_json_lines(path)) {
    if (j["event.action"] == "http-request") {
      EXPECT_EQ(j["log.level"], "debug") << j.dump();
      EXPECT_EQ(j["kiln.endpoint"], "/health") << j.dump();
    }
  }

  for (const std::string& flags : {std::string("--log-format xml"), std::string("--log-level verbose"),
                                   "--log-file " + test::temp_dir() + "/no/such/dir/x.log"}) {
    std::string out;
    const int code = test::run_command(
        "timeout 20 " + test::kiln_binary() + " serve " + model_path + " --port 0 " + flags, &out, true);
    EXPECT_NE(code, 0) << flags << ": " << out;
    EXPECT_NE(out.find(flags.substr(0, flags.find(' '))), std::string::npos) << out;
  }
}

}  // namespace
}  // namespace kiln
