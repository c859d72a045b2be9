#include "serve/openai_api.h"

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include <cstdio>
#include <iterator>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "chat/chat_template.h"
#include "core/error.h"
#include "monitor/snapshot.h"
#include "monitor/text_format.h"
#include "runtime/embedding_input.h"
#include "runtime/engine.h"
#include "serve/chat_page.h"
#include "serve/dashboard.h"
#include "serve/embedding_job.h"
#include "serve/served_model.h"
#include "serve/structured_output.h"
#include "serve/api_error.h"
#include "serve/chat_prompt.h"
#include "serve/responses_request.h"
#include "tokenizer/utf8.h"

namespace kiln::serve {

using json = nlohmann::json;

namespace {

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

HttpResponse json_response(int status, const json& body) { return HttpResponse{status, "application/json", dump(body), {}}; }

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string random_id(std::string_view prefix) {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string id(prefix);
  for (int i = 0; i < 24; ++i) id += kAlphabet[rng() % (sizeof kAlphabet - 1)];
  return id;
}

// `text` (valid UTF-8) as a JSON string literal, appended to `out`.
void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"') out += "\\\"";
    else if (c == '\\') out += "\\\\";
    else if (u < 0x20) fmt::format_to(std::back_inserter(out), "\\u{:04x}", u);
    else out += c;
  }
  out += '"';
}

// Hands free heap pages back to the system (glibc keeps them after a peak otherwise).
void release_free_memory() {
#if defined(__GLIBC__)
  ::malloc_trim(0);
#endif
}

// A count from the metrics, as the integer it is.
std::uint64_t count(const monitor::Snapshot& snap, std::string_view name, const monitor::Labels& match = {}) {
  return static_cast<std::uint64_t>(snap.sum(name, match));
}

// A model's engine as /stats has always shown it, read from the engine's series.
json engine_stats_json(const monitor::Snapshot& snap, const monitor::Labels& m) {
  monitor::Labels cancelled = m, expired = m;
  cancelled["reason"] = "cancelled";
  expired["reason"] = "deadline";
  return json{{"running", count(snap, "kiln_requests_running", m)},
              {"queued", count(snap, "kiln_requests_waiting", m)},
              {"kv_blocks_total", count(snap, "kiln_kv_cache_blocks", m)},
              {"kv_blocks_used", count(snap, "kiln_kv_cache_blocks_used", m)},
              {"kv_blocks_cached", count(snap, "kiln_kv_cache_blocks_cached", m)},
              {"kv_block_tokens", count(snap, "kiln_kv_cache_block_tokens", m)},
              {"requests_total", count(snap, "kiln_engine_requests_total", m)},
              {"requests_cancelled", count(snap, "kiln_engine_requests_finished_total", cancelled) +
                                         count(snap, "kiln_engine_requests_finished_total", expired)},
              {"prompt_tokens_total", count(snap, "kiln_prompt_tokens_total", m)},
              {"prompt_tokens_cached", count(snap, "kiln_prompt_tokens_cached_total", m)},
              {"generated_tokens_total", count(snap, "kiln_generated_tokens_total", m)},
              {"steps_total", count(snap, "kiln_engine_steps_total", m)},
              {"preemptions_total", count(snap, "kiln_preemptions_total", m)},
              {"draft_tokens_total", count(snap, "kiln_spec_decode_draft_tokens_total", m)},
              {"accepted_tokens_total", count(snap, "kiln_spec_decode_accepted_tokens_total", m)},
              {"busy_seconds", snap.sum("kiln_engine_busy_seconds_total", m)}};
}

const char* refusal_reason(GuardRefusal r) {
  switch (r) {
    case GuardRefusal::host: return "host";
    case GuardRefusal::origin: return "origin";
    case GuardRefusal::content_type: return "content_type";
    case GuardRefusal::none: break;
  }
  return "none";
}

}  // namespace

