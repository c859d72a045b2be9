// Filters, tests, methods and globals of kiln's Jinja subset (Jinja2 3.1 / Python semantics).
#include "chat/jinja_builtins.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>
#include <limits>
#include <string>

#include "core/error.h"
#include "chat/jinja_strings.h"

namespace kiln::jinja {
namespace {

// Reads a builtin's arguments by position or keyword, and rejects any it does not take.
class Args {
 public:
  Args(std::string_view fn, CallArgs& args) : fn_(fn), args_(args), used_(args.named.size(), false) {}

  // The argument at `index` (positional) or named `name`; `def` when absent.
  Value get(std::size_t index, std::string_view name, Value def = Value::undefined()) {
    max_index_ = std::max(max_index_, index + 1);
    if (index < args_.positional.size()) return args_.positional[index];
    for (std::size_t i = 0; i < args_.named.size(); ++i) {
      if (args_.named[i].first == name) {
        used_[i] = true;
        return args_.named[i].second;
      }
    }
    return def;
  }
  bool has(std::size_t index, std::string_view name) const {
    if (index < args_.positional.size()) return true;
    for (const auto& kv : args_.named)
      if (kv.first == name) return true;
    return false;
  }
  // The positional arguments from `index` on (for tests and filters that pass them along).
  CallArgs rest(std::size_t index) {
    max_index_ = std::max<std::size_t>(max_index_, args_.positional.size());
    CallArgs out;
    for (std::size_t i = index; i < args_.positional.size(); ++i) out.positional.push_back(args_.positional[i]);
    return out;
  }
  void finish() const {
    if (args_.positional.size() > max_index_)
      fail("{}() takes at most {} positional arguments ({} given)", fn_, max_index_, args_.positional.size());
    for (std::size_t i = 0; i < used_.size(); ++i)
      if (!used_[i]) fail("{}() got an unexpected keyword argument '{}'", fn_, args_.named[i].first);
  }

