#pragma once
// GBNF, llama.cpp's grammar notation, parsed into a byte-level context-free grammar.
//
//   root   ::= object ws        # rules; `root` is where matching starts
//   object ::= "{" ( pair ("," pair)* )? "}"
//   key    ::= [a-zA-Z_] [a-zA-Z0-9_]{0,31} | "\u00e9t\xC3\xA9"
//   ws     ::= [ \t\n]{0,2}     # [...], [^...], ranges, `.` (any character)
//
// Literals and character classes name Unicode code points (escapes \n \r \t \\ \" \[ \] \-
// \xHH \uHHHH \UHHHHHHHH); repetition is `*`, `+`, `?`, `{m}`, `{m,}` and `{m,n}`; `#` starts
// a comment; a newline ends a rule except inside parentheses or after `|`.
//
// The parsed Grammar is over bytes, not code points: every character class becomes the UTF-8
// byte sequences of its ranges (as regex engines compile Unicode classes), so a tokenizer's
// tokens, which may end inside a character, are matched byte by byte. Repetitions become
// auxiliary rules (x* is r ::= x r | empty; x{0,n} nests n optional copies).
//
// The parser refuses, with "grammar: line L col C: ..." (or "grammar: rule NAME ..."): syntax
// errors, undefined rules, a missing `root`, left recursion (which a top-down matcher cannot
// run), rules that can never finish (every alternative recurses forever), and grammars past
// the size limits below, so that a hostile grammar can neither exhaust memory nor hang.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::grammar {

// A set of byte values: one terminal of the byte-level grammar.
struct ByteSet {
  std::array<std::uint64_t, 4> bits{};
  bool contains(std::uint8_t b) const { return (bits[b >> 6] >> (b & 63)) & 1u; }
  void add(std::uint8_t b) { bits[b >> 6] |= std::uint64_t{1} << (b & 63); }
  void add_range(std::uint8_t lo, std::uint8_t hi) {
    for (unsigned b = lo; b <= hi; ++b) add(static_cast<std::uint8_t>(b));
  }
  bool operator==(const ByteSet&) const = default;
};

enum class ElementKind : std::uint8_t {
  Bytes,  // one byte out of byte_sets[value]
  Rule,   // the rule rules[value]
  End,    // the end of an alternative
};

struct Element {
  ElementKind kind = ElementKind::End;
  std::uint32_t value = 0;
};

struct Rule {
  std::string name;                         // auxiliary rules are named after their parent: "item/3"
  std::vector<std::uint32_t> alternatives;  // index of each alternative's first element in Grammar::elements
};

struct Grammar {
  std::vector<Rule> rules;
  std::vector<Element> elements;  // every alternative's elements, each alternative ended by an End element
  std::vector<ByteSet> byte_sets;
  std::uint32_t root = 0;         // the rule matching starts with

  // Throws kiln::Error when a rule id, byte set id or alternative start is out of range (for
  // grammars built by hand rather than by parse_gbnf).
  void validate() const;
};

struct GbnfLimits {
  std::size_t max_text_bytes = 1 << 20;   // the grammar's source
  std::size_t max_elements = 1 << 20;     // after repetitions are expanded
  std::size_t max_rules = 1 << 17;
  int max_nesting = 64;                   // parentheses inside parentheses
  std::uint32_t max_repeat = 10000;       // the largest m or n of {m,n}
};

// Parses GBNF text; throws kiln::Error "grammar: line L col C: ..." on anything wrong.
Grammar parse_gbnf(std::string_view text, const GbnfLimits& limits = {});


}  // namespace kiln::grammar
