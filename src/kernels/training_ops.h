#pragma once
// The row-wise pieces of a Llama's training pass that are not matrix products: RMSNorm, the
// SwiGLU gate, causal softmax, the softmax cross-entropy and knowledge distillation's loss
// (cross-entropy plus the KL divergence from a teacher), forward and backward.
//
// namespace training_ref holds them as templates over the scalar type: the gradient tests
// instantiate double and check each backward against central finite differences of its
// forward; float instances are the scalar references of the fast paths below, which the
// tests compare with them. Shapes are per row; callers loop over rows and threads.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

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


// The two terms of a distillation row's loss.
template <class T>
struct DistillTerms {
  T ce = 0;  // −log softmax(z)[target]
  T kl = 0;  // KL(p_τ ‖ q_τ), the teacher's tail as one bucket when it gives k < n ids
};

// Knowledge distillation's loss of one row of student logits z (n) against a teacher:
//   L = α · CE(target, z) + (1 − α) · τ² · KL(p_τ ‖ q_τ),   q_τ = softmax(z / τ),
// the teacher given as log p_τ over k ids (`ids`; nullptr: every id in order, k == n). With K
// the k ids and k < n, the teacher's remaining mass r = 1 − Σ_K p_i is one bucket against the
// student's mass outside K, Q = 1 − Σ_K q_i:
//   KL = Σ_K p_i (log p_i − log q_i) + r (log r − log Q),
// the KL divergence of the two distributions over K plus one outcome "any other id": the full
// KL when K is every id (r = 0, no bucket). z becomes grad_scale · dL/dz:
//   dL/dz_j = α (softmax(z)_j − [j = target]) + (1 − α) τ (q_j − [j ∈ K] p_j − [j ∉ K] q_j r / Q)
// (τ² times the 1/τ of z / τ). Q is floored at the smallest normal number, so that a student
// with no mass outside K gets a large finite loss, not an infinite one. `work` holds k values
// (q_i of K, kept because z is overwritten); unused when ids is nullptr.
template <class T>
DistillTerms<T> distill_row(T* z, std::int64_t n, int target, const int* ids, const T* teacher_logp, std::int64_t k,
                            T alpha, T tau, T grad_scale, T* work) {
  T m = z[0];
  for (std::int64_t j = 1; j < n; ++j) m = std::max(m, z[j]);
  T sum1 = 0, sum_t = 0;
  for (std::int64_t j = 0; j < n; ++j) {
    sum1 += std::exp(z[j] - m);
    sum_t += std::exp((z[j] - m) / tau);
  }
  const T lse1 = m + std::log(sum1), lse_t = m / tau + std::log(sum_t);
  DistillTerms<T> out;
  out.ce = lse1 - z[target];
  const T a = alpha * grad_scale, b = (T(1) - alpha) * tau * grad_scale;
  if (ids == nullptr) {  // every id: no bucket
    T kl = 0;
    for (std::int64_t j = 0; j < n; ++j) {
      const T lq = z[j] / tau - lse_t, p = std::exp(teacher_logp[j]);
      kl += p * (teacher_logp[j] - lq);
      z[j] = a * std::exp(z[j] - lse1) + b * (std::exp(lq) - p);
    }
    out.kl = kl;
    z[target] -= a;
    return out;
  }
  T p_in = 0, q_in = 0, cross = 0;
  for (std::int64_t i = 0; i < k; ++i) {
    const T lq = z[ids[i]] / tau - lse_t, p = std::exp(teacher_logp[i]);
    work[i] = std::exp(lq);
    p_in += p, q_in += work[i];
    cross += p * (teacher_logp[i] - lq);
  }
  const T r = k < n ? std::max(T(0), T(1) - p_in) : T(0);
  const T q_out = std::max(std::numeric_limits<T>::min(), T(1) - q_in);
  const T ratio = r > 0 ? r / q_out : T(0);
  out.kl = cross + (r > 0 ? r * (std::log(r) - std::log(q_out)) : T(0));
  // Every id as if outside K, then K's ids corrected: their bucket term becomes −p_i.
  const T b_out = b * (T(1) - ratio);
  for (std::int64_t j = 0; j < n; ++j) z[j] = a * std::exp(z[j] - lse1) + b_out * std::exp(z[j] / tau - lse_t);
  for (std::int64_t i = 0; i < k; ++i) z[ids[i]] += b * (ratio * work[i] - std::exp(teacher_logp[i]));
  z[target] -= a;
  return out;
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

// The distillation loss of one row (training_ref::distill_row): z becomes grad_scale · dL/dz.
training_ref::DistillTerms<float> distill_row(float* z, std::int64_t n, int target, const int* ids,
                                              const float* teacher_logp, std::int64_t k, float alpha, float tau,
                                              float grad_scale, float* work);

namespace avx512 {
float cross_entropy_row(float* z, std::int64_t n, int target, float grad_scale);
void swiglu_backward(const float* gate, const float* up, const float* dh, float* dgate, float* dup, std::int64_t n);
void softmax_backward_row(const float* p, float* dp, std::int64_t n, float scale);
training_ref::DistillTerms<float> distill_row(float* z, std::int64_t n, int target, const int* ids,
                                              const float* teacher_logp, std::int64_t k, float alpha, float tau,
                                              float grad_scale, float* work);
}  // namespace avx512

}  // namespace kiln::kernels
