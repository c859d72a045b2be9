// The AVX-512 path of kernels/ops.h: 16 floats per register, tails handled with lane masks so
// that no element is read or written outside [0, n).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/ops_simd.h"
#include "kernels/reduce_avx512.h"
#include "kernels/vector_math_avx512.h"

// GCC 12's AVX-512 headers build their "undefined" registers from self-initialised locals,
// which -Wuninitialized reports at every inlined use; the warning says nothing about this code.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace kiln::kernels::avx512 {
namespace {

// Lanes [0, count) of a 16-lane mask, count in [0, 16].
inline __mmask16 first_lanes(std::int64_t count) {
  return static_cast<__mmask16>((1u << static_cast<unsigned>(count)) - 1u);
}

// silu(g)·up = g / (1 + exp(-g)) · up, with a true division so the only approximation is exp.
inline __m512 silu_mul_ps(__m512 g, __m512 up) {
  const __m512 denominator = _mm512_add_ps(_mm512_set1_ps(1.0f), exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), g)));
  return _mm512_mul_ps(_mm512_div_ps(g, denominator), up);
}

// gelu(g)·up = g / (1 + exp(-2u)) · up with u = sqrt(2/pi) (g + 0.044715 g³): the tanh form as a
// sigmoid, so exp is again the only approximation. |g| is clamped to 30 inside u, where the
// sigmoid is 0 or 1 already, so that g³ cannot overflow to inf - inf.
inline __m512 gelu_tanh_mul_ps(__m512 g, __m512 up) {
  const __m512 gc = _mm512_min_ps(_mm512_max_ps(g, _mm512_set1_ps(-30.0f)), _mm512_set1_ps(30.0f));
  const __m512 inner = _mm512_mul_ps(gc, _mm512_fmadd_ps(_mm512_mul_ps(gc, gc), _mm512_set1_ps(0.044715f), _mm512_set1_ps(1.0f)));
  const __m512 minus_2u = _mm512_mul_ps(inner, _mm512_set1_ps(-2.0f * 0.7978845608028654f));
  const __m512 denominator = _mm512_add_ps(_mm512_set1_ps(1.0f), exp_ps(minus_2u));
  return _mm512_mul_ps(_mm512_div_ps(g, denominator), up);
}

// cap · tanh(x / cap) = cap · (1 - 2 / (1 + exp(2x / cap))); exp's inf at large x gives cap.
inline __m512 softcap_ps(__m512 x, float cap) {
  const __m512 e = exp_ps(_mm512_mul_ps(x, _mm512_set1_ps(2.0f / cap)));
  const __m512 t = _mm512_sub_ps(_mm512_set1_ps(1.0f), _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e)));
  return _mm512_mul_ps(t, _mm512_set1_ps(cap));
}

// 16 halves to floats; vcvtph2ps is exact, NaNs keep their payload and become quiet exactly as
// f16_to_f32 in core/half.h does.
inline __m512 load_f16(const std::uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m512 load_f16_masked(const std::uint16_t* p, __mmask16 mask) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, p));
}

// 16 floats to halves, round to nearest even. vcvtps2ph keeps part of a NaN's payload where
// core/half.h writes the canonical quiet NaN 0x7E00 (with the sign), so NaN lanes are patched.
inline __m256i to_f16(__m512 v) {
  const __m256i halves = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __mmask16 nan_lanes = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  if (nan_lanes == 0) return halves;
  const __m512i sign = _mm512_and_si512(_mm512_srli_epi32(_mm512_castps_si512(v), 16), _mm512_set1_epi32(0x8000));
  const __m256i canonical_nan = _mm512_cvtepi32_epi16(_mm512_or_si512(sign, _mm512_set1_epi32(0x7E00)));
  return _mm256_mask_blend_epi16(nan_lanes, halves, canonical_nan);
}

// Attention over the KV cache for the query heads that share one key/value head (grouped-query
// attention), at most kMaxHeads at a time so that every accumulator stays in a register.
constexpr std::int64_t kMaxHeads = 8;

