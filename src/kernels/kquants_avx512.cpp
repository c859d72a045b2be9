// AVX-512 VNNI dot products of the K-quants with q8_K activations. vpdpbusd multiplies 64
// unsigned quants with 64 signed activations and sums each 4 into s32 (at most 4 * 63 * 127,
// so the sums fit s16); two such vectors are packed to s16 and vpdpwssd applies the per-group
// scales while summing pairs. One float FMA per super-block and activation row.
#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

// GCC 12's AVX-512 headers build some intrinsics from a self-initialized "undefined" register
// (__m512 __Y = __Y), which -Wuninitialized reports at every inlined use; the value is never read.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "kernels/kernel_families.h"
#include "kernels/kquants_simd.h"

namespace kiln::kernels::kquant {
namespace {

// After vpackssdw of the dpbusd sums of elements [0, 64) and [64, 128) (or [128, 192) and
// [192, 256)), 16-bit position 8L + i (L the 128-bit lane) holds the sum of 4 elements of
// group L for i < 4 and of group 4 + L for i >= 4 (plus 8 for the second pair). vpdpwssd then
// multiplies each position by the scale vpermw put there: these index tables name, for each
// position, where its group's scale sits in the source vector of 16-bit scales.
enum class ScaleSource {
  kGroupOrder,     // 16 group scales in group order (q6_K)
  kEvenOdd,        // UnpackedSuperBlock's layout: group 2p at p, group 2p + 1 at 8 + p
  kSubBlockOrder,  // 8 scales of 32-weight sub-blocks (q4_K, q5_K): group g uses g / 2
};

constexpr std::array<std::int16_t, 32> scale_pattern(int first_group, ScaleSource source) {
  std::array<std::int16_t, 32> idx{};
  for (int p = 0; p < 32; ++p) {
    const int lane = p / 8, i = p % 8;
    const int group = first_group + (i < 4 ? lane : 4 + lane);
    int at = group;
    if (source == ScaleSource::kEvenOdd) at = group % 2 == 0 ? group / 2 : 8 + group / 2;
    if (source == ScaleSource::kSubBlockOrder) at = group / 2;
    idx[p] = static_cast<std::int16_t>(at);
  }
  return idx;
}

template <ScaleSource source>
struct ScalePatterns {
  alignas(64) static constexpr std::array<std::int16_t, 32> low = scale_pattern(0, source);
  alignas(64) static constexpr std::array<std::int16_t, 32> high = scale_pattern(8, source);
};

// A super-block unpacked for vpdpbusd: 64 quants per register and the scales already placed
// for the two vpdpwssd. Same meaning as UnpackedSuperBlock (kquants_simd.h).
struct Unpacked512 {
  __m512i q[4];  // u8 quants, element order
  __m512i scale_low, scale_high;
  __m256i offset;  // s16 weight of bsums[g], group order
  float d, dmin;
};

template <ScaleSource source>
inline void place_scales(__m512i scales16, Unpacked512& u) {
  u.scale_low = _mm512_permutexvar_epi16(_mm512_load_si512(ScalePatterns<source>::low.data()), scales16);
  u.scale_high = _mm512_permutexvar_epi16(_mm512_load_si512(ScalePatterns<source>::high.data()), scales16);
}

inline __m512i join(__m256i low, __m256i high) { return _mm512_inserti64x4(_mm512_castsi256_si512(low), high, 1); }

// Types without a dedicated 512-bit unpack go through the common form.
template <typename Block>
inline void unpack512(const Block& b, Unpacked512& u) {
  UnpackedSuperBlock common;
  unpack(b, common);
  for (int p = 0; p < 4; ++p) u.q[p] = join(common.q[2 * p], common.q[2 * p + 1]);
  place_scales<ScaleSource::kEvenOdd>(_mm512_zextsi256_si512(common.scale), u);
  u.offset = common.offset;
  u.d = common.d;
  u.dmin = common.dmin;
}

// q4_K and q5_K: scales, mins and the two half-precision factors.
template <typename Block>
inline void unpack512_scales_k4(const Block& b, Unpacked512& u) {
  const __m128i sm = scales_mins_k4(b.scales);  // 8 scales, then 8 mins
  place_scales<ScaleSource::kSubBlockOrder>(_mm512_zextsi256_si512(_mm256_cvtepu8_epi16(sm)), u);
  u.offset = _mm256_cvtepu8_epi16(
      _mm_shuffle_epi8(sm, _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15)));
  const __m128 d_dmin = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(b.d | (std::uint32_t{b.dmin} << 16))));
  u.d = _mm_cvtss_f32(d_dmin);
  u.dmin = _mm_cvtss_f32(_mm_movehdup_ps(d_dmin));
}

