#pragma once
// AdamW (Loshchilov & Hutter): Adam's moments with the weight decay decoupled from the
// gradient, p ← p − lr·(m̂ / (√v̂ + ε) + λ·p), applied only to the tensors the parameter table
// marks for decay. Its moments share the parameters' layout.
#include <cstdint>

#include "core/aligned_buffer.h"
#include "core/thread_pool.h"
#include "train/parameter_table.h"

namespace kiln::train {

struct AdamWOptions {
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.1f;
};

class AdamW {
 public:
  AdamW(const ParameterTable& table, AdamWOptions options);

  // One update of every parameter from its gradient, at learning rate lr.
  void step(float* params, const float* grads, float lr, ThreadPool& pool);

  std::int64_t steps() const { return step_; }
  float* first_moment() { return m_.data(); }
  float* second_moment() { return v_.data(); }
  // For a resumed run: the step count the moments belong to.
  void set_steps(std::int64_t steps) { step_ = steps; }

 private:
  const ParameterTable& table_;
  AdamWOptions options_;
  FloatBuffer m_, v_;
  std::int64_t step_ = 0;
};

// The global L2 norm of the gradient; when above max_norm (> 0), scales it down to max_norm.
// Returns the norm before clipping.
double clip_gradient_norm(float* grads, std::int64_t n, double max_norm, ThreadPool& pool);

// Linear warmup from 0 to peak over warmup steps, then a cosine decay to min_lr at total.
float warmup_cosine_lr(std::int64_t step, std::int64_t warmup, std::int64_t total, float peak, float min_lr);

}  // namespace kiln::train
