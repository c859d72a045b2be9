#pragma once
// Chat templates: turn a conversation into the prompt text a chat model was trained on, by
// rendering the model's own Jinja template (GGUF key tokenizer.chat_template, copied from
// Hugging Face's tokenizer_config.json) with kiln's Jinja interpreter and the variables Hugging
// Face passes: messages, tools, add_generation_prompt, bos_token, eos_token (plus any extras).
// Models without a template get a built-in one chosen by name or guessed from the GGUF.
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "chat/jinja_interpreter.h"

namespace kiln {

class GgufFile;

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", "tool", ...
  std::string content;
  std::optional<std::string> name;
  std::optional<std::string> tool_call_id;  // tool results: the call they answer
  // Assistant tool calls, OpenAI style: [{"id": ..., "type": "function", "function": {"name": ...,
  // "arguments": {...}}}]. ordered_json keeps key order, which tojson output depends on.
  std::optional<nlohmann::ordered_json> tool_calls;
};

// What a GGUF says about its model, for choosing a built-in template when it has none.
struct ChatTemplateHints {
  std::string architecture;     // general.architecture
  std::string model_name;       // general.name
  std::string tokenizer_model;  // tokenizer.ggml.model ("llama", "gpt2")
  std::string tokenizer_pre;    // tokenizer.ggml.pre
  std::vector<std::string> tokens_present;  // which of chat_template_marker_tokens() the vocabulary has
};

// The special tokens whose presence guess_builtin() looks at ("<|im_start|>", "[INST]", ...).
std::span<const std::string_view> chat_template_marker_tokens();

class ChatTemplate {
 public:
  // Parses `source` (throws kiln::Error "chat template: line L:C: ..." if it does not parse).
  ChatTemplate(std::string source, std::string bos_token, std::string eos_token, std::string name = "custom");

  // A built-in template by name (see builtin_names()); throws kiln::Error on unknown names.
  static ChatTemplate builtin(std::string_view name, std::string bos_token, std::string eos_token);
  static std::vector<std::string_view> builtin_names();
  static std::string_view builtin_source(std::string_view name);
  // The built-in that best fits a model without a template.
  static std::string_view guess_builtin(const ChatTemplateHints& hints);

  // The GGUF's tokenizer.chat_template, or the guessed built-in when it has none; bos/eos token
  // texts come from its vocabulary. Throws kiln::Error naming the file and key on bad metadata.
  static ChatTemplate from_gguf(const GgufFile& gguf);
  static ChatTemplateHints hints_from_gguf(const GgufFile& gguf);

  // Renders the conversation. `extra` (a JSON object) adds or overrides variables: "tools" (a
  // list of tool schemas; none when absent, as Hugging Face passes it), "date_string", or any
  // template-specific switch. Throws kiln::Error (raise_exception in the template included).
  std::string render(std::span<const ChatMessage> messages, bool add_generation_prompt,
                     const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;

  const std::string& name() const { return name_; }  // "gguf", "custom" or the built-in's name
  const std::string& source() const { return source_; }
  const std::string& bos_token() const { return bos_token_; }
  const std::string& eos_token() const { return eos_token_; }
  // Limits and clock for rendering (defaults suit any real template).
  jinja::RenderOptions& render_options() { return options_; }

 private:
  std::string source_;
  std::string bos_token_;
  std::string eos_token_;
  std::string name_;
  jinja::Template template_;
  jinja::RenderOptions options_;
};

}  // namespace kiln
