// Request validation: every field's type and range, each wrong one named in a 400.
#include "serve/request_validation.h"

#include <gtest/gtest.h>

#include <limits>
#include <map>
#include <nlohmann/json.hpp>

#include "serve/api_error.h"

namespace kiln::serve {
namespace {

using json = nlohmann::json;

json chat_body() { return json{{"model", "m"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}}; }
json completion_body() { return json{{"model", "m"}, {"prompt", "Once"}}; }

// The ApiError a parse throws, or a failure when it does not throw one.
ApiError chat_error(const json& body) {
  try {
    parse_chat_request(body, ValidationLimits{});
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted: " << body.dump();
  return ApiError(0, "", "");
}
ApiError completion_error(const json& body) {
  try {
    parse_completion_request(body, ValidationLimits{});
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted: " << body.dump();
  return ApiError(0, "", "");
}

TEST(RequestValidation, ChatDefaultsFollowOpenAI) {
  GenerationParams p = parse_chat_request(chat_body(), ValidationLimits{});
  EXPECT_TRUE(p.chat);
  EXPECT_EQ(p.model, "m");
  ASSERT_EQ(p.messages.size(), 1u);
  EXPECT_EQ(p.messages[0].role, "user");
  EXPECT_EQ(p.messages[0].content, "hi");
  EXPECT_EQ(p.max_tokens, -1);
  EXPECT_FLOAT_EQ(p.sampling.temperature, 1.0f);
  EXPECT_FLOAT_EQ(p.sampling.top_p, 1.0f);
  EXPECT_EQ(p.n, 1);
  EXPECT_FALSE(p.stream);
  EXPECT_EQ(p.logprobs, -1);
}

TEST(RequestValidation, ChatReadsEveryField) {
  json b = chat_body();
  b["messages"] = {{{"role", "system"}, {"content", "be brief"}},
                   {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "a"}}, {{"type", "text"}, {"text", "b"}}}}},
                   {{"role", "assistant"}, {"content", nullptr}}};
  b["max_completion_tokens"] = 12;
  b["temperature"] = 0;
  b["top_p"] = 0.5;
  b["top_k"] = 40;
  b["min_p"] = 0.1;
  b["stop"] = {"a", "bb"};
  b["seed"] = -3;
  b["presence_penalty"] = 1.5;
  b["frequency_penalty"] = -1;
  b["logprobs"] = true;
  b["top_logprobs"] = 3;
  b["n"] = 2;
  b["user"] = "u1";
  b["stream"] = true;
  b["stream_options"] = {{"include_usage", true}};
  b["repetition_penalty"] = 1.1;
  b["ignore_eos"] = true;
  b["some_unknown_field"] = {1, 2};
  GenerationParams p = parse_chat_request(b, ValidationLimits{});
  EXPECT_EQ(p.messages[1].content, "ab");
  EXPECT_EQ(p.messages[2].content, "");
  EXPECT_EQ(p.max_tokens, 12);
  EXPECT_EQ(p.sampling.temperature, 0.0f);
  EXPECT_EQ(p.sampling.top_k, 40);
  EXPECT_EQ(p.stop, (std::vector<std::string>{"a", "bb"}));
  EXPECT_TRUE(p.seed_given);
  EXPECT_EQ(p.sampling.seed, static_cast<std::uint64_t>(-3));
  EXPECT_EQ(p.logprobs, 3);
  EXPECT_EQ(p.n, 2);
  EXPECT_TRUE(p.stream);
  EXPECT_TRUE(p.include_usage);
  EXPECT_FLOAT_EQ(p.sampling.repeat_penalty, 1.1f);
  EXPECT_TRUE(p.ignore_eos);
  EXPECT_EQ(p.user, "u1");
}

TEST(RequestValidation, NullMeansNotGiven) {
  json b = chat_body();
  for (const char* f : {"temperature", "top_p", "max_tokens", "stop", "seed", "n", "stream", "stream_options", "user"}) b[f] = nullptr;
  GenerationParams p = parse_chat_request(b, ValidationLimits{});
  EXPECT_FLOAT_EQ(p.sampling.temperature, 1.0f);
  EXPECT_FALSE(p.seed_given);
}

