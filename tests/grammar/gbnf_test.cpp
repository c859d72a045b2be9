#include "grammar/gbnf.h"

#include <gtest/gtest.h>

#include "byte_vocabulary.h"
#include "core/error.h"

namespace kiln::grammar {
namespace {

using test::matches;

std::string parse_error(std::string_view text) {
  try {
    parse_gbnf(text);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Gbnf, LiteralsAlternativesAndGroups) {
  const char* g = "root ::= \"ab\" | \"c\" (\"d\" | \"e\")  # a comment\n";
  EXPECT_TRUE(matches(g, "ab"));
  EXPECT_TRUE(matches(g, "cd"));
  EXPECT_TRUE(matches(g, "ce"));
  EXPECT_FALSE(matches(g, "c"));
  EXPECT_FALSE(matches(g, "abc"));
  EXPECT_FALSE(matches(g, ""));
}

TEST(Gbnf, EscapesInLiteralsAndClasses) {
  EXPECT_TRUE(matches(R"(root ::= "\n\t\"\\\x41\u00e9\U0001F600")", "\n\t\"\\A\xC3\xA9\xF0\x9F\x98\x80"));
  EXPECT_TRUE(matches(R"(root ::= [\[\]\-]+)", "[]-"));
  EXPECT_TRUE(matches("root ::= \"h\xC3\xA9\"", "h\xC3\xA9"));  // UTF-8 in the source
}

TEST(Gbnf, CharacterClassesAndNegation) {
  const char* g = "root ::= [a-c0-9_] [^a-z]\n";
  EXPECT_TRUE(matches(g, "a0"));
  EXPECT_TRUE(matches(g, "_Z"));
  EXPECT_TRUE(matches(g, "9\xC3\xA9"));       // a negated class holds multi-byte characters
  EXPECT_TRUE(matches(g, "b\xF0\x9F\x98\x80"));
  EXPECT_FALSE(matches(g, "dA"));
  EXPECT_FALSE(matches(g, "aa"));
  EXPECT_FALSE(matches(g, "a\xC3"));           // half a character
  EXPECT_FALSE(matches(g, "a\xED\xA0\x80"));   // a surrogate is no character
  // Ranges across UTF-8 lengths: U+007E..U+0801 and U+FFFF..U+10000.
  const char* r = R"(root ::= [~-\u0801] | [\uFFFF-\U00010000])";
  EXPECT_TRUE(matches(r, "~"));
  EXPECT_TRUE(matches(r, "\x7F"));
  EXPECT_TRUE(matches(r, "\xDF\xBF"));      // U+07FF
  EXPECT_TRUE(matches(r, "\xE0\xA0\x81"));  // U+0801
  EXPECT_FALSE(matches(r, "\xE0\xA0\x82")); // U+0802
  EXPECT_TRUE(matches(r, "\xEF\xBF\xBF"));
  EXPECT_TRUE(matches(r, "\xF0\x90\x80\x80"));
  EXPECT_FALSE(matches(r, "\xF0\x90\x80\x81"));
  EXPECT_TRUE(matches("root ::= .", "\n"));
  EXPECT_TRUE(matches("root ::= .", "\xE2\x82\xAC"));
}

TEST(Gbnf, Repetitions) {
  const char* g = "root ::= \"a\"* \"b\"+ \"c\"? [0-9]{2} \"x\"{1,3} \"y\"{2,}\n";
  EXPECT_TRUE(matches(g, "b12xyy"));
  EXPECT_TRUE(matches(g, "aaabbc12xxxyyyy"));
  EXPECT_FALSE(matches(g, "12xyy"));       // b+ needs one
  EXPECT_FALSE(matches(g, "b1xyy"));       // {2}
  EXPECT_FALSE(matches(g, "b12xxxxyy"));   // {1,3}
  EXPECT_FALSE(matches(g, "b12xy"));       // {2,}
  EXPECT_TRUE(matches("root ::= (\"ab\" \"c\"){2}", "abcabc"));
  EXPECT_TRUE(matches("root ::= \"ab\"{0,2}", ""));
  EXPECT_FALSE(matches("root ::= \"ab\"{0,2}", "ababab"));
}

TEST(Gbnf, RulesOverLinesAndRecursion) {
  const char* g =
      "root ::= list\n"
      "list ::= \"[\" (\n"
      "    item (\",\" item)*\n"
      "  )? \"]\"\n"
      "item ::= [0-9] | list   # nested lists: right and middle recursion\n";
  EXPECT_TRUE(matches(g, "[]"));
  EXPECT_TRUE(matches(g, "[1,[2,[]],3]"));
  EXPECT_FALSE(matches(g, "[1,]"));
  EXPECT_FALSE(matches(g, "[[1]"));
}

TEST(Gbnf, RefusesBadGrammarsWithPositions) {
  EXPECT_EQ(parse_error(""), "grammar: the grammar is empty (it needs a rule named root)");
  EXPECT_EQ(parse_error("# only a comment\n"), "grammar: the grammar is empty (it needs a rule named root)");
  EXPECT_EQ(parse_error("a ::= \"x\"\n"), "grammar: no rule named root");
  EXPECT_EQ(parse_error("root ::= \"x\" undefined\n"), "grammar: line 1 col 14: undefined rule undefined");
  EXPECT_EQ(parse_error("root ::= \"x\n"), "grammar: line 1 col 10: unterminated string literal");
  EXPECT_EQ(parse_error("root ::= [a-\n"), "grammar: line 1 col 10: unterminated character class");
  EXPECT_EQ(parse_error("root ::= (\"a\"\n"), "grammar: line 1 col 10: unclosed parenthesis");
  EXPECT_EQ(parse_error("root ::= \"a\"\nroot ::= \"b\"\n"), "grammar: line 2 col 1: rule root is defined twice");
  EXPECT_EQ(parse_error("root = \"a\"\n"), "grammar: line 1 col 6: expected ::= after rule name root");
  EXPECT_EQ(parse_error("root ::= * \"a\"\n"), "grammar: line 1 col 10: '*' follows nothing it could repeat");
  EXPECT_EQ(parse_error("root ::= [z-a]\n"), "grammar: line 1 col 10: character range U+7A-U+61 is reversed");
  EXPECT_EQ(parse_error("root ::= \"\\q\"\n"), "grammar: line 1 col 11: unknown escape \\q");
  EXPECT_EQ(parse_error("root ::= \"a\"{3,1}\n"), "grammar: line 1 col 18: repetition {3,1} has max below min");
  EXPECT_EQ(parse_error("root ::= root \"a\" | \"b\"\n"), "grammar: rule root is left-recursive (it can begin with itself)");
  EXPECT_EQ(parse_error("root ::= e root \"a\" | \"b\"\ne ::= \"x\"?\n"),
            "grammar: rule root is left-recursive (it can begin with itself)");
  EXPECT_EQ(parse_error("root ::= \"a\" root\n"), "grammar: rule root can never finish (each alternative recurses forever)");
  EXPECT_EQ(parse_error("root ::= [^\\x00-\\U0010FFFF]\n"), "grammar: line 1 col 10: the character class matches no character");
}

TEST(Gbnf, LimitsBoundHostileGrammars) {
  EXPECT_NE(parse_error("root ::= \"a\"{10001}\n").find("repetition count above the limit of 10000"), std::string::npos);
  // Nested repetitions share their inner rule, so they grow linearly, not as a product.
  EXPECT_EQ(parse_error("root ::= (((\"a\"{9999}){9999}){9999})\n"), "");
  // Many large repetitions: refused by the element limit, not by running out of memory.
  std::string many = "root ::=";
  for (int i = 0; i < 120; ++i) many += " \"a\"{9999}";
  EXPECT_NE(parse_error(many + "\n").find("expands to more than"), std::string::npos);
  std::string deep = "root ::= " + std::string(100, '(') + "\"a\"" + std::string(100, ')') + "\n";
  EXPECT_NE(parse_error(deep).find("parentheses nested deeper than 64"), std::string::npos);
  GbnfLimits small;
  small.max_text_bytes = 8;
  EXPECT_THROW(parse_gbnf("root ::= \"abc\"\n", small), Error);
}

TEST(Gbnf, ByteLevelShape) {
  const Grammar g = parse_gbnf("root ::= [a-z] \"\xC3\xA9\"\n");
  // [a-z] is one terminal; the literal é is its two bytes.
  ASSERT_EQ(g.rules[g.root].alternatives.size(), 1u);
  std::size_t n = 0;
  for (std::uint32_t p = g.rules[g.root].alternatives[0]; g.elements[p].kind != ElementKind::End; ++p) {
    EXPECT_EQ(g.elements[p].kind, ElementKind::Bytes);
    ++n;
  }
  EXPECT_EQ(n, 3u);
}

}  // namespace
}  // namespace kiln::grammar
