#pragma once
// Groups of 16 weight rows read one row per lane, shared by the AVX-512 kernels of the legacy
// and the affine families (*_avx512.cpp only: everything here is AVX-512 code). Internal linkage
// and always inlined, like simd_scalars.h, so no copy is shared with another translation unit.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/simd_scalars.h"

namespace kiln::kernels {
namespace {

// 16 weight rows, row r at base + r * stride. A last group of fewer rows is first copied into
// scratch (tail_row_group), so that every lane reads a real row and the kernels address all 16
// rows from one base and one stride instead of 16 pointers.
struct RowGroup {
  const std::uint8_t* base;
  std::size_t stride;
  __m512i offsets;  // lane r = r * stride, for gathers
};

KILN_INLINE RowGroup make_row_group(const std::uint8_t* base, std::size_t stride) {
  const __m512i r = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  return RowGroup{base, stride, _mm512_mullo_epi32(r, _mm512_set1_epi32(static_cast<int>(stride)))};
}

// The `valid` (< 16) rows at `first`, copied into slot 2 of the family's per-thread scratch
// (legacy_scratch or affine_scratch) with the last one repeated up to 16 rows.
inline RowGroup tail_row_group(std::uint8_t* (*scratch)(int slot, std::size_t bytes), const std::uint8_t* first,
                               std::size_t stride, int valid, std::size_t row_bytes) {
  std::uint8_t* rows = scratch(2, 16 * row_bytes);  // (16, row_bytes)
  for (int r = 0; r < 16; ++r)
    std::memcpy(rows + r * row_bytes, first + (r < valid ? r : valid - 1) * stride, row_bytes);
  return make_row_group(rows, row_bytes);
}

// u[t] lane r = the 32-bit word t of the 16 bytes at row r + off.
KILN_INLINE void load_dwords_16x4(const RowGroup& g, std::size_t off, __m512i u[4]) {
  const std::uint8_t* p = g.base + off;
  const std::size_t s = g.stride, s4 = 4 * g.stride;
  const std::uint8_t* quarter[4] = {p, p + s4, p + 2 * s4, p + 3 * s4};  // rows 0, 4, 8, 12
  __m512i z[4];
  for (int i = 0; i < 4; ++i) {
    // z[i]'s 128-bit lane j holds row 4j + i. The lane index of vinserti32x4 is an immediate,
    // so the three inserts are spelled out (a loop only compiles when the optimizer unrolls it).
    z[i] = _mm512_zextsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(quarter[0] + i * s)));
    z[i] = _mm512_inserti32x4(z[i], _mm_loadu_si128(reinterpret_cast<const __m128i*>(quarter[1] + i * s)), 1);
    z[i] = _mm512_inserti32x4(z[i], _mm_loadu_si128(reinterpret_cast<const __m128i*>(quarter[2] + i * s)), 2);
    z[i] = _mm512_inserti32x4(z[i], _mm_loadu_si128(reinterpret_cast<const __m128i*>(quarter[3] + i * s)), 3);
  }
  // A 4x4 transpose inside each 128-bit lane leaves word t of row 4j + i at lane 4j + i of u[t].
  const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
  const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
  u[0] = _mm512_unpacklo_epi64(t0, t2);
  u[1] = _mm512_unpackhi_epi64(t0, t2);
  u[2] = _mm512_unpacklo_epi64(t1, t3);
  u[3] = _mm512_unpackhi_epi64(t1, t3);
}

// Lane r = the 32 bits at row r + off.
KILN_INLINE __m512i gather_dword(const RowGroup& g, std::size_t off) {
  return _mm512_i32gather_epi32(g.offsets, g.base + off, 1);
}

// y[(m0 + i) * ldy + n0 + r] = lane r of acc[i] for the lanes r in mask: MR rows of a tile
// of 16 output columns.
template <int MR>
KILN_INLINE void store_tile(const __m512 acc[MR], float* y, std::int64_t ldy, std::int64_t m0, std::int64_t n0,
                            __mmask16 mask) {
  for (int i = 0; i < MR; ++i) _mm512_mask_storeu_ps(y + (m0 + i) * ldy + n0, mask, acc[i]);
}

// The tiles of two row groups worked on together (the gemms' gemm_direct_pair): lane r of
// acc0[i] / acc1[i] is output column n0 + r * row_step / n1 + r * row_step of row i; with
// row_step 1 the columns are consecutive, else they are scattered.
template <int MR>
KILN_INLINE void store_tile_pair(const __m512 acc0[MR], const __m512 acc1[MR], float* y, std::int64_t ldy,
                                 std::int64_t n0, std::int64_t n1, std::int64_t row_step) {
  if (row_step == 1) {
    store_tile<MR>(acc0, y, ldy, 0, n0, 0xFFFF);
    store_tile<MR>(acc1, y, ldy, 0, n1, 0xFFFF);
  } else {
    const __m512i lanes = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i idx = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(static_cast<int>(row_step)));
    for (int i = 0; i < MR; ++i) {
      _mm512_i32scatter_ps(y + i * ldy + n0, idx, acc0[i], 4);
      _mm512_i32scatter_ps(y + i * ldy + n1, idx, acc1[i], 4);
    }
  }
}

}  // namespace
}  // namespace kiln::kernels