TEST(RequestValidation, WrongTypesNameTheField) {
  const std::vector<std::pair<const char*, json>> cases = {
      {"model", 5},           {"temperature", "hot"}, {"top_p", true},  {"top_k", 1.5},        {"min_p", "x"},
      {"max_tokens", "10"},   {"max_tokens", 2.5},    {"n", "2"},       {"stream", 1},         {"stop", 3},
      {"seed", 1.5},          {"presence_penalty", json::object()}, {"user", 7},    {"stream_options", 1}, {"messages", "hi"},
      {"frequency_penalty", "0"}, {"logprobs", 1},   {"ignore_eos", "yes"}};
  for (const auto& [field, value] : cases) {
    json b = chat_body();
    b[field] = value;
    if (std::string(field) == "stream_options") b["stream"] = true;
    ApiError e = chat_error(b);
    EXPECT_EQ(e.status, 400) << field;
    EXPECT_EQ(e.type, "invalid_request_error") << field;
    EXPECT_EQ(e.param, field) << field << ": " << e.what();
    EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
  }
}

TEST(RequestValidation, OutOfRangeValuesNameTheField) {
  const std::vector<std::pair<const char*, json>> cases = {
      {"temperature", -0.1}, {"temperature", 2.5},  {"top_p", 1.5},          {"top_p", -1},     {"top_k", -1},
      {"min_p", 2},          {"max_tokens", 0},     {"max_tokens", -5},      {"n", 0},          {"n", 17},
      {"presence_penalty", 3}, {"frequency_penalty", -2.5}, {"top_logprobs", 21}, {"repetition_penalty", 0},
      {"max_completion_tokens", 1e12}, {"max_tokens", 18446744073709551615ull}};
  for (const auto& [field, value] : cases) {
    json b = chat_body();
    b[field] = value;
    if (std::string(field) == "top_logprobs") b["logprobs"] = true;
    ApiError e = chat_error(b);
    EXPECT_EQ(e.status, 400) << field;
    EXPECT_EQ(e.param, field) << field << " = " << value.dump() << ": " << e.what();
  }
}

TEST(RequestValidation, MessagesAreChecked) {
  const std::vector<std::pair<json, std::string>> cases = {
      {json::array(), "messages"},
      {{5}, "messages[0]"},
      {{{{"content", "x"}}}, "messages[0].role"},
      {{{{"role", "wizard"}, {"content", "x"}}}, "messages[0].role"},
      {{{{"role", "user"}}}, "messages[0].content"},
      {{{{"role", "user"}, {"content", 5}}}, "messages[0].content"},
      {{{{"role", "user"}, {"content", "ok"}}, {{"role", "user"}, {"content", {{{"type", "image_url"}}}}}}, "messages[1].content[0].type"},
      {{{{"role", "user"}, {"content", {{{"type", "text"}}}}}}, "messages[0].content[0].text"},
      {{{{"role", "user"}, {"content", "x"}, {"name", 3}}}, "messages[0].name"},
  };
  for (const auto& [messages, param] : cases) {
    json b = chat_body();
    b["messages"] = messages;
    EXPECT_EQ(chat_error(b).param, param) << messages.dump();
  }
  json b = chat_body();
  b.erase("messages");
  EXPECT_EQ(chat_error(b).param, "messages");
  b = chat_body();
  b.erase("model");
  EXPECT_EQ(chat_error(b).param, "model");
}

TEST(RequestValidation, StopStringsAreChecked) {
  json b = chat_body();
  b["stop"] = "x";
  EXPECT_EQ(parse_chat_request(b, ValidationLimits{}).stop, std::vector<std::string>{"x"});
  b["stop"] = {"a", 1};
  EXPECT_EQ(chat_error(b).param, "stop[1]");
  b["stop"] = {""};
  EXPECT_EQ(chat_error(b).param, "stop[0]");
  b["stop"] = json::array();
  for (int i = 0; i < 17; ++i) b["stop"].push_back("s" + std::to_string(i));
  EXPECT_EQ(chat_error(b).param, "stop");
  b["stop"] = {std::string(300, 'x')};
  EXPECT_EQ(chat_error(b).param, "stop[0]");
}

TEST(RequestValidation, UnsupportedFeaturesAreRefusedNotIgnored) {
  json b = chat_body();
  b["stream_options"] = {{"include_usage", true}};  // without stream
  EXPECT_EQ(chat_error(b).param, "stream_options");
  b = chat_body();
  b["tools"] = {{{"type", "function"}}};
  EXPECT_EQ(chat_error(b).param, "tools[0].function");
  b = chat_body();
  b["top_logprobs"] = 2;  // without logprobs
  EXPECT_EQ(chat_error(b).param, "top_logprobs");
  b = chat_body();
  b["logit_bias"] = json::object();
  b["tools"] = json::array();
  b["response_format"] = {{"type", "text"}};
  EXPECT_NO_THROW(parse_chat_request(b, ValidationLimits{}));
}

