#include "serve/api_metrics.h"

#include <array>
#include <string_view>

namespace kiln::serve {

std::string route_endpoint(const std::string& path) {
  static constexpr std::array<std::string_view, 12> kRoutes = {"/v1/chat/completions",
                                                              "/v1/completions",
                                                              "/v1/embeddings",
                                                              "/v1/models",
                                                              "/tokenize",
                                                              "/detokenize",
                                                              "/health",
                                                              "/ready",
                                                              "/stats",
                                                              "/metrics",
                                                              "/v1/responses",
                                                              "/apply-template"};
  if (path.rfind("/v1/models/", 0) == 0) return "/v1/models/{model}";
  if (path == "/dashboard" || path.rfind("/dashboard/", 0) == 0) return "/dashboard";  // the page and its files
  if (path == "/" || path.rfind("/chat/", 0) == 0) return "/";  // the chat page and its files
  for (std::string_view r : kRoutes)
    if (path == r) return std::string(r);
  return "other";
}

ApiMetrics::ApiMetrics(std::shared_ptr<monitor::Registry> registry) : registry_(std::move(registry)) {
  for (const char* reason : {"host", "origin", "content_type"}) refused_counter(reason);
}

monitor::Counter ApiMetrics::refused_counter(const char* reason) const {
  return registry_->counter("kiln_requests_refused_total",
                            "Requests refused by the Host, Origin or Content-Type check (403, 415), by the check.",
                            {{"reason", reason}});
}

monitor::Counter ApiMetrics::rejected_counter(const std::string& model) const {
  return registry_->counter("kiln_requests_rejected_total",
                            "Generation and embedding requests refused with 429 because the engine's queue was full.",
                            {{"model", model}});
}

monitor::Counter ApiMetrics::cancelled_counter(const std::string& model, const char* reason) const {
  return registry_->counter(
      "kiln_requests_cancelled_total",
      "Generation and embedding requests cut short: the client went away (client) or the request timeout passed (deadline).",
      {{"model", model}, {"reason", reason}});
}

monitor::Counter ApiMetrics::accepted_counter(const std::string& model) const {
  return registry_->counter("kiln_requests_accepted_total", "Generation and embedding requests accepted by an engine.", {{"model", model}});
}

monitor::Gauge ApiMetrics::active_gauge(const std::string& model) const {
  return registry_->gauge("kiln_requests_active", "Generation and embedding requests accepted and not yet answered.", {{"model", model}});
}

void ApiMetrics::declare_model(const std::string& model) const {
  accepted_counter(model);
  active_gauge(model);
  rejected_counter(model);
  cancelled_counter(model, "client");
  cancelled_counter(model, "deadline");
}

void ApiMetrics::answered(const RequestRecord& r, int status) const {
  const std::string code = std::to_string(status);
  registry_
      ->counter("kiln_requests_total", "Requests the API answered, by endpoint, model and HTTP status.",
                {{"endpoint", r.endpoint}, {"model", r.model}, {"status", code}})
      .inc();
  if (!r.key_id.empty())
    registry_
        ->counter("kiln_api_key_requests_total", "Requests made with an API key, by the key's id, endpoint and status.",
                  {{"key_id", r.key_id}, {"endpoint", r.endpoint}, {"status", code}})
        .inc();
}

void ApiMetrics::accepted(const std::string& model) const {
  accepted_counter(model).inc();
  active_gauge(model).add(1);
}

void ApiMetrics::completed(const std::string& model) const { active_gauge(model).add(-1); }

void ApiMetrics::rejected(const std::string& model) const { rejected_counter(model).inc(); }

void ApiMetrics::cancelled(const std::string& model, const char* reason) const {
  cancelled_counter(model, reason).inc();
}

void ApiMetrics::refused(const char* reason) const { refused_counter(reason).inc(); }

void ApiMetrics::key_tokens(const RequestRecord& r, long long prompt_tokens, long long generated_tokens) const {
  if (r.key_id.empty()) return;
  const monitor::Labels labels = {{"key_id", r.key_id}, {"model", r.model}};
  registry_->counter("kiln_api_key_prompt_tokens_total", "Prompt tokens of requests made with an API key.", labels)
      .inc(static_cast<double>(prompt_tokens));
  registry_
      ->counter("kiln_api_key_generated_tokens_total", "Tokens generated for requests made with an API key.", labels)
      .inc(static_cast<double>(generated_tokens));
}

}  // namespace kiln::serve
