// Ports of ggml's importance-weighted row quantizers (ggml-quants.c: quantize_row_*_impl). The
// scale searches are scale_search.h's; the K-quant steps after the search are the reference
// quantizers' own (kquants_internal.h), so only the weighting and the choice of the sub-block
// scales are written here. The float expressions keep ggml's order of operations.
#include "kernels/weighted_quants.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "kernels/block_packing.h"
#include "kernels/blocks.h"
#include "kernels/kquants_internal.h"
#include "kernels/matmul.h"
#include "kernels/scale_search.h"

namespace kiln::kernels {
namespace {

float sum_x2(const float* x, std::int64_t n) {
  float s = 0;
  for (std::int64_t j = 0; j < n; ++j) s += x[j] * x[j];
  return s;
}

float row_sigma2(const float* x, std::int64_t n) { return sum_x2(x, n) / static_cast<float>(n); }

// q4_0 (nmax 8) and q5_0 (nmax 16): the scale of each block of 32 by the qw·sqrt(σ² + x²)
// weighted search.
template <typename Block, int nmax>
void symmetric32_row(const float* x, Block* y, std::int64_t n, const float* qw) {
  const float sigma2 = row_sigma2(x, n);
  float weight[32];
  std::int8_t L[32];
  for (std::int64_t ib = 0; ib < n / 32; ++ib) {
    const float* xb = x + 32 * ib;
    const float* w = qw + 32 * ib;
    for (int j = 0; j < 32; ++j) weight[j] = w[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
    const float d = make_qx_quants(32, nmax, xb, L, weight);
    y[ib].d = f32_to_f16(d);
    if constexpr (nmax == 8) {
      pack_4bit_32(L, y[ib].qs);
    } else {
      pack_5bit_32(L, y[ib].qs, y[ib].qh);
    }
  }
}

// q4_1 (nmax 15) and q5_1 (nmax 31): scale and min of each block of 32 by weighted least squares.
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
    const float d = make_qkx2_quants(32, nmax, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36, false);
    y[ib].d = f32_to_f16(d);
    y[ib].m = f32_to_f16(-min);
    if constexpr (nmax == 15) {
      pack_4bit_32(L, y[ib].qs);
    } else {
      pack_5bit_32(L, y[ib].qs, y[ib].qh);
    }
  }
}

void q2_K_row(const float* x, block_q2_K* y, std::int64_t n, const float* quant_weights) {
  std::uint8_t L[QK_K], Laux[16], Ls[QK_K / 16], Lm[QK_K / 16];
  float mins[QK_K / 16], scales[QK_K / 16], sw[QK_K / 16], weight[16];
  for (std::int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
    std::memset(sw, 0, sizeof(sw));
    const float sigma2 = sum_x2(x, QK_K) / QK_K;
    for (int j = 0; j < QK_K / 16; ++j) {
      const float* qw = quant_weights + QK_K * i + 16 * j;
      for (int l = 0; l < 16; ++l) weight[l] = qw[l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
      for (int l = 0; l < QK_K / 16; ++l) sw[j] += weight[l];
      scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
    }
    const float dm = make_qp_quants(QK_K / 16, 15, scales, Ls, sw);
    const float mm = make_qp_quants(QK_K / 16, 15, mins, Lm, sw);
    y[i].d = f32_to_f16(dm);
    y[i].dmin = f32_to_f16(mm);
    for (int j = 0; j < QK_K / 16; ++j) y[i].scales[j] = static_cast<std::uint8_t>(Ls[j] | (Lm[j] << 4));
    kquant::finish_q2_K(x, y[i], L);
  }
}

void q3_K_row(const float* x, block_q3_K* y, std::int64_t n, const float* quant_weights) {
  std::int8_t L[QK_K], Ls[QK_K / 16];
  float scales[QK_K / 16], weight[16], sw[QK_K / 16];
  for (std::int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
    const float sigma2 = 2 * sum_x2(x, QK_K) / QK_K;
    for (int j = 0; j < QK_K / 16; ++j) {
      const float* qw = quant_weights + QK_K * i + 16 * j;
      for (int l = 0; l < 16; ++l) weight[l] = qw[l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
      float sumw = 0;
      for (int l = 0; l < 16; ++l) sumw += weight[l];
      sw[j] = sumw;
      scales[j] = make_qx_quants(16, 4, x + 16 * j, L + 16 * j, weight);
    }
    const float d_block = make_qx_quants(QK_K / 16, 32, scales, Ls, sw);
    pack_q3_K_scales(Ls, y[i].scales);
    y[i].d = f32_to_f16(d_block);
    kquant::finish_q3_K(x, y[i], L);
  }
}

// q4_K (nmax 15) and q5_K (nmax 31): the same scale search, different packing.
template <typename Block, int nmax>
void q45_K_row(const float* x, Block* y, std::int64_t n, const float* quant_weights) {
  std::uint8_t L[QK_K], Laux[32], Ls[QK_K / 32], Lm[QK_K / 32];
  float weights[32], sw[QK_K / 32], mins[QK_K / 32], scales[QK_K / 32];
  for (std::int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
    const float sigma2 = 2 * sum_x2(x, QK_K) / QK_K;
    for (int j = 0; j < QK_K / 32; ++j) {
      const float* qw = quant_weights + QK_K * i + 32 * j;
      for (int l = 0; l < 32; ++l) weights[l] = qw[l] * std::sqrt(sigma2 + x[32 * j + l] * x[32 * j + l]);
      float sumw = 0;
      for (int l = 0; l < 32; ++l) sumw += weights[l];
      sw[j] = sumw;
      scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
    }
    const float d_block = make_qp_quants(QK_K / 32, 63, scales, Ls, sw);
    const float m_block = make_qp_quants(QK_K / 32, 63, mins, Lm, sw);
    for (int j = 0; j < QK_K / 32; ++j) {
      Ls[j] = std::min<std::uint8_t>(63, Ls[j]);
      Lm[j] = std::min<std::uint8_t>(63, Lm[j]);
    }
    pack_scale_min_k4(Ls, Lm, y[i].scales);
    y[i].d = f32_to_f16(d_block);
    y[i].dmin = f32_to_f16(m_block);
    if constexpr (nmax == 15) {
      kquant::finish_q4_K(x, y[i], L);
    } else {
      kquant::finish_q5_K(x, y[i], L);
    }
  }
}

void q6_K_row(const float* x, block_q6_K* y, std::int64_t n, const float* quant_weights) {
  for (std::int64_t i = 0; i < n / QK_K; ++i)
    kquant::quantize_q6_K_superblock(x + QK_K * i, quant_weights + QK_K * i, y[i]);
}

}  // namespace

bool uses_importance(DType t) {
  switch (t) {
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
      return true;
    default:
      return false;
  }
}

void quantize_row_weighted(DType t, const float* x, void* dst, std::int64_t k, const float* qw) {
  if (qw == nullptr || !uses_importance(t)) {
    quantize_row_ref(t, x, dst, k);
    return;
  }
  KILN_CHECK(k % traits(t).block_size == 0, "internal: a row of {} is not a multiple of {}'s block", k, dtype_name(t));
  switch (t) {
    case DType::Q4_0:
      symmetric32_row<block_q4_0, 8>(x, static_cast<block_q4_0*>(dst), k, qw);
      break;
    case DType::Q5_0:
      symmetric32_row<block_q5_0, 16>(x, static_cast<block_q5_0*>(dst), k, qw);
      break;
    case DType::Q4_1:
      affine32_row<block_q4_1, 15>(x, static_cast<block_q4_1*>(dst), k, qw);
      break;
    case DType::Q5_1:
      affine32_row<block_q5_1, 31>(x, static_cast<block_q5_1*>(dst), k, qw);
      break;
    case DType::Q2_K:
      q2_K_row(x, static_cast<block_q2_K*>(dst), k, qw);
      break;
    case DType::Q3_K:
      q3_K_row(x, static_cast<block_q3_K*>(dst), k, qw);
      break;
    case DType::Q4_K:
      q45_K_row<block_q4_K, 15>(x, static_cast<block_q4_K*>(dst), k, qw);
      break;
    case DType::Q5_K:
      q45_K_row<block_q5_K, 31>(x, static_cast<block_q5_K*>(dst), k, qw);
      break;
    case DType::Q6_K:
      q6_K_row(x, static_cast<block_q6_K*>(dst), k, qw);
      break;
    default:
      break;
  }
}

}  // namespace kiln::kernels