// The 64 quants 64p .. 64p + 63 of q4_K / q5_K: their 32 qs bytes are broadcast to both halves
// and the upper half is shifted to its high nibbles, so a masked shift and an AND suffice.
inline __m512i low_nibbles_then_high(const std::uint8_t* qs32) {
  const __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs32)));
  return _mm512_and_si512(_mm512_mask_srli_epi16(v, 0xFFFF0000u, v, 4), _mm512_set1_epi8(0x0F));
}

inline void unpack512(const block_q4_K& b, Unpacked512& u) {
  for (int p = 0; p < 4; ++p) u.q[p] = low_nibbles_then_high(b.qs + 32 * p);
  unpack512_scales_k4(b, u);
}

// q5_K adds 16 where the fifth bit is set: bit 2p of qh[l] for element 64p + l, bit 2p + 1 for
// element 64p + 32 + l. qh broadcast to both halves is tested against those bits.
inline void unpack512(const block_q5_K& b, Unpacked512& u) {
  const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh)));
  const __m512i sixteen = _mm512_set1_epi8(16);
  for (int p = 0; p < 4; ++p) {
    const __m512i bits = _mm512_inserti64x4(_mm512_set1_epi8(static_cast<char>(1 << (2 * p))),
                                            _mm256_set1_epi8(static_cast<char>(2 << (2 * p))), 1);
    const __m512i q = low_nibbles_then_high(b.qs + 32 * p);
    u.q[p] = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(qh, bits), q, sixteen);
  }
  unpack512_scales_k4(b, u);
}

// q3_K: element 128h + 32s + l is bits 2s..2s+1 of qs[32h + l], plus 4 where bit 4h + s of
// hmask[l] is set; x = d * (scale - 32) * (q - 4).
inline void unpack512(const block_q3_K& b, Unpacked512& u) {
  const __m512i three = _mm512_set1_epi8(3);
  const __m512i four = _mm512_set1_epi8(4);
  const __m512i hm = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.hmask)));
  const __m512i shifts01 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
  const __m512i shifts23 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
  for (int h = 0; h < 2; ++h) {
    const __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * h)));
    for (int pair = 0; pair < 2; ++pair) {
      const int s = 2 * pair;  // shifts s and s + 1 in the two halves
      const __m512i q = _mm512_and_si512(_mm512_srlv_epi16(v, pair == 0 ? shifts01 : shifts23), three);
      const __m512i bits = _mm512_inserti64x4(_mm512_set1_epi8(static_cast<char>(1 << (4 * h + s))),
                                              _mm256_set1_epi8(static_cast<char>(1 << (4 * h + s + 1))), 1);
      u.q[2 * h + pair] = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(hm, bits), q, four);
    }
  }
  const __m128i scales8 = q3K_scales_i8(b.scales);
  const __m256i scales = _mm256_cvtepi8_epi16(scales8);
  place_scales<ScaleSource::kGroupOrder>(_mm512_zextsi256_si512(scales), u);
  u.offset = _mm256_slli_epi16(scales, 2);
  u.d = half_to_float(b.d);
  u.dmin = u.d;
}

