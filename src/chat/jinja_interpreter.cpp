// Tree-walking evaluation of the parsed template. Scopes follow Jinja2: a for loop opens a
// scope (so `set` inside a loop does not leak out, which is why templates use namespace()),
// `if` does not, macros run in a scope below the template's top level.
#include "chat/jinja_interpreter.h"

#include <cmath>
#include <limits>
#include <new>
#include <stdexcept>

#include "core/error.h"
#include "chat/jinja_builtins.h"
#include "chat/jinja_parser.h"
#include "chat/jinja_strings.h"

namespace kiln::jinja {
namespace {

// An error that already names its template position; outer nodes pass it through unchanged.
class LocatedError : public Error {
 public:
  using Error::Error;
};

// Error messages stay on one line whatever the template put into them.
std::string one_line(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else {
      out += c;
    }
  }
  return out;
}

[[noreturn]] void fail_at(int line, int col, std::string_view message) {
  throw LocatedError(fmt::format("chat template: line {}:{}: {}", line, col, one_line(message)));
}

struct Frame {
  std::vector<std::pair<std::string, Value>> vars;
  Frame* parent = nullptr;

  Value* find_local(std::string_view name) {
    for (auto& [k, v] : vars)
      if (k == name) return &v;
    return nullptr;
  }
  void set(const std::string& name, Value v) {
    if (Value* slot = find_local(name)) {
      *slot = std::move(v);
    } else {
      vars.emplace_back(name, std::move(v));
    }
  }
};

enum class Flow { Normal, Break, Continue };

class Renderer {
 public:
  Renderer(const RenderOptions& options) : opts_(options) {
    ctx_.max_string_bytes = options.limits.max_output_bytes;
    ctx_.max_list_items = options.limits.max_list_items;
    ctx_.charge = [this](std::size_t n) { charge(n); };
    ctx_.track_namespace = [this](const Value& v) { namespaces_.push_back(v); };
  }

  // Namespaces are the only values a template can change, so every reference cycle (a
  // namespace holding itself) runs through one: emptying them all frees the cycles.
  ~Renderer() {
    for (Value& ns : namespaces_) ns.as_dict().items.clear();
  }

  std::string render(const NodeList& body, const Value& variables) {
    Frame root;
    if (variables.is_dict()) {
      for (const auto& [k, v] : variables.as_dict().items) root.set(k, v);
    } else if (!variables.is_undefined()) {
      fail("chat template: render variables must be a dict, not {}", variables.type_name());
    }
    root_ = &root;
    Frame top;
    top.parent = &root;
    top_ = &top;
    std::string out;
    exec(body, top, out);
    return out;
  }

 private:
  struct DepthGuard {
    DepthGuard(Renderer& r, int line, int col) : r_(r) {
      if (++r_.depth_ > r_.opts_.limits.max_depth)
        fail_at(line, col, fmt::format("template recursion deeper than {} levels", r_.opts_.limits.max_depth));
    }
    ~DepthGuard() { --r_.depth_; }
    Renderer& r_;
  };

  void tick() {
    if (++steps_ > opts_.limits.max_steps)
      fail("template exceeded its budget of {} evaluation steps (a runaway loop?)", opts_.limits.max_steps);
  }
  void charge(std::size_t n) {
    steps_ += n / 32;
    tick();
  }

  void append(std::string& out, std::string_view s) {
    charge(s.size());
    if (out.size() + s.size() > opts_.limits.max_output_bytes)
      fail("template output exceeds the limit of {} bytes", opts_.limits.max_output_bytes);
    out += s;
  }

  Value lookup(std::string_view name, Frame& f) {
    for (Frame* fr = &f; fr != nullptr; fr = fr->parent)
      if (Value* v = fr->find_local(name)) return *v;
    if (is_global(name)) {
      Value g = make_global(name, opts_.now, ctx_);
      root_->set(std::string(name), g);
      return g;
    }
    return Value::undefined(std::string(name));
  }

  [[noreturn]] static void undefined_error(const Value& v) {
    if (v.undefined_name().empty()) fail("value is undefined");
    fail("'{}' is undefined", v.undefined_name());
  }

