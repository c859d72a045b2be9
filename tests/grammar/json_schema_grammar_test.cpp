#include "grammar/json_schema_grammar.h"

#include <gtest/gtest.h>

#include "byte_vocabulary.h"
#include "core/error.h"

namespace kiln::grammar {
namespace {

using nlohmann::json;
using test::compile_bytes;
using test::matches;

template <typename Json>
std::shared_ptr<const CompiledGrammar> schema_grammar(const Json& schema) {
  const std::string gbnf = json_schema_to_gbnf(schema);
  try {
    return compile_bytes(gbnf);
  } catch (const Error& e) {
    ADD_FAILURE() << e.what() << "\n" << gbnf;
    throw;
  }
}

std::string conversion_error(const json& schema) {
  try {
    json_schema_to_gbnf(schema);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(JsonSchemaGrammar, ObjectsWithRequiredAndOptionalProperties) {
  // Parsed ordered: the properties come in the schema's order (name, age, tags).
  auto g = schema_grammar(nlohmann::ordered_json::parse(R"({"type":"object","properties":{
      "name":{"type":"string"},"age":{"type":"integer"},"tags":{"type":"array","items":{"type":"string"}}},
      "required":["name"],"additionalProperties":false})"));
  EXPECT_TRUE(matches(g, R"({"name":"a"})"));
  EXPECT_TRUE(matches(g, R"({"name":"a","age":3})"));
  EXPECT_TRUE(matches(g, R"({ "name": "a", "tags": ["x", "y"] })"));
  EXPECT_TRUE(matches(g, "{\n  \"name\": \"\\u00e9\\n\",\n  \"age\": -12\n}"));
  EXPECT_FALSE(matches(g, R"({"age":3})"));                 // name is required
  EXPECT_FALSE(matches(g, R"({"name":"a","other":1})"));    // no additional properties
  EXPECT_FALSE(matches(g, R"({"name":"a",})"));
  EXPECT_FALSE(matches(g, R"({"name":"a"} )"));             // nothing after the value
  EXPECT_FALSE(matches(g, "{\"name\":\"a\\x\"}"));          // a bad escape
  EXPECT_FALSE(matches(g, "{\"name\":\"a\nb\"}"));          // a raw control character
}

TEST(JsonSchemaGrammar, WhitespaceIsCapped) {
  auto g = schema_grammar(json::parse(R"({"type":"array","items":{"type":"integer"}})"));
  EXPECT_TRUE(matches(g, "[1, 2]"));
  EXPECT_TRUE(matches(g, "[\n" + std::string(16, ' ') + "1]"));
  EXPECT_FALSE(matches(g, "[\n" + std::string(17, ' ') + "1]"));
  EXPECT_FALSE(matches(g, "[1,   2]"));
  EXPECT_FALSE(matches(g, "[1,\n\n2]"));
}

TEST(JsonSchemaGrammar, AdditionalPropertiesNeverRepeatANamedKey) {
  auto g = schema_grammar(json::parse(
      R"({"type":"object","properties":{"ab":{"type":"integer"}},"additionalProperties":{"type":"boolean"}})"));
  EXPECT_TRUE(matches(g, R"({"ab":1,"x":true})"));
  EXPECT_TRUE(matches(g, R"({"a":false,"abc":true})"));
  EXPECT_TRUE(matches(g, R"({"":true})"));
  EXPECT_FALSE(matches(g, R"({"ab":1,"ab":true})"));
  EXPECT_FALSE(matches(g, R"({"x":1})"));
}

TEST(JsonSchemaGrammar, ArraysWithBoundsAndPrefixItems) {
  auto g = schema_grammar(json::parse(R"({"type":"array","items":{"type":"boolean"},"minItems":2,"maxItems":3})"));
  EXPECT_FALSE(matches(g, "[true]"));
  EXPECT_TRUE(matches(g, "[true,false]"));
  EXPECT_TRUE(matches(g, "[true,false,true]"));
  EXPECT_FALSE(matches(g, "[true,false,true,true]"));
  auto t = schema_grammar(json::parse(R"({"prefixItems":[{"type":"integer"},{"const":"x"}],"items":false})"));
  EXPECT_TRUE(matches(t, R"([1,"x"])"));
  EXPECT_FALSE(matches(t, R"([1,"x",2])"));
  EXPECT_FALSE(matches(t, R"([1])"));
}

TEST(JsonSchemaGrammar, EnumConstAnyOfRefsAndNullable) {
  auto g = schema_grammar(nlohmann::ordered_json::parse(R"({
      "$defs":{"node":{"type":"object","properties":{"v":{"enum":["a",1,null,{"k":[true]}]},
                                                   "next":{"anyOf":[{"$ref":"#/$defs/node"},{"type":"null"}]}},
                       "required":["v","next"]}},
      "$ref":"#/$defs/node"})"));
  EXPECT_TRUE(matches(g, R"({"v":"a","next":null})"));
  EXPECT_TRUE(matches(g, R"({"v":{"k":[true]},"next":{"v":1,"next":{"v":null,"next":null}}})"));
  EXPECT_FALSE(matches(g, R"({"v":"b","next":null})"));
  EXPECT_FALSE(matches(g, R"({"next":null,"v":"a"})"));
  auto n = schema_grammar(json::parse(R"({"type":["integer","string"],"nullable":true})"));
  EXPECT_TRUE(matches(n, "null"));
  EXPECT_TRUE(matches(n, "7"));
  EXPECT_TRUE(matches(n, "\"7\""));
  EXPECT_FALSE(matches(n, "true"));
  auto all = schema_grammar(json::parse(R"({"allOf":[{"properties":{"a":{"const":1}},"required":["a"]},
                                                      {"properties":{"b":{"const":2}},"required":["b"]}]})"));
  EXPECT_TRUE(matches(all, R"({"a":1,"b":2})"));
  EXPECT_FALSE(matches(all, R"({"a":1})"));
}

TEST(JsonSchemaGrammar, StringLengthsPatternsAndFormats) {
  auto g = schema_grammar(json::parse(R"({"type":"string","minLength":2,"maxLength":3})"));
  EXPECT_FALSE(matches(g, "\"a\""));
  EXPECT_TRUE(matches(g, "\"ab\""));
  EXPECT_TRUE(matches(g, "\"a\\nb\""));       // an escape is one character
  EXPECT_TRUE(matches(g, "\"\xC3\xA9\xC3\xA9\""));  // characters, not bytes
  EXPECT_FALSE(matches(g, "\"abcd\""));
  auto p = schema_grammar(json::parse(R"({"type":"string","pattern":"^[A-Z]{2}-\\d{3}(x|\"y)?$"})"));
  EXPECT_TRUE(matches(p, "\"AB-123\""));
  EXPECT_TRUE(matches(p, "\"AB-123\\\"y\""));
  EXPECT_FALSE(matches(p, "\"AB-12\""));
  auto d = schema_grammar(json::parse(R"({"type":"string","format":"date"})"));
  EXPECT_TRUE(matches(d, "\"2024-01-31\""));
  EXPECT_FALSE(matches(d, "\"2024-04-31\""));
  EXPECT_FALSE(matches(d, "\"2024-13-01\""));
  auto dt = schema_grammar(json::parse(R"({"type":"string","format":"date-time"})"));
  EXPECT_TRUE(matches(dt, "\"2024-02-28T23:59:59.5Z\""));
  EXPECT_TRUE(matches(dt, "\"2024-02-28T00:00:00+05:30\""));
  auto u = schema_grammar(json::parse(R"({"type":"string","format":"uuid"})"));
  EXPECT_TRUE(matches(u, "\"123e4567-e89b-12d3-a456-426614174000\""));
  auto e = schema_grammar(json::parse(R"({"type":"string","format":"email"})"));
  EXPECT_TRUE(matches(e, "\"a.b@example.com\""));
  EXPECT_FALSE(matches(e, "\"a@b\""));
}

// Integer bounds are exact digit grammars: every value in a window around the bounds matches
// exactly when it lies within them.
TEST(JsonSchemaGrammar, IntegerBoundsAreExact) {
  const long long cases[][2] = {{0, 9}, {3, 97}, {-120, 45}, {-999, -101}, {17, 1003}, {99, 100}, {-5, -5}, {1000, 20999}};
  for (const auto& c : cases) {
    auto g = schema_grammar(json{{"type", "integer"}, {"minimum", c[0]}, {"maximum", c[1]}});
    for (long long v = c[0] - 130; v <= c[1] + 130; ++v) {
      if (v > c[0] + 1200 && v < c[1] - 1200) continue;
      EXPECT_EQ(matches(g, std::to_string(v)), v >= c[0] && v <= c[1]) << v << " in [" << c[0] << "," << c[1] << "]";
    }
    EXPECT_FALSE(matches(g, "01"));
    EXPECT_FALSE(matches(g, "-0"));
  }
  auto ex = schema_grammar(json::parse(R"({"type":"integer","exclusiveMinimum":0,"exclusiveMaximum":10})"));
  EXPECT_FALSE(matches(ex, "0"));
  EXPECT_TRUE(matches(ex, "1"));
  EXPECT_TRUE(matches(ex, "9"));
  EXPECT_FALSE(matches(ex, "10"));
  auto lower = schema_grammar(json::parse(R"({"type":"integer","minimum":-3})"));
  EXPECT_TRUE(matches(lower, "123456789"));
  EXPECT_FALSE(matches(lower, "-4"));
}

TEST(JsonSchemaGrammar, NumberBoundsHold) {
  auto g = schema_grammar(json::parse(R"({"type":"number","minimum":-2.5,"maximum":3})"));
  EXPECT_TRUE(matches(g, "-2"));
  EXPECT_TRUE(matches(g, "3"));
  EXPECT_TRUE(matches(g, "-1.75"));
  EXPECT_TRUE(matches(g, "2.999"));
  EXPECT_FALSE(matches(g, "3.5"));
  EXPECT_FALSE(matches(g, "-3"));
  EXPECT_FALSE(matches(g, "1e3"));
}

TEST(JsonSchemaGrammar, UnsupportedKeywordsAreNamedWithTheirPath) {
  EXPECT_EQ(conversion_error(json::parse(R"({"type":"object","properties":{"a":{"type":"integer","multipleOf":3}}})")),
            "json_schema: at /properties/a: multipleOf is not supported");
  EXPECT_EQ(conversion_error(json::parse(R"({"not":{}})")), "json_schema: at /: not is not supported");
  EXPECT_EQ(conversion_error(json::parse(R"({"$ref":"https://example.com/s.json"})")),
            "json_schema: at /: $ref https://example.com/s.json is not supported (only #/$defs/... and #/definitions/...)");
  EXPECT_EQ(conversion_error(json::parse(R"({"$ref":"#/$defs/missing"})")), "json_schema: at /: $ref #/$defs/missing points at nothing");
  EXPECT_EQ(conversion_error(json::parse(R"({"type":"strin"})")), "json_schema: at /type: unknown type strin");
  EXPECT_EQ(conversion_error(json::parse(R"({"type":"string","format":"hostname"})")),
            "json_schema: at /format: format \"hostname\" is not supported (date, time, date-time, uuid, email are)");
  EXPECT_EQ(conversion_error(json::parse(R"({"type":"integer","minimum":5,"maximum":4})")),
            "json_schema: at /: no integer lies within minimum and maximum");
  EXPECT_EQ(conversion_error(json::parse(R"({"type":"string","pattern":"(a)\\1"})")),
            "json_schema: at /pattern: regex: at offset 5: \\1 is not supported");
}

TEST(JsonSchemaGrammar, AnyJsonObject) {
  auto g = compile_bytes(json_object_gbnf());
  EXPECT_TRUE(matches(g, R"({})"));
  EXPECT_TRUE(matches(g, R"({"a":[1,{"b":null},"c",-0.5e+3,true]})"));
  EXPECT_FALSE(matches(g, R"([1])"));
  EXPECT_FALSE(matches(g, R"({"a":01})"));
}

TEST(RegexGrammar, SubsetMatchesAsEcmaScriptDoes) {
  auto g = compile_bytes(regex_to_gbnf(R"(^(?:\d{3}-)?[a-c]+\.\w*(foo|ba[rz])?\s?$)"));
  EXPECT_TRUE(matches(g, "123-ab.x_1foo "));
  EXPECT_TRUE(matches(g, "c."));
  EXPECT_TRUE(matches(g, "a.baz"));
  EXPECT_FALSE(matches(g, "12-a."));
  EXPECT_FALSE(matches(g, "d."));
  auto dot = compile_bytes(regex_to_gbnf("a.c"));
  EXPECT_TRUE(matches(dot, "a\xE2\x82\xAC" "c"));
  EXPECT_FALSE(matches(dot, "a\nc"));
  EXPECT_THROW(regex_to_gbnf("(?=a)"), Error);
  EXPECT_THROW(regex_to_gbnf("a**"), Error);
  EXPECT_THROW(regex_to_gbnf("a{6,3}"), Error);
  EXPECT_THROW(regex_to_gbnf("a\xE6Z"), Error);  // not UTF-8  // out of order: refused by the converter, not the GBNF parser
  EXPECT_NO_THROW(parse_gbnf(regex_to_gbnf("a{3,3}b{0,}")));
  EXPECT_THROW(regex_to_gbnf("\\bword"), Error);
}

TEST(ChoiceGrammar, ExactlyOneChoice) {
  auto g = compile_bytes(choice_to_gbnf({"yes", "no", "a \"quoted\" \\ one"}));
  EXPECT_TRUE(matches(g, "yes"));
  EXPECT_TRUE(matches(g, "a \"quoted\" \\ one"));
  EXPECT_FALSE(matches(g, "yesno"));
  EXPECT_THROW(choice_to_gbnf({}), Error);
}

}  // namespace
}  // namespace kiln::grammar
