// The chat templates of Qwen3 (thinking: enable_thinking, <think> blocks in the history, tools)
// and Phi-3/3.5 as their tokenizer_config.json publish them, rendered by kiln's ChatTemplate:
// the exact text for the cases that matter (derived by reading the template), then every
// conversation compared with Jinja2 under Hugging Face's settings
// (tests/chat/chat_template_oracle.py) when python3-jinja2 is installed; and a GGUF of each
// family carrying its template (tokenizer.chat_template) renders it.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <tuple>
#include <string>
#include <vector>

#include "chat/chat_template.h"
#include "core/error.h"
#include "format/gguf_file.h"
#include "format/gguf_writer.h"
#include "test_support.h"

namespace kiln {
namespace {

using nlohmann::ordered_json;

// Qwen/Qwen3-0.6B (the same template for every Qwen3 dense and MoE model)
const std::string kQwen3 = R"TPL({%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set content = message.content %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is defined and message.reasoning_content is not none %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in message.content %}
                {%- set content = message.content.split('</think>')[-1].lstrip('\n') %}
                {%- set reasoning_content = message.content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %})TPL";

// microsoft/Phi-3.5-mini-instruct (Phi-3-mini's differs in skipping empty system messages only)
const std::string kPhi35Mini = R"TPL({% for message in messages %}{% if message['role'] == 'system' and message['content'] %}{{'<|system|>
' + message['content'] + '<|end|>
'}}{% elif message['role'] == 'user' %}{{'<|user|>
' + message['content'] + '<|end|>
'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>
' + message['content'] + '<|end|>
'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>
' }}{% else %}{{ eos_token }}{% endif %})TPL";

const std::vector<ChatMessage> kChat = {
    {"system", "You are a helpful assistant.", {}, {}, {}},
    {"user", "Hello!", {}, {}, {}},
    {"assistant", "Hi there. How can I help?", {}, {}, {}},
    {"user", "What is 2+2?", {}, {}, {}},
};

// An answer with its reasoning in the history, then a follow-up question.
const std::vector<ChatMessage> kThoughtThenAsked = {
    {"user", "What is 2+2?", {}, {}, {}},
    {"assistant", "<think>\nTwo and two.\n</think>\n\n4", {}, {}, {}},
    {"user", "And 3+3?", {}, {}, {}},
};

// The last turn is the assistant's, with its reasoning.
const std::vector<ChatMessage> kThoughtLast = {
    {"user", "What is 2+2?", {}, {}, {}},
    {"assistant", "<think>\nTwo and two.\n</think>\n\n4", {}, {}, {}},
};

std::vector<ChatMessage> tool_chat() {
  ChatMessage call{"assistant", "", {}, {}, {}};
  call.tool_calls = ordered_json::parse(
      R"([{"id": "call1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}])");
  return {{"system", "You are a helpful assistant.", {}, {}, {}},
          {"user", "What's the weather in Paris?", {}, {}, {}},
          call,
          {"tool", "22 C", {}, std::string("call1"), {}}};
}

const ordered_json kTools = ordered_json::parse(R"([{"type": "function", "function": {"name": "get_weather",
  "description": "Get the weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
  "required": ["city"]}}}])");

std::string render(const std::string& source, const std::vector<ChatMessage>& chat, bool gen,
                   const ordered_json& extra = ordered_json::object()) {
  return ChatTemplate(source, "", "<|im_end|>").render(chat, gen, extra);
}

TEST(Qwen3Template, RendersTheConversationAndTheGenerationPrompt) {
  const std::string turns =
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n"
      "<|im_start|>assistant\nHi there. How can I help?<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n";
  EXPECT_EQ(render(kQwen3, kChat, false), turns);
  EXPECT_EQ(render(kQwen3, kChat, true), turns + "<|im_start|>assistant\n");
  // enable_thinking unset or true: the model opens its own <think>; false: an empty one is given.
  EXPECT_EQ(render(kQwen3, kChat, true, {{"enable_thinking", true}}), turns + "<|im_start|>assistant\n");
  EXPECT_EQ(render(kQwen3, kChat, true, {{"enable_thinking", false}}),
            turns + "<|im_start|>assistant\n<think>\n\n</think>\n\n");
}

