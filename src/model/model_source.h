#pragma once
// An opened model file of any format kiln reads (GGUF, llama2.c .bin), chosen by its magic.
// Gives the model's hyper-parameters and views of its tensors by GGUF name; the file stays
// memory-mapped for as long as this object lives.
#include <memory>
#include <optional>
#include <string>

#include "core/tensor.h"
#include "model/llama_config.h"

namespace kiln {

class GgufFile;
class Llama2cFile;

class ModelSource {
 public:
  static std::unique_ptr<ModelSource> open(const std::string& path);
  ~ModelSource();

  const std::string& path() const { return path_; }
  const LlamaConfig& config() const { return config_; }
  // The tensor's view, or nullopt if the file has no tensor of that name.
  std::optional<TensorView> tensor(const std::string& name) const;
  // The GGUF file when the model is one (for its tokenizer metadata), else nullptr.
  const GgufFile* gguf() const { return gguf_.get(); }
  std::size_t file_size() const;
  std::string format_name() const;
  // Whether the weights were read into private memory (LoadMode::copy) rather than mapped.
  bool weights_copied() const;

 private:
  ModelSource() = default;
  std::string path_;
  LlamaConfig config_;
  std::unique_ptr<GgufFile> gguf_;
  std::unique_ptr<Llama2cFile> llama2c_;
};

}  // namespace kiln
