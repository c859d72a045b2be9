// The AMX prefill kernel: weights dequantized to bf16 panels in the tile "VNNI" layout, then
// TDPBF16PS over the full K with four f32 accumulator tiles. Compiled with AVX-512 and AMX
// flags; amx_gemm.cpp enters it only after the CPU and OS checks.
//
// Tile registers (palette 1, every tile 16 rows x 64 bytes):
//   tmm0..tmm3  C accumulators, 16 activation rows x 16 weight rows of f32
//   tmm4, tmm5  A: 16 activation rows x 32 k of bf16, loaded straight from a_bf16
//   tmm6, tmm7  B: 16 k-pairs x 16 weight rows, each element a pair (w[n][2p], w[n][2p+1])
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*(), which -Wmaybe-uninitialized
// reports at every inlined call; the values are fully written by the instructions.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "core/aligned_buffer.h"
#include "kernels/amx_gemm.h"
#include "kernels/amx_tiles.h"
#include "kernels/blocks.h"
#include "kernels/simd_scalars.h"

namespace kiln::kernels::amx_detail {
namespace {

constexpr int kTileRows = 16;            // rows of every tile
constexpr int kTileK = 32;               // bf16 elements of k per A tile row
constexpr int kTileBytes = 1024;         // 16 rows x 64 bytes
constexpr int kDecodeChunk = 256;        // k elements decoded per row at a time (one K-quant super-block)
constexpr int kWeightRowsPerBlock = 32;  // two B tiles side by side

// ---- bf16 helpers -------------------------------------------------------------------------

// Stores 32 floats (lo = elements 0..15, hi = 16..31) as bf16, rounding to nearest even.
// VCVTNE2PS2BF16 treats denormal inputs as zero, which only touches weights below 1e-38.
inline void store_bf16x32(std::uint16_t* dst, __m512 lo, __m512 hi) {
  const __m512bh packed = _mm512_cvtne2ps_pbh(hi, lo);
  _mm512_storeu_si512(dst, reinterpret_cast<const __m512i&>(packed));
}

// 16 bytes -> 16 unsigned int32 lanes.
inline __m512i load_u8x16(const std::uint8_t* p) {
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

inline __m512 to_float(__m512i v) { return _mm512_cvtepi32_ps(v); }

// ---- per-type row decoders: kc (<= 256, multiple of 32) weights from k0 into dst as bf16 ----
// k0 is a multiple of 256, so for the K-quants the chunk is exactly one super-block.

void decode_f32(const std::uint8_t* row, std::int64_t k0, int kc, std::uint16_t* dst) {
  const float* x = reinterpret_cast<const float*>(row) + k0;
  for (int j = 0; j < kc; j += 32) store_bf16x32(dst + j, _mm512_loadu_ps(x + j), _mm512_loadu_ps(x + j + 16));
}

void decode_f16(const std::uint8_t* row, std::int64_t k0, int kc, std::uint16_t* dst) {
  const std::uint16_t* x = reinterpret_cast<const std::uint16_t*>(row) + k0;
  for (int j = 0; j < kc; j += 32) {
    const __m512 lo = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + j)));
    const __m512 hi = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + j + 16)));
    store_bf16x32(dst + j, lo, hi);
  }
}

void decode_bf16(const std::uint8_t* row, std::int64_t k0, int kc, std::uint16_t* dst) {
  std::memcpy(dst, reinterpret_cast<const std::uint16_t*>(row) + k0, static_cast<std::size_t>(kc) * 2);
}

void decode_q8_0(const std::uint8_t* row, std::int64_t k0, int kc, std::uint16_t* dst) {
  const auto* b = reinterpret_cast<const block_q8_0*>(row) + k0 / QK8_0;
  for (int j = 0; j < kc; j += 32, ++b) {
    const __m512 d = _mm512_set1_ps(half_to_float(b->d));
    const __m512i q0 = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b->qs)));
    const __m512i q1 = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b->qs + 16)));
    store_bf16x32(dst + j, _mm512_mul_ps(to_float(q0), d), _mm512_mul_ps(to_float(q1), d));
  }
}

