#pragma once
// The HTTP API of `kiln serve`: OpenAI's /v1/chat/completions, /v1/completions and /v1/models,
// llama.cpp server's /tokenize and /detokenize, and the operational /health, /ready, /stats (JSON)
// and /metrics (Prometheus' text format), both views of the server's one metrics registry.
//
// Requests are routed on the connection's I/O thread; anything that may take time (parsing a
// body, tokenizing, waiting for a model to load) runs on a small pool of API threads (large
// bodies on a pool of their own), and generation runs on each model's engine thread. Errors
// leave in OpenAI's shape (api_error.h). Every request first passes the RequestGuard (Host,
// Origin, Content-Type; request_guard.h), then the API key, then the router.
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>

#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "monitor/log_sink.h"
#include "monitor/registry.h"
#include "runtime/embedding_pooling.h"
#include "serve/api_metrics.h"
#include "serve/auth.h"
#include "serve/generation_job.h"
#include "serve/http_server.h"
#include "serve/model_registry.h"
#include "serve/request_guard.h"
#include "serve/request_validation.h"

namespace kiln::serve {

struct ApiOptions {
  ValidationLimits limits;
  int max_prompt_tokens = 0;                   // 0: only the context bounds a prompt
  // Sum over a request's choices of prompt + max_tokens (the KV positions it may hold at once):
  // beyond it 400 before anything runs. 0: 16 x the model's context.
  long long max_request_tokens = 0;
  std::chrono::milliseconds request_timeout{0};  // 0: no deadline
  // /v1/embeddings: how a sequence's hidden states become its vector (unset: the model's
  // <arch>.pooling_type when it is mean, cls or last, else mean), and how the vector is scaled
  // (normalize_embedding's norm: 2 = unit length, as OpenAI returns; -1 = none).
  std::optional<Pooling> pooling;
  int embedding_normalize = 2;
  // Threads that parse, tokenize and wait for model loads; as many again take the requests whose
  // body is larger than large_body_bytes, so that small requests never queue behind them.
  int api_threads = 2;
  std::size_t large_body_bytes = 64 * 1024;
  std::string system_fingerprint = "fp_kiln_0.1.0";
  // The registry the API records into and /metrics and /stats read (the engines, the model
  // registry and the HTTP server record into the same one). nullptr: one of the API's own.
  std::shared_ptr<monitor::Registry> metrics;
  // /metrics without the API key (Prometheus scrapes usually carry none); by default it needs the
  // key, as /stats does, whenever the server has one.
  bool metrics_open = false;
  // Where internal errors are logged (their detail never goes to the client). nullptr: standard
  // error, as text.
  std::shared_ptr<monitor::LogSink> log;
  // --reasoning-format deepseek: a chat answer's leading <think> block goes to reasoning_content.
  bool reasoning_split = true;
};

class OpenAiApi {
 public:
  OpenAiApi(ModelRegistry& registry, ApiKeyAuth auth, RequestGuard guard, ApiOptions options);
  ~OpenAiApi();  // waits for the API threads
  OpenAiApi(const OpenAiApi&) = delete;
  OpenAiApi& operator=(const OpenAiApi&) = delete;

  // The HttpHandler.
  void handle(HttpRequest request, std::shared_ptr<HttpExchange> exchange);

  // For /stats (connections) and to refuse new work while draining.
  void attach_server(const HttpServer* server) { server_ = server; }
  void set_ready(bool ready) { ready_ = ready; }
  // Draining: requests that arrive from now on are refused (503); those already accepted go on.
  void set_draining(bool draining) { draining_ = draining; }
  // The grace period is over: a request still on an API thread is refused instead of reaching
  // an engine.
  void set_grace_over(bool over) { grace_over_ = over; }
  // Waits for the API threads to finish what they hold (a request being parsed, tokenized or
  // rendered keeps its model lease until then). Call after the HTTP server stopped: nothing may
  // hand the API new requests afterwards.
  void join();

 private:
  struct Impl;
  void route(HttpRequest& request, const std::shared_ptr<HttpExchange>& exchange);
  // Answers, and records the answer in the metrics and in the note for the access log (with the
  // error, when it is one).
  void answer(const std::shared_ptr<HttpExchange>& exchange, const RequestRecord& record, HttpResponse response,
              const ApiError* error = nullptr) const;
  void answer_error(const std::shared_ptr<HttpExchange>& exchange, const RequestRecord& record,
                    const ApiError& error) const;
  HttpResponse stats() const;
  HttpResponse metrics_page() const;
  HttpResponse models() const;
  void embeddings(const HttpRequest& request, const std::shared_ptr<HttpExchange>& exchange, RequestRecord& record);

  // chat: /v1/chat/completions, else /v1/completions; responses: /v1/responses (a chat request).
  void generate(const HttpRequest& request, const std::shared_ptr<HttpExchange>& exchange, bool chat, RequestRecord& record,
                bool responses = false);
  HttpResponse apply_template(const HttpRequest& request, RequestRecord& record);
  HttpResponse tokenize(const HttpRequest& request, RequestRecord& record);
  HttpResponse detokenize(const HttpRequest& request, RequestRecord& record);
  // Logs each unknown request field once per server (request_fields.h).
  void report_unknown_fields(const std::vector<std::string>& names, const std::string& path) const;
  // The model label of a request for `name`: the name when it is a served model, else empty.
  std::string model_label(const std::string& name) const;

  ModelRegistry& registry_;
  ApiKeyAuth auth_;
  RequestGuard guard_;
  ApiOptions options_;
  const HttpServer* server_ = nullptr;
  std::atomic<bool> ready_{false};
  std::atomic<bool> draining_{false};
  std::atomic<bool> grace_over_{false};
  ApiMetrics metrics_;
  std::int64_t started_unix_ = 0;
  mutable std::mutex unknown_mu_;
  mutable std::set<std::string> reported_unknown_;
  std::unique_ptr<Impl> impl_;  // the API thread pool
};

}  // namespace kiln::serve