// q6_K: per 128 quants, the 64 ql bytes give elements 0..63 (low nibbles) and 64..127 (high
// nibbles); qh broadcast to both halves supplies bits 4-5 after a per-half shift.
inline void unpack512(const block_q6_K& b, Unpacked512& u) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i bits45 = _mm512_set1_epi8(0x30);
  // Elements l and 32 + l take qh bits 0-1 and 2-3 to bits 4-5: shift left by 4 and by 2.
  const __m512i shifts_low = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
  for (int h = 0; h < 2; ++h) {
    const __m512i ql = _mm512_loadu_si512(b.ql + 64 * h);
    const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * h)));
    const __m512i high_low = _mm512_and_si512(_mm512_sllv_epi16(qh, shifts_low), bits45);
    // Elements 64 + l and 96 + l take bits 4-5 and 6-7: no shift, and right by 2.
    const __m512i high_high = _mm512_and_si512(_mm512_mask_srli_epi16(qh, 0xFFFF0000u, qh, 2), bits45);
    // (a & b) | c, as a ternary-logic truth table over a = 0xF0, b = 0xCC, c = 0xAA.
    u.q[2 * h] = _mm512_ternarylogic_epi32(ql, low4, high_low, 0xEA);
    u.q[2 * h + 1] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(ql, 4), low4, high_high, 0xEA);
  }
  const __m256i scales = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)));
  place_scales<ScaleSource::kGroupOrder>(_mm512_zextsi256_si512(scales), u);
  u.offset = _mm256_slli_epi16(scales, 5);  // x = d * s * (q - 32)
  u.d = half_to_float(b.d);
  u.dmin = u.d;
}

template <int MR>
struct Avx512Rows {
  using Unpacked = Unpacked512;
  template <typename Block>
  static void unpack(const Block& b, Unpacked& u) {
    unpack512(b, u);
  }

  // Two accumulators per row keep the two FMAs of a super-block off each other's latency.
  __m512 acc[MR];
  __m256 acc_offset[MR];

  Avx512Rows() {
    for (int r = 0; r < MR; ++r) {
      acc[r] = _mm512_setzero_ps();
      acc_offset[r] = _mm256_setzero_ps();
    }
  }

  void add(const Unpacked512& u, const block_q8_K* const* a, std::int64_t i) {
    for (int r = 0; r < MR; ++r) {
      const block_q8_K& b = a[r][i];
      const __m512i zero = _mm512_setzero_si512();
      const __m512i p0 = _mm512_dpbusd_epi32(zero, u.q[0], _mm512_loadu_si512(b.qs));
      const __m512i p1 = _mm512_dpbusd_epi32(zero, u.q[1], _mm512_loadu_si512(b.qs + 64));
      const __m512i p2 = _mm512_dpbusd_epi32(zero, u.q[2], _mm512_loadu_si512(b.qs + 128));
      const __m512i p3 = _mm512_dpbusd_epi32(zero, u.q[3], _mm512_loadu_si512(b.qs + 192));
      __m512i sum = _mm512_dpwssd_epi32(zero, _mm512_packs_epi32(p0, p1), u.scale_low);
      sum = _mm512_dpwssd_epi32(sum, _mm512_packs_epi32(p2, p3), u.scale_high);
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(u.d * b.d), acc[r]);
      const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.bsums));
      const __m256 offset_sums = _mm256_cvtepi32_ps(_mm256_madd_epi16(bsums, u.offset));
      acc_offset[r] = _mm256_fnmadd_ps(offset_sums, _mm256_set1_ps(u.dmin * b.d), acc_offset[r]);
    }
  }

  float result(int r) const {
    return _mm512_reduce_add_ps(_mm512_add_ps(acc[r], _mm512_zextps256_ps512(acc_offset[r])));
  }
};

// ---- prefill (many activation rows) -------------------------------------------------------------
// Weight rows are unpacked once, a panel at a time, into per-thread scratch, and tiles of
// kPrefillTile activation rows sweep each panel two weight rows at a time. The offset term is a small float dot product
// of its own: per super-block and group, (dmin * offset[g]) from the weight row times (a.d * bsums[g]) from the
// activation row, both prepared once, so it costs one FMA per super-block and activation row.

constexpr int kPrefillTile = 4;

// a.d * bsums[g] of one activation super-block, the activation side of the offset term. (A
// struct, as std::vector<__m512> would drop the vector type's alignment attribute.)
struct GroupSums {
  __m512 v;
};

struct PrefillSuperBlock {
  Unpacked512 u;
  __m512 offsets;  // dmin * offset[g], group order
};

inline void unpack_prefill(const Unpacked512& u, PrefillSuperBlock& out) {
  out.u = u;
  out.offsets = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(u.offset)), _mm512_set1_ps(u.dmin));
}

