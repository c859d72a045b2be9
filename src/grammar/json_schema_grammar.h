#pragma once
// JSON Schema, regular expressions and choice lists, converted to GBNF (grammar/gbnf.h).
//
// json_schema_to_gbnf covers what structured-output requests use: type (and lists of types),
// nullable, properties / required / additionalProperties (false, true or a schema; properties
// come in the schema's order, a missing `additionalProperties` allows none), items,
// prefixItems, minItems / maxItems, enum, const, anyOf / oneOf, allOf of objects, $ref to
// #/$defs and #/definitions (recursion allowed), minLength / maxLength, pattern (the regex
// subset of regex_to_gbnf), formats date, time, date-time, uuid and email, and minimum /
// maximum / exclusiveMinimum / exclusiveMaximum on integers (exact digit grammars) and numbers
// (an integer part within the bounds, a fraction only where it cannot cross them).
// Annotations (title, description, default, examples, $schema, $id, $comment, ...) are
// ignored; any other keyword is refused with kiln::Error naming its path
// ("json_schema: at /properties/a: multipleOf is not supported"), never silently dropped.
//
// Every grammar it writes can end: numbers have at most 16 integer digits, 16 fraction digits
// and 3 exponent digits, and the whitespace between two tokens is at most one space, or a
// newline and up to max_indent spaces, so that a model cannot spend its tokens on whitespace.
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace kiln::grammar {

struct JsonGrammarOptions {
  int max_indent = 16;         // spaces after a newline between two JSON tokens
  bool allow_newlines = true;  // false: at most one space between tokens
  // Literal text before and after the JSON value: the markup a tool call is wrapped in
  // ("<tool_call>\n" ... "\n</tool_call>"). The grammar is exhausted after the suffix.
  std::string prefix;
  std::string suffix;
};

// A GBNF grammar (rule root) whose strings are the JSON texts valid under `schema`. Object
// properties are written in the schema's order; an nlohmann::json schema has lost that order
// (its keys are sorted), so callers that have the schema's text should parse it ordered.
std::string json_schema_to_gbnf(const nlohmann::ordered_json& schema, const JsonGrammarOptions& options = {});
std::string json_schema_to_gbnf(const nlohmann::json& schema, const JsonGrammarOptions& options = {});

// Any JSON object (OpenAI's json_object response format without a schema).
std::string json_object_gbnf(const JsonGrammarOptions& options = {});

// A GBNF grammar matching exactly the strings of an ECMAScript-style regular expression:
// literals, escapes (\d \w \s and their negations, \n \t \uHHHH ...), classes, `.`, groups
// ((...), (?:...)), `|`, `* + ? {m} {m,} {m,n}` (lazy forms too), and ^ / $ at its ends.
// Backreferences, lookaround and other anchors are refused (kiln::Error "regex: ...").
std::string regex_to_gbnf(std::string_view pattern);

// One of the given strings exactly.
std::string choice_to_gbnf(const std::vector<std::string>& choices);

}  // namespace kiln::grammar
