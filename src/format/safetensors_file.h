#pragma once
// A Hugging Face safetensors file opened read-only: its header parsed and validated against the
// file on open; tensor data stays in the memory map.
// Format: u64 little-endian N, then N bytes of a UTF-8 JSON object (the header), then the data
// section. The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]},
// offsets relative to the data section's first byte, plus an optional "__metadata__" object of
// string values. Shapes are outermost-first (row-major, as PyTorch prints them).
//
//   auto file = SafetensorsFile::open("model.safetensors");
//   for (const SafetensorsTensorInfo& t : file->tensors())
//     if (t.dtype) use(file->tensor_view(t));  // F32, F16, BF16
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/mapped_file.h"
#include "core/tensor.h"

namespace kiln {

// The element types safetensors names: F64 F32 F16 BF16 F8_E4M3 F8_E5M2 F8_E8M0, I64 I32 I16 I8,
// U64 U32 U16 U8, BOOL, C64. Returns the bytes of one element, or nullopt for a name it does not
// know (the name is case-sensitive, as in the format).
std::optional<std::size_t> safetensors_dtype_size(std::string_view dtype_name);
// kiln's DType for a safetensors dtype name: F32, F16 and BF16; nullopt for every other name.
std::optional<DType> safetensors_dtype_to_kiln(std::string_view dtype_name);
// The safetensors name of a kiln DType ("F32", "F16", "BF16"); throws kiln::Error for others.
std::string_view kiln_dtype_to_safetensors(DType dtype);

// A safetensors shape (outermost first) from a kiln ne (innermost first): ne reversed, n_dims of
// them. A kiln TensorView of 1 dimension with ne[0] = n gives [n].
std::vector<std::int64_t> safetensors_shape(const std::array<std::int64_t, 4>& ne, int n_dims);

struct SafetensorsTensorInfo {
  std::string name;
  std::string dtype_name;           // as in the header: "BF16", "F8_E4M3", ...
  std::optional<DType> dtype;       // set for F32, F16, BF16 (the types a TensorView can carry)
  std::vector<std::int64_t> shape;  // outermost first, as in the header; empty for a scalar
  // The shape as kiln holds it (innermost first), when it has at most 4 dimensions: a scalar is
  // n_dims 1, ne {1, 1, 1, 1}. n_dims is 0 when the shape has more than 4 dimensions.
  int n_dims = 0;
  std::array<std::int64_t, 4> ne{1, 1, 1, 1};
  std::uint64_t n_elements = 0;
  std::uint64_t offset = 0;   // data_offsets[0], relative to the data section
  std::uint64_t n_bytes = 0;  // data_offsets[1] - data_offsets[0] = n_elements x element size
};

class SafetensorsFile {
 public:
  // The reference implementation's bound on the header (100 MB): a length above it is refused
  // before anything is read.
  static constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

  // Opens and validates `path`; throws kiln::Error with a one-line message naming the file and,
  // where there is one, the tensor and field: header length (at most kMaxHeaderBytes and the
  // file size - 8), JSON syntax and UTF-8, `__metadata__` (an object of strings, or null), each
  // entry's fields (exactly dtype, shape and data_offsets; no other field), known dtype names,
  // non-negative shapes whose element and byte counts do not overflow, end >= begin, byte size =
  // elements x element size, and offsets that, sorted, tile the data section exactly: no gap, no
  // overlap, nothing after the last tensor. Tensor names must be non-empty and unique
  // (a key twice in one JSON object is refused, as is nesting deeper than the format uses).
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);

  const std::string& path() const { return file_.path(); }
  std::uint64_t file_size() const { return file_.size(); }
  // Where the data section starts: 8 + the header length.
  std::uint64_t data_offset() const { return data_offset_; }

  // Tensors in the order of their data (by offset; empty tensors at one offset by name). For
  // files written by kiln or by the reference writer that is also the order of the header.
  const std::vector<SafetensorsTensorInfo>& tensors() const { return tensors_; }
  const SafetensorsTensorInfo* find_tensor(const std::string& name) const;
  // A view of a tensor's bytes in the mapping. Throws kiln::Error naming the file, tensor and
  // dtype when the dtype is not one kiln computes with (see SafetensorsTensorInfo::dtype), or the
  // shape has more than 4 dimensions. The data is where the file put it: aligned to the element
  // size when the writer aligned it (kiln's and the reference writer do), not otherwise.
  TensorView tensor_view(const SafetensorsTensorInfo& info) const;
  // The tensor's bytes in the mapping, for any dtype.
  const std::uint8_t* tensor_data(const SafetensorsTensorInfo& info) const;

  // `__metadata__`, empty when absent.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const MappedFile& mapped_file() const { return file_; }

 private:
  explicit SafetensorsFile(MappedFile file) : file_(std::move(file)) {}
  void parse();

  MappedFile file_;
  std::uint64_t data_offset_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<SafetensorsTensorInfo> tensors_;
  std::map<std::string, std::size_t, std::less<>> tensor_index_;
};

}  // namespace kiln
