#pragma once
// The tools of a chat request, OpenAI-shaped: the functions a model may call, how it must choose
// (tool_choice) and whether it may call several at once, and the calls it made. Parsed by
// request_validation, rendered into the prompt by the chat template (as "tools") and read back
// from the model's text by tool_call_parser.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace kiln::serve {

struct ToolFunction {
  std::string name;
  std::string description;
  nlohmann::ordered_json parameters;  // a JSON Schema of type object
};

enum class ToolChoiceMode { none, automatic, required, named };

struct ToolChoice {
  ToolChoiceMode mode = ToolChoiceMode::automatic;
  std::string name;  // ToolChoiceMode::named: the function that must be called
};

struct ToolRequest {
  std::vector<ToolFunction> functions;  // empty: the request has no tools
  ToolChoice choice;
  bool parallel = true;  // parallel_tool_calls (OpenAI's default)
  // The "tools" array as the request sent it (type function, function {...}), for the template.
  nlohmann::ordered_json template_tools = nlohmann::ordered_json::array();

  // Whether the model's text is read for calls at all.
  bool parsing() const { return !functions.empty() && choice.mode != ToolChoiceMode::none; }
};

// One call the model made, as the response carries it.
struct ToolCall {
  std::string id;  // "call_..." (Mistral: nine alphanumerics, as its templates require)
  std::string name;
  std::string arguments;  // a JSON text (OpenAI sends arguments as a string)
};

}  // namespace kiln::serve
