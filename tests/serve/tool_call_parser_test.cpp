// Tool-call parsing per native format, whole and fed in every split (token boundaries anywhere):
// the same calls, arguments whose pieces concatenate to valid JSON, and no markup in content.
#include "serve/tool_call_parser.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

#include "serve/chat_output_parser.h"
#include "serve/json_prefix_scan.h"
#include "serve/reasoning_parser.h"

namespace kiln::serve {
namespace {

using json = nlohmann::json;

struct Parsed {
  std::string content;
  std::vector<std::pair<std::string, std::string>> calls;  // name, arguments
};

Parsed collect(Parsed p, const ToolCallPiece& piece) {
  p.content += piece.content;
  for (const ToolCallEvent& e : piece.calls) {
    if (e.begins) {
      EXPECT_EQ(e.index, static_cast<int>(p.calls.size()));
      p.calls.push_back({e.name, ""});
    }
    EXPECT_LT(e.index, static_cast<int>(p.calls.size()));
    if (e.index < static_cast<int>(p.calls.size())) p.calls[static_cast<std::size_t>(e.index)].second += e.arguments;
  }
  return p;
}

// Parses `text` in pieces of `chunk` bytes (0: whole).
Parsed parse(ToolCallFormat f, const std::string& text, std::size_t chunk = 0, int max_calls = 16) {
  ToolCallParser parser(f, max_calls);
  Parsed p;
  if (chunk == 0) chunk = text.size() + 1;
  for (std::size_t i = 0; i < text.size(); i += chunk) {
    ToolCallPiece piece;
    parser.push(std::string_view(text).substr(i, chunk), piece);
    p = collect(std::move(p), piece);
  }
  ToolCallPiece last;
  parser.finish(last);
  return collect(std::move(p), last);
}

// Every chunk size gives what the whole text gives.
Parsed parse_every_split(ToolCallFormat f, const std::string& text, int max_calls = 16) {
  const Parsed whole = parse(f, text, 0, max_calls);
  for (std::size_t chunk = 1; chunk <= text.size(); ++chunk) {
    const Parsed p = parse(f, text, chunk, max_calls);
    EXPECT_EQ(p.content, whole.content) << "chunk " << chunk;
    EXPECT_EQ(p.calls, whole.calls) << "chunk " << chunk;
  }
  return whole;
}

void expect_args(const std::string& args, const json& expected) {
  json parsed;
  ASSERT_NO_THROW(parsed = json::parse(args)) << args;
  EXPECT_EQ(parsed, expected);
}

TEST(ToolCallFormat, DetectedFromTheTemplateSource) {
  EXPECT_EQ(detect_tool_call_format("{% for m in messages %}<tool_call>{{ m }}</tool_call>{% endfor %}"),
            ToolCallFormat::hermes);
  EXPECT_EQ(detect_tool_call_format("<|start_header_id|>ipython<|end_header_id|>"), ToolCallFormat::llama3_json);
  EXPECT_EQ(detect_tool_call_format("{{ '[TOOL_CALLS]' }}"), ToolCallFormat::mistral);
  EXPECT_EQ(detect_tool_call_format("{{ messages }}"), ToolCallFormat::generic);
  EXPECT_EQ(make_tool_call_id(ToolCallFormat::mistral).size(), 9u);
  EXPECT_EQ(make_tool_call_id(ToolCallFormat::hermes).rfind("call_", 0), 0u);
}

TEST(ToolCallFormat, ForcedCallSchemaNamesTheFunction) {
  ToolRequest t;
  t.functions = {{"get_weather", "", nlohmann::ordered_json{{"type", "object"}}},
                 {"other", "", nlohmann::ordered_json{{"type", "object"}}}};
  t.choice = {ToolChoiceMode::named, "get_weather"};
  const ForcedToolCall h = forced_tool_call(t, ToolCallFormat::hermes);
  EXPECT_TRUE(h.forced);
  EXPECT_EQ(h.prefix, "<tool_call>\n");
  EXPECT_EQ(h.schema["properties"]["name"]["const"], "get_weather");
  EXPECT_TRUE(h.schema["properties"].contains("arguments"));
  EXPECT_TRUE(forced_tool_call(t, ToolCallFormat::llama3_json).schema["properties"].contains("parameters"));
  EXPECT_EQ(forced_tool_call(t, ToolCallFormat::mistral).schema["type"], "array");
  t.choice = {ToolChoiceMode::required, ""};
  EXPECT_EQ(forced_tool_call(t, ToolCallFormat::generic).schema["anyOf"].size(), 2u);
  t.choice = {ToolChoiceMode::automatic, ""};
  EXPECT_FALSE(forced_tool_call(t, ToolCallFormat::generic).forced);
}

TEST(JsonPrefixScan, MembersAsTheyArrive) {
  JsonObjectPrefix s = scan_json_object_prefix(R"({"name": "f", "arguments": {"a": "}", "b": [1, 2)");
  EXPECT_FALSE(s.error);
  EXPECT_FALSE(s.complete);
  ASSERT_EQ(s.members.size(), 2u);
  EXPECT_EQ(s.members[0].key, "name");
  EXPECT_NE(s.members[0].value_end, std::string_view::npos);
  EXPECT_EQ(s.members[1].value_end, std::string_view::npos);
  s = scan_json_object_prefix(R"({"a": 12)");
  EXPECT_EQ(s.members[0].value_end, std::string_view::npos) << "a number at the end may go on";
  s = scan_json_object_prefix(R"({"a": 12} tail)");
  EXPECT_TRUE(s.complete);
  EXPECT_EQ(s.end, 9u);
  EXPECT_TRUE(scan_json_object_prefix(R"({"a" 1})").error);
  EXPECT_TRUE(scan_json_object_prefix(R"({"a": [1}})").error);
}

TEST(ToolCallParser, HermesSeveralCallsAndTextAround) {
  const std::string text =
      "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": "
      "\"c\"}}\n</tool_call>\n"
      "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"CET <tool_call>\"}}\n</tool_call>";
  const Parsed p = parse_every_split(ToolCallFormat::hermes, text);
  EXPECT_EQ(p.content, "Let me check.");
  ASSERT_EQ(p.calls.size(), 2u);
  EXPECT_EQ(p.calls[0].first, "get_weather");
  expect_args(p.calls[0].second, {{"city", "Paris"}, {"unit", "c"}});
  EXPECT_EQ(p.calls[1].first, "get_time");
  expect_args(p.calls[1].second, {{"tz", "CET <tool_call>"}});
}

TEST(ToolCallParser, HermesUnclosedFinalCallAndPlainText) {
  Parsed p = parse_every_split(ToolCallFormat::hermes, "<tool_call>{\"name\": \"f\", \"arguments\": {}}");
  ASSERT_EQ(p.calls.size(), 1u);
  expect_args(p.calls[0].second, json::object());
  EXPECT_EQ(p.content, "");
  p = parse_every_split(ToolCallFormat::hermes, "a < b and <tool_ nothing");
  EXPECT_EQ(p.content, "a < b and <tool_ nothing");
  EXPECT_TRUE(p.calls.empty());
  // Markup that is no call is given back as content, not lost.
  p = parse_every_split(ToolCallFormat::hermes, "x <tool_call> not json");
  EXPECT_TRUE(p.calls.empty());
  EXPECT_EQ(p.content, "x <tool_call> not json");
}

TEST(ToolCallParser, HermesMarkupNeverReachesContent) {
  const std::string text = "Hi <tool_call>{\"name\": \"f\", \"arguments\": {\"q\": 1}}</tool_call> bye";
  for (std::size_t chunk = 1; chunk <= text.size(); ++chunk) {
    ToolCallParser parser(ToolCallFormat::hermes, 8);
    for (std::size_t i = 0; i < text.size(); i += chunk) {
      ToolCallPiece piece;
      parser.push(std::string_view(text).substr(i, chunk), piece);
      EXPECT_EQ(piece.content.find('<'), std::string::npos) << piece.content;
      EXPECT_EQ(piece.content.find('{'), std::string::npos) << piece.content;
    }
  }
  const Parsed p = parse_every_split(ToolCallFormat::hermes, text);
  EXPECT_EQ(p.content, "Hi  bye");  // the text on both sides of the call
}

TEST(ToolCallParser, ArgumentsStreamBeforeTheCallEnds) {
  ToolCallParser parser(ToolCallFormat::hermes, 8);
  ToolCallPiece piece;
  parser.push("<tool_call>{\"name\": \"f\", \"arguments\": {\"text\": \"hel", piece);
  ASSERT_EQ(piece.calls.size(), 2u);
  EXPECT_TRUE(piece.calls[0].begins);
  EXPECT_EQ(piece.calls[0].name, "f");
  EXPECT_EQ(piece.calls[1].arguments, "{\"text\": \"hel");
  ToolCallPiece more;
  parser.push("lo\"}}</tool_call>", more);
  ASSERT_EQ(more.calls.size(), 1u);
  EXPECT_EQ(more.calls[0].arguments, "lo\"}");
}

TEST(ToolCallParser, Llama3JsonWithAndWithoutPythonTag) {
  Parsed p = parse_every_split(ToolCallFormat::llama3_json,
                               " {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}");
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].first, "get_weather");
  expect_args(p.calls[0].second, {{"city", "Oslo"}});
  EXPECT_EQ(p.content, "");
  p = parse_every_split(ToolCallFormat::llama3_json, "<|python_tag|>{\"name\": \"f\", \"parameters\": {}}");
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.content, "");
  // Two calls separated by ';', as Llama 3.2 writes them.
  p = parse_every_split(ToolCallFormat::llama3_json,
                        "{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": {\"x\": 1}}");
  ASSERT_EQ(p.calls.size(), 2u);
  EXPECT_EQ(p.calls[1].first, "b");
  // JSON that is not a call is the answer itself.
  p = parse_every_split(ToolCallFormat::llama3_json, "{\"city\": \"Oslo\", \"temp\": 3}");
  EXPECT_TRUE(p.calls.empty());
  EXPECT_EQ(p.content, "{\"city\": \"Oslo\", \"temp\": 3}");
  // A call mentioned inside prose is prose.
  p = parse_every_split(ToolCallFormat::llama3_json, "Use {\"name\": \"f\", \"parameters\": {}} like that");
  EXPECT_TRUE(p.calls.empty());
}