void decode_q4_0(const std::uint8_t* row, std::int64_t k0, int kc, std::uint16_t* dst) {
  const auto* b = reinterpret_cast<const block_q4_0*>(row) + k0 / QK4_0;
  const __m512i low4 = _mm512_set1_epi32(0x0F);
  for (int j = 0; j < kc; j += 32, ++b) {
    // d * (q - 8) as one FMA, q * d - 8 d: both terms are exact in f32 (an f16 times a small
    // integer), so the FMA's single rounding gives the same float as the reference.
    const float d_scalar = half_to_float(b->d);
    const __m512 d = _mm512_set1_ps(d_scalar), offset = _mm512_set1_ps(-8.0f * d_scalar);
    const __m512i q = load_u8x16(b->qs);
    const __m512 lo = _mm512_fmadd_ps(to_float(_mm512_and_si512(q, low4)), d, offset);
    const __m512 hi = _mm512_fmadd_ps(to_float(_mm512_srli_epi32(q, 4)), d, offset);
    store_bf16x32(dst + j, lo, hi);
  }
}

void decode_q4_1(const std::uint8_t* row, std::int64_t k0, int kc, std::uint16_t* dst) {
  const auto* b = reinterpret_cast<const block_q4_1*>(row) + k0 / QK4_1;
  const __m512i low4 = _mm512_set1_epi32(0x0F);
  for (int j = 0; j < kc; j += 32, ++b) {
    const __m512 d = _mm512_set1_ps(half_to_float(b->d));
    const __m512 m = _mm512_set1_ps(half_to_float(b->m));
    const __m512i q = load_u8x16(b->qs);
    const __m512 lo = _mm512_fmadd_ps(to_float(_mm512_and_si512(q, low4)), d, m);
    const __m512 hi = _mm512_fmadd_ps(to_float(_mm512_srli_epi32(q, 4)), d, m);
    store_bf16x32(dst + j, lo, hi);
  }
}

// The 5-bit quants of a q5 block: nibbles from qs, bit j of qh adds 16 to quant j.
inline void q5_quants(const std::uint8_t* qs, const std::uint8_t* qh_bytes, __m512i* lo, __m512i* hi) {
  std::uint32_t qh;
  std::memcpy(&qh, qh_bytes, sizeof(qh));
  const __m512i q = load_u8x16(qs);
  const __m512i sixteen = _mm512_set1_epi32(16);
  const __m512i l = _mm512_and_si512(q, _mm512_set1_epi32(0x0F));
  const __m512i h = _mm512_srli_epi32(q, 4);
  *lo = _mm512_mask_or_epi32(l, static_cast<__mmask16>(qh & 0xFFFF), l, sixteen);
  *hi = _mm512_mask_or_epi32(h, static_cast<__mmask16>(qh >> 16), h, sixteen);
}

void decode_q5_0(const std::uint8_t* row, std::int64_t k0, int kc, std::uint16_t* dst) {
  const auto* b = reinterpret_cast<const block_q5_0*>(row) + k0 / QK5_0;
  for (int j = 0; j < kc; j += 32, ++b) {
    // d * (q - 16) as q * d - 16 d, exact terms as in decode_q4_0.
    const float d_scalar = half_to_float(b->d);
    const __m512 d = _mm512_set1_ps(d_scalar), offset = _mm512_set1_ps(-16.0f * d_scalar);
    __m512i lo, hi;
    q5_quants(b->qs, b->qh, &lo, &hi);
    store_bf16x32(dst + j, _mm512_fmadd_ps(to_float(lo), d, offset), _mm512_fmadd_ps(to_float(hi), d, offset));
  }
}

