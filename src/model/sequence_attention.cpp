#include "model/sequence_attention.h"

#include <cmath>
#include <cstring>

#include "kernels/ops.h"

namespace kiln {

namespace {

// Matrix products inside a task that already has a thread of its own (one attention head).
ThreadPool& serial_pool() {
  thread_local ThreadPool pool(1);
  return pool;
}

}  // namespace

void sequence_attention_forward(const LlamaConfig& c, int B, int T, const float* q, const float* k, const float* v,
                                float* probs, float* out, kernels::GemmPrecision precision, ThreadPool& pool) {
  using kernels::dense_gemm;
  using kernels::MatrixArg;
  const int H = c.n_head, hd = c.head_dim, group = c.n_head / c.n_head_kv;
  const std::int64_t QD = c.q_dim(), KVD = c.kv_dim();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  pool.parallel_for(static_cast<std::int64_t>(B) * H, [&](std::int64_t task, int) {
    const std::int64_t b = task / H, h = task % H, kvh = h / group;
    const float* qh = q + b * T * QD + h * hd;     // (T, hd), rows QD apart
    const float* kh = k + b * T * KVD + kvh * hd;  // (T, hd), rows KVD apart
    const float* vh = v + b * T * KVD + kvh * hd;
    float* p = probs + task * T * T;  // (T, T)
    dense_gemm(T, T, hd, MatrixArg{qh, QD, false}, MatrixArg{kh, KVD, true}, p, T, false, precision, serial_pool());
    for (int t = 0; t < T; ++t) {
      float* row = p + static_cast<std::int64_t>(t) * T;
      for (int j = 0; j <= t; ++j) row[j] *= scale;
      kernels::softmax_inplace(row, t + 1);
      std::memset(row + t + 1, 0, static_cast<std::size_t>(T - t - 1) * sizeof(float));
    }
    dense_gemm(T, hd, T, MatrixArg{p, T, false}, MatrixArg{vh, KVD, false}, out + b * T * QD + h * hd, QD, false,
               precision, serial_pool());
  });
}

}  // namespace kiln
