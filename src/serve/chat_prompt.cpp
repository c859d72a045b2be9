#include "serve/chat_prompt.h"

#include <fmt/format.h>

#include "chat/chat_template.h"
#include "core/error.h"
#include "grammar/json_schema_grammar.h"
#include "serve/api_error.h"
#include "serve/reasoning_parser.h"

namespace kiln::serve {

namespace {

std::string render(const ChatTemplate& tmpl, const std::vector<kiln::ChatMessage>& messages, bool add_generation_prompt,
                   const nlohmann::ordered_json& extra) {
  try {
    return tmpl.render(messages, add_generation_prompt, extra);
  } catch (const Error& e) {
    throw invalid_field("messages", fmt::format("the model's chat template refused the messages: {}", e.what()));
  }
}

// How many bytes before the answer's start are searched for an open <think>: the generation
// prompt of thinking templates ends with "<think>\n"; searching the whole prompt would let a
// user's text that mentions the tag decide it.
constexpr std::size_t kReasoningTail = 32;

void describe_tools_in_system_message(std::vector<kiln::ChatMessage>& messages, const ToolRequest& tools) {
  std::string text =
      "You can call functions. To call one, answer with only a JSON object {\"name\": <function name>, \"arguments\": "
      "<an object of its arguments>}. The functions:";
  for (const nlohmann::ordered_json& t : tools.template_tools) text += "\n" + t["function"].dump();
  if (!messages.empty() && (messages.front().role == "system" || messages.front().role == "developer")) {
    messages.front().content += "\n\n" + text;
  } else {
    kiln::ChatMessage system;
    system.role = "system";
    system.content = std::move(text);
    messages.insert(messages.begin(), std::move(system));
  }
}

}  // namespace

ChatPrompt render_chat_prompt(const ServedModel& model, const GenerationParams& params, bool reasoning_split) {
  const ChatTemplate& tmpl = *model.chat;
  std::vector<kiln::ChatMessage> messages;
  for (const auto& m : params.messages) {
    kiln::ChatMessage cm;
    cm.role = m.role;
    cm.content = m.content;
    if (!m.name.empty()) cm.name = m.name;
    if (!m.tool_call_id.empty()) cm.tool_call_id = m.tool_call_id;
    if (!m.tool_calls.is_null()) cm.tool_calls = m.tool_calls;
    messages.push_back(std::move(cm));
  }
  nlohmann::ordered_json extra = params.template_kwargs;
  if (!params.tools.functions.empty()) {
    extra["tools"] = params.tools.template_tools;
    // A template that never reads `tools` would hide them from the model: they are described
    // in the system message instead, with the generic call format the parser reads (as
    // llama.cpp's generic format does).
    if (tmpl.source().find("tools") == std::string::npos && params.tools.choice.mode != ToolChoiceMode::none)
      describe_tools_in_system_message(messages, params.tools);
  }

  ChatPrompt out;
  // A final assistant message without calls is continued: rendered without the generation
  // prompt and cut right after its text, so that no end-of-turn follows (as Hugging Face's
  // continue_final_message does). A template that changes the text (trims it, drops a think
  // block) is handled as llama-server does: the turns before, the generation prompt, the text.
  const bool continues = !messages.empty() && messages.back().role == "assistant" && !messages.back().tool_calls;
  std::size_t answer_start = 0;
  if (continues) {
    out.prefill = messages.back().content;
    const std::string full = render(tmpl, messages, false, extra);
    const std::size_t at = out.prefill.empty() ? std::string::npos : full.rfind(out.prefill);
    if (at != std::string::npos) {
      out.text = full.substr(0, at + out.prefill.size());
      answer_start = at;
    } else {
      messages.pop_back();
      out.text = render(tmpl, messages, true, extra);
      answer_start = out.text.size();
      out.text += out.prefill;
    }
  } else {
    out.text = render(tmpl, messages, true, extra);
    answer_start = out.text.size();
  }

  out.output.reasoning = reasoning_split;
  out.output.starts_in_reasoning =
      reasoning_split && prompt_opens_reasoning(std::string_view(out.text).substr(
                             answer_start > kReasoningTail ? answer_start - kReasoningTail : 0));
  out.output.tools = params.tools.parsing();
  out.output.format = model.tool_format;
  out.output.max_calls = params.tools.parallel ? 1 << 20 : 1;

  // Forced tool calls, held to their schema by a grammar on every choice, so that the call
  // always parses and its arguments match the function's parameters. A named function's call
  // is started by its opening (the format's prefix and the call object up to its arguments,
  // written after the prompt as a prefill), and the grammar covers the arguments and the
  // closing: the model spends no tokens on markup it has no choice about. For `required` the
  // name is still open, so the grammar covers the whole call (prefix, a call of any function,
  // suffix). A parameters schema the converter cannot express (a keyword it refuses) leaves the
  // opening alone, so that the model at least writes a call of the right function.
  out.forced = forced_tool_call(params.tools, model.tool_format);
  if (out.forced.forced && !continues) {
    // A call is no thought: a block the generation prompt opened is closed first, as thinking
    // templates render a turn without thinking.
    if (out.output.starts_in_reasoning) {
      out.text += "\n</think>\n\n";
      out.output.starts_in_reasoning = false;
    }
    const bool named = !out.forced.arguments_schema.is_null();
    try {
      grammar::JsonGrammarOptions options;
      options.allow_newlines = false;  // a call is read by a program: at most one space between tokens
      options.prefix = named ? "" : out.forced.prefix;
      options.suffix = named ? out.forced.closing : out.forced.suffix;
      out.forced_grammar = grammar::json_schema_to_gbnf(named ? out.forced.arguments_schema : out.forced.schema, options);
    } catch (const Error&) {
      out.forced_grammar.clear();
    }
    if (named || out.forced_grammar.empty()) {
      out.prefill = out.forced.opening;
      out.text += out.forced.opening;
    }
  }
  return out;
}

}  // namespace kiln::serve
