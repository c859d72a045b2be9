// AVX-512 VNNI gemm of the legacy block formats for batches of activation rows (the decode step
// of many sequences): one activation row per 32-bit lane.
//
// The row-per-lane gemm of legacy_quants_avx512.cpp puts 16 weight rows in the lanes and
// broadcasts the activations; with 16 activation rows each unpacked weight block then needs 16
// accumulators besides its 8 quant registers, more than the register file holds, and the
// accumulators went through memory on every block (a 16-sequence decode step of the 1.1B q4_0
// model spent 75 ms of its 102 ms there). Here the roles are swapped: a column tile of 16
// activation rows is transposed once per call into VNNI order (lane m of vector v holds bytes
// 4v..4v+3 of row m's block), and each weight row's quants are broadcast 4 bytes at a time
// against it, so that one accumulator holds 16 outputs of one weight row. R weight rows share
// every load of the tile, and their quants are unpacked once per group of R rows into an
// L1-resident buffer that every column tile of the batch reuses.
//
// As in the other legacy kernels, weight quants are made unsigned by a per-format offset (q4_0:
// q - 8, q5_0: q - 16, q8_0: q ^ 0x80 for q - 128) and each block's integer sum starts from
// -offset * sum(activations of the block), computed with the transpose. The integer part is
// exact; results differ from the scalar reference only by float rounding order.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <cstddef>
#include <cstring>
#include <type_traits>

#include "kernels/blocks.h"
#include "kernels/legacy_quants_internal.h"
#include "kernels/row_count.h"
#include "kernels/row_group_avx512.h"
#include "kernels/simd_scalars.h"

namespace kiln::kernels::legacy {
namespace {

// Where a format keeps its fields, and how its quants become unsigned bytes.
template <std::size_t BlockBytes, int QsOff, int QhOff, bool HasMin, int Offset>
struct Format {
  static constexpr std::size_t kBlockBytes = BlockBytes;
  static constexpr bool kHasMin = HasMin;  // x = d * q + m (q4_1, q5_1); activations in q8_1
  static constexpr int kOffset = Offset;   // what is added to every quant to make it unsigned
  using ActBlock = std::conditional_t<HasMin, block_q8_1, block_q8_0>;

  // The 32 quants of the block at blk in order, as unsigned bytes.
  static KILN_INLINE __m256i quants(const std::uint8_t* blk) {
    if constexpr (Offset == 128) {
      return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + QsOff)),
                              _mm256_set1_epi8(static_cast<char>(0x80)));
    } else {
      const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + QsOff));
      const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(packed), _mm_srli_epi16(packed, 4), 1);
      __m256i q = _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
      if constexpr (QhOff >= 0) {
        const auto qh = static_cast<__mmask32>(static_cast<std::uint32_t>(load_i32(blk + QhOff)));
        q = _mm256_mask_add_epi8(q, qh, q, _mm256_set1_epi8(0x10));
      }
      return q;
    }
  }
};

using FormatQ4_0 = Format<sizeof(block_q4_0), 2, -1, false, 8>;
using FormatQ4_1 = Format<sizeof(block_q4_1), 4, -1, true, 0>;
using FormatQ5_0 = Format<sizeof(block_q5_0), 6, 2, false, 16>;
using FormatQ5_1 = Format<sizeof(block_q5_1), 8, 4, true, 0>;
using FormatQ8_0 = Format<sizeof(block_q8_0), 2, -1, false, 128>;

constexpr int kLanes = 16;     // activation rows per column tile
constexpr int kGroupRows = 8;  // weight rows sharing each load of a tile (8 accumulators, 8 sums)

// One block of a column tile: lane m of q[v] = activation bytes 4v..4v+3 of the tile's row m.
struct alignas(64) PanelBlock {
  __m512i q[8];
  __m512 d;      // the rows' block scales
  __m512i bias;  // -offset * sum of the row's 32 quants
  __m512 s;      // q8_1's d * sum(q) (formats with a zero point)
};

