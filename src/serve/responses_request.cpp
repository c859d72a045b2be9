#include "serve/responses_request.h"

#include <fmt/format.h>

#include "serve/api_error.h"
#include "serve/request_json.h"
#include "serve/request_fields.h"

namespace kiln::serve {

using json = nlohmann::json;

namespace {

// A message item's content: a string or input_text / output_text parts, joined.
json content_text(const json& v, const std::string& path) {
  if (v.is_string()) return v;
  if (!v.is_array()) wrong(path, "must be a string or an array of content parts");
  std::string text;
  for (std::size_t j = 0; j < v.size(); ++j) {
    const std::string part = fmt::format("{}[{}]", path, j);
    const json& p = v[j];
    const json* type = p.is_object() ? present(p, "type") : nullptr;
    if (!type || !type->is_string()) wrong(part + ".type", "is required");
    const std::string t = type->get<std::string>();
    if (t != "input_text" && t != "output_text" && t != "text")
      wrong(part + ".type", fmt::format("is '{}'; kiln serve takes text parts only", t));
    const json* body = present(p, "text");
    if (!body || !body->is_string()) wrong(part + ".text", "must be a string");
    text += body->get<std::string>();
  }
  return text;
}

// The Responses input as chat messages: consecutive function_call items become one assistant
// message with tool_calls, each function_call_output a tool message.
json input_messages(const json& input) {
  json messages = json::array();
  if (input.is_string()) {
    messages.push_back({{"role", "user"}, {"content", input}});
    return messages;
  }
  if (!input.is_array()) wrong("input", "must be a string or an array of input items");
  for (std::size_t i = 0; i < input.size(); ++i) {
    const std::string path = fmt::format("input[{}]", i);
    const json& item = input[i];
    if (!item.is_object()) wrong(path, "must be an object");
    const json* type = present(item, "type");
    const std::string t = type && type->is_string() ? type->get<std::string>() : "message";
    if (t == "message") {
      const json* role = present(item, "role");
      if (!role || !role->is_string()) wrong(path + ".role", "is required");
      const json* content = present(item, "content");
      if (!content) wrong(path + ".content", "is required");
      messages.push_back({{"role", *role}, {"content", content_text(*content, path + ".content")}});
    } else if (t == "function_call") {
      const json* call_id = present(item, "call_id");
      const json* name = present(item, "name");
      const json* args = present(item, "arguments");
      if (!call_id || !call_id->is_string()) wrong(path + ".call_id", "must be a string");
      if (!name || !name->is_string()) wrong(path + ".name", "must be a string");
      if (!args || !args->is_string()) wrong(path + ".arguments", "must be a JSON-encoded string");
      json call = {{"id", *call_id}, {"type", "function"}, {"function", {{"name", *name}, {"arguments", *args}}}};
      if (!messages.empty() && messages.back()["role"] == "assistant" && messages.back().contains("tool_calls")) {
        messages.back()["tool_calls"].push_back(std::move(call));
      } else {
        messages.push_back(
            {{"role", "assistant"}, {"content", nullptr}, {"tool_calls", json::array({std::move(call)})}});
      }
    } else if (t == "function_call_output") {
      const json* call_id = present(item, "call_id");
      const json* output = present(item, "output");
      if (!call_id || !call_id->is_string()) wrong(path + ".call_id", "must be a string");
      if (!output) wrong(path + ".output", "is required");
      messages.push_back(
          {{"role", "tool"}, {"tool_call_id", *call_id}, {"content", content_text(*output, path + ".output")}});
    } else if (t == "reasoning") {
      continue;  // earlier reasoning is not shown to the model again, as chat templates drop it
    } else {
      wrong(path + ".type",
            fmt::format("is '{}'; kiln serve takes message, function_call and function_call_output items", t));
    }
  }
  if (messages.empty()) wrong("input", "holds no message");
  return messages;
}

// Responses' flat function tools ({type, name, parameters}) in the chat shape.
json chat_tools(const json& tools) {
  if (!tools.is_array()) wrong("tools", "must be an array");
  json out = json::array();
  for (std::size_t i = 0; i < tools.size(); ++i) {
    const json& t = tools[i];
    if (!t.is_object()) wrong(fmt::format("tools[{}]", i), "must be an object");
    const json* type = present(t, "type");
    if (!type || *type != "function")
      wrong(fmt::format("tools[{}].type", i), "must be 'function' (kiln serve has no built-in tools)");
    json fn = t;
    fn.erase("type");
    out.push_back({{"type", "function"}, {"function", std::move(fn)}});
  }
  return out;
}

}  // namespace

GenerationParams parse_responses_request(const json& body, const ValidationLimits& limits) {
  const std::vector<std::string> unknown = check_request_fields(body, RequestKind::responses);
  for (const char* stateful : {"previous_response_id", "conversation"})
    if (present(body, stateful))
      wrong(stateful, "needs a stored conversation; kiln serve's /v1/responses is stateless (send the whole input)");
  if (const json* store = present(body, "store"); store && (!store->is_boolean() || store->get<bool>()))
    wrong("store", "must be false: kiln serve's /v1/responses stores nothing");
  if (const json* bg = present(body, "background"); bg && (!bg->is_boolean() || bg->get<bool>()))
    wrong("background", "is not supported: responses are answered while the request waits");
  if (present(body, "max_tool_calls"))
    wrong("max_tool_calls", "is not supported by kiln serve (parallel_tool_calls false allows one call)");
  if (const json* v = present(body, "top_logprobs"); v && !(v->is_number_integer() && v->get<long long>() == 0))
    wrong("top_logprobs", "is not supported on /v1/responses by kiln serve");
  if (const json* text = present(body, "text")) {
    const json* format = text->is_object() ? present(*text, "format") : nullptr;
    const json* type = format && format->is_object() ? present(*format, "type") : nullptr;
    if (format && (!type || *type != "text"))
      wrong("text.format", "other than {\"type\": \"text\"} is not supported by kiln serve");
  }

  json chat = json::object();
  for (const char* name :
       {"model", "temperature", "top_p", "stream", "user", "parallel_tool_calls", "chat_template_kwargs"})
    if (const json* v = present(body, name)) chat[name] = *v;
  if (const json* v = present(body, "max_output_tokens")) chat["max_tokens"] = *v;
  const json* input = present(body, "input");
  if (!input) wrong("input", "is required");
  json messages = input_messages(*input);
  if (const json* instructions = present(body, "instructions")) {
    if (!instructions->is_string()) wrong("instructions", "must be a string");
    messages.insert(messages.begin(), json{{"role", "system"}, {"content", *instructions}});
  }
  chat["messages"] = std::move(messages);
  if (const json* tools = present(body, "tools")) chat["tools"] = chat_tools(*tools);
  if (const json* choice = present(body, "tool_choice")) {
    if (choice->is_object()) {
      // Responses names the function flat: {"type": "function", "name": ...}.
      json named = {{"type", choice->value("type", json())}};
      if (const json* name = present(*choice, "name")) named["function"] = {{"name", *name}};
      chat["tool_choice"] = std::move(named);
    } else {
      chat["tool_choice"] = *choice;
    }
  }
  GenerationParams p;
  try {
    p = parse_chat_request(chat, limits);
  } catch (ApiError& e) {
    // The chat request's paths in the Responses request's terms.
    auto rename = [](std::string s) {
      for (std::size_t at; (at = s.find(".function.")) != std::string::npos;) s.replace(at, 10, ".");
      for (std::size_t at; (at = s.find("max_tokens")) != std::string::npos;) s.replace(at, 10, "max_output_tokens");
      for (std::size_t at; (at = s.find("messages")) != std::string::npos;) s.replace(at, 8, "input");
      return s;
    };
    e.param = rename(e.param);
    e.message = rename(e.message);
    throw;
  }
  p.unknown_fields = unknown;
  p.responses = true;
  return p;
}

}  // namespace kiln::serve
