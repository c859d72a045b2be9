// Value: Python semantics for truth, equality, ordering, str(), repr() and json.dumps().
#include "chat/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace kiln::jinja {

Value Value::list(ValueList items) { return Value(std::make_shared<ListObject>(ListObject{std::move(items), false})); }
Value Value::tuple(ValueList items) { return Value(std::make_shared<ListObject>(ListObject{std::move(items), true})); }
bool Value::is_tuple() const { return is_list() && std::get<std::shared_ptr<ListObject>>(v_)->is_tuple; }
ValueList& Value::as_list() const { return std::get<std::shared_ptr<ListObject>>(v_)->items; }
Value Value::dict() { return Value(std::make_shared<ValueDict>()); }
Value Value::namespace_object() {
  auto d = std::make_shared<ValueDict>();
  d->is_namespace = true;
  return Value(std::move(d));
}
Value Value::function(std::string name, Function fn) {
  return Value(std::make_shared<Callable>(Callable{std::move(name), std::move(fn)}));
}

namespace {

template <typename Json>
Value value_from_json(const Json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null:
      return Value::none();
    case nlohmann::json::value_t::boolean:
      return Value(j.template get<bool>());
    case nlohmann::json::value_t::number_integer:
      return Value(j.template get<std::int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      const auto u = j.template get<std::uint64_t>();
      if (u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        return Value(static_cast<std::int64_t>(u));
      return Value(static_cast<double>(u));
    }
    case nlohmann::json::value_t::number_float:
      return Value(j.template get<double>());
    case nlohmann::json::value_t::string:
      return Value(j.template get<std::string>());
    case nlohmann::json::value_t::array: {
      ValueList items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(value_from_json(e));
      return Value::list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      Value d = Value::dict();
      for (auto it = j.begin(); it != j.end(); ++it) d.as_dict().set(it.key(), value_from_json(it.value()));
      return d;
    }
    default:
      fail("chat template: JSON value of type {} cannot be a template value", j.type_name());
  }
}

}  // namespace

Value Value::from_json(const nlohmann::json& j) { return value_from_json(j); }
Value Value::from_json(const nlohmann::ordered_json& j) { return value_from_json(j); }

bool Value::same_object(const Value& other) const {
  if (is_list() && other.is_list()) return &as_list() == &other.as_list();
  if (is_dict() && other.is_dict()) return &as_dict() == &other.as_dict();
  if (is_callable() && other.is_callable()) return &as_callable() == &other.as_callable();
  if (is_list() || is_dict() || is_callable() || other.is_list() || other.is_dict() || other.is_callable())
    return false;
  if (v_.index() != other.v_.index()) return false;
  return equals(other);
}

bool Value::truthy() const {
  if (is_undefined() || is_none()) return false;
  if (is_bool()) return as_bool();
  if (is_int()) return as_int() != 0;
  if (is_float()) return as_double() != 0.0;
  if (is_string()) return !as_string().empty();
  if (is_list()) return !as_list().empty();
  if (is_dict()) return !as_dict().items.empty();
  return true;
}

bool Value::equals(const Value& other) const {
  if (is_number() && other.is_number()) {
    if (is_float() || other.is_float()) return as_double() == other.as_double();
    return as_int() == other.as_int();
  }
  if (is_string() && other.is_string()) return as_string() == other.as_string();
  if (is_none() && other.is_none()) return true;
  if (is_undefined() && other.is_undefined()) return true;
  if (is_list() && other.is_list()) {
    const ValueList& a = as_list();
    const ValueList& b = other.as_list();
    if (a.size() != b.size() || is_tuple() != other.is_tuple()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
      if (!a[i].equals(b[i])) return false;
    return true;
  }
  if (is_dict() && other.is_dict()) {
    const ValueDict& a = as_dict();
    const ValueDict& b = other.as_dict();
    if (a.items.size() != b.items.size()) return false;
    for (const auto& [k, v] : a.items) {
      const Value* w = b.find(k);
      if (w == nullptr || !v.equals(*w)) return false;
    }
    return true;
  }
  if (is_callable() && other.is_callable()) return &as_callable() == &other.as_callable();
  return false;
}

bool Value::less_than(const Value& other) const {
  if (is_number() && other.is_number()) {
    if (is_float() || other.is_float()) return as_double() < other.as_double();
    return as_int() < other.as_int();
  }
  if (is_string() && other.is_string()) return as_string() < other.as_string();
  if (is_list() && other.is_list() && is_tuple() == other.is_tuple()) {
    const ValueList& a = as_list();
    const ValueList& b = other.as_list();
    for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
      if (a[i].equals(b[i])) continue;
      return a[i].less_than(b[i]);
    }
    return a.size() < b.size();
  }
  fail("'<' is not supported between {} and {}", type_name(), other.type_name());
}

std::string Value::type_name() const {
  if (is_undefined()) return "undefined";
  if (is_none()) return "NoneType";
  if (is_bool()) return "bool";
  if (is_int()) return "int";
  if (is_float()) return "float";
  if (is_string()) return "str";
  if (is_list()) return is_tuple() ? "tuple" : "list";
  if (is_dict()) return as_dict().is_namespace ? "Namespace" : "dict";
  return "function";
}

const Value* ValueDict::find(std::string_view key) const {
  for (const auto& [k, v] : items)
    if (k == key) return &v;
  return nullptr;
}

void ValueDict::set(const std::string& key, Value value) {
  for (auto& [k, v] : items) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  items.emplace_back(key, std::move(value));
}