// Transposes the M activation rows into ceil(M / 16) tiles of nb blocks (scratch slot 0); rows
// of the last tile past M are zero, so their lanes compute zeros that are never stored.
template <typename F>
const PanelBlock* build_panel(const void* a, std::size_t a_stride, std::int64_t M, std::int64_t nb) {
  using A = typename F::ActBlock;
  const std::int64_t tiles = (M + kLanes - 1) / kLanes;
  auto* panel = reinterpret_cast<PanelBlock*>(legacy_scratch(0, sizeof(PanelBlock) * tiles * nb));
  const __m512i ones = _mm512_set1_epi8(1);
  const __m512i neg_offset = _mm512_set1_epi32(-F::kOffset);
  for (std::int64_t t = 0; t < tiles; ++t) {
    const std::int64_t rows = M - t * kLanes < kLanes ? M - t * kLanes : kLanes;
    const auto* src = static_cast<const std::uint8_t*>(a) + t * kLanes * a_stride;
    const std::size_t row_bytes = static_cast<std::size_t>(nb) * sizeof(A);
    RowGroup g = make_row_group(src, a_stride);
    if (rows < kLanes) {
      std::uint8_t* padded = legacy_scratch(2, kLanes * row_bytes);  // (16, row_bytes)
      for (std::int64_t r = 0; r < kLanes; ++r) {
        if (r < rows)
          std::memcpy(padded + r * row_bytes, src + r * a_stride, row_bytes);
        else
          std::memset(padded + r * row_bytes, 0, row_bytes);
      }
      g = make_row_group(padded, row_bytes);
    }
    for (std::int64_t b = 0; b < nb; ++b) {
      PanelBlock& p = panel[t * nb + b];
      const std::size_t off = static_cast<std::size_t>(b) * sizeof(A);
      __m512i q[8];
      load_dwords_16x4(g, off + offsetof(A, qs), q);
      load_dwords_16x4(g, off + offsetof(A, qs) + 16, q + 4);
      __m512i sum = _mm512_setzero_si512();
      for (int v = 0; v < 8; ++v) {
        _mm512_store_si512(&p.q[v], q[v]);
        sum = _mm512_dpbusd_epi32(sum, ones, q[v]);  // 1 (unsigned) x q (signed)
      }
      _mm512_store_si512(&p.bias, _mm512_mullo_epi32(sum, neg_offset));
      const __m512i ds = gather_dword(g, off);  // d in the low half, q8_1's s in the high half
      _mm512_store_ps(&p.d, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(ds)));
      if constexpr (F::kHasMin)
        _mm512_store_ps(&p.s, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(ds, 16))));
    }
  }
  return panel;
}

// R weight rows unpacked block-major: block b's quants at q + b * R * 32 (row r at r * 32),
// scales at d[b * R + r], zero points at m[b * R + r].
struct UnpackedRows {
  std::uint8_t* q;
  float* d;
  float* m;
};

template <typename F, int R>
KILN_INLINE void unpack_rows(const std::uint8_t* w, std::size_t w_stride, std::int64_t nb, const UnpackedRows& u) {
  for (int r = 0; r < R; ++r) {
    const std::uint8_t* row = w + r * w_stride;
    for (std::int64_t b = 0; b < nb; ++b) {
      const std::uint8_t* blk = row + b * F::kBlockBytes;
      _mm256_store_si256(reinterpret_cast<__m256i*>(u.q + (b * R + r) * 32), F::quants(blk));
      u.d[b * R + r] = half_to_float(load_u16(blk));
      if constexpr (F::kHasMin) u.m[b * R + r] = half_to_float(load_u16(blk + 2));
    }
  }
}

// acc[r] lane m = dot(weight row r, activation row m of the tile); `prefetch` (if not null)
// walks `prefetch_step` bytes further per block, so that the next group of weight rows arrives
// while this one is computed.
template <typename F, int R>
KILN_INLINE void group_tile(const UnpackedRows& u, const PanelBlock* tile, std::int64_t nb, __m512 acc[R],
                            const std::uint8_t* prefetch, std::size_t prefetch_step) {
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (std::int64_t b = 0; b < nb; ++b) {
    if (prefetch != nullptr) {
      for (std::size_t off = 0; off < prefetch_step; off += 64)
        _mm_prefetch(reinterpret_cast<const char*>(prefetch + off), _MM_HINT_T0);
      prefetch += prefetch_step;
    }
    const PanelBlock& p = tile[b];
    __m512i a[8];
    for (int v = 0; v < 8; ++v) a[v] = _mm512_load_si512(&p.q[v]);
    const __m512 da = _mm512_load_ps(&p.d);
    const __m512i bias = _mm512_load_si512(&p.bias);
    const std::uint8_t* q = u.q + b * R * 32;
    for (int r = 0; r < R; ++r) {
      // Two chains of four, so that each row's sum is not one long dependency.
      __m512i s0 = bias, s1 = _mm512_setzero_si512();
      for (int v = 0; v < 8; v += 2) {
        s0 = _mm512_dpbusd_epi32(s0, _mm512_set1_epi32(load_i32(q + r * 32 + 4 * v)), a[v]);
        s1 = _mm512_dpbusd_epi32(s1, _mm512_set1_epi32(load_i32(q + r * 32 + 4 * v + 4)), a[v + 1]);
      }
      const __m512 scale = _mm512_mul_ps(da, _mm512_set1_ps(u.d[b * R + r]));
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), scale, acc[r]);
      if constexpr (F::kHasMin) acc[r] = _mm512_fmadd_ps(_mm512_load_ps(&p.s), _mm512_set1_ps(u.m[b * R + r]), acc[r]);
    }
  }
}

