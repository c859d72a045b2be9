// AVX2 dot products of the K-quants with q8_K activations. Each 32 unpacked quants meet their
// activations in vpmaddubsw (u8 x s8 -> pairs summed to s16, no saturation for quants < 64),
// then vpmaddwd applies the per-group scales and sums to s32; one float FMA per super-block.
#include "kernels/kernel_families.h"
#include "kernels/kquants_simd.h"

namespace kiln::kernels::kquant {
namespace {

template <int MR>
struct Avx2Rows {
  using Unpacked = UnpackedSuperBlock;
  template <typename Block>
  static void unpack(const Block& b, Unpacked& u) {
    kquant::unpack(b, u);
  }

  // Two accumulators per row keep the two FMAs of a super-block off each other's latency.
  __m256 acc[MR];
  __m256 acc_offset[MR];

  Avx2Rows() {
    for (int r = 0; r < MR; ++r) acc[r] = acc_offset[r] = _mm256_setzero_ps();
  }

  void add(const UnpackedSuperBlock& u, const block_q8_K* const* a, std::int64_t i) {
    // Scales are stored even groups in the low lane, odd groups in the high lane, so one byte
    // shuffle per 32 quants broadcasts group 2c's scale over the low lane and 2c + 1's over the high.
    const __m256i scales = u.scale;
    __m256i sum[MR];
    for (int r = 0; r < MR; ++r) sum[r] = _mm256_setzero_si256();
    for (int c = 0; c < 8; ++c) {
      const __m256i pattern = _mm256_shuffle_epi8(scales, _mm256_set1_epi16(static_cast<short>(0x0100 + 0x0202 * c)));
      const __m256i w = u.q[c];
      for (int r = 0; r < MR; ++r) {
        const __m256i act = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[r][i].qs + 32 * c));
        sum[r] = _mm256_add_epi32(sum[r], _mm256_madd_epi16(_mm256_maddubs_epi16(w, act), pattern));
      }
    }
    const __m256i offsets = u.offset;
    for (int r = 0; r < MR; ++r) {
      const block_q8_K& b = a[r][i];
      const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.bsums));
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[r]), _mm256_set1_ps(u.d * b.d), acc[r]);
      acc_offset[r] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(bsums, offsets)),
                                       _mm256_set1_ps(u.dmin * b.d), acc_offset[r]);
    }
  }

  float result(int r) const { return reduce_add(_mm256_add_ps(acc[r], acc_offset[r])); }
};

template <typename Block>
constexpr WeightKernels avx2_kernels(DType w) {
  return {w,
          DType::Q8_K,
          quantize_row_q8_K_avx2,
          vec_dot_kquant<Avx2Rows, Block>,
          gemm_kquant<Avx2Rows, Block>,
          SimdLevel::Avx2};
}

const WeightKernels kAvx2Kernels[] = {
    avx2_kernels<block_q2_K>(DType::Q2_K), avx2_kernels<block_q3_K>(DType::Q3_K), avx2_kernels<block_q4_K>(DType::Q4_K),
    avx2_kernels<block_q5_K>(DType::Q5_K), avx2_kernels<block_q6_K>(DType::Q6_K),
};

}  // namespace

const WeightKernels* avx2_weight_kernels(DType w) { return find_kernels(kAvx2Kernels, w); }

}  // namespace kiln::kernels::kquant