TEST(ToolCallParser, MistralListAndV11) {
  Parsed p = parse_every_split(
      ToolCallFormat::mistral,
      "[TOOL_CALLS] [{\"name\": \"a\", \"arguments\": {\"x\": [1, 2]}}, {\"name\": \"b\", \"arguments\": {}}]");
  ASSERT_EQ(p.calls.size(), 2u);
  EXPECT_EQ(p.calls[0].first, "a");
  expect_args(p.calls[0].second, {{"x", {1, 2}}});
  EXPECT_EQ(p.calls[1].first, "b");
  EXPECT_EQ(p.content, "");
  p = parse_every_split(ToolCallFormat::mistral,
                        "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Rome\"}[TOOL_CALLS]f[ARGS]{}");
  ASSERT_EQ(p.calls.size(), 2u);
  EXPECT_EQ(p.calls[0].first, "get_weather");
  expect_args(p.calls[0].second, {{"city", "Rome"}});
  EXPECT_EQ(p.calls[1].first, "f");
  p = parse_every_split(ToolCallFormat::mistral, "No calls [TOOL here");
  EXPECT_EQ(p.content, "No calls [TOOL here");
}

TEST(ToolCallParser, GenericObjectAndArgumentsAsString) {
  Parsed p = parse_every_split(ToolCallFormat::generic, "{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": 1}\"}");
  ASSERT_EQ(p.calls.size(), 1u);
  expect_args(p.calls[0].second, {{"a", 1}});
  p = parse_every_split(ToolCallFormat::generic, "{\"arguments\": {\"a\": 1}, \"name\": \"g\"}");
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].first, "g");
  expect_args(p.calls[0].second, {{"a", 1}});
  p = parse_every_split(ToolCallFormat::generic, "Hello there");
  EXPECT_EQ(p.content, "Hello there");
}

