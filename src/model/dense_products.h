#pragma once
// The Products of llama_blocks.h for f32 weights, (out, in) row-major, through
// kernels::dense_gemm in f32 or with bf16 inputs and f32 sums: training's forward.
#include <cstdint>
#include <initializer_list>

#include "core/thread_pool.h"
#include "kernels/dense_gemm.h"
#include "model/llama_blocks.h"

namespace kiln {

class DenseProducts {
 public:
  DenseProducts(kernels::GemmPrecision precision, ThreadPool& pool) : precision_(precision), pool_(pool) {}

  // y (rows, out) = x (rows, in) · Wᵀ for each product.
  void operator()(const float* x, std::int64_t rows, std::int64_t in,
                  std::initializer_list<Product<const float*>> products) {
    for (const auto& p : products)
      kernels::dense_gemm(rows, p.out, in, kernels::MatrixArg{x, in, false}, kernels::MatrixArg{p.w, in, true}, p.y,
                          p.out, false, precision_, pool_);
  }

 private:
  kernels::GemmPrecision precision_;
  ThreadPool& pool_;
};

}  // namespace kiln
