#include "train/training_loss.h"

#include <cstring>
#include <vector>

#include "kernels/training_ops.h"

namespace kiln::train {

LossValue CrossEntropyLoss::apply(const TokenBatch& batch, float* z, std::int64_t V, float grad_scale, bool want_grad,
                                  ThreadPool& pool) {
  const std::int64_t N = static_cast<std::int64_t>(batch.B) * batch.T;
  std::int64_t counted = 0;
  for (std::int64_t i = 0; i < N; ++i) counted += batch.targets[i] >= 0;
  LossValue v;
  if (counted == 0) {
    if (want_grad) std::memset(z, 0, static_cast<std::size_t>(N * V) * sizeof(float));
    return v;
  }
  const float row_scale = grad_scale / static_cast<float>(counted);
  std::vector<double> losses(static_cast<std::size_t>(N), 0.0);
  pool.parallel_for(N, [&](std::int64_t r, int) {
    const int target = batch.targets[r];
    float* row = z + r * V;
    if (target < 0) {
      if (want_grad) std::memset(row, 0, static_cast<std::size_t>(V) * sizeof(float));
      return;
    }
    losses[static_cast<std::size_t>(r)] = kernels::cross_entropy_row(row, V, target, row_scale);
  }, 8);
  double sum = 0;
  for (double l : losses) sum += l;
  v.loss = v.ce = sum / static_cast<double>(counted);
  return v;
}

}  // namespace kiln::train
