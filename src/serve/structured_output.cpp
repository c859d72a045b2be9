#include "serve/structured_output.h"

#include <vector>

#include "core/error.h"
#include "grammar/gbnf.h"
#include "grammar/json_schema_grammar.h"
#include "serve/api_error.h"

namespace kiln::serve {

namespace {

using ojson = nlohmann::ordered_json;

constexpr const char* kFields[] = {"response_format", "grammar", "json_schema", "guided_json",
                                   "guided_regex",    "guided_choice", "guided_grammar"};

[[noreturn]] void refuse(const std::string& field, const std::string& message) {
  throw ApiError(400, "invalid_request_error", fmt::format("'{}': {}", field, message), field, "invalid_value");
}

// Converts, turning the converter's kiln::Error into a 400 naming the field.
template <typename F>
std::string converted(const std::string& field, F&& convert) {
  try {
    std::string gbnf = convert();
    grammar::parse_gbnf(gbnf);  // the converters write grammars that parse; a grammar field is checked here
    return gbnf;
  } catch (const Error& e) {
    refuse(field, e.what());
  }
}

std::string schema_grammar(const std::string& field, const ojson& schema) {
  if (!schema.is_object() && !schema.is_boolean()) refuse(field, "the schema must be a JSON object");
  return converted(field, [&] { return grammar::json_schema_to_gbnf(schema); });
}

std::string response_format_grammar(const ojson& v) {
  const std::string f = "response_format";
  if (!v.is_object()) refuse(f, "must be an object");
  if (!v.contains("type") || !v["type"].is_string()) refuse(f, "'response_format.type' must be text, json_object or json_schema");
  const std::string type = v["type"].get<std::string>();
  if (type == "text") return "";
  if (type == "json_object") {
    if (v.contains("schema")) return schema_grammar("response_format.schema", v["schema"]);
    return grammar::json_object_gbnf();
  }
  if (type == "json_schema") {
    if (!v.contains("json_schema") || !v["json_schema"].is_object())
      refuse("response_format.json_schema", "an object {name, schema, strict} is required with type json_schema");
    const ojson& js = v["json_schema"];
    if (js.contains("name")) {
      if (!js["name"].is_string()) refuse("response_format.json_schema.name", "must be a string");
      const std::string name = js["name"].get<std::string>();
      if (name.empty() || name.size() > 64 ||
          name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != std::string::npos)
        refuse("response_format.json_schema.name", "must be 1 to 64 characters of a-z, A-Z, 0-9, _ and -");
    }
    if (js.contains("strict") && !js["strict"].is_boolean()) refuse("response_format.json_schema.strict", "must be a boolean");
    // Without a schema OpenAI's json_schema still means JSON: any object.
    if (!js.contains("schema")) return grammar::json_object_gbnf();
    return schema_grammar("response_format.json_schema.schema", js["schema"]);
  }
  refuse("response_format.type", fmt::format("'{}' is not one of text, json_object, json_schema", type));
}

}  // namespace

bool has_output_constraint(const nlohmann::json& body) {
  for (const char* f : kFields)
    if (body.contains(f) && !body[f].is_null()) return true;
  return false;
}

OutputConstraint parse_output_constraint(const ojson& body) {
  OutputConstraint out;
  for (const char* name : kFields) {
    if (!body.contains(name) || body[name].is_null()) continue;
    const std::string field = name;
    const ojson& v = body[name];
    std::string gbnf;
    if (field == "response_format") {
      gbnf = response_format_grammar(v);
    } else if (field == "grammar" || field == "guided_grammar") {
      if (!v.is_string()) refuse(field, "must be a string of GBNF");
      if (v.get<std::string>().empty()) continue;  // llama-server sends "" for none
      gbnf = converted(field, [&] { return v.get<std::string>(); });
    } else if (field == "json_schema" || field == "guided_json") {
      if (v.is_string()) {
        ojson parsed;
        try {
          parsed = ojson::parse(v.get<std::string>());
        } catch (const ojson::exception&) {
          refuse(field, "the string is not valid JSON");
        }
        gbnf = schema_grammar(field, parsed);
      } else {
        gbnf = schema_grammar(field, v);
      }
    } else if (field == "guided_regex") {
      if (!v.is_string()) refuse(field, "must be a string");
      gbnf = converted(field, [&] { return grammar::regex_to_gbnf(v.get<std::string>()); });
    } else if (field == "guided_choice") {
      if (!v.is_array() || v.empty()) refuse(field, "must be a non-empty array of strings");
      if (v.size() > 1024) refuse(field, "at most 1024 choices");
      std::vector<std::string> choices;
      for (const ojson& c : v) {
        if (!c.is_string()) refuse(field, "must be a non-empty array of strings");
        choices.push_back(c.get<std::string>());
      }
      gbnf = converted(field, [&] { return grammar::choice_to_gbnf(choices); });
    }
    if (gbnf.empty()) continue;
    if (!out.field.empty())
      refuse(field, fmt::format("only one output constraint per request; '{}' is already given", out.field));
    out.field = field;
    out.gbnf = std::move(gbnf);
  }
  return out;
}

}  // namespace kiln::serve
