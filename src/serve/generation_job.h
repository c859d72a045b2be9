#pragma once
// One /v1/chat/completions or /v1/completions request in flight: its prompts (one per prompt
// times n choices) are submitted to the model's engine, and the engine's callbacks (on the
// engine thread) are turned into OpenAI's response: server-sent chunks as tokens arrive, or one
// JSON body when every choice has finished. The client going away cancels every choice.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "serve/api_metrics.h"
#include "serve/chat_output_parser.h"
#include "serve/responses_output.h"
#include "serve/http_server.h"
#include "serve/request_validation.h"
#include "serve/served_model.h"

namespace kiln::serve {

struct JobContext {
  std::string id;                  // "chatcmpl-..." or "cmpl-..."
  std::int64_t created = 0;        // Unix seconds
  std::string system_fingerprint;
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  RequestRecord record;            // for the metrics: endpoint, model, API key id
  // Chat: how each choice's text is read (reasoning, tool calls) and the text the answer
  // continues (an assistant prefill or a forced call's opening), read before the first token.
  ChatOutputOptions output;
  std::string prefill;
  ResponseInfo response;  // /v1/responses (GenerationParams::responses): what the response object echoes
};

// Submits every choice of `params` to `model`'s engine and answers through `exchange`.
// `prompts` holds the token ids of each prompt (already validated against the context).
// Throws ApiError 429 (queue full; Retry-After) or 503 (draining) when the engine refuses, after
// cancelling whatever it had already submitted; nothing has been sent to the client then (the
// caller answers and records the request). Once accepted, the job records its answer, its
// cancellation and its tokens in `metrics`, which must outlive it.
void start_generation(std::shared_ptr<ServedModel> model, GenerationParams params, std::vector<std::vector<std::int32_t>> prompts,
                      JobContext context, std::shared_ptr<HttpExchange> exchange, const ApiMetrics& metrics, bool draining);

}  // namespace kiln::serve
