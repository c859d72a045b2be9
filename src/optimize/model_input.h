#pragma once
// A model file opened for rewriting (quantize, convert): the metadata to carry into the new GGUF,
// its tensors with their stored bytes, and the shape the quantization rules need. GGUF files
// carry their own metadata; a llama2.c checkpoint gets the metadata llama.cpp needs to load it as
// a llama model (llama2c_gguf_metadata). Tensors stay in the input's memory map.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "format/gguf_file.h"
#include "optimize/quant_plan.h"

namespace kiln {
class Llama2cFile;
struct Llama2cHeader;
}  // namespace kiln

namespace kiln::optimize {

struct InputTensor {
  TensorDesc desc;
  const std::uint8_t* data = nullptr;  // n_bytes stored bytes in the mapping
  std::uint64_t n_bytes = 0;
};

class ModelInput {
 public:
  // Opens a GGUF (by its magic) or a llama2.c checkpoint; throws kiln::Error naming the file and
  // the field on anything it cannot use (including tensors of a type kiln cannot read).
  static std::unique_ptr<ModelInput> open(const std::string& path);
  ~ModelInput();

  const std::string& path() const { return path_; }
  std::string format_name() const;
  std::uint64_t file_size() const;
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const std::vector<InputTensor>& tensors() const { return tensors_; }
  const ModelShape& shape() const { return shape_; }

 private:
  ModelInput() = default;
  std::string path_;
  std::unique_ptr<GgufFile> gguf_;
  std::unique_ptr<Llama2cFile> llama2c_;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<InputTensor> tensors_;
  ModelShape shape_;
};

// The GGUF metadata of a llama2.c checkpoint as a llama model: hyper-parameters under llama.*,
// rms epsilon 1e-5 and rope base 10000 (llama2.c's constants), and no vocabulary
// (tokenizer.ggml.model = "no_vocab" with llama.vocab_size), because the checkpoint holds none:
// llama.cpp then loads it with placeholder-free dummy tokens and is driven by ids, as kiln is.
std::vector<std::pair<std::string, GgufValue>> llama2c_gguf_metadata(const Llama2cHeader& header,
                                                                      const std::string& name);

}  // namespace kiln::optimize