 private:
  std::string_view fn_;
  CallArgs& args_;
  std::vector<bool> used_;
  std::size_t max_index_ = 0;
};

std::int64_t require_int(const Value& v, std::string_view what) {
  if (v.is_int() || v.is_bool()) return v.as_int();
  fail("{} must be an integer, not {}", what, v.type_name());
}

std::optional<std::string> optional_string(const Value& v, std::string_view what) {
  if (v.is_undefined() || v.is_none()) return std::nullopt;
  if (!v.is_string()) fail("{} must be a string or None, not {}", what, v.type_name());
  return v.as_string();
}

std::string require_string(const Value& v, std::string_view what) {
  if (!v.is_string()) fail("{} must be a string, not {}", what, v.type_name());
  return v.as_string();
}

Value make_string(std::string s, const BuiltinContext& ctx) {
  check_string_size(s.size(), ctx);
  if (ctx.charge) ctx.charge(s.size());
  return Value(std::move(s));
}

Value make_list(ValueList items, const BuiltinContext& ctx) {
  check_list_size(items.size(), ctx);
  if (ctx.charge) ctx.charge(items.size());
  return Value::list(std::move(items));
}


std::size_t length_of(const Value& v) {
  if (v.is_string()) return text::char_count(v.as_string());
  if (v.is_list()) return v.as_list().size();
  if (v.is_dict()) return v.as_dict().items.size();
  if (v.is_undefined()) return 0;
  fail("object of type '{}' has no len()", v.type_name());
}

// Jinja2's environment.getitem with a dotted path ("function.name", "0"): missing is undefined.
Value get_path(const Value& v, std::string_view path) {
  Value cur = v;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = path.find('.', start);
    const std::string_view part = path.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    Value next = Value::undefined(std::string(part));
    if (cur.is_dict()) {
      if (const Value* found = cur.as_dict().find(part)) next = *found;
    } else if (cur.is_list()) {
      std::int64_t idx = 0;
      const auto res = std::from_chars(part.data(), part.data() + part.size(), idx);
      if (res.ec == std::errc() && res.ptr == part.data() + part.size() && idx >= 0 &&
          static_cast<std::size_t>(idx) < cur.as_list().size())
        next = cur.as_list()[static_cast<std::size_t>(idx)];
    }
    cur = std::move(next);
    if (dot == std::string_view::npos) return cur;
    start = dot + 1;
  }
}

// Sort key comparison for sort/unique/dictsort/max/min: strings lowercased unless case_sensitive.
Value sort_key(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value(text::lower(v.as_string()));
  return v;
}

bool parse_python_int(std::string_view s, std::int64_t* out) {
  const std::string stripped = text::strip(s, std::nullopt, true, true);
  std::string digits;
  std::size_t i = 0;
  if (i < stripped.size() && (stripped[i] == '+' || stripped[i] == '-')) digits += stripped[i++];
  bool prev_digit = false;
  for (; i < stripped.size(); ++i) {
    const char c = stripped[i];
    if (c >= '0' && c <= '9') {
      digits += c;
      prev_digit = true;
    } else if (c == '_' && prev_digit && i + 1 < stripped.size() && stripped[i + 1] >= '0' && stripped[i + 1] <= '9') {
      prev_digit = false;
    } else {
      return false;
    }
  }
  if (!digits.empty() && digits[0] == '+') digits.erase(0, 1);
  if (digits.empty() || digits == "-") return false;
  const auto res = std::from_chars(digits.data(), digits.data() + digits.size(), *out);
  return res.ec == std::errc() && res.ptr == digits.data() + digits.size();
}

bool parse_python_float(std::string_view s, double* out) {
  std::string t = text::lower(text::strip(s, std::nullopt, true, true));
  t.erase(std::remove(t.begin(), t.end(), '_'), t.end());
  std::string_view body = t;
  double sign = 1;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) {
    if (body[0] == '-') sign = -1;
    body.remove_prefix(1);
  }
  if (body == "inf" || body == "infinity") {
    *out = sign * std::numeric_limits<double>::infinity();
    return true;
  }
  if (body == "nan") {
    *out = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  if (body.empty()) return false;
  double v = 0;
  const auto res = std::from_chars(body.data(), body.data() + body.size(), v);
  if (res.ptr != body.data() + body.size()) return false;
  if (res.ec == std::errc::result_out_of_range) v = std::numeric_limits<double>::infinity();
  else if (res.ec != std::errc()) return false;
  *out = sign * v;
  return true;
}

// Python's round(x, ndigits) for floats: halves go to the even neighbour.
double python_round(double x, std::int64_t ndigits) {
  if (!std::isfinite(x)) return x;
  if (ndigits > 22 || ndigits < -22) return ndigits > 0 ? x : 0.0 * x;
  const double scale = std::pow(10.0, static_cast<double>(ndigits));
  const double y = x * scale;
  double r = std::nearbyint(y);  // the default rounding mode is to nearest, ties to even
  if (std::fabs(y - std::trunc(y)) != 0.5) r = std::round(y);
  return r / scale;
}

// str.format with {}, {0}, {name}, {{ and }}; conversions !s and !r; no format specs.
std::string python_format(const std::string& fmt_str, CallArgs& args) {
  std::string out;
  std::size_t auto_index = 0;
  for (std::size_t i = 0; i < fmt_str.size(); ++i) {
    const char c = fmt_str[i];
    if (c == '}') {
      if (i + 1 < fmt_str.size() && fmt_str[i + 1] == '}') {
        out += '}';
        ++i;
        continue;
      }
      fail("format: single '}}' encountered in format string");
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < fmt_str.size() && fmt_str[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    const std::size_t close = fmt_str.find('}', i);
    if (close == std::string::npos) fail("format: single '{{' encountered in format string");
    std::string field = fmt_str.substr(i + 1, close - i - 1);
    i = close;
    char conversion = 's';
    if (const std::size_t bang = field.find('!'); bang != std::string::npos) {
      if (bang + 2 != field.size() || (field[bang + 1] != 's' && field[bang + 1] != 'r'))
        fail("format: unsupported conversion in '{{{}}}'", field);
      conversion = field[bang + 1];
      field.resize(bang);
    }
    if (field.find(':') != std::string::npos) fail("format: format specifications ('{{{}}}') are not supported", field);
    const Value* arg = nullptr;
    if (field.empty()) {
      if (auto_index >= args.positional.size()) fail("format: replacement index {} out of range", auto_index);
      arg = &args.positional[auto_index++];
    } else if (std::all_of(field.begin(), field.end(), [](char d) { return d >= '0' && d <= '9'; })) {
      std::size_t idx = 0;
      const auto res = std::from_chars(field.data(), field.data() + field.size(), idx);
      if (res.ec != std::errc() || idx >= args.positional.size()) fail("format: replacement index {} out of range", field);
      arg = &args.positional[idx];
    } else {
      for (const auto& kv : args.named)
        if (kv.first == field) arg = &kv.second;
      if (arg == nullptr) fail("format: no argument named '{}'", field);
    }
    out += conversion == 'r' ? repr(*arg) : to_string(*arg);
  }
  return out;
}

// ---- filters ------------------------------------------------------------------------------

Value filter_select(const Value& input, CallArgs& call, const BuiltinContext& ctx, bool select, bool by_attr,
                    std::string_view fn) {
  Args a(fn, call);
  std::string attr;
  std::size_t test_index = 0;
  if (by_attr) {
    attr = require_string(a.get(0, "attribute"), "attribute");
    test_index = 1;
  }
  const bool has_test = a.has(test_index, "");
  std::string test_name;
  if (has_test) test_name = require_string(a.get(test_index, ""), "test name");
  CallArgs test_args = a.rest(test_index + 1);
  a.finish();
  if (has_test && !is_test(test_name)) fail("{}: no test named '{}'", fn, test_name);
  ValueList out;
  for (const Value& item : iterate(input, fn)) {
    const Value subject = by_attr ? get_path(item, attr) : item;
    CallArgs targs = test_args;
    const bool ok = has_test ? call_test(test_name, subject, targs, ctx) : subject.truthy();
    if (ok == select) out.push_back(item);
  }
  return make_list(std::move(out), ctx);
}

Value filter_map(const Value& input, CallArgs& call, const BuiltinContext& ctx) {
  ValueList out;
  bool by_attribute = false;
  for (const auto& kv : call.named)
    if (kv.first == "attribute") by_attribute = true;
  if (by_attribute) {
    Args a("map", call);
    const std::string attr = require_string(a.get(99, "attribute"), "attribute");
    const Value def = a.get(99, "default");
    a.finish();
    for (const Value& item : iterate(input, "map")) {
      Value v = get_path(item, attr);
      out.push_back(v.is_undefined() && !def.is_undefined() ? def : v);
    }
    return make_list(std::move(out), ctx);
  }
  if (call.positional.empty()) fail("map: expected a filter name or attribute=");
  const std::string name = require_string(call.positional[0], "filter name");
  if (!is_filter(name)) fail("map: no filter named '{}'", name);
  CallArgs rest;
  rest.positional.assign(call.positional.begin() + 1, call.positional.end());
  rest.named = call.named;
  for (const Value& item : iterate(input, "map")) {
    CallArgs fargs = rest;
    out.push_back(call_filter(name, item, fargs, ctx));
  }
  return make_list(std::move(out), ctx);
}

Value filter_sort(const Value& input, CallArgs& call, const BuiltinContext& ctx) {
  Args a("sort", call);
  const bool reverse = a.get(0, "reverse", Value(false)).truthy();
  const bool case_sensitive = a.get(1, "case_sensitive", Value(false)).truthy();
  const Value attr = a.get(2, "attribute");
  a.finish();
  ValueList items = iterate(input, "sort");
  std::vector<std::pair<Value, std::size_t>> keyed;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const Value k = attr.is_string() ? get_path(items[i], attr.as_string()) : items[i];
    keyed.emplace_back(sort_key(k, case_sensitive), i);
  }
  if (ctx.charge) ctx.charge(items.size() * 8);
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    return reverse ? y.first.less_than(x.first) : x.first.less_than(y.first);
  });
  ValueList out;
  for (const auto& k : keyed) out.push_back(items[k.second]);
  return make_list(std::move(out), ctx);
}

