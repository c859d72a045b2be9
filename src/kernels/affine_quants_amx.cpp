// AMX tile kernel of kiln's affine formats, used by the AVX-512 gemm for 16 activation rows at
// a time (as legacy_quants_amx.cpp is for the legacy formats).
//
// The AVX-512 path unpacks each group of 16 weight rows into runs of eight 64-byte rows, "4
// consecutive quants of each of 16 weight rows": AMX's VNNI layout for the B operand. Per run
// of 32 weights one TDPBSUD multiplies a 16 x 32 tile of signed activation bytes (A, loaded
// straight from the q8_1 blocks with the row stride) with that 8 x 64 tile of unsigned weight
// quants into 16 x 16 int32 sums (C). The activation scale of each run cannot enter the
// integer product, so C goes through memory once per run and AVX-512 applies it:
//   t[m][n] += C[m][n] * da[m][b], then once per weight group  y[m][n] += t * d[n] + m[n] * gs[m].
// GCC 12 reports its own _mm512_undefined_* placeholders inside the conversion intrinsics as
// "maybe uninitialized"; the warning is about the header, not this code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include "kernels/affine_quants_internal.h"
#include "kernels/amx_tiles.h"

namespace kiln::kernels::affine {
namespace {

constexpr std::size_t kActBlockBytes = 36;  // block_q8_1: f16 d, f16 s, 32 int8 quants
constexpr std::size_t kActQs = 4;

// t[i] += C[i] * da[m0 + i][b] for the 16 rows of one run.
inline __attribute__((always_inline)) void scale_run(const std::int32_t* c, const ActView& act, std::int64_t m0,
                                                     std::int64_t b, __m512 t[16]) {
  for (int i = 0; i < 16; ++i) {
    const __m512 sum = _mm512_cvtepi32_ps(_mm512_load_si512(c + 16 * i));
    t[i] = _mm512_fmadd_ps(sum, _mm512_set1_ps(act.d[(m0 + i) * act.nb + b]), t[i]);
  }
}

}  // namespace

void amx_gemm_rows(const PackedRows& w, const ActView& act, std::int64_t m_begin, std::int64_t m_end, float* y,
                   std::int64_t ldy, std::int64_t n0, std::uint16_t n_mask) {
  configure_paired_block_tiles();
  alignas(64) std::int32_t c[2][16 * 16];
  // The accumulators of y live in memory between groups: 16 of them plus the 16 partial sums t
  // would take every zmm register.
  alignas(64) float acc[16][16];
  const int runs = w.blocks_per_group;
  for (std::int64_t m0 = m_begin; m0 + 16 <= m_end; m0 += 16) {
    for (int i = 0; i < 16; ++i) _mm512_store_ps(acc[i], _mm512_setzero_ps());
    const std::uint8_t* a = act.rows + m0 * act.a_stride + kActQs;
    const auto a_stride = static_cast<long>(act.a_stride);
    for (std::int64_t g = 0; g < act.n_groups; ++g) {
      __m512 t[16];
      for (int i = 0; i < 16; ++i) t[i] = _mm512_setzero_ps();
      const std::int64_t b0 = g * runs;
      int r = 0;
      for (; r + 2 <= runs; r += 2) {
        const std::int64_t b = b0 + r;
        _tile_zero(0);
        _tile_zero(1);
        _tile_loadd(2, a + b * kActBlockBytes, a_stride);
        _tile_loadd(4, w.blocks + b * w.block_stride, 64);
        _tile_loadd(3, a + (b + 1) * kActBlockBytes, a_stride);
        _tile_loadd(5, w.blocks + (b + 1) * w.block_stride, 64);
        _tile_dpbsud(0, 2, 4);
        _tile_dpbsud(1, 3, 5);
        _tile_stored(0, c[0], 64);
        _tile_stored(1, c[1], 64);
        scale_run(c[0], act, m0, b, t);
        scale_run(c[1], act, m0, b + 1, t);
      }
      if (r < runs) {
        const std::int64_t b = b0 + r;
        _tile_zero(0);
        _tile_loadd(2, a + b * kActBlockBytes, a_stride);
        _tile_loadd(4, w.blocks + b * w.block_stride, 64);
        _tile_dpbsud(0, 2, 4);
        _tile_stored(0, c[0], 64);
        scale_run(c[0], act, m0, b, t);
      }
      const __m512 d = _mm512_load_ps(w.scales + g * 32), mn = _mm512_load_ps(w.scales + g * 32 + 16);
      for (int i = 0; i < 16; ++i) {
        __m512 v = _mm512_fmadd_ps(t[i], d, _mm512_load_ps(acc[i]));
        v = _mm512_fmadd_ps(mn, _mm512_set1_ps(act.gs[(m0 + i) * act.n_groups + g]), v);
        _mm512_store_ps(acc[i], v);
      }
    }
    for (int i = 0; i < 16; ++i) _mm512_mask_storeu_ps(y + (m0 + i) * ldy + n0, n_mask, _mm512_load_ps(acc[i]));
  }
  _tile_release();
}

}  // namespace kiln::kernels::affine
