#pragma once
// The Attention of llama_blocks.h over whole sequences held contiguously (training): B
// sequences of T rows, each row attending causally to the rows of its own sequence up to its
// own, with no KV cache. The probabilities are kept for the backward pass.
#include <cstdint>

#include "core/thread_pool.h"
#include "kernels/dense_gemm.h"
#include "model/llama_config.h"

namespace kiln {

// out (B·T, q_dim) = softmax(q kᵀ / sqrt(head_dim), causal) · v per (sequence, query head),
// query heads sharing key/value heads in groups. q is (B·T, q_dim), k and v (B·T, kv_dim);
// probs (B, n_head, T, T) receives the probabilities, zero past the diagonal. Products run in
// `precision`.
void sequence_attention_forward(const LlamaConfig& config, int B, int T, const float* q, const float* k, const float* v,
                                float* probs, float* out, kernels::GemmPrecision precision, ThreadPool& pool);

}  // namespace kiln