void decode_q5_1(const std::uint8_t* row, std::int64_t k0, int kc, std::uint16_t* dst) {
  const auto* b = reinterpret_cast<const block_q5_1*>(row) + k0 / QK5_1;
  for (int j = 0; j < kc; j += 32, ++b) {
    const __m512 d = _mm512_set1_ps(half_to_float(b->d));
    const __m512 m = _mm512_set1_ps(half_to_float(b->m));
    __m512i lo, hi;
    q5_quants(b->qs, b->qh, &lo, &hi);
    store_bf16x32(dst + j, _mm512_fmadd_ps(to_float(lo), d, m), _mm512_fmadd_ps(to_float(hi), d, m));
  }
}

// kiln's affine a4gG / a8gG (blocks.h): per block of G, f16 d and m, then the quants, 4-bit
// ones packed per 32 as in q4_1. x = q * d + m as one FMA.
template <int Bits, int Group>
void decode_affine(const std::uint8_t* row, std::int64_t k0, int kc, std::uint16_t* dst) {
  constexpr std::size_t kBlockBytes = 4 + static_cast<std::size_t>(Group) * Bits / 8;
  const std::uint8_t* b = row + k0 / Group * kBlockBytes;
  for (int j = 0; j < kc; j += Group, b += kBlockBytes) {
    std::uint16_t d_bits, m_bits;
    std::memcpy(&d_bits, b, 2);
    std::memcpy(&m_bits, b + 2, 2);
    const __m512 d = _mm512_set1_ps(half_to_float(d_bits)), m = _mm512_set1_ps(half_to_float(m_bits));
    for (int r = 0; r < Group / 32; ++r) {
      __m512i lo, hi;
      if constexpr (Bits == 4) {
        const __m512i q = load_u8x16(b + 4 + 16 * r);
        lo = _mm512_and_si512(q, _mm512_set1_epi32(0x0F));
        hi = _mm512_srli_epi32(q, 4);
      } else {
        lo = load_u8x16(b + 4 + 32 * r);
        hi = load_u8x16(b + 4 + 32 * r + 16);
      }
      store_bf16x32(dst + j + 32 * r, _mm512_fmadd_ps(to_float(lo), d, m), _mm512_fmadd_ps(to_float(hi), d, m));
    }
  }
}

// The 6-bit scale and min of sub-block j of a q4_K / q5_K super-block (ggml's get_scale_min_k4).
inline void scale_min_k4(int j, const std::uint8_t* packed, int* scale, int* min) {
  if (j < 4) {
    *scale = packed[j] & 63;
    *min = packed[j + 4] & 63;
  } else {
    *scale = (packed[j + 4] & 0xF) | ((packed[j - 4] >> 6) << 4);
    *min = (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4);
  }
}

