#include "train/adamw.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace kiln::train {

AdamW::AdamW(const ParameterTable& table, AdamWOptions options) : table_(table), options_(options) {
  const auto n = static_cast<std::size_t>(table.total());
  std::memset(m_.resize(n), 0, n * sizeof(float));
  std::memset(v_.resize(n), 0, n * sizeof(float));
}

void AdamW::step(float* params, const float* grads, float lr, ThreadPool& pool) {
  ++step_;
  const AdamWOptions& o = options_;
  // Bias corrections folded into the step size and epsilon as in the paper's algorithm 1.
  const double c1 = 1.0 - std::pow(static_cast<double>(o.beta1), static_cast<double>(step_));
  const double c2 = 1.0 - std::pow(static_cast<double>(o.beta2), static_cast<double>(step_));
  const float step_size = static_cast<float>(lr / c1);
  const float inv_sqrt_c2 = static_cast<float>(1.0 / std::sqrt(c2));
  float* m = m_.data();
  float* v = v_.data();
  const auto& entries = table_.entries();
  // Chunks of 4096 floats inside each tensor, so that both threads get work on any model.
  struct Chunk {
    std::int64_t begin, end;
    bool decay;
  };
  std::vector<Chunk> chunks;
  for (const ParameterInfo& p : entries)
    for (std::int64_t b = p.offset; b < p.offset + p.size(); b += 4096)
      chunks.push_back({b, std::min(b + 4096, p.offset + p.size()), p.decay});
  pool.parallel_for(static_cast<std::int64_t>(chunks.size()), [&](std::int64_t ci, int) {
    const Chunk& c = chunks[static_cast<std::size_t>(ci)];
    const float decay = c.decay ? 1.0f - lr * o.weight_decay : 1.0f;
    for (std::int64_t i = c.begin; i < c.end; ++i) {
      const float g = grads[i];
      m[i] = o.beta1 * m[i] + (1.0f - o.beta1) * g;
      v[i] = o.beta2 * v[i] + (1.0f - o.beta2) * g * g;
      const float denom = std::sqrt(v[i]) * inv_sqrt_c2 + o.eps;
      params[i] = params[i] * decay - step_size * m[i] / denom;
    }
  });
}

double clip_gradient_norm(float* grads, std::int64_t n, double max_norm, ThreadPool& pool) {
  const std::int64_t chunk = 1 << 16;
  const std::int64_t n_chunks = (n + chunk - 1) / chunk;
  std::vector<double> partial(static_cast<std::size_t>(n_chunks), 0.0);
  pool.parallel_for(n_chunks, [&](std::int64_t c, int) {
    double s = 0;
    for (std::int64_t i = c * chunk; i < std::min(n, (c + 1) * chunk); ++i) s += static_cast<double>(grads[i]) * grads[i];
    partial[static_cast<std::size_t>(c)] = s;
  });
  double sum = 0;
  for (double s : partial) sum += s;
  const double norm = std::sqrt(sum);
  if (max_norm > 0 && norm > max_norm) {
    const float scale = static_cast<float>(max_norm / norm);
    pool.parallel_for(n_chunks, [&](std::int64_t c, int) {
      for (std::int64_t i = c * chunk; i < std::min(n, (c + 1) * chunk); ++i) grads[i] *= scale;
    });
  }
  return norm;
}

float warmup_cosine_lr(std::int64_t step, std::int64_t warmup, std::int64_t total, float peak, float min_lr) {
  if (warmup > 0 && step < warmup) return peak * static_cast<float>(step + 1) / static_cast<float>(warmup);
  if (step >= total) return min_lr;
  const double progress = static_cast<double>(step - warmup) / static_cast<double>(std::max<std::int64_t>(1, total - warmup));
  const double pi = 3.14159265358979323846;
  return min_lr + static_cast<float>(0.5 * (1.0 + std::cos(pi * progress))) * (peak - min_lr);
}

}  // namespace kiln::train
