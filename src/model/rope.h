#pragma once
// Rotary position embedding. For position p and pair i of the n_rot rotated dimensions the
// angle is p / scale * theta^(-2i / n_rot) / freq_factor[i]; the pair is (x[2i], x[2i+1]) in
// the interleaved layout (llama) or (x[i], x[i + n_rot/2]) in the halves layout (qwen2).
// YaRN (LlamaConfig::rope_scaling) mixes that angle with the unscaled one, pair by pair, and
// cos and sin carry the attention magnitude (LlamaConfig::rope_attn_factor, and YaRN's
// 1 + 0.1 ln(scale)), which scales q·k by its square.
#include <vector>

#include "model/llama_config.h"

namespace kiln {

class Rope {
 public:
  // freq_factors: optional (n_rot/2) divisors of the frequencies (llama 3's rope_freqs, phi3's
  // LongRoPE factors), or nullptr.
  Rope(const LlamaConfig& config, const float* freq_factors);
  // Fills cos/sin (n_rot/2 each) for one position.
  void angles(int pos, float* cos_out, float* sin_out) const;
  // Rotates the first n_rot dims of each of n_heads vectors of head_dim in x, in place.
  //   x is (n_heads, head_dim)
  void apply(float* x, int n_heads, const float* cos_t, const float* sin_t) const;
  int half() const { return n_rot_ / 2; }
  // The factor cos and sin are multiplied by (1 unless YaRN or rope.scaling.attn_factor).
  float magnitude() const { return magnitude_; }

 private:
  int n_rot_ = 0;
  int head_dim_ = 0;
  float scale_ = 1.0f;
  float magnitude_ = 1.0f;
  RopeLayout layout_ = RopeLayout::Interleaved;
  std::vector<float> inv_freq_;  // (n_rot/2)
  // (n_rot/2) YaRN's share of the unscaled angle per pair (0: fully interpolated); empty
  // without YaRN.
  std::vector<float> extrapolate_;
};

// YaRN's ramp (ggml_rope_yarn_corr_dims): the pairs below `low` keep their angle, those above
// `high` are interpolated, linearly between. Exposed for its test.
void yarn_correction_range(int n_rot, int orig_ctx, float base, float beta_fast, float beta_slow, float* low,
                           float* high);

}  // namespace kiln
