#pragma once
// Internal to the K-quant family (q2_K .. q6_K weights, q8_K activations): the reference
// quantizers and dequantizers (kquants_quantize_ref.cpp) that the importance-weighted ones
// build on, the per-level kernel tables (kquants_dot_scalar.cpp, kquants_avx2.cpp,
// kquants_avx512.cpp), and the scale unpacking they all share.
//
// The kernels read blocks through their structs, so rows must start at the blocks' own
// alignment: 2 bytes for the weight blocks (f16 scales), 4 for q8_K (float scale). GGUF tensor
// data (32-byte aligned, even row sizes) and kiln's activation buffers always satisfy this; the
// SIMD paths need nothing more (all their vector loads are unaligned loads).
#include <cstddef>
#include <cstdint>

#include "kernels/blocks.h"
#include "kernels/matmul.h"
#include "kernels/scale_search.h"

namespace kiln::kernels::kquant {

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

// The steps after the scale search, shared by the reference and the importance-weighted
// quantizers (which choose the scales differently). x is one super-block (QK_K floats); y has
// its scales set; L (QK_K) holds the search's levels: each sub-block whose stored scale is not
// zero is rounded again against it, then the levels are packed into y.
void finish_q2_K(const float* x, block_q2_K& y, std::uint8_t* L);
void finish_q3_K(const float* x, block_q3_K& y, std::int8_t* L);
void finish_q4_K(const float* x, block_q4_K& y, std::uint8_t* L);
void finish_q5_K(const float* x, block_q5_K& y, std::uint8_t* L);
// The whole q6_K super-block: its scale search weighs the error of x[j] by weights[j] (QK_K),
// x² for the reference, the importance for the weighted quantizer.
void quantize_q6_K_superblock(const float* x, const float* weights, block_q6_K& y);

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
