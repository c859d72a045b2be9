// Reference quantizers and dequantizers of the K-quants (the scalar dot products are in
// kquants_dot_scalar.cpp). The quantizers reproduce ggml's
// quantize_row_*_ref step by step (same search for scales and mins, same float expressions in
// the same order, same rounding), so a row quantized here is byte-identical to llama.cpp's.
// The steps after the scale search (levels against the stored scales, packing) are shared with
// the importance-weighted quantizers (weighted_quants.cpp) through kquants_internal.h.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/half.h"
#include "kernels/block_packing.h"
#include "kernels/kquants_internal.h"
#include "kernels/scale_search.h"

namespace kiln::kernels::kquant {
namespace {

// Shared by q4_K and q5_K: per sub-block of 32, the affine fit, then 6-bit scales and mins
// relative to the largest. Leaves the search's levels (0..nmax) in L (QK_K), element order.
template <typename Block>
void choose_affine_superblock_scales(const float* x, Block& y, int nmax, float rmin, float rdelta, int nstep,
                                     std::uint8_t* L) {
  std::uint8_t Laux[32];
  float weights[32];
  float mins[QK_K / 32];
  float scales[QK_K / 32];
  float max_scale = 0;  // as the min is subtracted, scales are never negative
  float max_min = 0;
  for (int j = 0; j < QK_K / 32; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, rdelta, nstep, false);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  std::uint8_t ls[QK_K / 32], lm[QK_K / 32];
  for (int j = 0; j < QK_K / 32; ++j) {
    ls[j] = std::min<std::uint8_t>(63, static_cast<std::uint8_t>(nearest_int(inv_scale * scales[j])));
    lm[j] = std::min<std::uint8_t>(63, static_cast<std::uint8_t>(nearest_int(inv_min * mins[j])));
  }
  pack_scale_min_k4(ls, lm, y.scales);
  y.d = f32_to_f16(max_scale / 63.f);
  y.dmin = f32_to_f16(max_min / 63.f);
}

// Re-rounds each sub-block of 32 against its stored 6-bit scale and min (sub-blocks whose scale
// is zero keep the search's levels). L (QK_K) in [0, nmax].
template <typename Block>
void round_to_affine_superblock(const float* x, const Block& y, int nmax, std::uint8_t* L) {
  for (int j = 0; j < QK_K / 32; ++j) {
    std::uint8_t sc, m;
    get_scale_min_k4(j, y.scales, &sc, &m);
    const float d = f16_to_f32(y.d) * sc;
    if (!d) continue;
    const float dm = f16_to_f32(y.dmin) * m;
    for (int ii = 0; ii < 32; ++ii) {
      const int l = nearest_int((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = static_cast<std::uint8_t>(std::max(0, std::min(nmax, l)));
    }
  }
}

}  // namespace

void finish_q2_K(const float* x, block_q2_K& y, std::uint8_t* L) {
  for (int j = 0; j < QK_K / 16; ++j) {
    const float d = f16_to_f32(y.d) * (y.scales[j] & 0xF);
    if (!d) continue;
    const float dm = f16_to_f32(y.dmin) * (y.scales[j] >> 4);
    for (int ii = 0; ii < 16; ++ii) {
      const int l = nearest_int((x[16 * j + ii] + dm) / d);
      L[16 * j + ii] = static_cast<std::uint8_t>(std::max(0, std::min(3, l)));
    }
  }
  pack_2bit_quants(L, y.qs);
}

void finish_q3_K(const float* x, block_q3_K& y, std::int8_t* L) {
  std::uint8_t sc6[16];
  unpack_q3_K_scales(y.scales, sc6);
  for (int j = 0; j < QK_K / 16; ++j) {
    const float d = f16_to_f32(y.d) * (sc6[j] - 32);
    if (!d) continue;
    for (int ii = 0; ii < 16; ++ii) {
      const int l = nearest_int(x[16 * j + ii] / d);
      L[16 * j + ii] = static_cast<std::int8_t>(std::max(-4, std::min(3, l)) + 4);
    }
  }
  pack_q3_K_levels(L, y.hmask, y.qs);
}

void finish_q4_K(const float* x, block_q4_K& y, std::uint8_t* L) {
  round_to_affine_superblock(x, y, 15, L);
  pack_q4_K_levels(L, y.qs);
}

void finish_q5_K(const float* x, block_q5_K& y, std::uint8_t* L) {
  round_to_affine_superblock(x, y, 31, L);
  pack_q5_K_levels(L, y.qh, y.qs);
}

void quantize_q6_K_superblock(const float* x, const float* weights, block_q6_K& y) {
  std::int8_t L[QK_K];
  float scales[QK_K / 16];
  float max_scale = 0;
  float max_abs_scale = 0;
  for (int ib = 0; ib < QK_K / 16; ++ib) {
    const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, weights + 16 * ib);
    scales[ib] = scale;
    const float abs_scale = std::fabs(scale);
    if (abs_scale > max_abs_scale) {
      max_abs_scale = abs_scale;
      max_scale = scale;
    }
  }
  if (max_abs_scale < kGroupMaxEps) {
    std::memset(&y, 0, sizeof(block_q6_K));
    y.d = f32_to_f16(0.f);
    return;
  }
  const float iscale = -128.f / max_scale;
  y.d = f32_to_f16(1 / iscale);
  for (int ib = 0; ib < QK_K / 16; ++ib) {
    y.scales[ib] = static_cast<std::int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
  }
  for (int j = 0; j < QK_K / 16; ++j) {
    const float d = f16_to_f32(y.d) * y.scales[j];
    if (!d) continue;
    for (int ii = 0; ii < 16; ++ii) {
      const int l = nearest_int(x[16 * j + ii] / d);
      L[16 * j + ii] = static_cast<std::int8_t>(std::max(-32, std::min(31, l)) + 32);
    }
  }
  pack_q6_K_levels(L, y.ql, y.qh);
}

void quantize_row_q2_K_ref(const float* x, block_q2_K* y, std::int64_t k) {
  const std::int64_t nb = k / QK_K;
  std::uint8_t L[QK_K];
  std::uint8_t Laux[16];
  float weights[16];
  float mins[QK_K / 16];
  float scales[QK_K / 16];
  const float q4scale = 15.f;
  for (std::int64_t i = 0; i < nb; ++i, x += QK_K) {
    float max_scale = 0;
    float max_min = 0;
    for (int j = 0; j < QK_K / 16; ++j) {
      for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
      scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0) {
      const float iscale = q4scale / max_scale;
      for (int j = 0; j < QK_K / 16; ++j) y[i].scales[j] = static_cast<std::uint8_t>(nearest_int(iscale * scales[j]));
      y[i].d = f32_to_f16(max_scale / q4scale);
    } else {
      for (int j = 0; j < QK_K / 16; ++j) y[i].scales[j] = 0;
      y[i].d = f32_to_f16(0.f);
    }
    if (max_min > 0) {
      const float iscale = q4scale / max_min;
      for (int j = 0; j < QK_K / 16; ++j) {
        y[i].scales[j] |= static_cast<std::uint8_t>(nearest_int(iscale * mins[j]) << 4);
      }
      y[i].dmin = f32_to_f16(max_min / q4scale);
    } else {
      y[i].dmin = f32_to_f16(0.f);
    }
    finish_q2_K(x, y[i], L);
  }
}

void quantize_row_q3_K_ref(const float* x, block_q3_K* y, std::int64_t k) {
  const std::int64_t nb = k / QK_K;
  std::int8_t L[QK_K];
  float scales[QK_K / 16];
  for (std::int64_t i = 0; i < nb; ++i, x += QK_K) {
    float max_scale = 0;
    float amax = 0;
    for (int j = 0; j < QK_K / 16; ++j) {
      scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
      const float scale = std::fabs(scales[j]);
      if (scale > amax) {
        amax = scale;
        max_scale = scales[j];
      }
    }
    if (max_scale) {
      const float iscale = -32.f / max_scale;
      std::int8_t ls[QK_K / 16];  // the 6-bit scales, offset by 32
      for (int j = 0; j < QK_K / 16; ++j) {
        const std::int8_t l = static_cast<std::int8_t>(nearest_int(iscale * scales[j]));
        ls[j] = static_cast<std::int8_t>(std::max<int>(-32, std::min<int>(31, l)) + 32);
      }
      pack_q3_K_scales(ls, y[i].scales);
      y[i].d = f32_to_f16(1 / iscale);
    } else {
      std::memset(y[i].scales, 0, 12);
      y[i].d = f32_to_f16(0.f);
    }
    finish_q3_K(x, y[i], L);
  }
}

void quantize_row_q4_K_ref(const float* x, block_q4_K* y, std::int64_t k) {
  const std::int64_t nb = k / QK_K;
  std::uint8_t L[QK_K];
  for (std::int64_t i = 0; i < nb; ++i, x += QK_K) {
    choose_affine_superblock_scales(x, y[i], 15, -1.f, 0.1f, 20, L);
    finish_q4_K(x, y[i], L);
  }
}

void quantize_row_q5_K_ref(const float* x, block_q5_K* y, std::int64_t k) {
  const std::int64_t nb = k / QK_K;
  std::uint8_t L[QK_K];
  for (std::int64_t i = 0; i < nb; ++i, x += QK_K) {
    choose_affine_superblock_scales(x, y[i], 31, -0.5f, 0.1f, 15, L);
    finish_q5_K(x, y[i], L);
  }
}

void quantize_row_q6_K_ref(const float* x, block_q6_K* y, std::int64_t k) {
  const std::int64_t nb = k / QK_K;
  float weights[QK_K];  // without an importance, ggml weighs each value's error by x²
  for (std::int64_t i = 0; i < nb; ++i, x += QK_K) {
    for (int j = 0; j < QK_K; ++j) weights[j] = x[j] * x[j];
    quantize_q6_K_superblock(x, weights, y[i]);
  }
}

void quantize_row_q8_K_ref(const float* x, block_q8_K* y, std::int64_t k) {
  const std::int64_t nb = k / QK_K;
  for (std::int64_t i = 0; i < nb; ++i, x += QK_K) {
    float amax = 0;
    const float max = signed_absmax(QK_K, x, &amax);
    if (!amax) {
      // ggml leaves bsums unwritten here; zeros are what they sum to.
      y[i].d = 0;
      std::memset(y[i].qs, 0, QK_K);
      std::memset(y[i].bsums, 0, sizeof(y[i].bsums));
      continue;
    }
    // -127 rather than -128 keeps every quant in [-127, 127], as ggml does.
    const float iscale = -127.f / max;
    for (int j = 0; j < QK_K; ++j) y[i].qs[j] = static_cast<std::int8_t>(std::min(127, nearest_int(iscale * x[j])));
    for (int j = 0; j < QK_K / 16; ++j) {
      int sum = 0;
      for (int ii = 0; ii < 16; ++ii) sum += y[i].qs[j * 16 + ii];
      y[i].bsums[j] = static_cast<std::int16_t>(sum);
    }
    y[i].d = 1 / iscale;
  }
}

void dequantize_row_q2_K(const block_q2_K* x, float* y, std::int64_t k) {
  const std::int64_t nb = k / QK_K;
  for (std::int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(x[i].d);
    const float min = f16_to_f32(x[i].dmin);
    const std::uint8_t* q = x[i].qs;
    int is = 0;
    for (int n = 0; n < QK_K; n += 128, q += 32) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int half = 0; half < 2; ++half) {
          const std::uint8_t sc = x[i].scales[is++];
          const float dl = d * (sc & 0xF), ml = min * (sc >> 4);
          for (int l = 0; l < 16; ++l) *y++ = dl * ((q[16 * half + l] >> shift) & 3) - ml;
        }
      }
    }
  }
}

