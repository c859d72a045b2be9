#include "serve/server_log.h"

#include <fmt/format.h>

#include <cmath>

#include "runtime/engine.h"
#include "serve/served_model.h"

namespace kiln::serve {

namespace {

using monitor::LogEvent;
using monitor::LogLevel;

// Milliseconds with microsecond resolution (what a duration in the log needs, and short).
double ms(double seconds) { return std::round(seconds * 1e6) / 1e3; }

std::int64_t ns(double seconds) { return static_cast<std::int64_t>(std::llround(seconds * 1e9)); }

bool is_probe_or_scrape(const std::string& path) { return path == "/health" || path == "/ready" || path == "/metrics"; }

}  // namespace

LogLevel request_log_level(const AccessLogEntry& e) {
  if (e.status >= 500) return LogLevel::error;
  if (e.status == 429) return LogLevel::warn;
  if (e.status > 0 && e.status < 400 && !e.client_closed && is_probe_or_scrape(e.path)) return LogLevel::debug;
  return LogLevel::info;
}

LogEvent request_log_event(const AccessLogEntry& e) {
  const RequestNote& n = e.note;
  std::string message = fmt::format("{} \"{} {}\" {} {:.3f}s", e.remote, e.method, e.target, e.status, e.seconds);
  if (!n.model.empty()) message += fmt::format(" model={}", n.model);
  if (n.prompt_tokens >= 0) message += fmt::format(" tokens {}+{}", n.prompt_tokens, n.completion_tokens);
  if (e.client_closed) message += " (client closed)";
  message += fmt::format(" id={}", e.request_id);

  LogEvent ev(request_log_level(e), "http-request", std::move(message));
  ev.category = "web";
  ev.type = "access";
  ev.outcome = e.status == 0 ? "unknown" : (e.status < 400 && !e.client_closed ? "success" : "failure");
  ev.duration_ns = ns(e.seconds);
  ev.str("http.request.id", e.request_id);
  if (!e.method.empty()) ev.str("http.request.method", e.method);
  ev.str("http.version", e.version == 10 ? "1.0" : "1.1");
  if (!e.target.empty()) {
    ev.str("url.original", e.target);
    ev.str("url.path", e.path);
    if (const std::size_t q = e.target.find('?'); q != std::string::npos) ev.str("url.query", e.target.substr(q + 1));
  }
  if (e.status > 0) ev.num("http.response.status_code", e.status);
  if (e.request_body_bytes >= 0) ev.num("http.request.body.bytes", e.request_body_bytes);
  ev.num("http.response.body.bytes", e.response_body_bytes);
  // "1.2.3.4:5678" or "::1:5678": the port follows the last colon.
  const std::size_t colon = e.remote.rfind(':');
  const std::string ip = colon == std::string::npos ? e.remote : e.remote.substr(0, colon);
  if (!ip.empty()) {
    ev.str("client.address", ip);
    ev.str("client.ip", ip);
    if (colon != std::string::npos) {
      try {
        ev.num("client.port", std::stoll(e.remote.substr(colon + 1)));
      } catch (const std::exception&) {
      }
    }
  }
  if (!e.user_agent.empty()) ev.str("user_agent.original", e.user_agent);
  if (!n.error_type.empty()) ev.str("error.type", n.error_type);
  if (!n.error_code.empty()) ev.str("error.code", n.error_code);
  if (!n.error_message.empty()) ev.str("error.message", n.error_message);
  if (!n.endpoint.empty()) ev.str("kiln.endpoint", n.endpoint);
  if (!n.model.empty()) ev.str("kiln.model", n.model);
  if (!n.key_id.empty()) ev.str("kiln.api_key_id", n.key_id);
  ev.flag("kiln.client_closed", e.client_closed);
  if (n.prompt_tokens >= 0) {
    ev.flag("kiln.stream", n.stream);
    ev.num("kiln.tokens.prompt", n.prompt_tokens);
    ev.num("kiln.tokens.generated", n.completion_tokens);
    ev.num("kiln.tokens.cached", std::max(0, n.cached_tokens));
    ev.list("kiln.finish_reasons", n.finish_reasons);
    ev.real("kiln.timing.queue_ms", ms(n.queue_s));
    ev.real("kiln.timing.prefill_ms", ms(n.prefill_s));
    ev.real("kiln.timing.decode_ms", ms(n.decode_s));
    ev.real("kiln.timing.first_token_ms", ms(n.first_token_s));
  }
  ev.real("kiln.timing.total_ms", ms(e.seconds));
  return ev;
}

LogEvent model_log_event(const ModelEvent& m) {
  LogEvent ev;
  ev.category = "process";
  ev.str("kiln.model", m.name).str("file.path", m.path);
  switch (m.kind) {
    case ModelEvent::Kind::loading:
      ev.level = LogLevel::info;
      ev.action = "model-loading";
      ev.type = "start";
      ev.message = fmt::format("loading {} from {}", m.name, m.path);
      break;
    case ModelEvent::Kind::loaded: {
      ev.level = LogLevel::info;
      ev.action = "model-loaded";
      ev.type = "change";
      ev.outcome = "success";
      ev.duration_ns = ns(m.seconds);
      ev.message = fmt::format("loaded {} from {} in {:.2f} s", m.name, m.path, m.seconds);
      const ServedModel* s = m.model;
      if (s && s->engine && s->model) {
        const EngineOptions& eo = s->engine->options();
        const LlamaConfig& c = s->model->config();
        const double mib = 1024.0 * 1024.0;
        const std::size_t kv_bytes = static_cast<std::size_t>(eo.kv_cache_tokens) * kv_bytes_per_token(c, eo.kv_type);
        ev.message += fmt::format(
            ": context {} tokens (trained {}), KV pool {} positions ({:.1f} MiB), {:.1f} MiB with the weights",
            eo.context_tokens, c.n_ctx_train, eo.kv_cache_tokens, static_cast<double>(kv_bytes) / mib,
            static_cast<double>(s->memory_bytes) / mib);
        ev.num("kiln.context_tokens", eo.context_tokens)
            .num("kiln.kv_pool_tokens", eo.kv_cache_tokens)
            .num("kiln.kv_pool_bytes", static_cast<std::int64_t>(kv_bytes));
      }
      if (s) ev.num("kiln.memory_bytes", static_cast<std::int64_t>(s->memory_bytes));
      ev.real("kiln.timing.load_ms", ms(m.seconds));
      break;
    }
    case ModelEvent::Kind::load_failed:
      ev.level = LogLevel::error;
      ev.action = "model-load-failed";
      ev.type = "info";
      ev.outcome = "failure";
      ev.duration_ns = ns(m.seconds);
      ev.message =
          fmt::format("loading model '{}' failed: {} (next attempt in {:.1f} s)", m.name, m.error, m.retry_in_seconds);
      ev.str("error.message", m.error)
          .real("kiln.retry_in_s", m.retry_in_seconds)
          .real("kiln.timing.load_ms", ms(m.seconds));
      break;
    case ModelEvent::Kind::unloaded:
      ev.level = LogLevel::info;
      ev.action = "model-unloaded";
      ev.type = "change";
      ev.message = fmt::format(
          "unloaded {} ({})", m.name,
          m.reason == "idle" ? "idle longer than --idle-ttl" : "room for another model under --memory-budget");
      ev.str("kiln.unload_reason", m.reason);
      break;
  }
  return ev;
}

}  // namespace kiln::serve
