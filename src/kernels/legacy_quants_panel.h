#pragma once
// Internal to the SIMD files of the legacy formats (needs AVX2 or better at compile time):
// the activation rows, repacked once per gemm call into the parts the kernels broadcast from.
// Everything here has internal linkage, so each SIMD translation unit keeps its own copy
// compiled with its own flags (see legacy_quants_internal.h).
#include <immintrin.h>

#include <cstddef>
#include <cstring>

#include "kernels/blocks.h"
#include "kernels/legacy_quants_internal.h"
#include "kernels/reduce_avx2.h"
#include "kernels/simd_scalars.h"

namespace kiln::kernels::legacy {
namespace {

// M activation rows (q8_0 or q8_1 blocks) split into arrays.
struct ActPanel {
  const std::int8_t* qs;  // (M, nb * 32) quants, row stride qs_stride, 32-byte aligned blocks
  std::int64_t qs_stride;
  const float* d;            // (M, nb) block scales
  const std::int32_t* bias;  // (M, nb) -offset * sum(q) of each block, offset being the weights'
  const float* s;            // (M, nb) q8_1's d * sum(q), for the weights' zero point (0 for q8_0)
  std::int64_t nb;
};

// Repacks M rows of ActBlock (a_stride bytes apart) into scratch slot 0. `offset` is what the
// weight kernel adds to each weight quant to make it unsigned.
template <typename ActBlock>
ActPanel repack_activations(const void* a, std::size_t a_stride, std::int64_t M, std::int64_t nb, int offset) {
  const std::int64_t qs_stride = nb * 32;
  const std::size_t scalars = static_cast<std::size_t>(M * nb);
  std::uint8_t* mem = legacy_scratch(0, static_cast<std::size_t>(M * qs_stride) + scalars * 12 + 64);
  auto* qs = reinterpret_cast<std::int8_t*>(mem);
  auto* d = reinterpret_cast<float*>(mem + M * qs_stride);
  auto* bias = reinterpret_cast<std::int32_t*>(d + scalars);
  auto* s = reinterpret_cast<float*>(bias + scalars);
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  for (std::int64_t m = 0; m < M; ++m) {
    const std::uint8_t* row = static_cast<const std::uint8_t*>(a) + m * a_stride;
    for (std::int64_t b = 0; b < nb; ++b) {
      const std::uint8_t* block = row + b * sizeof(ActBlock);
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + offsetof(ActBlock, qs)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(qs + m * qs_stride + b * 32), q);
      d[m * nb + b] = half_to_float(load_u16(block));
      // sum(q) = sum(q ^ 0x80 read as unsigned) - 32 * 128, and psadbw sums unsigned bytes.
      const __m256i sad = _mm256_sad_epu8(_mm256_xor_si256(q, flip), _mm256_setzero_si256());
      const __m128i sad2 = _mm_add_epi64(_mm256_castsi256_si128(sad), _mm256_extracti128_si256(sad, 1));
      const int sum = static_cast<int>(_mm_cvtsi128_si64(sad2) + _mm_extract_epi64(sad2, 1)) - 32 * 128;
      bias[m * nb + b] = -offset * sum;
      if constexpr (sizeof(ActBlock) == sizeof(block_q8_1)) {
        s[m * nb + b] = half_to_float(load_u16(block + offsetof(block_q8_1, s)));
      } else {
        s[m * nb + b] = 0.0f;
      }
    }
  }
  return ActPanel{qs, qs_stride, d, bias, s, nb};
}

// The scale step of a vec_dot, per block b of 32: acc += sum · dw · da (sum the block's 8 lanes
// of integer dot product), and for formats with a zero point (F::kHasMin) min_sum += mw · s.
// w is the weight block, a the activation row (blocks of F::ActBlock).
template <typename F>
KILN_INLINE void scale_block_dot(__m256i sum, const std::uint8_t* w, const std::uint8_t* a, std::int64_t b, __m256& acc,
                                 float& min_sum) {
  using A = typename F::ActBlock;
  const float wd = half_to_float(static_cast<std::uint16_t>(load_i32(w) & 0xFFFF));
  acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(wd * half_to_float(load_u16(a + b * sizeof(A)))), acc);
  if constexpr (F::kHasMin) {
    const float wm = half_to_float(static_cast<std::uint16_t>(static_cast<std::uint32_t>(load_i32(w)) >> 16));
    min_sum += wm * half_to_float(load_u16(a + b * sizeof(A) + offsetof(block_q8_1, s)));
  }
}

// One entry of a level's table: the activation format (and its quantizer, quantize_q8_0 or
// quantize_q8_1 of the same level) follows F's activation block.
template <typename F>
constexpr WeightKernels table_entry(DType w, QuantizeActFn quantize_q8_0, QuantizeActFn quantize_q8_1, VecDotFn vec_dot,
                                    GemmFn gemm, SimdLevel level) {
  const bool q8_1 = sizeof(typename F::ActBlock) == sizeof(block_q8_1);
  return WeightKernels{w, q8_1 ? DType::Q8_1 : DType::Q8_0, q8_1 ? quantize_q8_1 : quantize_q8_0, vec_dot, gemm, level};
}

}  // namespace
}  // namespace kiln::kernels::legacy
