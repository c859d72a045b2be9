#pragma once
// Reads tool calls out of a model's text as it is generated, in the native format of its family
// (tool_call_format.h), and says what may be shown as content and what belongs to calls. Text
// that may still become a call ("<tool_c", a "{" that opens a Llama 3 answer) is held back until
// it is decided, so that no markup leaks into content; a call's arguments are released as their
// text arrives, append-only, so that the pieces concatenated are the arguments' final text.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "serve/tool_call_format.h"

namespace kiln::serve {

// A step of one call: the first of each call carries its name (`begins`), then pieces of its
// arguments' JSON text.
struct ToolCallEvent {
  int index = 0;
  bool begins = false;
  std::string id;  // with `begins`: set by the reader of the events (ChatOutputParser), not the parser
  std::string name;
  std::string arguments;
};

// What a push (or finish) released.
struct ToolCallPiece {
  std::string content;
  std::vector<ToolCallEvent> calls;
};

class ToolCallParser {
 public:
  // Calls past `max_calls` (parallel_tool_calls false: 1) are read and dropped.
  ToolCallParser(ToolCallFormat format, int max_calls);

  void push(std::string_view text, ToolCallPiece& out);
  // Text the answer continues (an assistant prefill): read like pushed text, but none of it is
  // ever released as content, since the client wrote it.
  void prime(std::string_view text, ToolCallPiece& out);
  // The end of the text: what was held back is released (as content, or the open call as it is).
  void finish(ToolCallPiece& out);

  int calls() const { return n_calls_; }

 private:
  enum class State { text, call_open, array_next, call, after_call, mistral_name, mistral_args };

  void step(ToolCallPiece& out, bool at_end);
  bool bare_json() const;  // formats whose call is a JSON object at the start of the answer
  void release_content(std::string_view text, ToolCallPiece& out);
  // buf_[begin, end) as content, less what prime() read.
  void release_range(std::size_t begin, std::size_t end, ToolCallPiece& out);
  void begin_call(std::string name, ToolCallPiece& out);
  void stream_arguments(std::size_t value_begin, std::size_t available_end, ToolCallPiece& out);
  void end_call(std::string final_arguments, ToolCallPiece& out);
  // The markup since `fallback_from_` opened no call after all: buf_[fallback_from_, resume_at)
  // is content, and reading goes on as text from resume_at. Where it resumes depends only on the
  // text, never on how much of it has arrived, so any split of the text reads the same.
  void fall_back_to_content(std::size_t resume_at, ToolCallPiece& out);

  ToolCallFormat format_;
  int max_calls_;
  std::string buf_;         // everything pushed
  std::size_t pos_ = 0;     // buf_ before this is decided
  std::size_t primed_ = 0;  // buf_ before this came from prime()
  State state_ = State::text;
  std::string held_space_;  // trailing whitespace of content, released when more content follows
  bool seen_text_ = false;  // content other than whitespace was released
  int n_calls_ = 0;
  bool in_array_ = false;          // Mistral's [TOOL_CALLS][...] list
  std::size_t fallback_from_ = 0;  // where the call being read started (its marker), for fall_back_to_content
  std::size_t call_begin_ = 0;     // its JSON's first byte
  bool named_ = false;             // its begin event was released (or it is being dropped)
  bool dropping_ = false;          // beyond max_calls: read, not reported
  bool broken_ = false;            // a call broke off into something that is not JSON: the rest is dropped
  bool streaming_args_ = false;    // its arguments are an object being released piece by piece
  std::size_t args_sent_ = 0;      // bytes of its arguments released
};

}  // namespace kiln::serve
