#pragma once
// The filters, tests, methods and global functions of kiln's Jinja subset, with the semantics
// of Jinja2 3.1 and Python (and Hugging Face's tojson). Errors are kiln::Error without a
// position; the interpreter adds the template line and column.
#include <cstddef>
#include <functional>
#include <optional>
#include <string_view>

#include "chat/jinja_value.h"

namespace kiln::jinja {

// What the builtins need from the render that calls them: its size limits (see RenderLimits),
// a meter charged with the bytes or items a builtin touches (so that work without output is
// bounded too), and a register of namespace objects (which the render empties at its end: they
// are the only mutable values, so every reference cycle runs through one).
struct BuiltinContext {
  std::size_t max_string_bytes = 0;
  std::size_t max_list_items = 0;
  std::function<void(std::size_t)> charge;
  std::function<void(const Value&)> track_namespace;
};

bool is_filter(std::string_view name);
bool is_test(std::string_view name);

Value call_filter(std::string_view name, const Value& input, CallArgs& args, const BuiltinContext& ctx);
bool call_test(std::string_view name, const Value& input, CallArgs& args, const BuiltinContext& ctx);

// A method of a str, dict or list ("strip", "items", "get", ...); nullopt when `obj` has none
// of that name (then `obj.name` is an attribute or key lookup instead).
std::optional<Value> call_method(const Value& obj, std::string_view name, CallArgs& args, const BuiltinContext& ctx);
bool has_method(const Value& obj, std::string_view name);

// Jinja2's default globals and Hugging Face's: range, namespace, dict, raise_exception,
// strftime_now. `now` fixes the clock for strftime_now (seconds since the epoch), else real time.
Value make_global(std::string_view name, std::optional<long long> now, const BuiltinContext& ctx);
bool is_global(std::string_view name);

// The items of an iterable as Python's iter() yields them: list items, dict keys, string code
// points; undefined is empty (Jinja2's Undefined iterates as nothing). Throws kiln::Error
// ("<what>: 'int' object is not iterable", without the prefix when `what` is empty).
ValueList iterate(const Value& v, std::string_view what = {});

// Checks a value the interpreter or a builtin made against the limits.
void check_string_size(std::size_t bytes, const BuiltinContext& ctx);
void check_list_size(std::size_t items, const BuiltinContext& ctx);

}  // namespace kiln::jinja
