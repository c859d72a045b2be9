#include "serve/embedding_job.h"

#include <fmt/format.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <iterator>
#include <mutex>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "runtime/engine.h"
#include "serve/api_error.h"
#include "serve/base64.h"

namespace kiln::serve {

static_assert(std::endian::native == std::endian::little,
              "base64 embeddings are little-endian float32: copy the bytes in order only on a little-endian host");

namespace {

struct EmbeddingJob {
  std::mutex mu;
  std::shared_ptr<ServedModel> model;
  EmbeddingParams params;
  EmbeddingJobContext ctx;
  std::shared_ptr<HttpExchange> ex;
  const ApiMetrics* metrics = nullptr;
  std::shared_ptr<RequestHandle> handle;
  std::vector<EmbeddingResult> results;
  std::size_t n_done = 0;
  bool aborted = false;  // the engine refused the batch: the caller answers, callbacks are ignored

  // On the engine thread: keeps the result; the last one hands the answer to an API thread.
  void on_result(std::size_t index, const EmbeddingResult& r, const std::shared_ptr<EmbeddingJob>& self) {
    {
      std::lock_guard lock(mu);
      if (aborted) return;
      results[index] = r;
      if (++n_done < results.size()) return;
    }
    ctx.post([self] { self->complete(); });
  }

  long long prompt_tokens() const {
    long long n = 0;
    for (const EmbeddingResult& r : results) n += r.prompt_tokens;
    return n;
  }

  static ApiError result_error(const EmbeddingResult& r) {
    switch (r.reason) {
      case FinishReason::Deadline:
        return ApiError(504, "timeout", "the request took longer than the server's --request-timeout", "",
                        "request_timeout");
      case FinishReason::Cancelled:
        return ApiError(503, "server_error", "the request was cancelled (the server is shutting down)", "",
                        "cancelled");
      default:
        return ApiError(500, "server_error", fmt::format("embedding failed: {}", r.error), "", "embedding_failed");
    }
  }

