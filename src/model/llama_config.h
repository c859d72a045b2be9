#pragma once
// The hyper-parameters of a decoder model of any family kiln runs (model/architecture.h), read
// from GGUF metadata ("<arch>.embedding_length", ...), which every model source carries (a
// llama2.c checkpoint's header is turned into the same keys). Families differ by switches here
// (q/k/v biases, rope layout, q/k norms, ...) set by their configure, not by copies of the
// forward pass.
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace kiln {

class GgufFile;
class GgufMetadata;
class TensorSource;

enum class RopeLayout {
  Interleaved,  // rotate pairs (x[2i], x[2i+1]): llama, mistral (ggml's "normal" rope)
  Halves,       // rotate pairs (x[i], x[i + d/2]): qwen2 (ggml's "neox" rope)
};

// How rope positions are stretched past the training context (rope.scaling.type).
enum class RopeScaling {
  None,
  Linear,    // positions divided by rope_scale
  Yarn,      // YaRN (see LlamaConfig)
  LongRope,  // phi3's per-pair frequency factors, short or long
};

struct LlamaConfig {
  std::string arch;  // "llama", "mistral", "qwen2"
  std::string name;  // general.name when present
  int n_vocab = 0;
  int n_embd = 0;      // model width
  int n_layer = 0;
  int n_head = 0;
  int n_head_kv = 0;   // < n_head: grouped-query attention
  int head_dim = 0;    // n_embd / n_head unless the file says otherwise
  int n_ff = 0;        // feed-forward width
  int n_ctx_train = 0;
  int n_rot = 0;       // rotated dimensions per head (usually head_dim)
  float rms_eps = 1e-5f;
  float rope_theta = 10000.0f;
  float rope_scale = 1.0f;  // linear position scaling: positions are divided by this
  RopeLayout rope_layout = RopeLayout::Interleaved;
  bool qkv_bias = false;     // qwen2
  bool qk_norm = false;      // qwen3: RMSNorm over each head of q and of k (a weight of head_dim) before rope
  bool tied_output = false;  // no output.weight: logits use token_embd
  // Mixture of experts (mixtral: llama with llama.expert_count; qwen3moe): each layer's FFN is
  // n_expert SwiGLU FFNs of width n_ff_exp, stacked in ffn_{gate,up,down}_exps, of which a
  // router (ffn_gate_inp) picks n_expert_used per token: softmax over all experts, the top
  // n_expert_used, their probabilities renormalised to sum to 1 (what llama.cpp does for both).
  int n_expert = 0;       // 0: a dense FFN
  int n_expert_used = 0;  // experts per token, 1..n_expert
  int n_ff_exp = 0;       // one expert's FFN width: n_ff (mixtral), expert_feed_forward_length (qwen3moe)

  // Rope scaling beyond linear, as llama.cpp reads "<arch>.rope.scaling.*" (any family):
  //   yarn      the rotation angle of pair i mixes the interpolated angle (position / rope_scale)
  //             and the original one by a ramp over the pairs whose wavelength fits in
  //             rope_orig_ctx between yarn_beta_fast and yarn_beta_slow turns; cos and sin are
  //             scaled by 1 + 0.1 ln(rope_scale) (the attention magnitude);
  //   longrope  phi3's LongRoPE/SuRoPE: per-pair divisors rope_factors_short.weight, or
  //             rope_factors_long.weight when the context run exceeds rope_orig_ctx.
  // rope_attn_factor (rope.scaling.attn_factor) multiplies cos and sin in every variant.
  RopeScaling rope_scaling = RopeScaling::None;
  int rope_orig_ctx = 0;          // rope.scaling.original_context_length (n_ctx_train when absent)
  float rope_attn_factor = 1.0f;  // rope.scaling.attn_factor
  float yarn_beta_fast = 32.0f;   // rope.scaling.yarn_beta_fast
  float yarn_beta_slow = 1.0f;    // rope.scaling.yarn_beta_slow

  // phi3: attn_qkv holds q, k and v (rows q_dim + 2 kv_dim) and ffn_up holds gate then up (rows
  // 2 n_ff); the binder splits them by rows into wq/wk/wv and w_gate/w_up.
  bool fused_qkv = false;
  bool fused_gate_up = false;

  // --- gemma2, gemma3 (model/arch_gemma2.cpp, arch_gemma3.cpp) ---
  bool embd_scale = false;        // embeddings multiplied by sqrt(n_embd) before the first layer
  bool gelu_ffn = false;          // FFN gate is GELU (tanh form) instead of SiLU
  bool post_norms = false;        // RMSNorm of the attention and FFN outputs before each residual add
  float attn_scale = 0.0f;        // query scale before q·k; 0: 1 / sqrt(head_dim)
  float attn_softcap = 0.0f;      // scores = cap · tanh(scores / cap) before the softmax; 0: none
  float final_softcap = 0.0f;     // the same on the output logits; 0: none
  int n_swa = 0;                  // sliding window: a windowed layer's query at p reads keys in (p - n_swa, p]
  int swa_pattern = 0;            // layer il is windowed when il % swa_pattern < swa_pattern - 1; 0: none
  float rope_theta_swa = 0.0f;    // rope base of the windowed layers (gemma3: 10000); 0: rope_theta
  float rope_scale_swa = 1.0f;    // and their linear position scaling

  bool is_swa_layer(int il) const { return n_swa > 0 && swa_pattern > 0 && il % swa_pattern < swa_pattern - 1; }
  bool has_swa_rope() const { return n_swa > 0 && swa_pattern > 0 && rope_theta_swa > 0.0f; }

  int kv_dim() const { return n_head_kv * head_dim; }
  int q_dim() const { return n_head * head_dim; }
};

// A tensor's shape (ne, innermost first), or nullopt when the model has no tensor of that name.
using TensorShapeFn = std::function<std::optional<std::array<std::int64_t, 4>>(const std::string& name)>;

// Reads and checks the hyper-parameters from GGUF metadata (and whether output.weight exists,
// and token_embd's rows); throws kiln::Error naming the missing or bad key.
LlamaConfig llama_config_from_metadata(const GgufMetadata& metadata, const TensorShapeFn& tensor_shape);
LlamaConfig llama_config_from_gguf(const GgufFile& gguf);
LlamaConfig llama_config_from_source(const TensorSource& source);

}  // namespace kiln
