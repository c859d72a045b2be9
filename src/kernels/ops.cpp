// The scalar references of kernels/ops.h and the dispatch to the SIMD paths (ops_avx2.cpp,
// ops_avx512.cpp). The references accumulate sums in double so that tests measure how far a
// fast path strays from the exact value, not from another rounding of it.
#include "kernels/ops.h"

#include <cmath>
#include <limits>

#include "core/cpu_features.h"
#include "core/half.h"
#include "kernels/ops_simd.h"

namespace kiln::kernels {

namespace ref {

float rms_norm(const float* x, const float* w, float* y, std::int64_t n, float eps) {
  if (n <= 0) return 0.0f;
  double sum_squares = 0.0;
  for (std::int64_t i = 0; i < n; ++i) sum_squares += static_cast<double>(x[i]) * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(sum_squares / static_cast<double>(n) + eps));
  for (std::int64_t i = 0; i < n; ++i) y[i] = x[i] * scale * w[i];
  return scale;
}

void softmax_inplace(float* x, std::int64_t n) {
  if (n <= 0) return;
  float max_value = -std::numeric_limits<float>::infinity();
  for (std::int64_t i = 0; i < n; ++i) max_value = std::fmax(max_value, x[i]);
  double sum = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max_value);
    sum += x[i];
  }
  const float inv_sum = static_cast<float>(1.0 / sum);
  for (std::int64_t i = 0; i < n; ++i) x[i] *= inv_sum;
}

void silu_mul(const float* gate, const float* up, float* y, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    y[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void gelu_tanh_mul(const float* gate, const float* up, float* y, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    y[i] = static_cast<float>(0.5 * g * (1.0 + std::tanh(0.7978845608028654 * (g + 0.044715 * g * g * g))) * up[i]);
  }
}

void softcap_inplace(float* x, std::int64_t n, float cap) {
  for (std::int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(cap * std::tanh(static_cast<double>(x[i]) / cap));
}

void add_inplace(float* y, const float* x, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) y[i] += x[i];
}

float dot_f32(const float* a, const float* b, std::int64_t n) {
  double sum = 0.0;
  for (std::int64_t i = 0; i < n; ++i) sum += static_cast<double>(a[i]) * b[i];
  return static_cast<float>(sum);
}

void axpy_f32(float alpha, const float* x, float* y, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

float dot_f16_f32(const std::uint16_t* a, const float* b, std::int64_t n) {
  double sum = 0.0;
  for (std::int64_t i = 0; i < n; ++i) sum += static_cast<double>(f16_to_f32(a[i])) * b[i];
  return static_cast<float>(sum);
}

void axpy_f16_f32(float alpha, const std::uint16_t* x, float* y, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) y[i] += alpha * f16_to_f32(x[i]);
}

void f32_to_f16_row(const float* x, std::uint16_t* y, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) y[i] = f32_to_f16(x[i]);
}

void f16_to_f32_row(const std::uint16_t* x, float* y, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) y[i] = f16_to_f32(x[i]);
}

void attn_scores_f16(const std::uint16_t* k, std::int64_t k_stride, std::int64_t n_rows, const float* q,
                     std::int64_t q_stride, std::int64_t n_q, std::int64_t hd, float scale, float* s,
                     std::int64_t s_stride) {
  for (std::int64_t g = 0; g < n_q; ++g)
    for (std::int64_t r = 0; r < n_rows; ++r)
      s[g * s_stride + r] = scale * dot_f16_f32(k + r * k_stride, q + g * q_stride, hd);
}

void attn_values_f16(const std::uint16_t* v, std::int64_t v_stride, std::int64_t n_rows, const float* p,
                     std::int64_t p_stride, std::int64_t n_q, std::int64_t hd, float* out, std::int64_t out_stride) {
  for (std::int64_t g = 0; g < n_q; ++g)
    for (std::int64_t r = 0; r < n_rows; ++r)
      axpy_f16_f32(p[g * p_stride + r], v + r * v_stride, out + g * out_stride, hd);
}

}  // namespace ref

// Each operation reads the level once per call and takes the matching path.
#define KILN_DISPATCH_OP(call) \
  switch (simd_level()) {      \
    case SimdLevel::Avx512:    \
      return avx512::call;     \
    case SimdLevel::Avx2:      \
      return avx2::call;       \
    case SimdLevel::Scalar:    \
      break;                   \
  }                            \
  return ref::call

float rms_norm(const float* x, const float* w, float* y, std::int64_t n, float eps) {
  KILN_DISPATCH_OP(rms_norm(x, w, y, n, eps));
}
void softmax_inplace(float* x, std::int64_t n) { KILN_DISPATCH_OP(softmax_inplace(x, n)); }
void silu_mul(const float* gate, const float* up, float* y, std::int64_t n) {
  KILN_DISPATCH_OP(silu_mul(gate, up, y, n));
}
void gelu_tanh_mul(const float* gate, const float* up, float* y, std::int64_t n) {
  KILN_DISPATCH_OP(gelu_tanh_mul(gate, up, y, n));
}
void softcap_inplace(float* x, std::int64_t n, float cap) { KILN_DISPATCH_OP(softcap_inplace(x, n, cap)); }
void add_inplace(float* y, const float* x, std::int64_t n) { KILN_DISPATCH_OP(add_inplace(y, x, n)); }
float dot_f32(const float* a, const float* b, std::int64_t n) { KILN_DISPATCH_OP(dot_f32(a, b, n)); }
void axpy_f32(float alpha, const float* x, float* y, std::int64_t n) { KILN_DISPATCH_OP(axpy_f32(alpha, x, y, n)); }
float dot_f16_f32(const std::uint16_t* a, const float* b, std::int64_t n) { KILN_DISPATCH_OP(dot_f16_f32(a, b, n)); }
void axpy_f16_f32(float alpha, const std::uint16_t* x, float* y, std::int64_t n) {
  KILN_DISPATCH_OP(axpy_f16_f32(alpha, x, y, n));
}
void f32_to_f16_row(const float* x, std::uint16_t* y, std::int64_t n) { KILN_DISPATCH_OP(f32_to_f16_row(x, y, n)); }
void f16_to_f32_row(const std::uint16_t* x, float* y, std::int64_t n) { KILN_DISPATCH_OP(f16_to_f32_row(x, y, n)); }

void attn_scores_f16(const std::uint16_t* k, std::int64_t k_stride, std::int64_t n_rows, const float* q,
                     std::int64_t q_stride, std::int64_t n_q, std::int64_t hd, float scale, float* s,
                     std::int64_t s_stride) {
  KILN_DISPATCH_OP(attn_scores_f16(k, k_stride, n_rows, q, q_stride, n_q, hd, scale, s, s_stride));
}
void attn_values_f16(const std::uint16_t* v, std::int64_t v_stride, std::int64_t n_rows, const float* p,
                     std::int64_t p_stride, std::int64_t n_q, std::int64_t hd, float* out, std::int64_t out_stride) {
  KILN_DISPATCH_OP(attn_values_f16(v, v_stride, n_rows, p, p_stride, n_q, hd, out, out_stride));
}

#undef KILN_DISPATCH_OP

}  // namespace kiln::kernels