struct OpenAiApi::Impl {
  boost::asio::thread_pool pool;   // small requests
  boost::asio::thread_pool large;  // bodies over ApiOptions::large_body_bytes
  explicit Impl(int threads)
      : pool(static_cast<std::size_t>(std::max(1, threads))), large(static_cast<std::size_t>(std::max(1, threads))) {}
};

OpenAiApi::OpenAiApi(ModelRegistry& registry, ApiKeyAuth auth, RequestGuard guard, ApiOptions options)
    : registry_(registry),
      auth_(std::move(auth)),
      guard_(std::move(guard)),
      options_(std::move(options)),
      metrics_(options_.metrics ? options_.metrics : std::make_shared<monitor::Registry>()),
      started_unix_(unix_now()),
      impl_(std::make_unique<Impl>(options_.api_threads)) {
  if (!options_.log) {
    monitor::LogSinkOptions o;
    o.context.text_prefix = "kiln serve: ";
    options_.log = std::make_shared<monitor::LogSink>(std::move(o));
  }
  for (const std::string& name : registry_.names()) metrics_.declare_model(name);
}

OpenAiApi::~OpenAiApi() { join(); }

void OpenAiApi::join() {
  impl_->pool.join();
  impl_->large.join();
}

void OpenAiApi::handle(HttpRequest request, std::shared_ptr<HttpExchange> exchange) {
  // The guard comes before anything else, the probes included: a request a web page forged
  // through a browser is refused before it can reach a model, and a preflight is answered
  // without the API key (browsers never send it on one). Its CORS headers go on every answer
  // to the request, errors and streams included.
  GuardVerdict verdict = guard_.check(request);
  if (!verdict.headers.empty()) exchange->add_headers(verdict.headers);
  const RequestRecord unrouted{route_endpoint(request.path), "", ""};
  if (verdict.error) {
    if (verdict.refused != GuardRefusal::none) metrics_.refused(refusal_reason(verdict.refused));
    return answer_error(exchange, unrouted, *verdict.error);
  }
  if (verdict.preflight) return answer(exchange, unrouted, HttpResponse{204, "", "", {}});
  // Cheap endpoints answer on the I/O thread; everything else goes to the API threads.
  const std::string& p = request.path;
  const bool cheap = (request.method == "GET" || request.method == "HEAD") &&
                     (p == "/health" || p == "/ready" || p == "/stats" || p == "/metrics" || p.rfind("/v1/models", 0) == 0 ||
                      is_dashboard_path(p) || is_chat_page_path(p));
  if (cheap) return route(request, exchange);
  // A request that arrives once the server drains is refused here, at once; one that arrived
  // before runs to completion (the grace period bounds it).
  if (draining_)
    return answer_error(exchange, unrouted,
                        ApiError(503, "server_error", "the server is shutting down", "", "shutting_down"));
  // A large body costs its thread a while (parsing, rendering, tokenizing megabytes): those run
  // apart, so a small request's latency does not depend on them.
  const bool large = request.body.size() > options_.large_body_bytes;
  boost::asio::post(large ? impl_->large : impl_->pool, [this, large, req = std::move(request), ex = std::move(exchange)]() mutable {
    route(req, ex);
    // The allocator keeps the peak of a large request (its body, its JSON, its tokens) unless
    // told to give free pages back.
    if (large) release_free_memory();
  });
}

