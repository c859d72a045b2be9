#pragma once
// A Llama being trained: its parameters and gradients in contiguous buffers (train/
// parameter_table.h), the model's own forward blocks (model/llama_blocks.h, the ones
// LlamaModel runs) over whole sequences keeping what the backward pass needs, and that backward
// pass. Attention runs over the batch's own contiguous keys and values (model/
// sequence_attention.h, no paged cache); matrix products go through kernels::dense_gemm in f32,
// or with bf16 inputs and f32 sums (mixed precision: the master weights and every gradient stay
// f32).
//
// One micro-batch is B sequences of T tokens, N = B·T rows.
#include <cstdint>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/thread_pool.h"
#include "kernels/dense_gemm.h"
#include "model/llama_config.h"
#include "model/rope.h"
#include "train/parameter_table.h"

namespace kiln::train {

struct TokenBatch {
  int B = 0, T = 0;
  const int* tokens = nullptr;   // (B, T)
  const int* targets = nullptr;  // (B, T) the next token of each position; -1: no loss there
};

class LlamaTrainingModel {
 public:
  LlamaTrainingModel(const LlamaConfig& config, kernels::GemmPrecision precision, ThreadPool& pool);

  const LlamaConfig& config() const { return config_; }
  const ParameterTable& table() const { return table_; }
  kernels::GemmPrecision precision() const { return precision_; }
  void set_precision(kernels::GemmPrecision p) { precision_ = p; }

  float* params() { return params_.data(); }
  const float* params() const { return params_.data(); }
  float* grads() { return grads_.data(); }
  void zero_grads();

  // Forward and backward over the batch: adds grad_scale × the gradient of the mean loss over
  // the positions with a target to grads(), and returns that mean loss (NaN when no position
  // has one). grad_scale is 1 / micro-batches for gradient accumulation.
  double forward_backward(const TokenBatch& batch, float grad_scale);

  // The mean loss alone (validation): the forward pass only.
  double loss(const TokenBatch& batch);

  // The logits of every position, (B·T, n_vocab), into `logits`.
  void logits(const TokenBatch& batch, float* logits);

  // The two halves of forward_backward around a loss of the caller's (train/training_loss.h):
  // forward_logits runs the forward and returns the model's own logits (B·T, n_vocab), which
  // the caller overwrites with dL/dlogits before backward_from_logits adds the gradient of the
  // parameters to grads().
  float* forward_logits(const TokenBatch& batch);
  void backward_from_logits(const TokenBatch& batch);

 private:
  // What one layer's forward keeps for the backward pass (model/llama_blocks.h's
  // LayerActivations point into these), N = B·T rows: x_in, xn1, x_mid, xn2 (N, n_embd); rstd1,
  // rstd2 (N); q (N, q_dim), k, v (N, kv_dim); probs (B, n_head, T, T); attn (N, q_dim); gate,
  // up, h (N, n_ff).
  struct LayerBuffers {
    FloatBuffer x_in, xn1, rstd1, q, k, v, probs, attn, x_mid, xn2, rstd2, gate, up, h;
  };

  // Runs every layer and the final norm through the model's forward blocks
  // (model/llama_blocks.h); the output layer's logits go to logits_.
  void forward(const TokenBatch& batch);
  void backward(const TokenBatch& batch);
  void attention_backward(int il, int B, int T, const float* dattn, float* dq, float* dk, float* dv);
  // dx (rows, in) (+)= dy · W, and dW += dyᵀ · x.
  void matmul_backward(const float* x, const float* dy, std::int64_t rows, std::int64_t in, std::int64_t offset,
                       std::int64_t out, float* dx, bool accumulate_dx);
  void rope_rows(float* x, int n_heads, std::int64_t rows, int T, bool inverse);

  LlamaConfig config_;
  ParameterTable table_;
  kernels::GemmPrecision precision_;
  ThreadPool& pool_;
  Rope rope_;
  FloatBuffer params_, grads_;

  int batch_rows_ = 0;  // N of the last forward
  std::vector<LayerBuffers> layers_;
  FloatBuffer rope_cs_;            // (T, n_rot): cos then sin per position
  FloatBuffer x_final_, xn_final_, rstd_final_, logits_;
  // Backward scratch.
  FloatBuffer dx_, dxn_, dq_, dk_, dv_, dattn_, dh_, dgate_, dup_, dscores_;
};

}  // namespace kiln::train
