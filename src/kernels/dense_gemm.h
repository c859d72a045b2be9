#pragma once
// General dense matrix products of float matrices, C = op(A) · op(B), for training: the
// forward Y = X·Wᵀ, the input gradient dX = dY·W and the weight gradient dW = dYᵀ·X are all
// large products whose operands come in either orientation. (Inference multiplies by weights
// in their stored block formats through kernels/matmul.h instead.)
//
// Blocked as BLIS and GotoBLAS are: panels of B (kc × nc) and blocks of A (mc × kc) are packed
// into the layout the register tile reads (converting to bf16 on the way when asked), then a
// micro-kernel accumulates an MR × NR tile of C in registers over kc. Threads share each packed
// B block and split the rows of A. Two precisions:
//   F32   f32 products and sums (the reference mode of training);
//   BF16  both inputs rounded to bf16 (nearest even) while packing, pairs of products summed
//         in f32 (vdpbf16ps): twice the arithmetic rate of f32 on CPUs with AVX-512 BF16, with
//         f32 accumulation as mixed-precision training expects.
#include <cstdint>

#include "core/cpu_features.h"
#include "core/thread_pool.h"

namespace kiln::kernels {

enum class GemmPrecision { F32, BF16 };

// An operand as the product sees it, rows × cols. Stored row-major with `stride` floats between
// rows, or, when `transposed`, what is stored is its transpose (cols rows of `stride` floats).
struct MatrixArg {
  const float* data = nullptr;
  std::int64_t stride = 0;
  bool transposed = false;
};

// C (M, N), row stride ldc, = A (M, K) · B (K, N); with `accumulate`, C += A · B. K = 0 leaves
// C zero (or unchanged when accumulating). Not re-entrant on one pool.
void dense_gemm(std::int64_t M, std::int64_t N, std::int64_t K, MatrixArg A, MatrixArg B, float* C, std::int64_t ldc,
                bool accumulate, GemmPrecision precision, ThreadPool& pool, SimdLevel level = simd_level());

// The scalar reference: each element a sum in double of the inputs as `precision` sees them
// (rounded to bf16 for BF16). Slow; for tests.
void dense_gemm_ref(std::int64_t M, std::int64_t N, std::int64_t K, MatrixArg A, MatrixArg B, float* C,
                    std::int64_t ldc, bool accumulate, GemmPrecision precision);

// The SIMD path dense_gemm takes at `level` for `precision` (BF16 needs AVX-512 BF16; below it,
// the scalar path computes the same bf16 products).
SimdLevel dense_gemm_path(GemmPrecision precision, SimdLevel level = simd_level());

}  // namespace kiln::kernels