// q4_K and q5_K share the layout of the low nibbles: 32 bytes hold sub-blocks 2j (low nibbles)
// and 2j+1 (high nibbles). q5_K adds bit 2j / 2j+1 of qh[l] as 16 to quant l of those sub-blocks.
template <bool kHasHighBit>
void decode_q4_5_K(const std::uint8_t* d_bytes, const std::uint8_t* scales, const std::uint8_t* qh,
                   const std::uint8_t* qs, std::uint16_t* dst) {
  std::uint16_t d_bits, dmin_bits;
  std::memcpy(&d_bits, d_bytes, 2);
  std::memcpy(&dmin_bits, d_bytes + 2, 2);
  const float d = half_to_float(d_bits), dmin = half_to_float(dmin_bits);
  const __m512i low4 = _mm512_set1_epi32(0x0F);
  const __m512i sixteen = _mm512_set1_epi32(16);
  __m512i h0 = _mm512_setzero_si512(), h1 = _mm512_setzero_si512();
  if constexpr (kHasHighBit) {
    h0 = load_u8x16(qh);
    h1 = load_u8x16(qh + 16);
  }
  for (int j = 0; j < 4; ++j, qs += 32, dst += 64) {
    int sc_lo, m_lo, sc_hi, m_hi;
    scale_min_k4(2 * j, scales, &sc_lo, &m_lo);
    scale_min_k4(2 * j + 1, scales, &sc_hi, &m_hi);
    const __m512 d_lo = _mm512_set1_ps(d * static_cast<float>(sc_lo));
    const __m512 d_hi = _mm512_set1_ps(d * static_cast<float>(sc_hi));
    const __m512 neg_m_lo = _mm512_set1_ps(-(dmin * static_cast<float>(m_lo)));
    const __m512 neg_m_hi = _mm512_set1_ps(-(dmin * static_cast<float>(m_hi)));
    const __m512i q0 = load_u8x16(qs), q1 = load_u8x16(qs + 16);
    __m512i l0 = _mm512_and_si512(q0, low4), l1 = _mm512_and_si512(q1, low4);
    __m512i u0 = _mm512_srli_epi32(q0, 4), u1 = _mm512_srli_epi32(q1, 4);
    if constexpr (kHasHighBit) {
      const __m512i bit_lo = _mm512_set1_epi32(1 << (2 * j)), bit_hi = _mm512_set1_epi32(2 << (2 * j));
      l0 = _mm512_mask_or_epi32(l0, _mm512_test_epi32_mask(h0, bit_lo), l0, sixteen);
      l1 = _mm512_mask_or_epi32(l1, _mm512_test_epi32_mask(h1, bit_lo), l1, sixteen);
      u0 = _mm512_mask_or_epi32(u0, _mm512_test_epi32_mask(h0, bit_hi), u0, sixteen);
      u1 = _mm512_mask_or_epi32(u1, _mm512_test_epi32_mask(h1, bit_hi), u1, sixteen);
    }
    store_bf16x32(dst, _mm512_fmadd_ps(to_float(l0), d_lo, neg_m_lo), _mm512_fmadd_ps(to_float(l1), d_lo, neg_m_lo));
    store_bf16x32(dst + 32, _mm512_fmadd_ps(to_float(u0), d_hi, neg_m_hi),
                  _mm512_fmadd_ps(to_float(u1), d_hi, neg_m_hi));
  }
}

void decode_q4_K(const std::uint8_t* row, std::int64_t k0, int /*kc*/, std::uint16_t* dst) {
  const auto* b = reinterpret_cast<const block_q4_K*>(row) + k0 / QK_K;
  decode_q4_5_K<false>(reinterpret_cast<const std::uint8_t*>(&b->d), b->scales, nullptr, b->qs, dst);
}

void decode_q5_K(const std::uint8_t* row, std::int64_t k0, int /*kc*/, std::uint16_t* dst) {
  const auto* b = reinterpret_cast<const block_q5_K*>(row) + k0 / QK_K;
  decode_q4_5_K<true>(reinterpret_cast<const std::uint8_t*>(&b->d), b->scales, b->qh, b->qs, dst);
}

// q6_K: each half of 128 holds quants l, l+32, l+64, l+96 (l < 32) in the low/high nibbles of
// ql[l], ql[l+32] and the 2-bit pairs of qh[l]; sub-blocks of 16 have their own int8 scale.
void decode_q6_K(const std::uint8_t* row, std::int64_t k0, int /*kc*/, std::uint16_t* dst) {
  const auto* b = reinterpret_cast<const block_q6_K*>(row) + k0 / QK_K;
  const float d = half_to_float(b->d);
  const __m512i low4 = _mm512_set1_epi32(0x0F);
  const __m512i three = _mm512_set1_epi32(3);
  const __m512i bias = _mm512_set1_epi32(32);
  const std::uint8_t* ql = b->ql;
  const std::uint8_t* qh = b->qh;
  const std::int8_t* sc = b->scales;
  for (int half = 0; half < 2; ++half, ql += 64, qh += 32, sc += 8, dst += 128) {
    // q[g][h]: quants of group g (offset 32 g) for l in [16 h, 16 h + 16).
    __m512 v[4][2];
    for (int h = 0; h < 2; ++h) {
      const __m512i a = load_u8x16(ql + 16 * h), c = load_u8x16(ql + 32 + 16 * h), hb = load_u8x16(qh + 16 * h);
      const __m512i q[4] = {
          _mm512_or_si512(_mm512_and_si512(a, low4), _mm512_slli_epi32(_mm512_and_si512(hb, three), 4)),
          _mm512_or_si512(_mm512_and_si512(c, low4),
                          _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hb, 2), three), 4)),
          _mm512_or_si512(_mm512_srli_epi32(a, 4),
                          _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hb, 4), three), 4)),
          _mm512_or_si512(_mm512_srli_epi32(c, 4), _mm512_slli_epi32(_mm512_srli_epi32(hb, 6), 4)),
      };
      for (int g = 0; g < 4; ++g) {
        const __m512 scale = _mm512_set1_ps(d * static_cast<float>(sc[h + 2 * g]));
        v[g][h] = _mm512_mul_ps(to_float(_mm512_sub_epi32(q[g], bias)), scale);
      }
    }
    for (int g = 0; g < 4; ++g) store_bf16x32(dst + 32 * g, v[g][0], v[g][1]);
  }
}

