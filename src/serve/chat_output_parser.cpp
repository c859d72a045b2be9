#include "serve/chat_output_parser.h"

namespace kiln::serve {

ChatOutputParser::ChatOutputParser(const ChatOutputOptions& options) : options_(options) {
  if (options_.reasoning) reasoning_parser_ = std::make_unique<ReasoningParser>(options_.starts_in_reasoning);
  if (options_.tools) tool_parser_ = std::make_unique<ToolCallParser>(options_.format, options_.max_calls);
}

ChatDelta ChatOutputParser::prime(std::string_view prefill) {
  ChatDelta d;
  // A prefill inside an open <think> block is reasoning: no call starts there.
  if (!tool_parser_ || (options_.reasoning && options_.starts_in_reasoning)) return d;
  ToolCallPiece piece;
  tool_parser_->prime(prefill, piece);
  d.calls = std::move(piece.calls);
  record(d);
  return d;
}

ChatDelta ChatOutputParser::push(std::string_view text) {
  ReasoningPiece r;
  if (reasoning_parser_)
    reasoning_parser_->push(text, r);
  else
    r.content.assign(text);
  return absorb(r, false);
}

ChatDelta ChatOutputParser::finish() {
  ReasoningPiece r;
  if (reasoning_parser_) reasoning_parser_->finish(r);
  return absorb(r, true);
}

ChatDelta ChatOutputParser::absorb(const ReasoningPiece& r, bool at_end) {
  ChatDelta d;
  d.reasoning = r.reasoning;
  if (tool_parser_) {
    ToolCallPiece piece;
    tool_parser_->push(r.content, piece);
    if (at_end) tool_parser_->finish(piece);
    d.content = std::move(piece.content);
    d.calls = std::move(piece.calls);
  } else {
    d.content = r.content;
  }
  record(d);
  return d;
}

void ChatOutputParser::record(ChatDelta& d) {
  reasoning_ += d.reasoning;
  content_ += d.content;
  for (ToolCallEvent& e : d.calls) {
    if (e.begins) {
      e.id = make_tool_call_id(options_.format);
      calls_.push_back(ToolCall{e.id, e.name, ""});
    }
    if (e.index >= 0 && static_cast<std::size_t>(e.index) < calls_.size())
      calls_[static_cast<std::size_t>(e.index)].arguments += e.arguments;
  }
}

}  // namespace kiln::serve
