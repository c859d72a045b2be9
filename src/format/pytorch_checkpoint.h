#pragma once
// A PyTorch checkpoint (torch.save of a state dict: pytorch_model.bin, *.pt) read without
// Python: the zip archive torch >= 1.6 writes, its data.pkl read by kiln's restricted unpickler
// (format/pickle_reader.h: nothing in the pickle is ever run), and each tensor a view of its
// storage's bytes in the memory map. Sharded checkpoints open through their index
// (pytorch_model.bin.index.json: {"weight_map": {tensor name: shard file name}}).
//
// Archive layout (torch.save, zip format): every entry under one folder `<archive>/` whose name
// varies: `<archive>/data.pkl` (the pickled state dict), `<archive>/data/<key>` (one stored
// entry per storage, raw little-endian elements), `<archive>/version`, and in newer torch
// `<archive>/byteorder` ("little"; "big" is refused).
//
// What open() checks: the zip (format/zip_archive.h) and the pickle's CRC-32; the pickle is a
// flat dict (or OrderedDict) of str -> tensor; each tensor's storage entry exists and holds
// exactly numel elements of its storage type; sizes, strides and the storage offset are
// non-negative, the element count fits 64 bits, and the elements they reach lie inside the
// storage. Several tensors may share
// one storage (views, tied weights). The legacy format of torch < 1.6 (a bare pickle stream)
// is refused with a message saying to re-save the file with a newer torch.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/mapped_file.h"
#include "core/tensor.h"
#include "format/zip_archive.h"

namespace kiln {

struct PyTorchTensorInfo {
  std::string name;
  std::string dtype_name;      // as torch names it: "float32", "bfloat16", "int64", "bool", ...
  std::optional<DType> dtype;  // F32, F16 or BF16, the types tensor_view() gives; empty otherwise
  std::size_t element_bytes = 0;
  std::vector<std::int64_t> size;         // torch's order, outermost first
  std::vector<std::int64_t> stride;       // in elements, torch's order
  std::int64_t storage_offset = 0;        // in elements
  std::int64_t n_elements = 0;            // the product of size (1 for a 0-d tensor)
  std::string storage_key;                // the storage is <archive>/data/<key> in its shard
  bool contiguous = false;                // row-major: the strides of a dense tensor of this size
  std::size_t shard = 0;                  // index into shard_paths()
  std::span<const std::uint8_t> storage;  // the whole storage's bytes, inside the shard's mapping
};

class PyTorchCheckpoint {
 public:
  // Opens a torch.save zip (`path` any other name), or a sharded checkpoint when `path` ends in
  // ".index.json": every shard its weight_map names (plain file names beside the index) is
  // opened, each must hold exactly the tensors the map assigns to it. Throws kiln::Error with a
  // one-line message naming the file and what is wrong.
  static std::unique_ptr<PyTorchCheckpoint> open(const std::string& path);

  const std::string& path() const { return path_; }
  // The checkpoint file, or the shards of an index in the order their tensors are listed.
  const std::vector<std::string>& shard_paths() const { return shard_paths_; }
  // Tensors in file order (shard by shard, pickle order within a shard).
  const std::vector<PyTorchTensorInfo>& tensors() const { return tensors_; }
  const PyTorchTensorInfo* find_tensor(const std::string& name) const;

  // The bytes of a contiguous tensor of any type (n_elements * element_bytes). Throws
  // kiln::Error naming the tensor if it is not contiguous.
  std::span<const std::uint8_t> tensor_bytes(const PyTorchTensorInfo& info) const;
  // Copies any tensor, strided or not (a transposed view, a broadcast), into `out` in row-major
  // order: out must hold exactly n_elements * element_bytes bytes, else kiln::Error.
  void copy_row_major(const PyTorchTensorInfo& info, std::span<std::uint8_t> out) const;
  // A zero-copy view: ne is torch's size reversed (innermost first). Throws kiln::Error naming
  // the tensor unless it is F32, F16 or BF16, contiguous, of at most 4 dimensions, and its
  // first element is aligned to its size (torch aligns storages to 64 bytes).
  TensorView tensor_view(const PyTorchTensorInfo& info) const;

 private:
  struct Shard {
    explicit Shard(const std::string& path);
    MappedFile file;
    ZipArchive zip;
  };
  PyTorchCheckpoint() = default;
  void read_shard(std::size_t shard);

  std::string path_;
  std::vector<std::string> shard_paths_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<PyTorchTensorInfo> tensors_;
  std::unordered_map<std::string, std::size_t> tensor_index_;
};

}  // namespace kiln