using DecodeFn = void (*)(const std::uint8_t* row, std::int64_t k0, int kc, std::uint16_t* dst);

DecodeFn decoder_for(DType t) {
  switch (t) {
    case DType::F32:
      return decode_f32;
    case DType::F16:
      return decode_f16;
    case DType::BF16:
      return decode_bf16;
    case DType::Q8_0:
      return decode_q8_0;
    case DType::Q4_0:
      return decode_q4_0;
    case DType::Q4_1:
      return decode_q4_1;
    case DType::Q5_0:
      return decode_q5_0;
    case DType::Q5_1:
      return decode_q5_1;
    case DType::Q4_K:
      return decode_q4_K;
    case DType::Q5_K:
      return decode_q5_K;
    case DType::Q6_K:
      return decode_q6_K;
    case DType::A4G64:
      return decode_affine<4, 64>;
    case DType::A4G128:
      return decode_affine<4, 128>;
    case DType::A8G32:
      return decode_affine<8, 32>;
    case DType::A8G64:
      return decode_affine<8, 64>;
    case DType::A8G128:
      return decode_affine<8, 128>;
    default:
      return nullptr;
  }
}

// ---- panel packing ------------------------------------------------------------------------

// Transposes a 16 x 16 matrix of 32-bit elements held in r[0..15] (row i in r[i]).
inline void transpose_16x16_epi32(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  // After this step u[4 g + j] holds, in 128-bit lane L, column 4 L + j of rows 4 g .. 4 g + 3.
  __m512i u[16];
  for (int g = 0; g < 4; ++g) {
    u[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
    u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
  }
  // A 4 x 4 transpose of 128-bit lanes across u[j], u[4 + j], u[8 + j], u[12 + j].
  for (int j = 0; j < 4; ++j) {
    const __m512i x0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88), x1 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xdd);
    const __m512i y0 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88);
    const __m512i y1 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xdd);
    r[j] = _mm512_shuffle_i32x4(x0, y0, 0x88);
    r[8 + j] = _mm512_shuffle_i32x4(x0, y0, 0xdd);
    r[4 + j] = _mm512_shuffle_i32x4(x1, y1, 0x88);
    r[12 + j] = _mm512_shuffle_i32x4(x1, y1, 0xdd);
  }
}

// Decodes `rows` (1..16) weight rows into a B panel: for each k step s of 32, one tile of
// 16 k-pairs x 16 weight rows at panel + s * 1024 bytes. Columns past `rows` hold whatever the
// staging buffer had; they only reach C columns that are never stored.
//   staging is (16, 256) bf16
void pack_panel(DecodeFn decode, const std::uint8_t* w, std::size_t w_stride, int rows, std::int64_t K,
                std::uint16_t* staging, std::uint8_t* panel) {
  for (std::int64_t k0 = 0; k0 < K; k0 += kDecodeChunk) {
    const int kc = static_cast<int>(K - k0 < kDecodeChunk ? K - k0 : kDecodeChunk);
    for (int r = 0; r < rows; ++r)
      decode(w + static_cast<std::size_t>(r) * w_stride, k0, kc, staging + r * kDecodeChunk);
    for (int s = 0; s < kc / kTileK; ++s) {
      __m512i v[16];
      for (int r = 0; r < 16; ++r) v[r] = _mm512_loadu_si512(staging + r * kDecodeChunk + s * kTileK);
      transpose_16x16_epi32(v);
      std::uint8_t* tile = panel + (k0 / kTileK + s) * kTileBytes;
      for (int p = 0; p < 16; ++p) _mm512_storeu_si512(tile + p * 64, v[p]);
    }
  }
}

