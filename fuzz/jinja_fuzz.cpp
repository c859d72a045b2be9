// Feeds arbitrary bytes as a chat template to kiln's Jinja interpreter: parse, then render
// against a fixed conversation (system, user, an assistant tool call, a tool result) with tools,
// as ChatTemplate would. Rejection must be a kiln::Error; a crash, a sanitizer report, another
// exception type, a hang or a giant allocation is a finding. The render limits are lowered so
// each input runs in milliseconds, which is also what makes runaway loops fail fast.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "chat/jinja_interpreter.h"

namespace {

const kiln::jinja::Value& variables() {
  static const kiln::jinja::Value vars = kiln::jinja::Value::from_json(nlohmann::ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "You are a helpful assistant."},
      {"role": "user", "content": " Héllo\n\twörld {{ x }} "},
      {"role": "assistant", "content": "", "tool_calls": [
        {"id": "abc123def", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
      {"role": "tool", "content": "22 C", "tool_call_id": "abc123def"},
      {"role": "user", "content": "Thanks!"}
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Get the weather",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
    "documents": null,
    "add_generation_prompt": true,
    "bos_token": "<s>",
    "eos_token": "</s>"
  })"));
  return vars;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view source(reinterpret_cast<const char*>(data), size);
  kiln::jinja::RenderOptions options;
  options.limits.max_output_bytes = 64 << 10;
  options.limits.max_list_items = 1 << 14;
  options.limits.max_steps = 200'000;
  options.now = 1'700'000'000;
  try {
    const kiln::jinja::Template tpl(source);
    volatile std::size_t sink = tpl.render(variables(), options).size();
    (void)sink;
  } catch (const kiln::Error&) {
    // A clean rejection.
  }
  return 0;
}
