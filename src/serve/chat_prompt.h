#pragma once
// A chat request made into the prompt text its model continues: the messages (tool calls and
// tool results included), the tools and chat_template_kwargs rendered by the model's template;
// a final assistant message continued rather than closed (assistant prefill); and how the
// answer will be read (reasoning split, tool-call format). The one place where a forced tool
// call (tool_choice required or named) is turned into a grammar on the answer.
#include <string>

#include "serve/chat_output_parser.h"
#include "serve/request_validation.h"
#include "serve/served_model.h"
#include "serve/tool_call_format.h"

namespace kiln::serve {

struct ChatPrompt {
  std::string text;          // what is tokenized
  std::string prefill;       // the text the answer continues (read by the parser first)
  ChatOutputOptions output;  // how the answer is read
  ForcedToolCall forced;     // what a forced call must look like (a grammar's input)
  // A forced call as a grammar (prefix, the call's JSON Schema, suffix) that every choice is
  // constrained to; empty when nothing is forced or the call is started by `prefill` instead.
  std::string forced_grammar;
};

// Throws ApiError 400 naming messages when the template refuses them (raise_exception).
ChatPrompt render_chat_prompt(const ServedModel& model, const GenerationParams& params, bool reasoning_split);

}  // namespace kiln::serve