void OpenAiApi::route(HttpRequest& req, const std::shared_ptr<HttpExchange>& ex) {
  const std::string& path = req.path;
  RequestRecord rec{route_endpoint(path), "", ""};
  const auto only = [&](const char* method) {
    // HEAD is GET without the body (the HTTP server leaves it out): probes and load balancers use it.
    const bool head_for_get = req.method == "HEAD" && std::string_view(method) == "GET";
    if (req.method != method && !head_for_get) {
      ApiError e(405, "invalid_request_error", fmt::format("{} {} is not supported; use {}", req.method, path, method), "",
                 "method_not_allowed");
      e.headers.emplace_back("Allow", method);
      throw e;
    }
  };
  try {
    // Liveness and readiness stay open without an API key (probes do not carry one).
    if (path == "/health") {
      only("GET");
      return answer(ex, rec, json_response(200, {{"status", "ok"}}));
    }
    if (path == "/ready") {
      only("GET");
      if (draining_) return answer(ex, rec, json_response(503, {{"status", "draining"}}));
      if (!ready_) return answer(ex, rec, json_response(503, {{"status", "loading"}}));
      return answer(ex, rec, json_response(200, {{"status", "ready"}}));
    }
    // The dashboard's page holds no data: its requests for /metrics carry the key.
    if (is_dashboard_path(path)) {
      only("GET");
      return answer(ex, rec, dashboard_response(req));
    }
    // Nor does the chat page: its API calls carry the key the user gives it.
    if (is_chat_page_path(path)) {
      only("GET");
      return answer(ex, rec, chat_page_response(req));
    }
    if (path == "/metrics" && options_.metrics_open) {
      only("GET");
      return answer(ex, rec, metrics_page());
    }
    if (!auth_.allows(req.header("authorization"))) {
      const bool missing = req.header("authorization") == nullptr;
      throw ApiError(401, "invalid_request_error",
                     missing ? "You didn't provide an API key: send 'Authorization: Bearer <key>'" : "Incorrect API key provided", "",
                     "invalid_api_key");
    }
    rec.key_id = auth_.key_id();
    if (path == "/v1/chat/completions") {
      only("POST");
      return generate(req, ex, true, rec);
    }
    if (path == "/v1/completions") {
      only("POST");
      return generate(req, ex, false, rec);
    }
    if (path == "/v1/embeddings") {
      only("POST");
      return embeddings(req, ex, rec);
    }
    if (path == "/v1/responses") {
      only("POST");
      return generate(req, ex, true, rec, true);
    }
    if (path == "/v1/models") {
      only("GET");
      return answer(ex, rec, models());
    }
    if (path.rfind("/v1/models/", 0) == 0) {
      only("GET");
      const std::string name = path.substr(11);
      rec.model = model_label(name);
      if (!registry_.has(name))
        throw ApiError(404, "invalid_request_error", fmt::format("The model '{}' does not exist", name), "model", "model_not_found");
      return answer(ex, rec,
                    json_response(200, {{"id", name}, {"object", "model"}, {"created", started_unix_}, {"owned_by", "kiln"}}));
    }
    if (path == "/apply-template") {
      only("POST");
      return answer(ex, rec, apply_template(req, rec));
    }
    if (path == "/tokenize") {
      only("POST");
      return answer(ex, rec, tokenize(req, rec));
    }
    if (path == "/detokenize") {
      only("POST");
      return answer(ex, rec, detokenize(req, rec));
    }
    if (path == "/stats") {
      only("GET");
      return answer(ex, rec, stats());
    }
    if (path == "/metrics") {
      only("GET");
      return answer(ex, rec, metrics_page());
    }
    throw ApiError(404, "invalid_request_error", fmt::format("no such endpoint: {} {}", req.method, path), "", "not_found");
  } catch (const ApiError& e) {
    answer_error(ex, rec, e);
  } catch (const std::exception& e) {
    // The detail goes to the server's log, never to the client: an exception's text can hold
    // paths, file contents or library internals.
    monitor::LogEvent event(monitor::LogLevel::error, "internal-error",
                            fmt::format("internal error on {} {} (id={}): {}", req.method, path, req.id, e.what()));
    event.category = "web";
    event.type = "error";
    event.outcome = "failure";
    event.str("http.request.id", req.id)
        .str("http.request.method", req.method)
        .str("url.path", path)
        .str("error.message", e.what());
    options_.log->write(event);
    answer_error(ex, rec, ApiError(500, "server_error", "internal error (see the server's log)", "", "internal_error"));
  }
}

