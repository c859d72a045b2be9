// Recursive-descent parser for kiln's Jinja subset; the grammar and precedence are Jinja2's:
// condexpr < or < and < not < compare < + - < ~ < * / // % < ** < unary, with postfix access,
// calls, filters and tests binding tightest (so `a + b | trim` trims b only).
#include "chat/jinja_parser.h"

#include <algorithm>
#include <initializer_list>

#include "core/error.h"
#include "chat/jinja_builtins.h"

namespace kiln::jinja {
namespace {

// Deeper nesting than this is refused: it keeps the parser's and the interpreter's recursion
// far from the stack limit whatever the input.
constexpr int kMaxNesting = 96;

std::string describe(const Token& t) {
  switch (t.kind) {
    case TokenKind::Text: return "template text";
    case TokenKind::VarBegin: return "'{{'";
    case TokenKind::VarEnd: return "'}}'";
    case TokenKind::BlockBegin: return "'{%'";
    case TokenKind::BlockEnd: return "'%}'";
    case TokenKind::Name: return "'" + t.text + "'";
    case TokenKind::String: return "string";
    case TokenKind::Int:
    case TokenKind::Float: return "number " + t.text;
    case TokenKind::Op: return "'" + t.text + "'";
    case TokenKind::Eof: return "end of template";
  }
  return "token";
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : toks_(std::move(tokens)) {}

  NodeList parse() {
    NodeList body = parse_body({});
    if (peek().kind != TokenKind::Eof) error(peek(), "unexpected " + describe(peek()));
    return body;
  }

 private:
  struct DepthGuard {
    DepthGuard(Parser& p, const Token& at) : p_(p) {
      if (++p_.depth_ > kMaxNesting) p_.error(at, fmt::format("template nested deeper than {} levels", kMaxNesting));
    }
    ~DepthGuard() { --p_.depth_; }
    Parser& p_;
  };

  [[noreturn]] void error(const Token& at, const std::string& message) const {
    fail("chat template: line {}:{}: {}", at.line, at.col, message);
  }

  const Token& peek(std::size_t ahead = 0) const {
    const std::size_t i = pos_ + ahead;
    return i < toks_.size() ? toks_[i] : toks_.back();
  }
  const Token& next() {
    const Token& t = peek();
    if (pos_ < toks_.size() - 1) ++pos_;
    return t;
  }
  bool is_op(std::string_view op, std::size_t ahead = 0) const {
    return peek(ahead).kind == TokenKind::Op && peek(ahead).text == op;
  }
  bool is_name(std::string_view name, std::size_t ahead = 0) const {
    return peek(ahead).kind == TokenKind::Name && peek(ahead).text == name;
  }
  bool skip_op(std::string_view op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(std::string_view name) {
    if (!is_name(name)) return false;
    next();
    return true;
  }
  void expect_op(std::string_view op) {
    if (!skip_op(op)) error(peek(), fmt::format("expected '{}', got {}", op, describe(peek())));
  }
  void expect_name(std::string_view name) {
    if (!skip_name(name)) error(peek(), fmt::format("expected '{}', got {}", name, describe(peek())));
  }
  const Token& expect_kind(TokenKind kind, std::string_view what) {
    if (peek().kind != kind) error(peek(), fmt::format("expected {}, got {}", what, describe(peek())));
    return next();
  }
  void expect_block_end() { expect_kind(TokenKind::BlockEnd, "'%}'"); }

  ExprPtr make(ExprKind kind, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = at.line;
    e->col = at.col;
    return e;
  }
  // Records the height of a finished node and refuses trees taller than kMaxNesting: chains
  // such as a.b.c... or a+b+c+... are built by loops, not recursion, so the parser's own depth
  // guard does not see them.
  ExprPtr done(ExprPtr e) {
    int h = 0;
    for (const Expr* c : {e->a.get(), e->b.get(), e->c.get()})
      if (c) h = std::max(h, c->depth);
    for (const ExprPtr& c : e->items)
      if (c) h = std::max(h, c->depth);
    for (const auto& kv : e->kwargs)
      if (kv.second) h = std::max(h, kv.second->depth);
    e->depth = h + 1;
    if (e->depth > 2 * kMaxNesting) fail("chat template: line {}:{}: expression nested deeper than {} levels", e->line, e->col, 2 * kMaxNesting);
    return e;
  }

  NodePtr make_node(NodeKind kind, const Token& at) {
    auto n = std::make_unique<Node>();
    n->kind = kind;
    n->line = at.line;
    n->col = at.col;
    return n;
  }

  // ---- statements -------------------------------------------------------------------------

  // Parses nodes until a block tag named in `stop` (left unconsumed after its "{%") or the end.
  NodeList parse_body(std::initializer_list<std::string_view> stop) {
    NodeList body;
    while (true) {
      const Token& t = peek();
      if (t.kind == TokenKind::Eof) {
        if (stop.size() != 0) {
          std::string_view closer = *stop.begin();
          for (std::string_view s : stop)
            if (s.rfind("end", 0) == 0) closer = s;
          error(t, fmt::format("unexpected end of template, expected '{}'", closer));
        }
        return body;
      }
      if (t.kind == TokenKind::Text) {
        NodePtr n = make_node(NodeKind::Text, t);
        n->text = next().text;
        body.push_back(std::move(n));
      } else if (t.kind == TokenKind::VarBegin) {
        next();
        NodePtr n = make_node(NodeKind::Output, t);
        n->expr = parse_tuple(true);
        expect_kind(TokenKind::VarEnd, "'}}'");
        body.push_back(std::move(n));
      } else if (t.kind == TokenKind::BlockBegin) {
        const Token& name = peek(1);
        if (name.kind != TokenKind::Name) error(name, "expected a tag name after '{%', got " + describe(name));
        for (std::string_view s : stop) {
          if (name.text == s) {
            next();
            return body;
          }
        }
        next();
        body.push_back(parse_statement());
      } else {
        error(t, "unexpected " + describe(t));
      }
    }
  }

  NodePtr parse_statement() {
    const Token& tag = peek();
    DepthGuard guard(*this, tag);
    const std::string name = tag.text;
    if (name == "if") return parse_if();
    if (name == "for") return parse_for();
    if (name == "set") return parse_set();
    if (name == "macro") return parse_macro();
    if (name == "filter") return parse_filter_block();
    if (name == "generation") {
      next();
      expect_block_end();
      NodePtr n = make_node(NodeKind::Body, tag);
      n->body = parse_body({"endgeneration"});
      next();
      expect_block_end();
      return n;
    }
    if (name == "break" || name == "continue") {
      next();
      if (loop_depth_ == 0) error(tag, fmt::format("'{}' outside of a loop", name));
      expect_block_end();
      return make_node(name == "break" ? NodeKind::Break : NodeKind::Continue, tag);
    }
    if (name.rfind("end", 0) == 0 || name == "elif" || name == "else")
      error(tag, fmt::format("unexpected '{}' (no block is open that it could close)", name));
    error(tag, fmt::format("unknown or unsupported tag '{}'", name));
  }

  NodePtr parse_if() {
    NodePtr n = make_node(NodeKind::If, next());
    while (true) {
      ExprPtr cond = parse_tuple(false);
      expect_block_end();
      NodeList body = parse_body({"elif", "else", "endif"});
      n->branches.emplace_back(std::move(cond), std::move(body));
      const std::string which = next().text;
      if (which == "elif") continue;
      if (which == "else") {
        expect_block_end();
        n->else_body = parse_body({"endif"});
        next();
      }
      expect_block_end();
      return n;
    }
  }

  std::vector<std::string> parse_targets() {
    std::vector<std::string> names;
    const bool parens = skip_op("(");
    do {
      names.push_back(expect_kind(TokenKind::Name, "a variable name").text);
    } while (skip_op(","));
    if (parens) expect_op(")");
    return names;
  }

  NodePtr parse_for() {
    NodePtr n = make_node(NodeKind::For, next());
    n->targets = parse_targets();
    expect_name("in");
    n->expr = parse_tuple(false);
    if (skip_name("if")) n->filter = parse_expression(true);
    if (is_name("recursive")) error(peek(), "recursive loops are not supported");
    expect_block_end();
    ++loop_depth_;
    n->body = parse_body({"endfor", "else"});
    --loop_depth_;
    if (next().text == "else") {
      expect_block_end();
      n->else_body = parse_body({"endfor"});
      next();
    }
    expect_block_end();
    return n;
  }

  NodePtr parse_set() {
    const Token& tag = next();
    const Token& first = expect_kind(TokenKind::Name, "a variable name");
    if (is_op(".")) {
      next();
      NodePtr n = make_node(NodeKind::Set, tag);
      n->targets.push_back(first.text);
      n->attr = expect_kind(TokenKind::Name, "an attribute name").text;
      expect_op("=");
      n->expr = parse_tuple(true);
      expect_block_end();
      return n;
    }
    std::vector<std::string> names{first.text};
    while (skip_op(",")) names.push_back(expect_kind(TokenKind::Name, "a variable name").text);
    if (skip_op("=")) {
      NodePtr n = make_node(NodeKind::Set, tag);
      n->targets = std::move(names);
      n->expr = parse_tuple(true);
      expect_block_end();
      return n;
    }
    if (names.size() != 1) error(peek(), "expected '=' after the names to set");
    NodePtr n = make_node(NodeKind::SetBlock, tag);
    n->targets = std::move(names);
    expect_block_end();
    n->body = parse_body({"endset"});
    next();
    expect_block_end();
    return n;
  }

  NodePtr parse_macro() {
    NodePtr n = make_node(NodeKind::Macro, next());
    n->name = expect_kind(TokenKind::Name, "a macro name").text;
    expect_op("(");
    while (!is_op(")")) {
      if (!n->params.empty()) expect_op(",");
      if (is_op(")")) break;
      std::string param = expect_kind(TokenKind::Name, "a parameter name").text;
      ExprPtr def;
      if (skip_op("=")) def = parse_expression(true);
      n->params.emplace_back(std::move(param), std::move(def));
    }
    expect_op(")");
    expect_block_end();
    const int saved_loops = loop_depth_;
    loop_depth_ = 0;  // break/continue cannot cross a macro body
    n->body = parse_body({"endmacro"});
    loop_depth_ = saved_loops;
    next();
    expect_block_end();
    return n;
  }

  NodePtr parse_filter_block() {
    NodePtr n = make_node(NodeKind::FilterBlock, next());
    do {
      n->filters.push_back(parse_filter(nullptr));
    } while (skip_op("|"));
    expect_block_end();
    n->body = parse_body({"endfilter"});
    next();
    expect_block_end();
    return n;
  }

  // ---- expressions ------------------------------------------------------------------------

  // An expression, or a tuple of them when commas follow (as in `{% set a, b = 1, 2 %}`).
  ExprPtr parse_tuple(bool with_condexpr) {
    const Token& at = peek();
    ExprPtr first = parse_expression(with_condexpr);
    if (!is_op(",")) return first;
    ExprPtr list = make(ExprKind::List, at);
    list->is_tuple = true;
    list->items.push_back(std::move(first));
    while (skip_op(",")) {
      if (peek().kind == TokenKind::BlockEnd || peek().kind == TokenKind::VarEnd || is_op(")")) break;
      list->items.push_back(parse_expression(with_condexpr));
    }
    return done(std::move(list));
  }

  ExprPtr parse_expression(bool with_condexpr) {
    DepthGuard guard(*this, peek());
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
    ExprPtr expr = parse_or();
    while (is_name("if")) {
      ExprPtr cond = make(ExprKind::CondExpr, next());
      cond->b = parse_or();
      if (skip_name("else")) cond->c = parse_condexpr();
      cond->a = std::move(expr);
      expr = done(std::move(cond));
    }
    return expr;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (is_name("or")) {
      ExprPtr e = make(ExprKind::Or, next());
      e->a = std::move(left);
      e->b = parse_and();
      left = done(std::move(e));
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (is_name("and")) {
      ExprPtr e = make(ExprKind::And, next());
      e->a = std::move(left);
      e->b = parse_not();
      left = done(std::move(e));
    }
    return left;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      DepthGuard guard(*this, peek());
      ExprPtr e = make(ExprKind::Not, next());
      e->a = parse_not();
      return done(std::move(e));
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const Token& at = peek();
    ExprPtr first = parse_math1();
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (peek().kind == TokenKind::Op &&
          (peek().text == "==" || peek().text == "!=" || peek().text == "<" || peek().text == "<=" ||
           peek().text == ">" || peek().text == ">=")) {
        op = next().text;
      } else if (is_name("in")) {
        next();
        op = "in";
      } else if (is_name("not") && is_name("in", 1)) {
        next();
        next();
        op = "notin";
      } else {
        break;
      }
      if (!cmp) {
        cmp = make(ExprKind::Compare, at);
        cmp->items.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->items.push_back(parse_math1());
    }
    return cmp ? done(std::move(cmp)) : std::move(first);
  }

  ExprPtr binary(std::string op, const Token& at, ExprPtr a, ExprPtr b) {
    ExprPtr e = make(ExprKind::Binary, at);
    e->name = std::move(op);
    e->a = std::move(a);
    e->b = std::move(b);
    return done(std::move(e));
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& op = next();
      left = binary(op.text, op, std::move(left), parse_concat());
    }
    return left;
  }

  ExprPtr parse_concat() {
    const Token& at = peek();
    ExprPtr first = parse_math2();
    if (!is_op("~")) return first;
    ExprPtr e = make(ExprKind::Concat, at);
    e->items.push_back(std::move(first));
    while (skip_op("~")) e->items.push_back(parse_math2());
    return done(std::move(e));
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& op = next();
      left = binary(op.text, op, std::move(left), parse_pow());
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (is_op("**")) {
      const Token& op = next();
      left = binary("**", op, std::move(left), parse_unary(true));
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(*this, peek());
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      const Token& op = next();
      node = make(op.text == "-" ? ExprKind::Neg : ExprKind::Pos, op);
      node->a = parse_unary(false);
      node = done(std::move(node));
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  ExprPtr parse_primary() {
    const Token& t = peek();
    switch (t.kind) {
      case TokenKind::Name: {
        next();
        ExprPtr e = make(ExprKind::Literal, t);
        if (t.text == "true" || t.text == "True") {
          e->literal = Value(true);
        } else if (t.text == "false" || t.text == "False") {
          e->literal = Value(false);
        } else if (t.text == "none" || t.text == "None") {
          e->literal = Value::none();
        } else {
          e->kind = ExprKind::Name;
          e->name = t.text;
        }
        return e;
      }
      case TokenKind::String: {
        std::string s;
        while (peek().kind == TokenKind::String) s += next().text;  // adjacent literals join
        ExprPtr e = make(ExprKind::Literal, t);
        e->literal = Value(std::move(s));
        return e;
      }
      case TokenKind::Int: {
        next();
        ExprPtr e = make(ExprKind::Literal, t);
        e->literal = Value(t.int_value);
        return e;
      }
      case TokenKind::Float: {
        next();
        ExprPtr e = make(ExprKind::Literal, t);
        e->literal = Value(t.float_value);
        return e;
      }
      case TokenKind::Op:
        if (t.text == "(") {
          next();
          if (skip_op(")")) {  // ()
            ExprPtr empty = make(ExprKind::List, t);
            empty->is_tuple = true;
            return empty;
          }
          ExprPtr first = parse_expression(true);
          if (skip_op(")")) return first;
          ExprPtr list = make(ExprKind::List, t);
          list->is_tuple = true;
          list->items.push_back(std::move(first));
          while (skip_op(",")) {
            if (is_op(")")) break;
            list->items.push_back(parse_expression(true));
          }
          expect_op(")");
          return done(std::move(list));
        }
        if (t.text == "[") {
          next();
          ExprPtr list = make(ExprKind::List, t);
          while (!is_op("]")) {
            if (!list->items.empty()) expect_op(",");
            if (is_op("]")) break;
            list->items.push_back(parse_expression(true));
          }
          expect_op("]");
          return done(std::move(list));
        }
        if (t.text == "{") {
          next();
          ExprPtr dict = make(ExprKind::Dict, t);
          while (!is_op("}")) {
            if (!dict->items.empty()) expect_op(",");
            if (is_op("}")) break;
            dict->items.push_back(parse_expression(true));
            expect_op(":");
            dict->items.push_back(parse_expression(true));
          }
          expect_op("}");
          return done(std::move(dict));
        }
        break;
      default:
        break;
    }
    error(t, "unexpected " + describe(t) + " in expression");
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      if (is_op(".") || is_op("[")) {
        node = parse_subscript(std::move(node));
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    while (true) {
      if (is_op("|")) {
        next();
        node = parse_filter(std::move(node));
      } else if (is_name("is")) {
        node = parse_test(std::move(node));
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr node) {
    DepthGuard guard(*this, peek());
    const Token& op = next();
    if (op.text == ".") {
      const Token& attr = peek();
      if (attr.kind == TokenKind::Name) {
        next();
        ExprPtr e = make(ExprKind::Attr, op);
        e->a = std::move(node);
        e->name = attr.text;
        return done(std::move(e));
      }
      if (attr.kind == TokenKind::Int) {
        next();
        ExprPtr e = make(ExprKind::Item, op);
        e->a = std::move(node);
        e->b = make(ExprKind::Literal, attr);
        e->b->literal = Value(attr.int_value);
        return done(std::move(e));
      }
      error(attr, "expected an attribute name after '.', got " + describe(attr));
    }
    ExprPtr e = make(ExprKind::Item, op);
    e->a = std::move(node);
    e->b = parse_subscribed();
    if (is_op(",")) error(peek(), "tuple indices are not supported");
    expect_op("]");
    return done(std::move(e));
  }

  ExprPtr parse_subscribed() {
    const Token& at = peek();
    ExprPtr start;
    if (!is_op(":")) {
      start = parse_expression(true);
      if (!is_op(":")) return start;
    }
    next();  // ':'
    ExprPtr slice = make(ExprKind::Slice, at);
    slice->a = std::move(start);
    if (!is_op("]") && !is_op(",") && !is_op(":")) slice->b = parse_expression(true);
    if (skip_op(":")) {
      if (!is_op("]") && !is_op(",")) slice->c = parse_expression(true);
    }
    return done(std::move(slice));
  }

  // Call arguments "(a, b, name=c)" into `e`.
  void parse_args(Expr& e) {
    expect_op("(");
    bool first = true;
    while (!is_op(")")) {
      if (!first) expect_op(",");
      first = false;
      if (is_op(")")) break;
      if (is_op("*") || is_op("**")) error(peek(), "*args and **kwargs in calls are not supported");
      if (peek().kind == TokenKind::Name && is_op("=", 1)) {
        std::string key = next().text;
        next();
        e.kwargs.emplace_back(std::move(key), parse_expression(true));
      } else {
        if (!e.kwargs.empty()) error(peek(), "positional argument after keyword argument");
        e.items.push_back(parse_expression(true));
      }
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr node) {
    DepthGuard guard(*this, peek());
    ExprPtr e = make(ExprKind::Call, peek());
    e->a = std::move(node);
    parse_args(*e);
    return done(std::move(e));
  }

  std::string parse_dotted_name() {
    std::string name = expect_kind(TokenKind::Name, "a name").text;
    while (is_op(".") && peek(1).kind == TokenKind::Name) {
      next();
      name += "." + next().text;
    }
    return name;
  }

  ExprPtr parse_filter(ExprPtr node) {
    DepthGuard guard(*this, peek());
    const Token& at = peek();
    ExprPtr e = make(ExprKind::Filter, at);
    e->name = parse_dotted_name();
    if (!is_filter(e->name)) error(at, fmt::format("no filter named '{}'", e->name));
    e->a = std::move(node);
    if (is_op("(")) parse_args(*e);
    return done(std::move(e));
  }

  ExprPtr parse_test(ExprPtr node) {
    DepthGuard guard(*this, peek());
    ExprPtr e = make(ExprKind::Test, next());
    e->negated = skip_name("not");
    const Token& name_tok = peek();
    e->name = parse_dotted_name();
    if (!is_test(e->name)) error(name_tok, fmt::format("no test named '{}'", e->name));
    e->a = std::move(node);
    if (is_op("(")) {
      parse_args(*e);
    } else {
      const Token& t = peek();
      const bool starts_arg =
          t.kind == TokenKind::Name || t.kind == TokenKind::String || t.kind == TokenKind::Int ||
          t.kind == TokenKind::Float || (t.kind == TokenKind::Op && (t.text == "(" || t.text == "[" || t.text == "{"));
      if (starts_arg && !is_name("else") && !is_name("or") && !is_name("and")) {
        if (is_name("is")) error(t, "tests cannot be chained with 'is'");
        e->items.push_back(parse_postfix(parse_primary()));
      }
    }
    return done(std::move(e));
  }

  std::vector<Token> toks_;
  std::size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

NodeList parse_template(std::string_view source, const LexOptions& options) {
  return Parser(tokenize(source, options)).parse();
}

}  // namespace kiln::jinja
