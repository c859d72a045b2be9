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
  // Mixture of experts (mixtral: llama with llama.expert_count; qwen3moe): each layer's FFN is
  // n_expert SwiGLU FFNs of width n_ff_exp, stacked in ffn_{gate,up,down}_exps, of which a
  // router (ffn_gate_inp) picks n_expert_used per token: softmax over all experts, the top
  // n_expert_used, their probabilities renormalised to sum to 1 (what llama.cpp does for both).
  int n_expert = 0;       // 0: a dense FFN
  int n_expert_used = 0;  // experts per token, 1..n_expert
  int n_ff_exp = 0;       // one expert's FFN width: n_ff (mixtral), expert_feed_forward_length (qwen3moe)

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
