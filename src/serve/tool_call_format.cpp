#include "serve/tool_call_format.h"

#include <random>

namespace kiln::serve {

using ojson = nlohmann::ordered_json;

ToolCallFormat detect_tool_call_format(std::string_view source) {
  const auto has = [&](std::string_view marker) { return source.find(marker) != std::string_view::npos; };
  if (has("<tool_call>")) return ToolCallFormat::hermes;
  if (has("<|start_header_id|>ipython<|end_header_id|>") || has("<|python_tag|>")) return ToolCallFormat::llama3_json;
  if (has("[TOOL_CALLS]")) return ToolCallFormat::mistral;
  return ToolCallFormat::generic;
}

std::string_view tool_call_format_name(ToolCallFormat format) {
  switch (format) {
    case ToolCallFormat::generic:
      return "generic";
    case ToolCallFormat::llama3_json:
      return "llama3_json";
    case ToolCallFormat::mistral:
      return "mistral";
    case ToolCallFormat::hermes:
      return "hermes";
  }
  return "generic";
}

std::string make_tool_call_id(ToolCallFormat format) {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const bool mistral = format == ToolCallFormat::mistral;
  std::string id = mistral ? "" : "call_";
  for (int i = 0; i < (mistral ? 9 : 24); ++i) id += kAlphabet[rng() % (sizeof kAlphabet - 1)];
  return id;
}

namespace {

// The call object of one function in `format`'s key names.
ojson call_schema(const ToolFunction& f, ToolCallFormat format) {
  const char* args_key = format == ToolCallFormat::llama3_json ? "parameters" : "arguments";
  ojson properties = ojson::object();
  properties["name"] = ojson{{"const", f.name}};
  properties[args_key] = f.parameters;
  return ojson{{"type", "object"},
               {"properties", std::move(properties)},
               {"required", ojson::array({"name", args_key})},
               {"additionalProperties", false}};
}

}  // namespace

ForcedToolCall forced_tool_call(const ToolRequest& tools, ToolCallFormat format) {
  ForcedToolCall out;
  if (tools.functions.empty()) return out;
  ojson one;
  if (tools.choice.mode == ToolChoiceMode::named) {
    for (const ToolFunction& f : tools.functions)
      if (f.name == tools.choice.name) one = call_schema(f, format);
  } else if (tools.choice.mode == ToolChoiceMode::required) {
    ojson any = ojson::array();
    for (const ToolFunction& f : tools.functions) any.push_back(call_schema(f, format));
    one = any.size() == 1 ? any[0] : ojson{{"anyOf", std::move(any)}};
  } else {
    return out;
  }
  out.forced = true;
  const char* args_key = format == ToolCallFormat::llama3_json ? "parameters" : "arguments";
  if (tools.choice.mode == ToolChoiceMode::named) {
    out.opening = nlohmann::json(tools.choice.name).dump();  // the name as a JSON string
    out.opening = "{\"name\": " + out.opening + ", \"" + args_key + "\": ";
    for (const ToolFunction& f : tools.functions)
      if (f.name == tools.choice.name) out.arguments_schema = f.parameters;
  } else {
    out.opening = "{\"name\": \"";
  }
  switch (format) {
    case ToolCallFormat::hermes:
      out.prefix = "<tool_call>\n";
      out.schema = std::move(one);
      out.suffix = "\n</tool_call>";
      out.closing = "}" + out.suffix;
      break;
    case ToolCallFormat::mistral:
      out.prefix = "[TOOL_CALLS]";
      out.schema = ojson{{"type", "array"}, {"items", std::move(one)}, {"minItems", 1}};
      if (!tools.parallel || tools.choice.mode == ToolChoiceMode::named) out.schema["maxItems"] = 1;
      out.opening = "[" + out.opening;
      out.closing = "}]";
      break;
    case ToolCallFormat::llama3_json:
    case ToolCallFormat::generic:
      out.schema = std::move(one);
      out.closing = "}";
      break;
  }
  out.opening = out.prefix + out.opening;
  if (tools.choice.mode != ToolChoiceMode::named) out.closing.clear();
  return out;
}

}  // namespace kiln::serve
