#pragma once
// A model file of any format kiln reads, as one thing: GGUF-style metadata (format/gguf_metadata.h)
// and named tensors with their stored bytes, which stay in the files' memory maps for as long as
// the source lives. Every command that opens a model reads it through here: the model binds its
// weights (model/llama_weights.h), quantize and convert rewrite it (optimize/rewrite_pipeline.h),
// inspect lists it. The format is told by content, not by name:
//   GGUF (magic "GGUF")                 its metadata and tensors as stored
//   safetensors (a *.safetensors file,  its __metadata__ as string keys, tensors under their
//   a folder with model.safetensors     stored (Hugging Face) names, every shard of an index
//   or model.safetensors.index.json)
//   PyTorch (a torch.save zip, magic    tensors under their state dict names, read through the
//   "PK"; a *.index.json, a folder      restricted unpickler (format/pickle_reader.h): a pickle
//   with pytorch_model.bin[.index.json])that would import or call anything else never runs
//   llama2.c checkpoint (anything else  llama.* metadata from the header (llama2c_gguf_metadata)
//   that is not one of the others)      and its float32 weights under GGUF's llama tensor names
// Adapters of further formats build a source with the public constructor and add_tensor; they
// keep the opened files alive through keep_alive.
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "format/gguf_metadata.h"

namespace kiln {

class GgufFile;
class Llama2cFile;
struct Llama2cHeader;
class SafetensorsModel;
class PyTorchCheckpoint;

struct SourceTensor {
  std::string name;
  std::string type_name;       // the type as the format names it: ggml's ("q4_K"), safetensors' ("BF16")
  std::optional<DType> dtype;  // kiln's type, when kiln can read it
  int n_dims = 0;
  std::array<std::int64_t, 4> ne{1, 1, 1, 1};  // innermost first; ne[d] = 1 for d >= n_dims
  const std::uint8_t* data = nullptr;          // n_bytes stored bytes
  std::uint64_t n_bytes = 0;
  std::string file;  // the file holding it (one shard of a split checkpoint)

  std::int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

class TensorSource {
 public:
  // Opens `path` in the format its content says; throws kiln::Error naming the file and the
  // field on anything it cannot read.
  static std::unique_ptr<TensorSource> open(const std::string& path);
  static std::unique_ptr<TensorSource> from_gguf(std::unique_ptr<GgufFile> file);
  static std::unique_ptr<TensorSource> from_llama2c(std::unique_ptr<Llama2cFile> file);
  // Tensors under their stored names; __metadata__ as string keys.
  static std::unique_ptr<TensorSource> from_safetensors(std::unique_ptr<SafetensorsModel> model);
  // Tensors under their state dict names; no metadata (the pickle carries none kiln keeps).
  static std::unique_ptr<TensorSource> from_pytorch(std::unique_ptr<PyTorchCheckpoint> checkpoint);

  // An empty source of `format_name`; the metadata's source names the path.
  TensorSource(std::string format_name, GgufMetadata metadata);
  ~TensorSource();
  TensorSource(const TensorSource&) = delete;
  TensorSource& operator=(const TensorSource&) = delete;

  // Appends a tensor; throws kiln::Error on a duplicate name or a size that disagrees with its
  // kiln type and shape.
  void add_tensor(SourceTensor tensor);
  // Keeps `owner` (the opened files the tensors point into) alive with the source, and counts
  // its bytes in file_size().
  void keep_alive(std::shared_ptr<const void> owner, std::uint64_t file_bytes, bool copied);

  const std::string& path() const { return metadata_.path(); }
  const std::string& format_name() const { return format_name_; }
  // Bytes of every file the source read (all shards).
  std::uint64_t file_size() const { return file_bytes_; }
  // Whether the weights were read into private memory (LoadMode::copy) rather than mapped.
  bool weights_copied() const { return copied_; }

  const GgufMetadata& metadata() const { return metadata_; }
  const std::vector<SourceTensor>& tensors() const { return tensors_; }
  const SourceTensor* find_tensor(const std::string& name) const;
  // The tensor as kiln computes with it; throws kiln::Error naming it if kiln cannot read its type.
  TensorView view(const SourceTensor& tensor) const;
  // view(*find_tensor(name)), or nullopt if there is no tensor of that name.
  std::optional<TensorView> tensor(const std::string& name) const;

  // The GGUF file when the source is one (for code that needs its layout), else nullptr.
  const GgufFile* gguf() const { return gguf_; }

 private:
  std::string format_name_;
  GgufMetadata metadata_;
  std::vector<SourceTensor> tensors_;
  std::map<std::string, std::size_t> tensor_index_;
  std::vector<std::shared_ptr<const void>> owners_;
  std::uint64_t file_bytes_ = 0;
  bool copied_ = false;
  const GgufFile* gguf_ = nullptr;
};

// The GGUF metadata of a llama2.c checkpoint as a llama model: hyper-parameters under llama.*,
// rms epsilon 1e-5 and rope base 10000 (llama2.c's constants), and no vocabulary
// (tokenizer.ggml.model = "no_vocab" with llama.vocab_size), because the checkpoint holds none:
// llama.cpp then loads it with placeholder-free dummy tokens and is driven by ids, as kiln is.
std::vector<std::pair<std::string, GgufValue>> llama2c_gguf_metadata(const Llama2cHeader& header,
                                                                      const std::string& name);

// Whether the file at `path` starts with `magic` (false when it is shorter); throws kiln::Error
// if it cannot be opened.
bool file_starts_with(const std::string& path, std::string_view magic);

}  // namespace kiln