void dequantize_row_q3_K(const block_q3_K* x, float* y, std::int64_t k) {
  const std::int64_t nb = k / QK_K;
  for (std::int64_t i = 0; i < nb; ++i) {
    const float d_all = f16_to_f32(x[i].d);
    std::uint8_t scales[16];
    unpack_q3_K_scales(x[i].scales, scales);
    const std::uint8_t* q = x[i].qs;
    const std::uint8_t* hm = x[i].hmask;
    std::uint8_t m = 1;
    int is = 0;
    for (int n = 0; n < QK_K; n += 128, q += 32) {
      for (int shift = 0; shift < 8; shift += 2, m = static_cast<std::uint8_t>(m << 1)) {
        for (int half = 0; half < 2; ++half) {
          const float dl = d_all * (scales[is++] - 32);
          for (int l = 16 * half; l < 16 * half + 16; ++l) {
            *y++ = dl * (((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
          }
        }
      }
    }
  }
}

void dequantize_row_q4_K(const block_q4_K* x, float* y, std::int64_t k) {
  const std::int64_t nb = k / QK_K;
  for (std::int64_t i = 0; i < nb; ++i) {
    const std::uint8_t* q = x[i].qs;
    const float d = f16_to_f32(x[i].d);
    const float min = f16_to_f32(x[i].dmin);
    for (int is = 0; is < 8; is += 2, q += 32) {
      std::uint8_t sc, m;
      get_scale_min_k4(is + 0, x[i].scales, &sc, &m);
      const float d1 = d * sc, m1 = min * m;
      get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
      const float d2 = d * sc, m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
    }
  }
}

void dequantize_row_q5_K(const block_q5_K* x, float* y, std::int64_t k) {
  const std::int64_t nb = k / QK_K;
  for (std::int64_t i = 0; i < nb; ++i) {
    const std::uint8_t* ql = x[i].qs;
    const std::uint8_t* qh = x[i].qh;
    const float d = f16_to_f32(x[i].d);
    const float min = f16_to_f32(x[i].dmin);
    std::uint8_t u1 = 1, u2 = 2;
    for (int is = 0; is < 8; is += 2, ql += 32) {
      std::uint8_t sc, m;
      get_scale_min_k4(is + 0, x[i].scales, &sc, &m);
      const float d1 = d * sc, m1 = min * m;
      get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
      const float d2 = d * sc, m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
      u1 = static_cast<std::uint8_t>(u1 << 2);
      u2 = static_cast<std::uint8_t>(u2 << 2);
    }
  }
}

void dequantize_row_q6_K(const block_q6_K* x, float* y, std::int64_t k) {
  const std::int64_t nb = k / QK_K;
  for (std::int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(x[i].d);
    const std::uint8_t* ql = x[i].ql;
    const std::uint8_t* qh = x[i].qh;
    const std::int8_t* sc = x[i].scales;
    for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l + 0] = d * sc[is + 0] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
    }
  }
}

void dequantize_row_q8_K(const block_q8_K* x, float* y, std::int64_t k) {
  const std::int64_t nb = k / QK_K;
  for (std::int64_t i = 0; i < nb; ++i) {
    for (int j = 0; j < QK_K; ++j) *y++ = x[i].d * x[i].qs[j];
  }
}

}  // namespace kiln::kernels::kquant
