#pragma once
// The syntax tree of kiln's Jinja subset and the parser that builds it from tokens. Statements:
// if/elif/else, for (with `if` filter, else, break/continue), set (names, tuples, namespace
// attributes, block set), macro, filter blocks and Hugging Face's {% generation %}. Expressions
// follow Jinja2's grammar and precedence (jinja2/parser.py), including filters, tests,
// inline if/else, slices and calls with keyword arguments.
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chat/jinja_lexer.h"
#include "chat/jinja_value.h"

namespace kiln::jinja {

enum class ExprKind {
  Literal,   // literal
  Name,      // name
  List,      // items (also tuples, which behave as lists here)
  Dict,      // items: key, value, key, value, ...
  Attr,      // a.name
  Item,      // a[b]
  Slice,     // a, b, c: start, stop, step (each may be null); only inside Item
  Call,      // a(items..., kwargs...)
  Filter,    // a | name(items..., kwargs...); a is null in a filter block
  Test,      // a is [not] name(items...)
  Neg,       // -a
  Pos,       // +a
  Not,       // not a
  And,       // a and b
  Or,        // a or b
  Binary,    // a <name> b for + - * / // % **
  Concat,    // items joined with ~
  Compare,   // items[0] ops[0] items[1] ops[1] items[2] ... (==, !=, <, <=, >, >=, in, notin)
  CondExpr,  // a if b else c (c may be null: undefined)
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  ExprKind kind = ExprKind::Literal;
  int line = 1, col = 1;
  Value literal;
  std::string name;
  std::vector<ExprPtr> items;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
  ExprPtr a, b, c;
  bool negated = false;  // Test: `is not`
  bool is_tuple = false;  // List: written as a tuple, "(a, b)" or "a, b"
  int depth = 1;  // height of this subtree; the parser bounds it so evaluation cannot overflow the stack
};

enum class NodeKind {
  Text,      // text
  Output,    // {{ expr }}
  If,        // branches (condition, body), else_body
  For,       // targets in expr [if filter]: body, else_body
  Set,       // targets (or targets[0].attr when attr is set) = expr
  SetBlock,  // {% set targets[0] %}body{% endset %}
  Macro,     // name(params): body
  FilterBlock,  // filters applied to the rendered body
  Body,      // body rendered as is ({% generation %})
  Break,
  Continue,
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using NodeList = std::vector<NodePtr>;

struct Node {
  NodeKind kind = NodeKind::Text;
  int line = 1, col = 1;
  std::string text;
  ExprPtr expr;
  ExprPtr filter;
  std::vector<std::pair<ExprPtr, NodeList>> branches;
  NodeList body, else_body;
  std::vector<std::string> targets;
  std::string attr;
  std::string name;
  std::vector<std::pair<std::string, ExprPtr>> params;  // macro parameters with defaults (or null)
  std::vector<ExprPtr> filters;                         // FilterBlock
};

// Parses a whole template. Throws kiln::Error "chat template: line L:C: ..." naming what was
// expected; unknown filters and tests are errors here, as in Jinja2's compile step.
NodeList parse_template(std::string_view source, const LexOptions& options);

}  // namespace kiln::jinja