TEST(Qwen3Template, DropsReasoningOfEarlierTurnsAndKeepsTheLastOnes) {
  EXPECT_EQ(render(kQwen3, kThoughtThenAsked, true),
            "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n"
            "<|im_start|>user\nAnd 3+3?<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render(kQwen3, kThoughtLast, false),
            "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\nTwo and two.\n</think>\n\n4"
            "<|im_end|>\n");
}

TEST(Qwen3Template, ListsToolsAndWrapsCallsAndResults) {
  const std::string out = render(kQwen3, tool_chat(), true, {{"tools", kTools}});
  EXPECT_EQ(out.rfind("<|im_start|>system\nYou are a helpful assistant.\n\n# Tools\n", 0), 0u) << out;
  EXPECT_NE(out.find("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\""), std::string::npos)
      << out;
  EXPECT_NE(out.find("<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
                     "{\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("<|im_start|>user\n<tool_response>\n22 C\n</tool_response><|im_end|>\n<|im_start|>assistant\n"),
            std::string::npos)
      << out;
}

TEST(Phi35Template, RendersTheConversationAndSkipsAnEmptySystemMessage) {
  const ChatTemplate t(kPhi35Mini, "<s>", "<|endoftext|>");
  const std::string turns =
      "<|system|>\nYou are a helpful assistant.<|end|>\n<|user|>\nHello!<|end|>\n<|assistant|>\nHi there. How can I "
      "help?<|end|>\n<|user|>\nWhat is 2+2?<|end|>\n";
  EXPECT_EQ(t.render(kChat, true), turns + "<|assistant|>\n");
  EXPECT_EQ(t.render(kChat, false), turns + "<|endoftext|>");
  std::vector<ChatMessage> empty_system = kChat;
  empty_system[0].content = "";
  EXPECT_EQ(t.render(empty_system, true).rfind("<|user|>\nHello!<|end|>\n", 0), 0u);
}

// ---- Jinja2 as the oracle ---------------------------------------------------------------------

ordered_json messages_json(const std::vector<ChatMessage>& chat) {
  ordered_json out = ordered_json::array();
  for (const ChatMessage& m : chat) {
    ordered_json j = {{"role", m.role}, {"content", m.content}};
    if (m.tool_call_id) j["tool_call_id"] = *m.tool_call_id;
    if (m.tool_calls) j["tool_calls"] = *m.tool_calls;
    out.push_back(j);
  }
  return out;
}

std::optional<ordered_json> run_oracle(const ordered_json& cases) {
  const char* src = std::getenv("KILN_SOURCE_DIR");
  const std::string script = std::string(src ? src : ".") + "/tests/chat/chat_template_oracle.py";
  if (!std::ifstream(script).good()) return std::nullopt;
  const std::string dir = test::temp_dir();
  std::ofstream(dir + "/family_oracle_in.json") << cases.dump();
  std::string ignored;
  const int rc = test::run_command("/usr/bin/python3 " + script + " < " + dir + "/family_oracle_in.json > " + dir +
                                       "/family_oracle_out.json",
                                   &ignored, true);
  if (rc == 3 || rc == 3 * 256 || rc == 127 || rc == 127 * 256) return std::nullopt;
  if (rc != 0) {
    ADD_FAILURE() << "the Jinja2 oracle failed with exit code " << rc;
    return std::nullopt;
  }
  std::ifstream f(dir + "/family_oracle_out.json");
  return ordered_json::parse(f);
}

TEST(FamilyTemplatesOracle, Qwen3AndPhi35MatchJinja2ByteForByte) {
  struct Run {
    const std::string* source;
    std::vector<ChatMessage> chat;
    bool gen;
    ordered_json extra;
  };
  const std::vector<ChatMessage> spaced = {
      {"system", "  Be brief.\n", {}, {}, {}},
      {"user", " H\xc3\xa9llo\n\tw\xc3\xb6rld ", {}, {}, {}},
      {"assistant", "\n<think>\n  hmm \n</think>\n  Hi!  \n", {}, {}, {}},
      {"user", "{{ not a template }} {% raw %}", {}, {}, {}},
  };
  std::vector<Run> runs;
  for (const std::string* source : {&kQwen3, &kPhi35Mini})
    for (const bool gen : {false, true})
      for (const ordered_json& extra :
           {ordered_json::object(), ordered_json{{"enable_thinking", false}}, ordered_json{{"enable_thinking", true}},
            ordered_json{{"tools", kTools}}})
        for (const std::vector<ChatMessage>& chat : {kChat, kThoughtThenAsked, kThoughtLast, tool_chat(), spaced})
          runs.push_back({source, chat, gen, extra});
  ordered_json request = ordered_json::array();
  for (const Run& r : runs) {
    ordered_json vars = {{"messages", messages_json(r.chat)}, {"tools", nullptr}, {"add_generation_prompt", r.gen},
                         {"bos_token", "<s>"}, {"eos_token", "<|im_end|>"}};
    for (auto it = r.extra.begin(); it != r.extra.end(); ++it) vars[it.key()] = it.value();
    request.push_back({{"template", *r.source}, {"variables", vars}});
  }
  const std::optional<ordered_json> results = run_oracle(request);
  if (!results) GTEST_SKIP() << "python3-jinja2 is not installed: the templates were not compared with Jinja2";
  ASSERT_EQ(results->size(), runs.size());
  int compared = 0;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const Run& r = runs[i];
    SCOPED_TRACE((r.source == &kQwen3 ? "qwen3 run " : "phi3.5 run ") + std::to_string(i));
    const ordered_json& o = (*results)[i];
    ASSERT_TRUE(o.contains("output")) << o.dump();
    std::string ours;
    try {
      ours = ChatTemplate(*r.source, "<s>", "<|im_end|>").render(r.chat, r.gen, r.extra);
    } catch (const Error& e) {
      ours = std::string("ERROR: ") + e.what();
    }
    EXPECT_EQ(ours, o["output"].get<std::string>());
    ++compared;
  }
  std::cout << "qwen3 and phi3.5 templates: " << compared << " renders identical to Jinja2\n";
}