// NR (1 or 2) weight rows against MR activation rows: y[r * NR + j] = dot(w[j], a[r]).
// a_sums[r][i] = a.d * bsums[g] of super-block i of activation row r, as 16 floats. Each 128
// activations are loaded once and meet both weight rows, and each weight register meets all
// MR activation rows, which halves the loads per multiply-add against one row at a time.
template <int NR, int MR>
inline void prefill_tile(const PrefillSuperBlock* const* w, std::int64_t nb, const block_q8_K* const* a,
                         const GroupSums* const* a_sums, float* out) {
  __m512 acc[NR][MR];
  for (int j = 0; j < NR; ++j) {
    for (int r = 0; r < MR; ++r) acc[j][r] = _mm512_setzero_ps();
  }
  for (std::int64_t i = 0; i < nb; ++i) {
    __m512i sum[NR][MR];
    for (int j = 0; j < NR; ++j) {
      for (int r = 0; r < MR; ++r) sum[j][r] = _mm512_setzero_si512();
    }
    for (int half = 0; half < 2; ++half) {
      __m512i w0[NR], w1[NR], pattern[NR];
      for (int j = 0; j < NR; ++j) {
        const Unpacked512& u = w[j][i].u;
        w0[j] = u.q[2 * half];
        w1[j] = u.q[2 * half + 1];
        pattern[j] = half == 0 ? u.scale_low : u.scale_high;
      }
      for (int r = 0; r < MR; ++r) {
        __m512i x0 = _mm512_loadu_si512(a[r][i].qs + 128 * half);
        __m512i x1 = _mm512_loadu_si512(a[r][i].qs + 128 * half + 64);
        // Load each activation vector once into a register for both weight rows (left alone,
        // GCC folds the load into each vpdpbusd and loads it twice).
        if constexpr (NR > 1) asm("" : "+v"(x0), "+v"(x1));
        for (int j = 0; j < NR; ++j) {
          const __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w0[j], x0);
          const __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w1[j], x1);
          sum[j][r] = _mm512_dpwssd_epi32(sum[j][r], _mm512_packs_epi32(p0, p1), pattern[j]);
        }
      }
    }
    for (int j = 0; j < NR; ++j) {
      const __m512 d = _mm512_set1_ps(w[j][i].u.d);
      for (int r = 0; r < MR; ++r) {
        acc[j][r] =
            _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(sum[j][r]), d), _mm512_set1_ps(a[r][i].d), acc[j][r]);
        acc[j][r] = _mm512_fnmadd_ps(w[j][i].offsets, a_sums[r][i].v, acc[j][r]);
      }
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int j = 0; j < NR; ++j) out[r * NR + j] = _mm512_reduce_add_ps(acc[j][r]);
  }
}

template <int MR>
inline void prefill_rows(const PrefillSuperBlock* panel, std::int64_t n0, std::int64_t n1, std::int64_t nb,
                         const block_q8_K* const* a_rows, const GroupSums* const* a_sums, float* y, std::int64_t ldy) {
  const PrefillSuperBlock* w[2];
  float out[2 * MR];
  std::int64_t n = n0;
  for (; n + 2 <= n1; n += 2) {
    w[0] = panel + (n - n0) * nb;
    w[1] = w[0] + nb;
    prefill_tile<2, MR>(w, nb, a_rows, a_sums, out);
    for (int r = 0; r < MR; ++r) {
      y[r * ldy + n] = out[2 * r];
      y[r * ldy + n + 1] = out[2 * r + 1];
    }
  }
  if (n < n1) {
    w[0] = panel + (n - n0) * nb;
    prefill_tile<1, MR>(w, nb, a_rows, a_sums, out);
    for (int r = 0; r < MR; ++r) y[r * ldy + n] = out[r];
  }
}