// Rows [n0, n0 + R) of y for every activation row: unpack, then one pass per column tile.
template <typename F, int R>
void group(const std::uint8_t* w, std::size_t w_stride, const PanelBlock* panel, std::int64_t M, std::int64_t nb,
           std::int64_t n0, const std::uint8_t* next, std::size_t next_bytes, float* y, std::int64_t ldy) {
  std::uint8_t* mem = legacy_scratch(1, static_cast<std::size_t>(nb) * R * (32 + 8));
  const UnpackedRows u{mem, reinterpret_cast<float*>(mem + nb * R * 32),
                       reinterpret_cast<float*>(mem + nb * R * 32) + nb * R};
  unpack_rows<F, R>(w + n0 * w_stride, w_stride, nb, u);
  const __m512i lane_rows = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                               _mm512_set1_epi32(static_cast<int>(ldy)));
  const std::size_t step = next != nullptr ? (next_bytes + nb - 1) / nb : 0;
  for (std::int64_t m0 = 0; m0 < M; m0 += kLanes) {
    __m512 acc[R];
    // The first tile prefetches the next group: with one tile (up to 16 rows) that is all of them.
    group_tile<F, R>(u, panel + (m0 / kLanes) * nb, nb, acc, m0 == 0 ? next : nullptr, step);
    const int rows = static_cast<int>(M - m0 < kLanes ? M - m0 : kLanes);
    const auto lanes = static_cast<__mmask16>((1u << rows) - 1);
    float* out = y + m0 * ldy + n0;
    for (int r = 0; r < R; ++r) _mm512_mask_i32scatter_ps(out + r, lanes, lane_rows, acc[r], 4);
  }
}

template <typename F>
void columns_gemm(std::int64_t k, const void* w, std::size_t w_stride, const void* a, std::size_t a_stride,
                  std::int64_t M, std::int64_t n_begin, std::int64_t n_end, float* y, std::int64_t ldy) {
  if (M <= 0 || n_end <= n_begin) return;
  const std::int64_t nb = k / 32;
  const PanelBlock* panel = build_panel<F>(a, a_stride, M, nb);
  const auto* wb = static_cast<const std::uint8_t*>(w);
  std::int64_t n0 = n_begin;
  for (; n0 + kGroupRows <= n_end; n0 += kGroupRows) {
    // The next group (whole or partial): the next rows, contiguous after these.
    const std::int64_t next_rows = n_end - (n0 + kGroupRows) < kGroupRows ? n_end - (n0 + kGroupRows) : kGroupRows;
    const std::uint8_t* next = next_rows > 0 ? wb + (n0 + kGroupRows) * w_stride : nullptr;
    group<F, kGroupRows>(wb, w_stride, panel, M, nb, n0, next, static_cast<std::size_t>(next_rows) * w_stride, y, ldy);
  }
  with_row_count<kGroupRows - 1>(n_end - n0, [&](auto rows) {
    group<F, decltype(rows)::value>(wb, w_stride, panel, M, nb, n0, nullptr, 0, y, ldy);
  });
}

}  // namespace

void columns_gemm(DType w_type, std::int64_t k, const void* w, std::size_t w_stride, const void* a,
                  std::size_t a_stride, std::int64_t M, std::int64_t n_begin, std::int64_t n_end, float* y,
                  std::int64_t ldy) {
  switch (w_type) {
    case DType::Q4_0:
      return columns_gemm<FormatQ4_0>(k, w, w_stride, a, a_stride, M, n_begin, n_end, y, ldy);
    case DType::Q4_1:
      return columns_gemm<FormatQ4_1>(k, w, w_stride, a, a_stride, M, n_begin, n_end, y, ldy);
    case DType::Q5_0:
      return columns_gemm<FormatQ5_0>(k, w, w_stride, a, a_stride, M, n_begin, n_end, y, ldy);
    case DType::Q5_1:
      return columns_gemm<FormatQ5_1>(k, w, w_stride, a, a_stride, M, n_begin, n_end, y, ldy);
    case DType::Q8_0:
      return columns_gemm<FormatQ8_0>(k, w, w_stride, a, a_stride, M, n_begin, n_end, y, ldy);
    default:
      return;
  }
}

}  // namespace kiln::kernels::legacy
