#include "format/tensor_source.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "format/gguf_file.h"
#include "format/llama2c_file.h"
#include "format/pytorch_checkpoint.h"
#include "format/quoted_name.h"
#include "format/safetensors_model.h"

namespace kiln {

TensorSource::TensorSource(std::string format_name, GgufMetadata metadata)
    : format_name_(std::move(format_name)), metadata_(std::move(metadata)) {}

TensorSource::~TensorSource() = default;

void TensorSource::add_tensor(SourceTensor t) {
  if (tensor_index_.count(t.name)) fail("{}: tensor {} appears twice", path(), quoted_name(t.name));
  if (t.dtype) {
    if (t.ne[0] % traits(*t.dtype).block_size != 0)
      fail("{}: tensor {} has {} columns, not a multiple of {}'s block of {}", path(), quoted_name(t.name), t.ne[0],
           dtype_name(*t.dtype), traits(*t.dtype).block_size);
    const std::uint64_t want = row_bytes(*t.dtype, t.ne[0]) * static_cast<std::uint64_t>(t.ne[1] * t.ne[2] * t.ne[3]);
    if (want != t.n_bytes)
      fail("{}: tensor {} holds {} bytes, but {} of its shape takes {}", path(), quoted_name(t.name), t.n_bytes,
           dtype_name(*t.dtype), want);
  }
  tensor_index_.emplace(t.name, tensors_.size());
  tensors_.push_back(std::move(t));
}

void TensorSource::keep_alive(std::shared_ptr<const void> owner, std::uint64_t file_bytes, bool copied) {
  owners_.push_back(std::move(owner));
  file_bytes_ += file_bytes;
  copied_ = copied_ || copied;
}

const SourceTensor* TensorSource::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

TensorView TensorSource::view(const SourceTensor& t) const {
  if (!t.dtype)
    fail("{}: tensor {} has type {}, which kiln cannot read", t.file.empty() ? path() : t.file, quoted_name(t.name),
         t.type_name);
  return TensorView::contiguous(t.name, *t.dtype, t.ne, t.n_dims, t.data);
}

std::optional<TensorView> TensorSource::tensor(const std::string& name) const {
  const SourceTensor* t = find_tensor(name);
  if (t == nullptr) return std::nullopt;
  return view(*t);
}

std::unique_ptr<TensorSource> TensorSource::from_gguf(std::unique_ptr<GgufFile> file) {
  const GgufFile& f = *file;
  GgufMetadata metadata(f.path());
  for (const auto& [key, value] : f.metadata()) metadata.add(key, value);
  auto src = std::make_unique<TensorSource>("GGUF v" + std::to_string(f.version()), std::move(metadata));
  for (const GgufTensorInfo& info : f.tensors()) {
    SourceTensor t;
    t.name = info.name;
    t.type_name = dtype_name_for_id(info.ggml_type);
    t.dtype = info.dtype;
    t.n_dims = info.n_dims;
    t.ne = info.ne;
    t.data = f.mapped_file().data() + f.data_offset() + info.offset;
    t.n_bytes = info.n_bytes;
    t.file = f.path();
    src->add_tensor(std::move(t));
  }
  src->gguf_ = file.get();
  src->keep_alive(std::shared_ptr<const GgufFile>(std::move(file)), f.file_size(), f.mapped_file().copied());
  return src;
}

std::unique_ptr<TensorSource> TensorSource::from_llama2c(std::unique_ptr<Llama2cFile> file) {
  const Llama2cFile& f = *file;
  std::string name = f.path().substr(f.path().rfind('/') == std::string::npos ? 0 : f.path().rfind('/') + 1);
  if (const std::size_t dot = name.rfind('.'); dot != std::string::npos && dot > 0) name.resize(dot);
  GgufMetadata metadata(f.path());
  for (auto& [key, value] : llama2c_gguf_metadata(f.header(), name)) metadata.add(key, std::move(value));
  auto src = std::make_unique<TensorSource>("llama2.c v" + std::to_string(f.header().version), std::move(metadata));
  for (const TensorView& v : f.tensors()) {
    SourceTensor t;
    t.name = v.name;
    t.type_name = dtype_name(v.dtype);
    t.dtype = v.dtype;
    t.n_dims = v.n_dims;
    t.ne = v.ne;
    t.data = static_cast<const std::uint8_t*>(v.data);
    t.n_bytes = v.n_bytes();
    t.file = f.path();
    src->add_tensor(std::move(t));
  }
  src->keep_alive(std::shared_ptr<const Llama2cFile>(std::move(file)), f.mapped_file().size(),
                  f.mapped_file().copied());
  return src;
}

std::unique_ptr<TensorSource> TensorSource::from_safetensors(std::unique_ptr<SafetensorsModel> model) {
  const SafetensorsModel& m = *model;
  GgufMetadata metadata(m.path());
  for (const auto& [key, value] : m.metadata()) metadata.add(key, gguf_value::string(value));
  const std::string format = m.index_path().empty() ? "safetensors"
                                                    : fmt::format("safetensors, {} shards", m.files().size());
  auto src = std::make_unique<TensorSource>(format, std::move(metadata));
  std::uint64_t bytes = 0;
  bool copied = false;
  for (const auto& f : m.files()) {
    bytes += f->file_size();
    copied = copied || f->mapped_file().copied();
  }
  for (const SafetensorsModel::Tensor& st : m.tensors()) {
    const SafetensorsTensorInfo& info = *st.info;
    if (info.n_dims == 0)
      fail("{}: tensor {} has {} dimensions (kiln's tensors have at most 4)", st.file->path(), quoted_name(info.name),
           info.shape.size());
    SourceTensor t;
    t.name = info.name;
    t.type_name = info.dtype_name;
    t.dtype = info.dtype;
    t.n_dims = info.n_dims;
    t.ne = info.ne;
    t.data = st.file->tensor_data(info);
    t.n_bytes = info.n_bytes;
    t.file = st.file->path();
    src->add_tensor(std::move(t));
  }
  src->keep_alive(std::shared_ptr<const SafetensorsModel>(std::move(model)), bytes, copied);
  return src;
}

std::unique_ptr<TensorSource> TensorSource::from_pytorch(std::unique_ptr<PyTorchCheckpoint> checkpoint) {
  const PyTorchCheckpoint& c = *checkpoint;
  const std::string format = c.shard_paths().size() > 1 ? fmt::format("PyTorch, {} shards", c.shard_paths().size())
                                                        : std::string("PyTorch");
  auto src = std::make_unique<TensorSource>(format, GgufMetadata(c.path()));
  // Tensors that are not row-major in their storage (a transposed view saved as it was) are
  // copied once into memory of the source's own; everything else is viewed in the mapping.
  auto copies = std::make_shared<std::vector<std::vector<std::uint8_t>>>();
  for (const PyTorchTensorInfo& info : c.tensors()) {
    if (info.size.size() > 4)
      fail("{}: tensor {} has {} dimensions (kiln's tensors have at most 4)", c.shard_paths()[info.shard],
           quoted_name(info.name), info.size.size());
    SourceTensor t;
    t.name = info.name;
    t.type_name = info.dtype_name;
    t.dtype = info.dtype;
    t.n_dims = std::max<int>(1, static_cast<int>(info.size.size()));
    for (std::size_t d = 0; d < info.size.size(); ++d) t.ne[d] = info.size[info.size.size() - 1 - d];
    t.n_bytes = static_cast<std::uint64_t>(info.n_elements) * info.element_bytes;
    if (info.contiguous) {
      t.data = c.tensor_bytes(info).data();
    } else {
      copies->emplace_back(t.n_bytes);
      c.copy_row_major(info, copies->back());
      t.data = copies->back().data();
    }
    t.file = c.shard_paths()[info.shard];
    src->add_tensor(std::move(t));
  }
  std::uint64_t bytes = 0;
  for (const std::string& shard : c.shard_paths()) bytes += std::filesystem::file_size(shard);
  src->keep_alive(copies, 0, false);
  src->keep_alive(std::shared_ptr<const PyTorchCheckpoint>(std::move(checkpoint)), bytes, false);
  return src;
}

bool file_starts_with(const std::string& path, std::string_view magic) {
  std::FILE* fp = std::fopen(path.c_str(), "rb");
  if (fp == nullptr) fail("{}: cannot open: {}", path, std::strerror(errno));
  std::string head(magic.size(), '\0');
  const std::size_t n = std::fread(head.data(), 1, head.size(), fp);
  std::fclose(fp);
  return n == magic.size() && head == magic;
}

std::unique_ptr<TensorSource> TensorSource::open(const std::string& path) {
  // A folder is a Hugging Face checkpoint; a GGUF starts with "GGUF"; safetensors have no magic
  // but their name; anything else is tried as a llama2.c checkpoint, whose reader validates the
  // header and the exact file size.
  namespace fs = std::filesystem;
  if (fs::is_directory(path)) {
    if (fs::exists(path + "/model.safetensors") || fs::exists(path + "/model.safetensors.index.json"))
      return from_safetensors(SafetensorsModel::open(path));
    if (fs::exists(path + "/pytorch_model.bin")) return from_pytorch(PyTorchCheckpoint::open(path + "/pytorch_model.bin"));
    if (fs::exists(path + "/pytorch_model.bin.index.json"))
      return from_pytorch(PyTorchCheckpoint::open(path + "/pytorch_model.bin.index.json"));
    fail("{}: a folder without model.safetensors, model.safetensors.index.json, pytorch_model.bin or "
         "pytorch_model.bin.index.json", path);
  }
  if (file_starts_with(path, "GGUF")) return from_gguf(GgufFile::open(path));
  if (path.ends_with(".safetensors")) return from_safetensors(SafetensorsModel::open(path));
  if (file_starts_with(path, "PK") || path.ends_with(".index.json")) return from_pytorch(PyTorchCheckpoint::open(path));
  return from_llama2c(Llama2cFile::open(path));
}

std::vector<std::pair<std::string, GgufValue>> llama2c_gguf_metadata(const Llama2cHeader& h, const std::string& name) {
  using namespace gguf_value;
  const auto u = [](std::int32_t v) { return u32(static_cast<std::uint32_t>(v)); };
  return {
      {"general.architecture", string("llama")},
      {"general.name", string(name)},
      {"llama.context_length", u(h.seq_len)},
      {"llama.embedding_length", u(h.dim)},
      {"llama.block_count", u(h.n_layers)},
      {"llama.feed_forward_length", u(h.hidden_dim)},
      {"llama.rope.dimension_count", u(h.dim / h.n_heads)},
      {"llama.attention.head_count", u(h.n_heads)},
      {"llama.attention.head_count_kv", u(h.n_kv_heads)},
      {"llama.attention.layer_norm_rms_epsilon", f32(1e-5f)},
      {"llama.rope.freq_base", f32(10000.0f)},
      {"llama.vocab_size", u(h.vocab_size)},
      {"tokenizer.ggml.model", string("no_vocab")},
  };
}

}  // namespace kiln
