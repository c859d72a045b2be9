#pragma once
// JSON parsing shared by the safetensors header reader and the sharded-checkpoint index reader
// (internal to the format layer: layers above read neither through nlohmann_json).
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace kiln {

// Parses `text` as JSON (objects hold their keys sorted: O(log n) a key, where an insertion-ordered
// object would make a header of many tensors quadratic). Throws kiln::Error naming `path` and
// `what` ("header", "index") on a syntax error or invalid UTF-8, on a key that appears twice in
// one object (nlohmann_json would keep one silently), and on nesting deeper than `max_depth`
// (0 = scalars only, 1 = one object or array of scalars, ...), which also bounds the work done on
// a hostile input before it is refused.
nlohmann::json parse_safetensors_json(std::string_view text, const std::string& path, std::string_view what,
                                      int max_depth);

// "an array of 3 values", "the string 'x'", "a negative integer", ... for error messages.
std::string describe_json_value(const nlohmann::json& v);

}  // namespace kiln
