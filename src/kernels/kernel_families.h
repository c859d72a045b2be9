#pragma once
// Internal: each family of weight types lives in its own files and answers for its own types.
// Each function returns nullptr / false for a type outside its family.
#include "kernels/matmul.h"

namespace kiln::kernels {

// q4_0, q4_1, q5_0, q5_1, q8_0 (activations q8_0 / q8_1): legacy_quants*.cpp
const WeightKernels* legacy_weight_kernels(DType w, SimdLevel level);
bool legacy_quantize_row_ref(DType t, const float* x, void* dst, std::int64_t k);
bool legacy_dequantize_row(DType t, const void* src, float* y, std::int64_t k);

// q4_K, q5_K, q6_K (activations q8_K), plus q2_K, q3_K where implemented: kquants*.cpp
const WeightKernels* kquant_weight_kernels(DType w, SimdLevel level);
bool kquant_quantize_row_ref(DType t, const float* x, void* dst, std::int64_t k);
bool kquant_dequantize_row(DType t, const void* src, float* y, std::int64_t k);

// f32, f16, bf16: float_kernels*.cpp
const WeightKernels* float_weight_kernels(DType w, SimdLevel level);
bool float_quantize_row_ref(DType t, const float* x, void* dst, std::int64_t k);
bool float_dequantize_row(DType t, const void* src, float* y, std::int64_t k);

// kiln's affine a4g64, a4g128, a8g32, a8g64, a8g128 (activations q8_1): affine_quants*.cpp
const WeightKernels* affine_weight_kernels(DType w, SimdLevel level);
bool affine_quantize_row_ref(DType t, const float* x, void* dst, std::int64_t k);
bool affine_dequantize_row(DType t, const void* src, float* y, std::int64_t k);

}  // namespace kiln::kernels
