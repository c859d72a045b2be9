#pragma once
// The dynamic value of kiln's Jinja interpreter (chat templates): undefined, none, bool, int,
// float, string, list, dict (insertion ordered) and callable, with Python's semantics for
// truth, equality, ordering and str()/repr(), since the templates were written against Jinja2.
// Lists and dicts are shared by reference, as in Python: `namespace()` objects rely on it.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace kiln::jinja {

class Value;
using ValueList = std::vector<Value>;

// Arguments of a call: positional values, then keyword values in call order.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> named;
};

using Function = std::function<Value(CallArgs&)>;

struct ValueDict;
struct ListObject;

class Value {
 public:
  struct Undefined {
    std::string name;  // what was looked up, for error messages
  };
  struct None {};
  struct Callable {
    std::string name;
    Function fn;
  };

  Value() : v_(Undefined{}) {}
  static Value undefined(std::string name = {}) { return Value(Undefined{std::move(name)}); }
  static Value none() { return Value(None{}); }
  Value(bool b) : v_(b) {}
  Value(int i) : v_(static_cast<std::int64_t>(i)) {}
  Value(std::int64_t i) : v_(i) {}
  Value(double d) : v_(d) {}
  Value(std::string s) : v_(std::move(s)) {}
  Value(const char* s) : v_(std::string(s)) {}
  Value(std::string_view s) : v_(std::string(s)) {}
  static Value list(ValueList items = {});
  // A list that prints as a Python tuple: "(1, 2)". Pairs from dict.items() are tuples.
  static Value tuple(ValueList items);
  static Value dict();
  static Value namespace_object();
  static Value function(std::string name, Function fn);
  // JSON (tool calls, tools, extra variables) to values: objects keep their key order.
  static Value from_json(const nlohmann::json& j);
  static Value from_json(const nlohmann::ordered_json& j);

  bool is_undefined() const { return std::holds_alternative<Undefined>(v_); }
  bool is_none() const { return std::holds_alternative<None>(v_); }
  bool is_bool() const { return std::holds_alternative<bool>(v_); }
  bool is_int() const { return std::holds_alternative<std::int64_t>(v_); }
  bool is_float() const { return std::holds_alternative<double>(v_); }
  // Python's numbers include bool.
  bool is_number() const { return is_bool() || is_int() || is_float(); }
  bool is_string() const { return std::holds_alternative<std::string>(v_); }
  // Lists and tuples alike (both iterate, index and unpack the same way).
  bool is_list() const { return std::holds_alternative<std::shared_ptr<ListObject>>(v_); }
  bool is_tuple() const;
  bool is_dict() const { return std::holds_alternative<std::shared_ptr<ValueDict>>(v_); }
  bool is_callable() const { return std::holds_alternative<std::shared_ptr<Callable>>(v_); }

  bool as_bool() const { return std::get<bool>(v_); }
  // Integer value of an int or bool.
  std::int64_t as_int() const { return is_bool() ? (as_bool() ? 1 : 0) : std::get<std::int64_t>(v_); }
  // Float value of any number.
  double as_double() const { return is_float() ? std::get<double>(v_) : static_cast<double>(as_int()); }
  const std::string& as_string() const { return std::get<std::string>(v_); }
  ValueList& as_list() const;
  ValueDict& as_dict() const { return *std::get<std::shared_ptr<ValueDict>>(v_); }
  const Callable& as_callable() const { return *std::get<std::shared_ptr<Callable>>(v_); }
  const std::string& undefined_name() const { return std::get<Undefined>(v_).name; }
  // Same list or dict object (Python's `is`); for other kinds, equal scalars.
  bool same_object(const Value& other) const;

  // Python truth: "", 0, 0.0, [], {}, None, undefined and False are false.
  bool truthy() const;
  // Python == (1 == 1.0 == True; lists and dicts compared deeply).
  bool equals(const Value& other) const;
  // Python <: numbers, strings (by code point, i.e. UTF-8 bytes) and lists; throws otherwise.
  bool less_than(const Value& other) const;
  // Python's type name, for messages ("str", "int", "dict", "undefined").
  std::string type_name() const;

 private:
  using Variant = std::variant<Undefined, None, bool, std::int64_t, double, std::string, std::shared_ptr<ListObject>,
                               std::shared_ptr<ValueDict>, std::shared_ptr<Callable>>;
  explicit Value(Variant v) : v_(std::move(v)) {}
  Variant v_;
};

struct ListObject {
  ValueList items;
  bool is_tuple = false;
};

// A dict keeps its keys in insertion order, like Python's. Keys are strings (JSON and the
// templates only ever build string-keyed dicts); lookups are linear, dicts here are small.
struct ValueDict {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;  // made by namespace(): the only object `set x.attr = ...` may change

  const Value* find(std::string_view key) const;
  void set(const std::string& key, Value value);
};

// Python str(): what {{ x }} prints. Undefined prints as "", floats as Python's repr.
std::string to_string(const Value& v);
// Python repr(): strings quoted, as str() shows them inside lists and dicts.
std::string repr(const Value& v);
// Python's repr of a float ("1.0", "0.1", "1e+16", "inf").
std::string format_float(double d);
// json.dumps(v, ensure_ascii=False, indent=indent, sort_keys=sort_keys) as Hugging Face's
// tojson filter calls it; indent < 0 means none. Throws on values JSON cannot hold.
std::string to_json(const Value& v, int indent, bool sort_keys = false);

}  // namespace kiln::jinja
