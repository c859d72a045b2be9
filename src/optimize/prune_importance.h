#pragma once
// Activation-based importance for structured pruning, gathered from the forward pass over
// calibration text through the model's ActivationObserver (Minitron, Muralidharan et al. 2024:
// score every structure by the activations it produces, from a small calibration set, no
// gradients):
//   heads     the L2 norm of each head's attention output (its slice of attn_output's input),
//             averaged over tokens; a KV group scores the sum of its query heads;
//   channels  the SwiGLU output (ffn_down's input): mean |x_j| (Minitron), and Σ x_j² for
//             Wanda's |W|·‖x‖ (Sun et al. 2023), with ffn_down's column magnitudes from the weights;
//   layers    Block Influence (Men et al. 2024, ShortGPT): 1 − cos(h_in, h_out) of each layer's
//             residual stream, averaged over tokens. A layer that barely turns the stream does
//             little; it is the cheapest signal (one pass, no extra forwards per layer).
// The residual stream is read where the observer sees it: the input of attn_q is
// rms_norm(h)·attn_norm, so dividing by attn_norm recovers h's direction (cosine ignores scale);
// the last layer's output comes from the final hidden states (after output_norm, divided by it).
#include <cstdint>
#include <functional>
#include <vector>

#include "core/thread_pool.h"
#include "eval/chunks.h"
#include "model/llama_model.h"

namespace kiln::optimize {

struct PruneImportance {
  int n_layer = 0, n_head = 0, n_head_kv = 0, n_ff = 0;
  std::int64_t tokens = 0;
  std::vector<double> head_norm;        // (n_layer, n_head) mean over tokens of ‖head output‖₂
  std::vector<double> channel_abs;      // (n_layer, n_ff) mean over tokens of |SwiGLU output|
  std::vector<double> channel_sq;       // (n_layer, n_ff) mean over tokens of its square
  std::vector<double> down_column_abs;  // (n_layer, n_ff) Σ_i |W_down[i, j]|; empty until weighed
  std::vector<double> block_influence;  // (n_layer) mean over tokens of 1 − cos(layer input, output)

  // (n_layer, n_head_kv): the summed head norms of each KV group.
  std::vector<double> group_scores() const;
};

// Collects PruneImportance; set it on a model with LlamaModel::set_observer, run forwards, and
// call end_forward with each forward's final hidden states (all rows of the batch).
class PruneImportanceCollector : public ActivationObserver {
 public:
  explicit PruneImportanceCollector(const LlamaModel& model);
  void observe(const TensorView& W, const float* x, std::int64_t rows) override;
  // hidden (rows, n_embd): the final hidden states (after output_norm) of every row of the batch.
  void end_forward(const float* hidden, std::int64_t rows);
  PruneImportance result() const;

 private:
  // (rows, E) the direction of the residual stream from a normed input: x / gamma per column.
  void set_stream(const float* x, const float* gamma, std::int64_t rows, std::vector<float>& out) const;
  void add_influence(int layer, const std::vector<float>& next, std::int64_t rows);

  const LlamaModel& model_;
  LlamaConfig c_;
  PruneImportance sums_;  // sums, divided by tokens in result()
  std::vector<double> bi_sum_;
  std::vector<std::int64_t> bi_count_;
  std::vector<float> stream_;  // (rows, E) the last seen layer input's direction
  int stream_layer_ = -1;
};

// Fills down_column_abs from the model's ffn_down weights (dequantized row by row).
void weigh_down_columns(const LlamaModel& model, PruneImportance& importance);

struct PruneCollectProgress {
  int chunks_done = 0;
  int n_chunks = 0;
  std::int64_t tokens_done = 0;
};

// Runs every chunk of `plan` through `model` (each in a fresh context, every position's final
// hidden state kept; n_batch tokens per forward at most) and returns the importance, with
// down_column_abs filled.
PruneImportance collect_prune_importance(LlamaModel& model, const eval::ChunkPlan& plan, ThreadPool& pool,
                                         int n_batch,
                                         const std::function<void(const PruneCollectProgress&)>& progress = {});

}  // namespace kiln::optimize
