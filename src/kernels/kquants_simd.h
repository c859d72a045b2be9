#pragma once
// Internal to the K-quant SIMD paths (included by kquants_avx2.cpp and kquants_avx512.cpp only,
// each compiled with its own target flags; everything here has internal linkage so the two
// copies never mix).
//
// Every K-quant super-block (256 weights) is first brought to one common form, UnpackedSuperBlock:
// unsigned quants q in element order plus, per group of 16 weights, an integer scale and an
// integer offset weight, so that for a q8_K activation block a (quants s, group sums bsums)
//     dot = d * a.d * sum_g scale[g] * sum_{i in g} q[i] * s[i]
//         - dmin * a.d * sum_g offset[g] * bsums[g].
// The dot kernels then serve all five types. Quants are unsigned (0..63), which is what the
// u8 x s8 instructions (vpmaddubsw, vpdpbusd) want; signed formats move their zero point into
// the offset term, which only needs the activation sums that q8_K already carries.
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/blocks.h"
#include "kernels/kquants_internal.h"
#include "kernels/reduce_avx2.h"
#include "kernels/simd_scalars.h"

#if !defined(__AVX2__) || !defined(__FMA__)
#error "kquants_simd.h needs AVX2 and FMA (include it from a *_avx2.cpp or *_avx512.cpp file)"
#endif

namespace kiln::kernels::kquant {
namespace {

// Held as vector values (not byte arrays) so that, unpacked and used at once, it stays in
// registers: the compiler forwards the values instead of storing and reloading them.
struct UnpackedSuperBlock {
  __m256i q[QK_K / 32];  // u8 quants, element order: q[c] holds elements 32c .. 32c + 31
  // s16 scale of each group of 16 weights, even groups first: position p < 8 holds group 2p,
  // position 8 + p group 2p + 1 (one 128-bit lane each, see the AVX2 kernel).
  __m256i scale;
  __m256i offset;  // s16 weight of bsums[g] in the offset term, group order
  float d;         // factor of the scaled quant sums
  float dmin;      // factor of the offset term, which is subtracted
};

// IEEE half to float with F16C, exact like f16_to_f32 in core/half.h.

// Scale of group 2p at p, of group 2p + 1 at 8 + p: byte shuffle for 16 scales in group order.
inline __m128i scales_even_odd(__m128i bytes_in_group_order) {
  const __m128i even_odd = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  return _mm_shuffle_epi8(bytes_in_group_order, even_odd);
}

// `value` in each byte of `bits` that has the bit of `mask` set, else 0 (one bit per mask byte).
inline __m256i high_bit_value(__m256i bits, __m256i mask, __m256i value) {
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(bits, mask), mask), value);
}

// q4_K / q5_K: decodes the 12 packed bytes into 8 scales (bytes 0..7) and 8 mins (8..15), the
// same reshuffle as get_scale_min_k4 done on 32-bit words. Reads 16 bytes from `packed`: the 12
// of the scales and 4 of the block's bytes that follow them.
inline __m128i scales_mins_k4(const std::uint8_t* packed) {
  // With u0, u1, u2 the three 32-bit words: scales 0-3 = u0 & 63 (per byte), scales 4-7 = low
  // nibbles of u2 plus the top bits of u0 at bits 4-5, mins 0-3 = u1 & 63, mins 4-7 = high
  // nibbles of u2 plus the top bits of u1.
  const __m128i u = _mm_loadu_si128(reinterpret_cast<const __m128i*>(packed));
  const __m128i low_src = _mm_shuffle_epi32(u, _MM_SHUFFLE(2, 1, 2, 0));   // u0, u2, u1, u2
  const __m128i high_src = _mm_shuffle_epi32(u, _MM_SHUFFLE(1, 1, 0, 0));  // u0, u0, u1, u1
  const __m128i low = _mm_and_si128(_mm_srlv_epi32(low_src, _mm_setr_epi32(0, 0, 0, 4)),
                                    _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
  // (x >> 6) << 4 per byte is (x >> 2) & 0x30 on the word: bits 6-7 of each byte to bits 4-5.
  const __m128i high = _mm_and_si128(_mm_srli_epi32(high_src, 2), _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
  return _mm_or_si128(low, high);
}

// Scales and offsets of the 32-weight sub-block formats (each sub-block is two groups).
inline void unpack_scales_k4(const std::uint8_t* packed, UnpackedSuperBlock& u) {
  const __m128i sm = scales_mins_k4(packed);
  // Groups 2p and 2p + 1 both use sub-block p: the even/odd layout is the 8 scales twice.
  const __m128i scales8 = _mm_unpacklo_epi64(sm, sm);
  u.scale = _mm256_cvtepu8_epi16(scales8);
  const __m128i mins_per_group =
      _mm_shuffle_epi8(sm, _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15));
  u.offset = _mm256_cvtepu8_epi16(mins_per_group);
}

inline void unpack(const block_q4_K& b, UnpackedSuperBlock& u) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  for (int p = 0; p < 4; ++p) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * p));
    u.q[2 * p] = _mm256_and_si256(v, low4);
    u.q[2 * p + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
  }
  unpack_scales_k4(b.scales, u);
  u.d = half_to_float(b.d);
  u.dmin = half_to_float(b.dmin);
}