void OpenAiApi::answer(const std::shared_ptr<HttpExchange>& ex, const RequestRecord& record, HttpResponse response,
                       const ApiError* error) const {
  metrics_.answered(record, response.status);
  RequestNote note;
  note.endpoint = record.endpoint;
  note.model = record.model;
  note.key_id = record.key_id;
  if (error) {
    note.error_type = error->type;
    note.error_code = error->code;
    note.error_message = error->message;
  }
  ex->note(std::move(note));
  ex->respond(std::move(response));
}

void OpenAiApi::answer_error(const std::shared_ptr<HttpExchange>& ex, const RequestRecord& record,
                             const ApiError& error) const {
  answer(ex, record, error_response(error), &error);
}

std::string OpenAiApi::model_label(const std::string& name) const { return registry_.has(name) ? name : std::string(); }

HttpResponse OpenAiApi::metrics_page() const {
  return HttpResponse{200, std::string(monitor::kTextContentType), monitor::to_text(metrics_.registry().collect()), {}};
}

HttpResponse OpenAiApi::models() const {
  json data = json::array();
  for (const ModelStatus& s : registry_.status())
    data.push_back({{"id", s.name}, {"object", "model"}, {"created", started_unix_}, {"owned_by", "kiln"}, {"loaded", s.loaded}});
  return json_response(200, {{"object", "list"}, {"data", data}});
}

// The JSON view of the metrics registry: the same numbers as /metrics, in the shape /stats has
// always had. Connections come from the HTTP server itself, whose counts the registry also reads.
HttpResponse OpenAiApi::stats() const {
  const monitor::Snapshot snap(metrics_.registry().collect());
  json models = json::array();
  for (const std::string& name : registry_.names()) {
    const monitor::Labels m = {{"model", name}};
    const bool loaded = snap.sum("kiln_model_loaded", m) > 0;
    json j = {{"name", name},
              {"loaded", loaded},
              {"loading", snap.sum("kiln_model_loading", m) > 0},
              {"active_requests", count(snap, "kiln_model_active_requests", m)},
              {"memory_bytes", count(snap, "kiln_model_memory_bytes", m)},
              {"idle_seconds", snap.sum("kiln_model_idle_seconds", m)},
              {"loads", count(snap, "kiln_model_loads_total", m)},
              {"unloads", count(snap, "kiln_model_unloads_total", m)},
              // Whether the last load failed and how often in a row; why is in the server's log
              // (the loader's message can quote the file's path and bytes).
              {"load_failed", snap.sum("kiln_model_consecutive_load_failures", m) > 0},
              {"failed_loads", count(snap, "kiln_model_consecutive_load_failures", m)}};
    j["engine"] = loaded && snap.has("kiln_engine_requests_total", m) ? engine_stats_json(snap, m) : json(nullptr);
    models.push_back(std::move(j));
  }
  json body;
  if (server_) {
    const HttpServerStats hs = server_->stats();
    body["connections"] = {{"open", hs.open_connections},
                           {"total", hs.connections_total},
                           {"rejected", hs.connections_rejected},
                           {"evicted", hs.connections_evicted},
                           {"reserve", hs.connections_reserve},
                           {"header_timeouts", hs.header_timeouts},
                           {"accept_errors", hs.accept_errors}};
    body["http"] = {{"requests_in_flight", hs.requests_in_flight}, {"requests_total", hs.requests_total}};
  }
  body["requests"] = {{"active", count(snap, "kiln_requests_active")},
                      {"running", count(snap, "kiln_requests_running")},
                      {"queued", count(snap, "kiln_requests_waiting")},
                      {"total", count(snap, "kiln_requests_accepted_total")},
                      {"rejected_queue_full", count(snap, "kiln_requests_rejected_total")},
                      {"cancelled_by_client", count(snap, "kiln_requests_cancelled_total", {{"reason", "client"}})},
                      {"deadline_exceeded", count(snap, "kiln_requests_cancelled_total", {{"reason", "deadline"}})},
                      {"refused_host", count(snap, "kiln_requests_refused_total", {{"reason", "host"}})},
                      {"refused_origin", count(snap, "kiln_requests_refused_total", {{"reason", "origin"}})},
                      {"refused_content_type", count(snap, "kiln_requests_refused_total", {{"reason", "content_type"}})}};
  body["models"] = std::move(models);
  body["memory"] = {{"rss_bytes", count(snap, "process_resident_memory_bytes")},
                    {"loaded_model_bytes", count(snap, "kiln_models_memory_bytes")}};
  body["ready"] = ready_.load();
  body["draining"] = draining_.load();
  return json_response(200, body);
}