  // ---- statements ---------------------------------------------------------------------------

  Flow exec(const NodeList& body, Frame& f, std::string& out) {
    for (const NodePtr& n : body) {
      const Flow flow = exec_node(*n, f, out);
      if (flow != Flow::Normal) return flow;
    }
    return Flow::Normal;
  }

  Flow exec_node(const Node& n, Frame& f, std::string& out) {
    tick();
    try {
      return exec_node_inner(n, f, out);
    } catch (const LocatedError&) {
      throw;
    } catch (const Error& e) {
      fail_at(n.line, n.col, e.what());
    }
  }

  Flow exec_node_inner(const Node& n, Frame& f, std::string& out) {
    switch (n.kind) {
      case NodeKind::Text:
        append(out, n.text);
        return Flow::Normal;
      case NodeKind::Output:
        append(out, to_string(eval(*n.expr, f)));
        return Flow::Normal;
      case NodeKind::If:
        for (const auto& [cond, body] : n.branches)
          if (eval(*cond, f).truthy()) return exec(body, f, out);
        return exec(n.else_body, f, out);
      case NodeKind::For:
        exec_for(n, f, out);
        return Flow::Normal;
      case NodeKind::Set:
        exec_set(n, f);
        return Flow::Normal;
      case NodeKind::SetBlock: {
        std::string captured;
        exec(n.body, f, captured);
        f.set(n.targets[0], Value(std::move(captured)));
        return Flow::Normal;
      }
      case NodeKind::Macro:
        f.set(n.name, make_macro(n));
        return Flow::Normal;
      case NodeKind::FilterBlock: {
        std::string captured;
        const Flow flow = exec(n.body, f, captured);
        Value v(std::move(captured));
        for (const ExprPtr& filter : n.filters) v = apply_filter(*filter, v, f);
        append(out, to_string(v));
        return flow;
      }
      case NodeKind::Body:
        return exec(n.body, f, out);
      case NodeKind::Break:
        return Flow::Break;
      case NodeKind::Continue:
        return Flow::Continue;
    }
    return Flow::Normal;
  }

  void assign_targets(const std::vector<std::string>& targets, const Value& v, Frame& f) {
    if (targets.size() == 1) {
      f.set(targets[0], v);
      return;
    }
    ValueList items;
    if (v.is_list()) {
      items = v.as_list();
    } else if (v.is_string()) {
      for (std::string& c : text::chars(v.as_string())) items.emplace_back(std::move(c));
    } else {
      fail("cannot unpack a {} into {} names", v.type_name(), targets.size());
    }
    if (items.size() != targets.size())
      fail("{} values to unpack (expected {}, got {})", items.size() > targets.size() ? "too many" : "not enough",
           targets.size(), items.size());
    for (std::size_t i = 0; i < targets.size(); ++i) f.set(targets[i], items[i]);
  }

