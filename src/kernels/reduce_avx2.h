#pragma once
// Horizontal reductions of one 8-lane register, for the SIMD translation units (*_avx2.cpp and
// up, compiled with at least the AVX2 flags). Internal linkage and always inlined, like
// simd_scalars.h, so each translation unit keeps the encoding of its own flags.
#include <immintrin.h>

namespace kiln::kernels {
namespace {

// The sum of the 8 lanes: halves, then pairs, then the last two (the order every AVX2 kernel
// has always used, so sums are bit-identical to theirs).
inline __attribute__((always_inline)) float reduce_add(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// The largest of the 8 lanes.
inline __attribute__((always_inline)) float reduce_max(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

}  // namespace
}  // namespace kiln::kernels
