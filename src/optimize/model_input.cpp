#include "optimize/model_input.h"

#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "format/gguf_writer.h"
#include "format/llama2c_file.h"

namespace kiln::optimize {
namespace {

bool has_gguf_magic(const std::string& path) {
  std::FILE* fp = std::fopen(path.c_str(), "rb");
  if (fp == nullptr) fail("{}: cannot open: {}", path, std::strerror(errno));
  char magic[4] = {};
  const bool gguf = std::fread(magic, 1, 4, fp) == 4 && std::memcmp(magic, "GGUF", 4) == 0;
  std::fclose(fp);
  return gguf;
}

// An integer hyper-parameter; per-layer arrays (some architectures) give their first entry.
int shape_int(const GgufFile& f, const std::string& key, int fallback) {
  const GgufValue* v = f.find(key);
  if (v == nullptr) return fallback;
  if (const GgufArray* a = v->as_array(); a != nullptr && !a->ints.empty()) return static_cast<int>(a->ints[0]);
  const std::optional<std::int64_t> i = f.get_int(key);
  if (!i || *i < 0 || *i > (1 << 24)) fail("{}: metadata {} = {} is out of range", f.path(), key, i.value_or(-1));
  return static_cast<int>(*i);
}

}  // namespace

ModelInput::~ModelInput() = default;

std::unique_ptr<ModelInput> ModelInput::open(const std::string& path) {
  std::unique_ptr<ModelInput> in(new ModelInput());
  in->path_ = path;
  if (has_gguf_magic(path)) {
    in->gguf_ = GgufFile::open(path);
    const GgufFile& f = *in->gguf_;
    in->metadata_ = f.metadata();
    const std::optional<std::string> arch = f.get_string("general.architecture");
    if (!arch) fail("{}: missing metadata key general.architecture", path);
    in->shape_.arch = *arch;
    in->shape_.n_layer = shape_int(f, *arch + ".block_count", 0);
    if (in->shape_.n_layer == 0) fail("{}: missing metadata key {}.block_count", path, *arch);
    in->shape_.n_head = shape_int(f, *arch + ".attention.head_count", 0);
    in->shape_.n_head_kv = shape_int(f, *arch + ".attention.head_count_kv", in->shape_.n_head);
    for (const GgufTensorInfo& t : f.tensors()) {
      if (!t.dtype)
        fail("{}: tensor '{}' has type {} (ggml id {}), which kiln cannot read", path, t.name,
             dtype_name_for_id(t.ggml_type), t.ggml_type);
      InputTensor it;
      it.desc = {t.name, *t.dtype, t.n_dims, t.ne};
      it.data = f.mapped_file().data() + f.data_offset() + t.offset;
      it.n_bytes = t.n_bytes;
      in->tensors_.push_back(std::move(it));
    }
  } else {
    in->llama2c_ = Llama2cFile::open(path);
    const Llama2cHeader& h = in->llama2c_->header();
    std::string name = path.substr(path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1);
    if (const std::size_t dot = name.rfind('.'); dot != std::string::npos && dot > 0) name.resize(dot);
    in->metadata_ = llama2c_gguf_metadata(h, name);
    in->shape_ = {"llama", h.n_layers, h.n_heads, h.n_kv_heads};
    for (const TensorView& v : in->llama2c_->tensors()) {
      InputTensor it;
      it.desc = {v.name, v.dtype, v.n_dims, v.ne};
      it.data = static_cast<const std::uint8_t*>(v.data);
      it.n_bytes = v.n_bytes();
      in->tensors_.push_back(std::move(it));
    }
  }
  return in;
}

std::string ModelInput::format_name() const {
  return gguf_ ? "GGUF v" + std::to_string(gguf_->version()) : "llama2.c";
}

std::uint64_t ModelInput::file_size() const {
  return gguf_ ? gguf_->file_size() : llama2c_->mapped_file().size();
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

}  // namespace kiln::optimize
