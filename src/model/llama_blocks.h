#pragma once
// The forward blocks of a Llama-family model, written once for inference and for training.
//
// A layer is: attention norm → q, k, v (+ bias, qwen2) (→ per-head norm of q and k, qwen3) → rope → causal attention → wo →
// (→ post-attention norm, gemma) residual → ffn norm → gate, up → SwiGLU (GELU-tanh, gemma) → down
// (→ post-FFN norm, gemma) → residual; the model ends with the output norm and the output product
// (→ logit soft-capping, gemma2). Sliding windows, the query scale and score soft-capping are the
// Attention's (the config says them per layer). llama_layer_forward and llama_output_forward are that sequence;
// what differs between the two users is passed in:
//
//   Products   how y = x · Wᵀ is computed, for one input and one or more weights:
//                products(x, rows, in, {Product<Matrix>{W, out, y}, ...})
//              LlamaModel: weights in their stored block formats through `linear`, the input
//              converted once for all the weights that share it (model/quantized_products.h).
//              Training: f32 parameters through kernels::dense_gemm (f32 or bf16 products).
//   Attention  how queries read keys and values: attention(q, k, v, out), rows as the layer's.
//              LlamaModel: appends k and v to the paged KV cache and attends over each
//              sequence's cache. Training: over the batch's own contiguous keys and values,
//              keeping the probabilities (model/sequence_attention.h).
//   LayerActivations  where each intermediate goes: LlamaModel points them at scratch that
//              every layer reuses (several at one buffer); training gives each layer its own,
//              which its backward pass (train/) reads.
//
// The row-wise pieces are kernels/ops.h's (rms_norm, silu_mul, add_inplace) and model/rope.h.
#include <cstdint>
#include <initializer_list>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/ops.h"
#include "model/llama_config.h"
#include "model/rope.h"