// ---- the tile product ---------------------------------------------------------------------

// Tiles 0..7 all kTileRows x 64 bytes.
void configure_tiles() {
  TileConfig cfg{};
  cfg.palette_id = 1;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = kTileRows;
    cfg.colsb[t] = 64;
  }
  load_tile_config(cfg);
}

// Where one 16 x 16 C tile goes: straight into y when it is whole, else through a scratch tile.
struct OutputTile {
  float* y;  // element (0, 0) of the tile in y
  int rows, cols;
};

// Cache blocking. A chunk of weight rows is decoded into panels once and then multiplied with
// the activations block by block, so that the panels and one activation block stay in the L2
// cache (2 MB per core on Sapphire Rapids) together: about 768 KB of panels and 512 KB of
// activations. Without it, M = 512 rows of K = 2048 (2 MB) stream from L3 for every 32 weight
// rows.
struct BlockSizes {
  std::int64_t weight_rows;        // per decoded chunk, a multiple of 32
  std::int64_t activation_groups;  // groups of 16 activation rows per block, a multiple of 2
};

BlockSizes block_sizes(std::int64_t K) {
  const std::int64_t row_bytes = K * static_cast<std::int64_t>(sizeof(std::uint16_t));
  auto clamp = [](std::int64_t v, std::int64_t lo, std::int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); };
  const std::int64_t weight_rows = clamp((768 << 10) / row_bytes / kWeightRowsPerBlock, 1, 8) * kWeightRowsPerBlock;
  const std::int64_t activation_groups = clamp((512 << 10) / row_bytes / (2 * kTileRows), 1, 8) * 2;
  return {weight_rows, activation_groups};
}

struct ThreadScratch {
  AlignedBuffer panels;   // the chunk's B panels, each (K / 32) tiles of 1 KB
  AlignedBuffer staging;  // (16, 256) bf16
  AlignedBuffer a_tail;   // (16, K) bf16: the last M % 16 activation rows, padded to a tile
  alignas(64) float c_tile[kTileRows * kTileRows];
};

void store_c_tile_from_scratch(const float* c, const OutputTile& out, std::int64_t ldy) {
  for (int m = 0; m < out.rows; ++m) std::memcpy(out.y + m * ldy, c + m * kTileRows, out.cols * sizeof(float));
}

