#include "train/llama_training_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "kernels/ops.h"
#include "kernels/training_ops.h"
#include "model/dense_products.h"
#include "model/llama_blocks.h"
#include "model/sequence_attention.h"
#include "train/training_loss.h"

namespace kiln::train {

using kernels::dense_gemm;
using kernels::training_ref::rms_norm_backward;
using kernels::MatrixArg;

namespace {

// Matrix products inside a task that already has a thread of its own (one attention head).
ThreadPool& serial_pool() {
  thread_local ThreadPool pool(1);
  return pool;
}

std::size_t sz(std::int64_t n) { return static_cast<std::size_t>(n); }

}  // namespace

LlamaTrainingModel::LlamaTrainingModel(const LlamaConfig& config, kernels::GemmPrecision precision, ThreadPool& pool)
    : config_(config), table_(config), precision_(precision), pool_(pool), rope_(config, nullptr) {
  std::memset(params_.resize(sz(table_.total())), 0, sz(table_.total()) * sizeof(float));
  std::memset(grads_.resize(sz(table_.total())), 0, sz(table_.total()) * sizeof(float));
  layers_.resize(sz(config.n_layer));
}

void LlamaTrainingModel::zero_grads() { std::memset(grads_.data(), 0, sz(table_.total()) * sizeof(float)); }

void LlamaTrainingModel::matmul_backward(const float* x, const float* dy, std::int64_t rows, std::int64_t in,
                                         std::int64_t offset, std::int64_t out, float* dx, bool accumulate_dx) {
  // dx (rows, in) = dy (rows, out) · W (out, in)
  dense_gemm(rows, in, out, MatrixArg{dy, out, false}, MatrixArg{params_.data() + offset, in, false}, dx, in,
             accumulate_dx, precision_, pool_);
  // dW (out, in) += dyᵀ (out, rows) · x (rows, in)
  dense_gemm(out, in, rows, MatrixArg{dy, out, true}, MatrixArg{x, in, false}, grads_.data() + offset, in, true,
             precision_, pool_);
}

void LlamaTrainingModel::rope_rows(float* x, int n_heads, std::int64_t rows, int T, bool inverse) {
  const int half = rope_.half();
  const int width = n_heads * config_.head_dim;
  pool_.parallel_for(rows, [&](std::int64_t r, int) {
    const float* cs = rope_cs_.data() + (r % T) * 2 * half;
    if (!inverse) {
      rope_.apply(x + r * width, n_heads, cs, cs + half);
      return;
    }
    // The inverse rotation: the same angles with the sines negated.
    float neg_sin[512];
    for (int i = 0; i < half; ++i) neg_sin[i] = -cs[half + i];
    rope_.apply(x + r * width, n_heads, cs, neg_sin);
  }, 16);
}

void LlamaTrainingModel::forward(const TokenBatch& batch) {
  const LlamaConfig& c = config_;
  const int B = batch.B, T = batch.T;
  const std::int64_t N = static_cast<std::int64_t>(B) * T;
  if (B <= 0 || T <= 0) fail("a training batch needs sequences and tokens ({} x {})", B, T);
  if (c.n_rot / 2 > 512) fail("rotary dimensions {} are more than training supports (1024)", c.n_rot);
  for (std::int64_t i = 0; i < N; ++i) {
    const int tok = batch.tokens[i];
    if (tok < 0 || tok >= c.n_vocab) fail("token id {} is out of range (vocabulary of {})", tok, c.n_vocab);
    const int tgt = batch.targets == nullptr ? -1 : batch.targets[i];
    if (tgt < -1 || tgt >= c.n_vocab) fail("target id {} is out of range (vocabulary of {})", tgt, c.n_vocab);
  }
  batch_rows_ = static_cast<int>(N);
  const std::int64_t E = c.n_embd, F = c.n_ff, QD = c.q_dim(), KVD = c.kv_dim();
  const int half = rope_.half();
  float* cs = rope_cs_.resize(sz(T * 2 * half));
  for (int t = 0; t < T; ++t) rope_.angles(t, cs + t * 2 * half, cs + t * 2 * half + half);

  const float* P = params_.data();
  float* x = layers_.empty() ? x_final_.resize(sz(N * E)) : layers_[0].x_in.resize(sz(N * E));
  for (std::int64_t i = 0; i < N; ++i)
    std::memcpy(x + i * E, P + table_.token_embd() + static_cast<std::int64_t>(batch.tokens[i]) * E, sz(E) * sizeof(float));
  const RopeAngles angles{cs, T, c.n_rot};

  // The model's own layer sequence (model/llama_blocks.h), every activation kept in the
  // layer's buffers for backward(); the next layer's x_in is this layer's x_out.
  DenseProducts products(precision_, pool_);
  for (int il = 0; il < c.n_layer; ++il) {
    const LayerOffsets& o = table_.layer(il);
    LayerBuffers& b = layers_[sz(il)];
    LlamaLayerParams<const float*> w;
    w.attn_norm = P + o.attn_norm;
    w.wq = P + o.wq;
    w.wk = P + o.wk;
    w.wv = P + o.wv;
    w.wo = P + o.wo;
    w.ffn_norm = P + o.ffn_norm;
    w.w_gate = P + o.w_gate;
    w.w_up = P + o.w_up;
    w.w_down = P + o.w_down;
    LayerActivations a;
    a.x_in = b.x_in.data();
    a.xn1 = b.xn1.resize(sz(N * E));
    a.rstd1 = b.rstd1.resize(sz(N));
    a.q = b.q.resize(sz(N * QD));
    a.k = b.k.resize(sz(N * KVD));
    a.v = b.v.resize(sz(N * KVD));
    a.attn = b.attn.resize(sz(N * QD));
    a.x_mid = b.x_mid.resize(sz(N * E));
    a.xn2 = b.xn2.resize(sz(N * E));
    a.rstd2 = b.rstd2.resize(sz(N));
    a.gate = b.gate.resize(sz(N * F));
    a.up = b.up.resize(sz(N * F));
    a.h = b.h.resize(sz(N * F));
    a.x_out = il + 1 < c.n_layer ? layers_[sz(il + 1)].x_in.resize(sz(N * E)) : x_final_.resize(sz(N * E));
    float* probs = b.probs.resize(sz(static_cast<std::int64_t>(B) * c.n_head * T * T));  // (B, H, T, T)
    auto attention = [&](const float* q, const float* k, const float* v, float* out) {
      sequence_attention_forward(c, B, T, q, k, v, probs, out, precision_, pool_);
    };
    llama_layer_forward(c, rope_, angles, w, a, N, products, attention, pool_);
  }

  const float* output = P + table_.output();
  llama_output_forward(c, P + table_.output_norm(), output, x_final_.data(), nullptr, N, xn_final_.resize(sz(N * E)),
                       rstd_final_.resize(sz(N)), logits_.resize(sz(N * c.n_vocab)), products, pool_);
}

void LlamaTrainingModel::attention_backward(int il, int B, int T, const float* dattn, float* dq, float* dk,
                                            float* dv) {
  const LlamaConfig& c = config_;
  LayerBuffers& a = layers_[sz(il)];
  const int H = c.n_head, hd = c.head_dim, group = c.n_head / c.n_head_kv;
  const std::int64_t QD = c.q_dim(), KVD = c.kv_dim();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const float* q = a.q.data();
  const float* k = a.k.data();
  const float* v = a.v.data();
  const float* probs = a.probs.data();
  float* dscores = dscores_.resize(sz(static_cast<std::int64_t>(pool_.size()) * T * T));
  // One task per (sequence, key/value head): the query heads of a group all add into the same
  // rows of dK and dV.
  pool_.parallel_for(static_cast<std::int64_t>(B) * c.n_head_kv, [&](std::int64_t task, int worker) {
    const std::int64_t b = task / c.n_head_kv, kvh = task % c.n_head_kv;
    const float* kh = k + b * T * KVD + kvh * hd;
    const float* vh = v + b * T * KVD + kvh * hd;
    float* dkh = dk + b * T * KVD + kvh * hd;
    float* dvh = dv + b * T * KVD + kvh * hd;
    float* ds = dscores + static_cast<std::int64_t>(worker) * T * T;  // (T, T)
    for (int g = 0; g < group; ++g) {
      const std::int64_t h = kvh * group + g;
      const float* qh = q + b * T * QD + h * hd;
      const float* doh = dattn + b * T * QD + h * hd;
      const float* p = probs + (b * H + h) * T * T;
      // dV += Pᵀ · dO;  dP = dO · Vᵀ
      dense_gemm(T, hd, T, MatrixArg{p, T, true}, MatrixArg{doh, QD, false}, dvh, KVD, g > 0, precision_, serial_pool());
      dense_gemm(T, T, hd, MatrixArg{doh, QD, false}, MatrixArg{vh, KVD, true}, ds, T, false, precision_, serial_pool());
      for (int t = 0; t < T; ++t) {
        float* row = ds + static_cast<std::int64_t>(t) * T;
        kernels::softmax_backward_row(p + static_cast<std::int64_t>(t) * T, row, t + 1, scale);
        for (int j = t + 1; j < T; ++j) row[j] = 0;
      }
      // dQ = dS · K;  dK += dSᵀ · Q
      dense_gemm(T, hd, T, MatrixArg{ds, T, false}, MatrixArg{kh, KVD, false}, dq + b * T * QD + h * hd, QD, false,
                 precision_, serial_pool());
      dense_gemm(T, hd, T, MatrixArg{ds, T, true}, MatrixArg{qh, QD, false}, dkh, KVD, g > 0, precision_, serial_pool());
    }
  });
}

void LlamaTrainingModel::backward(const TokenBatch& batch) {
  const LlamaConfig& c = config_;
  const int B = batch.B, T = batch.T;
  const std::int64_t N = batch_rows_, E = c.n_embd, F = c.n_ff, QD = c.q_dim(), KVD = c.kv_dim(), V = c.n_vocab;
  const float* P = params_.data();
  float* G = grads_.data();
  float* dx = dx_.resize(sz(N * E));
  float* dxn = dxn_.resize(sz(N * E));

  // RMSNorm backward over every row: dx (+)= through the norm, and the gain's gradient, a sum
  // over rows. The rows are summed in fixed chunks whose partial sums are added in chunk order,
  // so that the gradient does not depend on which worker ran which rows, nor on the number of
  // threads: a run resumed from a checkpoint repeats the uninterrupted one bit for bit.
  constexpr std::int64_t kNormChunk = 32;
  const std::int64_t norm_chunks = (N + kNormChunk - 1) / kNormChunk;
  std::vector<float> norm_partial(sz(norm_chunks * E));  // (norm_chunks, E)
  auto norm_backward = [&](const float* x, const float* rstd, std::int64_t gain) {
    std::fill(norm_partial.begin(), norm_partial.end(), 0.0f);
    pool_.parallel_for(norm_chunks, [&](std::int64_t chunk, int) {
      float* dw = norm_partial.data() + chunk * E;
      for (std::int64_t r = chunk * kNormChunk; r < std::min(N, (chunk + 1) * kNormChunk); ++r)
        rms_norm_backward(x + r * E, P + gain, rstd[r], dxn + r * E, dx + r * E, dw, E);
    });
    for (std::int64_t chunk = 0; chunk < norm_chunks; ++chunk)
      for (std::int64_t i = 0; i < E; ++i) G[gain + i] += norm_partial[sz(chunk * E + i)];
  };

  // Output layer and final norm. logits_ holds dL/dlogits.
  matmul_backward(xn_final_.data(), logits_.data(), N, E, table_.output(), V, dxn, false);
  std::memset(dx, 0, sz(N * E) * sizeof(float));
  norm_backward(x_final_.data(), rstd_final_.data(), table_.output_norm());

  float* dq = dq_.resize(sz(N * QD));
  float* dk = dk_.resize(sz(N * KVD));
  float* dv = dv_.resize(sz(N * KVD));
  float* dattn = dattn_.resize(sz(N * QD));
  float* dh = dh_.resize(sz(N * F));
  float* dgate = dgate_.resize(sz(N * F));
  float* dup = dup_.resize(sz(N * F));

  for (int il = c.n_layer - 1; il >= 0; --il) {
    const LayerOffsets& o = table_.layer(il);
    LayerBuffers& a = layers_[sz(il)];
    // Feed-forward: x_out = x_mid + W_down · (silu(W_gate xn2) ⊙ W_up xn2), dx flows through
    // the residual unchanged and through the block.
    matmul_backward(a.h.data(), dx, N, F, o.w_down, E, dh, false);
    const float* gate = a.gate.data();
    const float* up = a.up.data();
    pool_.parallel_for(N, [&](std::int64_t r, int) {
      kernels::swiglu_backward(gate + r * F, up + r * F, dh + r * F, dgate + r * F, dup + r * F, F);
    }, 16);
    matmul_backward(a.xn2.data(), dgate, N, E, o.w_gate, F, dxn, false);
    matmul_backward(a.xn2.data(), dup, N, E, o.w_up, F, dxn, true);
    norm_backward(a.x_mid.data(), a.rstd2.data(), o.ffn_norm);

    // Attention: x_mid = x_in + W_o · attention(rope(W_q xn1), rope(W_k xn1), W_v xn1).
    matmul_backward(a.attn.data(), dx, N, QD, o.wo, E, dattn, false);
    attention_backward(il, B, T, dattn, dq, dk, dv);
    rope_rows(dq, c.n_head, N, T, true);
    rope_rows(dk, c.n_head_kv, N, T, true);
    matmul_backward(a.xn1.data(), dq, N, E, o.wq, QD, dxn, false);
    matmul_backward(a.xn1.data(), dk, N, E, o.wk, KVD, dxn, true);
    matmul_backward(a.xn1.data(), dv, N, E, o.wv, KVD, dxn, true);
    norm_backward(a.x_in.data(), a.rstd1.data(), o.attn_norm);
  }

  // Embeddings: each position's gradient goes to its token's row (tokens repeat: one thread).
  for (std::int64_t i = 0; i < N; ++i)
    kernels::add_inplace(G + table_.token_embd() + static_cast<std::int64_t>(batch.tokens[i]) * E, dx + i * E, E);
}

double LlamaTrainingModel::forward_backward(const TokenBatch& batch, float grad_scale) {
  if (batch.targets == nullptr) fail("training needs targets");
  forward(batch);
  const double loss = CrossEntropyLoss().apply(batch, logits_.data(), config_.n_vocab, grad_scale, true, pool_).loss;
  if (std::isnan(loss)) return loss;
  backward(batch);
  return loss;
}

double LlamaTrainingModel::loss(const TokenBatch& batch) {
  if (batch.targets == nullptr) fail("a loss needs targets");
  forward(batch);
  return CrossEntropyLoss().apply(batch, logits_.data(), config_.n_vocab, 0.0f, false, pool_).loss;
}

void LlamaTrainingModel::logits(const TokenBatch& batch, float* out) {
  forward(batch);
  std::memcpy(out, logits_.data(), sz(static_cast<std::int64_t>(batch_rows_) * config_.n_vocab) * sizeof(float));
}

float* LlamaTrainingModel::forward_logits(const TokenBatch& batch) {
  forward(batch);
  return logits_.data();
}

void LlamaTrainingModel::backward_from_logits(const TokenBatch& batch) { backward(batch); }

}  // namespace kiln::train
