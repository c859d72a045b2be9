#include "serve/request_validation.h"

#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "serve/api_error.h"
#include "serve/request_json.h"
#include "serve/request_fields.h"
#include "serve/tool_request.h"

namespace kiln::serve {

using json = nlohmann::json;

namespace {

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    default: return "an unsupported value";
  }
}

[[noreturn]] void wrong_type(const std::string& field, const char* expected, const json& v) {
  throw invalid_field(field, fmt::format("'{}' must be {}, got {}", field, expected, type_name(v)));
}

const json* field(const json& body, const char* name) { return present(body, name); }

std::string get_string(const json& v, const std::string& name) {
  if (!v.is_string()) wrong_type(name, "a string", v);
  return v.get<std::string>();
}

bool get_bool(const json& v, const std::string& name) {
  if (!v.is_boolean()) wrong_type(name, "a boolean", v);
  return v.get<bool>();
}

long long get_int(const json& v, const std::string& name, long long lo, long long hi) {
  if (!v.is_number_integer()) wrong_type(name, "an integer", v);
  if (v.is_number_unsigned() && v.get<unsigned long long>() > static_cast<unsigned long long>(hi))
    throw invalid_field(name, fmt::format("'{}' must be between {} and {}, got {}", name, lo, hi, v.get<unsigned long long>()));
  const long long x = v.get<long long>();
  if (x < lo || x > hi) throw invalid_field(name, fmt::format("'{}' must be between {} and {}, got {}", name, lo, hi, x));
  return x;
}

double get_number(const json& v, const std::string& name, double lo, double hi, bool lo_open = false) {
  if (!v.is_number()) wrong_type(name, "a number", v);
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi || (lo_open && x == lo)) {
    throw invalid_field(name, fmt::format("'{}' must be {} {} and at most {}, got {}", name, lo_open ? "greater than" : "at least",
                                          lo, hi, x));
  }
  return x;
}

void parse_stop(const json& body, GenerationParams& p, const ValidationLimits& limits) {
  const json* v = field(body, "stop");
  if (!v) return;
  auto add = [&](const json& s, const std::string& name) {
    std::string text = get_string(s, name);
    if (text.empty()) throw invalid_field(name, fmt::format("'{}' must not be empty", name));
    if (static_cast<int>(text.size()) > limits.max_stop_bytes)
      throw invalid_field(name, fmt::format("'{}' is longer than {} bytes", name, limits.max_stop_bytes));
    p.stop.push_back(std::move(text));
  };
  if (v->is_string()) return add(*v, "stop");
  if (!v->is_array()) wrong_type("stop", "a string or an array of strings", *v);
  if (static_cast<int>(v->size()) > limits.max_stop)
    throw invalid_field("stop", fmt::format("'stop' has {} strings; at most {} are allowed", v->size(), limits.max_stop));
  for (std::size_t i = 0; i < v->size(); ++i) add((*v)[i], fmt::format("stop[{}]", i));
}

// logit_bias: OpenAI's object of token id (a decimal string) -> bias in [-100, 100], or
// llama-server's array of [id, bias] pairs; in both, a bias of false bans the token (-inf), as
// llama-server reads it. Ids are checked against the model's vocabulary once the model is known
// (openai_api.cpp); llama-server's text keys (tokenized there) are refused: kiln takes ids only.
std::vector<LogitBias> parse_logit_bias(const json& v) {
  constexpr const char* kName = "logit_bias";
  const auto bias_of = [&](const json& b, const std::string& where) {
    if (b.is_boolean()) {
      if (b.get<bool>())
        throw invalid_field(kName,
                            fmt::format("'{}' is true; a bias is a number in [-100, 100] or false (ban)", where));
      return -std::numeric_limits<float>::infinity();
    }
    if (!b.is_number())
      throw invalid_field(kName,
                          fmt::format("'{}' must be a number in [-100, 100] or false, got {}", where, type_name(b)));
    const double x = b.get<double>();
    if (!(x >= -100.0 && x <= 100.0))
      throw invalid_field(kName, fmt::format("'{}' must be between -100 and 100, got {}", where, x));
    return static_cast<float>(x);
  };
  std::vector<LogitBias> biases;
  if (v.is_object()) {
    for (const auto& [key, value] : v.items()) {
      const std::string where = fmt::format("logit_bias[\"{}\"]", key.substr(0, 32));
      // A token id in decimal: digits only, no sign, no spaces, at most 10 digits.
      if (key.empty() || key.size() > 10 || key.find_first_not_of("0123456789") != std::string::npos)
        throw invalid_field(kName, fmt::format("the keys of 'logit_bias' are token ids in decimal; '{}' is not one",
                                               key.substr(0, 32)));
      const long long id = std::stoll(key);
      if (id > std::numeric_limits<std::int32_t>::max())
        throw invalid_field(kName, fmt::format("token id {} of 'logit_bias' is outside the vocabulary", id));
      biases.push_back({static_cast<int>(id), bias_of(value, where)});
    }
    return biases;
  }
  if (!v.is_array()) wrong_type(kName, "an object of token id -> bias, or an array of [token id, bias] pairs", v);
  for (std::size_t i = 0; i < v.size(); ++i) {
    const std::string where = fmt::format("logit_bias[{}]", i);
    const json& pair = v[i];
    if (!pair.is_array() || pair.size() != 2)
      throw invalid_field(kName, fmt::format("'{}' must be a [token id, bias] pair", where));
    if (!pair[0].is_number_integer())
      throw invalid_field(kName, fmt::format("'{}[0]' must be a token id (kiln serve takes ids, not text), got {}",
                                             where, type_name(pair[0])));
    const long long id = get_int(pair[0], where + "[0]", 0, std::numeric_limits<std::int32_t>::max());
    biases.push_back({static_cast<int>(id), bias_of(pair[1], where + "[1]")});
  }
  return biases;
}