  void exec_for(const Node& n, Frame& f, std::string& out) {
    ValueList items = iterate(eval(*n.expr, f));
    if (n.filter) {
      // Jinja2 filters first, so loop.index, loop.length and loop.last count kept items only.
      ValueList kept;
      for (Value& item : items) {
        tick();
        Frame filter_frame;
        filter_frame.parent = &f;
        assign_targets(n.targets, item, filter_frame);
        if (eval(*n.filter, filter_frame).truthy()) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    const std::int64_t length = static_cast<std::int64_t>(items.size());
    for (std::int64_t i = 0; i < length; ++i) {
      tick();
      // Each iteration has a fresh scope: a `set` in the body does not carry over to the next
      // iteration (Jinja2 renders {% set a = a + x %} in a loop from the outer `a` every time).
      Frame loop_frame;
      loop_frame.parent = &f;
      const Value& item = items[static_cast<std::size_t>(i)];
      assign_targets(n.targets, item, loop_frame);
      Value loop = Value::dict();
      ValueDict& d = loop.as_dict();
      d.set("index", Value(i + 1));
      d.set("index0", Value(i));
      d.set("revindex", Value(length - i));
      d.set("revindex0", Value(length - i - 1));
      d.set("first", Value(i == 0));
      d.set("last", Value(i == length - 1));
      d.set("length", Value(length));
      d.set("depth", Value(1));
      d.set("depth0", Value(0));
      d.set("previtem", i > 0 ? items[static_cast<std::size_t>(i - 1)] : Value::undefined("loop.previtem"));
      d.set("nextitem", i + 1 < length ? items[static_cast<std::size_t>(i + 1)] : Value::undefined("loop.nextitem"));
      d.set("cycle", Value::function("loop.cycle", [i](CallArgs& args) {
              if (args.positional.empty()) fail("loop.cycle needs at least one argument");
              return args.positional[static_cast<std::size_t>(i) % args.positional.size()];
            }));
      loop_frame.set("loop", loop);
      if (exec(n.body, loop_frame, out) == Flow::Break) break;
    }
    if (length == 0) exec(n.else_body, f, out);
  }

  void exec_set(const Node& n, Frame& f) {
    Value v = eval(*n.expr, f);
    if (!n.attr.empty()) {
      const Value target = lookup(n.targets[0], f);
      if (!target.is_dict() || !target.as_dict().is_namespace)
        fail("cannot assign attribute '{}' on '{}' ({}): only namespace() objects can be changed", n.attr,
             n.targets[0], target.type_name());
      target.as_dict().set(n.attr, std::move(v));
      return;
    }
    assign_targets(n.targets, v, f);
  }

  Value make_macro(const Node& n) {
    const Node* node = &n;
    return Value::function(n.name, [this, node](CallArgs& args) { return call_macro(*node, args); });
  }

  Value call_macro(const Node& n, CallArgs& args) {
    if (args.positional.size() > n.params.size())
      fail("macro '{}' takes not more than {} argument(s)", n.name, n.params.size());
    Frame frame;
    frame.parent = top_;
    for (std::size_t i = 0; i < n.params.size(); ++i) {
      const std::string& param = n.params[i].first;
      if (i < args.positional.size()) {
        frame.set(param, args.positional[i]);
        continue;
      }
      bool found = false;
      for (const auto& kv : args.named) {
        if (kv.first == param) {
          frame.set(param, kv.second);
          found = true;
        }
      }
      if (!found) frame.set(param, n.params[i].second ? eval(*n.params[i].second, frame) : Value::undefined(param));
    }
    for (const auto& kv : args.named) {
      bool known = false;
      for (const auto& p : n.params) known = known || p.first == kv.first;
      if (!known) fail("macro '{}' takes no keyword argument '{}'", n.name, kv.first);
    }
    std::string out;
    exec(n.body, frame, out);
    return Value(std::move(out));
  }

  // ---- expressions --------------------------------------------------------------------------

  Value eval(const Expr& e, Frame& f) {
    DepthGuard guard(*this, e.line, e.col);
    tick();
    try {
      return eval_inner(e, f);
    } catch (const LocatedError&) {
      throw;
    } catch (const Error& err) {
      fail_at(e.line, e.col, err.what());
    }
  }

  CallArgs eval_args(const Expr& e, Frame& f) {
    CallArgs args;
    for (const ExprPtr& a : e.items) args.positional.push_back(eval(*a, f));
    for (const auto& [k, v] : e.kwargs) args.named.emplace_back(k, eval(*v, f));
    return args;
  }

  Value apply_filter(const Expr& e, const Value& input, Frame& f) {
    CallArgs args = eval_args(e, f);
    return call_filter(e.name, input, args, ctx_);
  }

  Value get_attr(const Value& obj, const std::string& name) {
    if (obj.is_undefined()) undefined_error(obj);
    if (has_method(obj, name) && !(obj.is_dict() && obj.as_dict().is_namespace)) {
      Value bound = obj;
      const BuiltinContext* ctx = &ctx_;
      return Value::function(name, [bound, name, ctx](CallArgs& args) {
        std::optional<Value> r = call_method(bound, name, args, *ctx);
        if (!r) fail("'{}' object has no method '{}'", bound.type_name(), name);
        return *r;
      });
    }
    if (obj.is_dict()) {
      if (const Value* v = obj.as_dict().find(name)) return *v;
      return Value::undefined(fmt::format("{}.{}", obj.type_name(), name));
    }
    return Value::undefined(fmt::format("{}.{}", obj.type_name(), name));
  }

  static std::int64_t clamp_index(std::int64_t i, std::int64_t len) {
    if (i < 0) i += len;
    return i;
  }

  Value get_item(const Value& obj, const Value& key) {
    if (obj.is_undefined()) undefined_error(obj);
    if (obj.is_dict()) {
      if (key.is_string())
        if (const Value* v = obj.as_dict().find(key.as_string())) return *v;
      return Value::undefined(fmt::format("{}[{}]", obj.type_name(), repr(key)));
    }
    if ((obj.is_list() || obj.is_string()) && (key.is_int() || key.is_bool())) {
      if (obj.is_list()) {
        const ValueList& items = obj.as_list();
        const std::int64_t i = clamp_index(key.as_int(), static_cast<std::int64_t>(items.size()));
        if (i >= 0 && i < static_cast<std::int64_t>(items.size())) return items[static_cast<std::size_t>(i)];
      } else {
        charge(obj.as_string().size());  // code point indexing scans the string
        const std::vector<std::size_t> off = text::char_offsets(obj.as_string());
        const std::int64_t n = static_cast<std::int64_t>(off.size()) - 1;
        const std::int64_t i = clamp_index(key.as_int(), n);
        if (i >= 0 && i < n) {
          const std::size_t b = off[static_cast<std::size_t>(i)];
          return Value(obj.as_string().substr(b, off[static_cast<std::size_t>(i) + 1] - b));
        }
      }
      return Value::undefined("index " + std::to_string(key.as_int()) + " out of range");
    }
    if (key.is_string()) return get_attr(obj, key.as_string());
    return Value::undefined(fmt::format("{}[{}]", obj.type_name(), repr(key)));
  }

  // Python's slice.indices(length) followed by the walk over the selected positions.
  Value slice(const Value& obj, const Expr& s, Frame& f) {
    const auto bound = [&](const ExprPtr& x) -> std::optional<std::int64_t> {
      if (!x) return std::nullopt;
      const Value v = eval(*x, f);
      if (v.is_none()) return std::nullopt;
      if (!v.is_int() && !v.is_bool()) fail("slice indices must be integers or None, not {}", v.type_name());
      return v.as_int();
    };
    const std::optional<std::int64_t> start_v = bound(s.a), stop_v = bound(s.b), step_v = bound(s.c);
    const std::int64_t step = step_v.value_or(1);
    if (step == 0) fail("slice step cannot be zero");
    if (step == std::numeric_limits<std::int64_t>::min()) fail("slice step is out of range");
    if (obj.is_undefined()) undefined_error(obj);
    std::vector<std::size_t> off;
    std::int64_t len = 0;
    if (obj.is_list()) {
      len = static_cast<std::int64_t>(obj.as_list().size());
    } else if (obj.is_string()) {
      charge(obj.as_string().size());
      off = text::char_offsets(obj.as_string());
      len = static_cast<std::int64_t>(off.size()) - 1;
    } else {
      fail("'{}' object is not subscriptable", obj.type_name());
    }
    const auto adjust = [&](std::optional<std::int64_t> v, std::int64_t def) {
      if (!v) return def;
      std::int64_t x = *v;
      if (x < 0) {
        x = x < -len ? -len - 1 : x;  // keep away from overflow before adding len
        x += len;
        if (x < 0) x = step < 0 ? -1 : 0;
      } else if (x >= len) {
        x = step < 0 ? len - 1 : len;
      }
      return x;
    };
    const std::int64_t start = adjust(start_v, step < 0 ? len - 1 : 0);
    const std::int64_t stop = adjust(stop_v, step < 0 ? -1 : len);
    std::vector<std::int64_t> picks;
    if (step > 0) {
      for (std::int64_t i = start; i < stop; i += step) {
        picks.push_back(i);
        if (len - i <= step) break;
      }
    } else {
      for (std::int64_t i = start; i > stop; i += step) {
        picks.push_back(i);
        if (i + step < -1) break;
      }
    }
    charge(picks.size());
    if (obj.is_list()) {
      ValueList out;
      out.reserve(picks.size());
      for (std::int64_t i : picks) out.push_back(obj.as_list()[static_cast<std::size_t>(i)]);
      return obj.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
    }
    std::string out;
    for (std::int64_t i : picks) {
      const std::size_t b = off[static_cast<std::size_t>(i)];
      out += obj.as_string().substr(b, off[static_cast<std::size_t>(i) + 1] - b);
    }
    return Value(std::move(out));
  }

  Value call_value(const Value& callee, CallArgs& args, const std::string& what) {
    if (callee.is_undefined()) {
      if (callee.undefined_name().empty()) fail("'{}' is undefined and cannot be called", what);
      fail("'{}' is undefined and cannot be called", callee.undefined_name());
    }
    if (!callee.is_callable()) fail("'{}' object is not callable", callee.type_name());
    return callee.as_callable().fn(args);
  }

  static std::string describe_callee(const Expr& e) {
    if (e.kind == ExprKind::Name) return e.name;
    if (e.kind == ExprKind::Attr) return describe_callee(*e.a) + "." + e.name;
    return "expression";
  }

  Value eval_inner(const Expr& e, Frame& f) {
    switch (e.kind) {
      case ExprKind::Literal:
        return e.literal;
      case ExprKind::Name:
        return lookup(e.name, f);
      case ExprKind::List: {
        ValueList items;
        items.reserve(e.items.size());
        for (const ExprPtr& x : e.items) items.push_back(eval(*x, f));
        return e.is_tuple ? Value::tuple(std::move(items)) : Value::list(std::move(items));
      }
      case ExprKind::Dict: {
        Value d = Value::dict();
        for (std::size_t i = 0; i + 1 < e.items.size(); i += 2) {
          const Value k = eval(*e.items[i], f);
          if (!k.is_string()) fail("dict keys must be strings here, not {}", k.type_name());
          d.as_dict().set(k.as_string(), eval(*e.items[i + 1], f));
        }
        return d;
      }
      case ExprKind::Attr:
        return get_attr(eval(*e.a, f), e.name);
      case ExprKind::Item: {
        const Value obj = eval(*e.a, f);
        if (e.b->kind == ExprKind::Slice) return slice(obj, *e.b, f);
        return get_item(obj, eval(*e.b, f));
      }
      case ExprKind::Slice:
        fail("a slice is only valid inside []");
      case ExprKind::Call: {
        if (e.a->kind == ExprKind::Attr) {
          // Methods are called directly instead of through a bound-method value.
          const Value obj = eval(*e.a->a, f);
          CallArgs args = eval_args(e, f);
          if (obj.is_string() || obj.is_list() || (obj.is_dict() && !obj.as_dict().is_namespace)) {
            if (std::optional<Value> r = call_method(obj, e.a->name, args, ctx_)) return *r;
          }
          return call_value(get_attr(obj, e.a->name), args, describe_callee(*e.a));
        }
        const Value callee = eval(*e.a, f);
        CallArgs args = eval_args(e, f);
        return call_value(callee, args, describe_callee(*e.a));
      }
      case ExprKind::Filter:
        return apply_filter(e, eval(*e.a, f), f);
      case ExprKind::Test: {
        const Value v = eval(*e.a, f);
        CallArgs args = eval_args(e, f);
        return Value(call_test(e.name, v, args, ctx_) != e.negated);
      }
      case ExprKind::Neg:
      case ExprKind::Pos: {
        const Value v = eval(*e.a, f);
        if (v.is_undefined()) undefined_error(v);
        if (!v.is_number()) fail("bad operand type for unary {}: '{}'", e.kind == ExprKind::Neg ? '-' : '+', v.type_name());
        if (e.kind == ExprKind::Pos) return v.is_float() ? v : Value(v.as_int());
        if (v.is_float()) return Value(-v.as_double());
        if (v.as_int() == std::numeric_limits<std::int64_t>::min()) fail("integer overflow");
        return Value(-v.as_int());
      }
      case ExprKind::Not:
        return Value(!eval(*e.a, f).truthy());
      case ExprKind::And: {
        Value a = eval(*e.a, f);
        return a.truthy() ? eval(*e.b, f) : a;
      }
      case ExprKind::Or: {
        Value a = eval(*e.a, f);
        return a.truthy() ? a : eval(*e.b, f);
      }
      case ExprKind::Binary:
        return binary(e.name, eval(*e.a, f), eval(*e.b, f));
      case ExprKind::Concat: {
        std::string out;
        for (const ExprPtr& x : e.items) {
          out += to_string(eval(*x, f));
          check_string_size(out.size(), ctx_);
        }
        charge(out.size());
        return Value(std::move(out));
      }
      case ExprKind::Compare: {
        Value left = eval(*e.items[0], f);
        for (std::size_t i = 0; i < e.ops.size(); ++i) {
          Value right = eval(*e.items[i + 1], f);
          if (!compare(e.ops[i], left, right)) return Value(false);
          left = std::move(right);
        }
        return Value(true);
      }
      case ExprKind::CondExpr:
        if (eval(*e.b, f).truthy()) return eval(*e.a, f);
        return e.c ? eval(*e.c, f) : Value::undefined("inline if without else");
    }
    fail("unknown expression");
  }

  bool contains(const Value& container, const Value& item) {
    if (container.is_string()) {
      if (!item.is_string()) fail("'in <string>' requires string as left operand, not {}", item.type_name());
      charge(container.as_string().size());
      return container.as_string().find(item.as_string()) != std::string::npos;
    }
    if (container.is_list()) {
      charge(container.as_list().size());
      for (const Value& x : container.as_list())
        if (x.equals(item)) return true;
      return false;
    }
    if (container.is_dict()) return item.is_string() && container.as_dict().find(item.as_string()) != nullptr;
    if (container.is_undefined()) return false;
    fail("argument of type '{}' is not iterable", container.type_name());
  }

  bool compare(const std::string& op, const Value& a, const Value& b) {
    if (op == "==") return a.equals(b);
    if (op == "!=") return !a.equals(b);
    if (op == "in") return contains(b, a);
    if (op == "notin") return !contains(b, a);
    if (a.is_undefined()) undefined_error(a);
    if (b.is_undefined()) undefined_error(b);
    if (op == "<") return a.less_than(b);
    if (op == ">") return b.less_than(a);
    if (op == "<=") return a.less_than(b) || a.equals(b);
    return b.less_than(a) || a.equals(b);  // >=
  }

  Value repeat(const Value& seq, std::int64_t times) {
    if (times < 0) times = 0;
    if (seq.is_string()) {
      const std::size_t n = seq.as_string().size();
      if (n != 0 && static_cast<std::uint64_t>(times) > opts_.limits.max_output_bytes / n)
        fail("string repetition exceeds the limit of {} bytes", opts_.limits.max_output_bytes);
      std::string out;
      out.reserve(n * static_cast<std::size_t>(times));
      for (std::int64_t i = 0; i < times; ++i) out += seq.as_string();
      charge(out.size());
      return Value(std::move(out));
    }
    const ValueList& items = seq.as_list();
    if (!items.empty() && static_cast<std::uint64_t>(times) > opts_.limits.max_list_items / items.size())
      fail("list repetition exceeds the limit of {} items", opts_.limits.max_list_items);
    ValueList out;
    for (std::int64_t i = 0; i < times; ++i) out.insert(out.end(), items.begin(), items.end());
    charge(out.size());
    return seq.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
  }

  Value binary(const std::string& op, const Value& a, const Value& b) {
    if (a.is_undefined()) undefined_error(a);
    if (b.is_undefined()) undefined_error(b);
    const auto type_error = [&]() -> Value {
      fail("unsupported operand type(s) for {}: '{}' and '{}'", op, a.type_name(), b.type_name());
    };
    if (op == "+") {
      if (a.is_string() && b.is_string()) {
        check_string_size(a.as_string().size() + b.as_string().size(), ctx_);
        charge(a.as_string().size() + b.as_string().size());
        return Value(a.as_string() + b.as_string());
      }
      if (a.is_list() && b.is_list()) {
        if (a.is_tuple() != b.is_tuple()) return type_error();
        check_list_size(a.as_list().size() + b.as_list().size(), ctx_);
        ValueList out = a.as_list();
        out.insert(out.end(), b.as_list().begin(), b.as_list().end());
        charge(out.size());
        return a.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
      }
    }
    if (op == "*") {
      if ((a.is_string() || a.is_list()) && (b.is_int() || b.is_bool())) return repeat(a, b.as_int());
      if ((b.is_string() || b.is_list()) && (a.is_int() || a.is_bool())) return repeat(b, a.as_int());
    }
    if (!a.is_number() || !b.is_number()) {
      if (op == "%" && a.is_string()) fail("string formatting with % is not supported; use format()");
      return type_error();
    }
    const bool floats = a.is_float() || b.is_float();
    if (op == "/") {
      if (b.as_double() == 0) fail("division by zero");
      return Value(a.as_double() / b.as_double());
    }
    if (floats) {
      const double x = a.as_double(), y = b.as_double();
      if (op == "+") return Value(x + y);
      if (op == "-") return Value(x - y);
      if (op == "*") return Value(x * y);
      if (op == "**") return Value(std::pow(x, y));
      if (y == 0) fail("float division by zero");
      if (op == "//") return Value(std::floor(x / y));
      double m = std::fmod(x, y);
      if (m != 0 && ((m < 0) != (y < 0))) m += y;  // Python's sign follows the divisor
      return Value(m);
    }
    const std::int64_t x = a.as_int(), y = b.as_int();
    std::int64_t r = 0;
    if (op == "+") {
      if (__builtin_add_overflow(x, y, &r)) fail("integer overflow");
      return Value(r);
    }
    if (op == "-") {
      if (__builtin_sub_overflow(x, y, &r)) fail("integer overflow");
      return Value(r);
    }
    if (op == "*") {
      if (__builtin_mul_overflow(x, y, &r)) fail("integer overflow");
      return Value(r);
    }
    if (op == "**") {
      if (y < 0) return Value(std::pow(static_cast<double>(x), static_cast<double>(y)));
      std::int64_t result = 1, base = x, exp = y;
      while (exp > 0) {
        if (exp & 1)
          if (__builtin_mul_overflow(result, base, &result)) fail("integer overflow");
        exp >>= 1;
        if (exp > 0 && __builtin_mul_overflow(base, base, &base)) fail("integer overflow");
      }
      return Value(result);
    }
    if (y == 0) fail("integer division or modulo by zero");
    if (x == std::numeric_limits<std::int64_t>::min() && y == -1) fail("integer overflow");
    std::int64_t q = x / y, m = x % y;
    if (m != 0 && ((m < 0) != (y < 0))) {
      --q;
      m += y;
    }
    return Value(op == "//" ? q : m);
  }

  const RenderOptions& opts_;
  BuiltinContext ctx_;
  std::uint64_t steps_ = 0;
  int depth_ = 0;
  std::vector<Value> namespaces_;
  Frame* root_ = nullptr;
  Frame* top_ = nullptr;
};

}  // namespace

Template::Template(std::string_view source, const LexOptions& options)
    : body_(std::make_shared<const NodeList>(parse_template(source, options))) {}

std::string Template::render(const Value& variables, const RenderOptions& options) const {
  try {
    Renderer r(options);
    return r.render(*body_, variables);
  } catch (const LocatedError&) {
    throw;
  } catch (const Error& e) {
    // Budget and limit errors raised between nodes carry no position.
    fail("chat template: {}", one_line(e.what()));
  } catch (const std::bad_alloc&) {
    fail("chat template: out of memory while rendering");
  } catch (const std::length_error&) {
    fail("chat template: a value grew too large while rendering");
  }
}

}  // namespace kiln::jinja
