// Dispatch of the training ops' fast paths (kernels/training_ops.h).
#include "kernels/training_ops.h"

#include "core/cpu_features.h"

namespace kiln::kernels {

float cross_entropy_row(float* z, std::int64_t n, int target, float grad_scale) {
  if (simd_level() >= SimdLevel::Avx512) return avx512::cross_entropy_row(z, n, target, grad_scale);
  return training_ref::cross_entropy_row(z, n, target, grad_scale);
}

void swiglu_backward(const float* gate, const float* up, const float* dh, float* dgate, float* dup, std::int64_t n) {
  if (simd_level() >= SimdLevel::Avx512) return avx512::swiglu_backward(gate, up, dh, dgate, dup, n);
  training_ref::swiglu_backward(gate, up, dh, dgate, dup, n);
}

void softmax_backward_row(const float* p, float* dp, std::int64_t n, float scale) {
  if (simd_level() >= SimdLevel::Avx512) return avx512::softmax_backward_row(p, dp, n, scale);
  training_ref::softmax_backward_row(p, dp, n, scale);
}

training_ref::DistillTerms<float> distill_row(float* z, std::int64_t n, int target, const int* ids,
                                              const float* teacher_logp, std::int64_t k, float alpha, float tau,
                                              float grad_scale, float* work) {
  if (simd_level() >= SimdLevel::Avx512)
    return avx512::distill_row(z, n, target, ids, teacher_logp, k, alpha, tau, grad_scale, work);
  return training_ref::distill_row(z, n, target, ids, teacher_logp, k, alpha, tau, grad_scale, work);
}

}  // namespace kiln::kernels