// The fields chat and completions share.
void parse_common(const json& body, GenerationParams& p, const ValidationLimits& limits) {
  const json* model = field(body, "model");
  if (!model) throw invalid_field("model", "'model' is required");
  p.model = get_string(*model, "model");
  if (p.model.empty()) throw invalid_field("model", "'model' must not be empty");

  // OpenAI's sampling defaults; top_k, min_p and the repeat penalty are extras (llama.cpp's names).
  p.sampling = SamplerParams{};
  p.sampling.temperature = 1.0f;
  p.sampling.top_p = 1.0f;
  p.sampling.top_k = 0;
  p.sampling.min_p = 0.0f;
  p.sampling.repeat_penalty = 1.0f;
  if (const json* v = field(body, "temperature")) p.sampling.temperature = static_cast<float>(get_number(*v, "temperature", 0, 2));
  if (const json* v = field(body, "top_p")) p.sampling.top_p = static_cast<float>(get_number(*v, "top_p", 0, 1));
  if (const json* v = field(body, "top_k")) p.sampling.top_k = static_cast<int>(get_int(*v, "top_k", 0, 1 << 30));
  if (const json* v = field(body, "min_p")) p.sampling.min_p = static_cast<float>(get_number(*v, "min_p", 0, 1));
  if (const json* v = field(body, "presence_penalty"))
    p.sampling.presence_penalty = static_cast<float>(get_number(*v, "presence_penalty", -2, 2));
  if (const json* v = field(body, "frequency_penalty"))
    p.sampling.frequency_penalty = static_cast<float>(get_number(*v, "frequency_penalty", -2, 2));
  for (const char* name : {"repetition_penalty", "repeat_penalty"})
    if (const json* v = field(body, name)) p.sampling.repeat_penalty = static_cast<float>(get_number(*v, name, 0, 10, true));
  if (const json* v = field(body, "repeat_last_n")) p.sampling.repeat_last_n = static_cast<int>(get_int(*v, "repeat_last_n", -1, 1 << 30));
  if (const json* v = field(body, "seed")) {
    // OpenAI's seed is a signed 64-bit integer; the sampler takes its bits as they are.
    if (!v->is_number_integer()) wrong_type("seed", "an integer", *v);
    p.sampling.seed = v->is_number_unsigned() ? v->get<std::uint64_t>() : static_cast<std::uint64_t>(v->get<std::int64_t>());
    p.seed_given = true;
  }

  for (const char* name : {"max_tokens", "max_completion_tokens"})
    if (const json* v = field(body, name)) p.max_tokens = static_cast<int>(get_int(*v, name, 1, limits.max_tokens));

  parse_stop(body, p, limits);
  if (const json* v = field(body, "n")) p.n = static_cast<int>(get_int(*v, "n", 1, limits.max_n));
  if (const json* v = field(body, "stream")) p.stream = get_bool(*v, "stream");
  if (const json* v = field(body, "stream_options")) {
    if (!v->is_object()) wrong_type("stream_options", "an object", *v);
    if (!p.stream) throw invalid_field("stream_options", "'stream_options' is only allowed when 'stream' is true");
    if (const json* u = field(*v, "include_usage")) p.include_usage = get_bool(*u, "stream_options.include_usage");
  }
  if (const json* v = field(body, "user")) p.user = get_string(*v, "user");
  if (const json* v = field(body, "ignore_eos")) p.ignore_eos = get_bool(*v, "ignore_eos");

  if (const json* v = field(body, "typical_p"))
    p.sampling.typical_p = static_cast<float>(get_number(*v, "typical_p", 0, 1));
  if (const json* v = field(body, "logit_bias")) p.sampling.logit_bias = parse_logit_bias(*v);

  // Known fields kiln does not implement: refuse them when they would change the answer.
  // Chat reads tools (tool_request.h); completions have no tool calling.
  for (const char* name : {"tools", "functions"}) {
    if (const json* v = p.chat ? nullptr : field(body, name)) {
      if (!v->is_array()) wrong_type(name, "an array", *v);
      if (!v->empty()) throw invalid_field(name, fmt::format("'{}' (tool calling) is not supported by kiln serve", name));
    }
  }
  // response_format, grammar, json_schema and vLLM's guided_* fields: serve/structured_output.h.
}

