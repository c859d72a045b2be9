#pragma once
// POST /v1/responses, stateless: OpenAI's Responses request turned into the chat request kiln
// runs (as llama-server and Ollama serve it). input (a string, or message, function_call and
// function_call_output items), instructions (a system message first), max_output_tokens,
// temperature, top_p, tools (function tools, flat as Responses sends them), tool_choice,
// parallel_tool_calls and stream. Nothing is stored: previous_response_id, conversation,
// store true and background are refused with a 400 naming the field.
#include <nlohmann/json.hpp>

#include "serve/request_validation.h"

namespace kiln::serve {

GenerationParams parse_responses_request(const nlohmann::json& body, const ValidationLimits& limits);

}  // namespace kiln::serve
