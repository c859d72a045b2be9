#pragma once
// What the trainer minimises over a micro-batch's logits, as a policy: the student's
// cross-entropy (`kiln train`), or the distillation loss against a teacher (`kiln distill`,
// train/distill_loss.h). The trainer runs the model's forward, hands the logits to the policy,
// which overwrites them with dL/dlogits, and runs the backward from there; so one loop (train/
// trainer.h) serves both commands, with its accumulation, data parallelism, validation and
// checkpoints.
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/thread_pool.h"
#include "train/llama_training_model.h"
#include "train/token_windows.h"

namespace kiln::train {

// Means over the positions with a target.
struct LossValue {
  double loss = std::numeric_limits<double>::quiet_NaN();  // the objective the gradient is of
  double ce = std::numeric_limits<double>::quiet_NaN();    // the student's cross-entropy
  double kl = std::numeric_limits<double>::quiet_NaN();    // KL from the teacher (distillation only)
};

class TrainingLoss {
 public:
  virtual ~TrainingLoss() = default;
  // Called before the student's forward over `batch`, whose row b is window windows[b] of
  // `split`: what the loss needs besides the targets (a teacher's distribution) is made here.
  virtual void prepare(const TokenWindows& split, const std::uint64_t* windows, const TokenBatch& batch) = 0;
  // logits (B·T, n_vocab) of the student; when want_grad, they become grad_scale · dL/dlogits
  // (rows without a target: 0). Returns NaN terms when no position has a target.
  virtual LossValue apply(const TokenBatch& batch, float* logits, std::int64_t n_vocab, float grad_scale,
                          bool want_grad, ThreadPool& pool) = 0;
  // Whether the loss has a KL term (the log and the progress report it then).
  virtual bool distills() const = 0;
  // What a checkpoint records of the loss, so that a resumed run can check it continues the same.
  virtual nlohmann::json to_json() const = 0;
};

// The mean cross-entropy over the positions with a target (kernels::cross_entropy_row per row).
class CrossEntropyLoss final : public TrainingLoss {
 public:
  void prepare(const TokenWindows&, const std::uint64_t*, const TokenBatch&) override {}
  LossValue apply(const TokenBatch& batch, float* logits, std::int64_t n_vocab, float grad_scale, bool want_grad,
                  ThreadPool& pool) override;
  bool distills() const override { return false; }
  nlohmann::json to_json() const override { return {{"kind", "cross_entropy"}}; }
};

}  // namespace kiln::train
