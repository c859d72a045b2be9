#pragma once
// What the HTTP API records in the server's monitor::Registry (docs/metrics.md):
//   - every request it answers, by endpoint (the route, never the raw path), model and status;
//   - client generation and embedding requests (a /v1/completions, /v1/chat/completions or
//     /v1/embeddings body, all its choices or inputs): accepted by an engine, active (accepted, not yet answered), rejected with 429
//     because the queue was full, cancelled because the client went away or the deadline passed;
//   - requests the RequestGuard refused, by reason;
//   - per API key, by its id (api_key_id, never the key): requests, prompt and generated tokens.
// Labels take only bounded values: a model label names a served model or is empty (a client
// cannot make new series by inventing model names), and an unknown path is endpoint "other".
// Each call looks its series up (a lock and a hash): once per request, never per token.
#include <memory>
#include <string>

#include "monitor/registry.h"

namespace kiln::serve {

// Who a request was and how it was answered, filled in as the API learns it.
struct RequestRecord {
  std::string endpoint;  // route_endpoint()
  std::string model;     // a served model's name, or empty
  std::string key_id;    // the id of the API key it authenticated with, or empty
};

// The endpoint label of a request path: the route ("/v1/models/{model}" for a model's page),
// "other" for paths the API does not serve.
std::string route_endpoint(const std::string& path);

class ApiMetrics {
 public:
  explicit ApiMetrics(std::shared_ptr<monitor::Registry> registry);

  monitor::Registry& registry() const { return *registry_; }
  const std::shared_ptr<monitor::Registry>& shared_registry() const { return registry_; }

  // status: the HTTP status answered; 499 when the client went away before any answer.
  void answered(const RequestRecord& r, int status) const;
  void accepted(const std::string& model) const;   // one more active request
  void completed(const std::string& model) const;  // one fewer
  void rejected(const std::string& model) const;
  void cancelled(const std::string& model, const char* reason) const;  // "client" or "deadline"
  void refused(const char* reason) const;                              // "host", "origin" or "content_type"
  void key_tokens(const RequestRecord& r, long long prompt_tokens, long long generated_tokens) const;
  // Creates a served model's counters at zero: a series that first appears with its first
  // event hides that event from rate() and increase(), so alerts and ratios on 429s and
  // cancellations would stay silent through the first burst.
  void declare_model(const std::string& model) const;

 private:
  monitor::Counter refused_counter(const char* reason) const;
  monitor::Counter rejected_counter(const std::string& model) const;
  monitor::Counter cancelled_counter(const std::string& model, const char* reason) const;
  monitor::Counter accepted_counter(const std::string& model) const;
  monitor::Gauge active_gauge(const std::string& model) const;

  std::shared_ptr<monitor::Registry> registry_;
};

}  // namespace kiln::serve