std::string format_float(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  // Shortest round-trip digits in scientific form, then Python's repr layout: positional
  // notation for decimal exponents in [-4, 16), scientific with a two-digit exponent otherwise.
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  const std::size_t e_pos = sci.find('e');
  std::string digits = sci.substr(0, e_pos);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  const int exp = std::stoi(sci.substr(e_pos + 1));
  std::string out = sign;
  if (exp >= -4 && exp < 16) {
    if (exp >= 0) {
      const std::size_t int_len = static_cast<std::size_t>(exp) + 1;
      if (digits.size() <= int_len) {
        out += digits + std::string(int_len - digits.size(), '0') + ".0";
      } else {
        out += digits.substr(0, int_len) + "." + digits.substr(int_len);
      }
    } else {
      out += "0." + std::string(static_cast<std::size_t>(-exp - 1), '0') + digits;
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  const int abs_exp = exp < 0 ? -exp : exp;
  out += fmt::format("e{}{:02d}", exp < 0 ? '-' : '+', abs_exp);
  return out;
}

namespace {

std::string repr_string(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  for (unsigned char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == static_cast<unsigned char>(quote)) {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  out += quote;
  return out;
}

void json_string(const std::string& s, std::string& out) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

// Values nested deeper than this are refused (a self-containing namespace would never end).
constexpr int kMaxJsonDepth = 256;

void json_value(const Value& v, int indent, bool sort_keys, int level, std::string& out) {
  KILN_CHECK(level < kMaxJsonDepth, "tojson: value nested deeper than {} levels", kMaxJsonDepth);
  const auto newline = [&](int lvl) {
    if (indent < 0) return;
    out += '\n';
    out.append(static_cast<std::size_t>(indent) * static_cast<std::size_t>(lvl), ' ');
  };
  // json.dumps uses ", " between items without indent and "," with it (the newline follows).
  const char* item_sep = indent < 0 ? ", " : ",";
  if (v.is_none()) {
    out += "null";
  } else if (v.is_bool()) {
    out += v.as_bool() ? "true" : "false";
  } else if (v.is_int()) {
    out += std::to_string(v.as_int());
  } else if (v.is_float()) {
    const double d = v.as_double();
    if (std::isnan(d)) {
      out += "NaN";
    } else if (std::isinf(d)) {
      out += d < 0 ? "-Infinity" : "Infinity";
    } else {
      out += format_float(d);
    }
  } else if (v.is_string()) {
    json_string(v.as_string(), out);
  } else if (v.is_list()) {
    const ValueList& items = v.as_list();
    if (items.empty()) {
      out += "[]";
      return;
    }
    out += '[';
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (i > 0) out += item_sep;
      newline(level + 1);
      json_value(items[i], indent, sort_keys, level + 1, out);
    }
    newline(level);
    out += ']';
  } else if (v.is_dict()) {
    std::vector<const std::pair<std::string, Value>*> items;
    for (const auto& item : v.as_dict().items) items.push_back(&item);
    if (items.empty()) {
      out += "{}";
      return;
    }
    if (sort_keys)
      std::stable_sort(items.begin(), items.end(), [](const auto* a, const auto* b) { return a->first < b->first; });
    out += '{';
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (i > 0) out += item_sep;
      newline(level + 1);
      json_string(items[i]->first, out);
      out += ": ";
      json_value(items[i]->second, indent, sort_keys, level + 1, out);
    }
    newline(level);
    out += '}';
  } else {
    fail("tojson: Object of type {} is not JSON serializable", v.type_name());
  }
}

void repr_into(const Value& v, int level, std::string& out);

void str_into(const Value& v, int level, std::string& out) {
  if (v.is_string()) {
    out += v.as_string();
  } else {
    repr_into(v, level, out);
  }
}

void repr_into(const Value& v, int level, std::string& out) {
  KILN_CHECK(level < kMaxJsonDepth, "value nested deeper than {} levels cannot be printed", kMaxJsonDepth);
  if (v.is_undefined()) {
    out += level == 0 ? "" : "Undefined";
  } else if (v.is_none()) {
    out += "None";
  } else if (v.is_bool()) {
    out += v.as_bool() ? "True" : "False";
  } else if (v.is_int()) {
    out += std::to_string(v.as_int());
  } else if (v.is_float()) {
    out += format_float(v.as_double());
  } else if (v.is_string()) {
    out += repr_string(v.as_string());
  } else if (v.is_list()) {
    out += v.is_tuple() ? '(' : '[';
    bool first = true;
    for (const Value& item : v.as_list()) {
      if (!first) out += ", ";
      first = false;
      repr_into(item, level + 1, out);
    }
    if (v.is_tuple() && v.as_list().size() == 1) out += ',';
    out += v.is_tuple() ? ')' : ']';
  } else if (v.is_dict()) {
    const ValueDict& d = v.as_dict();
    out += d.is_namespace ? "<Namespace {" : "{";
    bool first = true;
    for (const auto& [k, item] : d.items) {
      if (!first) out += ", ";
      first = false;
      out += repr_string(k);
      out += ": ";
      repr_into(item, level + 1, out);
    }
    out += d.is_namespace ? "}>" : "}";
  } else {
    out += "<function " + v.as_callable().name + ">";
  }
}

}  // namespace

std::string to_string(const Value& v) {
  std::string out;
  str_into(v, 0, out);
  return out;
}

std::string repr(const Value& v) {
  std::string out;
  repr_into(v, 1, out);
  return out;
}

std::string to_json(const Value& v, int indent, bool sort_keys) {
  std::string out;
  json_value(v, indent, sort_keys, 0, out);
  return out;
}

}  // namespace kiln::jinja
