#include "model/llama_config.h"

#include "core/error.h"
#include "format/gguf_file.h"
#include "model/architecture.h"
#include "format/tensor_source.h"

namespace kiln {
namespace {

int require_positive(const GgufMetadata& f, const std::string& key) {
  std::optional<std::int64_t> v = f.get_int(key);
  if (!v) fail("{}: missing metadata key {}", f.path(), key);
  if (*v <= 0 || *v > (1 << 24)) fail("{}: metadata {} = {} is out of range (expected 1..16777216)", f.path(), key, *v);
  return static_cast<int>(*v);
}

}  // namespace

LlamaConfig llama_config_from_metadata(const GgufMetadata& f, const TensorShapeFn& tensor_shape) {
  LlamaConfig c;
  std::optional<std::string> arch = f.get_string("general.architecture");
  if (!arch) fail("{}: missing metadata key general.architecture", f.path());
  c.arch = *arch;
  const Architecture* family = find_architecture(c.arch);
  if (family == nullptr)
    fail("{}: architecture '{}' is not supported (expected {})", f.path(), c.arch, supported_architectures());
  c.name = f.get_string("general.name").value_or("");
  const std::string p = c.arch + ".";
  c.n_embd = require_positive(f, p + "embedding_length");
  c.n_layer = require_positive(f, p + "block_count");
  c.n_head = require_positive(f, p + "attention.head_count");
  c.n_head_kv = f.find(p + "attention.head_count_kv") ? require_positive(f, p + "attention.head_count_kv") : c.n_head;
  c.n_ff = require_positive(f, p + "feed_forward_length");
  c.n_ctx_train = f.find(p + "context_length") ? require_positive(f, p + "context_length") : 2048;
  if (c.n_head % c.n_head_kv != 0)
    fail("{}: {}attention.head_count {} is not a multiple of head_count_kv {}", f.path(), p, c.n_head, c.n_head_kv);
  c.head_dim = f.find(p + "attention.key_length") ? require_positive(f, p + "attention.key_length")
                                                  : c.n_embd / c.n_head;
  if (!f.find(p + "attention.key_length") && c.n_embd % c.n_head != 0)
    fail("{}: {}embedding_length {} is not a multiple of head_count {}", f.path(), p, c.n_embd, c.n_head);
  c.n_rot = f.find(p + "rope.dimension_count") ? require_positive(f, p + "rope.dimension_count") : c.head_dim;
  if (c.n_rot > c.head_dim || c.n_rot % 2 != 0)
    fail("{}: {}rope.dimension_count {} must be even and at most the head size {}", f.path(), p, c.n_rot, c.head_dim);
  if (auto eps = f.get_float(p + "attention.layer_norm_rms_epsilon")) c.rms_eps = static_cast<float>(*eps);
  if (!(c.rms_eps > 0 && c.rms_eps < 1)) fail("{}: {}attention.layer_norm_rms_epsilon {} out of range", f.path(), p, c.rms_eps);
  if (auto theta = f.get_float(p + "rope.freq_base")) c.rope_theta = static_cast<float>(*theta);
  if (!(c.rope_theta > 0)) fail("{}: {}rope.freq_base must be positive", f.path(), p);
  std::string scaling = f.get_string(p + "rope.scaling.type").value_or("none");
  if (scaling == "linear") {
    double factor = f.get_float(p + "rope.scaling.factor").value_or(1.0);
    if (!(factor > 0)) fail("{}: {}rope.scaling.factor must be positive", f.path(), p);
    c.rope_scale = static_cast<float>(factor);
    c.rope_scaling = RopeScaling::Linear;
  } else if (scaling == "yarn") {
    // YaRN, as llama.cpp computes it (ggml's rope_yarn): see LlamaConfig.
    double factor = f.get_float(p + "rope.scaling.factor").value_or(1.0);
    if (!(factor > 0 && factor < 1e6)) fail("{}: {}rope.scaling.factor must be positive", f.path(), p);
    c.rope_scale = static_cast<float>(factor);
    c.rope_scaling = RopeScaling::Yarn;
    if (auto b = f.get_float(p + "rope.scaling.yarn_beta_fast")) c.yarn_beta_fast = static_cast<float>(*b);
    if (auto b = f.get_float(p + "rope.scaling.yarn_beta_slow")) c.yarn_beta_slow = static_cast<float>(*b);
    if (!(c.yarn_beta_fast > 0 && c.yarn_beta_slow > 0))
      fail("{}: {}rope.scaling.yarn_beta_fast and yarn_beta_slow must be positive", f.path(), p);
  } else if (scaling == "longrope") {
    // phi3's factors are tensors (rope_factors_long/short.weight); the type only names them.
    c.rope_scaling = RopeScaling::LongRope;
  } else if (scaling != "none") {
    fail("{}: {}rope.scaling.type '{}' is not supported (expected none, linear, yarn or longrope)", f.path(), p,
         scaling);
  } else if (auto factor = f.get_float(p + "rope.scale_linear")) {
    c.rope_scale = static_cast<float>(*factor);
  }
  c.rope_orig_ctx = f.find(p + "rope.scaling.original_context_length")
                        ? require_positive(f, p + "rope.scaling.original_context_length")
                        : c.n_ctx_train;
  if (auto factor = f.get_float(p + "rope.scaling.attn_factor")) {
    if (!(*factor > 0 && *factor < 1e3)) fail("{}: {}rope.scaling.attn_factor {} is out of range", f.path(), p, *factor);
    c.rope_attn_factor = static_cast<float>(*factor);
  }
  family->configure(f, c);
  // A family whose files fuse q, k and v (phi3) also reads a file with them apart, as llama.cpp
  // does.
  if (c.fused_qkv && !tensor_shape("blk.0.attn_qkv.weight") && tensor_shape("blk.0.attn_q.weight")) c.fused_qkv = false;
  if (const GgufArray* tokens = f.get_array("tokenizer.ggml.tokens")) c.n_vocab = static_cast<int>(tokens->size());
  if (auto v = f.get_int(p + "vocab_size")) c.n_vocab = static_cast<int>(*v);
  c.tied_output = !tensor_shape("output.weight");
  if (const std::optional<std::array<std::int64_t, 4>> emb = tensor_shape("token_embd.weight")) {
    if (c.n_vocab == 0) c.n_vocab = static_cast<int>((*emb)[1]);
    if ((*emb)[1] != c.n_vocab)
      fail("{}: token_embd.weight has {} rows but the vocabulary has {} tokens", f.path(), (*emb)[1], c.n_vocab);
  }
  if (c.n_vocab <= 0) fail("{}: cannot tell the vocabulary size (no tokenizer.ggml.tokens, no token_embd.weight)", f.path());
  return c;
}

LlamaConfig llama_config_from_gguf(const GgufFile& f) {
  return llama_config_from_metadata(f, [&](const std::string& name) -> std::optional<std::array<std::int64_t, 4>> {
    const GgufTensorInfo* t = f.find_tensor(name);
    if (t == nullptr) return std::nullopt;
    return t->ne;
  });
}

LlamaConfig llama_config_from_source(const TensorSource& src) {
  return llama_config_from_metadata(src.metadata(),
                                    [&](const std::string& name) -> std::optional<std::array<std::int64_t, 4>> {
                                      const SourceTensor* t = src.find_tensor(name);
                                      if (t == nullptr) return std::nullopt;
                                      return t->ne;
                                    });
}

}  // namespace kiln
