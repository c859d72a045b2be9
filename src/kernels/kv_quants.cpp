// The scalar references of kernels/kv_quants.h and the dispatch to the SIMD paths
// (kv_quants_avx2.cpp, kv_quants_avx512.cpp). The references dequantize a block at a time with
// dequantize_row and accumulate in double, so that tests measure how far a fast path strays
// from the exact value of the stored blocks.
#include "kernels/kv_quants.h"

#include "core/cpu_features.h"
#include "core/error.h"
#include "kernels/kv_quants_simd.h"
#include "kernels/matmul.h"

namespace kiln::kernels {

bool is_kv_block_type(DType t) { return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q4_1; }

void kv_quantize_row(DType t, const float* x, void* dst, std::int64_t n) {
  KILN_CHECK(is_kv_block_type(t) && n % kKvBlock == 0, "internal: kv row of {} values as {}", n, dtype_name(t));
  quantize_row_ref(t, x, dst, n);
}

namespace ref {

void attn_scores_q(DType t, const void* k, std::size_t row_bytes, std::int64_t n_rows, const float* q,
                   std::int64_t q_stride, std::int64_t n_q, std::int64_t hd, float scale, float* s,
                   std::int64_t s_stride) {
  const std::size_t block_bytes = traits(t).block_bytes;
  float tile[kKvBlock];
  for (std::int64_t r = 0; r < n_rows; ++r) {
    const auto* row = static_cast<const std::uint8_t*>(k) + static_cast<std::size_t>(r) * row_bytes;
    for (std::int64_t g = 0; g < n_q; ++g) {
      double sum = 0.0;
      for (std::int64_t b = 0; b < hd / kKvBlock; ++b) {
        dequantize_row(t, row + static_cast<std::size_t>(b) * block_bytes, tile, kKvBlock);
        for (std::int64_t i = 0; i < kKvBlock; ++i)
          sum += static_cast<double>(tile[i]) * q[g * q_stride + b * kKvBlock + i];
      }
      s[g * s_stride + r] = scale * static_cast<float>(sum);
    }
  }
}

void attn_values_q(DType t, const void* v, std::size_t row_bytes, std::int64_t n_rows, const float* p,
                   std::int64_t p_stride, std::int64_t n_q, std::int64_t hd, float* out, std::int64_t out_stride) {
  const std::size_t block_bytes = traits(t).block_bytes;
  float tile[kKvBlock];
  for (std::int64_t g = 0; g < n_q; ++g)
    for (std::int64_t b = 0; b < hd / kKvBlock; ++b) {
      double sum[kKvBlock] = {};
      for (std::int64_t r = 0; r < n_rows; ++r) {
        const auto* row = static_cast<const std::uint8_t*>(v) + static_cast<std::size_t>(r) * row_bytes;
        dequantize_row(t, row + static_cast<std::size_t>(b) * block_bytes, tile, kKvBlock);
        for (std::int64_t i = 0; i < kKvBlock; ++i) sum[i] += static_cast<double>(p[g * p_stride + r]) * tile[i];
      }
      for (std::int64_t i = 0; i < kKvBlock; ++i) out[g * out_stride + b * kKvBlock + i] += static_cast<float>(sum[i]);
    }
}

}  // namespace ref

namespace {

void check_shape(DType t, std::int64_t hd) {
  KILN_CHECK(is_kv_block_type(t) && hd % kKvBlock == 0, "internal: kv attention over {} with head size {}",
             dtype_name(t), hd);
}

}  // namespace

void attn_scores_q(DType t, const void* k, std::size_t row_bytes, std::int64_t n_rows, const float* q,
                   std::int64_t q_stride, std::int64_t n_q, std::int64_t hd, float scale, float* s,
                   std::int64_t s_stride) {
  check_shape(t, hd);
  const auto id = static_cast<std::uint32_t>(t);
  switch (simd_level()) {
    case SimdLevel::Avx512:
      return avx512::attn_scores_q(id, k, row_bytes, n_rows, q, q_stride, n_q, hd, scale, s, s_stride);
    case SimdLevel::Avx2:
      return avx2::attn_scores_q(id, k, row_bytes, n_rows, q, q_stride, n_q, hd, scale, s, s_stride);
    case SimdLevel::Scalar:
      break;
  }
  ref::attn_scores_q(t, k, row_bytes, n_rows, q, q_stride, n_q, hd, scale, s, s_stride);
}

void attn_values_q(DType t, const void* v, std::size_t row_bytes, std::int64_t n_rows, const float* p,
                   std::int64_t p_stride, std::int64_t n_q, std::int64_t hd, float* out, std::int64_t out_stride) {
  check_shape(t, hd);
  const auto id = static_cast<std::uint32_t>(t);
  switch (simd_level()) {
    case SimdLevel::Avx512:
      return avx512::attn_values_q(id, v, row_bytes, n_rows, p, p_stride, n_q, hd, out, out_stride);
    case SimdLevel::Avx2:
      return avx2::attn_values_q(id, v, row_bytes, n_rows, p, p_stride, n_q, hd, out, out_stride);
    case SimdLevel::Scalar:
      break;
  }
  ref::attn_values_q(t, v, row_bytes, n_rows, p, p_stride, n_q, hd, out, out_stride);
}

}  // namespace kiln::kernels
