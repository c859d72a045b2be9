// /v1/responses requests become chat requests: input items as messages, flat function tools,
// tool_choice by name; stateful fields refused by name; the response object's output items.
#include "serve/responses_request.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "serve/api_error.h"
#include "serve/responses_output.h"

namespace kiln::serve {
namespace {

using json = nlohmann::json;

std::string error_param(const json& body) {
  try {
    parse_responses_request(body, ValidationLimits{});
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    return e.param;
  }
  ADD_FAILURE() << "accepted: " << body.dump();
  return "";
}

TEST(ResponsesRequest, InputItemsBecomeMessages) {
  const json body = {
      {"model", "m"},
      {"instructions", "Be brief."},
      {"max_output_tokens", 7},
      {"input",
       {{{"role", "user"}, {"content", {{{"type", "input_text"}, {"text", "weather?"}}}}},
        {{"type", "function_call"}, {"call_id", "c1"}, {"name", "get_weather"}, {"arguments", "{\"city\":\"Oslo\"}"}},
        {{"type", "function_call"}, {"call_id", "c2"}, {"name", "get_time"}, {"arguments", "{}"}},
        {{"type", "function_call_output"}, {"call_id", "c1"}, {"output", "3 C"}},
        {{"type", "reasoning"}, {"summary", json::array()}}}},
      {"tools", {{{"type", "function"}, {"name", "get_weather"}, {"parameters", {{"type", "object"}}}}}},
      {"tool_choice", {{"type", "function"}, {"name", "get_weather"}}},
      {"some_new_field", true}};
  const GenerationParams p = parse_responses_request(body, ValidationLimits{});
  EXPECT_TRUE(p.responses);
  EXPECT_TRUE(p.chat);
  EXPECT_EQ(p.max_tokens, 7);
  ASSERT_EQ(p.messages.size(), 4u);
  EXPECT_EQ(p.messages[0].role, "system");
  EXPECT_EQ(p.messages[0].content, "Be brief.");
  EXPECT_EQ(p.messages[1].content, "weather?");
  EXPECT_EQ(p.messages[2].role, "assistant");
  ASSERT_EQ(p.messages[2].tool_calls.size(), 2u) << "consecutive calls are one assistant turn";
  EXPECT_EQ(p.messages[2].tool_calls[0]["function"]["arguments"]["city"], "Oslo");
  EXPECT_EQ(p.messages[3].role, "tool");
  EXPECT_EQ(p.messages[3].tool_call_id, "c1");
  EXPECT_EQ(p.tools.choice.mode, ToolChoiceMode::named);
  EXPECT_EQ(p.tools.choice.name, "get_weather");
  EXPECT_EQ(p.unknown_fields, std::vector<std::string>{"some_new_field"});
  const GenerationParams s =
      parse_responses_request({{"model", "m"}, {"input", "Hi"}, {"store", false}}, ValidationLimits{});
  ASSERT_EQ(s.messages.size(), 1u);
  EXPECT_EQ(s.messages[0].role, "user");
}

TEST(ResponsesRequest, StatefulAndUnsupportedFieldsAreRefusedByName) {
  const json base = {{"model", "m"}, {"input", "x"}};
  const auto with = [&](const char* k, json v) {
    json b = base;
    b[k] = std::move(v);
    return b;
  };
  EXPECT_EQ(error_param(with("previous_response_id", "resp_1")), "previous_response_id");
  EXPECT_EQ(error_param(with("conversation", "c")), "conversation");
  EXPECT_EQ(error_param(with("store", true)), "store");
  EXPECT_EQ(error_param(with("background", true)), "background");
  EXPECT_EQ(error_param(with("text", {{"format", {{"type", "json_object"}}}})), "text.format");
  EXPECT_EQ(error_param(with("tools", {{{"type", "web_search"}}})), "tools[0].type");
  EXPECT_EQ(error_param(with("tools", {{{"type", "function"}, {"name", "f"}, {"parameters", {{"type", "array"}}}}})),
            "tools[0].parameters");
  EXPECT_EQ(error_param(with("max_output_tokens", 0)), "max_output_tokens");
  EXPECT_EQ(error_param(with("input", {{{"type", "input_image"}}})), "input[0].type");
  EXPECT_EQ(error_param(with("input", json::array())), "input");
  EXPECT_EQ(error_param({{"model", "m"}}), "input");
}

TEST(ResponsesOutput, ItemsFromTheParsedAnswer) {
  ChatOutputOptions o;
  o.reasoning = true;
  o.tools = true;
  o.format = ToolCallFormat::hermes;
  ChatOutputParser parser(o);
  parser.push("<think>hmm</think><tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}}</tool_call>");
  parser.finish();
  const json r =
      response_object(ResponseInfo{"resp_x", 1, "m", json::object()}, parser, FinishReason::Stop, Usage{3, 4, 0});
  EXPECT_EQ(r["status"], "completed");
  ASSERT_EQ(r["output"].size(), 2u);
  EXPECT_EQ(r["output"][0]["type"], "reasoning");
  EXPECT_EQ(r["output"][1]["type"], "function_call");
  EXPECT_EQ(r["output"][1]["name"], "f");
  EXPECT_EQ(json::parse(r["output"][1]["arguments"].get<std::string>()), json({{"a", 1}}));
  EXPECT_EQ(r["usage"]["total_tokens"], 7);

  ResponsesStream stream(ResponseInfo{"resp_x", 1, "m", json::object()});
  std::string all;
  for (const auto& e : stream.begin()) all += e;
  ChatOutputParser text_parser(ChatOutputOptions{});
  for (const auto& e : stream.delta(text_parser.push("Hello"))) all += e;
  for (const auto& e : stream.end(text_parser, FinishReason::Length, Usage{1, 1, 0})) all += e;
  for (const char* ev :
       {"response.created", "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.output_item.done", "response.incomplete"})
    EXPECT_NE(all.find(std::string("event: ") + ev + "\n"), std::string::npos) << ev;
  EXPECT_NE(all.find("\"reason\":\"max_output_tokens\""), std::string::npos);
}

}  // namespace
}  // namespace kiln::serve
