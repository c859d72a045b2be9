#pragma once
// Internal: the AVX2 and AVX-512 paths of the operations in kernels/ops.h, with the same
// contracts. Each namespace is compiled in its own translation unit with its own target flags
// (ops_avx2.cpp, ops_avx512.cpp) and entered only after simd_level() said the CPU can run it.
#include <cstdint>

namespace kiln::kernels {

namespace avx2 {
float rms_norm(const float* x, const float* w, float* y, std::int64_t n, float eps);
void softmax_inplace(float* x, std::int64_t n);
void silu_mul(const float* gate, const float* up, float* y, std::int64_t n);
void gelu_tanh_mul(const float* gate, const float* up, float* y, std::int64_t n);
void softcap_inplace(float* x, std::int64_t n, float cap);
void add_inplace(float* y, const float* x, std::int64_t n);
float dot_f32(const float* a, const float* b, std::int64_t n);
void axpy_f32(float alpha, const float* x, float* y, std::int64_t n);
float dot_f16_f32(const std::uint16_t* a, const float* b, std::int64_t n);
void axpy_f16_f32(float alpha, const std::uint16_t* x, float* y, std::int64_t n);
void f32_to_f16_row(const float* x, std::uint16_t* y, std::int64_t n);
void f16_to_f32_row(const std::uint16_t* x, float* y, std::int64_t n);
void attn_scores_f16(const std::uint16_t* k, std::int64_t k_stride, std::int64_t n_rows, const float* q,
                     std::int64_t q_stride, std::int64_t n_q, std::int64_t hd, float scale, float* s,
                     std::int64_t s_stride);
void attn_values_f16(const std::uint16_t* v, std::int64_t v_stride, std::int64_t n_rows, const float* p,
                     std::int64_t p_stride, std::int64_t n_q, std::int64_t hd, float* out, std::int64_t out_stride);
}  // namespace avx2

namespace avx512 {
float rms_norm(const float* x, const float* w, float* y, std::int64_t n, float eps);
void softmax_inplace(float* x, std::int64_t n);
void silu_mul(const float* gate, const float* up, float* y, std::int64_t n);
void gelu_tanh_mul(const float* gate, const float* up, float* y, std::int64_t n);
void softcap_inplace(float* x, std::int64_t n, float cap);
void add_inplace(float* y, const float* x, std::int64_t n);
float dot_f32(const float* a, const float* b, std::int64_t n);
void axpy_f32(float alpha, const float* x, float* y, std::int64_t n);
float dot_f16_f32(const std::uint16_t* a, const float* b, std::int64_t n);
void axpy_f16_f32(float alpha, const std::uint16_t* x, float* y, std::int64_t n);
void f32_to_f16_row(const float* x, std::uint16_t* y, std::int64_t n);
void f16_to_f32_row(const std::uint16_t* x, float* y, std::int64_t n);
void attn_scores_f16(const std::uint16_t* k, std::int64_t k_stride, std::int64_t n_rows, const float* q,
                     std::int64_t q_stride, std::int64_t n_q, std::int64_t hd, float scale, float* s,
                     std::int64_t s_stride);
void attn_values_f16(const std::uint16_t* v, std::int64_t v_stride, std::int64_t n_rows, const float* p,
                     std::int64_t p_stride, std::int64_t n_q, std::int64_t hd, float* out, std::int64_t out_stride);
}  // namespace avx512

}  // namespace kiln::kernels