std::string message_content(const json& v, const std::string& name) {
  if (v.is_string()) return v.get<std::string>();
  if (!v.is_array()) wrong_type(name, "a string or an array of content parts", v);
  std::string text;
  for (std::size_t j = 0; j < v.size(); ++j) {
    const std::string part = fmt::format("{}[{}]", name, j);
    const json& p = v[j];
    if (!p.is_object()) wrong_type(part, "an object", p);
    const json* type = field(p, "type");
    if (!type) throw invalid_field(part + ".type", fmt::format("'{}.type' is required", part));
    const std::string t = get_string(*type, part + ".type");
    if (t != "text") throw invalid_field(part + ".type", fmt::format("'{}.type' is '{}'; kiln serve takes text parts only", part, t));
    const json* body = field(p, "text");
    if (!body) throw invalid_field(part + ".text", fmt::format("'{}.text' is required", part));
    text += get_string(*body, part + ".text");
  }
  return text;
}

std::vector<std::int32_t> token_array(const json& v, const std::string& name) {
  std::vector<std::int32_t> ids;
  ids.reserve(v.size());
  for (std::size_t i = 0; i < v.size(); ++i)
    ids.push_back(static_cast<std::int32_t>(get_int(v[i], fmt::format("{}[{}]", name, i), 0, std::numeric_limits<std::int32_t>::max())));
  return ids;
}

}  // namespace

json parse_json_body(const std::string& body) {
  json j;
  // The key being read, so that a value the parser rejects (a number beyond double's range such
  // as 1e400) is reported against its field rather than as the parser's own message.
  std::string key;
  const json::parser_callback_t track_key = [&key](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && parsed.is_string()) key = parsed.get<std::string>().substr(0, 64);
    return true;
  };
  try {
    j = json::parse(body, track_key);
  } catch (const json::parse_error& e) {
    throw ApiError(400, "invalid_request_error", fmt::format("the request body is not valid JSON (byte {})", e.byte), "",
                   "invalid_json");
  } catch (const json::out_of_range&) {
    if (key.empty())
      throw ApiError(400, "invalid_request_error", "the request body holds a number out of range", "", "invalid_json");
    throw invalid_field(key, fmt::format("'{}' holds a number out of range", key));
  } catch (const json::exception&) {
    throw ApiError(400, "invalid_request_error", "the request body is not valid JSON", "", "invalid_json");
  }
  if (!j.is_object())
    throw ApiError(400, "invalid_request_error", fmt::format("the request body must be a JSON object, got {}", type_name(j)), "",
                   "invalid_json");
  return j;
}