// Multiplies one or two A tiles (activation row groups) with one or two B panels over all k
// steps, accumulating in tmm0..tmm3, and writes the C tiles. The tile numbers are immediates,
// hence the template instead of loops.
template <bool kTwoA, bool kTwoB>
void multiply_tiles(const std::uint16_t* a0, std::size_t a0_stride_bytes, const std::uint16_t* a1,
                    std::size_t a1_stride_bytes, const std::uint8_t* b0, const std::uint8_t* b1, std::int64_t k_steps,
                    const OutputTile out[2][2], std::int64_t ldy, float* c_scratch) {
  _tile_zero(0);
  if constexpr (kTwoB) _tile_zero(1);
  if constexpr (kTwoA) _tile_zero(2);
  if constexpr (kTwoA && kTwoB) _tile_zero(3);
  for (std::int64_t s = 0; s < k_steps; ++s) {
    _tile_loadd(4, a0 + s * kTileK, a0_stride_bytes);
    _tile_loadd(6, b0 + s * kTileBytes, 64);
    if constexpr (kTwoB) _tile_loadd(7, b1 + s * kTileBytes, 64);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (kTwoB) _tile_dpbf16ps(1, 4, 7);
    if constexpr (kTwoA) {
      _tile_loadd(5, a1 + s * kTileK, a1_stride_bytes);
      _tile_dpbf16ps(2, 5, 6);
      if constexpr (kTwoB) _tile_dpbf16ps(3, 5, 7);
    }
  }
  const std::size_t y_stride_bytes = static_cast<std::size_t>(ldy) * sizeof(float);
  // The store macros need immediate tile numbers, so each of the four is spelled out.
#define KILN_STORE_C_TILE(tile, i, j)                           \
  do {                                                          \
    const OutputTile& o = out[i][j];                            \
    if (o.rows == kTileRows && o.cols == kTileRows) {           \
      _tile_stored(tile, o.y, y_stride_bytes);                  \
    } else {                                                    \
      _tile_stored(tile, c_scratch, kTileRows * sizeof(float)); \
      store_c_tile_from_scratch(c_scratch, o, ldy);             \
    }                                                           \
  } while (0)
  KILN_STORE_C_TILE(0, 0, 0);
  if constexpr (kTwoB) KILN_STORE_C_TILE(1, 0, 1);
  if constexpr (kTwoA) KILN_STORE_C_TILE(2, 1, 0);
  if constexpr (kTwoA && kTwoB) KILN_STORE_C_TILE(3, 1, 1);
#undef KILN_STORE_C_TILE
}

}  // namespace

bool has_fast_decoder(DType weight_type) { return decoder_for(weight_type) != nullptr; }

void convert_activations(const float* x, std::int64_t M, std::int64_t K, std::uint16_t* a_bf16) {
  // Integer rounding rather than VCVTNEPS2BF16, which flushes denormals: the result must match
  // kiln::f32_to_bf16 bit for bit. u + 0x7fff + lsb rounds to nearest even; NaNs become quiet.
  const __m512i one = _mm512_set1_epi32(1), round = _mm512_set1_epi32(0x7fff);
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  const __m512i quiet = _mm512_set1_epi32(64);
  const std::int64_t n = M * K;
  std::int64_t i = 0;
  auto convert16 = [&](__m512i u) {
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), one);
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(round, lsb)), 16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs_mask), inf);
    r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), quiet);
    return _mm512_cvtepi32_epi16(r);
  };
  for (; i + 16 <= n; i += 16) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(a_bf16 + i), convert16(_mm512_loadu_si512(x + i)));
  }
  if (i < n) {
    const __mmask16 rest = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm256_mask_storeu_epi16(a_bf16 + i, rest, convert16(_mm512_maskz_loadu_epi32(rest, x + i)));
  }
}

