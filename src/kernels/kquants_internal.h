#pragma once
// Internal to the K-quant family (q2_K .. q6_K weights, q8_K activations): the scalar reference
// functions that every fast path is tested against, and the per-level kernel tables.
//
// The kernels read blocks through their structs, so rows must start at the blocks' own
// alignment: 2 bytes for the weight blocks (f16 scales), 4 for q8_K (float scale). GGUF tensor
// data (32-byte aligned, even row sizes) and kiln's activation buffers always satisfy this; the
// SIMD paths need nothing more (all their vector loads are unaligned loads).
#include <bit>
#include <cstddef>
#include <cstdint>

#include "kernels/blocks.h"
#include "kernels/matmul.h"

namespace kiln::kernels::kquant {

// ggml's nearest_int: adding 1.5 * 2^23 makes the FPU round to an integer in round-to-nearest-
// even mode, which the low mantissa bits then hold. Valid for |x| <= 2^22 - 1.
inline int nearest_int(float x) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(x + 12582912.f);
  return static_cast<int>(bits & 0x007fffffu) - 0x00400000;
}

// The 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes of q4_K / q5_K.
inline void get_scale_min_k4(int j, const std::uint8_t* packed, std::uint8_t* scale, std::uint8_t* min) {
  if (j < 4) {
    *scale = packed[j] & 63;
    *min = packed[j + 4] & 63;
  } else {
    *scale = (packed[j + 4] & 0xF) | ((packed[j - 4] >> 6) << 4);
    *min = (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4);
  }
}

// The 16 6-bit scales of q3_K (0..63, stored with an offset of 32) from its 12 packed bytes.
inline void unpack_q3_K_scales(const std::uint8_t* packed, std::uint8_t* scales) {
  for (int j = 0; j < 16; ++j) {
    const int low = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4;
    const int high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
    scales[j] = static_cast<std::uint8_t>(low | (high << 4));
  }
}

// Reference quantizers, bit-exact with ggml's quantize_row_*_ref; k is a multiple of QK_K.
void quantize_row_q2_K_ref(const float* x, block_q2_K* y, std::int64_t k);
void quantize_row_q3_K_ref(const float* x, block_q3_K* y, std::int64_t k);
void quantize_row_q4_K_ref(const float* x, block_q4_K* y, std::int64_t k);
void quantize_row_q5_K_ref(const float* x, block_q5_K* y, std::int64_t k);
void quantize_row_q6_K_ref(const float* x, block_q6_K* y, std::int64_t k);
void quantize_row_q8_K_ref(const float* x, block_q8_K* y, std::int64_t k);

void dequantize_row_q2_K(const block_q2_K* x, float* y, std::int64_t k);
void dequantize_row_q3_K(const block_q3_K* x, float* y, std::int64_t k);
void dequantize_row_q4_K(const block_q4_K* x, float* y, std::int64_t k);
void dequantize_row_q5_K(const block_q5_K* x, float* y, std::int64_t k);
void dequantize_row_q6_K(const block_q6_K* x, float* y, std::int64_t k);
void dequantize_row_q8_K(const block_q8_K* x, float* y, std::int64_t k);

// The kernel tables of each level; nullptr for a type that level does not implement.
const WeightKernels* scalar_weight_kernels(DType w);
const WeightKernels* avx2_weight_kernels(DType w);
const WeightKernels* avx512_weight_kernels(DType w);

}  // namespace kiln::kernels::kquant