TEST(RequestValidation, LogitBiasTakesOpenAIsObjectAndLlamaServersPairs) {
  json b = chat_body();
  b["logit_bias"] = {{"50256", -100}, {"7", 2.5}, {"0", false}};
  GenerationParams p = parse_chat_request(b, ValidationLimits{});
  ASSERT_EQ(p.sampling.logit_bias.size(), 3u);
  std::map<int, float> got;
  for (const LogitBias& e : p.sampling.logit_bias) got[e.id] = e.bias;
  EXPECT_EQ(got[50256], -100.0f);
  EXPECT_EQ(got[7], 2.5f);
  EXPECT_EQ(got[0], -std::numeric_limits<float>::infinity());
  b["logit_bias"] = json::array({json::array({15, 1}), json::array({15, false})});
  p = parse_completion_request(json{{"model", "m"}, {"prompt", "x"}, {"logit_bias", b["logit_bias"]}},
                               ValidationLimits{});
  ASSERT_EQ(p.sampling.logit_bias.size(), 2u);
  EXPECT_EQ(p.sampling.logit_bias[0].id, 15);
  EXPECT_EQ(p.sampling.logit_bias[0].bias, 1.0f);
  EXPECT_EQ(p.sampling.logit_bias[1].bias, -std::numeric_limits<float>::infinity());
  b["logit_bias"] = json::object();
  EXPECT_TRUE(parse_chat_request(b, ValidationLimits{}).sampling.logit_bias.empty());

  for (const json& bad :
       {json{{"-1", 1}}, json{{"abc", 1}}, json{{" 5", 1}}, json{{"99999999999", 1}}, json{{"5", 100.5}},
        json{{"5", -101}}, json{{"5", true}}, json{{"5", "1"}}, json{{"5", nullptr}},
        json::array({json::array({"hello", 1})}), json::array({json::array({5})}), json::array({json::array({-5, 1})}),
        json::array({5, 1}), json("5"), json(3)}) {
    b["logit_bias"] = bad;
    EXPECT_EQ(chat_error(b).param.rfind("logit_bias", 0), 0u) << bad.dump();
  }
}

TEST(RequestValidation, TypicalPIsAProbability) {
  json b = chat_body();
  EXPECT_EQ(parse_chat_request(b, ValidationLimits{}).sampling.typical_p, 1.0f);
  b["typical_p"] = 0.9;
  EXPECT_FLOAT_EQ(parse_chat_request(b, ValidationLimits{}).sampling.typical_p, 0.9f);
  for (const json& bad : {json(1.5), json(-0.1), json("0.5"), json(true)}) {
    b["typical_p"] = bad;
    EXPECT_EQ(chat_error(b).param, "typical_p") << bad.dump();
  }
}

json weather_tool() {
  return {{"type", "function"},
          {"function",
           {{"name", "get_weather"},
            {"description", "Weather in a city"},
            {"parameters", {{"type", "object"}, {"properties", {{"city", {{"type", "string"}}}}}, {"required", {"city"}}}}}}};
}

TEST(RequestValidation, ToolsAndToolChoice) {
  json b = chat_body();
  b["tools"] = {weather_tool()};
  b["tool_choice"] = {{"type", "function"}, {"function", {{"name", "get_weather"}}}};
  b["parallel_tool_calls"] = false;
  GenerationParams p = parse_chat_request(b, ValidationLimits{});
  ASSERT_EQ(p.tools.functions.size(), 1u);
  EXPECT_EQ(p.tools.functions[0].name, "get_weather");
  EXPECT_EQ(p.tools.choice.mode, ToolChoiceMode::named);
  EXPECT_EQ(p.tools.choice.name, "get_weather");
  EXPECT_FALSE(p.tools.parallel);
  EXPECT_EQ(p.tools.template_tools[0]["function"]["parameters"]["required"][0], "city");
  for (const char* c : {"none", "auto", "required"}) {
    b["tool_choice"] = c;
    EXPECT_NO_THROW(parse_chat_request(b, ValidationLimits{})) << c;
  }
  // A schema that is not an object schema, a choice naming no or a missing function.
  b = chat_body();
  b["tools"] = {weather_tool(), weather_tool()};
  b["tools"][1]["function"]["name"] = "other";
  b["tools"][1]["function"]["parameters"] = {{"type", "string"}};
  EXPECT_EQ(chat_error(b).param, "tools[1].function.parameters");
  b["tools"][1]["function"]["parameters"] = json::array();
  EXPECT_EQ(chat_error(b).param, "tools[1].function.parameters");
  b["tools"][1]["function"]["name"] = "get_weather";
  b["tools"][1]["function"].erase("parameters");
  EXPECT_EQ(chat_error(b).param, "tools[1].function.name") << "names repeat";
  b = chat_body();
  b["tools"] = {weather_tool()};
  b["tool_choice"] = {{"type", "function"}, {"function", {{"name", "nope"}}}};
  EXPECT_EQ(chat_error(b).param, "tool_choice");
  b["tool_choice"] = {{"type", "function"}, {"function", json::object()}};
  EXPECT_EQ(chat_error(b).param, "tool_choice");
  b["tool_choice"] = "sometimes";
  EXPECT_EQ(chat_error(b).param, "tool_choice");
  b.erase("tools");
  b["tool_choice"] = "required";
  EXPECT_EQ(chat_error(b).param, "tool_choice");
  b = chat_body();
  b["tools"] = {{{"type", "retrieval"}}};
  EXPECT_EQ(chat_error(b).param, "tools[0].type");
  b = chat_body();
  b["functions"] = {weather_tool()["function"]};
  EXPECT_EQ(chat_error(b).param, "functions");
  b = chat_body();
  b["function_call"] = "auto";
  EXPECT_EQ(chat_error(b).param, "function_call");
}

