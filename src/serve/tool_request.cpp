#include "serve/tool_request.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <set>

#include "serve/api_error.h"
#include "serve/request_json.h"

namespace kiln::serve {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

namespace {

std::string string_field(const json& obj, const char* key, const std::string& path, bool required) {
  const json* v = present(obj, key);
  if (!v) {
    if (required) wrong(path, "is required");
    return "";
  }
  if (!v->is_string()) wrong(path, "must be a string");
  return v->get<std::string>();
}

// OpenAI's rule for function names: 1 to 64 of a-z, A-Z, 0-9, '_' and '-'.
bool valid_function_name(const std::string& s) {
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

}  // namespace

ToolRequest parse_tool_request(const json& body) {
  ToolRequest t;
  for (const char* legacy : {"functions", "function_call"})
    if (present(body, legacy))
      throw invalid_field(legacy,
                          fmt::format("'{}' is OpenAI's deprecated function calling; kiln serve takes 'tools' and "
                                      "'tool_choice' (answers carry message.tool_calls)",
                                      legacy));
  if (const json* tools = present(body, "tools")) {
    if (!tools->is_array()) wrong("tools", "must be an array");
    std::set<std::string> names;
    for (std::size_t i = 0; i < tools->size(); ++i) {
      const std::string path = fmt::format("tools[{}]", i);
      const json& tool = (*tools)[i];
      if (!tool.is_object()) wrong(path, "must be an object");
      const std::string type = string_field(tool, "type", path + ".type", true);
      if (type != "function")
        wrong(path + ".type", fmt::format("is '{}'; kiln serve takes tools of type 'function'", type));
      const json* fn = present(tool, "function");
      if (!fn) wrong(path + ".function", "is required");
      if (!fn->is_object()) wrong(path + ".function", "must be an object");
      ToolFunction f;
      f.name = string_field(*fn, "name", path + ".function.name", true);
      if (!valid_function_name(f.name))
        wrong(path + ".function.name", fmt::format("is '{}'; names are 1 to 64 of a-z, A-Z, 0-9, '_' and '-'", f.name));
      if (!names.insert(f.name).second) wrong(path + ".function.name", fmt::format("repeats the name '{}'", f.name));
      f.description = string_field(*fn, "description", path + ".function.description", false);
      if (const json* params = present(*fn, "parameters")) {
        const json* ptype = params->is_object() ? present(*params, "type") : nullptr;
        if (!params->is_object() || !ptype || !ptype->is_string() || ptype->get<std::string>() != "object")
          wrong(path + ".function.parameters",
                "must be a JSON Schema of type \"object\" (the arguments are an object)");
        f.parameters = *params;
      } else {
        f.parameters = ojson{{"type", "object"}, {"properties", ojson::object()}};
      }
      if (const json* strict = present(*fn, "strict"); strict && !strict->is_boolean())
        wrong(path + ".function.strict", "must be a boolean");
      // The template sees the tool as the client sent it, with the defaults filled in.
      ojson entry = {{"type", "function"}, {"function", {{"name", f.name}}}};
      if (!f.description.empty()) entry["function"]["description"] = f.description;
      entry["function"]["parameters"] = f.parameters;
      t.template_tools.push_back(std::move(entry));
      t.functions.push_back(std::move(f));
    }
  }
  if (const json* choice = present(body, "tool_choice")) {
    if (choice->is_string()) {
      const std::string c = choice->get<std::string>();
      if (c == "none")
        t.choice.mode = ToolChoiceMode::none;
      else if (c == "auto")
        t.choice.mode = ToolChoiceMode::automatic;
      else if (c == "required")
        t.choice.mode = ToolChoiceMode::required;
      else
        wrong("tool_choice",
              fmt::format("is '{}'; expected none, auto, required or {{\"type\": \"function\", ...}}", c));
    } else if (choice->is_object()) {
      const std::string type = string_field(*choice, "type", "tool_choice.type", true);
      if (type != "function") wrong("tool_choice.type", fmt::format("is '{}'; expected 'function'", type));
      const json* fn = present(*choice, "function");
      const json* name = fn && fn->is_object() ? present(*fn, "name") : nullptr;
      if (!name || !name->is_string() || name->get<std::string>().empty())
        throw invalid_field(
            "tool_choice",
            "'tool_choice' names no function: expected {\"type\": \"function\", \"function\": {\"name\": ...}}");
      t.choice = {ToolChoiceMode::named, name->get<std::string>()};
      const bool known = std::any_of(t.functions.begin(), t.functions.end(),
                                     [&](const ToolFunction& f) { return f.name == t.choice.name; });
      if (!known)
        throw invalid_field(
            "tool_choice",
            fmt::format("'tool_choice' names the function '{}', which is not among 'tools'", t.choice.name));
    } else {
      wrong("tool_choice", "must be a string or an object");
    }
    if (t.functions.empty() && (t.choice.mode == ToolChoiceMode::required || t.choice.mode == ToolChoiceMode::named))
      throw invalid_field("tool_choice", "'tool_choice' asks for a call but the request has no 'tools'");
  }
  if (const json* p = present(body, "parallel_tool_calls")) {
    if (!p->is_boolean()) wrong("parallel_tool_calls", "must be a boolean");
    t.parallel = p->get<bool>();
  }
  return t;
}

ojson parse_message_tool_calls(const json& value, const std::string& name) {
  if (!value.is_array()) wrong(name, "must be an array");
  ojson calls = ojson::array();
  for (std::size_t j = 0; j < value.size(); ++j) {
    const std::string path = fmt::format("{}[{}]", name, j);
    const json& call = value[j];
    if (!call.is_object()) wrong(path, "must be an object");
    const std::string type = string_field(call, "type", path + ".type", false);
    if (!type.empty() && type != "function") wrong(path + ".type", fmt::format("is '{}'; expected 'function'", type));
    const json* fn = present(call, "function");
    if (!fn) wrong(path + ".function", "is required");
    if (!fn->is_object()) wrong(path + ".function", "must be an object");
    ojson out = ojson::object();
    const std::string id = string_field(call, "id", path + ".id", false);
    if (!id.empty()) out["id"] = id;
    out["type"] = "function";
    ojson f = {{"name", string_field(*fn, "name", path + ".function.name", true)}};
    const json* args = present(*fn, "arguments");
    if (!args) {
      f["arguments"] = ojson::object();
    } else if (args->is_string()) {
      try {
        f["arguments"] = ojson::parse(args->get<std::string>());
      } catch (const ojson::exception&) {
        wrong(path + ".function.arguments", "is not a JSON text (OpenAI sends the arguments as a JSON-encoded string)");
      }
    } else if (args->is_object()) {
      f["arguments"] = *args;
    } else {
      wrong(path + ".function.arguments", "must be a JSON-encoded string");
    }
    out["function"] = std::move(f);
    calls.push_back(std::move(out));
  }
  return calls;
}

}  // namespace kiln::serve
