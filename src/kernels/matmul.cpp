#include "kernels/matmul.h"

#include "core/error.h"
#include "kernels/kernel_families.h"

namespace kiln::kernels {

const WeightKernels& weight_kernels(DType w, SimdLevel level) {
  if (level > max_supported_simd_level()) level = max_supported_simd_level();
  const WeightKernels* k = legacy_weight_kernels(w, level);
  if (k == nullptr) k = kquant_weight_kernels(w, level);
  if (k == nullptr) k = float_weight_kernels(w, level);
  if (k == nullptr) k = affine_weight_kernels(w, level);
  if (k == nullptr) fail("no kernels for weight type {}", dtype_name(w));
  return *k;
}

bool is_supported_weight_type(DType w) {
  return legacy_weight_kernels(w, SimdLevel::Scalar) != nullptr ||
         kquant_weight_kernels(w, SimdLevel::Scalar) != nullptr ||
         float_weight_kernels(w, SimdLevel::Scalar) != nullptr || affine_weight_kernels(w, SimdLevel::Scalar) != nullptr;
}

void quantize_row_ref(DType t, const float* x, void* dst, std::int64_t k) {
  KILN_CHECK(k % traits(t).block_size == 0, "quantize {}: row length {} is not a multiple of the block size {}",
             dtype_name(t), k, traits(t).block_size);
  if (legacy_quantize_row_ref(t, x, dst, k) || kquant_quantize_row_ref(t, x, dst, k) ||
      float_quantize_row_ref(t, x, dst, k) || affine_quantize_row_ref(t, x, dst, k))
    return;
  fail("quantize: no quantizer for type {}", dtype_name(t));
}

void dequantize_row(DType t, const void* src, float* y, std::int64_t k) {
  KILN_CHECK(k % traits(t).block_size == 0, "dequantize {}: row length {} is not a multiple of the block size {}",
             dtype_name(t), k, traits(t).block_size);
  if (legacy_dequantize_row(t, src, y, k) || kquant_dequantize_row(t, src, y, k) || float_dequantize_row(t, src, y, k) ||
      affine_dequantize_row(t, src, y, k))
    return;
  fail("dequantize: no dequantizer for type {}", dtype_name(t));
}

}  // namespace kiln::kernels