inline void unpack(const block_q5_K& b, UnpackedSuperBlock& u) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i sixteen = _mm256_set1_epi8(16);
  const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh));
  for (int p = 0; p < 4; ++p) {
    // Element 64p + l takes its fifth bit from bit 2p of qh[l], element 64p + 32 + l from 2p + 1.
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * p));
    const __m256i lo = _mm256_or_si256(_mm256_and_si256(v, low4),
                                       high_bit_value(qh, _mm256_set1_epi8(static_cast<char>(1 << (2 * p))), sixteen));
    const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), low4),
                                       high_bit_value(qh, _mm256_set1_epi8(static_cast<char>(2 << (2 * p))), sixteen));
    u.q[2 * p] = lo;
    u.q[2 * p + 1] = hi;
  }
  unpack_scales_k4(b.scales, u);
  u.d = half_to_float(b.d);
  u.dmin = half_to_float(b.dmin);
}

// Signed per-group scales s (q6_K, q3_K) with quants stored as q + zero: the zero point moves
// into the offset term as zero * s[g] * bsums[g] (subtracted), with dmin = d.
inline void unpack_signed_scales(__m128i scales_i8, int zero_shift, UnpackedSuperBlock& u) {
  u.scale = _mm256_cvtepi8_epi16(scales_even_odd(scales_i8));
  u.offset = _mm256_slli_epi16(_mm256_cvtepi8_epi16(scales_i8), zero_shift);
}

inline void unpack(const block_q6_K& b, UnpackedSuperBlock& u) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i bits45 = _mm256_set1_epi8(0x30);
  for (int h = 0; h < 2; ++h) {
    // Per half: ql[l] holds elements l / l + 64, ql[32 + l] elements 32 + l / 96 + l, and
    // qh[l] bits 0-1, 2-3, 4-5, 6-7 the top bits of l, 32 + l, 64 + l, 96 + l.
    const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * h));
    const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * h + 32));
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * h));
    __m256i* q = u.q + 4 * h;
    const __m256i q0 = _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), bits45));
    const __m256i q1 = _mm256_or_si256(_mm256_and_si256(ql1, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), bits45));
    const __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), _mm256_and_si256(qh, bits45));
    const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                                       _mm256_and_si256(_mm256_srli_epi16(qh, 2), bits45));
    q[0] = q0;
    q[1] = q1;
    q[2] = q2;
    q[3] = q3;
  }
  // x = d * s * (q - 32): offset weight -32 * s, d carries the sign.
  unpack_signed_scales(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)), 5, u);
  u.d = half_to_float(b.d);
  u.dmin = u.d;
}

// 2-bit quants of q2_K / q3_K: element 128h + 32s + l is bits 2s..2s+1 of qs[32h + l].
inline void unpack_2bit(const std::uint8_t* qs, __m256i* q) {
  const __m256i three = _mm256_set1_epi8(3);
  for (int h = 0; h < 2; ++h) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * h));
    q[4 * h + 0] = _mm256_and_si256(v, three);
    q[4 * h + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 2), three);
    q[4 * h + 2] = _mm256_and_si256(_mm256_srli_epi16(v, 4), three);
    q[4 * h + 3] = _mm256_and_si256(_mm256_srli_epi16(v, 6), three);
  }
}

