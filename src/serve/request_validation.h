#pragma once
// Turns the JSON bodies of the OpenAI-compatible endpoints into checked C++ requests. Every
// field kiln reads is checked for type and range here, and the first wrong one is reported as
// a 400 invalid_request_error naming it (ApiError::param), before any model is touched.
// Fields kiln does not know are accepted, as OpenAI-compatible servers commonly do, and named in
// GenerationParams::unknown_fields for the server's log; fields it knows but does not implement
// (echo, suffix, ...) are refused when they would change the answer, rather than
// silently dropped (request_fields.h).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sample/sampler.h"
#include "serve/tool_calls.h"

namespace kiln::serve {

struct ChatMessage {
  std::string role;     // system, developer, user, assistant, tool
  std::string content;  // text parts joined
  std::string name;     // optional
  std::string tool_call_id;  // role tool: the call this result answers
  // Assistant: the calls it made, arguments parsed into objects for the template (null: none).
  nlohmann::ordered_json tool_calls;
};

// One prompt of /v1/completions: text or token ids.
struct PromptInput {
  bool is_text = true;
  std::string text;
  std::vector<std::int32_t> tokens;
};

struct ValidationLimits {
  int max_n = 16;                 // choices per request
  int max_stop = 16;              // stop strings (OpenAI allows 4)
  int max_stop_bytes = 256;       // length of one stop string
  int max_prompts = 64;           // prompts in one /v1/completions request
  int max_messages = 4096;
  long long max_tokens = 1 << 20; // upper bound of max_tokens itself (the context bounds it again)
  int max_embedding_inputs = 2048;  // inputs in one /v1/embeddings request (OpenAI's limit)
};

struct GenerationParams {
  bool chat = false;
  std::string model;
  std::vector<ChatMessage> messages;  // chat
  std::vector<PromptInput> prompts;   // completions (one or more)
  int max_tokens = -1;                // -1: not given (chat: until the context ends; completions: 16)
  SamplerParams sampling;             // OpenAI's defaults: temperature 1, top_p 1, no top-k/min-p
  bool seed_given = false;
  std::vector<std::string> stop;
  int n = 1;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  int logprobs = -1;           // -1: off; else how many alternatives per token (chat: top_logprobs)
  bool ignore_eos = false;     // kiln extra (benchmarks)
  std::string user;
  ToolRequest tools;  // chat: tools, tool_choice, parallel_tool_calls
  // chat_template_kwargs: extra variables for the chat template (enable_thinking, ...).
  nlohmann::ordered_json template_kwargs = nlohmann::ordered_json::object();
  std::vector<std::string> unknown_fields;  // accepted, reported once in the server's log
  bool responses = false;  // /v1/responses: a chat request answered in the Responses API's shape
  // Structured output (serve/structured_output.h): the GBNF every choice is constrained to, and
  // the request field it came from (for errors). Empty: unconstrained.
  std::string grammar;
  std::string grammar_field;
};

// Throw ApiError (400) naming the first wrong field.
GenerationParams parse_chat_request(const nlohmann::json& body, const ValidationLimits& limits);
GenerationParams parse_completion_request(const nlohmann::json& body, const ValidationLimits& limits);

// /v1/embeddings: `input` is a string, an array of strings, an array of token ids or an array of
// token-id arrays (PromptInput each); what a text's tokens are is the API's business.
struct EmbeddingParams {
  std::string model;
  std::vector<PromptInput> inputs;
  bool input_is_list = false;  // several inputs: errors name input[i], else input
  bool base64 = false;         // encoding_format "base64": little-endian float32, base64
  int dimensions = 0;          // 0: the model's width; else the leading dimensions, normalised again
  std::string user;

  std::string input_field(std::size_t i) const;  // "input" or "input[i]"
};

EmbeddingParams parse_embedding_request(const nlohmann::json& body, const ValidationLimits& limits);

// llama.cpp server's /tokenize and /detokenize (with an optional "model" for several models).
struct TokenizeParams {
  std::string model;  // "" = the default model
  std::string content;
  bool add_special = false;
  bool parse_special = true;
  bool with_pieces = false;
};
struct DetokenizeParams {
  std::string model;
  std::vector<std::int32_t> tokens;
};
TokenizeParams parse_tokenize_request(const nlohmann::json& body);
DetokenizeParams parse_detokenize_request(const nlohmann::json& body);

// Parses a request body as JSON; throws ApiError 400 with the parser's position on bad JSON or
// when the top level is not an object.
nlohmann::json parse_json_body(const std::string& body);

}  // namespace kiln::serve
