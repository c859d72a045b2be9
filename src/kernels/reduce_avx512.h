#pragma once
// Horizontal sums of several 16-lane registers at once, for AVX-512 translation units only
// (*_avx512.cpp, compiled with the AVX-512 flags).
#include <immintrin.h>

namespace kiln::kernels {

// sums[j] = the sum of the 16 lanes of acc[j]. Groups of four registers are reduced together
// by a transposing tree (about 14 instructions per four sums instead of 8 per sum), which
// matters where many short dot products end: float tiles, attention scores.
template <int N>
inline void reduce_lanes(const __m512 (&acc)[N], float* sums) {
  int j = 0;
  for (; j + 4 <= N; j += 4) {
    // 128-bit blocks: t01 = [a0+a2, a1+a3, b0+b2, b1+b3], t23 likewise for c, d.
    const __m512 t01 =
        _mm512_add_ps(_mm512_shuffle_f32x4(acc[j], acc[j + 1], 0x44), _mm512_shuffle_f32x4(acc[j], acc[j + 1], 0xEE));
    const __m512 t23 = _mm512_add_ps(_mm512_shuffle_f32x4(acc[j + 2], acc[j + 3], 0x44),
                                     _mm512_shuffle_f32x4(acc[j + 2], acc[j + 3], 0xEE));
    // Block q of u holds four partial sums of acc[j + q].
    const __m512 u = _mm512_add_ps(_mm512_shuffle_f32x4(t01, t23, 0x88), _mm512_shuffle_f32x4(t01, t23, 0xDD));
    const __m512 v = _mm512_add_ps(u, _mm512_shuffle_ps(u, u, 0x4E));
    const __m512 w = _mm512_add_ps(v, _mm512_shuffle_ps(v, v, 0xB1));  // every lane of block q: the total
    const __m512 firsts = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), w);
    _mm_storeu_ps(sums + j, _mm512_castps512_ps128(firsts));
  }
  for (; j < N; ++j) sums[j] = _mm512_reduce_add_ps(acc[j]);
}

}  // namespace kiln::kernels