Value filter_tojson(const Value& input, CallArgs& call, const BuiltinContext& ctx) {
  // Hugging Face's tojson: json.dumps(x, ensure_ascii=False, indent=indent, separators=None,
  // sort_keys=sort_keys). ensure_ascii=True and custom separators are not supported.
  Args a("tojson", call);
  const Value ensure_ascii = a.get(0, "ensure_ascii", Value(false));
  const Value indent = a.get(1, "indent", Value::none());
  const Value separators = a.get(2, "separators", Value::none());
  const bool sort_keys = a.get(3, "sort_keys", Value(false)).truthy();
  a.finish();
  if (ensure_ascii.truthy()) fail("tojson: ensure_ascii=True is not supported");
  if (!separators.is_none()) fail("tojson: custom separators are not supported");
  int width = -1;
  if (!indent.is_none()) {
    const std::int64_t n = require_int(indent, "tojson indent");
    width = static_cast<int>(std::clamp<std::int64_t>(n, 0, 64));
  }
  return make_string(to_json(input, width, sort_keys), ctx);
}

Value filter_indent(const Value& input, CallArgs& call, const BuiltinContext& ctx) {
  Args a("indent", call);
  const Value width = a.get(0, "width", Value(4));
  const bool first = a.get(1, "first", Value(false)).truthy();
  const bool blank = a.get(2, "blank", Value(false)).truthy();
  a.finish();
  std::string pad;
  if (width.is_string()) {
    pad = width.as_string();
  } else {
    const std::int64_t n = require_int(width, "indent width");
    pad.assign(static_cast<std::size_t>(std::clamp<std::int64_t>(n, 0, 1024)), ' ');
  }
  std::string s = to_string(input) + "\n";  // as Jinja2: the newline makes splitlines keep a last empty line
  std::vector<std::string> lines = text::splitlines(s);
  std::string rv;
  if (blank) {
    for (std::size_t i = 0; i < lines.size(); ++i) {
      if (i > 0) rv += "\n" + pad;
      rv += lines[i];
    }
  } else if (!lines.empty()) {
    rv = lines[0];
    for (std::size_t i = 1; i < lines.size(); ++i) {
      rv += "\n";
      if (!lines[i].empty()) rv += pad;
      rv += lines[i];
    }
  }
  if (first) rv = pad + rv;
  return make_string(std::move(rv), ctx);
}

Value filter_minmax(const Value& input, CallArgs& call, const BuiltinContext& ctx, bool want_max) {
  Args a(want_max ? "max" : "min", call);
  const bool case_sensitive = a.get(0, "case_sensitive", Value(false)).truthy();
  const Value attr = a.get(1, "attribute");
  a.finish();
  const ValueList items = iterate(input, want_max ? "max" : "min");
  if (ctx.charge) ctx.charge(items.size());
  if (items.empty()) return Value::undefined("no items");
  std::size_t best = 0;
  const auto key = [&](std::size_t i) {
    return sort_key(attr.is_string() ? get_path(items[i], attr.as_string()) : items[i], case_sensitive);
  };
  for (std::size_t i = 1; i < items.size(); ++i) {
    const bool better = want_max ? key(best).less_than(key(i)) : key(i).less_than(key(best));
    if (better) best = i;
  }
  return items[best];
}