void OpenAiApi::report_unknown_fields(const std::vector<std::string>& names, const std::string& path) const {
  for (const std::string& name : names) {
    {
      std::lock_guard lock(unknown_mu_);
      // Bounded: a client inventing names cannot grow the set (or the log) without end.
      if (reported_unknown_.size() >= 256 || !reported_unknown_.insert(name.substr(0, 64)).second) continue;
    }
    monitor::LogEvent event(monitor::LogLevel::warn, "unknown-request-field",
                            fmt::format("request field '{}' on {} is not known to kiln serve and was ignored (reported once)",
                                        name.substr(0, 64), path));
    event.category = "web";
    event.str("url.path", path).str("kiln.request.field", name.substr(0, 64));
    options_.log->write(event);
  }
}

void OpenAiApi::generate(const HttpRequest& req, const std::shared_ptr<HttpExchange>& ex, bool chat, RequestRecord& rec,
                         bool responses) {
  const json body = parse_json_body(req.body);
  GenerationParams params = responses ? parse_responses_request(body, options_.limits)
                            : chat    ? parse_chat_request(body, options_.limits)
                                      : parse_completion_request(body, options_.limits);
  report_unknown_fields(params.unknown_fields, req.path);
  if (has_output_constraint(body)) {
    // Read again with the key order kept: a schema's properties are generated in its order.
    const OutputConstraint c = parse_output_constraint(nlohmann::ordered_json::parse(req.body));
    params.grammar = c.gbnf;
    params.grammar_field = c.field;
  }
  rec.model = model_label(params.model);
  std::shared_ptr<ServedModel> served = registry_.acquire(params.model);
  // Past the grace period the engines have been told to cancel; acquire() may also have
  // loaded a model whose engine the drain did not see.
  if (grace_over_) throw ApiError(503, "server_error", "the server is shutting down", "", "shutting_down");
  const Tokenizer& tok = *served->tokenizer;
  const int context = served->engine->context_tokens();
  // Refused by its length in bytes before it is tokenized: no token stands for more than
  // max_token_bytes bytes, so a longer text has too many tokens for certain.
  const int prompt_limit = options_.max_prompt_tokens > 0 ? std::min(options_.max_prompt_tokens, context - 1) : context - 1;
  const auto refuse_if_too_long = [&](std::size_t bytes, const std::string& field) {
    if (served->max_token_bytes == 0 || bytes <= static_cast<std::size_t>(prompt_limit) * served->max_token_bytes) return;
    throw invalid_field(field, fmt::format("the prompt has {} bytes, so more than {} tokens (no token of this model stands for "
                                           "more than {} bytes); this server accepts prompts of at most {} tokens for this model",
                                           bytes, prompt_limit, served->max_token_bytes, prompt_limit));
  };

  std::vector<std::vector<std::int32_t>> prompts;
  ChatOutputOptions output;
  std::string prefill;
  if (chat) {
    const ChatPrompt rendered = render_chat_prompt(*served, params, options_.reasoning_split);
    const std::string& text = rendered.text;
    output = rendered.output;
    prefill = rendered.prefill;
    if (!rendered.forced_grammar.empty()) {
      // One grammar per request: a forced call already fixes the answer's whole shape.
      if (!params.grammar.empty())
        throw invalid_field(params.grammar_field, fmt::format("'{}' cannot constrain an answer that 'tool_choice' forces to be a "
                                                              "tool call",
                                                              params.grammar_field));
      params.grammar = rendered.forced_grammar;
      params.grammar_field = "tool_choice";
    }
    refuse_if_too_long(text.size(), "messages");
    // Templates usually write the BOS text themselves; encoding it adds no second BOS.
    const std::string& bos = served->chat->bos_token();
    const bool has_bos = !bos.empty() && text.compare(0, bos.size(), bos) == 0;
    prompts.push_back(tok.encode(text, tok.vocab().add_bos && !has_bos, true));
  } else {
    for (std::size_t i = 0; i < params.prompts.size(); ++i) {
      const PromptInput& p = params.prompts[i];
      if (p.is_text) {
        refuse_if_too_long(p.text.size(), params.prompts.size() > 1 ? fmt::format("prompt[{}]", i) : "prompt");
        prompts.push_back(tok.encode(p.text, tok.vocab().add_bos, false));
      } else {
        for (std::int32_t id : p.tokens)
          if (id >= tok.n_vocab())
            throw invalid_field(params.prompts.size() > 1 ? fmt::format("prompt[{}]", i) : "prompt",
                                fmt::format("token id {} is outside the vocabulary (0..{})", id, tok.n_vocab() - 1));
        prompts.push_back(p.tokens);
      }
    }
  }
  // logit_bias names token ids: the vocabulary they must fall in is known only here.
  for (const LogitBias& b : params.sampling.logit_bias)
    if (b.id >= tok.n_vocab())
      throw invalid_field("logit_bias", fmt::format("token id {} of 'logit_bias' is outside the vocabulary (0..{})", b.id,
                                                    tok.n_vocab() - 1));
  const char* prompt_field = chat ? "messages" : "prompt";
  for (const auto& p : prompts) {
    const int n = static_cast<int>(p.size());
    if (n == 0) throw invalid_field(prompt_field, "the prompt is empty");
    if (options_.max_prompt_tokens > 0 && n > options_.max_prompt_tokens)
      throw invalid_field(prompt_field, fmt::format("the prompt has {} tokens; this server accepts at most {} (--max-prompt-tokens)",
                                                    n, options_.max_prompt_tokens));
    if (n >= context)
      throw invalid_field(prompt_field,
                          fmt::format("the prompt has {} tokens; the model's context holds {} (prompt and completion together)", n, context));
  }

  // What the request may hold at once: every choice's prompt and completion. One request must
  // not take a model's whole capacity (64 prompts x n=4 x 4000 tokens is a 1 KB body).
  const long long cap = options_.max_request_tokens > 0 ? options_.max_request_tokens : 16LL * context;
  long long total = 0;
  for (const auto& p : prompts) {
    const int room = context - static_cast<int>(p.size());
    const int completion = params.max_tokens > 0 ? std::min(params.max_tokens, room) : room;
    total += static_cast<long long>(params.n) * (static_cast<long long>(p.size()) + completion);
  }
  if (total > cap)
    throw ApiError(400, "invalid_request_error",
                   fmt::format("this request may take {} tokens (prompt and max_tokens of each of its {} completions); this "
                               "server allows {} per request (--max-request-tokens): lower max_tokens, n or the number of prompts",
                               total, prompts.size() * static_cast<std::size_t>(params.n), cap),
                   "max_tokens", "too_many_tokens");

  JobContext ctx;
  ctx.id = random_id(responses ? "resp_" : chat ? "chatcmpl-" : "cmpl-");
  ctx.created = unix_now();
  ctx.system_fingerprint = options_.system_fingerprint;
  if (options_.request_timeout.count() > 0) ctx.deadline = std::chrono::steady_clock::now() + options_.request_timeout;
  ctx.record = rec;
  ctx.output = output;
  ctx.prefill = std::move(prefill);
  if (responses) {
    ctx.response.id = ctx.id;
    ctx.response.created = ctx.created;
    ctx.response.model = params.model;
    ctx.response.request = json::object();
    for (const char* name : {"instructions", "max_output_tokens", "temperature", "top_p", "metadata", "user", "tools",
                             "tool_choice", "parallel_tool_calls"})
      if (body.contains(name)) ctx.response.request[name] = body[name];
  }
  start_generation(std::move(served), std::move(params), std::move(prompts), std::move(ctx), ex, metrics_, draining_);
}

