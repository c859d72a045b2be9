// The AVX-512 float weight kernels: float_kernels_tiled.h instantiated with 16-lane f32 loads
// (F32), halves widened by vcvtph2ps (F16), and for BF16 bf16 pairs multiplied by vdpbf16ps
// (decode) or bf16 widened to f32 by a shift (prefill; see gemm_bf16).
// Tiles are 4 weight rows × 6 activation rows: 24 accumulators, 4 weight vectors and one
// activation vector fill 29 of the 32 zmm registers.
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "kernels/float_kernels.h"
#include "kernels/float_kernels_tiled.h"
#include "kernels/kernel_families.h"
#include "kernels/reduce_avx512.h"

// GCC 12's AVX-512 headers build their "undefined" registers from self-initialised locals,
// which -Wuninitialized reports at every inlined use; the warning says nothing about this code.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace kiln::kernels::float_kernels {
namespace {

inline __mmask16 first_16(std::int64_t count) { return static_cast<__mmask16>((1u << count) - 1u); }
inline __mmask32 first_32(std::int64_t count) { return static_cast<__mmask32>((1ull << count) - 1u); }

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
  // Decode as for F16Ops below.
  static constexpr bool kSpreadDecode = true;
  static constexpr int kDecodeGroupRows = 1;
  static constexpr int kDecodeGroups = 8;
  static constexpr std::size_t kDecodePrefetchBytes = 640;
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
  // Decode (M = 1) reads far-apart rows at once (see float_tiled::gemm): 1.1B f16 decode
  // with 2 threads went from 10.0 to 12.1 tok/s with 16 rows. Measured alternatives, groups x
  // rows each: 2 x 8: 11.25, 4 x 4: 11.5-11.65, 8 x 2: 11.9, 8 x 1: 12.06. A software prefetch
  // 640 bytes ahead in each row then took 16 x 1 from 11.4 to 12.9 tok/s, and with it 8 x 1
  // (13.9) and 4 x 1 (13.9) beat 16 x 1 and 12 x 1 (13.4); 512 and 1024 bytes measured alike.
  static constexpr bool kSpreadDecode = true;
  static constexpr int kDecodeGroupRows = 1;
  static constexpr int kDecodeGroups = 8;
  static constexpr std::size_t kDecodePrefetchBytes = 640;
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
  // Decode as for F16Ops: 1.1B bf16 decode went from 11.7 to 14.7 tok/s.
  static constexpr bool kSpreadDecode = true;
  static constexpr int kDecodeGroupRows = 1;
  static constexpr int kDecodeGroups = 8;
  static constexpr std::size_t kDecodePrefetchBytes = 640;

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

// BF16 weights widened to f32 in registers (a bf16 is the top half of a float), against f32
// activations: the prefill path of BF16 (see gemm_bf16).
struct BF16WidenedOps : F32Activations {
  using WReg = __m512;
  static constexpr std::int64_t kWeightBytes = 2;
  static WReg widen(__m256i bits) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16)); }
  static WReg load_w(const char* row, std::int64_t i) {
    return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(reinterpret_cast<const std::uint16_t*>(row) + i)));
  }
  static WReg load_w_tail(const char* row, std::int64_t i, std::int64_t count) {
    return widen(_mm256_maskz_loadu_epi16(first_16(count), reinterpret_cast<const std::uint16_t*>(row) + i));
  }
};

// vdpbf16ps sustains one instruction per two cycles on Sapphire Rapids (measured: half the
// rate of vfmadd231ps), so its 32 products per instruction give the same peak as f32 FMA but
// no more, and the 4×6 tile reaches only about 70% of the FMA path's speed. Decode (a single
// activation tile) keeps vdpbf16ps, where memory bandwidth rules and it needs fewest
// instructions; a prefill batch widens its bf16 activations to f32 once per call (M·k
// shifts, against M·k·n/16 FMAs) and runs the f32 FMA tile with weights widened in registers.
// Both compute exact products of the same bf16 values with f32 accumulation.
void gemm_bf16(std::int64_t k, const void* w, std::size_t w_stride, const void* a, std::size_t a_stride, std::int64_t M,
               std::int64_t n_begin, std::int64_t n_end, float* y, std::int64_t ldy) {
  if (M <= BF16Ops::kRowsA) {
    float_tiled::gemm<BF16Ops>(k, w, w_stride, a, a_stride, M, n_begin, n_end, y, ldy);
    return;
  }
  // widened is (M, k) floats, one per thread, kept between calls.
  thread_local std::vector<float> widened;
  widened.resize(static_cast<std::size_t>(M * k));
  for (std::int64_t m = 0; m < M; ++m) {
    const auto* row = reinterpret_cast<const std::uint16_t*>(static_cast<const char*>(a) + m * a_stride);
    float* out = widened.data() + m * k;
    std::int64_t i = 0;
    for (; i + 16 <= k; i += 16)
      _mm512_storeu_ps(out + i, BF16WidenedOps::widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + i))));
    if (i < k)
      _mm512_mask_storeu_ps(out + i, first_16(k - i),
                            BF16WidenedOps::widen(_mm256_maskz_loadu_epi16(first_16(k - i), row + i)));
  }
  float_tiled::gemm<BF16WidenedOps>(k, w, w_stride, widened.data(), static_cast<std::size_t>(k) * sizeof(float), M,
                                    n_begin, n_end, y, ldy);
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

constexpr WeightKernels kKernels[] = {
    {DType::F32, DType::F32, copy_f32_row, float_tiled::vec_dot<F32Ops>, float_tiled::gemm<F32Ops>, SimdLevel::Avx512},
    {DType::F16, DType::F32, copy_f32_row, float_tiled::vec_dot<F16Ops>, float_tiled::gemm<F16Ops>, SimdLevel::Avx512},
    {DType::BF16, DType::BF16, quantize_bf16_act, float_tiled::vec_dot<BF16Ops>, gemm_bf16, SimdLevel::Avx512},
};

}  // namespace

const WeightKernels* avx512_weight_kernels(DType w) { return find_kernels(kKernels, w); }

}  // namespace kiln::kernels::float_kernels