TEST(ToolCallParser, ExtraCallsBeyondTheLimitAreDropped) {
  const Parsed p = parse_every_split(ToolCallFormat::hermes,
                                     "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call><tool_call>{\"name\": "
                                     "\"b\", \"arguments\": {}}</tool_call>",
                                     1);
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].first, "a");
  EXPECT_EQ(p.content, "");
}

// Random mixes of markup and JSON pieces: whatever the text, any split gives what the whole gives
// (the parser's decisions do not depend on where tokens end), and nothing throws.
TEST(ToolCallParser, RandomTextsParseTheSameInAnySplit) {
  const std::vector<std::string> pieces = {"<tool_call>",
                                           "</tool_call>",
                                           "{",
                                           "}",
                                           "\"name\"",
                                           ": ",
                                           "\"f\"",
                                           ",",
                                           "\"arguments\"",
                                           "\"parameters\"",
                                           "[",
                                           "]",
                                           "[TOOL_CALLS]",
                                           "[ARGS]",
                                           "abc",
                                           " ",
                                           "\n",
                                           "\"",
                                           "\\",
                                           "<|python_tag|>",
                                           ";",
                                           "12",
                                           "<tool_",
                                           "true"};
  std::mt19937 rng(1234);
  for (ToolCallFormat f :
       {ToolCallFormat::hermes, ToolCallFormat::mistral, ToolCallFormat::llama3_json, ToolCallFormat::generic}) {
    for (int trial = 0; trial < 500; ++trial) {
      std::string text;
      const int n = 1 + static_cast<int>(rng() % 24);
      for (int i = 0; i < n; ++i) text += pieces[rng() % pieces.size()];
      const Parsed whole = parse(f, text);
      const std::size_t chunk = 1 + rng() % 5;
      const Parsed split = parse(f, text, chunk);
      EXPECT_EQ(split.content, whole.content) << tool_call_format_name(f) << " chunk " << chunk << ": " << text;
      EXPECT_EQ(split.calls, whole.calls) << tool_call_format_name(f) << " chunk " << chunk << ": " << text;
    }
  }
}

