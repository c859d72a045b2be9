// The float weight family (F32, F16, BF16): the scalar reference kernels, row conversions, and
// the choice among the scalar, AVX2 and AVX-512 tables (float_kernels.h).
//
// The reference dots accumulate in double so that tests measure the fast paths against the
// exact sum of the (converted) products rather than against another rounding order.
#include "kernels/float_kernels.h"

#include <cstring>

#include "core/half.h"
#include "kernels/kernel_families.h"
#include "kernels/ops.h"

namespace kiln::kernels {
namespace float_kernels {
namespace {

// Weight element i of a row as a float.
inline float weight_at(DType t, const void* row, std::int64_t i) {
  switch (t) {
    case DType::F16:
      return f16_to_f32(static_cast<const std::uint16_t*>(row)[i]);
    case DType::BF16:
      return bf16_to_f32(static_cast<const std::uint16_t*>(row)[i]);
    default:
      return static_cast<const float*>(row)[i];
  }
}

template <DType W>
float vec_dot_ref(std::int64_t k, const void* w_row, const void* a_row) {
  double sum = 0.0;
  if constexpr (W == DType::BF16) {
    const auto* a = static_cast<const std::uint16_t*>(a_row);  // a is (k) bf16
    for (std::int64_t i = 0; i < k; ++i) sum += static_cast<double>(weight_at(W, w_row, i)) * bf16_to_f32(a[i]);
  } else {
    const auto* a = static_cast<const float*>(a_row);  // a is (k) floats
    for (std::int64_t i = 0; i < k; ++i) sum += static_cast<double>(weight_at(W, w_row, i)) * a[i];
  }
  return static_cast<float>(sum);
}

template <DType W>
void gemm_ref(std::int64_t k, const void* w, std::size_t w_stride, const void* a, std::size_t a_stride, std::int64_t M,
              std::int64_t n_begin, std::int64_t n_end, float* y, std::int64_t ldy) {
  const auto* w_bytes = static_cast<const char*>(w);
  const auto* a_bytes = static_cast<const char*>(a);
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t n = n_begin; n < n_end; ++n)
      y[m * ldy + n] = vec_dot_ref<W>(k, w_bytes + static_cast<std::size_t>(n) * w_stride,
                                      a_bytes + static_cast<std::size_t>(m) * a_stride);
}

void quantize_bf16_act_ref(const float* x, void* dst, std::int64_t k) {
  f32_to_bf16_row_ref(x, static_cast<std::uint16_t*>(dst), k);
}

constexpr WeightKernels kScalarKernels[] = {
    {DType::F32, DType::F32, copy_f32_row, vec_dot_ref<DType::F32>, gemm_ref<DType::F32>, SimdLevel::Scalar},
    {DType::F16, DType::F32, copy_f32_row, vec_dot_ref<DType::F16>, gemm_ref<DType::F16>, SimdLevel::Scalar},
    {DType::BF16, DType::BF16, quantize_bf16_act_ref, vec_dot_ref<DType::BF16>, gemm_ref<DType::BF16>,
     SimdLevel::Scalar},
};

}  // namespace

const WeightKernels* scalar_weight_kernels(DType w) { return find_kernels(kScalarKernels, w); }

void copy_f32_row(const float* x, void* dst, std::int64_t k) {
  std::memcpy(dst, x, static_cast<std::size_t>(k) * sizeof(float));
}

void f32_to_bf16_row_ref(const float* x, std::uint16_t* y, std::int64_t k) {
  for (std::int64_t i = 0; i < k; ++i) y[i] = f32_to_bf16(x[i]);
}

}  // namespace float_kernels

const WeightKernels* float_weight_kernels(DType w, SimdLevel level) {
  // Every float type has all three levels.
  static constexpr KernelLevel kLevels[] = {{SimdLevel::Avx512, float_kernels::avx512_weight_kernels},
                                            {SimdLevel::Avx2, float_kernels::avx2_weight_kernels},
                                            {SimdLevel::Scalar, float_kernels::scalar_weight_kernels}};
  return best_kernels(w, level, kLevels);
}

// f16 rows go through the dispatched converters of kernels/ops.h, which are bit-exact with
// core/half.h at every level; f32 is a copy and bf16 a plain loop over kiln::f32_to_bf16.
bool float_quantize_row_ref(DType t, const float* x, void* dst, std::int64_t k) {
  switch (t) {
    case DType::F32:
      std::memcpy(dst, x, static_cast<std::size_t>(k) * sizeof(float));
      return true;
    case DType::F16:
      f32_to_f16_row(x, static_cast<std::uint16_t*>(dst), k);
      return true;
    case DType::BF16:
      float_kernels::f32_to_bf16_row_ref(x, static_cast<std::uint16_t*>(dst), k);
      return true;
    default:
      return false;
  }
}

bool float_dequantize_row(DType t, const void* src, float* y, std::int64_t k) {
  switch (t) {
    case DType::F32:
      std::memcpy(y, src, static_cast<std::size_t>(k) * sizeof(float));
      return true;
    case DType::F16:
      f16_to_f32_row(static_cast<const std::uint16_t*>(src), y, k);
      return true;
    case DType::BF16: {
      const auto* s = static_cast<const std::uint16_t*>(src);  // s is (k) bf16
      for (std::int64_t i = 0; i < k; ++i) y[i] = bf16_to_f32(s[i]);
      return true;
    }
    default:
      return false;
  }
}

}  // namespace kiln::kernels