Value add_values(const Value& x, const Value& y) {
  if (x.is_number() && y.is_number()) {
    if (x.is_float() || y.is_float()) return Value(x.as_double() + y.as_double());
    std::int64_t r = 0;
    if (__builtin_add_overflow(x.as_int(), y.as_int(), &r)) fail("integer overflow in sum");
    return Value(r);
  }
  fail("unsupported operand types for sum: '{}' and '{}'", x.type_name(), y.type_name());
}

}  // namespace

void check_string_size(std::size_t bytes, const BuiltinContext& ctx) {
  if (ctx.max_string_bytes != 0 && bytes > ctx.max_string_bytes)
    fail("string of {} bytes exceeds the render limit of {} bytes", bytes, ctx.max_string_bytes);
}

void check_list_size(std::size_t items, const BuiltinContext& ctx) {
  if (ctx.max_list_items != 0 && items > ctx.max_list_items)
    fail("list of {} items exceeds the render limit of {} items", items, ctx.max_list_items);
}

namespace {

constexpr std::string_view kFilters[] = {
    "abs",   "capitalize", "count",   "d",       "default", "dictsort", "first",      "float",     "indent",
    "int",   "items",      "join",    "last",    "length",  "list",     "lower",      "map",       "max",
    "min",   "reject",     "rejectattr", "replace", "reverse", "round", "safe",       "select",    "selectattr",
    "sort",  "string",     "sum",     "title",   "tojson",  "trim",     "unique",     "upper",
};

constexpr std::string_view kTests[] = {
    "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "escaped", "even", "false",  "float",
    "ge",      "greaterthan", "gt",   "in",      "integer", "iterable", "le",     "lessthan", "lower", "lt",
    "mapping", "ne",       "none",    "number",  "odd",     "sameas",   "sequence", "string",  "true", "undefined",
    "upper",   "==",       "!=",      "<",       "<=",      ">",        ">=",
};

}  // namespace

bool is_filter(std::string_view name) {
  return std::find(std::begin(kFilters), std::end(kFilters), name) != std::end(kFilters);
}

bool is_test(std::string_view name) {
  return std::find(std::begin(kTests), std::end(kTests), name) != std::end(kTests);
}

