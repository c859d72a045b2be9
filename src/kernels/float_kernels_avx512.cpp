// The AVX-512 float weight kernels: float_kernels_tiled.h instantiated with 16-lane f32 loads
// (F32), halves widened by vcvtph2ps (F16) and bf16 pairs multiplied by vdpbf16ps (BF16).
// Tiles are 4 weight rows × 6 activation rows: 24 accumulators, 4 weight vectors and one
// activation vector fill 29 of the 32 zmm registers.
#include <immintrin.h>

#include <cstring>

#include "kernels/float_kernels.h"
#include "kernels/float_kernels_tiled.h"

// GCC 12's AVX-512 headers build their "undefined" registers from self-initialised locals,
// which -Wuninitialized reports at every inlined use; the warning says nothing about this code.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace kiln::kernels::float_kernels {
namespace {

inline __mmask16 first_16(std::int64_t count) { return static_cast<__mmask16>((1u << count) - 1u); }
inline __mmask32 first_32(std::int64_t count) { return static_cast<__mmask32>((1ull << count) - 1u); }

// sums[j] = the sum of the 16 lanes of acc[j]. Groups of four registers are reduced together
// by a transposing tree (about 14 instructions per four sums instead of 8 per sum), which
// matters at the end of every tile and k block.
template <int N>
inline void reduce_lanes(const __m512 (&acc)[N], float* sums) {
  int j = 0;
  for (; j + 4 <= N; j += 4) {
    // 128-bit blocks: t01 = [a0+a2, a1+a3, b0+b2, b1+b3], t23 likewise for c, d.
    const __m512 t01 =
        _mm512_add_ps(_mm512_shuffle_f32x4(acc[j], acc[j + 1], 0x44), _mm512_shuffle_f32x4(acc[j], acc[j + 1], 0xEE));
    const __m512 t23 = _mm512_add_ps(_mm512_shuffle_f32x4(acc[j + 2], acc[j + 3], 0x44),
                                     _mm512_shuffle_f32x4(acc[j + 2], acc[j + 3], 0xEE));
    // Block q of u holds four partial sums of acc[j + q].
    const __m512 u = _mm512_add_ps(_mm512_shuffle_f32x4(t01, t23, 0x88), _mm512_shuffle_f32x4(t01, t23, 0xDD));
    const __m512 v = _mm512_add_ps(u, _mm512_shuffle_ps(u, u, 0x4E));
    const __m512 w = _mm512_add_ps(v, _mm512_shuffle_ps(v, v, 0xB1));  // every lane of block q: the total
    const __m512 firsts = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), w);
    _mm_storeu_ps(sums + j, _mm512_castps512_ps128(firsts));
  }
  for (; j < N; ++j) sums[j] = _mm512_reduce_add_ps(acc[j]);
}

// Activations in f32, shared by the F32 and F16 weight kernels.
struct F32Activations {
  using AReg = __m512;
  using Acc = __m512;
  static constexpr int kStep = 16;
  static constexpr int kRowsW = 4;
  static constexpr int kRowsA = 6;
  // 6 activation rows × 1024 floats = 24 KiB, half of the 48 KiB L1.
  static constexpr std::int64_t kBlockK = 1024;

  static Acc zero() { return _mm512_setzero_ps(); }
  static AReg load_a(const char* row, std::int64_t i) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + i);
  }
  static AReg load_a_tail(const char* row, std::int64_t i, std::int64_t count) {
    return _mm512_maskz_loadu_ps(first_16(count), reinterpret_cast<const float*>(row) + i);
  }
  static Acc madd(Acc acc, __m512 w, AReg a) { return _mm512_fmadd_ps(w, a, acc); }
  template <int N>
  static void reduce(const Acc (&acc)[N], float* sums) {
    reduce_lanes(acc, sums);
  }
};

struct F32Ops : F32Activations {
  using WReg = __m512;
  static constexpr std::int64_t kWeightBytes = 4;
  static WReg load_w(const char* row, std::int64_t i) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + i);
  }
  static WReg load_w_tail(const char* row, std::int64_t i, std::int64_t count) {
    return _mm512_maskz_loadu_ps(first_16(count), reinterpret_cast<const float*>(row) + i);
  }
};

