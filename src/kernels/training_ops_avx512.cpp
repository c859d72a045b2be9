// The AVX-512 paths of kernels/training_ops.h: 16 floats per register, masked tails, exp from
// vector_math_avx512.h (relative error below 2.5e-7 where results are normal floats).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/training_ops.h"
#include "kernels/vector_math_avx512.h"

#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace kiln::kernels::avx512 {
namespace {

inline __mmask16 lanes(std::int64_t count) {
  return count >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << count) - 1u);
}

}  // namespace

float cross_entropy_row(float* z, std::int64_t n, int target, float grad_scale) {
  __m512 vmax = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (std::int64_t i = 0; i < n; i += 16)
    vmax = _mm512_mask_max_ps(vmax, lanes(n - i), vmax, _mm512_maskz_loadu_ps(lanes(n - i), z + i));
  const float m = _mm512_reduce_max_ps(vmax);
  const __m512 mb = _mm512_set1_ps(m);
  __m512 vsum = _mm512_setzero_ps();
  for (std::int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = lanes(n - i);
    vsum = _mm512_add_ps(vsum, _mm512_maskz_mov_ps(k, exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, z + i), mb))));
  }
  const float lse = m + std::log(_mm512_reduce_add_ps(vsum));
  const float loss = lse - z[target];
  const __m512 lb = _mm512_set1_ps(lse), sb = _mm512_set1_ps(grad_scale);
  for (std::int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = lanes(n - i);
    const __m512 p = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, z + i), lb));
    _mm512_mask_storeu_ps(z + i, k, _mm512_mul_ps(p, sb));
  }
  z[target] -= grad_scale;
  return loss;
}

void swiglu_backward(const float* gate, const float* up, const float* dh, float* dgate, float* dup, std::int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (std::int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = lanes(n - i);
    const __m512 g = _mm512_maskz_loadu_ps(k, gate + i);
    const __m512 u = _mm512_maskz_loadu_ps(k, up + i);
    const __m512 d = _mm512_maskz_loadu_ps(k, dh + i);
    const __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), g))));
    const __m512 silu = _mm512_mul_ps(g, s);
    // σ(g)·(1 + g·(1 − σ(g))) = σ(g) + silu(g)·(1 − σ(g))
    const __m512 dsilu = _mm512_fmadd_ps(silu, _mm512_sub_ps(one, s), s);
    _mm512_mask_storeu_ps(dgate + i, k, _mm512_mul_ps(_mm512_mul_ps(d, u), dsilu));
    _mm512_mask_storeu_ps(dup + i, k, _mm512_mul_ps(d, silu));
  }
}

void softmax_backward_row(const float* p, float* dp, std::int64_t n, float scale) {
  __m512 vdot = _mm512_setzero_ps();
  for (std::int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = lanes(n - i);
    vdot = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, p + i), _mm512_maskz_loadu_ps(k, dp + i), vdot);
  }
  const __m512 db = _mm512_set1_ps(_mm512_reduce_add_ps(vdot)), sb = _mm512_set1_ps(scale);
  for (std::int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = lanes(n - i);
    const __m512 pv = _mm512_maskz_loadu_ps(k, p + i);
    const __m512 r = _mm512_mul_ps(_mm512_mul_ps(pv, _mm512_sub_ps(_mm512_maskz_loadu_ps(k, dp + i), db)), sb);
    _mm512_mask_storeu_ps(dp + i, k, r);
  }
}

