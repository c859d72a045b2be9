#pragma once
// The table of built-in chat templates (see chat_template_builtins.cpp for their origins).
#include <string_view>
#include <vector>

namespace kiln {

struct BuiltinChatTemplate {
  std::string_view name;
  std::string_view origin;  // the published model it comes from, or what it is
  std::string_view source;
};

const std::vector<BuiltinChatTemplate>& builtin_chat_templates();

}  // namespace kiln