struct F16Ops : F32Activations {
  using WReg = __m512;
  static constexpr std::int64_t kWeightBytes = 2;
  static WReg load_w(const char* row, std::int64_t i) {
    return _mm512_cvtph_ps(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(reinterpret_cast<const std::uint16_t*>(row) + i)));
  }
  static WReg load_w_tail(const char* row, std::int64_t i, std::int64_t count) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(first_16(count), reinterpret_cast<const std::uint16_t*>(row) + i));
  }
};

// Weights and activations both bf16: vdpbf16ps multiplies 32 pairs and adds each pair's two
// products into one of 16 f32 lanes, so one instruction covers 32 elements of k.
struct BF16Ops {
  using WReg = __m512i;
  using AReg = __m512i;
  using Acc = __m512;
  static constexpr int kStep = 32;
  static constexpr int kRowsW = 4;
  static constexpr int kRowsA = 6;
  static constexpr std::int64_t kBlockK = 2048;  // 6 rows × 2048 bf16 = 24 KiB
  static constexpr std::int64_t kWeightBytes = 2;

  static Acc zero() { return _mm512_setzero_ps(); }
  static __m512i load(const char* row, std::int64_t i) {
    return _mm512_loadu_si512(reinterpret_cast<const std::uint16_t*>(row) + i);
  }
  static __m512i load_tail(const char* row, std::int64_t i, std::int64_t count) {
    return _mm512_maskz_loadu_epi16(first_32(count), reinterpret_cast<const std::uint16_t*>(row) + i);
  }
  static WReg load_w(const char* row, std::int64_t i) { return load(row, i); }
  static WReg load_w_tail(const char* row, std::int64_t i, std::int64_t count) { return load_tail(row, i, count); }
  static AReg load_a(const char* row, std::int64_t i) { return load(row, i); }
  static AReg load_a_tail(const char* row, std::int64_t i, std::int64_t count) { return load_tail(row, i, count); }
  static Acc madd(Acc acc, WReg w, AReg a) { return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)w); }
  template <int N>
  static void reduce(const Acc (&acc)[N], float* sums) {
    reduce_lanes(acc, sums);
  }
};

void copy_f32_row(const float* x, void* dst, std::int64_t k) {
  std::memcpy(dst, x, static_cast<std::size_t>(k) * sizeof(float));
}

// 16 floats to bf16 with the integer rounding of kiln::f32_to_bf16 (bit-exact, subnormals
// kept). vcvtneps2bf16 is not used because it flushes subnormal inputs to zero.
inline __m256i to_bf16(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i high = _mm512_srli_epi32(u, 16);
  const __m512i lsb = _mm512_and_si512(high, _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb)), 16);
  const __mmask16 nan =
      _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  return _mm512_cvtepi32_epi16(_mm512_mask_mov_epi32(rounded, nan, _mm512_or_si512(high, _mm512_set1_epi32(64))));
}

void quantize_bf16_act(const float* x, void* dst, std::int64_t k) {
  auto* y = static_cast<std::uint16_t*>(dst);  // y is (k) bf16
  std::int64_t i = 0;
  for (; i + 16 <= k; i += 16) _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), to_bf16(_mm512_loadu_ps(x + i)));
  if (i < k) _mm256_mask_storeu_epi16(y + i, first_16(k - i), to_bf16(_mm512_maskz_loadu_ps(first_16(k - i), x + i)));
}

constexpr WeightKernels kF32{
    DType::F32, DType::F32, copy_f32_row, float_tiled::vec_dot<F32Ops>, float_tiled::gemm<F32Ops>, SimdLevel::Avx512};
constexpr WeightKernels kF16{
    DType::F16, DType::F32, copy_f32_row, float_tiled::vec_dot<F16Ops>, float_tiled::gemm<F16Ops>, SimdLevel::Avx512};
constexpr WeightKernels kBF16{
    DType::BF16,      DType::BF16, quantize_bf16_act, float_tiled::vec_dot<BF16Ops>, float_tiled::gemm<BF16Ops>,
    SimdLevel::Avx512};

}  // namespace

const WeightKernels* avx512_weight_kernels(DType w) {
  switch (w) {
    case DType::F32:
      return &kF32;
    case DType::F16:
      return &kF16;
    case DType::BF16:
      return &kBF16;
    default:
      return nullptr;
  }
}

}  // namespace kiln::kernels::float_kernels
