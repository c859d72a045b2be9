#include "model/rope.h"

#include <cmath>

namespace kiln {

Rope::Rope(const LlamaConfig& c, const float* freq_factors)
    : n_rot_(c.n_rot), head_dim_(c.head_dim), scale_(c.rope_scale), layout_(c.rope_layout) {
  inv_freq_.resize(static_cast<std::size_t>(n_rot_ / 2));
  for (int i = 0; i < n_rot_ / 2; ++i) {
    // Computed in double so that long contexts keep the angle's low bits.
    double f = std::pow(static_cast<double>(c.rope_theta), -2.0 * i / n_rot_);
    if (freq_factors != nullptr) f /= freq_factors[i];
    inv_freq_[static_cast<std::size_t>(i)] = static_cast<float>(f);
  }
}

void Rope::angles(int pos, float* cos_out, float* sin_out) const {
  const double p = static_cast<double>(pos) / scale_;
  for (int i = 0; i < n_rot_ / 2; ++i) {
    const double a = p * inv_freq_[static_cast<std::size_t>(i)];
    cos_out[i] = static_cast<float>(std::cos(a));
    sin_out[i] = static_cast<float>(std::sin(a));
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