TEST(ToolCallParser, CutOffCallKeepsWhatArrived) {
  const Parsed p = parse(ToolCallFormat::hermes, "<tool_call>{\"name\": \"a\", \"arguments\": {\"x\": \"ab");
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].second, "{\"x\": \"ab");
}

ReasoningPiece reason(const std::string& text, bool starts_inside, std::size_t chunk) {
  ReasoningParser parser(starts_inside);
  ReasoningPiece all;
  for (std::size_t i = 0; i < text.size(); i += chunk) {
    ReasoningPiece p;
    parser.push(std::string_view(text).substr(i, chunk), p);
    EXPECT_EQ(p.content.find("<think"), std::string::npos);
    EXPECT_EQ(p.content.find("</think"), std::string::npos);
    all.reasoning += p.reasoning;
    all.content += p.content;
  }
  ReasoningPiece p;
  parser.finish(p);
  all.reasoning += p.reasoning;
  all.content += p.content;
  return all;
}

TEST(ReasoningParser, ThinkBlockSplitAtEveryBoundary) {
  const std::string text = "<think>\nFirst, the sum.\n2 + 2 = 4\n</think>\n\nIt is 4.";
  for (std::size_t chunk = 1; chunk <= text.size(); ++chunk) {
    const ReasoningPiece r = reason(text, false, chunk);
    EXPECT_EQ(r.reasoning, "First, the sum.\n2 + 2 = 4") << chunk;
    EXPECT_EQ(r.content, "It is 4.") << chunk;
  }
  // Opened by the prompt (DeepSeek R1, Qwen3): the answer starts inside the block.
  const ReasoningPiece r = reason("thinking...</think>done", true, 3);
  EXPECT_EQ(r.reasoning, "thinking...");
  EXPECT_EQ(r.content, "done");
  // No block: all content; a tag later in the text is content.
  EXPECT_EQ(reason("Plain <think> text", false, 2).content, "Plain <think> text");
  // Cut off inside the block: all reasoning.
  EXPECT_EQ(reason("<think>still going", false, 4).reasoning, "still going");
  EXPECT_TRUE(prompt_opens_reasoning("<|im_start|>assistant\n<think>\n"));
  EXPECT_FALSE(prompt_opens_reasoning("<think>\n\n</think>\n\n"));
  EXPECT_FALSE(prompt_opens_reasoning("no tags"));
}