  void complete() {
    const RequestRecord& rec = ctx.record;
    const long long tokens = prompt_tokens();
    const EmbeddingResult* failed = nullptr;
    for (const EmbeddingResult& r : results)
      if (r.reason != FinishReason::Stop && !failed) failed = &r;
    HttpResponse response;
    std::optional<ApiError> error;
    if (failed) {
      error = result_error(*failed);
    } else {
      std::vector<std::vector<float>> vectors;
      vectors.reserve(results.size());
      for (EmbeddingResult& r : results) vectors.push_back(std::move(r.embedding));
      try {
        response = HttpResponse{200, "application/json", embeddings_body(vectors, params, ctx.normalize, tokens), {}};
      } catch (const Error& e) {
        error = ApiError(500, "server_error", e.what(), "", "embedding_failed");
      }
    }
    if (error) response = error_response(*error);

    RequestNote n;
    n.endpoint = rec.endpoint;
    n.model = rec.model;
    n.key_id = rec.key_id;
    n.prompt_tokens = static_cast<int>(tokens);
    n.completion_tokens = 0;
    double slowest = -1;
    for (const EmbeddingResult& r : results)
      if (r.total_s > slowest) slowest = r.total_s, n.queue_s = r.queue_s;
    if (error) {
      n.error_type = error->type;
      n.error_code = error->code;
      n.error_message = error->message;
    }
    ex->note(std::move(n));

    metrics->completed(rec.model);
    if (std::any_of(results.begin(), results.end(),
                    [](const EmbeddingResult& r) { return r.reason == FinishReason::Deadline; }))
      metrics->cancelled(rec.model, "deadline");
    metrics->key_tokens(rec, tokens, 0);
    metrics->answered(rec, ex->closed() ? 499 : response.status);
    ex->respond(std::move(response));
  }
};

void append_float(std::string& out, float x) { fmt::format_to(std::back_inserter(out), "{}", x); }

}  // namespace

std::string embeddings_body(const std::vector<std::vector<float>>& vectors, const EmbeddingParams& params,
                            int normalize, long long prompt_tokens) {
  std::string body = "{\"object\":\"list\",\"data\":[";
  std::vector<float> v;
  for (std::size_t i = 0; i < vectors.size(); ++i) {
    const std::vector<float>& full = vectors[i];
    const std::size_t dims =
        params.dimensions > 0 ? std::min(full.size(), static_cast<std::size_t>(params.dimensions)) : full.size();
    // Matryoshka truncation: the leading dimensions, normalised again (as OpenAI's
    // text-embedding-3 answers `dimensions`).
    v.assign(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(dims));
    for (float x : v)
      if (!std::isfinite(x))
        fail("the model's embedding of {} holds a value that is not finite", params.input_field(i));
    normalize_embedding(v, normalize);
    fmt::format_to(std::back_inserter(body), "{}{{\"object\":\"embedding\",\"index\":{},\"embedding\":", i ? "," : "",
                   i);
    if (params.base64) {
      body += '"';
      append_base64(body, v.data(), v.size() * sizeof(float));
      body += '"';
    } else {
      body.reserve(body.size() + v.size() * 12);
      body += '[';
      for (std::size_t k = 0; k < v.size(); ++k) {
        if (k) body += ',';
        append_float(body, v[k]);
      }
      body += ']';
    }
    body += '}';
  }
  body += "],\"model\":";
  body += nlohmann::json(params.model).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  fmt::format_to(std::back_inserter(body), ",\"usage\":{{\"prompt_tokens\":{},\"total_tokens\":{}}}}}", prompt_tokens,
                 prompt_tokens);
  return body;
}

void start_embeddings(std::shared_ptr<ServedModel> model, EmbeddingParams params,
                      std::vector<std::vector<std::int32_t>> inputs, EmbeddingJobContext context,
                      std::shared_ptr<HttpExchange> exchange, const ApiMetrics& metrics, bool draining) {
  auto job = std::make_shared<EmbeddingJob>();
  job->model = std::move(model);
  job->params = std::move(params);
  job->ctx = std::move(context);
  job->ex = std::move(exchange);
  job->metrics = &metrics;
  job->results.resize(inputs.size());
  std::vector<EmbeddingRequest> requests;
  requests.reserve(inputs.size());
  for (auto& t : inputs) requests.push_back({std::move(t), job->ctx.pooling});

  Engine& engine = *job->model->engine;
  // The callback holds the job: it lives until the last input reports, whatever the client does.
  EmbeddingCallback callback = [job](std::size_t index, const EmbeddingResult& r) { job->on_result(index, r, job); };
  std::shared_ptr<RequestHandle> handle;
  try {
    handle = engine.submit_embeddings(std::move(requests), std::move(callback), job->ctx.deadline);
  } catch (const QueueFullError& e) {
    {
      std::lock_guard lock(job->mu);
      job->aborted = true;
    }
    if (draining) throw ApiError(503, "server_error", "the server is shutting down", "", "shutting_down");
    metrics.rejected(job->ctx.record.model);
    ApiError err(429, "rate_limit_error", fmt::format("the server is at capacity: {}; retry later", e.what()), "",
                 "queue_full");
    err.headers.emplace_back("Retry-After", "1");
    throw err;
  } catch (const Error& e) {
    {
      std::lock_guard lock(job->mu);
      job->aborted = true;
    }
    throw ApiError(400, "invalid_request_error", e.what(), "input", "invalid_value");
  }
  metrics.accepted(job->ctx.record.model);
  // The client going away cancels every input; weak, so the connection does not keep the job.
  std::weak_ptr<EmbeddingJob> weak = job;
  std::weak_ptr<RequestHandle> weak_handle = handle;
  job->ex->on_close([weak, weak_handle, &metrics] {
    if (auto j = weak.lock()) metrics.cancelled(j->ctx.record.model, "client");
    if (auto h = weak_handle.lock()) h->cancel();
  });
}

}  // namespace kiln::serve
