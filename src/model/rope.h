#pragma once
// Rotary position embedding. For position p and pair i of the n_rot rotated dimensions the
// angle is p / scale * theta^(-2i / n_rot) / freq_factor[i]; the pair is (x[2i], x[2i+1]) in
// the interleaved layout (llama) or (x[i], x[i + n_rot/2]) in the halves layout (qwen2).
#include <vector>

#include "model/llama_config.h"

namespace kiln {

class Rope {
 public:
  // freq_factors: optional (n_rot/2) divisors of the frequencies (llama 3 style), or nullptr.
  Rope(const LlamaConfig& config, const float* freq_factors);
  // Fills cos/sin (n_rot/2 each) for one position.
  void angles(int pos, float* cos_out, float* sin_out) const;
  // Rotates the first n_rot dims of each of n_heads vectors of head_dim in x, in place.
  //   x is (n_heads, head_dim)
  void apply(float* x, int n_heads, const float* cos_t, const float* sin_t) const;
  int half() const { return n_rot_ / 2; }

 private:
  int n_rot_ = 0;
  int head_dim_ = 0;
  float scale_ = 1.0f;
  RopeLayout layout_ = RopeLayout::Interleaved;
  std::vector<float> inv_freq_;  // (n_rot/2)
};

}  // namespace kiln
