#include "serve/structured_output.h"

#include <gtest/gtest.h>

#include "grammar/gbnf.h"
#include "serve/api_error.h"

namespace kiln::serve {
namespace {

using ojson = nlohmann::ordered_json;

ApiError error_of(const std::string& body) {
  try {
    parse_output_constraint(ojson::parse(body));
  } catch (const ApiError& e) {
    return e;
  }
  return ApiError(200, "", "");
}

TEST(StructuredOutput, EachFieldBecomesOneGrammar) {
  const char* bodies[][2] = {
      {R"({"response_format":{"type":"json_object"}})", "response_format"},
      {R"({"response_format":{"type":"json_object","schema":{"type":"integer"}}})", "response_format"},
      {R"({"response_format":{"type":"json_schema","json_schema":{"name":"x","strict":true,"schema":{"type":"object","properties":{"a":{"type":"string"}}}}}})", "response_format"},
      {R"({"grammar":"root ::= \"yes\" | \"no\""})", "grammar"},
      {R"({"json_schema":{"type":"array","maxItems":2}})", "json_schema"},
      {R"({"guided_json":"{\"type\":\"boolean\"}"})", "guided_json"},
      {R"({"guided_regex":"[0-9]{3}"})", "guided_regex"},
      {R"({"guided_choice":["left","right"]})", "guided_choice"},
      {R"({"guided_grammar":"root ::= [a-z]+"})", "guided_grammar"},
  };
  for (const auto& b : bodies) {
    const OutputConstraint c = parse_output_constraint(ojson::parse(b[0]));
    EXPECT_EQ(c.field, b[1]) << b[0];
    EXPECT_NO_THROW(grammar::parse_gbnf(c.gbnf)) << b[0];
    EXPECT_TRUE(has_output_constraint(nlohmann::json::parse(b[0])));
  }
  EXPECT_EQ(parse_output_constraint(ojson::parse(R"({"response_format":{"type":"text"}})")).field, "");
  EXPECT_EQ(parse_output_constraint(ojson::parse(R"({"grammar":""})")).field, "");
  EXPECT_FALSE(has_output_constraint(nlohmann::json::parse(R"({"messages":[]})")));
}

TEST(StructuredOutput, SchemaPropertiesKeepTheirOrder) {
  const OutputConstraint c =
      parse_output_constraint(ojson::parse(R"({"json_schema":{"properties":{"zeta":{"type":"null"},"alpha":{"type":"null"}},"required":["zeta","alpha"]}})"));
  EXPECT_LT(c.gbnf.find("zeta"), c.gbnf.find("alpha"));
}

TEST(StructuredOutput, BadConstraintsAreRefusedNamingTheField) {
  ApiError e = error_of(R"({"grammar":"root ::= \"a\"","guided_regex":"b"})");
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.param, "guided_regex");
  EXPECT_NE(e.message.find("only one output constraint"), std::string::npos);
  e = error_of(R"({"grammar":"root ::= undefined"})");
  EXPECT_EQ(e.param, "grammar");
  EXPECT_EQ(e.message, "'grammar': grammar: line 1 col 10: undefined rule undefined");
  e = error_of(R"({"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","properties":{"a":{"not":{}}}}}}})");
  EXPECT_EQ(e.param, "response_format.json_schema.schema");
  EXPECT_NE(e.message.find("at /properties/a: not is not supported"), std::string::npos);
  EXPECT_EQ(error_of(R"({"response_format":{"type":"xml"}})").param, "response_format.type");
  EXPECT_EQ(error_of(R"({"response_format":{"type":"json_schema"}})").param, "response_format.json_schema");
  EXPECT_EQ(error_of(R"({"response_format":{"type":"json_schema","json_schema":{"name":"a b","schema":{}}}})").param,
            "response_format.json_schema.name");
  EXPECT_EQ(error_of(R"({"guided_json":"{not json"})").param, "guided_json");
  EXPECT_EQ(error_of(R"j({"guided_regex":"(?<=x)"})j").param, "guided_regex");
  EXPECT_EQ(error_of(R"({"guided_choice":[]})").param, "guided_choice");
  EXPECT_EQ(error_of(R"({"guided_choice":["a",1]})").param, "guided_choice");
  EXPECT_EQ(error_of(R"({"json_schema":[1]})").param, "json_schema");
  EXPECT_EQ(error_of(R"({"grammar":"root ::= \"a\" root"})").param, "grammar");  // can never finish
}

}  // namespace
}  // namespace kiln::serve
