#pragma once
// GGUF's metadata model, shared by every format kiln reads: typed key/values in order, with
// lookup and typed getters whose errors name the source and the key. A GGUF file is one
// (GgufFile); a model opened from another format (format/tensor_source.h) carries its
// hyper-parameters and vocabulary in the same keys, so the model, tokenizer and chat layers read
// them one way whatever the file was.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace kiln {

enum class GgufType : std::uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7,
  String = 8, Array = 9, U64 = 10, I64 = 11, F64 = 12,
};
std::string_view gguf_type_name(GgufType t);
// The eight integer types U8 .. I64 (Bool, which as_int also reads, is not one).
bool is_integer_type(GgufType t);

struct GgufArray;

// One metadata value. Integers are held as int64 (u64 values above INT64_MAX as uint64),
// floats as double, so readers need not care about the stored width; `type` keeps it.
struct GgufValue {
  GgufType type = GgufType::U8;
  std::variant<std::int64_t, std::uint64_t, double, bool, std::string, std::shared_ptr<const GgufArray>> v;

  std::optional<std::int64_t> as_int() const;   // any integer type (and bool)
  std::optional<double> as_float() const;       // float types and integers
  std::optional<bool> as_bool() const;          // bool (and integers 0/1)
  const std::string* as_string() const;         // string, else nullptr
  const GgufArray* as_array() const;            // array, else nullptr
};

// A typed array: exactly one of the vectors is filled, chosen by elem_type.
struct GgufArray {
  GgufType elem_type = GgufType::U8;
  std::vector<std::int64_t> ints;       // U8..I64 except U64 above INT64_MAX (stored as bits), Bool as 0/1
  std::vector<double> floats;           // F32, F64
  std::vector<std::string> strings;     // String
  std::vector<GgufValue> arrays;        // nested Array
  std::size_t size() const;
};

// "u32", "array of string", ...: a value's type for messages.
std::string value_type_description(const GgufValue& value);

// Convenience constructors for metadata values.
namespace gguf_value {
GgufValue u8(std::uint8_t v);
GgufValue i8(std::int8_t v);
GgufValue u16(std::uint16_t v);
GgufValue i16(std::int16_t v);
GgufValue u32(std::uint32_t v);
GgufValue i32(std::int32_t v);
GgufValue u64(std::uint64_t v);
GgufValue i64(std::int64_t v);
GgufValue f32(float v);
GgufValue f64(double v);
GgufValue boolean(bool v);
GgufValue string(std::string v);
GgufValue array(GgufArray a);
}  // namespace gguf_value

class GgufMetadata {
 public:
  // `source` names the file (or folder) the values came from, in every error message.
  explicit GgufMetadata(std::string source = {});

  // Appends a key; throws kiln::Error if it is empty or already present.
  void add(std::string key, GgufValue value);

  const std::string& path() const { return source_; }
  // Key/values in order, and lookup by key.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return entries_; }
  const GgufValue* find(const std::string& key) const;
  // Typed getters: nullopt if absent; throw kiln::Error naming the key if present with the wrong type.
  std::optional<std::int64_t> get_int(const std::string& key) const;
  std::optional<double> get_float(const std::string& key) const;
  std::optional<bool> get_bool(const std::string& key) const;
  std::optional<std::string> get_string(const std::string& key) const;
  const GgufArray* get_array(const std::string& key) const;

 protected:
  std::string source_;
  std::vector<std::pair<std::string, GgufValue>> entries_;
  std::map<std::string, std::size_t> index_;
};

}  // namespace kiln
