#pragma once
// The row-wise pieces of a Llama's training pass that are not matrix products: RMSNorm, the
// SwiGLU gate, causal softmax and the softmax cross-entropy, forward and backward.
//
// namespace training_ref holds them as templates over the scalar type: the gradient tests
// instantiate double and check each backward against central finite differences of its
// forward; float instances are the scalar references of the fast paths below, which the
// tests compare with them. Shapes are per row; callers loop over rows and threads.
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace kiln::kernels {
namespace training_ref {

// y = x / rms(x) * w, rms(x) = sqrt(mean(x²) + eps); returns 1 / rms(x) (the backward needs it).
// The float forward is kernels::rms_norm (ops.h), which returns the same 1 / rms(x).
template <class T>
T rms_norm_forward(const T* x, const T* w, T* y, std::int64_t n, T eps) {
  T sum = 0;
  for (std::int64_t i = 0; i < n; ++i) sum += x[i] * x[i];
  const T rstd = T(1) / std::sqrt(sum / static_cast<T>(n) + eps);
  for (std::int64_t i = 0; i < n; ++i) y[i] = x[i] * rstd * w[i];
  return rstd;
}

// Given dy, adds dL/dx to dx and dL/dw to dw. With g = dy·w:
//   dx = rstd·g − x·rstd³·mean(g·x),   dw += dy·x·rstd
template <class T>
void rms_norm_backward(const T* x, const T* w, T rstd, const T* dy, T* dx, T* dw, std::int64_t n) {
  T gx = 0;
  for (std::int64_t i = 0; i < n; ++i) gx += dy[i] * w[i] * x[i];
  const T c = gx * rstd * rstd * rstd / static_cast<T>(n);
  for (std::int64_t i = 0; i < n; ++i) {
    dx[i] += rstd * dy[i] * w[i] - x[i] * c;
    dw[i] += dy[i] * x[i] * rstd;
  }
}

template <class T>
T sigmoid(T v) {
  return T(1) / (T(1) + std::exp(-v));
}

// h = silu(gate)·up (kernels::silu_mul in the float forward).
template <class T>
void swiglu_forward(const T* gate, const T* up, T* h, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) h[i] = gate[i] * sigmoid(gate[i]) * up[i];
}

// Given dh: dgate = dh·up·σ(g)·(1 + g·(1 − σ(g))), dup = dh·silu(g) (written, not added).
template <class T>
void swiglu_backward(const T* gate, const T* up, const T* dh, T* dgate, T* dup, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    const T s = sigmoid(gate[i]);
    dgate[i] = dh[i] * up[i] * s * (T(1) + gate[i] * (T(1) - s));
    dup[i] = dh[i] * gate[i] * s;
  }
}

// Row t of a causal attention: scores s[0..t] (scaled) become probabilities in place; entries
// past t are set to zero, so that the row multiplies the whole V.
template <class T>
void causal_softmax_row(T* s, std::int64_t t, std::int64_t n) {
  T m = s[0];
  for (std::int64_t j = 1; j <= t; ++j) m = std::max(m, s[j]);
  T sum = 0;
  for (std::int64_t j = 0; j <= t; ++j) {
    s[j] = std::exp(s[j] - m);
    sum += s[j];
  }
  const T inv = T(1) / sum;
  for (std::int64_t j = 0; j <= t; ++j) s[j] *= inv;
  for (std::int64_t j = t + 1; j < n; ++j) s[j] = 0;
}

// Softmax backward of one row, in place: dp (dL/dprobs) becomes dL/dscores · scale:
//   ds_j = p_j (dp_j − Σ_k p_k dp_k) · scale.
template <class T>
void softmax_backward_row(const T* p, T* dp, std::int64_t n, T scale) {
  T dot = 0;
  for (std::int64_t j = 0; j < n; ++j) dot += p[j] * dp[j];
  for (std::int64_t j = 0; j < n; ++j) dp[j] = p[j] * (dp[j] - dot) * scale;
}

// Cross-entropy of one row of logits against `target`: returns −log softmax(z)[target], and
// overwrites z with its gradient (softmax(z) − onehot(target)) · grad_scale.
template <class T>
T cross_entropy_row(T* z, std::int64_t n, int target, T grad_scale) {
  T m = z[0];
  for (std::int64_t j = 1; j < n; ++j) m = std::max(m, z[j]);
  T sum = 0;
  for (std::int64_t j = 0; j < n; ++j) sum += std::exp(z[j] - m);
  const T lse = m + std::log(sum);
  const T loss = lse - z[target];
  for (std::int64_t j = 0; j < n; ++j) z[j] = std::exp(z[j] - lse) * grad_scale;
  z[target] -= grad_scale;
  return loss;
}

}  // namespace training_ref

// The fast paths (AVX-512 where the CPU has it, else the float references above).
// Cross-entropy of one row: returns −log softmax(z)[target]; z becomes
// (softmax(z) − onehot(target)) · grad_scale.
float cross_entropy_row(float* z, std::int64_t n, int target, float grad_scale);
// dgate = dh·up·σ(g)·(1 + g·(1 − σ(g))), dup = dh·silu(g).
void swiglu_backward(const float* gate, const float* up, const float* dh, float* dgate, float* dup, std::int64_t n);
// dp (n) becomes p ⊙ (dp − p·dp) · scale.
void softmax_backward_row(const float* p, float* dp, std::int64_t n, float scale);

namespace avx512 {
float cross_entropy_row(float* z, std::int64_t n, int target, float grad_scale);
void swiglu_backward(const float* gate, const float* up, const float* dh, float* dgate, float* dup, std::int64_t n);
void softmax_backward_row(const float* p, float* dp, std::int64_t n, float scale);
}  // namespace avx512

}  // namespace kiln::kernels
