// The AVX2 path of kernels/ops.h: 8 floats per register. A row's tail (n mod 8 elements) is
// copied into a padded 8-lane buffer and run through the same vector code, so the tail gets
// exactly the arithmetic of the body and nothing outside [0, n) is touched.
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/ops_simd.h"
#include "kernels/reduce_avx2.h"

namespace kiln::kernels::avx2 {
namespace {

// Loads `count` < 8 floats into a register whose other lanes hold `fill`.
inline __m256 load_partial(const float* p, std::int64_t count, float fill) {
  alignas(32) float lanes[8];
  for (int j = 0; j < 8; ++j) lanes[j] = fill;
  std::memcpy(lanes, p, static_cast<std::size_t>(count) * sizeof(float));
  return _mm256_load_ps(lanes);
}
inline void store_partial(float* p, __m256 v, std::int64_t count) {
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, v);
  std::memcpy(p, lanes, static_cast<std::size_t>(count) * sizeof(float));
}
inline __m256 load_f16(const std::uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256 load_f16_partial(const std::uint16_t* p, std::int64_t count) {
  alignas(16) std::uint16_t lanes[8] = {};
  std::memcpy(lanes, p, static_cast<std::size_t>(count) * sizeof(std::uint16_t));
  return load_f16(lanes);
}

// exp(x) for 8 floats, the same reduction and Cephes polynomial as the AVX-512 path (maximum
// relative error below 2.5e-7 over the normal range). Without vscalefps, 2^n is built in two
// halves (2^(n/2) twice) so that n down to -159 still yields subnormals and 0 rather than
// garbage exponents; x is clamped to [-110, 89] and results above 88.72 become +inf.
inline __m256 exp_ps(__m256 x) {
  const __m256 overflow = _mm256_cmp_ps(x, _mm256_set1_ps(88.72283935546875f), _CMP_GT_OQ);
  x = _mm256_min_ps(_mm256_set1_ps(89.0f), _mm256_max_ps(_mm256_set1_ps(-110.0f), x));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // 2^n = 2^n1 · 2^n2 with n1 = n >> 1 (arithmetic) and n2 = n - n1, both within [-80, 64].
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i n1 = _mm256_srai_epi32(ni, 1);
  const __m256i n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 pow1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  const __m256 pow2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  const __m256 result = _mm256_mul_ps(_mm256_mul_ps(p, pow1), pow2);
  return _mm256_blendv_ps(result, _mm256_set1_ps(std::numeric_limits<float>::infinity()), overflow);
}

inline __m256 silu_mul_ps(__m256 g, __m256 up) {
  const __m256 denominator = _mm256_add_ps(_mm256_set1_ps(1.0f), exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), g)));
  return _mm256_mul_ps(_mm256_div_ps(g, denominator), up);
}

// gelu(g)·up = g / (1 + exp(-2u)) · up with u = sqrt(2/pi) (g + 0.044715 g³): the tanh form as a
// sigmoid, so exp is again the only approximation. |g| is clamped to 30 inside u, where the
// sigmoid is 0 or 1 already, so that g³ cannot overflow to inf - inf.
inline __m256 gelu_tanh_mul_ps(__m256 g, __m256 up) {
  const __m256 gc = _mm256_min_ps(_mm256_max_ps(g, _mm256_set1_ps(-30.0f)), _mm256_set1_ps(30.0f));
  const __m256 inner = _mm256_mul_ps(gc, _mm256_fmadd_ps(_mm256_mul_ps(gc, gc), _mm256_set1_ps(0.044715f), _mm256_set1_ps(1.0f)));
  const __m256 minus_2u = _mm256_mul_ps(inner, _mm256_set1_ps(-2.0f * 0.7978845608028654f));
  const __m256 denominator = _mm256_add_ps(_mm256_set1_ps(1.0f), exp_ps(minus_2u));
  return _mm256_mul_ps(_mm256_div_ps(g, denominator), up);
}

// cap · tanh(x / cap) = cap · (1 - 2 / (1 + exp(2x / cap))); exp's inf at large x gives cap.
inline __m256 softcap_ps(__m256 x, float cap) {
  const __m256 e = exp_ps(_mm256_mul_ps(x, _mm256_set1_ps(2.0f / cap)));
  const __m256 t = _mm256_sub_ps(_mm256_set1_ps(1.0f), _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e)));
  return _mm256_mul_ps(t, _mm256_set1_ps(cap));
}