// The 16 scales of q3_K minus their offset 32, as int8 in group order. The 6-bit values are
// reassembled with 32-bit word operations as in ggml's kmask trick: low nibbles from bytes
// 0..7 (scales 0..7) and their high nibbles (scales 8..15), top two bits from bytes 8..11.
inline __m128i q3K_scales_i8(const std::uint8_t* packed12) {
  std::uint32_t packed[3];
  std::memcpy(packed, packed12, 12);
  const __m128i words = _mm_setr_epi32(static_cast<int>(packed[0]), static_cast<int>(packed[1]),
                                       static_cast<int>(packed[0]), static_cast<int>(packed[1]));
  const __m128i low = _mm_and_si128(_mm_srlv_epi32(words, _mm_setr_epi32(0, 0, 4, 4)), _mm_set1_epi8(0x0F));
  const __m128i top = _mm_set1_epi32(static_cast<int>(packed[2]));
  const __m128i high =
      _mm_slli_epi32(_mm_and_si128(_mm_srlv_epi32(top, _mm_setr_epi32(0, 2, 4, 6)), _mm_set1_epi8(0x03)), 4);
  return _mm_sub_epi8(_mm_or_si128(low, high), _mm_set1_epi8(32));
}

inline void unpack(const block_q3_K& b, UnpackedSuperBlock& u) {
  unpack_2bit(b.qs, u.q);
  // The third bit of element 32j + l is bit j of hmask[l]; it adds 4 to the stored quant.
  const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.hmask));
  const __m256i four = _mm256_set1_epi8(4);
  for (int j = 0; j < 8; ++j) {
    u.q[j] = _mm256_or_si256(u.q[j], high_bit_value(hm, _mm256_set1_epi8(static_cast<char>(1 << j)), four));
  }
  // x = d * (s - 32) * (q - 4).
  unpack_signed_scales(q3K_scales_i8(b.scales), 2, u);
  u.d = half_to_float(b.d);
  u.dmin = u.d;
}

inline void unpack(const block_q2_K& b, UnpackedSuperBlock& u) {
  unpack_2bit(b.qs, u.q);
  // scales[g]: low nibble the scale, high nibble the min, x = d * sc * q - dmin * m.
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales));
  const __m128i low4 = _mm_set1_epi8(0x0F);
  const __m128i scales = _mm_and_si128(packed, low4);
  const __m128i mins = _mm_and_si128(_mm_srli_epi16(packed, 4), low4);
  u.scale = _mm256_cvtepu8_epi16(scales_even_odd(scales));
  u.offset = _mm256_cvtepu8_epi16(mins);
  u.d = half_to_float(b.d);
  u.dmin = half_to_float(b.dmin);
}

// q8_K activations, bit-exact with quantize_row_q8_K_ref: the same scale from the first value of
// largest magnitude, and vcvtps2dq rounds half to even exactly as nearest_int does.
inline void quantize_row_q8_K_avx2(const float* x, void* dst, std::int64_t k) {
  auto* y = static_cast<block_q8_K*>(dst);
  const std::int64_t nb = k / QK_K;
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (std::int64_t i = 0; i < nb; ++i, x += QK_K) {
    __m256 amax8 = _mm256_setzero_ps();
    for (int j = 0; j < QK_K; j += 8) amax8 = _mm256_max_ps(amax8, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
    const float amax = reduce_max(amax8);
    if (!(amax > 0)) {
      y[i].d = 0;
      std::memset(y[i].qs, 0, QK_K);
      std::memset(y[i].bsums, 0, sizeof(y[i].bsums));
      continue;
    }
    float max = 0;
    const __m256 amax_v = _mm256_set1_ps(amax);
    for (int j = 0; j < QK_K; j += 8) {
      const int hits =
          _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)), amax_v, _CMP_EQ_OQ));
      if (hits) {
        max = x[j + __builtin_ctz(static_cast<unsigned>(hits))];
        break;
      }
    }
    const float iscale = -127.f / max;
    const __m256 iscale_v = _mm256_set1_ps(iscale);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int j = 0; j < QK_K; j += 32) {
      const __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(iscale_v, _mm256_loadu_ps(x + j)));
      const __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(iscale_v, _mm256_loadu_ps(x + j + 8)));
      const __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(iscale_v, _mm256_loadu_ps(x + j + 16)));
      const __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(iscale_v, _mm256_loadu_ps(x + j + 24)));
      // Saturating packs clamp at 127 like ggml's MIN(127, .); values never go below -127.
      const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs + j), _mm256_permutevar8x32_epi32(packed, order));
    }
    // Sums of each 16 quants: u8 ones x s8 quants in pairs, then pairs of pairs, then lanes.
    const __m256i ones8 = _mm256_set1_epi8(1);
    const __m256i ones16 = _mm256_set1_epi16(1);
    for (int j = 0; j < QK_K; j += 32) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs + j));
      const __m256i s4 = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q), ones16);  // 8 sums of 4
      const __m256i s8 = _mm256_hadd_epi32(s4, s4);                                  // per lane: 2 sums of 8, twice
      const __m256i s16 = _mm256_hadd_epi32(s8, s8);                                 // per lane: sum of 16
      y[i].bsums[j / 16] = static_cast<std::int16_t>(_mm256_extract_epi32(s16, 0));
      y[i].bsums[j / 16 + 1] = static_cast<std::int16_t>(_mm256_extract_epi32(s16, 4));
    }
    y[i].d = 1 / iscale;
  }
}