Value call_filter(std::string_view name, const Value& input, CallArgs& call, const BuiltinContext& ctx) {
  if (name == "map") return filter_map(input, call, ctx);
  if (name == "select") return filter_select(input, call, ctx, true, false, name);
  if (name == "reject") return filter_select(input, call, ctx, false, false, name);
  if (name == "selectattr") return filter_select(input, call, ctx, true, true, name);
  if (name == "rejectattr") return filter_select(input, call, ctx, false, true, name);
  if (name == "sort") return filter_sort(input, call, ctx);
  if (name == "tojson") return filter_tojson(input, call, ctx);
  if (name == "indent") return filter_indent(input, call, ctx);
  if (name == "max" || name == "min") return filter_minmax(input, call, ctx, name == "max");

  if (ctx.charge) ctx.charge(input.is_string() ? input.as_string().size() : input.is_list() ? input.as_list().size() : 0);
  Args a(name, call);
  if (name == "default" || name == "d") {
    const Value def = a.get(0, "default_value", Value(""));
    const bool boolean = a.get(1, "boolean", Value(false)).truthy();
    a.finish();
    if (input.is_undefined() || (boolean && !input.truthy())) return def;
    return input;
  }
  if (name == "trim") {
    const std::optional<std::string> chars = optional_string(a.get(0, "chars"), "trim chars");
    a.finish();
    return make_string(text::strip(to_string(input), chars, true, true), ctx);
  }
  if (name == "replace") {
    const std::string old = to_string(a.get(0, "old"));
    const std::string with = to_string(a.get(1, "new"));
    const Value count = a.get(2, "count", Value::none());
    a.finish();
    const std::int64_t n = count.is_none() ? -1 : require_int(count, "replace count");
    const std::string s = to_string(input);
    // The result can be far larger than its inputs: bound it before building it.
    if (!old.empty() && with.size() > old.size()) {
      std::size_t hits = 0;
      for (std::size_t at = s.find(old); at != std::string::npos; at = s.find(old, at + old.size())) ++hits;
      check_string_size(s.size() + hits * (with.size() - old.size()), ctx);
    } else if (old.empty()) {
      check_string_size(s.size() + (s.size() + 1) * with.size(), ctx);
    }
    return make_string(text::replace(s, old, with, n), ctx);
  }
  if (name == "join") {
    const std::string sep = to_string(a.get(0, "d", Value("")));
    const Value attr = a.get(1, "attribute");
    a.finish();
    std::string out;
    bool first = true;
    for (const Value& item : iterate(input, "join")) {
      if (!first) out += sep;
      first = false;
      out += to_string(attr.is_string() ? get_path(item, attr.as_string()) : item);
      check_string_size(out.size(), ctx);
    }
    return make_string(std::move(out), ctx);
  }
  if (name == "unique") {
    const bool case_sensitive = a.get(0, "case_sensitive", Value(false)).truthy();
    const Value attr = a.get(1, "attribute");
    a.finish();
    ValueList out;
    ValueList seen;
    for (const Value& item : iterate(input, "unique")) {
      const Value key = sort_key(attr.is_string() ? get_path(item, attr.as_string()) : item, case_sensitive);
      if (ctx.charge) ctx.charge(seen.size());
      bool dup = false;
      for (const Value& s : seen)
        if (s.equals(key)) dup = true;
      if (dup) continue;
      seen.push_back(key);
      out.push_back(item);
    }
    return make_list(std::move(out), ctx);
  }
  if (name == "dictsort") {
    const bool case_sensitive = a.get(0, "case_sensitive", Value(false)).truthy();
    const std::string by = to_string(a.get(1, "by", Value("key")));
    const bool reverse = a.get(2, "reverse", Value(false)).truthy();
    a.finish();
    if (!input.is_dict()) fail("dictsort: expected a dict, got {}", input.type_name());
    if (by != "key" && by != "value") fail("dictsort: 'by' must be 'key' or 'value'");
    std::vector<std::pair<std::string, Value>> items = input.as_dict().items;
    const std::size_t pos = by == "key" ? 0 : 1;
    std::stable_sort(items.begin(), items.end(), [&](const auto& x, const auto& y) {
      const Value kx = sort_key(pos == 0 ? Value(x.first) : x.second, case_sensitive);
      const Value ky = sort_key(pos == 0 ? Value(y.first) : y.second, case_sensitive);
      return reverse ? ky.less_than(kx) : kx.less_than(ky);
    });
    ValueList out;
    for (auto& kv : items) out.push_back(Value::tuple({Value(kv.first), kv.second}));
    return make_list(std::move(out), ctx);
  }
  if (name == "round") {
    const std::int64_t precision = require_int(a.get(0, "precision", Value(0)), "round precision");
    const std::string method = to_string(a.get(1, "method", Value("common")));
    a.finish();
    if (method != "common" && method != "ceil" && method != "floor")
      fail("round: method must be 'common', 'ceil' or 'floor'");
    if (!input.is_number()) fail("round: expected a number, got {}", input.type_name());
    if (method == "common") {
      if (!input.is_float()) return Value(input.as_int());
      return Value(python_round(input.as_double(), precision));
    }
    const double scale = std::pow(10.0, static_cast<double>(std::clamp<std::int64_t>(precision, -300, 300)));
    const double v = input.as_double() * scale;
    return Value((method == "ceil" ? std::ceil(v) : std::floor(v)) / scale);
  }
  if (name == "int") {
    const Value def = a.get(0, "default", Value(0));
    const std::int64_t base = require_int(a.get(1, "base", Value(10)), "int base");
    a.finish();
    if (base != 10) fail("int: only base 10 is supported");
    if (input.is_int() || input.is_bool()) return Value(input.as_int());
    if (input.is_float()) {
      const double d = input.as_double();
      if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return def;
      return Value(static_cast<std::int64_t>(d));
    }
    if (input.is_string()) {
      std::int64_t i = 0;
      if (parse_python_int(input.as_string(), &i)) return Value(i);
      double d = 0;
      if (parse_python_float(input.as_string(), &d) && std::isfinite(d) && std::fabs(d) < 9.2e18)
        return Value(static_cast<std::int64_t>(d));
    }
    return def;
  }
  if (name == "float") {
    const Value def = a.get(0, "default", Value(0.0));
    a.finish();
    if (input.is_number()) return Value(input.as_double());
    double d = 0;
    if (input.is_string() && parse_python_float(input.as_string(), &d)) return Value(d);
    return def;
  }
  if (name == "sum") {
    const Value attr = a.get(0, "attribute");
    Value total = a.get(1, "start", Value(0));
    a.finish();
    for (const Value& item : iterate(input, "sum"))
      total = add_values(total, attr.is_string() ? get_path(item, attr.as_string()) : item);
    return total;
  }
  a.finish();
  if (name == "length" || name == "count") return Value(static_cast<std::int64_t>(length_of(input)));
  if (name == "string") return make_string(to_string(input), ctx);
  if (name == "safe") return input;
  if (name == "upper") return make_string(text::upper(to_string(input)), ctx);
  if (name == "lower") return make_string(text::lower(to_string(input)), ctx);
  if (name == "title") return make_string(text::jinja_title(to_string(input)), ctx);
  if (name == "capitalize") return make_string(text::capitalize(to_string(input)), ctx);
  if (name == "abs") {
    if (input.is_float()) return Value(std::fabs(input.as_double()));
    if (input.is_int() || input.is_bool()) {
      const std::int64_t i = input.as_int();
      if (i == std::numeric_limits<std::int64_t>::min()) fail("integer overflow in abs");
      return Value(i < 0 ? -i : i);
    }
    fail("bad operand type for abs(): '{}'", input.type_name());
  }
  if (name == "first") {
    if (input.is_string()) {
      const std::vector<std::string> cs = text::chars(input.as_string());
      return cs.empty() ? Value::undefined("first item") : Value(cs.front());
    }
    if (input.is_list()) return input.as_list().empty() ? Value::undefined("first item") : input.as_list().front();
    const ValueList items = iterate(input, "first");
    return items.empty() ? Value::undefined("first item") : items.front();
  }
  if (name == "last") {
    if (input.is_list()) return input.as_list().empty() ? Value::undefined("last item") : input.as_list().back();
    if (input.is_undefined()) fail("last: an undefined value has no last item");
    const ValueList items = iterate(input, "last");
    return items.empty() ? Value::undefined("last item") : items.back();
  }
  if (name == "list") return make_list(iterate(input, "list"), ctx);
  if (name == "reverse") {
    if (input.is_string()) {
      std::vector<std::string> cs = text::chars(input.as_string());
      std::string out;
      for (auto it = cs.rbegin(); it != cs.rend(); ++it) out += *it;
      return make_string(std::move(out), ctx);
    }
    ValueList items = iterate(input, "reverse");
    std::reverse(items.begin(), items.end());
    return make_list(std::move(items), ctx);
  }
  if (name == "items") {
    if (input.is_undefined()) return Value::list();
    if (!input.is_dict()) fail("items: can only get item pairs from a mapping, not {}", input.type_name());
    ValueList out;
    for (const auto& kv : input.as_dict().items) out.push_back(Value::tuple({Value(kv.first), kv.second}));
    return make_list(std::move(out), ctx);
  }
  fail("no filter named '{}'", name);
}