GenerationParams parse_chat_request(const json& body, const ValidationLimits& limits) {
  GenerationParams p;
  p.chat = true;
  p.unknown_fields = check_request_fields(body, RequestKind::chat);
  parse_common(body, p, limits);
  p.tools = parse_tool_request(body);
  if (const json* v = field(body, "chat_template_kwargs")) {
    if (!v->is_object()) wrong_type("chat_template_kwargs", "an object", *v);
    for (auto it = v->begin(); it != v->end(); ++it) {
      // The variables the server sets itself cannot be replaced.
      for (const char* own : {"messages", "tools", "add_generation_prompt", "bos_token", "eos_token"})
        if (it.key() == own)
          throw invalid_field("chat_template_kwargs." + it.key(),
                              fmt::format("'chat_template_kwargs.{}' is set by the server; it cannot be passed", it.key()));
      p.template_kwargs[it.key()] = it.value();
    }
  }
  const json* messages = field(body, "messages");
  if (!messages) throw invalid_field("messages", "'messages' is required");
  if (!messages->is_array()) wrong_type("messages", "an array", *messages);
  if (messages->empty()) throw invalid_field("messages", "'messages' must hold at least one message");
  if (static_cast<int>(messages->size()) > limits.max_messages)
    throw invalid_field("messages", fmt::format("'messages' holds more than {} messages", limits.max_messages));
  for (std::size_t i = 0; i < messages->size(); ++i) {
    const std::string name = fmt::format("messages[{}]", i);
    const json& m = (*messages)[i];
    if (!m.is_object()) wrong_type(name, "an object", m);
    ChatMessage msg;
    const json* role = field(m, "role");
    if (!role) throw invalid_field(name + ".role", fmt::format("'{}.role' is required", name));
    msg.role = get_string(*role, name + ".role");
    if (msg.role == "function")
      throw invalid_field(name + ".role", fmt::format("'{}.role' is 'function' (OpenAI's deprecated function calling); send the "
                                                      "result as role 'tool' with its 'tool_call_id'", name));
    if (msg.role != "system" && msg.role != "developer" && msg.role != "user" && msg.role != "assistant" && msg.role != "tool")
      throw invalid_field(name + ".role",
                          fmt::format("'{}.role' is '{}'; expected system, developer, user, assistant or tool", name, msg.role));
    const json* content = field(m, "content");
    if (content) {
      msg.content = message_content(*content, name + ".content");
    } else if (msg.role != "assistant") {
      throw invalid_field(name + ".content", fmt::format("'{}.content' is required", name));
    }
    if (const json* n = field(m, "name")) msg.name = get_string(*n, name + ".name");
    if (const json* calls = field(m, "tool_calls")) {
      if (msg.role != "assistant")
        throw invalid_field(name + ".tool_calls", fmt::format("'{}.tool_calls' belongs to assistant messages", name));
      msg.tool_calls = parse_message_tool_calls(*calls, name + ".tool_calls");
    }
    if (field(m, "function_call"))
      throw invalid_field(name + ".function_call",
                          fmt::format("'{}.function_call' is OpenAI's deprecated function calling; send 'tool_calls'", name));
    if (msg.role == "tool") {
      const json* id = field(m, "tool_call_id");
      if (!id) throw invalid_field(name + ".tool_call_id", fmt::format("'{}.tool_call_id' is required for role tool", name));
      msg.tool_call_id = get_string(*id, name + ".tool_call_id");
    }
    p.messages.push_back(std::move(msg));
  }
  if (const json* v = field(body, "logprobs")) {
    if (get_bool(*v, "logprobs")) p.logprobs = 0;
  }
  if (const json* v = field(body, "top_logprobs")) {
    const int k = static_cast<int>(get_int(*v, "top_logprobs", 0, 20));
    if (p.logprobs < 0) throw invalid_field("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    p.logprobs = k;
  }
  return p;
}

GenerationParams parse_completion_request(const json& body, const ValidationLimits& limits) {
  GenerationParams p;
  p.chat = false;
  p.unknown_fields = check_request_fields(body, RequestKind::completion);
  parse_common(body, p, limits);
  const json* prompt = field(body, "prompt");
  if (!prompt) throw invalid_field("prompt", "'prompt' is required");
  if (prompt->is_string()) {
    p.prompts.push_back({true, prompt->get<std::string>(), {}});
  } else if (prompt->is_array()) {
    if (prompt->empty()) throw invalid_field("prompt", "'prompt' must not be an empty array");
    const json& first = (*prompt)[0];
    if (first.is_number_integer()) {
      p.prompts.push_back({false, "", token_array(*prompt, "prompt")});
    } else {
      if (static_cast<int>(prompt->size()) > limits.max_prompts)
        throw invalid_field("prompt", fmt::format("'prompt' holds more than {} prompts", limits.max_prompts));
      for (std::size_t i = 0; i < prompt->size(); ++i) {
        const std::string name = fmt::format("prompt[{}]", i);
        const json& item = (*prompt)[i];
        if (item.is_string()) {
          p.prompts.push_back({true, item.get<std::string>(), {}});
        } else if (item.is_array()) {
          if (item.empty()) throw invalid_field(name, fmt::format("'{}' must not be an empty array", name));
          p.prompts.push_back({false, "", token_array(item, name)});
        } else {
          wrong_type(name, "a string or an array of token ids", item);
        }
      }
    }
  } else {
    wrong_type("prompt", "a string, an array of strings, or an array of token ids", *prompt);
  }
  if (const json* v = field(body, "logprobs")) {
    // Completions' logprobs is a count of alternatives (OpenAI allows up to 5; kiln up to 20).
    if (v->is_boolean()) wrong_type("logprobs", "an integer (the number of alternatives)", *v);
    p.logprobs = static_cast<int>(get_int(*v, "logprobs", 0, 20));
  }
  if (const json* v = field(body, "echo")) {
    if (get_bool(*v, "echo")) throw invalid_field("echo", "'echo' is not supported by kiln serve");
  }
  if (const json* v = field(body, "suffix")) {
    if (!get_string(*v, "suffix").empty()) throw invalid_field("suffix", "'suffix' (insertion) is not supported by kiln serve");
  }
  if (const json* v = field(body, "best_of")) {
    const long long b = get_int(*v, "best_of", 1, limits.max_n);
    if (b != p.n) throw invalid_field("best_of", "'best_of' other than 'n' is not supported by kiln serve");
  }
  if (p.max_tokens < 0) p.max_tokens = 16;  // OpenAI's default for completions
  return p;
}

std::string EmbeddingParams::input_field(std::size_t i) const {
  return input_is_list ? fmt::format("input[{}]", i) : std::string("input");
}

EmbeddingParams parse_embedding_request(const json& body, const ValidationLimits& limits) {
  EmbeddingParams p;
  const json* model = field(body, "model");
  if (!model) throw invalid_field("model", "'model' is required");
  p.model = get_string(*model, "model");
  if (p.model.empty()) throw invalid_field("model", "'model' must not be empty");
  const json* input = field(body, "input");
  if (!input) throw invalid_field("input", "'input' is required");
  auto text = [&](const json& v, const std::string& name) {
    std::string t = v.get<std::string>();
    // OpenAI refuses an empty string: it has no tokens to embed (a BOS alone says nothing).
    if (t.empty()) throw invalid_field(name, fmt::format("'{}' must not be an empty string", name));
    p.inputs.push_back({true, std::move(t), {}});
  };
  if (input->is_string()) {
    text(*input, "input");
  } else if (input->is_array()) {
    if (input->empty()) throw invalid_field("input", "'input' must not be an empty array");
    if ((*input)[0].is_number_integer()) {
      p.inputs.push_back({false, "", token_array(*input, "input")});
    } else {
      if (static_cast<int>(input->size()) > limits.max_embedding_inputs)
        throw invalid_field("input", fmt::format("'input' holds {} inputs; at most {} are allowed", input->size(),
                                                 limits.max_embedding_inputs));
      p.input_is_list = true;
      for (std::size_t i = 0; i < input->size(); ++i) {
        const std::string name = fmt::format("input[{}]", i);
        const json& item = (*input)[i];
        if (item.is_string()) {
          text(item, name);
        } else if (item.is_array()) {
          if (item.empty()) throw invalid_field(name, fmt::format("'{}' must not be an empty array", name));
          p.inputs.push_back({false, "", token_array(item, name)});
        } else {
          wrong_type(name, "a string or an array of token ids", item);
        }
      }
    }
  } else {
    wrong_type("input", "a string, an array of strings, an array of token ids or an array of token-id arrays", *input);
  }
  if (const json* v = field(body, "encoding_format")) {
    const std::string f = get_string(*v, "encoding_format");
    if (f != "float" && f != "base64")
      throw invalid_field("encoding_format", fmt::format("'encoding_format' is '{}'; expected float or base64", f));
    p.base64 = f == "base64";
  }
  if (const json* v = field(body, "dimensions")) p.dimensions = static_cast<int>(get_int(*v, "dimensions", 1, 1 << 20));
  if (const json* v = field(body, "user")) p.user = get_string(*v, "user");
  return p;
}

TokenizeParams parse_tokenize_request(const json& body) {
  TokenizeParams p;
  if (const json* v = field(body, "model")) p.model = get_string(*v, "model");
  const json* content = field(body, "content");
  if (!content) throw invalid_field("content", "'content' is required");
  p.content = get_string(*content, "content");
  if (const json* v = field(body, "add_special")) p.add_special = get_bool(*v, "add_special");
  if (const json* v = field(body, "parse_special")) p.parse_special = get_bool(*v, "parse_special");
  if (const json* v = field(body, "with_pieces")) p.with_pieces = get_bool(*v, "with_pieces");
  return p;
}

DetokenizeParams parse_detokenize_request(const json& body) {
  DetokenizeParams p;
  if (const json* v = field(body, "model")) p.model = get_string(*v, "model");
  const json* tokens = field(body, "tokens");
  if (!tokens) throw invalid_field("tokens", "'tokens' is required");
  if (!tokens->is_array()) wrong_type("tokens", "an array of token ids", *tokens);
  p.tokens = token_array(*tokens, "tokens");
  return p;
}

}  // namespace kiln::serve
