#pragma once
// A GGUF (v2, v3) file opened read-only: its metadata key/values and tensor infos, parsed and
// validated against the file on open; tensor data stays in the memory map.
// Format: magic "GGUF", u32 version, u64 n_tensors, u64 n_kv, then n_kv (key, type, value),
// then n_tensors (name, n_dims, ne[n_dims], type, offset), padding to `general.alignment`
// (default 32), then the data section; tensor offsets are relative to its start.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/mapped_file.h"
#include "core/tensor.h"

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

struct GgufTensorInfo {
  std::string name;
  std::uint32_t ggml_type = 0;  // raw id; dtype is set only when kiln knows the type
  std::optional<DType> dtype;
  int n_dims = 0;
  std::array<std::int64_t, 4> ne{1, 1, 1, 1};
  std::uint64_t offset = 0;  // relative to the data section
  std::uint64_t n_bytes = 0;
};

class GgufFile {
 public:
  // Opens and validates `path`; throws kiln::Error with a one-line message naming the file and
  // the field on any inconsistency (bad magic, version, counts, types, sizes, offsets, overlap).
  static std::unique_ptr<GgufFile> open(const std::string& path);

  const std::string& path() const { return file_.path(); }
  std::uint32_t version() const { return version_; }
  std::uint64_t alignment() const { return alignment_; }
  std::uint64_t data_offset() const { return data_offset_; }
  std::uint64_t file_size() const { return file_.size(); }

  // Metadata in file order, and lookup by key.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* find(const std::string& key) const;
  // Typed getters: nullopt if absent; throw kiln::Error naming the key if present with the wrong type.
  std::optional<std::int64_t> get_int(const std::string& key) const;
  std::optional<double> get_float(const std::string& key) const;
  std::optional<bool> get_bool(const std::string& key) const;
  std::optional<std::string> get_string(const std::string& key) const;
  const GgufArray* get_array(const std::string& key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;
  // A view of a tensor's bytes in the mapping. Throws if kiln does not know its type.
  TensorView tensor_view(const GgufTensorInfo& info) const;
  const MappedFile& mapped_file() const { return file_; }

 private:
  explicit GgufFile(MappedFile file) : file_(std::move(file)) {}
  void parse();

  MappedFile file_;
  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = 32;
  std::uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::map<std::string, std::size_t> metadata_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, std::size_t> tensor_index_;
};

}  // namespace kiln
