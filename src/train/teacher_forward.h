#pragma once
// The teacher of `kiln distill`: a model loaded for inference (model/llama_model.h, any stored
// type kiln runs, quantized ones included) run over the student's windows, its logits turned
// into log-probabilities at the distillation temperature, whole rows or the top k of each.
#include <cstdint>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "model/llama_model.h"

namespace kiln::train {

// The teacher's distribution at temperature τ for N = B·T positions.
struct TeacherRows {
  std::int64_t k = 0;            // values per row: n_vocab for full rows
  std::vector<int> ids;          // (N, k) the ids of a row's values, largest first; empty: full rows
  std::vector<float> log_probs;  // (N, k) log softmax(teacher logits / τ) at those ids
  bool full() const { return ids.empty(); }
};

// log softmax(logits / τ) of one row of n logits into out (n), in double sums as eval's
// log_softmax; the top-k selection below reads these.
void log_softmax_at(const float* logits, std::int64_t n, float tau, float* out);

// The k largest of a row's n log-probabilities, largest first (ties: the lower id first):
// ids (k) and values (k).
void top_k_of_row(const float* log_probs, std::int64_t n, int k, int* ids, float* values);

class TeacherForward {
 public:
  // The model must be one LlamaModel::load gave; it is not owned.
  TeacherForward(LlamaModel& model, ThreadPool& pool);

  // tokens (B, T), each row a sequence from position 0. top_k 0: full rows, else the top k of
  // each row. Throws kiln::Error when T exceeds the teacher's context or a token its
  // vocabulary.
  void run(const int* tokens, int B, int T, float tau, int top_k, TeacherRows& out);

 private:
  LlamaModel& model_;
  ThreadPool& pool_;
  std::vector<float> logits_;  // (sequences per forward · T, n_vocab)
};

}  // namespace kiln::train
