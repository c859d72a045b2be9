#pragma once
// The structured-output fields of a generation request, each turned into one GBNF grammar:
//
//   response_format {"type": "text"}                          no constraint
//   response_format {"type": "json_object"}                   any JSON object (llama.cpp's
//                   {"type": "json_object", "schema": {...}}  extension: that schema)
//   response_format {"type": "json_schema", "json_schema": {"name", "schema", "strict"}}
//   grammar         GBNF text (llama-server)
//   json_schema     a JSON Schema (llama-server)
//   guided_json     a JSON Schema, object or string (vLLM)
//   guided_regex    a regular expression (vLLM)
//   guided_choice   an array of strings, one of which is the answer (vLLM)
//   guided_grammar  GBNF text (vLLM names its grammar field so)
//
// At most one of them may constrain a request; a second is a 400 naming it. A schema, regular
// expression or grammar kiln cannot use is a 400 naming the field, with the converter's or
// the parser's message (which names the schema path or the grammar's line and column).
#include <string>

#include <nlohmann/json.hpp>

namespace kiln::serve {

struct OutputConstraint {
  std::string field;  // the request field it came from ("response_format", "grammar", ...); empty: none
  std::string gbnf;   // the grammar, already checked by parse_gbnf
};

// True when the body names any of the fields above (so that the caller reads it ordered:
// object properties are generated in the order the schema lists them).
bool has_output_constraint(const nlohmann::json& body);

// Reads the fields above from the body parsed with its key order kept. Throws ApiError (400).
OutputConstraint parse_output_constraint(const nlohmann::ordered_json& body);

}  // namespace kiln::serve
