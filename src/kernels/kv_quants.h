#pragma once
// Attention over a KV cache stored in blocks of 32 quantized values per row, as llama.cpp's
// --cache-type-k/-v: q8_0 (an f16 scale and 32 int8, 34 bytes per 32 values: 34/64 of f16),
// q4_0 (an f16 scale and 32 nibbles around 8, 18 bytes) and q4_1 (an f16 scale, an f16 minimum
// and 32 nibbles, 20 bytes). The blocks are ggml's (blocks.h), so a row is what
// quantize_row_ref writes.
//
// A cached row is quantized once when it is written; attention then reads a head's slice of it
// (head_dim values, a whole number of blocks) for every query head that shares the KV head. The
// fast paths dequantize each block once into registers and use it for all those heads, with
// the same loop shapes as the f16 kernels of ops.h. Each function has a scalar reference
// (namespace ref) and AVX2 / AVX-512 paths chosen by simd_level(); tests compare them.
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace kiln::kernels {

// Values per block of every KV block type.
inline constexpr std::int64_t kKvBlock = 32;

// True for the block types a KV cache can hold (q8_0, q4_0, q4_1).
bool is_kv_block_type(DType t);

// Writes n floats (a multiple of 32) as blocks of t at dst (row_bytes(t, n) bytes), rounding as
// ggml's reference quantizers do.
void kv_quantize_row(DType t, const float* x, void* dst, std::int64_t n);

// For the n_q query heads that share one KV head, over n_rows cached rows whose head slices
// (hd values, hd a multiple of 32) start `row_bytes` apart at k / v:
//   scores: s[g * s_stride + r] = scale * dot(dequant(k row r), q + g * q_stride)
//   values: out[g * out_stride + i] += sum_r p[g * p_stride + r] * dequant(v row r)[i]
// for g < n_q, r < n_rows, i < hd.
void attn_scores_q(DType t, const void* k, std::size_t row_bytes, std::int64_t n_rows, const float* q,
                   std::int64_t q_stride, std::int64_t n_q, std::int64_t hd, float scale, float* s,
                   std::int64_t s_stride);
void attn_values_q(DType t, const void* v, std::size_t row_bytes, std::int64_t n_rows, const float* p,
                   std::int64_t p_stride, std::int64_t n_q, std::int64_t hd, float* out, std::int64_t out_stride);

namespace ref {
void attn_scores_q(DType t, const void* k, std::size_t row_bytes, std::int64_t n_rows, const float* q,
                   std::int64_t q_stride, std::int64_t n_q, std::int64_t hd, float scale, float* s,
                   std::int64_t s_stride);
void attn_values_q(DType t, const void* v, std::size_t row_bytes, std::int64_t n_rows, const float* p,
                   std::int64_t p_stride, std::int64_t n_q, std::int64_t hd, float* out, std::int64_t out_stride);
}  // namespace ref

}  // namespace kiln::kernels
