#pragma once
// Which native format a model writes its tool calls in, told from its chat template's source by
// the markers the template mentions (as llama.cpp's chat.cpp detects them), and what a forced
// call (tool_choice required or a named function) must look like, for a grammar to enforce.
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "serve/tool_calls.h"

namespace kiln::serve {

enum class ToolCallFormat {
  generic,      // a JSON object {"name": ..., "arguments": {...}} as the whole answer
  llama3_json,  // Llama 3.1+: {"name": ..., "parameters": {...}}, optionally after <|python_tag|>
  mistral,      // [TOOL_CALLS][{"name": ..., "arguments": {...}}, ...] (and v11's [TOOL_CALLS]name[ARGS]{...})
  hermes,       // Qwen2.5, Hermes 2 Pro/3: <tool_call>{"name": ..., "arguments": {...}}</tool_call>, one block per call
};

// First match wins: "<tool_call>" -> hermes; "<|start_header_id|>ipython<|end_header_id|>" or
// "<|python_tag|>" -> llama3_json; "[TOOL_CALLS]" -> mistral; otherwise generic.
ToolCallFormat detect_tool_call_format(std::string_view template_source);
// "generic", "llama3_json", "mistral", "hermes".
std::string_view tool_call_format_name(ToolCallFormat format);

// A fresh call id: "call_" and 24 alphanumerics, or nine alphanumerics for Mistral (its
// templates refuse any other shape).
std::string make_tool_call_id(ToolCallFormat format);

// What a forced call must be: the model's text is `prefix`, then a JSON value that validates
// against `schema`, then `suffix`. For ToolChoiceMode::named the value is the named function's
// call object (its "name" a const, its arguments that function's parameters schema); for
// required, any one of the functions (anyOf), and for Mistral with parallel calls an array of
// one or more. A request whose tool_choice is none or auto forces nothing (`forced` false).
//
// Without a grammar, kiln starts the answer with `opening` (written after the prompt, as an
// assistant prefill is): the format's prefix and the call object up to its arguments, naming
// the function when tool_choice names one. The model then writes the arguments and the parser
// reads the call. A grammar can then constrain what follows `opening`: `arguments_schema` (the
// named function's parameters; null for required, whose name is still open) and then `closing`.
struct ForcedToolCall {
  bool forced = false;
  std::string prefix;
  nlohmann::ordered_json schema;
  std::string suffix;
  std::string opening;
  nlohmann::ordered_json arguments_schema;
  std::string closing;
};
ForcedToolCall forced_tool_call(const ToolRequest& tools, ToolCallFormat format);

}  // namespace kiln::serve
