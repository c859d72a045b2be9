// The AVX2 float weight kernels: float_kernels_tiled.h instantiated with 8-lane f32 registers.
// F16 weights are widened with vcvtph2ps, BF16 weights and activations by a 16-bit shift (a
// bf16 is the top half of a float). Tiles are 2 weight rows × 5 activation rows: 10
// accumulators, 2 weight vectors and one activation vector fit in the 16 ymm registers; decode
// (one activation row) reads 8 far-apart rows with 8 accumulators instead.
// A k tail (k mod 8) is copied into a zero-padded 8-lane buffer.
#include <immintrin.h>

#include <cstring>

#include "kernels/float_kernels.h"
#include "kernels/float_kernels_tiled.h"
#include "kernels/kernel_families.h"
#include "kernels/reduce_avx2.h"

namespace kiln::kernels::float_kernels {
namespace {

template <typename T>
inline void copy_tail(T (&lanes)[8], const char* row, std::int64_t i, std::int64_t count) {
  std::memset(lanes, 0, sizeof(lanes));
  std::memcpy(lanes, reinterpret_cast<const T*>(row) + i, static_cast<std::size_t>(count) * sizeof(T));
}

inline __m256 widen_bf16(__m128i bits) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16));
}

// The shape of every AVX2 float kernel: f32 registers, FMA, differing only in how a vector of
// weights (and, for bf16, of activations) is loaded and widened.
struct F32Registers {
  using WReg = __m256;
  using AReg = __m256;
  using Acc = __m256;
  static constexpr int kStep = 8;
  static constexpr int kRowsW = 2;
  static constexpr int kRowsA = 5;
  // Decode (M = 1) reads 8 far-apart rows at once, each prefetched 640 bytes ahead (see
  // float_tiled::gemm), as the AVX-512 Ops do. 1.1B f16 decode with 2 threads and
  // KILN_SIMD=avx2 went from 8.9-9.4 to 13.0-14.0 tok/s (host read bandwidth 29-32 GB/s).
  // Groups x prefetch distance: 4 x 640 measured the same as 8 x 640 (13.2-14.0), 12 x 640
  // 12.6-13.4; 8 x 320 12.1-13.2, 8 x 1024 13.1-13.7, and 11.9 with the prefetch at distance 0.
  static constexpr bool kSpreadDecode = true;
  static constexpr int kDecodeGroupRows = 1;
  static constexpr int kDecodeGroups = 8;
  static constexpr std::size_t kDecodePrefetchBytes = 640;
  static Acc zero() { return _mm256_setzero_ps(); }
  static Acc madd(Acc acc, WReg w, AReg a) { return _mm256_fmadd_ps(w, a, acc); }
  template <int N>
  static void reduce(const Acc (&acc)[N], float* sums) {
    for (int j = 0; j < N; ++j) sums[j] = reduce_add(acc[j]);
  }
  static __m256 load_f32(const char* row, std::int64_t i) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + i);
  }
  static __m256 load_f32_tail(const char* row, std::int64_t i, std::int64_t count) {
    float lanes[8];
    copy_tail(lanes, row, i, count);
    return _mm256_loadu_ps(lanes);
  }
};

struct F32Ops : F32Registers {
  static constexpr std::int64_t kBlockK = 1024;  // 5 rows × 1024 floats = 20 KiB of L1
  static constexpr std::int64_t kWeightBytes = 4;
  static WReg load_w(const char* row, std::int64_t i) { return load_f32(row, i); }
  static WReg load_w_tail(const char* row, std::int64_t i, std::int64_t count) { return load_f32_tail(row, i, count); }
  static AReg load_a(const char* row, std::int64_t i) { return load_f32(row, i); }
  static AReg load_a_tail(const char* row, std::int64_t i, std::int64_t count) { return load_f32_tail(row, i, count); }
};

struct F16Ops : F32Registers {
  static constexpr std::int64_t kBlockK = 1024;
  static constexpr std::int64_t kWeightBytes = 2;
  static WReg load_w(const char* row, std::int64_t i) {
    return _mm256_cvtph_ps(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(reinterpret_cast<const std::uint16_t*>(row) + i)));
  }
  static WReg load_w_tail(const char* row, std::int64_t i, std::int64_t count) {
    std::uint16_t lanes[8];
    copy_tail(lanes, row, i, count);
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lanes)));
  }
  static AReg load_a(const char* row, std::int64_t i) { return load_f32(row, i); }
  static AReg load_a_tail(const char* row, std::int64_t i, std::int64_t count) { return load_f32_tail(row, i, count); }
};

struct BF16Ops : F32Registers {
  static constexpr std::int64_t kBlockK = 2048;  // 5 rows × 2048 bf16 = 20 KiB of L1
  static constexpr std::int64_t kWeightBytes = 2;
  static __m256 load(const char* row, std::int64_t i) {
    return widen_bf16(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(reinterpret_cast<const std::uint16_t*>(row) + i)));
  }
  static __m256 load_tail(const char* row, std::int64_t i, std::int64_t count) {
    std::uint16_t lanes[8];
    copy_tail(lanes, row, i, count);
    return widen_bf16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lanes)));
  }
  static WReg load_w(const char* row, std::int64_t i) { return load(row, i); }
  static WReg load_w_tail(const char* row, std::int64_t i, std::int64_t count) { return load_tail(row, i, count); }
  static AReg load_a(const char* row, std::int64_t i) { return load(row, i); }
  static AReg load_a_tail(const char* row, std::int64_t i, std::int64_t count) { return load_tail(row, i, count); }
};

// 8 floats to bf16 with the integer rounding of kiln::f32_to_bf16 (bit-exact).
inline __m128i to_bf16(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i high = _mm256_srli_epi32(u, 16);
  const __m256i lsb = _mm256_and_si256(high, _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb)), 16);
  // |u| > 0x7f800000 as signed compare is safe: both sides are below 2^31.
  const __m256i nan =
      _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(0x7f800000));
  const __m256i result = _mm256_blendv_epi8(rounded, _mm256_or_si256(high, _mm256_set1_epi32(64)), nan);
  // Every lane is below 2^16, so the unsigned saturating pack keeps them exactly.
  return _mm_packus_epi32(_mm256_castsi256_si128(result), _mm256_extracti128_si256(result, 1));
}

void quantize_bf16_act(const float* x, void* dst, std::int64_t k) {
  auto* y = static_cast<std::uint16_t*>(dst);  // y is (k) bf16
  std::int64_t i = 0;
  for (; i + 8 <= k; i += 8) _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), to_bf16(_mm256_loadu_ps(x + i)));
  if (i < k) f32_to_bf16_row_ref(x + i, y + i, k - i);
}

constexpr WeightKernels kKernels[] = {
    {DType::F32, DType::F32, copy_f32_row, float_tiled::vec_dot<F32Ops>, float_tiled::gemm<F32Ops>, SimdLevel::Avx2},
    {DType::F16, DType::F32, copy_f32_row, float_tiled::vec_dot<F16Ops>, float_tiled::gemm<F16Ops>, SimdLevel::Avx2},
    {DType::BF16, DType::BF16, quantize_bf16_act, float_tiled::vec_dot<BF16Ops>, float_tiled::gemm<BF16Ops>,
     SimdLevel::Avx2},
};

}  // namespace

const WeightKernels* avx2_weight_kernels(DType w) { return find_kernels(kKernels, w); }

}  // namespace kiln::kernels::float_kernels
