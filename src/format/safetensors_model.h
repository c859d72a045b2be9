#pragma once
// The weights of a Hugging Face checkpoint in safetensors, as one lookup over all its tensors:
// a single `.safetensors` file, or a folder holding `model.safetensors` or a sharded checkpoint
// (`model.safetensors.index.json` naming `model-0000K-of-0000N.safetensors` files).
//
//   auto model = SafetensorsModel::open("Qwen2-0.5B/");
//   for (const SafetensorsModel::Tensor& t : model->tensors())
//     TensorView v = model->tensor_view(t);  // t.file->path() says where it lives
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "format/safetensors_file.h"

namespace kiln {

class SafetensorsModel {
 public:
  struct Tensor {
    const SafetensorsTensorInfo* info;  // name, dtype, shape, offset
    const SafetensorsFile* file;        // the file (shard) that holds it
  };

  // Opens `path`: a file is read as one safetensors file whatever its name; a folder is read
  // through `model.safetensors` when it holds one (as transformers prefers it), else through
  // `model.safetensors.index.json`. Every file is opened once and validated (SafetensorsFile::open).
  // Throws kiln::Error with one line naming the file on: a folder holding neither; an index that
  // is not JSON or whose `weight_map` is not an object of strings (`metadata` is optional, any
  // object); a shard name that is not a plain file name in the folder (empty, "." or "..", or
  // holding '/' or a NUL); a shard that is missing (naming the shard and the index); a tensor the
  // index maps to a shard that does not hold it; a tensor a shard holds that the index does not
  // map to it (missing from the index, or mapped to another shard), which also refuses a tensor
  // held by two shards.
  static std::unique_ptr<SafetensorsModel> open(const std::string& path);

  // What was opened, and the index file ("" for a single file).
  const std::string& path() const { return path_; }
  const std::string& index_path() const { return index_path_; }
  // metadata.total_size of the index, when it has one (transformers writes the tensors' bytes).
  std::optional<std::uint64_t> index_total_size() const { return index_total_size_; }

  // The files, sorted by name (model-00001-of-... first), each opened once.
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  // All tensors: files in the order above, each file's tensors in its order (by offset).
  const std::vector<Tensor>& tensors() const { return tensors_; }
  const Tensor* find_tensor(const std::string& name) const;
  // A view of the tensor in its file's mapping (the same checks as SafetensorsFile::tensor_view).
  TensorView tensor_view(const Tensor& t) const { return t.file->tensor_view(*t.info); }
  // The `__metadata__` of the first file (the shards of a save_pretrained checkpoint all carry
  // the same one, {"format": "pt"}); each file's own is in files().
  const std::map<std::string, std::string>& metadata() const { return files_.front()->metadata(); }

 private:
  SafetensorsModel() = default;
  void add_file(std::unique_ptr<SafetensorsFile> file);
  void open_index(const std::string& index_path, const std::string& dir);

  std::string path_;
  std::string index_path_;
  std::optional<std::uint64_t> index_total_size_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::vector<Tensor> tensors_;
  std::map<std::string, std::size_t, std::less<>> tensor_index_;
};

}  // namespace kiln
