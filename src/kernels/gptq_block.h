#pragma once
// The per-block step of GPTQ (Frantar et al., 2022) on ggml's block types: the block's scales
// (and mins) are chosen by the importance-weighted quantizer (weighted_quants.h) on the weights
// as updated so far, then each weight is rounded to that block's grid and its rounding error is
// fed forward onto the weights not yet rounded. The row loop, the factor U and the calibration
// data that produce it are the caller's (optimize/gptq_quant.h).
#include <cstdint>

#include "core/dtype.h"

namespace kiln::kernels {

// The types whose blocks have an affine grid per block, so the GPTQ step can write them.
bool gptq_supports(DType t);

// Quantizes the block of t that starts at column b0 of the row w (k floats; b0 a multiple of
// t's block size) into `block`, then feeds each weight's error forward:
//   w[i] -= (w[col] - q[col]) / U[col][col] · U[col][i]   for i in (col, k)
// U (k, k) row-major is the upper Cholesky factor of H⁻¹; qw (k floats, or nullptr) is the
// importance the block's scales are chosen with. w is updated in place.
void quantize_block_gptq(DType t, float* w, std::int64_t k, std::int64_t b0, const float* qw, const float* U,
                         void* block);

}  // namespace kiln::kernels
