#pragma once
// Element-wise and reduction operations of the forward pass, on float rows. Each has a scalar
// reference (namespace ref) and a fast path chosen by simd_level(); tests compare the two.
#include <cstdint>

namespace kiln::kernels {

// y = x / sqrt(mean(x²) + eps) * w; returns the scale 1 / sqrt(mean(x²) + eps) (training's
// backward keeps it per row).   x, w, y are (n); y may alias x.
float rms_norm(const float* x, const float* w, float* y, std::int64_t n, float eps);
// x = softmax(x), computed stably (max subtracted).   x is (n)
void softmax_inplace(float* x, std::int64_t n);
// y = silu(gate) * up, silu(g) = g / (1 + exp(-g)).   gate, up, y are (n); y may alias gate.
void silu_mul(const float* gate, const float* up, float* y, std::int64_t n);
// y = gelu(gate) * up with GELU's tanh form (gemma's FFN, ggml's gelu):
// gelu(g) = 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g³))) = g / (1 + exp(-2 sqrt(2/pi) (g + 0.044715 g³))).
// gate, up, y are (n); y may alias gate.
void gelu_tanh_mul(const float* gate, const float* up, float* y, std::int64_t n);
// x = cap * tanh(x / cap): soft-capping of attention scores and logits (gemma2).   x is (n)
void softcap_inplace(float* x, std::int64_t n, float cap);
// y += x.   (n)
void add_inplace(float* y, const float* x, std::int64_t n);
// Returns sum(a * b).   (n)
float dot_f32(const float* a, const float* b, std::int64_t n);
// y += alpha * x.   (n)
void axpy_f32(float alpha, const float* x, float* y, std::int64_t n);
// The same two for a row stored as IEEE half bits (a KV cache in f16).
float dot_f16_f32(const std::uint16_t* a, const float* b, std::int64_t n);
void axpy_f16_f32(float alpha, const std::uint16_t* x, float* y, std::int64_t n);
// Conversions of whole rows.
void f32_to_f16_row(const float* x, std::uint16_t* y, std::int64_t n);
void f16_to_f32_row(const std::uint16_t* x, float* y, std::int64_t n);
// Attention over a run of cached rows for the n_q query heads that share one key/value head
// (grouped-query attention), so each f16 row is read once for all of them and the loop runs
// inside one call instead of one dispatched call per (head, position):
//   scores: s[g * s_stride + r] = scale * dot(k + r * k_stride, q + g * q_stride)   (hd each)
//   values: out[g * out_stride + i] += sum_r p[g * p_stride + r] * v[r * v_stride + i]
// for g < n_q, r < n_rows, i < hd.
void attn_scores_f16(const std::uint16_t* k, std::int64_t k_stride, std::int64_t n_rows, const float* q,
                     std::int64_t q_stride, std::int64_t n_q, std::int64_t hd, float scale, float* s,
                     std::int64_t s_stride);
void attn_values_f16(const std::uint16_t* v, std::int64_t v_stride, std::int64_t n_rows, const float* p,
                     std::int64_t p_stride, std::int64_t n_q, std::int64_t hd, float* out, std::int64_t out_stride);

namespace ref {
float rms_norm(const float* x, const float* w, float* y, std::int64_t n, float eps);
void softmax_inplace(float* x, std::int64_t n);
void silu_mul(const float* gate, const float* up, float* y, std::int64_t n);
void gelu_tanh_mul(const float* gate, const float* up, float* y, std::int64_t n);
void softcap_inplace(float* x, std::int64_t n, float cap);
void add_inplace(float* y, const float* x, std::int64_t n);
float dot_f32(const float* a, const float* b, std::int64_t n);
void axpy_f32(float alpha, const float* x, float* y, std::int64_t n);
float dot_f16_f32(const std::uint16_t* a, const float* b, std::int64_t n);
void axpy_f16_f32(float alpha, const std::uint16_t* x, float* y, std::int64_t n);
void f32_to_f16_row(const float* x, std::uint16_t* y, std::int64_t n);
void f16_to_f32_row(const std::uint16_t* x, float* y, std::int64_t n);
void attn_scores_f16(const std::uint16_t* k, std::int64_t k_stride, std::int64_t n_rows, const float* q,
                     std::int64_t q_stride, std::int64_t n_q, std::int64_t hd, float scale, float* s,
                     std::int64_t s_stride);
void attn_values_f16(const std::uint16_t* v, std::int64_t v_stride, std::int64_t n_rows, const float* p,
                     std::int64_t p_stride, std::int64_t n_q, std::int64_t hd, float* out, std::int64_t out_stride);
}  // namespace ref

}  // namespace kiln::kernels
