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
#include "format/gguf_metadata.h"

namespace kiln {

struct GgufTensorInfo {
  std::string name;
  std::uint32_t ggml_type = 0;  // raw id; dtype is set only when kiln knows the type
  std::optional<DType> dtype;
  int n_dims = 0;
  std::array<std::int64_t, 4> ne{1, 1, 1, 1};
  std::uint64_t offset = 0;  // relative to the data section
  std::uint64_t n_bytes = 0;
};

class GgufFile : public GgufMetadata {
 public:
  // Opens and validates `path`; throws kiln::Error with a one-line message naming the file and
  // the field on any inconsistency (bad magic, version, counts, types, sizes, offsets, overlap).
  static std::unique_ptr<GgufFile> open(const std::string& path);

  std::uint32_t version() const { return version_; }
  std::uint64_t alignment() const { return alignment_; }
  std::uint64_t data_offset() const { return data_offset_; }
  std::uint64_t file_size() const { return file_.size(); }

  // Metadata: GgufMetadata's metadata(), find() and typed getters.

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;
  // A view of a tensor's bytes in the mapping. Throws if kiln does not know its type.
  TensorView tensor_view(const GgufTensorInfo& info) const;
  const MappedFile& mapped_file() const { return file_; }

 private:
  explicit GgufFile(MappedFile file) : GgufMetadata(file.path()), file_(std::move(file)) {}
  void parse();

  MappedFile file_;
  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = 32;
  std::uint64_t data_offset_ = 0;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, std::size_t> tensor_index_;
};

}  // namespace kiln
