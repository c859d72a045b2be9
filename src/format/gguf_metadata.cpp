#include "format/gguf_metadata.h"

#include <limits>

#include "core/error.h"
#include "format/quoted_name.h"

namespace kiln {

std::string value_type_description(const GgufValue& value) {
  if (const GgufArray* a = value.as_array()) return fmt::format("array of {}", gguf_type_name(a->elem_type));
  return std::string(gguf_type_name(value.type));
}

bool is_integer_type(GgufType t) {
  switch (t) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::U16:
    case GgufType::I16:
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::U64:
    case GgufType::I64:
      return true;
    default:
      return false;
  }
}

std::string_view gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::U8:
      return "u8";
    case GgufType::I8:
      return "i8";
    case GgufType::U16:
      return "u16";
    case GgufType::I16:
      return "i16";
    case GgufType::U32:
      return "u32";
    case GgufType::I32:
      return "i32";
    case GgufType::F32:
      return "f32";
    case GgufType::Bool:
      return "bool";
    case GgufType::String:
      return "string";
    case GgufType::Array:
      return "array";
    case GgufType::U64:
      return "u64";
    case GgufType::I64:
      return "i64";
    case GgufType::F64:
      return "f64";
  }
  return "unknown";
}

std::optional<std::int64_t> GgufValue::as_int() const {
  if (const auto* i = std::get_if<std::int64_t>(&v)) return *i;
  if (const auto* b = std::get_if<bool>(&v)) return *b ? 1 : 0;
  return std::nullopt;  // u64 above INT64_MAX does not fit, and other types are not integers
}

std::optional<double> GgufValue::as_float() const {
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* i = std::get_if<std::int64_t>(&v)) return static_cast<double>(*i);
  if (const auto* u = std::get_if<std::uint64_t>(&v)) return static_cast<double>(*u);
  return std::nullopt;
}

std::optional<bool> GgufValue::as_bool() const {
  if (const auto* b = std::get_if<bool>(&v)) return *b;
  if (const auto* i = std::get_if<std::int64_t>(&v); i && (*i == 0 || *i == 1)) return *i == 1;
  return std::nullopt;
}

const std::string* GgufValue::as_string() const { return std::get_if<std::string>(&v); }

const GgufArray* GgufValue::as_array() const {
  const auto* a = std::get_if<std::shared_ptr<const GgufArray>>(&v);
  return a ? a->get() : nullptr;
}

std::size_t GgufArray::size() const {
  switch (elem_type) {
    case GgufType::F32:
    case GgufType::F64:
      return floats.size();
    case GgufType::String:
      return strings.size();
    case GgufType::Array:
      return arrays.size();
    default:
      return ints.size();
  }
}

GgufMetadata::GgufMetadata(std::string source) : source_(std::move(source)) {}

void GgufMetadata::add(std::string key, GgufValue value) {
  if (key.empty()) fail("{}: empty metadata key", source_);
  if (index_.count(key)) fail("{}: metadata {} appears twice (duplicate key)", source_, quoted_name(key));
  index_.emplace(key, entries_.size());
  entries_.emplace_back(std::move(key), std::move(value));
}

const GgufValue* GgufMetadata::find(const std::string& key) const {
  auto it = index_.find(key);
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

std::optional<std::int64_t> GgufMetadata::get_int(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (auto i = v->as_int(); i && v->type != GgufType::Bool) return i;
  if (std::holds_alternative<std::uint64_t>(v->v))
    fail("{}: metadata {} = {} does not fit a signed 64-bit integer", source_, quoted_name(key),
         std::get<std::uint64_t>(v->v));
  fail("{}: metadata {} has type {} (expected an integer)", source_, quoted_name(key), value_type_description(*v));
}

std::optional<double> GgufMetadata::get_float(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != GgufType::Bool)
    if (auto f = v->as_float()) return f;
  fail("{}: metadata {} has type {} (expected a number)", source_, quoted_name(key), value_type_description(*v));
}

std::optional<bool> GgufMetadata::get_bool(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (auto b = v->as_bool()) return b;
  fail("{}: metadata {} has type {} (expected bool)", source_, quoted_name(key), value_type_description(*v));
}

std::optional<std::string> GgufMetadata::get_string(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (const std::string* s = v->as_string()) return *s;
  fail("{}: metadata {} has type {} (expected string)", source_, quoted_name(key), value_type_description(*v));
}

const GgufArray* GgufMetadata::get_array(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return nullptr;
  if (const GgufArray* a = v->as_array()) return a;
  fail("{}: metadata {} has type {} (expected array)", source_, quoted_name(key), value_type_description(*v));
}

namespace gguf_value {
namespace {
GgufValue make(GgufType t, decltype(GgufValue::v) v) {
  GgufValue value;
  value.type = t;
  value.v = std::move(v);
  return value;
}
}  // namespace
GgufValue u8(std::uint8_t v) { return make(GgufType::U8, std::int64_t{v}); }
GgufValue i8(std::int8_t v) { return make(GgufType::I8, std::int64_t{v}); }
GgufValue u16(std::uint16_t v) { return make(GgufType::U16, std::int64_t{v}); }
GgufValue i16(std::int16_t v) { return make(GgufType::I16, std::int64_t{v}); }
GgufValue u32(std::uint32_t v) { return make(GgufType::U32, std::int64_t{v}); }
GgufValue i32(std::int32_t v) { return make(GgufType::I32, std::int64_t{v}); }
GgufValue u64(std::uint64_t v) {
  // As the reader holds it: int64 when it fits, uint64 above INT64_MAX.
  if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return make(GgufType::U64, v);
  return make(GgufType::U64, static_cast<std::int64_t>(v));
}
GgufValue i64(std::int64_t v) { return make(GgufType::I64, v); }
GgufValue f32(float v) { return make(GgufType::F32, static_cast<double>(v)); }
GgufValue f64(double v) { return make(GgufType::F64, v); }
GgufValue boolean(bool v) { return make(GgufType::Bool, v); }
GgufValue string(std::string v) { return make(GgufType::String, std::move(v)); }
GgufValue array(GgufArray a) {
  return make(GgufType::Array, std::shared_ptr<const GgufArray>(std::make_shared<GgufArray>(std::move(a))));
}
}  // namespace gguf_value

}  // namespace kiln
