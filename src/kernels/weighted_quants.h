#pragma once
// Importance-weighted block quantizers, beside the reference ones (matmul.h's quantize_row_ref):
// they weigh each weight's rounding error by an importance (llama.cpp's quant_weights), and are
// bit-exact with ggml's quantize_q4_0 ... quantize_q6_K given the same
// `quant_weights` row (the imatrix's mean squared activation per input column), i.e. with the
// quantize_row_*_impl paths that llama-quantize takes when it has an importance matrix.
//
// What the importance changes, per type (x a row, qw its importance, σ² the mean x² of the row
// for q4_0 .. q5_1, of the super-block for the K-quants, twice that for q3_K .. q5_K):
//   q4_0, q5_0      the scale of each block of 32 from 19 candidates by the error weighted with
//                   qw·sqrt(σ² + x²) instead of x² (make_qx_quants)
//   q4_1, q5_1      scale and min by weighted least squares over 37 candidates (make_qkx3_quants,
//                   scale_search.h's make_qkx2_quants)
//   q2_K .. q5_K    the same per sub-block, then the sub-block scales (and mins) themselves
//                   quantized to 4 or 6 bits by the error weighted with each sub-block's total
//                   weight (make_qp_quants / make_qx_quants)
//   q6_K            the scale of each sub-block of 16 weighted by qw directly
//   q8_0 and float types have no weighted path: ggml ignores the importance there too.
#include <cstdint>

#include "core/dtype.h"

namespace kiln::kernels {

// True when ggml's quantizer for t uses an importance matrix.
bool uses_importance(DType t);

// Quantizes one row of k floats (k a multiple of t's block size) with importance qw (k floats).
// qw == nullptr gives the reference quantizer (quantize_row_ref), as in ggml.
void quantize_row_weighted(DType t, const float* x, void* dst, std::int64_t k, const float* qw);

}  // namespace kiln::kernels