template <typename Block>
void gemm_prefill(std::int64_t k, const void* w, std::size_t w_stride, const void* a, std::size_t a_stride,
                  std::int64_t M, std::int64_t n_begin, std::int64_t n_end, float* y, std::int64_t ldy) {
  const std::int64_t nb = k / QK_K;
  const auto* w_bytes = static_cast<const std::uint8_t*>(w);
  const auto* a_bytes = static_cast<const std::uint8_t*>(a);
  auto act_row = [&](std::int64_t m) { return reinterpret_cast<const block_q8_K*>(a_bytes + m * a_stride); };

  thread_local std::vector<GroupSums> sums;  // (M, nb)
  if (static_cast<std::int64_t>(sums.size()) < M * nb) sums.resize(static_cast<std::size_t>(M * nb));
  for (std::int64_t m = 0; m < M; ++m) {
    const block_q8_K* row = act_row(m);
    for (std::int64_t i = 0; i < nb; ++i) {
      const __m512 bsums =
          _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row[i].bsums))));
      sums[m * nb + i].v = _mm512_mul_ps(bsums, _mm512_set1_ps(row[i].d));
    }
  }

  // Weight rows are unpacked a panel at a time (about 32 KiB, so it stays in L1/L2); each tile of
  // activation rows (then L1-resident) sweeps the whole panel before the next tile comes in.
  const std::int64_t panel_rows =
      std::max<std::int64_t>(1, (std::int64_t{32} << 10) / (nb * static_cast<std::int64_t>(sizeof(PrefillSuperBlock))));
  thread_local std::vector<PrefillSuperBlock> scratch;  // (panel_rows, nb) unpacked super-blocks
  if (static_cast<std::int64_t>(scratch.size()) < panel_rows * nb) {
    scratch.resize(static_cast<std::size_t>(panel_rows * nb));
  }
  const block_q8_K* a_rows[kPrefillTile];
  const GroupSums* a_sums[kPrefillTile];
  for (std::int64_t n0 = n_begin; n0 < n_end; n0 += panel_rows) {
    const std::int64_t n1 = std::min(n_end, n0 + panel_rows);
    for (std::int64_t n = n0; n < n1; ++n) {
      const auto* w_row = reinterpret_cast<const Block*>(w_bytes + n * w_stride);
      PrefillSuperBlock* dst = scratch.data() + (n - n0) * nb;
      for (std::int64_t i = 0; i < nb; ++i) {
        Unpacked512 u;
        unpack512(w_row[i], u);
        unpack_prefill(u, dst[i]);
      }
    }
    for (std::int64_t m0 = 0; m0 < M; m0 += kPrefillTile) {
      const int rows = static_cast<int>(std::min<std::int64_t>(kPrefillTile, M - m0));
      for (int r = 0; r < rows; ++r) {
        a_rows[r] = act_row(m0 + r);
        a_sums[r] = sums.data() + (m0 + r) * nb;
      }
      const PrefillSuperBlock* panel = scratch.data();
      float* y_tile = y + m0 * ldy;
      switch (rows) {
        case 4:
          prefill_rows<4>(panel, n0, n1, nb, a_rows, a_sums, y_tile, ldy);
          break;
        case 3:
          prefill_rows<3>(panel, n0, n1, nb, a_rows, a_sums, y_tile, ldy);
          break;
        case 2:
          prefill_rows<2>(panel, n0, n1, nb, a_rows, a_sums, y_tile, ldy);
          break;
        default:
          prefill_rows<1>(panel, n0, n1, nb, a_rows, a_sums, y_tile, ldy);
          break;
      }
    }
  }
}

// Decode goes through the shared streaming path, prefill through gemm_prefill.
template <typename Block>
void gemm_avx512(std::int64_t k, const void* w, std::size_t w_stride, const void* a, std::size_t a_stride,
                 std::int64_t M, std::int64_t n_begin, std::int64_t n_end, float* y, std::int64_t ldy) {
  if (M >= kTileRows) {
    gemm_prefill<Block>(k, w, w_stride, a, a_stride, M, n_begin, n_end, y, ldy);
  } else {
    gemm_kquant<Avx512Rows, Block>(k, w, w_stride, a, a_stride, M, n_begin, n_end, y, ldy);
  }
}

// ---- q4_K decode ------------------------------------------------------------------------------
// With few activation rows every weight is used once, so the cost per super-block is what
// bounds the matrix-vector product. This path trims it by re-laying out the (few) activation
// rows once per call: within each 128 quants, q4_K's 64 qs bytes hold elements [0, 32) and
// [64, 96) in their low nibbles and [32, 64), [96, 128) in their high nibbles, so activations in
// that order meet a whole 64-byte load of quants after one AND (or one shift and AND).

