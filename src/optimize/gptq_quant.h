#pragma once
// GPTQ, kiln's calibrated quantization (`kiln quantize --method gptq`): GPTQ-style error feedback
// (Frantar et al., 2022) on top of the importance-weighted block quantizers, writing the same
// standard GGUF block types, so llama.cpp loads the files unchanged.
//
// Plain rounding minimizes each weight's own error. What the model feels is the error of the
// product: for a row w of a weight and calibration inputs X, ||X wᵀ - X qᵀ||² = (w-q)ᵀ H (w-q)
// with H = XᵀX (the input covariance `kiln imatrix --covariance` stores). GPTQ walks the columns
// in order; after rounding column j it spreads that column's error onto the columns not yet
// rounded, in the proportion H says the inputs are correlated, so later roundings cancel it.
// With block types the scales cannot be chosen after the fact: at the start of each block (32
// weights, or a super-block of 256 for the K-quants) its scales (and mins) are chosen by the
// imatrix-weighted quantizer on the weights as updated so far, then each weight of the block is
// rounded to that block's grid and its error fed forward.
//
// Per row: O(k²) work given U, the upper Cholesky factor of H⁻¹ (k² floats, shared by all rows
// of a weight: computed once per tensor by prepare_gptq).
#include <cstdint>
#include <vector>

#include "core/dtype.h"

namespace kiln::optimize {

struct GptqFactor {
  std::int64_t k = 0;
  std::vector<float> U;  // (k, k) row-major upper triangle: H⁻¹ = Uᵀ U
};

// The factor for a weight from its input covariance sum (k, k) over n_tokens tokens:
// H = cov / n_tokens + damp · mean(diag) · I (dead inputs, with no activation at all, get 1 on
// the diagonal). Throws kiln::Error if H is not positive definite even so.
GptqFactor prepare_gptq(const float* cov, std::int64_t k, double n_tokens, double damp = 0.01);

// Quantizes one row of k floats to t (k a multiple of t's block size, t one that
// kernels::gptq_supports) with error feedback.
// qw (k floats, or nullptr) is the importance the block scales are chosen with.
void quantize_row_gptq(DType t, const float* x, void* dst, std::int64_t k, const float* qw, const GptqFactor& g);

// (w - q)ᵀ H (w - q) for H = cov / n_tokens: the mean squared error of this row's products over
// the calibration tokens. For tests and reports.
double output_error(const float* w, const float* q, const float* cov, std::int64_t k, double n_tokens);

}  // namespace kiln::optimize
