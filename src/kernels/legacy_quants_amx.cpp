// AMX tile kernel of the legacy formats, used by the AVX-512 gemm for 16 activation rows at a
// time.
//
// The AVX-512 path already unpacks each group of 16 weight rows into blocks of eight 64-byte
// rows, "4 consecutive quants of each of 16 weight rows", which is exactly the VNNI layout AMX
// wants for its B operand. So per block of 32 quants one TDPBSUD multiplies a 16 x 32 tile of
// signed activation bytes (A) with that 8 x 64 tile of unsigned weight bytes (B) into 16 x 16
// int32 sums (C). The block scales cannot enter the integer product, so C goes through memory
// once per block and AVX-512 applies them: y[m][n] += (C[m][n] + bias[m]) * dw[n] * da[m]
// (+ mw[n] * s[m] for the zero point of q4_1 / q5_1).
// GCC 12 reports its own _mm512_undefined_* placeholders inside the conversion intrinsics as
// "maybe uninitialized"; the warning is about the header, not this code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include "kernels/amx_tiles.h"
#include "kernels/legacy_quants_internal.h"

namespace kiln::kernels::legacy {
namespace {

// acc[i] += (c[i] + bias[m0 + i]) * dw * da[m0 + i] (+ mw * s[m0 + i]) for the 16 rows of one block.
template <bool kHasMin>
inline __attribute__((always_inline)) void scale_block(const std::int32_t* c, const std::uint8_t* block,
                                                       const PackedWeights& w, const ActRows& act, std::int64_t m0,
                                                       std::int64_t b, __m512 acc[16]) {
  const __m512 dw = _mm512_load_ps(reinterpret_cast<const float*>(block + w.scale_offset));
  const __m512 mw = kHasMin ? _mm512_load_ps(reinterpret_cast<const float*>(block + w.min_offset)) : dw;
  for (int i = 0; i < 16; ++i) {
    const std::int64_t at = (m0 + i) * act.nb + b;
    const __m512i sum = _mm512_add_epi32(_mm512_load_si512(c + 16 * i), _mm512_set1_epi32(act.bias[at]));
    acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(dw, _mm512_set1_ps(act.d[at])), acc[i]);
    if constexpr (kHasMin) acc[i] = _mm512_fmadd_ps(mw, _mm512_set1_ps(act.s[at]), acc[i]);
  }
}

template <bool kHasMin>
void gemm_rows(const PackedWeights& w, const ActRows& act, std::int64_t m_begin, std::int64_t m_end, float* y,
               std::int64_t ldy, std::int64_t n0, std::uint16_t n_mask) {
  configure_paired_block_tiles();
  alignas(64) std::int32_t c[2][16 * 16];
  for (std::int64_t m0 = m_begin; m0 + 16 <= m_end; m0 += 16) {
    __m512 acc[16];
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_setzero_ps();
    const std::int8_t* a = act.qs + m0 * act.qs_stride;
    std::int64_t b = 0;
    for (; b + 2 <= w.nb; b += 2) {
      const std::uint8_t* block0 = w.blocks + b * w.block_stride;
      const std::uint8_t* block1 = block0 + w.block_stride;
      _tile_zero(0);
      _tile_zero(1);
      _tile_loadd(2, a + b * 32, act.qs_stride);
      _tile_loadd(4, block0, 64);
      _tile_loadd(3, a + b * 32 + 32, act.qs_stride);
      _tile_loadd(5, block1, 64);
      _tile_dpbsud(0, 2, 4);
      _tile_dpbsud(1, 3, 5);
      _tile_stored(0, c[0], 64);
      _tile_stored(1, c[1], 64);
      scale_block<kHasMin>(c[0], block0, w, act, m0, b, acc);
      scale_block<kHasMin>(c[1], block1, w, act, m0, b + 1, acc);
    }
    if (b < w.nb) {
      const std::uint8_t* block0 = w.blocks + b * w.block_stride;
      _tile_zero(0);
      _tile_loadd(2, a + b * 32, act.qs_stride);
      _tile_loadd(4, block0, 64);
      _tile_dpbsud(0, 2, 4);
      _tile_stored(0, c[0], 64);
      scale_block<kHasMin>(c[0], block0, w, act, m0, b, acc);
    }
    for (int i = 0; i < 16; ++i) _mm512_mask_storeu_ps(y + (m0 + i) * ldy + n0, n_mask, acc[i]);
  }
  _tile_release();
}

}  // namespace

void amx_gemm_rows(const PackedWeights& w, const ActRows& act, std::int64_t m_begin, std::int64_t m_end, float* y,
                   std::int64_t ldy, std::int64_t n0, std::uint16_t n_mask) {
  if (w.has_min) {
    gemm_rows<true>(w, act, m_begin, m_end, y, ldy, n0, n_mask);
  } else {
    gemm_rows<false>(w, act, m_begin, m_end, y, ldy, n0, n_mask);
  }
}

}  // namespace kiln::kernels::legacy
