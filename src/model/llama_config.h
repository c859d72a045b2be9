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
