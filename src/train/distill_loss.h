#pragma once
// The loss of `kiln distill` as the trainer's policy (train/training_loss.h): per position
//   L = α · CE(target, student) + (1 − α) · τ² · KL(p_τ ‖ q_τ)
// over the student's logits, the teacher's p_τ from its forward run on the same windows
// (train/teacher_forward.h) or read from a top-k cache (train/teacher_cache.h). The row
// arithmetic, and the top-k tail bucket, are kernels::distill_row's (kernels/training_ops.h).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

#include "train/teacher_cache.h"
#include "train/teacher_forward.h"
#include "train/training_loss.h"

namespace kiln::train {

struct DistillOptions {
  // Defaults: the forward KL alone at τ = 1, as Minitron distils, and what gave the lowest
  // validation loss on kiln's default model (docs/training.md, "Distillation").
  float alpha = 0.0f;        // the weight of the cross-entropy against the data's next token
  float temperature = 1.0f;  // τ of both distributions in the KL term
  int top_k = 0;             // the teacher's ids per position on the fly; 0: every id
};

class DistillLoss final : public TrainingLoss {
 public:
  // The teacher runs on every batch. `identity` is what checkpoints record of the teacher.
  DistillLoss(const DistillOptions& options, TeacherForward& teacher, nlohmann::json identity);
  // The teacher's top k come from `cache` (its k and τ; options.temperature must equal τ).
  DistillLoss(const DistillOptions& options, const TeacherCache& cache, nlohmann::json identity);

  void prepare(const TokenWindows& split, const std::uint64_t* windows, const TokenBatch& batch) override;
  LossValue apply(const TokenBatch& batch, float* logits, std::int64_t n_vocab, float grad_scale, bool want_grad,
                  ThreadPool& pool) override;
  bool distills() const override { return true; }
  nlohmann::json to_json() const override;

  const DistillOptions& options() const { return options_; }

 private:
  DistillOptions options_;
  TeacherForward* teacher_ = nullptr;
  const TeacherCache* cache_ = nullptr;
  nlohmann::json identity_;
  TeacherRows rows_;  // the prepared batch's teacher distribution
  int prepared_rows_ = 0;
};

}  // namespace kiln::train
