#pragma once
// A chat answer in the shape of OpenAI's Responses API: the response object (output items:
// reasoning, a message with output_text, function_call items; usage; status) and, streaming,
// its server-sent events as the openai clients consume them: response.created,
// response.in_progress, response.output_item.added, response.content_part.added,
// response.output_text.delta/.done, response.function_call_arguments.delta/.done,
// response.reasoning_text.delta/.done, response.content_part.done, response.output_item.done,
// response.completed (response.incomplete when max_output_tokens cut it).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/engine.h"
#include "serve/chat_output_parser.h"

namespace kiln::serve {

struct ResponseInfo {
  std::string id;  // "resp_..."
  std::int64_t created = 0;
  std::string model;
  nlohmann::json request;  // the echoed request fields (instructions, temperature, tools, ...)
};

// The whole response: its output from `parser` (after finish()), status from `reason`.
nlohmann::json response_object(const ResponseInfo& info, const ChatOutputParser& parser, FinishReason reason,
                               const Usage& usage);

// The events of one streamed response, each an SSE frame ("event: NAME" and its data).
class ResponsesStream {
 public:
  explicit ResponsesStream(ResponseInfo info);
  std::vector<std::string> begin();
  std::vector<std::string> delta(const ChatDelta& d);
  std::vector<std::string> end(const ChatOutputParser& parser, FinishReason reason, const Usage& usage);

 private:
  enum class Item { none, reasoning, message, call };
  void open(Item kind, std::vector<std::string>& out, const ToolCallEvent* call = nullptr);
  void close(std::vector<std::string>& out);
  std::string event(const char* type, nlohmann::json data);

  ResponseInfo info_;
  int sequence_ = 0;
  int output_index_ = -1;
  Item item_ = Item::none;
  std::string item_id_;
  std::string text_;  // the open item's text (or arguments) so far
  std::string call_id_, call_name_;
  nlohmann::json done_items_ = nlohmann::json::array();
};

}  // namespace kiln::serve
