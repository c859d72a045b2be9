#pragma once
// The kernel interface the model uses: every supported weight type has a set of functions
// (quantize activations, dot product, tile product) with a scalar reference and AVX2 /
// AVX-512 paths, chosen once per call from the CPU's SIMD level.
//
// A matrix product y = x · Wᵀ runs in two steps:
//   1. each activation row x[m] (k floats) is converted to `act_type` (e.g. q8_0 blocks);
//   2. gemm() computes y[m][n] = dot(W row n, A row m) for a range of weight rows, so that
//      threads split the weight rows and each streams its slice of W once.
#include <cstddef>
#include <cstdint>

#include "core/cpu_features.h"
#include "core/dtype.h"

namespace kiln::kernels {

// Converts k floats into a row of activation blocks at dst (row_bytes(act_type, k) bytes).
using QuantizeActFn = void (*)(const float* x, void* dst, std::int64_t k);
// Dot product of one weight row and one activation row of k elements.
using VecDotFn = float (*)(std::int64_t k, const void* w_row, const void* a_row);
// y[m * ldy + n] = dot(W row n, A row m) for m in [0, M), n in [n_begin, n_end).
//   w: weight rows, w_stride bytes apart (row n starts at w + n * w_stride)
//   a: M activation rows of act_type, a_stride bytes apart
using GemmFn = void (*)(std::int64_t k, const void* w, std::size_t w_stride, const void* a, std::size_t a_stride,
                        std::int64_t M, std::int64_t n_begin, std::int64_t n_end, float* y, std::int64_t ldy);

struct WeightKernels {
  DType weight_type;
  DType act_type;  // the format activations are converted to for this weight type
  QuantizeActFn quantize_act;
  VecDotFn vec_dot;
  GemmFn gemm;
  SimdLevel level;  // the path these functions take
};

// The kernels for weight type w at the given SIMD level (the best at or below it that exists).
// Throws kiln::Error if kiln cannot compute with w.
const WeightKernels& weight_kernels(DType w, SimdLevel level = simd_level());
bool is_supported_weight_type(DType w);

// Row-wise conversions between floats and a stored type, k a multiple of its block size.
// quantize_row_ref is bit-exact with ggml's quantize_row_*_ref for the block formats.
void quantize_row_ref(DType t, const float* x, void* dst, std::int64_t k);
void dequantize_row(DType t, const void* src, float* y, std::int64_t k);

}  // namespace kiln::kernels
