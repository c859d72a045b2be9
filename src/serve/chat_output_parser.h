#pragma once
// A chat answer as it is generated, read into the parts OpenAI-style responses carry: the
// reasoning of a thinking model (reasoning_content), the content, and tool calls. The model's
// text goes through the ReasoningParser first, then what is content through the
// ToolCallParser; each push says what it released, and the parser keeps the whole message.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "serve/reasoning_parser.h"
#include "serve/tool_call_parser.h"
#include "serve/tool_calls.h"

namespace kiln::serve {

struct ChatOutputOptions {
  bool reasoning = false;            // split <think> blocks from the content
  bool starts_in_reasoning = false;  // the prompt left a <think> block open
  bool tools = false;                // read tool calls
  ToolCallFormat format = ToolCallFormat::generic;
  int max_calls = 1 << 20;  // parallel_tool_calls false: 1
};

struct ChatDelta {
  std::string reasoning;
  std::string content;
  std::vector<ToolCallEvent> calls;
  bool empty() const { return reasoning.empty() && content.empty() && calls.empty(); }
};

class ChatOutputParser {
 public:
  explicit ChatOutputParser(const ChatOutputOptions& options);

  // An assistant prefill the model continues: read as the start of the message, so that a
  // prefill which opens a tool call makes the answer that call. Its content is the client's own
  // text and is not released again; the calls it began are (returned here).
  ChatDelta prime(std::string_view prefill);
  ChatDelta push(std::string_view text);
  ChatDelta finish();

  const std::string& content() const { return content_; }
  const std::string& reasoning() const { return reasoning_; }
  const std::vector<ToolCall>& tool_calls() const { return calls_; }

 private:
  ChatDelta absorb(const ReasoningPiece& r, bool at_end);
  void record(ChatDelta& d);

  ChatOutputOptions options_;
  std::unique_ptr<ReasoningParser> reasoning_parser_;
  std::unique_ptr<ToolCallParser> tool_parser_;
  std::string content_, reasoning_;
  std::vector<ToolCall> calls_;
};

}  // namespace kiln::serve