bool call_test(std::string_view name, const Value& v, CallArgs& call, const BuiltinContext& ctx) {
  (void)ctx;
  Args a(name, call);
  if (name == "divisibleby") {
    const std::int64_t n = require_int(a.get(0, "num"), "divisibleby argument");
    a.finish();
    if (n == 0) fail("divisibleby: division by zero");
    return require_int(v, "divisibleby value") % n == 0;
  }
  if (name == "eq" || name == "equalto" || name == "==" || name == "ne" || name == "!=" || name == "lt" ||
      name == "lessthan" || name == "<" || name == "le" || name == "<=" || name == "gt" || name == "greaterthan" ||
      name == ">" || name == "ge" || name == ">=" || name == "in" || name == "sameas") {
    const Value other = a.get(0, "other");
    a.finish();
    if (name == "eq" || name == "equalto" || name == "==") return v.equals(other);
    if (name == "ne" || name == "!=") return !v.equals(other);
    if (name == "lt" || name == "lessthan" || name == "<") return v.less_than(other);
    if (name == "le" || name == "<=") return !other.less_than(v);
    if (name == "gt" || name == "greaterthan" || name == ">") return other.less_than(v);
    if (name == "ge" || name == ">=") return !v.less_than(other);
    if (name == "sameas") return v.same_object(other);
    // in
    if (other.is_string()) {
      if (!v.is_string()) fail("'in <string>' requires string as left operand, not {}", v.type_name());
      return other.as_string().find(v.as_string()) != std::string::npos;
    }
    if (other.is_dict()) return v.is_string() && other.as_dict().find(v.as_string()) != nullptr;
    for (const Value& item : iterate(other, "in"))
      if (item.equals(v)) return true;
    return false;
  }
  a.finish();
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "boolean") return v.is_bool();
  if (name == "true") return v.is_bool() && v.as_bool();
  if (name == "false") return v.is_bool() && !v.as_bool();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_float();
  if (name == "number") return v.is_number();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.is_dict();
  if (name == "callable") return v.is_callable();
  if (name == "escaped") return false;
  // Jinja2's Undefined has __iter__, __len__ and __getitem__, so it passes these two.
  if (name == "iterable") return v.is_list() || v.is_dict() || v.is_string() || v.is_undefined();
  if (name == "sequence") return v.is_list() || v.is_dict() || v.is_string() || v.is_undefined();
  if (name == "odd") return require_int(v, "odd test value") % 2 != 0;
  if (name == "even") return require_int(v, "even test value") % 2 == 0;
  if (name == "lower") return v.is_string() && text::lower(v.as_string()) == v.as_string();
  if (name == "upper") return v.is_string() && text::upper(v.as_string()) == v.as_string();
  fail("no test named '{}'", name);
}

bool has_method(const Value& obj, std::string_view name) {
  static constexpr std::string_view kStr[] = {"strip",   "lstrip", "rstrip",     "startswith", "endswith",
                                              "split",   "upper",  "lower",      "title",      "capitalize",
                                              "replace", "format", "join",       "find",       "count",
                                              "splitlines", "isdigit", "isalpha", "isspace"};
  static constexpr std::string_view kDict[] = {"items", "keys", "values", "get"};
  static constexpr std::string_view kList[] = {"index", "count"};
  const auto in = [&](const auto& list) { return std::find(std::begin(list), std::end(list), name) != std::end(list); };
  if (obj.is_string()) return in(kStr);
  if (obj.is_dict()) return in(kDict);
  if (obj.is_list()) return in(kList);
  return false;
}

