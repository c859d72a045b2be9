#pragma once
// Regular expressions (the subset json_schema_grammar.h describes) as GBNF expressions.
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kiln::grammar {

// A GBNF expression (no rules of its own) matching exactly the strings of `pattern`. With
// `inside_json_string`, it matches them as the body of a JSON string literal instead: `"` and
// `\` written as escapes, and classes kept to characters a JSON string holds unescaped.
// Throws kiln::Error "regex: ..." on what the subset does not cover.
std::string regex_gbnf_expression(std::string_view pattern, bool inside_json_string);

// GBNF text for a literal of these bytes: "..." with quotes, backslashes and control bytes escaped.
std::string gbnf_literal(std::string_view bytes);

// GBNF text for a class of code point ranges ("[a-z\x5F]"); throws when the set is empty.
std::string gbnf_class(std::vector<std::pair<std::uint32_t, std::uint32_t>> ranges);

}  // namespace kiln::grammar