// s[g * s_stride + r] = scale * (K row r · q_g) for NQ heads: each K row is converted from f16
// once for all the heads, and the NQ dot products of a row are reduced together. (Before: one
// dot_f16_f32 call per row and head, the row converted and the sum reduced every time; decode
// at position 1024 of the 1.1B model spent 16% of its time there.)
template <int NQ>
void scores_for_heads(const std::uint16_t* k, std::int64_t k_stride, std::int64_t n_rows, const float* q,
                      std::int64_t q_stride, std::int64_t hd, float scale, float* s, std::int64_t s_stride) {
  for (std::int64_t r = 0; r < n_rows; ++r) {
    const std::uint16_t* kr = k + r * k_stride;
    __m512 part[NQ];
#pragma GCC unroll 8
    for (int g = 0; g < NQ; ++g) part[g] = _mm512_setzero_ps();
    std::int64_t d = 0;
    for (; d + 16 <= hd; d += 16) {
      const __m512 kv = load_f16(kr + d);
#pragma GCC unroll 8
      for (int g = 0; g < NQ; ++g) part[g] = _mm512_fmadd_ps(kv, _mm512_loadu_ps(q + g * q_stride + d), part[g]);
    }
    if (d < hd) {
      const __mmask16 mask = first_lanes(hd - d);
      const __m512 kv = load_f16_masked(kr + d, mask);
#pragma GCC unroll 8
      for (int g = 0; g < NQ; ++g)
        part[g] = _mm512_fmadd_ps(kv, _mm512_maskz_loadu_ps(mask, q + g * q_stride + d), part[g]);
    }
    float sums[NQ];
    reduce_lanes(part, sums);
#pragma GCC unroll 8
    for (int g = 0; g < NQ; ++g) s[g * s_stride + r] = scale * sums[g];
  }
}

// out[g] += sum over rows r of p[g * p_stride + r] * V row r, for NQ heads, 32 columns at a
// time: the heads' 2 x NQ accumulators stay in registers across all the rows, and each V row is
// converted once for all the heads. (Before: one axpy per row and head, which loaded and stored
// the head's output every time; 12% of decode at position 1024.)
template <int NQ>
void values_for_heads(const std::uint16_t* v, std::int64_t v_stride, std::int64_t n_rows, const float* p,
                      std::int64_t p_stride, std::int64_t hd, float* out, std::int64_t out_stride) {
  for (std::int64_t d = 0; d < hd; d += 32) {
    const std::int64_t width = std::min<std::int64_t>(32, hd - d);
    const __mmask16 m0 = first_lanes(std::min<std::int64_t>(16, width));
    const __mmask16 m1 = first_lanes(std::max<std::int64_t>(0, width - 16));
    __m512 acc[NQ][2];
#pragma GCC unroll 8
    for (int g = 0; g < NQ; ++g) {
      acc[g][0] = _mm512_maskz_loadu_ps(m0, out + g * out_stride + d);
      acc[g][1] = _mm512_maskz_loadu_ps(m1, out + g * out_stride + d + 16);
    }
    for (std::int64_t r = 0; r < n_rows; ++r) {
      const std::uint16_t* vr = v + r * v_stride + d;
      const __m512 v0 = load_f16_masked(vr, m0);
      const __m512 v1 = load_f16_masked(vr + 16, m1);
#pragma GCC unroll 8
      for (int g = 0; g < NQ; ++g) {
        const __m512 pr = _mm512_set1_ps(p[g * p_stride + r]);
        acc[g][0] = _mm512_fmadd_ps(pr, v0, acc[g][0]);
        acc[g][1] = _mm512_fmadd_ps(pr, v1, acc[g][1]);
      }
    }
#pragma GCC unroll 8
    for (int g = 0; g < NQ; ++g) {
      _mm512_mask_storeu_ps(out + g * out_stride + d, m0, acc[g][0]);
      _mm512_mask_storeu_ps(out + g * out_stride + d + 16, m1, acc[g][1]);
    }
  }
}

}  // namespace

float rms_norm(const float* x, const float* w, float* y, std::int64_t n, float eps) {
  if (n <= 0) return 0.0f;
  // Four accumulators hide the FMA latency.
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps(), acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();
  std::int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + 16);
    const __m512 x2 = _mm512_loadu_ps(x + i + 32), x3 = _mm512_loadu_ps(x + i + 48);
    acc0 = _mm512_fmadd_ps(x0, x0, acc0);
    acc1 = _mm512_fmadd_ps(x1, x1, acc1);
    acc2 = _mm512_fmadd_ps(x2, x2, acc2);
    acc3 = _mm512_fmadd_ps(x3, x3, acc3);
  }
  for (; i < n; i += 16) {
    const __m512 xi = _mm512_maskz_loadu_ps(first_lanes(n - i < 16 ? n - i : 16), x + i);
    acc0 = _mm512_fmadd_ps(xi, xi, acc0);
  }
  const float sum_squares = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(sum_squares) / n + eps));
  const __m512 scale_v = _mm512_set1_ps(scale);
  for (i = 0; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), scale_v), _mm512_loadu_ps(w + i)));
  if (i < n) {
    const __mmask16 mask = first_lanes(n - i);
    const __m512 yi =
        _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(mask, x + i), scale_v), _mm512_maskz_loadu_ps(mask, w + i));
    _mm512_mask_storeu_ps(y + i, mask, yi);
  }
  return scale;
}