std::optional<Value> call_method(const Value& obj, std::string_view name, CallArgs& call, const BuiltinContext& ctx) {
  if (!has_method(obj, name)) return std::nullopt;
  // Methods scan their object: charge for it so loops over big strings stay within the budget.
  if (ctx.charge) ctx.charge(obj.is_string() ? obj.as_string().size() : obj.is_list() ? obj.as_list().size() : 0);
  if (obj.is_dict()) {
    const ValueDict& d = obj.as_dict();
    Args a(name, call);
    if (name == "get") {
      const Value key = a.get(0, "key");
      const Value def = a.get(1, "default", Value::none());
      a.finish();
      if (!key.is_string()) return def;
      const Value* found = d.find(key.as_string());
      return found ? *found : def;
    }
    a.finish();
    ValueList out;
    for (const auto& kv : d.items) {
      if (name == "items") out.push_back(Value::tuple({Value(kv.first), kv.second}));
      if (name == "keys") out.emplace_back(kv.first);
      if (name == "values") out.push_back(kv.second);
    }
    return make_list(std::move(out), ctx);
  }
  if (obj.is_list()) {
    Args a(name, call);
    const Value x = a.get(0, "value");
    a.finish();
    const ValueList& items = obj.as_list();
    std::int64_t count = 0;
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (!items[i].equals(x)) continue;
      if (name == "index") return Value(static_cast<std::int64_t>(i));
      ++count;
    }
    if (name == "index") fail("list.index(x): x not in list");
    return Value(count);
  }
  const std::string& s = obj.as_string();
  if (name == "format") return make_string(python_format(s, call), ctx);
  Args a(name, call);
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const std::optional<std::string> chars = optional_string(a.get(0, "chars"), "strip chars");
    a.finish();
    return make_string(text::strip(s, chars, name != "rstrip", name != "lstrip"), ctx);
  }
  if (name == "startswith" || name == "endswith") {
    const Value arg = a.get(0, "prefix");
    a.finish();
    ValueList options = arg.is_list() ? arg.as_list() : ValueList{arg};
    for (const Value& o : options) {
      const std::string p = require_string(o, std::string(name) + " argument");
      if (p.size() > s.size()) continue;
      if (name == "startswith" ? s.compare(0, p.size(), p) == 0 : s.compare(s.size() - p.size(), p.size(), p) == 0)
        return Value(true);
    }
    return Value(false);
  }
  if (name == "split") {
    const std::optional<std::string> sep = optional_string(a.get(0, "sep"), "split separator");
    const std::int64_t maxsplit = require_int(a.get(1, "maxsplit", Value(-1)), "split maxsplit");
    a.finish();
    ValueList out;
    for (std::string& part : text::split(s, sep, maxsplit)) out.emplace_back(std::move(part));
    return make_list(std::move(out), ctx);
  }
  if (name == "splitlines") {
    a.finish();
    ValueList out;
    for (std::string& part : text::splitlines(s)) out.emplace_back(std::move(part));
    return make_list(std::move(out), ctx);
  }
  if (name == "replace") {
    const std::string old = require_string(a.get(0, "old"), "replace old");
    const std::string with = require_string(a.get(1, "new"), "replace new");
    const std::int64_t count = require_int(a.get(2, "count", Value(-1)), "replace count");
    a.finish();
    CallArgs fargs;
    fargs.positional = {Value(old), Value(with)};
    if (count >= 0) fargs.positional.push_back(Value(count));
    return call_filter("replace", obj, fargs, ctx);
  }
  if (name == "join") {
    const Value items = a.get(0, "iterable");
    a.finish();
    std::string out;
    bool first = true;
    for (const Value& item : iterate(items, "join")) {
      if (!first) out += s;
      first = false;
      out += require_string(item, "join item");
      check_string_size(out.size(), ctx);
    }
    return make_string(std::move(out), ctx);
  }
  if (name == "find" || name == "count") {
    const std::string sub = require_string(a.get(0, "sub"), std::string(name) + " argument");
    a.finish();
    if (name == "find") {
      const std::size_t at = s.find(sub);
      if (at == std::string::npos) return Value(static_cast<std::int64_t>(-1));
      return Value(static_cast<std::int64_t>(text::char_count(std::string_view(s).substr(0, at))));
    }
    if (sub.empty()) return Value(static_cast<std::int64_t>(text::char_count(s) + 1));
    std::int64_t n = 0;
    for (std::size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++n;
    return Value(n);
  }
  a.finish();
  if (name == "upper") return make_string(text::upper(s), ctx);
  if (name == "lower") return make_string(text::lower(s), ctx);
  if (name == "title") return make_string(text::python_title(s), ctx);
  if (name == "capitalize") return make_string(text::capitalize(s), ctx);
  const auto all = [&](auto pred) { return !s.empty() && std::all_of(s.begin(), s.end(), pred); };
  if (name == "isdigit") return Value(all([](char c) { return c >= '0' && c <= '9'; }));
  if (name == "isalpha") return Value(all([](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }));
  if (name == "isspace") return Value(!s.empty() && text::leading_space_bytes(s) == s.size());
  return std::nullopt;
}

