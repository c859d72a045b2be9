#pragma once
// The tool-calling fields of a chat request, checked as request_validation checks the rest:
// tools, tool_choice and parallel_tool_calls, and the tool_calls of assistant messages in the
// history. The first wrong field is a 400 naming it ("tools[1].function.parameters").
#include <nlohmann/json.hpp>
#include <string>

#include "serve/tool_calls.h"

namespace kiln::serve {

// tools, tool_choice, parallel_tool_calls. The legacy functions/function_call are refused with
// a pointer to tools (their answer has another shape, message.function_call).
ToolRequest parse_tool_request(const nlohmann::json& body);

// An assistant message's tool_calls ([{id, type: function, function: {name, arguments}}]), with
// each arguments string parsed into the object templates iterate over (as Hugging Face and
// llama.cpp hand them to templates). `name` is the field's path for errors.
nlohmann::ordered_json parse_message_tool_calls(const nlohmann::json& value, const std::string& name);

}  // namespace kiln::serve
