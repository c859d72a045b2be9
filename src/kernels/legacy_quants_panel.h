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

namespace kiln::kernels::legacy {
namespace {

#define KILN_INLINE inline __attribute__((always_inline))

KILN_INLINE float half_to_float(std::uint16_t h) { return _cvtsh_ss(h); }
KILN_INLINE std::uint16_t float_to_half(float f) { return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }

KILN_INLINE std::int32_t load_i32(const void* p) {
  std::int32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Blocks are read and written through byte offsets: rows may start at any address.
KILN_INLINE std::uint16_t load_u16(const void* p) {
  std::uint16_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
KILN_INLINE void store_u16(void* p, std::uint16_t v) { std::memcpy(p, &v, sizeof(v)); }

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

}  // namespace
}  // namespace kiln::kernels::legacy
