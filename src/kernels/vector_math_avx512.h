#pragma once
// Vector math shared by the AVX-512 translation units (*_avx512.cpp only): the forward ops and
// the backward ops of training use the same exp.
#include <immintrin.h>

namespace kiln::kernels::avx512 {

// exp(x) for 16 floats: x = n·ln2 + r with |r| <= ln2/2 (ln2 split in two parts so n·ln2 is
// exact), exp(r) by the Cephes degree-7 polynomial, then 2^n applied with vscalefps, which
// also gives +inf on overflow and 0 (through subnormals) on underflow. Where results are
// normal floats the relative error is below 2.5e-7 (silu_mul built on it measured 2.1e-7 from
// a double-precision silu over [-87, 87]; ops_test.cpp requires 1e-6). x is clamped to [-110, 89] first so that ±inf
// inputs cannot turn r into NaN; max() keeps a NaN input as NaN.
inline __m512 exp_ps(__m512 x) {
  x = _mm512_min_ps(_mm512_set1_ps(89.0f), _mm512_max_ps(_mm512_set1_ps(-110.0f), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

}  // namespace kiln::kernels::avx512
