#include "model/architecture.h"

#include "core/error.h"
#include "format/gguf_file.h"
#include "format/gguf_writer.h"

namespace kiln {

// The families, one file each (model/arch_*.cpp).
extern const Architecture kLlamaArchitecture;
extern const Architecture kMistralArchitecture;
extern const Architecture kQwen2Architecture;
extern const Architecture kQwen3Architecture;
extern const Architecture kPhi3Architecture;
// gemma (model/arch_gemma.cpp)
extern const Architecture kGemma2Architecture;
extern const Architecture kGemma3Architecture;
extern const Architecture kQwen3MoeArchitecture;

namespace {

const Architecture* const kArchitectures[] = {
    &kLlamaArchitecture,
    &kMistralArchitecture,
    &kQwen2Architecture,
    &kQwen3Architecture,
    &kPhi3Architecture,
    // gemma
    &kGemma2Architecture,
    &kGemma3Architecture,
    &kQwen3MoeArchitecture,
};

}  // namespace

std::span<const Architecture* const> architectures() { return kArchitectures; }

const Architecture* find_architecture(std::string_view name) {
  for (const Architecture* a : kArchitectures)
    if (name == a->name) return a;
  return nullptr;
}

std::string supported_architectures() {
  std::string s;
  for (const Architecture* a : kArchitectures) s += (s.empty() ? "" : ", ") + std::string(a->name);
  return s;
}

std::vector<LayerTensor> llama_layer_tensors(const LlamaConfig& c, int layer) {
  const std::string p = "blk." + std::to_string(layer) + ".";
  const std::int64_t E = c.n_embd, F = c.n_ff, QD = c.q_dim(), KVD = c.kv_dim();
  auto matrix = [&](const char* name, std::int64_t in, std::int64_t out, TensorView LlamaLayerWeights::*slot) {
    LayerTensor t;
    t.name = p + name;
    t.n_dims = 2;
    t.ne = {in, out, 1, 1};
    t.matrix = slot;
    return t;
  };
  auto vector = [&](const char* name, std::int64_t n, FloatVector LlamaLayerWeights::*slot, float mean) {
    return layer_vector(layer, name, n, slot, mean);
  };
  return {
      vector("attn_norm.weight", E, &LlamaLayerWeights::attn_norm, 1.0f),
      matrix("attn_q.weight", E, QD, &LlamaLayerWeights::wq),
      matrix("attn_k.weight", E, KVD, &LlamaLayerWeights::wk),
      matrix("attn_v.weight", E, KVD, &LlamaLayerWeights::wv),
      matrix("attn_output.weight", QD, E, &LlamaLayerWeights::wo),
      vector("ffn_norm.weight", E, &LlamaLayerWeights::ffn_norm, 1.0f),
      matrix("ffn_gate.weight", E, F, &LlamaLayerWeights::w_gate),
      matrix("ffn_up.weight", E, F, &LlamaLayerWeights::w_up),
      matrix("ffn_down.weight", F, E, &LlamaLayerWeights::w_down),
  };
}

LayerTensor layer_vector(int layer, const std::string& name, std::int64_t n, FloatVector LlamaLayerWeights::*slot,
                         float synthetic_mean) {
  LayerTensor t;
  t.name = "blk." + std::to_string(layer) + "." + name;
  t.n_dims = 1;
  t.ne = {n, 1, 1, 1};
  t.vector = slot;
  t.synthetic_mean = synthetic_mean;
  return t;
}

void add_qk_norm_tensors(const LlamaConfig& c, int layer, std::vector<LayerTensor>& t) {
  t.push_back(layer_vector(layer, "attn_q_norm.weight", c.head_dim, &LlamaLayerWeights::attn_q_norm, 1.0f));
  t.push_back(layer_vector(layer, "attn_k_norm.weight", c.head_dim, &LlamaLayerWeights::attn_k_norm, 1.0f));
}

void write_common_metadata(const LlamaConfig& c, GgufWriter& w) {
  using namespace gguf_value;
  auto n = [](int v) { return u32(static_cast<std::uint32_t>(v)); };
  const std::string p = c.arch + ".";
  w.set_metadata("general.architecture", string(c.arch));
  if (!c.name.empty()) w.set_metadata("general.name", string(c.name));
  w.set_metadata(p + "context_length", n(c.n_ctx_train));
  w.set_metadata(p + "embedding_length", n(c.n_embd));
  w.set_metadata(p + "block_count", n(c.n_layer));
  w.set_metadata(p + "feed_forward_length", n(c.n_ff));
  w.set_metadata(p + "attention.head_count", n(c.n_head));
  w.set_metadata(p + "attention.head_count_kv", n(c.n_head_kv));
  w.set_metadata(p + "attention.key_length", n(c.head_dim));
  w.set_metadata(p + "attention.value_length", n(c.head_dim));
  w.set_metadata(p + "rope.dimension_count", n(c.n_rot));
  w.set_metadata(p + "rope.freq_base", f32(c.rope_theta));
  if (c.rope_scaling == RopeScaling::Yarn) {
    w.set_metadata(p + "rope.scaling.type", string("yarn"));
    w.set_metadata(p + "rope.scaling.factor", f32(c.rope_scale));
    w.set_metadata(p + "rope.scaling.yarn_beta_fast", f32(c.yarn_beta_fast));
    w.set_metadata(p + "rope.scaling.yarn_beta_slow", f32(c.yarn_beta_slow));
  } else if (c.rope_scaling == RopeScaling::LongRope) {
    w.set_metadata(p + "rope.scaling.type", string("longrope"));
  } else if (c.rope_scale != 1.0f) {
    w.set_metadata(p + "rope.scaling.type", string("linear"));
    w.set_metadata(p + "rope.scaling.factor", f32(c.rope_scale));
  }
  if (c.rope_scaling == RopeScaling::Yarn || c.rope_scaling == RopeScaling::LongRope ||
      (c.rope_orig_ctx > 0 && c.rope_orig_ctx != c.n_ctx_train))
    w.set_metadata(p + "rope.scaling.original_context_length", n(c.rope_orig_ctx > 0 ? c.rope_orig_ctx : c.n_ctx_train));
  if (c.rope_attn_factor != 1.0f) w.set_metadata(p + "rope.scaling.attn_factor", f32(c.rope_attn_factor));
  w.set_metadata(p + "attention.layer_norm_rms_epsilon", f32(c.rms_eps));
  w.set_metadata(p + "vocab_size", n(c.n_vocab));
}

// --- mixture of experts (mixtral, qwen3moe) ---

// llama.cpp's LLAMA_MAX_EXPERTS: a model with more cannot be one it runs either.
constexpr int kMaxExperts = 512;

void configure_experts(const GgufMetadata& f, LlamaConfig& c, bool required) {
  const std::string p = c.arch + ".";
  const std::optional<std::int64_t> n = f.get_int(p + "expert_count");
  if (!n || *n == 0) {
    if (required) fail("{}: missing metadata key {}expert_count (a {} model has experts)", f.path(), p, c.arch);
    return;
  }
  if (*n < 1 || *n > kMaxExperts)
    fail("{}: metadata {}expert_count = {} is out of range (expected 1..{})", f.path(), p, *n, kMaxExperts);
  const std::optional<std::int64_t> used = f.get_int(p + "expert_used_count");
  if (!used) fail("{}: missing metadata key {}expert_used_count ({}expert_count is {})", f.path(), p, p, *n);
  if (*used < 1 || *used > *n)
    fail("{}: metadata {}expert_used_count = {} is out of range (expected 1..{}expert_count = {})", f.path(), p, *used,
         p, *n);
  c.n_expert = static_cast<int>(*n);
  c.n_expert_used = static_cast<int>(*used);
  c.n_ff_exp = c.n_ff;
}

void write_expert_metadata(const LlamaConfig& c, GgufWriter& w) {
  if (c.n_expert == 0) return;
  const std::string p = c.arch + ".";
  w.set_metadata(p + "expert_count", gguf_value::u32(static_cast<std::uint32_t>(c.n_expert)));
  w.set_metadata(p + "expert_used_count", gguf_value::u32(static_cast<std::uint32_t>(c.n_expert_used)));
}

std::vector<LayerTensor> with_expert_ffn(const LlamaConfig& c, int layer, std::vector<LayerTensor> tensors) {
  if (c.n_expert == 0) return tensors;
  const std::string p = "blk." + std::to_string(layer) + ".";
  std::erase_if(tensors, [&](const LayerTensor& t) {
    return t.name == p + "ffn_gate.weight" || t.name == p + "ffn_up.weight" || t.name == p + "ffn_down.weight";
  });
  const std::int64_t E = c.n_embd, F = c.n_ff_exp, X = c.n_expert;
  auto tensor = [&](const char* name, int n_dims, std::array<std::int64_t, 4> ne, TensorView LlamaLayerWeights::*slot) {
    LayerTensor t;
    t.name = p + name;
    t.n_dims = n_dims;
    t.ne = ne;
    t.matrix = slot;
    return t;
  };
  tensors.push_back(tensor("ffn_gate_inp.weight", 2, {E, X, 1, 1}, &LlamaLayerWeights::ffn_gate_inp));
  tensors.back().keep_f32 = true;
  tensors.push_back(tensor("ffn_gate_exps.weight", 3, {E, F, X, 1}, &LlamaLayerWeights::ffn_gate_exps));
  tensors.push_back(tensor("ffn_up_exps.weight", 3, {E, F, X, 1}, &LlamaLayerWeights::ffn_up_exps));
  tensors.push_back(tensor("ffn_down_exps.weight", 3, {F, E, X, 1}, &LlamaLayerWeights::ffn_down_exps));
  return tensors;
}

}  // namespace kiln