void softmax_inplace(float* x, std::int64_t n) {
  if (n <= 0) return;
  const __m512 minus_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 max_v = minus_inf;
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) max_v = _mm512_max_ps(max_v, _mm512_loadu_ps(x + i));
  if (i < n) max_v = _mm512_max_ps(max_v, _mm512_mask_loadu_ps(minus_inf, first_lanes(n - i), x + i));
  const __m512 max_b = _mm512_set1_ps(_mm512_reduce_max_ps(max_v));

  __m512 sum_v = _mm512_setzero_ps();
  for (i = 0; i + 16 <= n; i += 16) {
    const __m512 e = exp_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), max_b));
    _mm512_storeu_ps(x + i, e);
    sum_v = _mm512_add_ps(sum_v, e);
  }
  if (i < n) {
    const __mmask16 mask = first_lanes(n - i);
    const __m512 e = _mm512_maskz_mov_ps(mask, exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, x + i), max_b)));
    _mm512_mask_storeu_ps(x + i, mask, e);
    sum_v = _mm512_add_ps(sum_v, e);
  }
  const __m512 inv_sum = _mm512_set1_ps(static_cast<float>(1.0 / _mm512_reduce_add_ps(sum_v)));
  for (i = 0; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), inv_sum));
  if (i < n) {
    const __mmask16 mask = first_lanes(n - i);
    _mm512_mask_storeu_ps(x + i, mask, _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, x + i), inv_sum));
  }
}

void gelu_tanh_mul(const float* gate, const float* up, float* y, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, gelu_tanh_mul_ps(_mm512_loadu_ps(gate + i), _mm512_loadu_ps(up + i)));
  if (i < n) {
    const __mmask16 mask = first_lanes(n - i);
    _mm512_mask_storeu_ps(y + i, mask,
                          gelu_tanh_mul_ps(_mm512_maskz_loadu_ps(mask, gate + i), _mm512_maskz_loadu_ps(mask, up + i)));
  }
}

void softcap_inplace(float* x, std::int64_t n, float cap) {
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, softcap_ps(_mm512_loadu_ps(x + i), cap));
  if (i < n) {
    const __mmask16 mask = first_lanes(n - i);
    _mm512_mask_storeu_ps(x + i, mask, softcap_ps(_mm512_maskz_loadu_ps(mask, x + i), cap));
  }
}

void silu_mul(const float* gate, const float* up, float* y, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, silu_mul_ps(_mm512_loadu_ps(gate + i), _mm512_loadu_ps(up + i)));
  if (i < n) {
    const __mmask16 mask = first_lanes(n - i);
    _mm512_mask_storeu_ps(y + i, mask,
                          silu_mul_ps(_mm512_maskz_loadu_ps(mask, gate + i), _mm512_maskz_loadu_ps(mask, up + i)));
  }
}

void add_inplace(float* y, const float* x, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_loadu_ps(y + i), _mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 mask = first_lanes(n - i);
    _mm512_mask_storeu_ps(y + i, mask,
                          _mm512_add_ps(_mm512_maskz_loadu_ps(mask, y + i), _mm512_maskz_loadu_ps(mask, x + i)));
  }
}

float dot_f32(const float* a, const float* b, std::int64_t n) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps(), acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();
  std::int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
    acc2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), acc2);
    acc3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), acc3);
  }
  for (; i < n; i += 16) {
    const __mmask16 mask = first_lanes(n - i < 16 ? n - i : 16);
    acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, a + i), _mm512_maskz_loadu_ps(mask, b + i), acc0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
}