void gemm(DType weight_type, std::int64_t K, const void* w, std::size_t w_stride, const std::uint16_t* a_bf16,
          std::size_t lda, std::int64_t M, std::int64_t n_begin, std::int64_t n_end, float* y, std::int64_t ldy) {
  const DecodeFn decode = decoder_for(weight_type);
  thread_local ThreadScratch scratch;
  const std::int64_t k_steps = K / kTileK;
  const std::size_t panel_bytes = static_cast<std::size_t>(k_steps) * kTileBytes;
  scratch.panels.reserve(static_cast<std::size_t>(block_sizes(K).weight_rows / kTileRows) * panel_bytes);
  scratch.staging.reserve(kTileRows * kDecodeChunk * sizeof(std::uint16_t));
  auto* panels = scratch.panels.as<std::uint8_t>();
  auto* staging = scratch.staging.as<std::uint16_t>();

  // Activation row groups of 16; a partial last group is copied into a padded tile so that
  // every A tile load reads 16 whole rows.
  const std::int64_t full_groups = M / kTileRows;
  const int tail_rows = static_cast<int>(M % kTileRows);
  const std::int64_t groups = full_groups + (tail_rows > 0 ? 1 : 0);
  const std::uint16_t* tail = nullptr;
  if (tail_rows > 0) {
    scratch.a_tail.reserve(static_cast<std::size_t>(kTileRows * K) * sizeof(std::uint16_t));
    auto* t = scratch.a_tail.as<std::uint16_t>();
    for (int r = 0; r < tail_rows; ++r)
      std::memcpy(t + r * K, a_bf16 + (full_groups * kTileRows + r) * lda, static_cast<std::size_t>(K) * 2);
    tail = t;
  }
  auto group_rows = [&](std::int64_t g) { return g < full_groups ? kTileRows : tail_rows; };
  auto group_a = [&](std::int64_t g) { return g < full_groups ? a_bf16 + g * kTileRows * lda : tail; };
  auto group_stride = [&](std::int64_t g) {
    return (g < full_groups ? lda : static_cast<std::size_t>(K)) * sizeof(std::uint16_t);
  };

  configure_tiles();
  const auto* w_bytes = static_cast<const std::uint8_t*>(w);
  const BlockSizes blocks = block_sizes(K);
  for (std::int64_t c0 = n_begin; c0 < n_end; c0 += blocks.weight_rows) {
    // Decode the chunk's weight rows once; every activation block below reuses the panels.
    const std::int64_t c1 = c0 + blocks.weight_rows < n_end ? c0 + blocks.weight_rows : n_end;
    for (std::int64_t n0 = c0, p = 0; n0 < c1; n0 += kTileRows, ++p) {
      const int cols = static_cast<int>(c1 - n0 < kTileRows ? c1 - n0 : kTileRows);
      pack_panel(decode, w_bytes + n0 * w_stride, w_stride, cols, K, staging, panels + p * panel_bytes);
    }
    for (std::int64_t g0 = 0; g0 < groups; g0 += blocks.activation_groups) {
      const std::int64_t g1 = g0 + blocks.activation_groups < groups ? g0 + blocks.activation_groups : groups;
      for (std::int64_t n0 = c0; n0 < c1; n0 += kWeightRowsPerBlock) {
        const int block_rows = static_cast<int>(c1 - n0 < kWeightRowsPerBlock ? c1 - n0 : kWeightRowsPerBlock);
        const int cols0 = block_rows < kTileRows ? block_rows : kTileRows;
        const int cols1 = block_rows - cols0;
        const std::uint8_t* panel0 = panels + (n0 - c0) / kTileRows * panel_bytes;
        const std::uint8_t* panel1 = panel0 + panel_bytes;
        for (std::int64_t g = g0; g < g1; g += 2) {
          const bool two_a = g + 1 < g1;
          OutputTile out[2][2];
          for (int i = 0; i < (two_a ? 2 : 1); ++i) {
            float* y_row = y + (g + i) * kTileRows * ldy + n0;
            out[i][0] = {y_row, group_rows(g + i), cols0};
            out[i][1] = {y_row + kTileRows, group_rows(g + i), cols1};
          }
          const std::uint16_t* a0 = group_a(g);
          const std::uint16_t* a1 = two_a ? group_a(g + 1) : nullptr;
          const std::size_t a0_stride = group_stride(g), a1_stride = two_a ? group_stride(g + 1) : 0;
          float* c = scratch.c_tile;
          if (two_a && cols1 > 0)
            multiply_tiles<true, true>(a0, a0_stride, a1, a1_stride, panel0, panel1, k_steps, out, ldy, c);
          else if (two_a)
            multiply_tiles<true, false>(a0, a0_stride, a1, a1_stride, panel0, panel1, k_steps, out, ldy, c);
          else if (cols1 > 0)
            multiply_tiles<false, true>(a0, a0_stride, a1, a1_stride, panel0, panel1, k_steps, out, ldy, c);
          else
            multiply_tiles<false, false>(a0, a0_stride, a1, a1_stride, panel0, panel1, k_steps, out, ldy, c);
        }
      }
    }
  }
  _tile_release();
}

}  // namespace kiln::kernels::amx_detail
