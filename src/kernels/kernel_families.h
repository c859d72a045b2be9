#pragma once
// Internal: each family of weight types lives in its own files and answers for its own types.
// Each function returns nullptr / false for a type outside its family. The helpers below have
// internal linkage: SIMD translation units include this header too, and a shared inline copy
// compiled with their flags could be the one the linker keeps for the scalar path.
#include <cstddef>
#include <cstdint>

#include "kernels/matmul.h"

namespace kiln::kernels {
namespace {

// One SIMD level's table of a family: one entry per weight type it implements. Returns the
// entry for w, or nullptr when that level does not implement w.
template <std::size_t N>
constexpr const WeightKernels* find_kernels(const WeightKernels (&table)[N], DType w) {
  for (const WeightKernels& k : table) {
    if (k.weight_type == w) return &k;
  }
  return nullptr;
}

// A family's lookup at one level (such as a find_kernels over that level's table), and the
// least SIMD level the CPU needs for it.
struct KernelLevel {
  SimdLevel needs;
  const WeightKernels* (*lookup)(DType w);
};

// The first of `levels` (listed best first) that `level` allows and that implements w.
template <std::size_t N>
const WeightKernels* best_kernels(DType w, SimdLevel level, const KernelLevel (&levels)[N]) {
  for (const KernelLevel& l : levels) {
    if (level < l.needs) continue;
    if (const WeightKernels* k = l.lookup(w)) return k;
  }
  return nullptr;
}

// The reference tile product of a family's scalar level: one dot product per output.
template <VecDotFn vec_dot>
void gemm_by_vec_dot(std::int64_t k, const void* w, std::size_t w_stride, const void* a, std::size_t a_stride,
                     std::int64_t M, std::int64_t n_begin, std::int64_t n_end, float* y, std::int64_t ldy) {
  const auto* w_bytes = static_cast<const std::uint8_t*>(w);
  const auto* a_bytes = static_cast<const std::uint8_t*>(a);
  for (std::int64_t m = 0; m < M; ++m) {
    for (std::int64_t n = n_begin; n < n_end; ++n)
      y[m * ldy + n] = vec_dot(k, w_bytes + n * w_stride, a_bytes + m * a_stride);
  }
}

}  // namespace

// ggml's legacy q4_0, q4_1, q5_0, q5_1, q8_0 (activations q8_0 / q8_1): legacy_quants*.cpp
const WeightKernels* legacy_weight_kernels(DType w, SimdLevel level);
bool legacy_quantize_row_ref(DType t, const float* x, void* dst, std::int64_t k);
bool legacy_dequantize_row(DType t, const void* src, float* y, std::int64_t k);

// q2_K, q3_K, q4_K, q5_K, q6_K (activations q8_K): kquants*.cpp
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
