#pragma once
// Groups of 8 weight rows read one row per lane, shared by the AVX2 kernels of the legacy and the
// affine families (*_avx2.cpp only; the AVX-512 files use row_group_avx512.h's groups of 16).
// Internal linkage and always inlined, like simd_scalars.h.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernels/simd_scalars.h"

namespace kiln::kernels {
namespace {

struct RowGroup {
  const std::uint8_t* row[8];  // rows past the range repeat the last valid one
  __m256i offsets;             // row[r] - row[0] as int32, for gathers
};

// Rows n0 + r * span of w for r < valid (span 1: neighbouring rows), the last one repeated.
KILN_INLINE RowGroup make_row_group(const std::uint8_t* w, std::size_t w_stride, std::int64_t n0, int valid,
                                    std::int64_t span = 1) {
  RowGroup g;
  alignas(32) std::int32_t offsets[8];
  for (int r = 0; r < 8; ++r) {
    const int rr = r < valid ? r : valid - 1;
    g.row[r] = w + (n0 + rr * span) * w_stride;
    offsets[r] = static_cast<std::int32_t>(rr * span * static_cast<std::int64_t>(w_stride));
  }
  g.offsets = _mm256_load_si256(reinterpret_cast<const __m256i*>(offsets));
  return g;
}

// u[t] lane r = the 32-bit word t of the 16 bytes at row[r] + off.
KILN_INLINE void load_dwords_8x4(const RowGroup& g, std::size_t off, __m256i u[4]) {
  __m256i z[4];
  for (int i = 0; i < 4; ++i) {
    // z[i]'s 128-bit lane j holds row 4j + i.
    z[i] = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(g.row[4 + i] + off),
                               reinterpret_cast<const __m128i*>(g.row[i] + off));
  }
  const __m256i t0 = _mm256_unpacklo_epi32(z[0], z[1]), t1 = _mm256_unpackhi_epi32(z[0], z[1]);
  const __m256i t2 = _mm256_unpacklo_epi32(z[2], z[3]), t3 = _mm256_unpackhi_epi32(z[2], z[3]);
  u[0] = _mm256_unpacklo_epi64(t0, t2);
  u[1] = _mm256_unpackhi_epi64(t0, t2);
  u[2] = _mm256_unpacklo_epi64(t1, t3);
  u[3] = _mm256_unpackhi_epi64(t1, t3);
}

// Lane r = the 32 bits at row[r] + off.
KILN_INLINE __m256i gather_dword(const RowGroup& g, std::size_t off) {
  return _mm256_i32gather_epi32(reinterpret_cast<const int*>(g.row[0] + off), g.offsets, 1);
}

// The low 16 bits of each lane, read as halves.
KILN_INLINE __m256 low_half_to_float(__m256i v) {
  const __m256i packed =
      _mm256_shuffle_epi8(v, _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1, 0, 1, 4, 5, 8,
                                              9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1));
  return _mm256_cvtph_ps(_mm256_castsi256_si128(_mm256_permute4x64_epi64(packed, 0x08)));
}

}  // namespace
}  // namespace kiln::kernels