// ---- the tile product shared by the SIMD levels ----------------------------------------------
// Rows<MR> accumulates the dots of one weight row with MR activation rows:
//   Rows<MR>::Unpacked            the level's unpacked super-block (UnpackedSuperBlock or wider);
//   Rows<MR>::unpack(block, u)    unpacks one weight super-block;
//   Rows<MR>::add(u, a, i)        adds super-block i of the weight row (unpacked in u) against
//                                 super-block i of each activation row a[r];
//   Rows<MR>::result(r)           the finished dot of row r.

constexpr int kTileRows = 4;  // activation rows that share each unpacked weight super-block
// Decode streams each weight once. Asking for the lines 4 KiB ahead keeps more misses in flight
// than the hardware prefetcher alone (measured on Sapphire Rapids: 1 KiB and 16 KiB were slower).
constexpr int kPrefetchBytes = 4096;
// Decode reads kSpreadRows weight rows far apart at once (rows n, n + span, ...), each its own
// stream in its own pages, prefetched kSpreadPrefetchBytes ahead: one core streams several such
// rows much faster than one row after another. On a 1.1B Q4_K_M model (q4_K and q6_K rows),
// 2 threads, decode went from 29.0 to 39.2 tok/s (2 rows: 35.9, 8: 36.9; prefetching 640 bytes
// ahead 38.6, 4096 bytes 37.2).
constexpr int kSpreadRows = 4;
constexpr std::size_t kSpreadPrefetchBytes = 1024;

// R weight rows (w[0..R)) against MR activation rows, each weight super-block unpacked in
// registers and used at once: out[g * MR + r] = dot(w[g], a[r]), each row prefetched
// prefetch_bytes ahead. R > 1 is for rows far apart, each a stream of its own in its own pages
// (interleaving two or four neighbouring rows measured no faster on Sapphire Rapids).
template <template <int> class Rows, int MR, int R, typename Block>
inline void dot_rows_streaming(const Block* const* w, std::int64_t nb, const block_q8_K* const* a, float* out,
                               std::size_t prefetch_bytes) {
  Rows<MR> rows[R];
  for (std::int64_t i = 0; i < nb; ++i) {
#pragma GCC unroll 8
    for (int g = 0; g < R; ++g) {
      const char* ahead = reinterpret_cast<const char*>(w[g] + i) + prefetch_bytes;
      for (std::size_t line = 0; line < sizeof(Block); line += 64) _mm_prefetch(ahead + line, _MM_HINT_T0);
      typename Rows<MR>::Unpacked u;
      Rows<MR>::unpack(w[g][i], u);
      rows[g].add(u, a, i);
    }
  }
  for (int g = 0; g < R; ++g)
    for (int r = 0; r < MR; ++r) out[g * MR + r] = rows[g].result(r);
}

// Weight rows [n_begin, n_end) against MR activation rows: kSpreadRows far-apart rows at a time
// (n, n + span, ...), then the rows left over one at a time.
template <template <int> class Rows, int MR, typename Block>
void matvec_streaming(const std::uint8_t* w_bytes, std::size_t w_stride, std::int64_t nb, const block_q8_K* const* a,
                      std::int64_t n_begin, std::int64_t n_end, float* y, std::int64_t ldy) {
  constexpr int R = kSpreadRows;
  auto row = [&](std::int64_t n) { return reinterpret_cast<const Block*>(w_bytes + n * w_stride); };
  float out[R * MR];
  const std::int64_t span = (n_end - n_begin) / R;
  for (std::int64_t n = n_begin; n < n_begin + span; ++n) {
    const Block* w[R];
    for (int g = 0; g < R; ++g) w[g] = row(n + g * span);
    dot_rows_streaming<Rows, MR, R>(w, nb, a, out, kSpreadPrefetchBytes);
    for (int g = 0; g < R; ++g)
      for (int r = 0; r < MR; ++r) y[r * ldy + n + g * span] = out[g * MR + r];
  }
  for (std::int64_t n = n_begin + R * span; n < n_end; ++n) {
    const Block* w = row(n);
    dot_rows_streaming<Rows, MR, 1>(&w, nb, a, out, kPrefetchBytes);
    for (int r = 0; r < MR; ++r) y[r * ldy + n] = out[r];
  }
}