struct alignas(64) Q4KDecodeAct {
  std::int8_t qs[QK_K];  // activations in q4_K's nibble order (see above)
  // 0 at positions 0..7; at 8 + j the sum of the activations of sub-block j (32 quants), so that
  // vpmaddwd against [scales, mins] yields the mins' offset term in lanes 4..7.
  std::int16_t sub_block_sums[16];
  float d;
};

void prepare_q4K_decode_acts(const block_q8_K* a, std::int64_t nb, Q4KDecodeAct* out) {
  for (std::int64_t i = 0; i < nb; ++i) {
    for (int h = 0; h < 2; ++h) {
      const std::int8_t* src = a[i].qs + 128 * h;
      std::int8_t* dst = out[i].qs + 128 * h;
      std::memcpy(dst, src, 32);
      std::memcpy(dst + 32, src + 64, 32);
      std::memcpy(dst + 64, src + 32, 32);
      std::memcpy(dst + 96, src + 96, 32);
    }
    for (int j = 0; j < 8; ++j) {
      out[i].sub_block_sums[j] = 0;
      out[i].sub_block_sums[8 + j] = static_cast<std::int16_t>(a[i].bsums[2 * j] + a[i].bsums[2 * j + 1]);
    }
    out[i].d = a[i].d;
  }
}

// The 8 scales and 8 mins of q4_K as 16-bit values [scales, mins], straight from the 12 packed
// bytes (plus 4 bytes read beyond them, inside the block): two byte shuffles gather each
// value's low and high parts into 16-bit lanes, shifts and masks put the bits in place.
inline __m256i q4K_scales_mins16(const std::uint8_t* packed) {
  const __m256i bytes = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(packed)));
  const char z = static_cast<char>(0x80);  // pshufb: zero byte
  // Low parts: scale j < 4 is byte j, scale j >= 4 byte j + 4 (low nibble), min j < 4 byte
  // j + 4, min j >= 4 byte j + 4 (high nibble).
  const __m256i low_idx = _mm256_setr_epi8(0, z, 1, z, 2, z, 3, z, 8, z, 9, z, 10, z, 11, z,  //
                                           4, z, 5, z, 6, z, 7, z, 8, z, 9, z, 10, z, 11, z);
  // High parts (bits 6-7 of a byte, to bits 4-5): scale j >= 4 from byte j - 4, min j >= 4
  // from byte j.
  const __m256i high_idx = _mm256_setr_epi8(z, z, z, z, z, z, z, z, 0, z, 1, z, 2, z, 3, z,  //
                                            z, z, z, z, z, z, z, z, 4, z, 5, z, 6, z, 7, z);
  const __m256i low_mask = _mm256_setr_epi16(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 15, 15, 15, 15);
  __m256i low = _mm256_shuffle_epi8(bytes, low_idx);
  low = _mm256_mask_srli_epi16(low, 0xF000, low, 4);  // mins 4..7 use the high nibble
  const __m256i high =
      _mm256_and_si256(_mm256_srli_epi16(_mm256_shuffle_epi8(bytes, high_idx), 2), _mm256_set1_epi16(0x30));
  return _mm256_ternarylogic_epi32(low, low_mask, high, 0xEA);  // (low & low_mask) | high
}

// Scale positions after vpackssdw of the sums of [low nibbles, high nibbles] of one 64-byte
// load: 16-bit position 8L + i holds sub-block (L < 2 ? 0 : 2) + (i < 4 ? 0 : 1), plus 4 for
// the second 64 bytes.
constexpr std::array<std::int16_t, 32> q4K_decode_pattern(int first_sub_block) {
  std::array<std::int16_t, 32> idx{};
  for (int p = 0; p < 32; ++p) {
    const int lane = p / 8, i = p % 8;
    idx[p] = static_cast<std::int16_t>(first_sub_block + (lane < 2 ? 0 : 2) + (i < 4 ? 0 : 1));
  }
  return idx;
}
alignas(64) constexpr std::array<std::int16_t, 32> kQ4KDecodeLow = q4K_decode_pattern(0);
alignas(64) constexpr std::array<std::int16_t, 32> kQ4KDecodeHigh = q4K_decode_pattern(4);

