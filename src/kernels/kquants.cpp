// The K-quant family's answers to the kernel registry (kernel_families.h): q2_K .. q6_K weights
// with q8_K activations, and the q8_K activation format itself for (de)quantization.
#include "kernels/kernel_families.h"
#include "kernels/kquants_internal.h"

namespace kiln::kernels {

const WeightKernels* kquant_weight_kernels(DType w, SimdLevel level) {
  // Every type has at least the scalar path.
  static constexpr KernelLevel kLevels[] = {{SimdLevel::Avx512, kquant::avx512_weight_kernels},
                                            {SimdLevel::Avx2, kquant::avx2_weight_kernels},
                                            {SimdLevel::Scalar, kquant::scalar_weight_kernels}};
  return best_kernels(w, level, kLevels);
}

bool kquant_quantize_row_ref(DType t, const float* x, void* dst, std::int64_t k) {
  switch (t) {
    case DType::Q2_K:
      kquant::quantize_row_q2_K_ref(x, static_cast<block_q2_K*>(dst), k);
      return true;
    case DType::Q3_K:
      kquant::quantize_row_q3_K_ref(x, static_cast<block_q3_K*>(dst), k);
      return true;
    case DType::Q4_K:
      kquant::quantize_row_q4_K_ref(x, static_cast<block_q4_K*>(dst), k);
      return true;
    case DType::Q5_K:
      kquant::quantize_row_q5_K_ref(x, static_cast<block_q5_K*>(dst), k);
      return true;
    case DType::Q6_K:
      kquant::quantize_row_q6_K_ref(x, static_cast<block_q6_K*>(dst), k);
      return true;
    case DType::Q8_K:
      kquant::quantize_row_q8_K_ref(x, static_cast<block_q8_K*>(dst), k);
      return true;
    default:
      return false;
  }
}

bool kquant_dequantize_row(DType t, const void* src, float* y, std::int64_t k) {
  switch (t) {
    case DType::Q2_K:
      kquant::dequantize_row_q2_K(static_cast<const block_q2_K*>(src), y, k);
      return true;
    case DType::Q3_K:
      kquant::dequantize_row_q3_K(static_cast<const block_q3_K*>(src), y, k);
      return true;
    case DType::Q4_K:
      kquant::dequantize_row_q4_K(static_cast<const block_q4_K*>(src), y, k);
      return true;
    case DType::Q5_K:
      kquant::dequantize_row_q5_K(static_cast<const block_q5_K*>(src), y, k);
      return true;
    case DType::Q6_K:
      kquant::dequantize_row_q6_K(static_cast<const block_q6_K*>(src), y, k);
      return true;
    case DType::Q8_K:
      kquant::dequantize_row_q8_K(static_cast<const block_q8_K*>(src), y, k);
      return true;
    default:
      return false;
  }
}

}  // namespace kiln::kernels