TEST(RequestValidation, ToolHistoryReachesTheMessages) {
  json b = chat_body();
  b["messages"] = {{{"role", "user"}, {"content", "weather?"}},
                   {{"role", "assistant"},
                    {"content", nullptr},
                    {"tool_calls",
                     {{{"id", "call_1"}, {"type", "function"}, {"function", {{"name", "get_weather"}, {"arguments", "{\"city\":\"Oslo\"}"}}}}}}},
                   {{"role", "tool"}, {"tool_call_id", "call_1"}, {"name", "get_weather"}, {"content", "3 C"}}};
  GenerationParams p = parse_chat_request(b, ValidationLimits{});
  ASSERT_EQ(p.messages.size(), 3u);
  EXPECT_EQ(p.messages[1].tool_calls[0]["id"], "call_1");
  EXPECT_EQ(p.messages[1].tool_calls[0]["function"]["arguments"]["city"], "Oslo") << "arguments parsed into an object";
  EXPECT_EQ(p.messages[2].tool_call_id, "call_1");
  EXPECT_EQ(p.messages[2].name, "get_weather");
  b["messages"][1]["tool_calls"][0]["function"]["arguments"] = "{not json";
  EXPECT_EQ(chat_error(b).param, "messages[1].tool_calls[0].function.arguments");
  b["messages"][1]["tool_calls"][0]["function"]["arguments"] = "{}";
  b["messages"][2].erase("tool_call_id");
  EXPECT_EQ(chat_error(b).param, "messages[2].tool_call_id");
  b["messages"][2]["role"] = "function";
  EXPECT_EQ(chat_error(b).param, "messages[2].role");
}

TEST(RequestValidation, TemplateKwargsAndFieldPolicy) {
  json b = chat_body();
  b["chat_template_kwargs"] = {{"enable_thinking", false}};
  b["some_new_field"] = 1;
  b["metadata"] = {{"a", "b"}};
  b["tfs_z"] = 1.0;  // neutral: changes nothing
  GenerationParams p = parse_chat_request(b, ValidationLimits{});
  EXPECT_EQ(p.template_kwargs["enable_thinking"], false);
  EXPECT_EQ(p.unknown_fields, std::vector<std::string>{"some_new_field"});
  b["chat_template_kwargs"] = {{"messages", json::array()}};
  EXPECT_EQ(chat_error(b).param, "chat_template_kwargs.messages");
  b["chat_template_kwargs"] = "x";
  EXPECT_EQ(chat_error(b).param, "chat_template_kwargs");
  b = chat_body();
  for (const char* f : {"reasoning_effort", "prediction", "web_search_options"}) {
    json c = chat_body();
    c[f] = "x";
    EXPECT_EQ(chat_error(c).param, f);
  }
  b["tfs_z"] = 0.5;
  EXPECT_EQ(chat_error(b).param, "tfs_z");
  json c = completion_body();
  c["tools"] = {weather_tool()};
  EXPECT_EQ(completion_error(c).param, "tools");
}