// 8 floats to halves, round to nearest even, NaN lanes patched to core/half.h's canonical
// quiet NaN (sign | 0x7E00) where vcvtps2ph would keep part of the payload.
inline __m128i to_f16(__m256 v) {
  const __m128i halves = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 nan_lanes = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
  if (_mm256_movemask_ps(nan_lanes) == 0) return halves;
  const __m256i sign = _mm256_and_si256(_mm256_srli_epi32(_mm256_castps_si256(v), 16), _mm256_set1_epi32(0x8000));
  const __m256i nan32 = _mm256_or_si256(sign, _mm256_set1_epi32(0x7E00));
  const __m128i nan16 = _mm_packus_epi32(_mm256_castsi256_si128(nan32), _mm256_extracti128_si256(nan32, 1));
  const __m256i mask32 = _mm256_castps_si256(nan_lanes);
  const __m128i mask16 = _mm_packs_epi32(_mm256_castsi256_si128(mask32), _mm256_extracti128_si256(mask32, 1));
  return _mm_blendv_epi8(halves, nan16, mask16);
}

}  // namespace

float rms_norm(const float* x, const float* w, float* y, std::int64_t n, float eps) {
  if (n <= 0) return 0.0f;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
  std::int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
    const __m256 x2 = _mm256_loadu_ps(x + i + 16), x3 = _mm256_loadu_ps(x + i + 24);
    acc0 = _mm256_fmadd_ps(x0, x0, acc0);
    acc1 = _mm256_fmadd_ps(x1, x1, acc1);
    acc2 = _mm256_fmadd_ps(x2, x2, acc2);
    acc3 = _mm256_fmadd_ps(x3, x3, acc3);
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 xi = _mm256_loadu_ps(x + i);
    acc0 = _mm256_fmadd_ps(xi, xi, acc0);
  }
  if (i < n) {
    const __m256 xi = load_partial(x + i, n - i, 0.0f);
    acc0 = _mm256_fmadd_ps(xi, xi, acc0);
  }
  const float sum_squares = reduce_add(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(sum_squares) / n + eps));
  const __m256 scale_v = _mm256_set1_ps(scale);
  for (i = 0; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), scale_v), _mm256_loadu_ps(w + i)));
  if (i < n) {
    const __m256 yi =
        _mm256_mul_ps(_mm256_mul_ps(load_partial(x + i, n - i, 0.0f), scale_v), load_partial(w + i, n - i, 0.0f));
    store_partial(y + i, yi, n - i);
  }
  return scale;
}

void softmax_inplace(float* x, std::int64_t n) {
  if (n <= 0) return;
  const float minus_inf = -std::numeric_limits<float>::infinity();
  __m256 max_v = _mm256_set1_ps(minus_inf);
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) max_v = _mm256_max_ps(max_v, _mm256_loadu_ps(x + i));
  if (i < n) max_v = _mm256_max_ps(max_v, load_partial(x + i, n - i, minus_inf));
  const __m256 max_b = _mm256_set1_ps(reduce_max(max_v));

  __m256 sum_v = _mm256_setzero_ps();
  for (i = 0; i + 8 <= n; i += 8) {
    const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), max_b));
    _mm256_storeu_ps(x + i, e);
    sum_v = _mm256_add_ps(sum_v, e);
  }
  if (i < n) {
    // Padding lanes hold -inf so that their exp is 0 and the sum is untouched.
    const __m256 e = exp_ps(_mm256_sub_ps(load_partial(x + i, n - i, minus_inf), max_b));
    store_partial(x + i, e, n - i);
    sum_v = _mm256_add_ps(sum_v, e);
  }
  const __m256 inv_sum = _mm256_set1_ps(static_cast<float>(1.0 / reduce_add(sum_v)));
  for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv_sum));
  if (i < n) store_partial(x + i, _mm256_mul_ps(load_partial(x + i, n - i, 0.0f), inv_sum), n - i);
}

