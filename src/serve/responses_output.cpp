#include "serve/responses_output.h"

#include <random>

namespace kiln::serve {

using json = nlohmann::json;

namespace {

std::string item_id(const char* prefix) {
  static constexpr char kHex[] = "0123456789abcdef";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string id = prefix;
  for (int i = 0; i < 32; ++i) id += kHex[rng() % 16];
  return id;
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json usage_json(const Usage& u) {
  return {{"input_tokens", u.prompt_tokens},
          {"input_tokens_details", {{"cached_tokens", u.cached_tokens}}},
          {"output_tokens", u.completion_tokens},
          {"output_tokens_details", {{"reasoning_tokens", 0}}},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

json reasoning_item(const std::string& id, const std::string& text) {
  return {{"id", id},
          {"type", "reasoning"},
          {"summary", json::array()},
          {"content", json::array({{{"type", "reasoning_text"}, {"text", text}}})}};
}

json message_item(const std::string& id, const std::string& text, const char* status) {
  return {
      {"id", id},
      {"type", "message"},
      {"status", status},
      {"role", "assistant"},
      {"content",
       json::array(
           {{{"type", "output_text"}, {"text", text}, {"annotations", json::array()}, {"logprobs", json::array()}}})}};
}

json call_item(const std::string& id, const std::string& call_id, const std::string& name, const std::string& args,
               const char* status) {
  return {{"id", id},     {"type", "function_call"}, {"status", status}, {"call_id", call_id},
          {"name", name}, {"arguments", args}};
}

// The response object around `output`.
json envelope(const ResponseInfo& info, const char* status, json output, const Usage* usage, FinishReason reason) {
  json r = {{"id", info.id},
            {"object", "response"},
            {"created_at", info.created},
            {"status", status},
            {"error", nullptr},
            {"incomplete_details", nullptr},
            {"model", info.model},
            {"output", std::move(output)},
            {"parallel_tool_calls", info.request.value("parallel_tool_calls", true)},
            {"previous_response_id", nullptr},
            {"store", false},
            {"text", {{"format", {{"type", "text"}}}}},
            {"tool_choice", info.request.value("tool_choice", json("auto"))},
            {"tools", info.request.value("tools", json::array())},
            {"usage", usage ? usage_json(*usage) : json(nullptr)}};
  for (const char* name : {"instructions", "max_output_tokens", "temperature", "top_p", "metadata", "user"})
    r[name] = info.request.value(name, json(nullptr));
  if (usage && reason == FinishReason::Length) r["incomplete_details"] = {{"reason", "max_output_tokens"}};
  return r;
}

const char* final_status(FinishReason reason) { return reason == FinishReason::Length ? "incomplete" : "completed"; }

}  // namespace

json response_object(const ResponseInfo& info, const ChatOutputParser& parser, FinishReason reason,
                     const Usage& usage) {
  json output = json::array();
  if (!parser.reasoning().empty()) output.push_back(reasoning_item(item_id("rs_"), parser.reasoning()));
  const std::string& content = parser.content();
  if (content.find_first_not_of(" \t\r\n") != std::string::npos || parser.tool_calls().empty())
    output.push_back(message_item(item_id("msg_"), content, "completed"));
  for (const ToolCall& call : parser.tool_calls())
    output.push_back(call_item(item_id("fc_"), call.id, call.name, call.arguments, "completed"));
  return envelope(info, final_status(reason), std::move(output), &usage, reason);
}

ResponsesStream::ResponsesStream(ResponseInfo info) : info_(std::move(info)) {}

std::string ResponsesStream::event(const char* type, json data) {
  data["type"] = type;
  data["sequence_number"] = sequence_++;
  return std::string("event: ") + type + "\ndata: " + dump(data) + "\n\n";
}

std::vector<std::string> ResponsesStream::begin() {
  std::vector<std::string> out;
  const json r = envelope(info_, "in_progress", json::array(), nullptr, FinishReason::Stop);
  out.push_back(event("response.created", {{"response", r}}));
  out.push_back(event("response.in_progress", {{"response", r}}));
  return out;
}

void ResponsesStream::open(Item kind, std::vector<std::string>& out, const ToolCallEvent* call) {
  close(out);
  item_ = kind;
  ++output_index_;
  text_.clear();
  json item;
  if (kind == Item::reasoning) {
    item_id_ = item_id("rs_");
    item = {{"id", item_id_}, {"type", "reasoning"}, {"summary", json::array()}, {"content", json::array()}};
  } else if (kind == Item::message) {
    item_id_ = item_id("msg_");
    item = {{"id", item_id_},
            {"type", "message"},
            {"status", "in_progress"},
            {"role", "assistant"},
            {"content", json::array()}};
  } else {
    item_id_ = item_id("fc_");
    call_id_ = call->id;
    call_name_ = call->name;
    item = call_item(item_id_, call_id_, call_name_, "", "in_progress");
  }
  out.push_back(event("response.output_item.added", {{"output_index", output_index_}, {"item", item}}));
  if (kind == Item::message)
    out.push_back(event("response.content_part.added",
                        {{"item_id", item_id_},
                         {"output_index", output_index_},
                         {"content_index", 0},
                         {"part", {{"type", "output_text"}, {"text", ""}, {"annotations", json::array()}}}}));
}

void ResponsesStream::close(std::vector<std::string>& out) {
  json item;
  const json where = {{"item_id", item_id_}, {"output_index", output_index_}};
  switch (item_) {
    case Item::none:
      return;
    case Item::reasoning: {
      json e = where;
      e["content_index"] = 0;
      e["text"] = text_;
      out.push_back(event("response.reasoning_text.done", e));
      item = reasoning_item(item_id_, text_);
      break;
    }
    case Item::message: {
      json e = where;
      e["content_index"] = 0;
      e["text"] = text_;
      e["logprobs"] = json::array();
      out.push_back(event("response.output_text.done", e));
      json part = where;
      part["content_index"] = 0;
      part["part"] = {{"type", "output_text"}, {"text", text_}, {"annotations", json::array()}};
      out.push_back(event("response.content_part.done", part));
      item = message_item(item_id_, text_, "completed");
      break;
    }
    case Item::call: {
      json e = where;
      e["arguments"] = text_;
      e["name"] = call_name_;
      out.push_back(event("response.function_call_arguments.done", e));
      item = call_item(item_id_, call_id_, call_name_, text_, "completed");
      break;
    }
  }
  out.push_back(event("response.output_item.done", {{"output_index", output_index_}, {"item", item}}));
  done_items_.push_back(std::move(item));
  item_ = Item::none;
}

std::vector<std::string> ResponsesStream::delta(const ChatDelta& d) {
  std::vector<std::string> out;
  if (!d.reasoning.empty()) {
    if (item_ != Item::reasoning) open(Item::reasoning, out);
    text_ += d.reasoning;
    out.push_back(
        event("response.reasoning_text.delta",
              {{"item_id", item_id_}, {"output_index", output_index_}, {"content_index", 0}, {"delta", d.reasoning}}));
  }
  if (!d.content.empty()) {
    if (item_ != Item::message) open(Item::message, out);
    text_ += d.content;
    out.push_back(event("response.output_text.delta", {{"item_id", item_id_},
                                                       {"output_index", output_index_},
                                                       {"content_index", 0},
                                                       {"delta", d.content},
                                                       {"logprobs", json::array()}}));
  }
  for (const ToolCallEvent& e : d.calls) {
    if (e.begins) open(Item::call, out, &e);
    if (item_ != Item::call || e.arguments.empty()) continue;
    text_ += e.arguments;
    out.push_back(event("response.function_call_arguments.delta",
                        {{"item_id", item_id_}, {"output_index", output_index_}, {"delta", e.arguments}}));
  }
  return out;
}

std::vector<std::string> ResponsesStream::end(const ChatOutputParser& parser, FinishReason reason, const Usage& usage) {
  std::vector<std::string> out;
  // An answer with no text and no call still has its (empty) message, as the final object does.
  if (output_index_ < 0 && parser.tool_calls().empty()) open(Item::message, out);
  close(out);
  const json r = envelope(info_, final_status(reason), done_items_, &usage, reason);
  out.push_back(
      event(reason == FinishReason::Length ? "response.incomplete" : "response.completed", {{"response", r}}));
  return out;
}

}  // namespace kiln::serve
