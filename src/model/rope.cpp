#include "model/rope.h"

#include <algorithm>
#include <cmath>

namespace kiln {

void yarn_correction_range(int n_rot, int orig_ctx, float base, float beta_fast, float beta_slow, float* low,
                           float* high) {
  // The pair whose wavelength makes `turns` turns over the original context.
  auto pair_of = [&](float turns) {
    return static_cast<float>(n_rot) * std::log(static_cast<float>(orig_ctx) / (turns * 2.0f * static_cast<float>(M_PI))) /
           (2.0f * std::log(base));
  };
  *low = std::max(0.0f, std::floor(pair_of(beta_fast)));
  *high = std::min(static_cast<float>(n_rot - 1), std::ceil(pair_of(beta_slow)));
}

Rope::Rope(const LlamaConfig& c, const float* freq_factors)
    : n_rot_(c.n_rot), head_dim_(c.head_dim), scale_(c.rope_scale), layout_(c.rope_layout) {
  inv_freq_.resize(static_cast<std::size_t>(n_rot_ / 2));
  for (int i = 0; i < n_rot_ / 2; ++i) {
    // Computed in double so that long contexts keep the angle's low bits.
    double f = std::pow(static_cast<double>(c.rope_theta), -2.0 * i / n_rot_);
    if (freq_factors != nullptr) f /= freq_factors[i];
    inv_freq_[static_cast<std::size_t>(i)] = static_cast<float>(f);
  }
  magnitude_ = c.rope_attn_factor;
  if (c.rope_scaling == RopeScaling::Yarn) {
    float low = 0, high = 0;
    const int orig_ctx = c.rope_orig_ctx > 0 ? c.rope_orig_ctx : c.n_ctx_train;
    yarn_correction_range(n_rot_, orig_ctx, c.rope_theta, c.yarn_beta_fast, c.yarn_beta_slow, &low, &high);
    extrapolate_.resize(inv_freq_.size());
    for (int i = 0; i < n_rot_ / 2; ++i) {
      const float y = (static_cast<float>(i) - low) / std::max(0.001f, high - low);
      extrapolate_[static_cast<std::size_t>(i)] = 1.0f - std::min(1.0f, std::max(0.0f, y));
    }
    if (scale_ > 1.0f) magnitude_ *= 1.0f + 0.1f * std::log(scale_);
  }
}

void Rope::angles(int pos, float* cos_out, float* sin_out) const {
  const double p = static_cast<double>(pos);
  for (int i = 0; i < n_rot_ / 2; ++i) {
    const double unscaled = p * inv_freq_[static_cast<std::size_t>(i)];
    double a = unscaled / scale_;
    if (!extrapolate_.empty()) {
      const double mix = extrapolate_[static_cast<std::size_t>(i)];
      a = a * (1.0 - mix) + unscaled * mix;
    }
    cos_out[i] = static_cast<float>(std::cos(a)) * magnitude_;
    sin_out[i] = static_cast<float>(std::sin(a)) * magnitude_;
  }
}

void Rope::apply(float* x, int n_heads, const float* cos_t, const float* sin_t) const {
  const int half = n_rot_ / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<std::ptrdiff_t>(h) * head_dim_;
    if (layout_ == RopeLayout::Interleaved) {
      for (int i = 0; i < half; ++i) {
        const float a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = a * cos_t[i] - b * sin_t[i];
        v[2 * i + 1] = a * sin_t[i] + b * cos_t[i];
      }
    } else {
      for (int i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * cos_t[i] - b * sin_t[i];
        v[i + half] = a * sin_t[i] + b * cos_t[i];
      }
    }
  }
}

}  // namespace kiln