TEST(RequestValidation, CompletionPromptShapes) {
  json b = completion_body();
  GenerationParams p = parse_completion_request(b, ValidationLimits{});
  ASSERT_EQ(p.prompts.size(), 1u);
  EXPECT_TRUE(p.prompts[0].is_text);
  EXPECT_EQ(p.prompts[0].text, "Once");
  EXPECT_EQ(p.max_tokens, 16);  // OpenAI's default for completions

  b["prompt"] = {"a", "b"};
  p = parse_completion_request(b, ValidationLimits{});
  ASSERT_EQ(p.prompts.size(), 2u);
  EXPECT_EQ(p.prompts[1].text, "b");

  b["prompt"] = {1, 15043, 3186};
  p = parse_completion_request(b, ValidationLimits{});
  ASSERT_EQ(p.prompts.size(), 1u);
  EXPECT_FALSE(p.prompts[0].is_text);
  EXPECT_EQ(p.prompts[0].tokens, (std::vector<std::int32_t>{1, 15043, 3186}));

  b["prompt"] = {{1, 2}, {1, 3, 4}};
  p = parse_completion_request(b, ValidationLimits{});
  ASSERT_EQ(p.prompts.size(), 2u);
  EXPECT_EQ(p.prompts[1].tokens.size(), 3u);

  b["logprobs"] = 3;
  EXPECT_EQ(parse_completion_request(b, ValidationLimits{}).logprobs, 3);
}

TEST(RequestValidation, CompletionBadPrompts) {
  const std::vector<std::pair<json, std::string>> cases = {
      {json::array(), "prompt"},  {5, "prompt"},         {{1, "x"}, "prompt[1]"}, {{1, -2}, "prompt[1]"},
      {{"a", 3}, "prompt[1]"},    {{"a", json::array()}, "prompt[1]"}, {{{1, 2}, {1, 1.5}}, "prompt[1][1]"},
      {{1, 4294967296ll}, "prompt[1]"}};
  for (const auto& [prompt, param] : cases) {
    json b = completion_body();
    b["prompt"] = prompt;
    EXPECT_EQ(completion_error(b).param, param) << prompt.dump();
  }
  json b = completion_body();
  b.erase("prompt");
  EXPECT_EQ(completion_error(b).param, "prompt");
  b = completion_body();
  b["logprobs"] = true;  // completions take a count, chat a boolean
  EXPECT_EQ(completion_error(b).param, "logprobs");
  b = completion_body();
  b["echo"] = true;
  EXPECT_EQ(completion_error(b).param, "echo");
  b = completion_body();
  b["best_of"] = 3;
  EXPECT_EQ(completion_error(b).param, "best_of");
}

TEST(RequestValidation, JsonBodyMustBeAnObject) {
  for (const char* bad : {"", "{", "{\"a\":}", "[1,2]", "\"text\"", "nul", "{\"a\":1} trailing"}) {
    try {
      parse_json_body(bad);
      ADD_FAILURE() << "accepted: " << bad;
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status, 400) << bad;
      EXPECT_EQ(e.code, "invalid_json") << bad;
    }
  }
  EXPECT_TRUE(parse_json_body("{\"model\":\"m\"}").is_object());
}

TEST(RequestValidation, TokenizeAndDetokenize) {
  TokenizeParams t = parse_tokenize_request(json{{"content", "Hello"}, {"with_pieces", true}});
  EXPECT_EQ(t.content, "Hello");
  EXPECT_TRUE(t.with_pieces);
  EXPECT_FALSE(t.add_special);
  try {
    parse_tokenize_request(json{{"content", 5}});
    ADD_FAILURE();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.param, "content");
  }
  DetokenizeParams d = parse_detokenize_request(json{{"tokens", {1, 2, 3}}});
  EXPECT_EQ(d.tokens.size(), 3u);
  try {
    parse_detokenize_request(json{{"tokens", {1, "2"}}});
    ADD_FAILURE();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.param, "tokens[1]");
  }
}

TEST(RequestValidation, ErrorJsonHasOpenAIShape) {
  ApiError e = invalid_field("temperature", "'temperature' must be at least 0");
  json j = json::parse(error_json(e));
  EXPECT_EQ(j["error"]["message"], "'temperature' must be at least 0");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "temperature");
  EXPECT_TRUE(j["error"].contains("code"));
  ApiError plain(500, "server_error", "boom");
  j = json::parse(error_json(plain));
  EXPECT_TRUE(j["error"]["param"].is_null());
  EXPECT_TRUE(j["error"]["code"].is_null());
}

// A message quoting client text with a NUL in it (a model name, say) is echoed whole, not cut
// at the NUL.
TEST(RequestValidation, ErrorJsonKeepsTheWholeMessage) {
  const std::string name("gpt\0-4", 6);
  const ApiError e(404, "invalid_request_error", "The model '" + name + "' does not exist", "model", "model_not_found");
  const json j = json::parse(error_json(e));
  EXPECT_EQ(j["error"]["message"].get<std::string>(), "The model '" + name + "' does not exist");
}

}  // namespace
}  // namespace kiln::serve
