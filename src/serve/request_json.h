#pragma once
// Small readers shared by the request parsers (request_validation, tool_request,
// responses_request): a field that is present and not null, and the 400 that names a field.
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "serve/api_error.h"

namespace kiln::serve {

// The value of `key` in `obj` when present and not null (OpenAI's clients send null for "not
// set"), else nullptr.
inline const nlohmann::json* present(const nlohmann::json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

// A 400 naming `field`: "'field' <what>".
[[noreturn]] inline void wrong(const std::string& field, const std::string& what) {
  throw invalid_field(field, fmt::format("'{}' {}", field, what));
}

}  // namespace kiln::serve
