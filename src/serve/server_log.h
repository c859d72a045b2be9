#pragma once
// What kiln serve writes to its log about requests and models, as monitor::LogEvents (the sink
// formats them as JSON with ECS names, or as text): one event per request, built from the HTTP
// server's access log entry and what the API noted about it, and one per model load, failed
// load and unload. docs/operations.md lists the fields.
#include "monitor/log_event.h"
#include "serve/http_server.h"
#include "serve/model_registry.h"

namespace kiln::serve {

// The request's level: error for 5xx, warn for 429 (the server is at capacity), debug for
// answered probes and scrapes (/health, /ready, /metrics: a load balancer's every few seconds
// would drown the rest), info otherwise.
monitor::LogLevel request_log_level(const AccessLogEntry& entry);
// event.action "http-request"; the message is the access line a terminal shows:
// 127.0.0.1:5000 "POST /v1/completions" 200 0.412s model=m tokens 5+16 id=...
monitor::LogEvent request_log_event(const AccessLogEntry& entry);

// event.action "model-loading", "model-loaded", "model-load-failed" or "model-unloaded".
monitor::LogEvent model_log_event(const ModelEvent& event);

}  // namespace kiln::serve