void OpenAiApi::embeddings(const HttpRequest& req, const std::shared_ptr<HttpExchange>& ex, RequestRecord& rec) {
  const json body = parse_json_body(req.body);
  EmbeddingParams params = parse_embedding_request(body, options_.limits);
  rec.model = model_label(params.model);
  std::shared_ptr<ServedModel> served = registry_.acquire(params.model);
  if (grace_over_) throw ApiError(503, "server_error", "the server is shutting down", "", "shutting_down");
  const LlamaConfig& config = served->model->config();
  if (params.dimensions > config.n_embd)
    throw invalid_field("dimensions", fmt::format("'dimensions' is {}; this model's embeddings have {}",
                                                  params.dimensions, config.n_embd));
  Pooling pooling = Pooling::Mean;
  if (options_.pooling) {
    pooling = *options_.pooling;
  } else {
    try {
      pooling = default_embedding_pooling(served->model->source().metadata(), config.arch);
    } catch (const Error& e) {
      throw invalid_field("model", fmt::format("{} (start kiln serve with --pooling mean, cls or last)", e.what()));
    }
  }

  const Tokenizer& tok = *served->tokenizer;
  const int context = served->engine->context_tokens();
  const int limit = options_.max_prompt_tokens > 0 ? std::min(options_.max_prompt_tokens, context) : context;
  std::vector<std::vector<std::int32_t>> inputs;
  inputs.reserve(params.inputs.size());
  long long total = 0;
  for (std::size_t i = 0; i < params.inputs.size(); ++i) {
    const PromptInput& in = params.inputs[i];
    const std::string name = params.input_field(i);
    std::vector<std::int32_t> ids;
    if (in.is_text) {
      // Refused by its length in bytes before it is tokenized (no token stands for more than
      // max_token_bytes bytes).
      if (served->max_token_bytes > 0 && in.text.size() > static_cast<std::size_t>(limit) * served->max_token_bytes)
        throw invalid_field(name,
                            fmt::format("'{}' has {} bytes, so more than {} tokens; this server embeds inputs of at "
                                        "most {} tokens with this model",
                                        name, in.text.size(), limit, limit));
      ids = embedding_tokens(tok, in.text);
    } else {
      for (std::int32_t id : in.tokens)
        if (id >= tok.n_vocab())
          throw invalid_field(name,
                              fmt::format("token id {} is outside the vocabulary (0..{})", id, tok.n_vocab() - 1));
      ids = in.tokens;
    }
    if (ids.empty()) throw invalid_field(name, fmt::format("'{}' has no tokens", name));
    if (static_cast<int>(ids.size()) > limit)
      throw invalid_field(
          name, fmt::format("'{}' has {} tokens; this server embeds inputs of at most {} tokens with this "
                            "model (its context{})",
                            name, ids.size(), limit, limit < context ? ", lowered by --max-prompt-tokens" : ""));
    total += static_cast<long long>(ids.size());
    inputs.push_back(std::move(ids));
  }
  const long long cap = options_.max_request_tokens > 0 ? options_.max_request_tokens : 16LL * context;
  if (total > cap)
    throw ApiError(400, "invalid_request_error",
                   fmt::format("this request's {} inputs hold {} tokens; this server allows {} per request "
                               "(--max-request-tokens): send fewer inputs at a time",
                               inputs.size(), total, cap),
                   "input", "too_many_tokens");

  EmbeddingJobContext ctx;
  ctx.pooling = pooling;
  ctx.normalize = options_.embedding_normalize;
  if (options_.request_timeout.count() > 0) ctx.deadline = std::chrono::steady_clock::now() + options_.request_timeout;
  ctx.record = rec;
  ctx.post = [this](std::function<void()> fn) { boost::asio::post(impl_->large, std::move(fn)); };
  start_embeddings(std::move(served), std::move(params), std::move(inputs), std::move(ctx), ex, metrics_, draining_);
}