void gelu_tanh_mul(const float* gate, const float* up, float* y, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, gelu_tanh_mul_ps(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  if (i < n)
    store_partial(y + i, gelu_tanh_mul_ps(load_partial(gate + i, n - i, 0.0f), load_partial(up + i, n - i, 0.0f)),
                  n - i);
}

void softcap_inplace(float* x, std::int64_t n, float cap) {
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, softcap_ps(_mm256_loadu_ps(x + i), cap));
  if (i < n) store_partial(x + i, softcap_ps(load_partial(x + i, n - i, 0.0f), cap), n - i);
}

void silu_mul(const float* gate, const float* up, float* y, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, silu_mul_ps(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  if (i < n)
    store_partial(y + i, silu_mul_ps(load_partial(gate + i, n - i, 0.0f), load_partial(up + i, n - i, 0.0f)), n - i);
}

void add_inplace(float* y, const float* x, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
  for (; i < n; ++i) y[i] += x[i];
}

float dot_f32(const float* a, const float* b, std::int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
  std::int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
    acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  if (i < n) acc0 = _mm256_fmadd_ps(load_partial(a + i, n - i, 0.0f), load_partial(b + i, n - i, 0.0f), acc0);
  return reduce_add(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
}

void axpy_f32(float alpha, const float* x, float* y, std::int64_t n) {
  const __m256 alpha_v = _mm256_set1_ps(alpha);
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(alpha_v, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  if (i < n)
    store_partial(y + i, _mm256_fmadd_ps(alpha_v, load_partial(x + i, n - i, 0.0f), load_partial(y + i, n - i, 0.0f)),
                  n - i);
}

float dot_f16_f32(const std::uint16_t* a, const float* b, std::int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
  std::int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm256_fmadd_ps(load_f16(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(load_f16(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    acc2 = _mm256_fmadd_ps(load_f16(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
    acc3 = _mm256_fmadd_ps(load_f16(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(load_f16(a + i), _mm256_loadu_ps(b + i), acc0);
  if (i < n) acc0 = _mm256_fmadd_ps(load_f16_partial(a + i, n - i), load_partial(b + i, n - i, 0.0f), acc0);
  return reduce_add(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
}

void axpy_f16_f32(float alpha, const std::uint16_t* x, float* y, std::int64_t n) {
  const __m256 alpha_v = _mm256_set1_ps(alpha);
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(alpha_v, load_f16(x + i), _mm256_loadu_ps(y + i)));
  if (i < n)
    store_partial(y + i, _mm256_fmadd_ps(alpha_v, load_f16_partial(x + i, n - i), load_partial(y + i, n - i, 0.0f)),
                  n - i);
}

void f32_to_f16_row(const float* x, std::uint16_t* y, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), to_f16(_mm256_loadu_ps(x + i)));
  if (i < n) {
    alignas(16) std::uint16_t lanes[8];
    _mm_store_si128(reinterpret_cast<__m128i*>(lanes), to_f16(load_partial(x + i, n - i, 0.0f)));
    std::memcpy(y + i, lanes, static_cast<std::size_t>(n - i) * sizeof(std::uint16_t));
  }
}

void f16_to_f32_row(const std::uint16_t* x, float* y, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, load_f16(x + i));
  if (i < n) store_partial(y + i, load_f16_partial(x + i, n - i), n - i);
}

// The loops call this file's own dot/axpy, which the compiler inlines: what the fused form
// saves is a dispatched call per (head, position).
void attn_scores_f16(const std::uint16_t* k, std::int64_t k_stride, std::int64_t n_rows, const float* q,
                     std::int64_t q_stride, std::int64_t n_q, std::int64_t hd, float scale, float* s,
                     std::int64_t s_stride) {
  for (std::int64_t r = 0; r < n_rows; ++r)
    for (std::int64_t g = 0; g < n_q; ++g)
      s[g * s_stride + r] = scale * dot_f16_f32(k + r * k_stride, q + g * q_stride, hd);
}

void attn_values_f16(const std::uint16_t* v, std::int64_t v_stride, std::int64_t n_rows, const float* p,
                     std::int64_t p_stride, std::int64_t n_q, std::int64_t hd, float* out, std::int64_t out_stride) {
  for (std::int64_t g = 0; g < n_q; ++g)
    for (std::int64_t r = 0; r < n_rows; ++r)
      axpy_f16_f32(p[g * p_stride + r], v + r * v_stride, out + g * out_stride, hd);
}

}  // namespace kiln::kernels::avx2
