// AVX-512 VNNI dot products of the K-quants with q8_K activations. vpdpbusd multiplies 64
// unsigned quants with 64 signed activations and sums each 4 into s32 (at most 4 * 63 * 127,
// so the sums fit s16); two such vectors are packed to s16 and vpdpwssd applies the per-group
// scales while summing pairs. One float FMA per super-block and activation row.
#include <array>

// GCC 12's AVX-512 headers build some intrinsics from a self-initialized "undefined" register
// (__m512 __Y = __Y), which -Wuninitialized reports at every inlined use; the value is never read.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

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

// q4_K: the 32 bytes of each 64 quants are broadcast to both halves; the upper half is shifted
// to its high nibbles, so one masked shift and one AND give the 64 quants in element order.
inline void unpack512(const block_q4_K& b, Unpacked512& u) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (int p = 0; p < 4; ++p) {
    const __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * p)));
    u.q[p] = _mm512_and_si512(_mm512_mask_srli_epi16(v, 0xFFFF0000u, v, 4), low4);
  }
  const __m128i sm = scales_mins_k4(b.scales);  // 8 scales, then 8 mins
  place_scales<ScaleSource::kSubBlockOrder>(_mm512_zextsi256_si512(_mm256_cvtepu8_epi16(sm)), u);
  u.offset = _mm256_cvtepu8_epi16(
      _mm_shuffle_epi8(sm, _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15)));
  const __m128 d_dmin = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(b.d | (std::uint32_t{b.dmin} << 16))));
  u.d = _mm_cvtss_f32(d_dmin);
  u.dmin = _mm_cvtss_f32(_mm_movehdup_ps(d_dmin));
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

template <typename Block>
constexpr WeightKernels avx512_kernels(DType w) {
  return {w,
          DType::Q8_K,
          quantize_row_q8_K_avx2,
          vec_dot_kquant<Avx512Rows, Block>,
          gemm_kquant<Avx512Rows, Block>,
          SimdLevel::Avx512};
}

const WeightKernels kAvx512Kernels[] = {
    avx512_kernels<block_q2_K>(DType::Q2_K), avx512_kernels<block_q3_K>(DType::Q3_K),
    avx512_kernels<block_q4_K>(DType::Q4_K), avx512_kernels<block_q5_K>(DType::Q5_K),
    avx512_kernels<block_q6_K>(DType::Q6_K),
};

}  // namespace

const WeightKernels* avx512_weight_kernels(DType w) {
  for (const WeightKernels& k : kAvx512Kernels) {
    if (k.weight_type == w) return &k;
  }
  return nullptr;
}

}  // namespace kiln::kernels::kquant