// llama-server's /apply-template: the prompt a chat request would run, without running it.
HttpResponse OpenAiApi::apply_template(const HttpRequest& req, RequestRecord& rec) {
  json body = parse_json_body(req.body);
  if (!body.contains("model") || body["model"].is_null()) body["model"] = registry_.default_name();
  const GenerationParams params = parse_chat_request(body, options_.limits);
  rec.model = model_label(params.model);
  std::shared_ptr<ServedModel> served = registry_.acquire(params.model);
  return json_response(200, {{"prompt", render_chat_prompt(*served, params, options_.reasoning_split).text}});
}

HttpResponse OpenAiApi::tokenize(const HttpRequest& req, RequestRecord& rec) {
  const TokenizeParams p = parse_tokenize_request(parse_json_body(req.body));
  const std::string& model = p.model.empty() ? registry_.default_name() : p.model;
  rec.model = model_label(model);
  std::shared_ptr<ServedModel> served = registry_.acquire(model);
  const Tokenizer& tok = *served->tokenizer;
  const std::vector<std::int32_t> ids = tok.encode(p.content, p.add_special && tok.vocab().add_bos, p.parse_special);
  // Written straight into the body: a JSON tree of a million tokens with their pieces would
  // take about a kilobyte per token. This way the peak is the body itself (about 30 bytes per
  // token with pieces).
  std::string body = "{\"tokens\":[";
  body.reserve(body.size() + ids.size() * (p.with_pieces ? 32 : 7));
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) body += ',';
    const std::int32_t id = ids[i];
    if (!p.with_pieces) {
      fmt::format_to(std::back_inserter(body), "{}", id);
      continue;
    }
    // llama.cpp's shape: the piece as a string when it is valid UTF-8, else its bytes.
    const std::string piece = tok.token_to_piece(id);
    fmt::format_to(std::back_inserter(body), "{{\"id\":{},\"piece\":", id);
    if (utf8::is_valid(piece)) {
      append_json_string(body, piece);
    } else {
      body += '[';
      for (std::size_t b = 0; b < piece.size(); ++b)
        fmt::format_to(std::back_inserter(body), "{}{}", b ? "," : "", static_cast<int>(static_cast<unsigned char>(piece[b])));
      body += ']';
    }
    body += '}';
  }
  body += "]}";
  return HttpResponse{200, "application/json", std::move(body), {}};
}

HttpResponse OpenAiApi::detokenize(const HttpRequest& req, RequestRecord& rec) {
  const DetokenizeParams p = parse_detokenize_request(parse_json_body(req.body));
  const std::string& model = p.model.empty() ? registry_.default_name() : p.model;
  rec.model = model_label(model);
  std::shared_ptr<ServedModel> served = registry_.acquire(model);
  const Tokenizer& tok = *served->tokenizer;
  for (std::size_t i = 0; i < p.tokens.size(); ++i)
    if (p.tokens[i] >= tok.n_vocab())
      throw invalid_field(fmt::format("tokens[{}]", i),
                          fmt::format("token id {} is outside the vocabulary (0..{})", p.tokens[i], tok.n_vocab() - 1));
  return json_response(200, {{"content", tok.decode(p.tokens)}});
}

}  // namespace kiln::serve
