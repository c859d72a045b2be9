#pragma once
// Sizes of a loaded model that reports need: parameters, and bytes of weights one decode step
// streams from memory (every matrix once, plus one embedding row; of a mixture of experts, the
// n_expert_used experts a token is routed to: its active parameters).
#include <cstddef>
#include <cstdint>
#include <string>

namespace kiln {

class LlamaModel;

struct ModelStats {
  std::int64_t n_params = 0;          // elements of all bound tensors (token_embd counted once)
  std::size_t weight_bytes = 0;       // bytes of all bound tensors
  std::size_t decode_bytes_per_token = 0;  // bytes a single-token forward reads from weights
  std::int64_t n_active_params = 0;   // elements of the matrices a single-token forward reads
  std::string main_dtype;             // the type of most weight bytes (e.g. "q4_0")
};

ModelStats model_stats(const LlamaModel& model);

}  // namespace kiln
