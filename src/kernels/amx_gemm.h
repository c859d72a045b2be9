#pragma once
// Prompt prefill on AMX tiles: y = x · Wᵀ for many activation rows at once, with the weights
// dequantized from their stored block format to bf16 on the fly and multiplied with
// TDPBF16PS (f32 accumulation). Decode (one row) stays on the VNNI kernels of matmul.h; this
// path pays off when M is large enough to reuse each dequantized weight panel many times.
//
//   std::vector<std::uint16_t> a(M * K);                 // a is (M, K) bf16
//   amx_convert_activations(x, M, K, a.data());          // x is (M, K) floats
//   amx_gemm(DType::Q4_0, K, w, row_bytes(DType::Q4_0, K), a.data(), K, M, n0, n1, y, N);
//
// The weights are rounded to bf16 (8 significant bits) before the product, so results differ
// from the integer dot products of the VNNI kernels by about 2^-9 relative per product.
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace kiln::kernels {

// The CPU has AMX-BF16 and AVX-512 (BF16), and Linux granted this process the tile data state
// (arch_prctl ARCH_REQ_XCOMP_PERM). Asked once and cached. The environment variable KILN_AMX=0
// turns the path off, and so does a SIMD level below avx512 (KILN_SIMD, set_simd_level).
bool amx_available();
// amx_available() and a fast bf16 decoder exists for the weight type: f32, f16, bf16, q4_0,
// q4_1, q5_0, q5_1, q8_0, q4_K, q5_K, q6_K, and kiln's affine a4g64 .. a8g128.
bool amx_supports(DType weight_type);

// Converts x (M, K) floats to bf16 rows a_bf16 (M, K), rounding to nearest even exactly as
// kiln::f32_to_bf16 (core/half.h) does, NaN included.
void amx_convert_activations(const float* x, std::int64_t M, std::int64_t K, std::uint16_t* a_bf16);

// y[m * ldy + n] = sum_k dequant(W)[n][k] * a[m][k] for m in [0, M), n in [n_begin, n_end).
//   w: weight rows of the stored type, w_stride bytes apart (row n starts at w + n * w_stride)
//   a_bf16: (M, K) bf16 rows, lda elements apart
// K must be a multiple of 32 (of 256 for the K-quants). Threads may call this concurrently on
// disjoint n ranges: each thread keeps its own scratch and tile configuration. Throws
// kiln::Error when !amx_supports(weight_type) or K does not fit the type.
void amx_gemm(DType weight_type, std::int64_t K, const void* w, std::size_t w_stride, const std::uint16_t* a_bf16,
              std::size_t lda, std::int64_t M, std::int64_t n_begin, std::int64_t n_end, float* y, std::int64_t ldy);

namespace amx_detail {
// Implemented in amx_gemm_amx.cpp (AMX and AVX-512 code); amx_gemm.cpp calls them only after
// amx_available() and the argument checks.
bool has_fast_decoder(DType weight_type);
void convert_activations(const float* x, std::int64_t M, std::int64_t K, std::uint16_t* a_bf16);
void gemm(DType weight_type, std::int64_t K, const void* w, std::size_t w_stride, const std::uint16_t* a_bf16,
          std::size_t lda, std::int64_t M, std::int64_t n_begin, std::int64_t n_end, float* y, std::int64_t ldy);
}  // namespace amx_detail

}  // namespace kiln::kernels