template <template <int> class Rows, int MR>
inline void dot_rows_unpacked(const typename Rows<MR>::Unpacked* u, std::int64_t nb, const block_q8_K* const* a,
                              float* out) {
  Rows<MR> rows;
  for (std::int64_t i = 0; i < nb; ++i) rows.add(u[i], a, i);
  for (int r = 0; r < MR; ++r) out[r] = rows.result(r);
}

// y[m * ldy + n] = dot(W row n, A row m), the GemmFn contract of kernels/matmul.h.
template <template <int> class Rows, typename Block>
void gemm_kquant(std::int64_t k, const void* w, std::size_t w_stride, const void* a, std::size_t a_stride,
                 std::int64_t M, std::int64_t n_begin, std::int64_t n_end, float* y, std::int64_t ldy) {
  const std::int64_t nb = k / QK_K;
  const auto* w_bytes = static_cast<const std::uint8_t*>(w);
  const auto* a_bytes = static_cast<const std::uint8_t*>(a);
  const block_q8_K* a_rows[kTileRows];
  float out[kTileRows];
  if (M < kTileRows) {
    // Few activation rows (decode): a matrix-vector product bound by memory bandwidth. Each weight
    // super-block is unpacked in registers and used at once.
    for (std::int64_t m = 0; m < M; ++m) a_rows[m] = reinterpret_cast<const block_q8_K*>(a_bytes + m * a_stride);
    switch (M) {
      case 1:
        matvec_streaming<Rows, 1, Block>(w_bytes, w_stride, nb, a_rows, n_begin, n_end, y, ldy);
        break;
      case 2:
        matvec_streaming<Rows, 2, Block>(w_bytes, w_stride, nb, a_rows, n_begin, n_end, y, ldy);
        break;
      case 3:
        matvec_streaming<Rows, 3, Block>(w_bytes, w_stride, nb, a_rows, n_begin, n_end, y, ldy);
        break;
      default:
        break;
    }
    return;
  }
  // Many rows (prefill): unpack each weight row once into a per-thread scratch row (L1/L2
  // resident), then sweep the activation rows over it kTileRows at a time.
  using Unpacked = typename Rows<1>::Unpacked;
  thread_local std::vector<Unpacked> scratch;
  if (static_cast<std::int64_t>(scratch.size()) < nb) scratch.resize(static_cast<std::size_t>(nb));
  Unpacked* u = scratch.data();
  for (std::int64_t n = n_begin; n < n_end; ++n) {
    const auto* w_row = reinterpret_cast<const Block*>(w_bytes + n * w_stride);
    for (std::int64_t i = 0; i < nb; ++i) Rows<1>::unpack(w_row[i], u[i]);
    std::int64_t m0 = 0;
    for (; m0 + kTileRows <= M; m0 += kTileRows) {
      for (int r = 0; r < kTileRows; ++r)
        a_rows[r] = reinterpret_cast<const block_q8_K*>(a_bytes + (m0 + r) * a_stride);
      dot_rows_unpacked<Rows, kTileRows>(u, nb, a_rows, out);
      for (int r = 0; r < kTileRows; ++r) y[(m0 + r) * ldy + n] = out[r];
    }
    const std::int64_t rest = M - m0;
    for (std::int64_t r = 0; r < rest; ++r)
      a_rows[r] = reinterpret_cast<const block_q8_K*>(a_bytes + (m0 + r) * a_stride);
    switch (rest) {
      case 1:
        dot_rows_unpacked<Rows, 1>(u, nb, a_rows, out);
        break;
      case 2:
        dot_rows_unpacked<Rows, 2>(u, nb, a_rows, out);
        break;
      case 3:
        dot_rows_unpacked<Rows, 3>(u, nb, a_rows, out);
        break;
      default:
        break;
    }
    for (std::int64_t r = 0; r < rest; ++r) y[(m0 + r) * ldy + n] = out[r];
  }
}

template <template <int> class Rows, typename Block>
float vec_dot_kquant(std::int64_t k, const void* w_row, const void* a_row) {
  const block_q8_K* a_rows[1] = {static_cast<const block_q8_K*>(a_row)};
  float out[1];
  const Block* row = static_cast<const Block*>(w_row);
  dot_rows_streaming<Rows, 1, 1>(&row, k / QK_K, a_rows, out, kPrefetchBytes);
  return out[0];
}

}  // namespace
}  // namespace kiln::kernels::kquant
