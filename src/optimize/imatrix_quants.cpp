// Ports of ggml's importance-weighted quantizers (ggml-quants.c: quantize_row_*_impl and the
// helpers make_qx_quants with weights, make_qkx3_quants, make_qp_quants). The float expressions
// keep ggml's order of operations and its nearest_int rounding so that the bytes are the same.
#include "optimize/imatrix_quants.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "kernels/blocks.h"
#include "kernels/kquants_internal.h"
#include "kernels/matmul.h"

namespace kiln::optimize {
namespace {

using namespace kiln::kernels;

constexpr float kGroupMaxEps = 1e-15f;  // ggml's GROUP_MAX_EPS

using kernels::kquant::nearest_int;  // ggml's rounding, shared with the reference quantizers

// Symmetric quantization to [-nmax, nmax) minimizing the qw-weighted squared error over 19
// candidate scales (make_qx_quants, rmse_type 1, with weights). L gets q + nmax.
float make_qx_quants_w(int n, int nmax, const float* x, std::int8_t* L, const float* qw) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = -nmax / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    L[i] = static_cast<std::int8_t>(l + nmax);
    const float w = qw[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * x[i]);
      l = std::max(-nmax, std::min(nmax - 1, l));
      const float w = qw[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * x[i]);
        L[i] = static_cast<std::int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Affine quantization x ≈ scale·q - the_min, q in [0, nmax], by weighted least squares over
// nstep + 1 candidate ranges (make_qkx3_quants with weights; use_mad is always false here).
float make_qkx3_quants_w(int n, int nmax, const float* x, const float* weights, std::uint8_t* L, float* the_min,
                         std::uint8_t* Laux, float rmin, float rdelta, int nstep) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max <= min) {
    std::memset(L, 0, static_cast<std::size_t>(n));
    *the_min = -min;
    return 0.f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_mad = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<std::uint8_t>(std::max(0, std::min(nmax, l)));
    float diff = scale * L[i] + min - x[i];
    diff = diff * diff;
    best_mad += weights[i] * diff;
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const float v = iscale * (x[i] - min);
      const int l = v > 0 ? nearest_int(std::min(v, static_cast<float>(nmax))) : 0;
      Laux[i] = static_cast<std::uint8_t>(l);
      const float w = weights[i];
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float mad = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * Laux[i] + this_min - x[i];
        diff = diff * diff;
        mad += weights[i] * diff;
      }
      if (mad < best_mad) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_mad = mad;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// Quantizes non-negative values (sub-block scales or mins) to [0, nmax] with a weighted search
// of the scale and a few rounds of coordinate descent (make_qp_quants).
float make_qp_quants(int n, int nmax, const float* x, std::uint8_t* L, const float* quant_weights) {
  float max = 0;
  for (int i = 0; i < n; ++i) max = std::max(max, x[i]);
  if (max < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = nmax / max;
  for (int i = 0; i < n; ++i) L[i] = static_cast<std::uint8_t>(nearest_int(iscale * x[i]));
  const float scale = 1 / iscale;
  float best_mse = 0;
  for (int i = 0; i < n; ++i) {
    const float diff = x[i] - scale * L[i];
    best_mse += quant_weights[i] * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    const float iscale_is = (0.1f * is + nmax) / max;
    const float scale_is = 1 / iscale_is;
    float mse = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::min(nmax, nearest_int(iscale_is * x[i]));
      const float diff = x[i] - scale_is * l;
      mse += quant_weights[i] * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_is;
    }
  }
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::min(nmax, nearest_int(iscale * x[i]));
    L[i] = static_cast<std::uint8_t>(l);
    const float w = quant_weights[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = quant_weights[i];
      float slx = sumlx - w * x[i] * L[i];
      float sl2 = suml2 - w * L[i] * L[i];
      if (slx > 0 && sl2 > 0) {
        const int new_l = std::min(nmax, nearest_int(x[i] * sl2 / slx));
        if (new_l != L[i]) {
          slx += w * x[i] * new_l;
          sl2 += w * new_l * new_l;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<std::uint8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (!n_changed) break;
  }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

float row_sigma2(const float* x, std::int64_t n) {
  float sum_x2 = 0;
  for (std::int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  return sum_x2 / static_cast<float>(n);
}

void pack_qh5(const std::uint8_t* L, std::uint8_t* qs, std::uint8_t* qh_bytes) {
  std::uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    const std::uint8_t xi0 = L[j], xi1 = L[j + 16];
    qs[j] = static_cast<std::uint8_t>((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
    qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
    qh |= ((xi1 & 0x10u) >> 4) << (j + 16);
  }
  std::memcpy(qh_bytes, &qh, 4);
}

void q4_0_row(const float* x, block_q4_0* y, std::int64_t n, const float* qw) {
  const float sigma2 = row_sigma2(x, n);
  float weight[32];
  std::int8_t L[32];
  for (std::int64_t ib = 0; ib < n / 32; ++ib) {
    const float* xb = x + 32 * ib;
    const float* w = qw + 32 * ib;
    for (int j = 0; j < 32; ++j) weight[j] = w[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
    const float d = make_qx_quants_w(32, 8, xb, L, weight);
    y[ib].d = f32_to_f16(d);
    for (int j = 0; j < 16; ++j) y[ib].qs[j] = static_cast<std::uint8_t>(L[j] | (L[j + 16] << 4));
  }
}

void q5_0_row(const float* x, block_q5_0* y, std::int64_t n, const float* qw) {
  const float sigma2 = row_sigma2(x, n);
  float weight[32];
  std::int8_t L[32];
  for (std::int64_t ib = 0; ib < n / 32; ++ib) {
    const float* xb = x + 32 * ib;
    const float* w = qw + 32 * ib;
    for (int j = 0; j < 32; ++j) weight[j] = w[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
    const float d = make_qx_quants_w(32, 16, xb, L, weight);
    y[ib].d = f32_to_f16(d);
    pack_qh5(reinterpret_cast<const std::uint8_t*>(L), y[ib].qs, y[ib].qh);
  }
}

template <typename Block, int nmax>
void affine32_row(const float* x, Block* y, std::int64_t n, const float* qw) {
  const float sigma2 = row_sigma2(x, n);
  float weight[32];
  std::uint8_t L[32], Laux[32];
  for (std::int64_t ib = 0; ib < n / 32; ++ib) {
    const float* xb = x + 32 * ib;
    const float* w = qw + 32 * ib;
    for (int j = 0; j < 32; ++j) weight[j] = w[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
    float min;
    const float d = make_qkx3_quants_w(32, nmax, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36);
    y[ib].d = f32_to_f16(d);
    y[ib].m = f32_to_f16(-min);
    if constexpr (nmax == 15) {
      for (int j = 0; j < 16; ++j) y[ib].qs[j] = static_cast<std::uint8_t>(L[j] | (L[j + 16] << 4));
    } else {
      pack_qh5(L, y[ib].qs, y[ib].qh);
    }
  }
}

void pack_2bit(const std::uint8_t* L, std::uint8_t* qs) {
  for (int j = 0; j < QK_K; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = static_cast<std::uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                                (L[j + l + 96] << 6));
}

void q2_K_row(const float* x, block_q2_K* y, std::int64_t n, const float* quant_weights) {
  std::uint8_t L[QK_K], Laux[16], Ls[QK_K / 16], Lm[QK_K / 16];
  float mins[QK_K / 16], scales[QK_K / 16], sw[QK_K / 16], weight[16];
  for (std::int64_t i = 0; i < n / QK_K; ++i) {
    std::memset(sw, 0, sizeof(sw));
    float sumx2 = 0;
    for (int j = 0; j < QK_K; ++j) sumx2 += x[j] * x[j];
    const float sigma2 = sumx2 / QK_K;
    for (int j = 0; j < QK_K / 16; ++j) {
      const float* qw = quant_weights + QK_K * i + 16 * j;
      for (int l = 0; l < 16; ++l) weight[l] = qw[l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
      for (int l = 0; l < QK_K / 16; ++l) sw[j] += weight[l];
      scales[j] = make_qkx3_quants_w(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36);
    }
    float dm = make_qp_quants(QK_K / 16, 15, scales, Ls, sw);
    float mm = make_qp_quants(QK_K / 16, 15, mins, Lm, sw);
    y[i].d = f32_to_f16(dm);
    y[i].dmin = f32_to_f16(mm);
    dm = f16_to_f32(y[i].d);
    mm = f16_to_f32(y[i].dmin);
    for (int j = 0; j < QK_K / 16; ++j) y[i].scales[j] = static_cast<std::uint8_t>(Ls[j] | (Lm[j] << 4));
    for (int j = 0; j < QK_K / 16; ++j) {
      const float d = dm * (y[i].scales[j] & 0xF);
      if (!d) continue;
      const float m = mm * (y[i].scales[j] >> 4);
      for (int ii = 0; ii < 16; ++ii) {
        const int l = nearest_int((x[16 * j + ii] + m) / d);
        L[16 * j + ii] = static_cast<std::uint8_t>(std::max(0, std::min(3, l)));
      }
    }
    pack_2bit(L, y[i].qs);
    x += QK_K;
  }
}

void q3_K_row(const float* x, block_q3_K* y, std::int64_t n, const float* quant_weights) {
  std::int8_t L[QK_K], Ls[QK_K / 16];
  float scales[QK_K / 16], weight[16], sw[QK_K / 16];
  for (std::int64_t i = 0; i < n / QK_K; ++i) {
    float sumx2 = 0;
    for (int j = 0; j < QK_K; ++j) sumx2 += x[j] * x[j];
    const float sigma2 = 2 * sumx2 / QK_K;
    for (int j = 0; j < QK_K / 16; ++j) {
      const float* qw = quant_weights + QK_K * i + 16 * j;
      for (int l = 0; l < 16; ++l) weight[l] = qw[l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
      float sumw = 0;
      for (int l = 0; l < 16; ++l) sumw += weight[l];
      sw[j] = sumw;
      scales[j] = make_qx_quants_w(16, 4, x + 16 * j, L + 16 * j, weight);
    }
    std::memset(y[i].scales, 0, 12);
    const float d_block = make_qx_quants_w(QK_K / 16, 32, scales, Ls, sw);
    for (int j = 0; j < QK_K / 16; ++j) {
      int l = Ls[j];
      if (j < 8) y[i].scales[j] = static_cast<std::uint8_t>(l & 0xF);
      else y[i].scales[j - 8] |= static_cast<std::uint8_t>((l & 0xF) << 4);
      l >>= 4;
      y[i].scales[j % 4 + 8] |= static_cast<std::uint8_t>(l << (2 * (j / 4)));
    }
    y[i].d = f32_to_f16(d_block);
    for (int j = 0; j < QK_K / 16; ++j) {
      std::int8_t sc = static_cast<std::int8_t>(j < 8 ? y[i].scales[j] & 0xF : y[i].scales[j - 8] >> 4);
      sc = static_cast<std::int8_t>((sc | (((y[i].scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32);
      const float d = f16_to_f32(y[i].d) * sc;
      if (!d) continue;
      for (int ii = 0; ii < 16; ++ii) {
        const int l = nearest_int(x[16 * j + ii] / d);
        L[16 * j + ii] = static_cast<std::int8_t>(std::max(-4, std::min(3, l)) + 4);
      }
    }
    std::memset(y[i].hmask, 0, QK_K / 8);
    int m = 0;
    std::uint8_t hm = 1;
    for (int j = 0; j < QK_K; ++j) {
      if (L[j] > 3) {
        y[i].hmask[m] |= hm;
        L[j] = static_cast<std::int8_t>(L[j] - 4);
      }
      if (++m == QK_K / 8) {
        m = 0;
        hm = static_cast<std::uint8_t>(hm << 1);
      }
    }
    pack_2bit(reinterpret_cast<const std::uint8_t*>(L), y[i].qs);
    x += QK_K;
  }
}

void pack_scales_k4(const std::uint8_t* Ls, const std::uint8_t* Lm, std::uint8_t* scales) {
  for (int j = 0; j < QK_K / 32; ++j) {
    const std::uint8_t ls = std::min<std::uint8_t>(63, Ls[j]);
    const std::uint8_t lm = std::min<std::uint8_t>(63, Lm[j]);
    if (j < 4) {
      scales[j] = ls;
      scales[j + 4] = lm;
    } else {
      scales[j + 4] = static_cast<std::uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
      scales[j - 4] |= static_cast<std::uint8_t>((ls >> 4) << 6);
      scales[j - 0] |= static_cast<std::uint8_t>((lm >> 4) << 6);
    }
  }
}

// q4_K (nmax 15) and q5_K (nmax 31): the same scale search, different packing.
template <typename Block, int nmax>
void q45_K_row(const float* x, Block* y, std::int64_t n, const float* quant_weights) {
  std::uint8_t L[QK_K], Laux[32], Ls[QK_K / 32], Lm[QK_K / 32];
  float weights[32], sw[QK_K / 32], mins[QK_K / 32], scales[QK_K / 32];
  for (std::int64_t i = 0; i < n / QK_K; ++i) {
    float sum_x2 = 0;
    for (int l = 0; l < QK_K; ++l) sum_x2 += x[l] * x[l];
    const float sigma2 = 2 * sum_x2 / QK_K;
    for (int j = 0; j < QK_K / 32; ++j) {
      const float* qw = quant_weights + QK_K * i + 32 * j;
      for (int l = 0; l < 32; ++l) weights[l] = qw[l] * std::sqrt(sigma2 + x[32 * j + l] * x[32 * j + l]);
      float sumw = 0;
      for (int l = 0; l < 32; ++l) sumw += weights[l];
      sw[j] = sumw;
      scales[j] = make_qkx3_quants_w(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36);
    }
    const float d_block = make_qp_quants(QK_K / 32, 63, scales, Ls, sw);
    const float m_block = make_qp_quants(QK_K / 32, 63, mins, Lm, sw);
    pack_scales_k4(Ls, Lm, y[i].scales);
    y[i].d = f32_to_f16(d_block);
    y[i].dmin = f32_to_f16(m_block);
    for (int j = 0; j < QK_K / 32; ++j) {
      std::uint8_t sc, m;
      kernels::kquant::get_scale_min_k4(j, y[i].scales, &sc, &m);
      const float d = f16_to_f32(y[i].d) * sc;
      if (!d) continue;
      const float dm = f16_to_f32(y[i].dmin) * m;
      for (int ii = 0; ii < 32; ++ii) {
        const int l = nearest_int((x[32 * j + ii] + dm) / d);
        L[32 * j + ii] = static_cast<std::uint8_t>(std::max(0, std::min(nmax, l)));
      }
    }
    if constexpr (nmax == 15) {
      std::uint8_t* q = y[i].qs;
      for (int j = 0; j < QK_K; j += 64) {
        for (int l = 0; l < 32; ++l) q[l] = static_cast<std::uint8_t>(L[j + l] | (L[j + l + 32] << 4));
        q += 32;
      }
    } else {
      std::uint8_t* qh = y[i].qh;
      std::uint8_t* ql = y[i].qs;
      std::memset(qh, 0, QK_K / 8);
      std::uint8_t m1 = 1, m2 = 2;
      for (int nn = 0; nn < QK_K; nn += 64) {
        for (int j = 0; j < 32; ++j) {
          int l1 = L[nn + j];
          if (l1 > 15) {
            l1 -= 16;
            qh[j] |= m1;
          }
          int l2 = L[nn + j + 32];
          if (l2 > 15) {
            l2 -= 16;
            qh[j] |= m2;
          }
          ql[j] = static_cast<std::uint8_t>(l1 | (l2 << 4));
        }
        m1 = static_cast<std::uint8_t>(m1 << 2);
        m2 = static_cast<std::uint8_t>(m2 << 2);
        ql += 32;
      }
    }
    x += QK_K;
  }
}

void q6_K_row(const float* x, block_q6_K* y, std::int64_t n, const float* quant_weights) {
  std::int8_t L[QK_K];
  float scales[QK_K / 16];
  for (std::int64_t i = 0; i < n / QK_K; ++i) {
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < QK_K / 16; ++ib) {
      const float scale = make_qx_quants_w(16, 32, x + 16 * ib, L + 16 * ib, quant_weights + QK_K * i + 16 * ib);
      scales[ib] = scale;
      const float abs_scale = std::fabs(scale);
      if (abs_scale > max_abs_scale) {
        max_abs_scale = abs_scale;
        max_scale = scale;
      }
    }
    if (max_abs_scale < kGroupMaxEps) {
      std::memset(&y[i], 0, sizeof(block_q6_K));
      y[i].d = f32_to_f16(0.f);
      x += QK_K;
      continue;
    }
    const float iscale = -128.f / max_scale;
    y[i].d = f32_to_f16(1 / iscale);
    for (int ib = 0; ib < QK_K / 16; ++ib)
      y[i].scales[ib] = static_cast<std::int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
    for (int j = 0; j < QK_K / 16; ++j) {
      const float d = f16_to_f32(y[i].d) * y[i].scales[j];
      if (!d) continue;
      for (int ii = 0; ii < 16; ++ii) {
        const int l = nearest_int(x[16 * j + ii] / d);
        L[16 * j + ii] = static_cast<std::int8_t>(std::max(-32, std::min(31, l)) + 32);
      }
    }
    std::uint8_t* ql = y[i].ql;
    std::uint8_t* qh = y[i].qh;
    for (int j = 0; j < QK_K; j += 128) {
      for (int l = 0; l < 32; ++l) {
        const std::uint8_t q1 = L[j + l + 0] & 0xF, q2 = L[j + l + 32] & 0xF;
        const std::uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
        ql[l + 0] = static_cast<std::uint8_t>(q1 | (q3 << 4));
        ql[l + 32] = static_cast<std::uint8_t>(q2 | (q4 << 4));
        qh[l] = static_cast<std::uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                          ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
      }
      ql += 64;
      qh += 32;
    }
    x += QK_K;
  }
}

}  // namespace

bool uses_importance(DType t) {
  switch (t) {
    case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1:
    case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
      return true;
    default:
      return false;
  }
}

void quantize_row_weighted(DType t, const float* x, void* dst, std::int64_t k, const float* qw) {
  if (qw == nullptr || !uses_importance(t)) {
    kernels::quantize_row_ref(t, x, dst, k);
    return;
  }
  KILN_CHECK(k % traits(t).block_size == 0, "internal: a row of {} is not a multiple of {}'s block", k, dtype_name(t));
  switch (t) {
    case DType::Q4_0: q4_0_row(x, static_cast<block_q4_0*>(dst), k, qw); break;
    case DType::Q5_0: q5_0_row(x, static_cast<block_q5_0*>(dst), k, qw); break;
    case DType::Q4_1: affine32_row<block_q4_1, 15>(x, static_cast<block_q4_1*>(dst), k, qw); break;
    case DType::Q5_1: affine32_row<block_q5_1, 31>(x, static_cast<block_q5_1*>(dst), k, qw); break;
    case DType::Q2_K: q2_K_row(x, static_cast<block_q2_K*>(dst), k, qw); break;
    case DType::Q3_K: q3_K_row(x, static_cast<block_q3_K*>(dst), k, qw); break;
    case DType::Q4_K: q45_K_row<block_q4_K, 15>(x, static_cast<block_q4_K*>(dst), k, qw); break;
    case DType::Q5_K: q45_K_row<block_q5_K, 31>(x, static_cast<block_q5_K*>(dst), k, qw); break;
    case DType::Q6_K: q6_K_row(x, static_cast<block_q6_K*>(dst), k, qw); break;
    default: break;
  }
}

}  // namespace kiln::optimize