training_ref::DistillTerms<float> distill_row(float* z, std::int64_t n, int target, const int* ids,
                                              const float* teacher_logp, std::int64_t k, float alpha, float tau,
                                              float grad_scale, float* work) {
  // The passes over n of the reference in registers; K's few ids stay scalar.
  __m512 vmax = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (std::int64_t i = 0; i < n; i += 16)
    vmax = _mm512_mask_max_ps(vmax, lanes(n - i), vmax, _mm512_maskz_loadu_ps(lanes(n - i), z + i));
  const float m = _mm512_reduce_max_ps(vmax);
  const float inv_tau = 1.0f / tau;
  const __m512 mb = _mm512_set1_ps(m), itb = _mm512_set1_ps(inv_tau);
  __m512 vsum1 = _mm512_setzero_ps(), vsum_t = _mm512_setzero_ps();
  for (std::int64_t i = 0; i < n; i += 16) {
    const __mmask16 k16 = lanes(n - i);
    const __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(k16, z + i), mb);
    vsum1 = _mm512_add_ps(vsum1, _mm512_maskz_mov_ps(k16, exp_ps(d)));
    vsum_t = _mm512_add_ps(vsum_t, _mm512_maskz_mov_ps(k16, exp_ps(_mm512_mul_ps(d, itb))));
  }
  const float lse1 = m + std::log(_mm512_reduce_add_ps(vsum1));
  const float lse_t = m * inv_tau + std::log(_mm512_reduce_add_ps(vsum_t));
  training_ref::DistillTerms<float> out;
  out.ce = lse1 - z[target];
  const float a = alpha * grad_scale, b = (1.0f - alpha) * tau * grad_scale;
  const __m512 l1b = _mm512_set1_ps(lse1), ltb = _mm512_set1_ps(lse_t), ab = _mm512_set1_ps(a);
  if (ids == nullptr) {
    const __m512 bb = _mm512_set1_ps(b);
    __m512 vkl = _mm512_setzero_ps();
    for (std::int64_t i = 0; i < n; i += 16) {
      const __mmask16 k16 = lanes(n - i);
      const __m512 zv = _mm512_maskz_loadu_ps(k16, z + i), lp = _mm512_maskz_loadu_ps(k16, teacher_logp + i);
      const __m512 lq = _mm512_fmsub_ps(zv, itb, ltb);
      const __m512 p = _mm512_maskz_mov_ps(k16, exp_ps(lp));
      vkl = _mm512_fmadd_ps(p, _mm512_sub_ps(lp, lq), vkl);
      const __m512 g = _mm512_fmadd_ps(ab, exp_ps(_mm512_sub_ps(zv, l1b)), _mm512_mul_ps(bb, _mm512_sub_ps(exp_ps(lq), p)));
      _mm512_mask_storeu_ps(z + i, k16, g);
    }
    out.kl = _mm512_reduce_add_ps(vkl);
    z[target] -= a;
    return out;
  }
  float p_in = 0, q_in = 0, cross = 0;
  for (std::int64_t i = 0; i < k; ++i) {
    const float lq = z[ids[i]] * inv_tau - lse_t, p = std::exp(teacher_logp[i]);
    work[i] = std::exp(lq);
    p_in += p, q_in += work[i];
    cross += p * (teacher_logp[i] - lq);
  }
  const float r = k < n ? std::max(0.0f, 1.0f - p_in) : 0.0f;
  const float q_out = std::max(std::numeric_limits<float>::min(), 1.0f - q_in);
  const float ratio = r > 0 ? r / q_out : 0.0f;
  out.kl = cross + (r > 0 ? r * (std::log(r) - std::log(q_out)) : 0.0f);
  const __m512 bob = _mm512_set1_ps(b * (1.0f - ratio));
  for (std::int64_t i = 0; i < n; i += 16) {
    const __mmask16 k16 = lanes(n - i);
    const __m512 zv = _mm512_maskz_loadu_ps(k16, z + i);
    const __m512 g = _mm512_fmadd_ps(ab, exp_ps(_mm512_sub_ps(zv, l1b)), _mm512_mul_ps(bob, exp_ps(_mm512_fmsub_ps(zv, itb, ltb))));
    _mm512_mask_storeu_ps(z + i, k16, g);
  }
  for (std::int64_t i = 0; i < k; ++i) z[ids[i]] += b * (ratio * work[i] - std::exp(teacher_logp[i]));
  z[target] -= a;
  return out;
}

}  // namespace kiln::kernels::avx512
