#pragma once
// One /v1/embeddings request in flight: its inputs (token ids, already checked against the
// context) go to the model's engine in one batch; when every vector is back, the answer is
// built on an API thread (a large request's body is megabytes of numbers, which the engine
// thread must not spend its time formatting): each vector cut to the asked dimensions,
// normalised, and written as JSON floats or base64. The client going away cancels the inputs.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime/embedding_pooling.h"
#include "serve/api_metrics.h"
#include "serve/http_server.h"
#include "serve/request_validation.h"
#include "serve/served_model.h"

namespace kiln::serve {

struct EmbeddingJobContext {
  Pooling pooling = Pooling::Mean;
  int normalize = 2;  // normalize_embedding's norm (-1: none)
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  RequestRecord record;
  // Runs the answer's formatting off the engine thread (the API's thread pool).
  std::function<void(std::function<void()>)> post;
};

// Submits every input to `model`'s engine and answers through `exchange`. Throws ApiError 429
// (queue full; Retry-After) or 503 (draining) when the engine refuses; nothing has been sent
// then (the caller answers). Once accepted, the job records its answer, cancellation and tokens
// in `metrics`, which must outlive it.
void start_embeddings(std::shared_ptr<ServedModel> model, EmbeddingParams params,
                      std::vector<std::vector<std::int32_t>> inputs, EmbeddingJobContext context,
                      std::shared_ptr<HttpExchange> exchange, const ApiMetrics& metrics, bool draining);

// The /v1/embeddings body for finished vectors (each (n_embd), pooled, not yet normalised).
// Throws kiln::Error naming input[i] when a vector holds a value that is not finite.
std::string embeddings_body(const std::vector<std::vector<float>>& vectors, const EmbeddingParams& params,
                            int normalize, long long prompt_tokens);

}  // namespace kiln::serve