bool is_global(std::string_view name) {
  return name == "range" || name == "namespace" || name == "dict" || name == "raise_exception" ||
         name == "strftime_now";
}

Value make_global(std::string_view name, std::optional<long long> now, const BuiltinContext& ctx) {
  const BuiltinContext* c = &ctx;
  if (name == "range") {
    return Value::function("range", [c](CallArgs& call) {
      if (!call.named.empty()) fail("range() takes no keyword arguments");
      const std::size_t n = call.positional.size();
      if (n < 1 || n > 3) fail("range expected 1 to 3 arguments, got {}", n);
      std::int64_t start = 0, stop = 0, step = 1;
      if (n == 1) {
        stop = require_int(call.positional[0], "range argument");
      } else {
        start = require_int(call.positional[0], "range argument");
        stop = require_int(call.positional[1], "range argument");
        if (n == 3) step = require_int(call.positional[2], "range argument");
      }
      if (step == 0) fail("range() arg 3 must not be zero");
      // Count first (in 128 bits, so no overflow), then refuse lists past the limit.
      const __int128 span = step > 0 ? static_cast<__int128>(stop) - start : static_cast<__int128>(start) - stop;
      const __int128 abs_step = step > 0 ? step : -static_cast<__int128>(step);
      const __int128 count = span <= 0 ? 0 : (span + abs_step - 1) / abs_step;
      check_list_size(count > static_cast<__int128>(std::numeric_limits<std::size_t>::max() / 2)
                          ? std::numeric_limits<std::size_t>::max() / 2
                          : static_cast<std::size_t>(count),
                      *c);
      ValueList out;
      out.reserve(static_cast<std::size_t>(count));
      for (__int128 i = 0; i < count; ++i) out.emplace_back(static_cast<std::int64_t>(start + i * step));
      return make_list(std::move(out), *c);
    });
  }
  if (name == "namespace" || name == "dict") {
    const bool ns = name == "namespace";
    return Value::function(std::string(name), [c, ns](CallArgs& call) {
      Value obj = ns ? Value::namespace_object() : Value::dict();
      if (ns && c->track_namespace) c->track_namespace(obj);
      if (call.positional.size() > 1) fail("{}() takes at most 1 positional argument", ns ? "namespace" : "dict");
      if (call.positional.size() == 1) {
        const Value& init = call.positional[0];
        if (init.is_dict()) {
          for (const auto& kv : init.as_dict().items) obj.as_dict().set(kv.first, kv.second);
        } else {
          for (const Value& pair : iterate(init, "dict")) {
            if (!pair.is_list() || pair.as_list().size() != 2 || !pair.as_list()[0].is_string())
              fail("dict(): expected (str, value) pairs");
            obj.as_dict().set(pair.as_list()[0].as_string(), pair.as_list()[1]);
          }
        }
      }
      for (const auto& kv : call.named) obj.as_dict().set(kv.first, kv.second);
      return obj;
    });
  }
  if (name == "raise_exception") {
    return Value::function("raise_exception", [](CallArgs& call) -> Value {
      const std::string msg = call.positional.empty() ? std::string() : to_string(call.positional[0]);
      fail("raise_exception: {}", msg);
    });
  }
  if (name == "strftime_now") {
    return Value::function("strftime_now", [c, now](CallArgs& call) {
      Args a("strftime_now", call);
      const std::string format = require_string(a.get(0, "format"), "strftime_now format");
      a.finish();
      if (format.size() > 256) fail("strftime_now: format longer than 256 bytes");
      const std::time_t t = now ? static_cast<std::time_t>(*now) : std::time(nullptr);
      std::tm tm{};
      localtime_r(&t, &tm);
      if (format.empty()) return Value("");
      std::string buf(64 + format.size() * 16, '\0');
      const std::size_t n = std::strftime(buf.data(), buf.size(), format.c_str(), &tm);
      if (n == 0) fail("strftime_now: the format '{}' gives an empty or oversized result", format);
      buf.resize(n);
      return make_string(std::move(buf), *c);
    });
  }
  fail("no global named '{}'", name);
}

ValueList iterate(const Value& v, std::string_view what) {
  if (v.is_list()) return v.as_list();
  if (v.is_undefined()) return {};
  if (v.is_dict()) {
    ValueList keys;
    for (const auto& kv : v.as_dict().items) keys.emplace_back(kv.first);
    return keys;
  }
  if (v.is_string()) {
    ValueList out;
    for (std::string& c : text::chars(v.as_string())) out.emplace_back(std::move(c));
    return out;
  }
  if (what.empty()) fail("'{}' object is not iterable", v.type_name());
  fail("{}: '{}' object is not iterable", what, v.type_name());
}

}  // namespace kiln::jinja
