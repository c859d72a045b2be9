#pragma once
// The tensors of a Llama-family model, bound by their GGUF names and checked for shape and
// type. Matrices stay views into the mapped file in their stored format; only the small
// vectors (norm weights, biases) are converted to float copies when not stored as f32.
#include <optional>
#include <vector>

#include "core/tensor.h"
#include "model/llama_config.h"

namespace kiln {

class TensorSource;

// A 1-D parameter as floats: points into the file when stored as f32, else into `owned`.
struct FloatVector {
  const float* data = nullptr;
  std::vector<float> owned;
};

struct LlamaLayerWeights {
  FloatVector attn_norm;  // (n_embd)
  TensorView wq;          // ne {n_embd, q_dim}
  TensorView wk;          // ne {n_embd, kv_dim}
  TensorView wv;          // ne {n_embd, kv_dim}
  TensorView wo;          // ne {q_dim, n_embd}
  FloatVector bq, bk, bv; // (q_dim), (kv_dim), (kv_dim): qwen2 only
  FloatVector attn_q_norm, attn_k_norm;  // (head_dim) each: qk_norm families (qwen3)
  FloatVector ffn_norm;   // (n_embd)
  TensorView w_gate;      // ne {n_embd, n_ff}
  TensorView w_up;        // ne {n_embd, n_ff}
  TensorView w_down;      // ne {n_ff, n_embd}
  FloatVector attn_post_norm, ffn_post_norm;  // (n_embd) each: post_norms families (gemma2, gemma3)
  // Mixture of experts (n_expert > 0) instead of w_gate, w_up, w_down:
  TensorView ffn_gate_inp;   // ne {n_embd, n_expert}: the router
  TensorView ffn_gate_exps;  // ne {n_embd, n_ff_exp, n_expert}: expert e's w_gate is the e-th slab
  TensorView ffn_up_exps;    // ne {n_embd, n_ff_exp, n_expert}
  TensorView ffn_down_exps;  // ne {n_ff_exp, n_embd, n_expert}
};

struct LlamaWeights {
  TensorView token_embd;  // ne {n_embd, n_vocab}
  FloatVector output_norm;
  TensorView output;      // ne {n_embd, n_vocab}; token_embd when tied
  std::optional<FloatVector> rope_freqs;  // (n_rot/2) per-frequency divisors (llama 3 style)
  std::vector<LlamaLayerWeights> layers;
  // phi3's LongRoPE divisors (n_rot/2 each): short within rope_orig_ctx, long past it.
  std::optional<FloatVector> rope_factors_short, rope_factors_long;
};

// Binds every tensor; throws kiln::Error naming the tensor and the expected shape or type.
LlamaWeights bind_llama_weights(const TensorSource& source, const LlamaConfig& config);

}  // namespace kiln
