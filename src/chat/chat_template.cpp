// ChatTemplate: the model's Jinja chat template (or a built-in) rendered with Hugging Face's
// variables, and the choice of a built-in for GGUFs that carry no template.
#include "chat/chat_template.h"

#include <algorithm>
#include <cctype>

#include "core/error.h"
#include "format/gguf_file.h"
#include "chat/chat_template_builtins.h"

namespace kiln {
namespace {

constexpr std::string_view kMarkers[] = {
    "<|im_start|>", "<|start_header_id|>", "<|eot_id|>",       "<start_of_turn>", "<|end|>",
    "<|assistant|>", "[INST]",             "[AVAILABLE_TOOLS]", "[SYSTEM_PROMPT]",
};

std::string lowercase(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

jinja::Value message_value(const ChatMessage& m) {
  jinja::Value d = jinja::Value::dict();
  jinja::ValueDict& dict = d.as_dict();
  dict.set("role", jinja::Value(m.role));
  dict.set("content", jinja::Value(m.content));
  // Optional fields are left out when unset, as in Hugging Face's message dicts: templates test
  // them with `'tool_calls' in message` or `message.name is defined`.
  if (m.name) dict.set("name", jinja::Value(*m.name));
  if (m.tool_call_id) dict.set("tool_call_id", jinja::Value(*m.tool_call_id));
  if (m.tool_calls) dict.set("tool_calls", jinja::Value::from_json(*m.tool_calls));
  return d;
}

// The text of token `key` (an id) in the vocabulary, or "" when the key is absent.
std::string token_text(const GgufFile& gguf, const GgufArray* tokens, const std::string& key) {
  const std::optional<std::int64_t> id = gguf.get_int(key);
  if (!id || *id == -1 || *id == 0xFFFFFFFFLL) return {};
  KILN_CHECK(tokens != nullptr && tokens->elem_type == GgufType::String, "{}: {} is set but tokenizer.ggml.tokens is missing",
             gguf.path(), key);
  KILN_CHECK(*id >= 0 && static_cast<std::uint64_t>(*id) < tokens->strings.size(),
             "{}: {} = {} is outside the vocabulary of {} tokens", gguf.path(), key, *id, tokens->strings.size());
  return tokens->strings[static_cast<std::size_t>(*id)];
}

}  // namespace

std::span<const std::string_view> chat_template_marker_tokens() { return kMarkers; }

ChatTemplate::ChatTemplate(std::string source, std::string bos_token, std::string eos_token, std::string name)
    : source_(std::move(source)),
      bos_token_(std::move(bos_token)),
      eos_token_(std::move(eos_token)),
      name_(std::move(name)),
      template_(source_) {}

std::vector<std::string_view> ChatTemplate::builtin_names() {
  std::vector<std::string_view> names;
  for (const BuiltinChatTemplate& t : builtin_chat_templates()) names.push_back(t.name);
  return names;
}

std::string_view ChatTemplate::builtin_source(std::string_view name) {
  for (const BuiltinChatTemplate& t : builtin_chat_templates())
    if (t.name == name) return t.source;
  std::string known;
  for (std::string_view n : builtin_names()) known += (known.empty() ? "" : ", ") + std::string(n);
  fail("unknown chat template '{}' (built-in templates: {})", name, known);
}

ChatTemplate ChatTemplate::builtin(std::string_view name, std::string bos_token, std::string eos_token) {
  return ChatTemplate(std::string(builtin_source(name)), std::move(bos_token), std::move(eos_token), std::string(name));
}

std::string_view ChatTemplate::guess_builtin(const ChatTemplateHints& h) {
  const auto has = [&](std::string_view token) {
    return std::find(h.tokens_present.begin(), h.tokens_present.end(), token) != h.tokens_present.end();
  };
  // Special tokens are the surest sign: a model can only have been tuned on a format whose
  // markers are single tokens of its vocabulary.
  // gemma3's vocabulary has gemma2's <start_of_turn> too; only the architecture tells their
  // templates (gemma3's takes a system message, gemma2's raises) apart.
  if (lowercase(h.architecture) == "gemma3") return "gemma3";
  if (has("<|im_start|>")) return "chatml";
  if (has("<|start_header_id|>") || has("<|eot_id|>")) return "llama3";
  if (has("<start_of_turn>")) return "gemma";
  if (has("<|end|>") && has("<|assistant|>")) return "phi3";
  if (has("[SYSTEM_PROMPT]")) return "mistral-v7";
  if (has("[AVAILABLE_TOOLS]") || has("[INST]")) return "mistral-v3";
  const std::string arch = lowercase(h.architecture);
  if (arch == "qwen" || arch == "qwen2" || arch == "qwen2moe" || arch == "qwen3") return "chatml";
  if (arch.rfind("gemma", 0) == 0) return "gemma";
  if (arch == "phi3") return "phi3";
  const std::string name = lowercase(h.model_name);
  if (name.find("zephyr") != std::string::npos) return "zephyr";
  if (name.find("mistral") != std::string::npos || name.find("mixtral") != std::string::npos) return "mistral-v1";
  if (name.find("alpaca") != std::string::npos) return "alpaca";
  if (name.find("llama-2") != std::string::npos || name.find("llama2") != std::string::npos ||
      name.find("llama 2") != std::string::npos || name.find("llama v2") != std::string::npos)
    return "llama2";
  // A SentencePiece Llama without other signs is most likely Llama 2 or a fine-tune of it.
  if (arch == "llama" && h.tokenizer_model == "llama" && name.find("chat") != std::string::npos) return "llama2";
  return "alpaca";
}

ChatTemplateHints ChatTemplate::hints_from_gguf(const GgufFile& gguf) {
  ChatTemplateHints h;
  h.architecture = gguf.get_string("general.architecture").value_or("");
  h.model_name = gguf.get_string("general.name").value_or("");
  h.tokenizer_model = gguf.get_string("tokenizer.ggml.model").value_or("");
  h.tokenizer_pre = gguf.get_string("tokenizer.ggml.pre").value_or("");
  if (const GgufArray* tokens = gguf.get_array("tokenizer.ggml.tokens");
      tokens != nullptr && tokens->elem_type == GgufType::String) {
    for (const std::string& t : tokens->strings) {
      if (t.empty() || (t[0] != '<' && t[0] != '[')) continue;
      for (std::string_view m : kMarkers)
        if (t == m && std::find(h.tokens_present.begin(), h.tokens_present.end(), m) == h.tokens_present.end())
          h.tokens_present.emplace_back(m);
    }
  }
  return h;
}

ChatTemplate ChatTemplate::from_gguf(const GgufFile& gguf) {
  const GgufArray* tokens = gguf.get_array("tokenizer.ggml.tokens");
  std::string bos = token_text(gguf, tokens, "tokenizer.ggml.bos_token_id");
  std::string eos = token_text(gguf, tokens, "tokenizer.ggml.eos_token_id");
  if (std::optional<std::string> source = gguf.get_string("tokenizer.chat_template")) {
    try {
      return ChatTemplate(std::move(*source), std::move(bos), std::move(eos), "gguf");
    } catch (const Error& e) {
      fail("{}: tokenizer.chat_template: {}", gguf.path(), e.what());
    }
  }
  return builtin(guess_builtin(hints_from_gguf(gguf)), std::move(bos), std::move(eos));
}

std::string ChatTemplate::render(std::span<const ChatMessage> messages, bool add_generation_prompt,
                                 const nlohmann::ordered_json& extra) const {
  KILN_CHECK(extra.is_object() || extra.is_null(), "chat template: extra variables must be a JSON object, not {}",
             extra.type_name());
  jinja::ValueList list;
  list.reserve(messages.size());
  for (const ChatMessage& m : messages) list.push_back(message_value(m));
  jinja::Value vars = jinja::Value::dict();
  jinja::ValueDict& d = vars.as_dict();
  d.set("messages", jinja::Value::list(std::move(list)));
  d.set("tools", jinja::Value::none());
  d.set("documents", jinja::Value::none());
  d.set("add_generation_prompt", jinja::Value(add_generation_prompt));
  d.set("bos_token", jinja::Value(bos_token_));
  d.set("eos_token", jinja::Value(eos_token_));
  if (extra.is_object())
    for (auto it = extra.begin(); it != extra.end(); ++it) d.set(it.key(), jinja::Value::from_json(it.value()));
  return template_.render(vars, options_);
}

}  // namespace kiln