// ---- from a GGUF's metadata -------------------------------------------------------------------

TEST(FamilyTemplatesGguf, TheTemplateAFileCarriesIsTheOneRendered) {
  for (const auto& [arch, source, eos] : {std::tuple{"qwen3", &kQwen3, "<|im_end|>"},
                                          std::tuple{"phi3", &kPhi35Mini, "<|endoftext|>"}}) {
    SCOPED_TRACE(arch);
    const std::string path = test::temp_dir() + "/" + std::string(arch) + "_template.gguf";
    GgufWriter w;
    w.set_metadata("general.architecture", gguf_value::string(arch));
    GgufArray tokens;
    tokens.elem_type = GgufType::String;
    tokens.strings = {"<s>", eos, "a"};
    w.set_metadata("tokenizer.ggml.tokens", gguf_value::array(tokens));
    w.set_metadata("tokenizer.ggml.bos_token_id", gguf_value::u32(0));
    w.set_metadata("tokenizer.ggml.eos_token_id", gguf_value::u32(1));
    w.set_metadata("tokenizer.chat_template", gguf_value::string(*source));
    w.write(path);
    const std::unique_ptr<GgufFile> f = GgufFile::open(path);
    const ChatTemplate t = ChatTemplate::from_gguf(*f);
    EXPECT_EQ(t.render(kChat, true), ChatTemplate(*source, "<s>", eos).render(kChat, true));
  }
}

}  // namespace
}  // namespace kiln
