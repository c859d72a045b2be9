#pragma once
// y = x · Wᵀ for a weight matrix in its stored format: activations are converted once to the
// weight type's activation format, then threads split the weight rows (each streams its own
// slice of W once, which is what makes decode run at memory bandwidth).
#include <cstdint>

#include "core/aligned_buffer.h"
#include "core/tensor.h"
#include "core/thread_pool.h"

namespace kiln {

// M rows of activations converted to one activation type.
struct ActivationRows {
  DType type = DType::F32;
  bool amx = false;  // bf16 rows for the AMX tile path (any weight type amx_supports)
  std::int64_t rows = 0;
  std::int64_t k = 0;
  std::size_t row_stride = 0;  // bytes between rows (row_bytes rounded up to 64)
  AlignedBuffer data;          // (rows, row_stride) bytes
};

// Prompts of at least this many rows run on AMX tiles where the CPU has them (see
// kernels/amx_gemm.h); fewer rows do not reuse a dequantized weight panel often enough.
constexpr std::int64_t kAmxMinRows = 32;

// Converts x (M, K) floats into the activation format that W's kernels consume.
// Weights whose kernels take the same activation type can share one conversion (Q, K and V;
// gate and up): see activations_fit().
void prepare_activations(const TensorView& W, const float* x, std::int64_t M, std::int64_t K, ActivationRows& out,
                         ThreadPool& pool);

// True when `a` is already in the activation format of W's kernels.
bool activations_fit(const TensorView& W, const ActivationRows& a);

// y (M, N) = activations (M, K) · Wᵀ, W with ne {K, N}.
void linear(const TensorView& W, const ActivationRows& a, float* y, ThreadPool& pool);

}  // namespace kiln
