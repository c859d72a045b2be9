// What kiln serve logs about a request and a model: the ECS fields of the per-request event
// (built from the access log entry and the API's note), its level and outcome, and the model
// events' actions and messages.
#include "serve/server_log.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "monitor/log_format.h"

namespace kiln::serve {
namespace {

using json = nlohmann::json;
using monitor::LogLevel;

json as_json(const monitor::LogEvent& e) {
  const std::string line = monitor::format_json_line(e, monitor::LogContext{});
  return json::parse(line.substr(0, line.size() - 1));
}

AccessLogEntry generation_entry() {
  AccessLogEntry e;
  e.remote = "10.1.2.3:40000";
  e.method = "POST";
  e.target = "/v1/chat/completions?trace=1";
  e.path = "/v1/chat/completions";
  e.request_id = "req-1";
  e.user_agent = "OpenAI/Python 1.0";
  e.status = 200;
  e.seconds = 0.25;
  e.request_body_bytes = 120;
  e.response_body_bytes = 900;
  RequestNote& n = e.note;
  n.endpoint = "/v1/chat/completions";
  n.model = "tiny";
  n.key_id = "0a1b2c3d";
  n.stream = true;
  n.prompt_tokens = 12;
  n.completion_tokens = 7;
  n.cached_tokens = 4;
  n.finish_reasons = {"stop", "length"};
  n.queue_s = 0.001;
  n.prefill_s = 0.0125;
  n.decode_s = 0.2;
  n.first_token_s = 0.0135;
  return e;
}

TEST(ServerLog, RequestEventCarriesEcsAndKilnFields) {
  const json j = as_json(request_log_event(generation_entry()));
  EXPECT_EQ(j["log.level"], "info");
  EXPECT_EQ(j["message"],
            "10.1.2.3:40000 \"POST /v1/chat/completions?trace=1\" 200 0.250s model=tiny tokens 12+7 id=req-1");
  EXPECT_EQ(j["event.action"], "http-request");
  EXPECT_EQ(j["event.category"], json::array({"web"}));
  EXPECT_EQ(j["event.type"], json::array({"access"}));
  EXPECT_EQ(j["event.outcome"], "success");
  EXPECT_EQ(j["event.duration"], 250000000);
  EXPECT_EQ(j["http.request.id"], "req-1");
  EXPECT_EQ(j["http.request.method"], "POST");
  EXPECT_EQ(j["http.version"], "1.1");
  EXPECT_EQ(j["url.original"], "/v1/chat/completions?trace=1");
  EXPECT_EQ(j["url.path"], "/v1/chat/completions");
  EXPECT_EQ(j["url.query"], "trace=1");
  EXPECT_EQ(j["http.response.status_code"], 200);
  EXPECT_EQ(j["http.request.body.bytes"], 120);
  EXPECT_EQ(j["http.response.body.bytes"], 900);
  EXPECT_EQ(j["client.address"], "10.1.2.3");
  EXPECT_EQ(j["client.ip"], "10.1.2.3");
  EXPECT_EQ(j["client.port"], 40000);
  EXPECT_EQ(j["user_agent.original"], "OpenAI/Python 1.0");
  EXPECT_EQ(j["kiln.endpoint"], "/v1/chat/completions");
  EXPECT_EQ(j["kiln.model"], "tiny");
  EXPECT_EQ(j["kiln.api_key_id"], "0a1b2c3d");
  EXPECT_EQ(j["kiln.stream"], true);
  EXPECT_EQ(j["kiln.client_closed"], false);
  EXPECT_EQ(j["kiln.tokens.prompt"], 12);
  EXPECT_EQ(j["kiln.tokens.generated"], 7);
  EXPECT_EQ(j["kiln.tokens.cached"], 4);
  EXPECT_EQ(j["kiln.finish_reasons"], json::array({"stop", "length"}));
  EXPECT_DOUBLE_EQ(j["kiln.timing.queue_ms"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(j["kiln.timing.prefill_ms"].get<double>(), 12.5);
  EXPECT_DOUBLE_EQ(j["kiln.timing.decode_ms"].get<double>(), 200.0);
  EXPECT_DOUBLE_EQ(j["kiln.timing.first_token_ms"].get<double>(), 13.5);
  EXPECT_DOUBLE_EQ(j["kiln.timing.total_ms"].get<double>(), 250.0);
  EXPECT_FALSE(j.contains("error.code"));
}

TEST(ServerLog, ErrorAnswerCarriesTheErrorAndNoGenerationFields) {
  AccessLogEntry e;
  e.remote = "::1:5555";
  e.method = "GET";
  e.target = "/nope";
  e.path = "/nope";
  e.request_id = "r2";
  e.status = 404;
  e.request_body_bytes = 0;
  e.response_body_bytes = 80;
  e.note.endpoint = "other";
  e.note.error_type = "invalid_request_error";
  e.note.error_code = "not_found";
  e.note.error_message = "no such endpoint: GET /nope";
  const json j = as_json(request_log_event(e));
  EXPECT_EQ(j["log.level"], "info");
  EXPECT_EQ(j["event.outcome"], "failure");
  EXPECT_EQ(j["client.ip"], "::1");
  EXPECT_EQ(j["client.port"], 5555);
  EXPECT_EQ(j["error.type"], "invalid_request_error");
  EXPECT_EQ(j["error.code"], "not_found");
  EXPECT_EQ(j["error.message"], "no such endpoint: GET /nope");
  EXPECT_EQ(j["kiln.endpoint"], "other");
  for (const char* key : {"kiln.model", "kiln.api_key_id", "kiln.tokens.prompt", "kiln.finish_reasons",
                          "kiln.timing.queue_ms", "url.query", "user_agent.original"})
    EXPECT_FALSE(j.contains(key)) << key;
}

TEST(ServerLog, LevelsFollowTheStatus) {
  AccessLogEntry e = generation_entry();
  EXPECT_EQ(request_log_level(e), LogLevel::info);
  e.status = 429;
  EXPECT_EQ(request_log_level(e), LogLevel::warn);
  e.status = 503;
  EXPECT_EQ(request_log_level(e), LogLevel::error);
  e.status = 404;
  EXPECT_EQ(request_log_level(e), LogLevel::info);
  // Answered probes and scrapes are debug; a failed one is not.
  for (const char* path : {"/health", "/ready", "/metrics"}) {
    e.path = path;
    e.status = 200;
    EXPECT_EQ(request_log_level(e), LogLevel::debug) << path;
    e.status = 503;
    EXPECT_EQ(request_log_level(e), LogLevel::error) << path;
  }
  e.path = "/stats";
  e.status = 200;
  EXPECT_EQ(request_log_level(e), LogLevel::info);
}

TEST(ServerLog, AClientThatLeftIsAFailureOrUnknown) {
  AccessLogEntry e = generation_entry();
  e.client_closed = true;
  json j = as_json(request_log_event(e));
  EXPECT_EQ(j["event.outcome"], "failure");
  EXPECT_EQ(j["kiln.client_closed"], true);
  EXPECT_NE(j["message"].get<std::string>().find(" (client closed) id=req-1"), std::string::npos) << j["message"];
  e.status = 0;  // gone before any answer
  j = as_json(request_log_event(e));
  EXPECT_EQ(j["event.outcome"], "unknown");
  EXPECT_FALSE(j.contains("http.response.status_code"));
}

TEST(ServerLog, ModelEventsHaveTheirActions) {
  ModelEvent m;
  m.name = "tiny";
  m.path = "/models/tiny.gguf";
  m.kind = ModelEvent::Kind::loading;
  json j = as_json(model_log_event(m));
  EXPECT_EQ(j["event.action"], "model-loading");
  EXPECT_EQ(j["kiln.model"], "tiny");
  EXPECT_EQ(j["file.path"], "/models/tiny.gguf");
  m.kind = ModelEvent::Kind::loaded;
  m.seconds = 1.5;
  j = as_json(model_log_event(m));
  EXPECT_EQ(j["event.action"], "model-loaded");
  EXPECT_EQ(j["event.outcome"], "success");
  EXPECT_EQ(j["event.duration"], 1500000000);
  EXPECT_EQ(j["message"], "loaded tiny from /models/tiny.gguf in 1.50 s");
  m.kind = ModelEvent::Kind::load_failed;
  m.error = "bad magic";
  m.retry_in_seconds = 2;
  j = as_json(model_log_event(m));
  EXPECT_EQ(j["event.action"], "model-load-failed");
  EXPECT_EQ(j["log.level"], "error");
  EXPECT_EQ(j["error.message"], "bad magic");
  EXPECT_EQ(j["message"], "loading model 'tiny' failed: bad magic (next attempt in 2.0 s)");
  m.kind = ModelEvent::Kind::unloaded;
  m.reason = "idle";
  j = as_json(model_log_event(m));
  EXPECT_EQ(j["event.action"], "model-unloaded");
  EXPECT_EQ(j["kiln.unload_reason"], "idle");
}

}  // namespace
}  // namespace kiln::serve
