#pragma once
// Internal: the AVX2 and AVX-512 paths of kernels/kv_quants.h, with the same contracts. Each
// namespace is compiled in its own translation unit with its own target flags
// (kv_quants_avx2.cpp, kv_quants_avx512.cpp) and entered only after simd_level() said the CPU
// can run it. The type is passed as its ggml id so that these files need no C++ headers.
#include <cstddef>
#include <cstdint>

namespace kiln::kernels {

namespace avx2 {
void attn_scores_q(std::uint32_t type, const void* k, std::size_t row_bytes, std::int64_t n_rows, const float* q,
                   std::int64_t q_stride, std::int64_t n_q, std::int64_t hd, float scale, float* s,
                   std::int64_t s_stride);
void attn_values_q(std::uint32_t type, const void* v, std::size_t row_bytes, std::int64_t n_rows, const float* p,
                   std::int64_t p_stride, std::int64_t n_q, std::int64_t hd, float* out, std::int64_t out_stride);
}  // namespace avx2

namespace avx512 {
void attn_scores_q(std::uint32_t type, const void* k, std::size_t row_bytes, std::int64_t n_rows, const float* q,
                   std::int64_t q_stride, std::int64_t n_q, std::int64_t hd, float scale, float* s,
                   std::int64_t s_stride);
void attn_values_q(std::uint32_t type, const void* v, std::size_t row_bytes, std::int64_t n_rows, const float* p,
                   std::int64_t p_stride, std::int64_t n_q, std::int64_t hd, float* out, std::int64_t out_stride);
}  // namespace avx512

// ggml's type ids of the KV block types (core/dtype.h's DType values).
inline constexpr std::uint32_t kKvQ4_0 = 2, kKvQ4_1 = 3, kKvQ8_0 = 8;

}  // namespace kiln::kernels
