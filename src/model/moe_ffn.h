#pragma once
// The mixture-of-experts FFN (mixtral, qwen3moe): a router (ffn_gate_inp) scores every expert
// for each token, the n_expert_used best are run, and their outputs are summed with the
// router's probabilities:
//
//   p        = softmax(router · x)                         over all n_expert experts
//   top      = the n_expert_used experts of highest p       (in decreasing order)
//   y        = Σ_{e ∈ top} (p_e / Σ_top p) · down_e(silu(gate_e · x) ⊙ up_e · x)
//
// which is llama.cpp's build_moe_ffn for llama (mixtral) and qwen3moe (softmax gating, weights
// normalised, no scaling, no shared expert).
//
// The experts are stored stacked, one tensor per role with ne {in, out, n_expert}; expert e is
// the e-th slab, a view of which is an ordinary matrix for `linear`. The rows of a step are
// grouped by expert: each selected expert's rows are gathered, multiplied by its weights in one
// product per matrix, and scattered back weighted. So an expert's weights stream from memory
// once per step however many of the step's tokens chose it, and the experts nobody chose are
// not read at all (a decode step reads n_expert_used of them per layer).
#include <cstdint>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "model/activation_observer.h"
#include "model/linear.h"
#include "model/llama_config.h"

namespace kiln {

// Expert e's matrix in a stacked tensor of ne {in, out, n_expert}: ne {in, out}, the same rows.
TensorView expert_matrix(const TensorView& stacked, std::int64_t e);

// For each of N rows of router logits (N, n_expert): the n_used experts of highest softmax
// probability, best first, into experts (N, n_used), and their probabilities divided by their
// sum into weights (N, n_used). Ties go to the lower expert index.
void route_experts(const float* logits, std::int64_t N, int n_expert, int n_used, int* experts, float* weights);

// One layer's expert tensors.
struct ExpertFfnWeights {
  const TensorView* router = nullptr;  // ne {E, n_expert}
  const TensorView* gate = nullptr;    // ne {E, F, n_expert}
  const TensorView* up = nullptr;      // ne {E, F, n_expert}
  const TensorView* down = nullptr;    // ne {F, E, n_expert}
};

// The FFN over a step's rows, with scratch kept between layers and steps.
class MoeFfn {
 public:
  // y (N, E) = the mixture's output for each row of x (N, E) (y is overwritten). `act` is the
  // caller's activation scratch; the observer, when set, sees the router's input and each
  // expert's inputs (observe_expert).
  void forward(const LlamaConfig& c, const ExpertFfnWeights& w, const float* x, std::int64_t N, float* y,
               ActivationRows& act, ThreadPool& pool, ActivationObserver* observer);

  // The routing of the last forward: (N, n_expert_used) experts and weights.
  const std::vector<int>& experts() const { return experts_; }
  const std::vector<float>& weights() const { return weights_; }

 private:
  std::vector<int> experts_;     // (N, K) chosen experts, best first
  std::vector<float> weights_;   // (N, K) their normalised probabilities
  std::vector<int> offsets_;     // (n_expert + 1) start of each expert's group in slots_
  std::vector<int> slots_;       // (N * K) row * K + k, grouped by expert
  FloatBuffer logits_;           // (N, n_expert) router outputs
  FloatBuffer xg_;               // (n_e, E) an expert's gathered input rows
  FloatBuffer gate_;             // (n_e, F) then silu(gate) ⊙ up
  FloatBuffer up_;               // (n_e, F)
  FloatBuffer out_;              // (n_e, E) the expert's output rows before weighting
};

// The scalar reference: every row on its own, each chosen expert's rows dequantized and dotted
// one by one in f32 (no grouping, no activation conversion). Same routing as MoeFfn.
void moe_ffn_reference(const LlamaConfig& c, const ExpertFfnWeights& w, const float* x, std::int64_t N, float* y);

}  // namespace kiln
