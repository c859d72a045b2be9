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

// After vpackssdw of the dpbusd sums of elements [0, 64) and [64, 128), 16-bit position
// 8L + i (L the 128-bit lane) holds the sum of elements 4L + i (group L) for i < 4, and of
// elements 64 + 4L + i - 4 (group 4 + L) for i >= 4. These tables pick each position's scale
// from the even/odd scale layout of UnpackedSuperBlock; `first_group` is 0 or 8.
constexpr std::array<std::int16_t, 32> scale_pattern(int first_group) {
  std::array<std::int16_t, 32> idx{};
  for (int p = 0; p < 32; ++p) {
    const int lane = p / 8, i = p % 8;
    const int group = first_group + (i < 4 ? lane : 4 + lane);
    idx[p] = static_cast<std::int16_t>(group % 2 == 0 ? group / 2 : 8 + group / 2);
  }
  return idx;
}
alignas(64) constexpr std::array<std::int16_t, 32> kPatternLow = scale_pattern(0);
alignas(64) constexpr std::array<std::int16_t, 32> kPatternHigh = scale_pattern(8);

template <int MR>
struct Avx512Rows {
  __m512 acc[MR];

  Avx512Rows() {
    for (int r = 0; r < MR; ++r) acc[r] = _mm512_setzero_ps();
  }

  void add(const UnpackedSuperBlock& u, const block_q8_K* const* a, std::int64_t i) {
    const __m512i w0 = _mm512_load_si512(u.q);
    const __m512i w1 = _mm512_load_si512(u.q + 64);
    const __m512i w2 = _mm512_load_si512(u.q + 128);
    const __m512i w3 = _mm512_load_si512(u.q + 192);
    const __m512i scales = _mm512_castsi256_si512(_mm256_load_si256(reinterpret_cast<const __m256i*>(u.scale)));
    const __m512i scales_low = _mm512_permutexvar_epi16(_mm512_load_si512(kPatternLow.data()), scales);
    const __m512i scales_high = _mm512_permutexvar_epi16(_mm512_load_si512(kPatternHigh.data()), scales);
    const __m256i offsets = _mm256_load_si256(reinterpret_cast<const __m256i*>(u.offset));
    for (int r = 0; r < MR; ++r) {
      const block_q8_K& b = a[r][i];
      const __m512i zero = _mm512_setzero_si512();
      const __m512i p0 = _mm512_dpbusd_epi32(zero, w0, _mm512_loadu_si512(b.qs));
      const __m512i p1 = _mm512_dpbusd_epi32(zero, w1, _mm512_loadu_si512(b.qs + 64));
      const __m512i p2 = _mm512_dpbusd_epi32(zero, w2, _mm512_loadu_si512(b.qs + 128));
      const __m512i p3 = _mm512_dpbusd_epi32(zero, w3, _mm512_loadu_si512(b.qs + 192));
      __m512i sum = _mm512_dpwssd_epi32(zero, _mm512_packs_epi32(p0, p1), scales_low);
      sum = _mm512_dpwssd_epi32(sum, _mm512_packs_epi32(p2, p3), scales_high);
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(u.d * b.d), acc[r]);
      // The offset term has 8 lanes; zero-extended, the upper lanes add nothing.
      const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.bsums));
      const __m256 offset_sums = _mm256_cvtepi32_ps(_mm256_madd_epi16(bsums, offsets));
      acc[r] = _mm512_fmadd_ps(_mm512_zextps256_ps512(offset_sums), _mm512_set1_ps(u.dmin * b.d), acc[r]);
    }
  }

  float result(int r) const { return _mm512_reduce_add_ps(acc[r]); }
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