TEST(ChatOutputParser, ReasoningThenCallsWithIds) {
  ChatOutputOptions o;
  o.reasoning = true;
  o.tools = true;
  o.format = ToolCallFormat::hermes;
  ChatOutputParser parser(o);
  parser.push("<think>need weather</think>\n<tool_call>{\"name\": \"w\", \"argu");
  parser.push("ments\": {\"c\": \"x\"}}</tool_call>");
  parser.finish();
  EXPECT_EQ(parser.reasoning(), "need weather");
  EXPECT_EQ(parser.content(), "");
  ASSERT_EQ(parser.tool_calls().size(), 1u);
  EXPECT_EQ(parser.tool_calls()[0].name, "w");
  EXPECT_EQ(parser.tool_calls()[0].id.rfind("call_", 0), 0u);
  expect_args(parser.tool_calls()[0].arguments, {{"c", "x"}});
}

TEST(ChatOutputParser, PrefillThatOpensACallMakesTheAnswerThatCall) {
  ChatOutputOptions o;
  o.tools = true;
  o.format = ToolCallFormat::hermes;
  ChatOutputParser parser(o);
  const ChatDelta d = parser.prime("Sure. <tool_call>\n{\"name\": \"w\", \"arguments\": {\"c\": ");
  ASSERT_EQ(d.calls.size(), 2u);
  EXPECT_TRUE(d.content.empty()) << "the prefill's text is the client's own";
  parser.push("\"Oslo\"}}\n</tool_call>");
  parser.finish();
  EXPECT_EQ(parser.content(), "");
  ASSERT_EQ(parser.tool_calls().size(), 1u);
  expect_args(parser.tool_calls()[0].arguments, {{"c", "Oslo"}});
}

TEST(ChatOutputParser, PrefillTextIsNeverReleasedAgain) {
  ChatOutputOptions o;
  o.tools = true;
  o.format = ToolCallFormat::hermes;
  ChatOutputParser parser(o);
  parser.prime("Intro <tool_call>");
  parser.push(" no json after all");
  parser.finish();
  EXPECT_EQ(parser.content(), " no json after all");
  EXPECT_TRUE(parser.tool_calls().empty());
}

TEST(ChatOutputParser, ForcedOpeningWithArgumentsThatAreNoObject) {
  ToolRequest t;
  t.functions = {{"get_weather", "", nlohmann::ordered_json{{"type", "object"}}}};
  t.choice = {ToolChoiceMode::named, "get_weather"};
  const ForcedToolCall forced = forced_tool_call(t, ToolCallFormat::hermes);
  EXPECT_EQ(forced.opening, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": ");
  EXPECT_EQ(forced.closing, "}\n</tool_call>");
  ChatOutputOptions o;
  o.tools = true;
  o.format = ToolCallFormat::hermes;
  ChatOutputParser parser(o);
  EXPECT_EQ(parser.prime(forced.opening).calls.size(), 1u);
  parser.push("181");
  parser.finish();
  EXPECT_EQ(parser.content(), "");
  ASSERT_EQ(parser.tool_calls().size(), 1u);
  EXPECT_EQ(parser.tool_calls()[0].arguments, "181") << "what the model wrote, cut off";
}

}  // namespace
}  // namespace kiln::serve