// One super-block of R weight rows (rows[r]) against MR activation rows.
template <int MR, int R>
inline __attribute__((always_inline)) void q4K_decode_block(const block_q4_K* const rows[R], std::int64_t i, std::int64_t nb,
                                      const Q4KDecodeAct* acts, __m512 (&acc)[R][MR], __m256 (&acc_offset)[R][MR],
                                      std::size_t prefetch_bytes) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i pattern_low = _mm512_load_si512(kQ4KDecodeLow.data());
  const __m512i pattern_high = _mm512_load_si512(kQ4KDecodeHigh.data());
#pragma GCC unroll 8
  for (int w = 0; w < R; ++w) {
    const char* ahead = reinterpret_cast<const char*>(rows[w] + i) + prefetch_bytes;
    for (int line = 0; line < 3; ++line) _mm_prefetch(ahead + 64 * line, _MM_HINT_T0);
    const block_q4_K& b = rows[w][i];
    const __m512i z0 = _mm512_loadu_si512(b.qs);
    const __m512i z1 = _mm512_loadu_si512(b.qs + 64);
    const __m512i lo0 = _mm512_and_si512(z0, low4), hi0 = _mm512_and_si512(_mm512_srli_epi16(z0, 4), low4);
    const __m512i lo1 = _mm512_and_si512(z1, low4), hi1 = _mm512_and_si512(_mm512_srli_epi16(z1, 4), low4);
    const __m256i scales_mins = q4K_scales_mins16(b.scales);
    const __m512i scales = _mm512_zextsi256_si512(scales_mins);
    const __m512i scales_low = _mm512_permutexvar_epi16(pattern_low, scales);
    const __m512i scales_high = _mm512_permutexvar_epi16(pattern_high, scales);
    const __m128 d_dmin = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(b.d | (std::uint32_t{b.dmin} << 16))));
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
      const Q4KDecodeAct& a = acts[r * nb + i];
      const __m512i zero = _mm512_setzero_si512();
      const __m512i p0 = _mm512_dpbusd_epi32(zero, lo0, _mm512_load_si512(a.qs));
      const __m512i p1 = _mm512_dpbusd_epi32(zero, hi0, _mm512_load_si512(a.qs + 64));
      const __m512i p2 = _mm512_dpbusd_epi32(zero, lo1, _mm512_load_si512(a.qs + 128));
      const __m512i p3 = _mm512_dpbusd_epi32(zero, hi1, _mm512_load_si512(a.qs + 192));
      __m512i sum = _mm512_dpwssd_epi32(zero, _mm512_packs_epi32(p0, p1), scales_low);
      sum = _mm512_dpwssd_epi32(sum, _mm512_packs_epi32(p2, p3), scales_high);
      const __m128 factors = _mm_mul_ps(d_dmin, _mm_set1_ps(a.d));  // d * a.d, dmin * a.d
      acc[w][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_broadcastss_ps(factors), acc[w][r]);
      const __m256i offsets =
          _mm256_madd_epi16(scales_mins, _mm256_load_si256(reinterpret_cast<const __m256i*>(a.sub_block_sums)));
      acc_offset[w][r] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(offsets), _mm256_broadcastss_ps(_mm_movehdup_ps(factors)),
                                          acc_offset[w][r]);
    }
  }
}

// Weight rows n0 + w * span (w < R) against MR activation rows.
template <int MR, int R>
void q4K_decode_group(const std::uint8_t* w_bytes, std::size_t w_stride, std::int64_t nb, const Q4KDecodeAct* acts,
                      std::int64_t n0, std::int64_t span, float* y, std::int64_t ldy, std::size_t prefetch_bytes) {
  const block_q4_K* rows[R];
  __m512 acc[R][MR];
  __m256 acc_offset[R][MR];
#pragma GCC unroll 8
  for (int w = 0; w < R; ++w) {
    rows[w] = reinterpret_cast<const block_q4_K*>(w_bytes + (n0 + w * span) * w_stride);
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
      acc[w][r] = _mm512_setzero_ps();
      acc_offset[w][r] = _mm256_setzero_ps();
    }
  }
  for (std::int64_t i = 0; i < nb; ++i) q4K_decode_block<MR, R>(rows, i, nb, acts, acc, acc_offset, prefetch_bytes);