void axpy_f32(float alpha, const float* x, float* y, std::int64_t n) {
  const __m512 alpha_v = _mm512_set1_ps(alpha);
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(alpha_v, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  if (i < n) {
    const __mmask16 mask = first_lanes(n - i);
    _mm512_mask_storeu_ps(
        y + i, mask, _mm512_fmadd_ps(alpha_v, _mm512_maskz_loadu_ps(mask, x + i), _mm512_maskz_loadu_ps(mask, y + i)));
  }
}

float dot_f16_f32(const std::uint16_t* a, const float* b, std::int64_t n) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps(), acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();
  std::int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    acc0 = _mm512_fmadd_ps(load_f16(a + i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(load_f16(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
    acc2 = _mm512_fmadd_ps(load_f16(a + i + 32), _mm512_loadu_ps(b + i + 32), acc2);
    acc3 = _mm512_fmadd_ps(load_f16(a + i + 48), _mm512_loadu_ps(b + i + 48), acc3);
  }
  for (; i < n; i += 16) {
    const __mmask16 mask = first_lanes(n - i < 16 ? n - i : 16);
    acc0 = _mm512_fmadd_ps(load_f16_masked(a + i, mask), _mm512_maskz_loadu_ps(mask, b + i), acc0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
}

void axpy_f16_f32(float alpha, const std::uint16_t* x, float* y, std::int64_t n) {
  const __m512 alpha_v = _mm512_set1_ps(alpha);
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(alpha_v, load_f16(x + i), _mm512_loadu_ps(y + i)));
  if (i < n) {
    const __mmask16 mask = first_lanes(n - i);
    _mm512_mask_storeu_ps(y + i, mask,
                          _mm512_fmadd_ps(alpha_v, load_f16_masked(x + i, mask), _mm512_maskz_loadu_ps(mask, y + i)));
  }
}

void f32_to_f16_row(const float* x, std::uint16_t* y, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), to_f16(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 mask = first_lanes(n - i);
    _mm256_mask_storeu_epi16(y + i, mask, to_f16(_mm512_maskz_loadu_ps(mask, x + i)));
  }
}

void f16_to_f32_row(const std::uint16_t* x, float* y, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, load_f16(x + i));
  if (i < n) {
    const __mmask16 mask = first_lanes(n - i);
    _mm512_mask_storeu_ps(y + i, mask, load_f16_masked(x + i, mask));
  }
}

// The loops call this file's own dot/axpy, which the compiler inlines: what the fused form
// saves is a dispatched call per (head, position).
void attn_scores_f16(const std::uint16_t* k, std::int64_t k_stride, std::int64_t n_rows, const float* q,
                     std::int64_t q_stride, std::int64_t n_q, std::int64_t hd, float scale, float* s,
                     std::int64_t s_stride) {
  for (std::int64_t g0 = 0; g0 < n_q; g0 += kMaxHeads) {
    const float* qg = q + g0 * q_stride;
    float* sg = s + g0 * s_stride;
    switch (std::min<std::int64_t>(kMaxHeads, n_q - g0)) {
      case 1: scores_for_heads<1>(k, k_stride, n_rows, qg, q_stride, hd, scale, sg, s_stride); break;
      case 2: scores_for_heads<2>(k, k_stride, n_rows, qg, q_stride, hd, scale, sg, s_stride); break;
      case 3: scores_for_heads<3>(k, k_stride, n_rows, qg, q_stride, hd, scale, sg, s_stride); break;
      case 4: scores_for_heads<4>(k, k_stride, n_rows, qg, q_stride, hd, scale, sg, s_stride); break;
      case 5: scores_for_heads<5>(k, k_stride, n_rows, qg, q_stride, hd, scale, sg, s_stride); break;
      case 6: scores_for_heads<6>(k, k_stride, n_rows, qg, q_stride, hd, scale, sg, s_stride); break;
      case 7: scores_for_heads<7>(k, k_stride, n_rows, qg, q_stride, hd, scale, sg, s_stride); break;
      default: scores_for_heads<8>(k, k_stride, n_rows, qg, q_stride, hd, scale, sg, s_stride); break;
    }
  }
}

void attn_values_f16(const std::uint16_t* v, std::int64_t v_stride, std::int64_t n_rows, const float* p,
                     std::int64_t p_stride, std::int64_t n_q, std::int64_t hd, float* out, std::int64_t out_stride) {
  for (std::int64_t g0 = 0; g0 < n_q; g0 += kMaxHeads) {
    const float* pg = p + g0 * p_stride;
    float* og = out + g0 * out_stride;
    switch (std::min<std::int64_t>(kMaxHeads, n_q - g0)) {
      case 1: values_for_heads<1>(v, v_stride, n_rows, pg, p_stride, hd, og, out_stride); break;
      case 2: values_for_heads<2>(v, v_stride, n_rows, pg, p_stride, hd, og, out_stride); break;
      case 3: values_for_heads<3>(v, v_stride, n_rows, pg, p_stride, hd, og, out_stride); break;
      case 4: values_for_heads<4>(v, v_stride, n_rows, pg, p_stride, hd, og, out_stride); break;
      case 5: values_for_heads<5>(v, v_stride, n_rows, pg, p_stride, hd, og, out_stride); break;
      case 6: values_for_heads<6>(v, v_stride, n_rows, pg, p_stride, hd, og, out_stride); break;
      case 7: values_for_heads<7>(v, v_stride, n_rows, pg, p_stride, hd, og, out_stride); break;
      default: values_for_heads<8>(v, v_stride, n_rows, pg, p_stride, hd, og, out_stride); break;
    }
  }
}

}  // namespace kiln::kernels::avx512