namespace kiln {

// One layer's parameters. Matrix is whatever the Products policy multiplies by (a TensorView in
// a stored format, or f32 rows); vectors are floats. A matrix W producing `out` values from `in`
// is (out, in) row-major: ne {in, out}.
template <class Matrix>
struct LlamaLayerParams {
  const float* attn_norm = nullptr;  // (E)
  Matrix wq{}, wk{}, wv{};           // (q_dim, E), (kv_dim, E), (kv_dim, E)
  const float* bq = nullptr;         // (q_dim) qwen2's biases, or nullptr
  const float* bk = nullptr;         // (kv_dim)
  const float* bv = nullptr;         // (kv_dim)
  const float* q_norm = nullptr;     // (head_dim) qk_norm's weights, or nullptr
  const float* k_norm = nullptr;     // (head_dim)
  Matrix wo{};                       // (E, q_dim)
  const float* ffn_norm = nullptr;   // (E)
  Matrix w_gate{}, w_up{};           // (F, E)
  Matrix w_down{};                   // (E, F)
  const float* attn_post_norm = nullptr;  // (E) post_norms' weights (gemma), or nullptr
  const float* ffn_post_norm = nullptr;   // (E)
  // Mixture of experts (n_expert > 0) instead of w_gate, w_up, w_down; X = n_expert, FX = n_ff_exp.
  Matrix ffn_gate_inp{};             // (X, E) the router
  Matrix ffn_gate_exps{}, ffn_up_exps{};  // (X, FX, E) stacked
  Matrix ffn_down_exps{};            // (X, E, FX)
};

// A Products policy that can also run a mixture-of-experts FFN: y (rows, E) = the experts'
// weighted sum for each row of x (rows, E) (model/moe_ffn.h). Only inference's has one.
template <class Products, class Matrix>
concept ExpertProducts = requires(Products& p, const LlamaConfig& c, const LlamaLayerParams<Matrix>& w, const float* x,
                                  std::int64_t rows, float* y) { p.experts(c, w, x, rows, y); };

// y (rows, out) = x (rows, in) · Wᵀ.
template <class Matrix>
struct Product {
  Matrix w;
  std::int64_t out;
  float* y;
};

// Where one layer's forward writes, N = its rows, E = n_embd, F = n_ff. Inference reuses one
// set of scratch for every layer: x_out may be x_in (x_in is not read once x_mid is formed), h
// may be gate, xn2 may be xn1, and the rstd pointers may be null (not kept).
struct LayerActivations {
  const float* x_in = nullptr;  // (N, E) the residual stream entering the layer
  float* xn1 = nullptr;         // (N, E) attention norm of x_in
  float* rstd1 = nullptr;       // (N) its 1 / rms per row, or nullptr
  float* q = nullptr;           // (N, q_dim) after bias and rope
  float* k = nullptr;           // (N, kv_dim) after bias and rope
  float* v = nullptr;           // (N, kv_dim) after bias
  float* attn = nullptr;        // (N, q_dim) attention output, input of wo
  float* x_mid = nullptr;       // (N, E) x_in + wo · attn
  float* xn2 = nullptr;         // (N, E) ffn norm of x_mid
  float* rstd2 = nullptr;       // (N) or nullptr
  float* gate = nullptr;        // (N, F) w_gate · xn2
  float* up = nullptr;          // (N, F) w_up · xn2
  float* h = nullptr;           // (N, F) silu(gate) ⊙ up, input of w_down
  float* x_out = nullptr;       // (N, E) x_mid + w_down · h
};

// The rotary angles of each row: row r uses cos_sin + (r % period) · n_rot, n_rot/2 cosines
// then n_rot/2 sines. Inference has one entry per batch row (period = rows); training one per
// position of a sequence, shared by the B sequences (period = T).
struct RopeAngles {
  const float* cos_sin = nullptr;  // (period, n_rot)
  std::int64_t period = 1;
  int n_rot = 0;
  const float* cos(std::int64_t row) const { return cos_sin + (row % period) * n_rot; }
  const float* sin(std::int64_t row) const { return cos(row) + n_rot / 2; }
};

// Runs fn(row) for every row, across the pool's threads when there are enough rows to pay for
// it (a decode batch of a few rows stays on the calling thread).
template <class Fn>
void for_each_row(ThreadPool& pool, std::int64_t rows, Fn&& fn) {
  if (rows < 8) {
    for (std::int64_t r = 0; r < rows; ++r) fn(r);
    return;
  }
  pool.parallel_for(
      rows, [&](std::int64_t r, int) { fn(r); }, rows >= 256 ? 16 : 2);
}

// One transformer layer over N rows.
template <class Matrix, class Products, class Attention>
void llama_layer_forward(const LlamaConfig& c, const Rope& rope, const RopeAngles& angles,
                         const LlamaLayerParams<Matrix>& w, const LayerActivations& a, std::int64_t N,
                         Products& products, Attention& attention, ThreadPool& pool) {
  const std::int64_t E = c.n_embd, F = c.n_ff, QD = c.q_dim(), KVD = c.kv_dim();

  // --- attention block: x_mid = x_in + wo · attention(rope(wq xn1), rope(wk xn1), wv xn1) ---
  for_each_row(pool, N, [&](std::int64_t r) {
    const float rstd = kernels::rms_norm(a.x_in + r * E, w.attn_norm, a.xn1 + r * E, E, c.rms_eps);
    if (a.rstd1 != nullptr) a.rstd1[r] = rstd;
  });
  products(a.xn1, N, E,
           {Product<Matrix>{w.wq, QD, a.q}, Product<Matrix>{w.wk, KVD, a.k}, Product<Matrix>{w.wv, KVD, a.v}});
  for_each_row(pool, N, [&](std::int64_t r) {
    if (w.bq != nullptr) {
      kernels::add_inplace(a.q + r * QD, w.bq, QD);
      kernels::add_inplace(a.k + r * KVD, w.bk, KVD);
      kernels::add_inplace(a.v + r * KVD, w.bv, KVD);
    }
    if (w.q_norm != nullptr) {
      for (int h = 0; h < c.n_head; ++h)
        kernels::rms_norm(a.q + r * QD + h * c.head_dim, w.q_norm, a.q + r * QD + h * c.head_dim, c.head_dim, c.rms_eps);
      for (int h = 0; h < c.n_head_kv; ++h)
        kernels::rms_norm(a.k + r * KVD + h * c.head_dim, w.k_norm, a.k + r * KVD + h * c.head_dim, c.head_dim,
                          c.rms_eps);
    }
    rope.apply(a.q + r * QD, c.n_head, angles.cos(r), angles.sin(r));
    rope.apply(a.k + r * KVD, c.n_head_kv, angles.cos(r), angles.sin(r));
  });
  attention(static_cast<const float*>(a.q), static_cast<const float*>(a.k), static_cast<const float*>(a.v), a.attn);
  products(a.attn, N, QD, {Product<Matrix>{w.wo, E, a.x_mid}});

  // --- feed-forward block: x_out = x_mid + w_down · (silu(w_gate xn2) ⊙ w_up xn2) ---
  for_each_row(pool, N, [&](std::int64_t r) {
    if (w.attn_post_norm != nullptr)
      kernels::rms_norm(a.x_mid + r * E, w.attn_post_norm, a.x_mid + r * E, E, c.rms_eps);
    kernels::add_inplace(a.x_mid + r * E, a.x_in + r * E, E);
    const float rstd = kernels::rms_norm(a.x_mid + r * E, w.ffn_norm, a.xn2 + r * E, E, c.rms_eps);
    if (a.rstd2 != nullptr) a.rstd2[r] = rstd;
  });
  if (c.n_expert > 0) {
    // Mixture of experts (mixtral, qwen3moe): the router's chosen experts instead of one FFN.
    if constexpr (ExpertProducts<Products, Matrix>) products.experts(c, w, a.xn2, N, a.x_out);
    else fail("{} with {} experts: mixture-of-experts layers run in inference only", c.arch, c.n_expert);
  } else {
    products(a.xn2, N, E, {Product<Matrix>{w.w_gate, F, a.gate}, Product<Matrix>{w.w_up, F, a.up}});
    for_each_row(pool, N, [&](std::int64_t r) {
      if (c.gelu_ffn)
        kernels::gelu_tanh_mul(a.gate + r * F, a.up + r * F, a.h + r * F, F);
      else
        kernels::silu_mul(a.gate + r * F, a.up + r * F, a.h + r * F, F);
    });
    products(a.h, N, F, {Product<Matrix>{w.w_down, E, a.x_out}});
  }
  for_each_row(pool, N, [&](std::int64_t r) {
    if (w.ffn_post_norm != nullptr)
      kernels::rms_norm(a.x_out + r * E, w.ffn_post_norm, a.x_out + r * E, E, c.rms_eps);
    kernels::add_inplace(a.x_out + r * E, a.x_mid + r * E, E);
  });
}

// The output norm and the output product for R rows of the final residual stream x: row i is
// x's row rows[i] (rows == nullptr: row i). xn (R, E) keeps the normed rows, rstd (R) their
// 1 / rms (or nullptr), logits is (R, n_vocab).
template <class Matrix, class Products>
void llama_output_forward(const LlamaConfig& c, const float* output_norm, const Matrix& output, const float* x,
                          const int* rows, std::int64_t R, float* xn, float* rstd, float* logits, Products& products,
                          ThreadPool& pool) {
  const std::int64_t E = c.n_embd;
  for_each_row(pool, R, [&](std::int64_t i) {
    const std::int64_t src = rows == nullptr ? i : rows[i];
    const float s = kernels::rms_norm(x + src * E, output_norm, xn + i * E, E, c.rms_eps);
    if (rstd != nullptr) rstd[i] = s;
  });
  products(static_cast<const float*>(xn), R, E, {Product<Matrix>{output, c.n_vocab, logits}});
  if (c.final_softcap > 0.0f)
    for_each_row(pool, R, [&](std::int64_t i) { kernels::softcap_inplace(logits + i * c.n_vocab, c.n_vocab, c.final_softcap); });
}

}  // namespace kiln