#pragma GCC unroll 8
  for (int w = 0; w < R; ++w)
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r)
      y[r * ldy + n0 + w * span] = _mm512_reduce_add_ps(_mm512_add_ps(acc[w][r], _mm512_zextps256_ps512(acc_offset[w][r])));
}

template <int MR>
void q4K_decode_rows(const std::uint8_t* w_bytes, std::size_t w_stride, std::int64_t nb, const Q4KDecodeAct* acts,
                     std::int64_t n_begin, std::int64_t n_end, float* y, std::int64_t ldy) {
  std::int64_t n = n_begin;
  const std::int64_t span = (n_end - n_begin) / kSpreadRows;
  for (; n < n_begin + span; ++n)
    q4K_decode_group<MR, kSpreadRows>(w_bytes, w_stride, nb, acts, n, span, y, ldy, kSpreadPrefetchBytes);
  n = n_begin + kSpreadRows * span;
  for (; n < n_end; ++n) q4K_decode_group<MR, 1>(w_bytes, w_stride, nb, acts, n, 0, y, ldy, kPrefetchBytes);
}

void gemm_q4K_avx512(std::int64_t k, const void* w, std::size_t w_stride, const void* a, std::size_t a_stride,
                     std::int64_t M, std::int64_t n_begin, std::int64_t n_end, float* y, std::int64_t ldy) {
  if (M >= kTileRows) {
    gemm_prefill<block_q4_K>(k, w, w_stride, a, a_stride, M, n_begin, n_end, y, ldy);
    return;
  }
  const std::int64_t nb = k / QK_K;
  thread_local std::vector<Q4KDecodeAct> acts;
  if (static_cast<std::int64_t>(acts.size()) < M * nb) acts.resize(static_cast<std::size_t>(M * nb));
  const auto* a_bytes = static_cast<const std::uint8_t*>(a);
  for (std::int64_t m = 0; m < M; ++m) {
    prepare_q4K_decode_acts(reinterpret_cast<const block_q8_K*>(a_bytes + m * a_stride), nb, acts.data() + m * nb);
  }
  const auto* w_bytes = static_cast<const std::uint8_t*>(w);
  switch (M) {
    case 1:
      q4K_decode_rows<1>(w_bytes, w_stride, nb, acts.data(), n_begin, n_end, y, ldy);
      break;
    case 2:
      q4K_decode_rows<2>(w_bytes, w_stride, nb, acts.data(), n_begin, n_end, y, ldy);
      break;
    case 3:
      q4K_decode_rows<3>(w_bytes, w_stride, nb, acts.data(), n_begin, n_end, y, ldy);
      break;
    default:
      break;
  }
}

// vec_dot takes the same path as a one-row gemm, so the two agree bit for bit.
float vec_dot_q4K_avx512(std::int64_t k, const void* w_row, const void* a_row) {
  float y = 0;
  gemm_q4K_avx512(k, w_row, 0, a_row, 0, 1, 0, 1, &y, 1);
  return y;
}

template <typename Block>
constexpr WeightKernels avx512_kernels(DType w, VecDotFn vec_dot = vec_dot_kquant<Avx512Rows, Block>,
                                       GemmFn gemm = gemm_avx512<Block>) {
  return {w, DType::Q8_K, quantize_row_q8_K_avx2, vec_dot, gemm, SimdLevel::Avx512};
}

const WeightKernels kAvx512Kernels[] = {
    avx512_kernels<block_q2_K>(DType::Q2_K),
    avx512_kernels<block_q3_K>(DType::Q3_K),
    avx512_kernels<block_q4_K>(DType::Q4_K, vec_dot_q4K_avx512, gemm_q4K_avx512),
    avx512_kernels<block_q5_K>(DType::Q5_K),
    avx512_kernels<block_q6_K>(DType::Q6_K),
};

}  // namespace

const WeightKernels* avx512_weight_kernels(DType w) { return find_kernels(kAvx512Kernels, w); }

}  // namespace kiln::kernels::kquant
