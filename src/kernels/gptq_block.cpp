// The GPTQ block step (gptq_block.h): the grid a block's scales define, the rounding to it with
// the error fed forward, and the levels written back in the block's own layout.
#include "kernels/gptq_block.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/half.h"
#include "kernels/block_packing.h"
#include "kernels/blocks.h"
#include "kernels/kquants_internal.h"
#include "kernels/weighted_quants.h"

namespace kiln::kernels {
namespace {

// The grid of one block: element j can take the values a[j] · l + c[j] for l in [lmin, lmax].
struct BlockGrid {
  float a[QK_K];
  float c[QK_K];
  int lmin = 0, lmax = 0;
};

// Reads the grid from a block whose scales are set (the levels in it are ignored).
void block_grid(DType t, const std::uint8_t* block, BlockGrid& g) {
  const auto fill = [&g](int j0, int n, float a, float c) {
    for (int j = j0; j < j0 + n; ++j) g.a[j] = a, g.c[j] = c;
  };
  switch (t) {
    case DType::Q4_0: {
      const auto* b = reinterpret_cast<const block_q4_0*>(block);
      const float d = f16_to_f32(b->d);
      fill(0, 32, d, -8 * d), g.lmin = 0, g.lmax = 15;
      break;
    }
    case DType::Q5_0: {
      const auto* b = reinterpret_cast<const block_q5_0*>(block);
      const float d = f16_to_f32(b->d);
      fill(0, 32, d, -16 * d), g.lmin = 0, g.lmax = 31;
      break;
    }
    case DType::Q4_1: {
      const auto* b = reinterpret_cast<const block_q4_1*>(block);
      fill(0, 32, f16_to_f32(b->d), f16_to_f32(b->m)), g.lmin = 0, g.lmax = 15;
      break;
    }
    case DType::Q5_1: {
      const auto* b = reinterpret_cast<const block_q5_1*>(block);
      fill(0, 32, f16_to_f32(b->d), f16_to_f32(b->m)), g.lmin = 0, g.lmax = 31;
      break;
    }
    case DType::Q8_0: {
      const auto* b = reinterpret_cast<const block_q8_0*>(block);
      fill(0, 32, f16_to_f32(b->d), 0), g.lmin = -127, g.lmax = 127;
      break;
    }
    case DType::Q2_K: {
      const auto* b = reinterpret_cast<const block_q2_K*>(block);
      const float d = f16_to_f32(b->d), dmin = f16_to_f32(b->dmin);
      for (int s = 0; s < 16; ++s) fill(16 * s, 16, d * (b->scales[s] & 0xF), -dmin * (b->scales[s] >> 4));
      g.lmin = 0, g.lmax = 3;
      break;
    }
    case DType::Q3_K: {
      const auto* b = reinterpret_cast<const block_q3_K*>(block);
      std::uint8_t sc[16];
      kquant::unpack_q3_K_scales(b->scales, sc);
      const float d = f16_to_f32(b->d);
      for (int s = 0; s < 16; ++s) {
        const float a = d * (sc[s] - 32);
        fill(16 * s, 16, a, -4 * a);
      }
      g.lmin = 0, g.lmax = 7;
      break;
    }
    case DType::Q4_K:
    case DType::Q5_K: {
      const bool q4 = t == DType::Q4_K;
      const std::uint8_t* scales =
          q4 ? reinterpret_cast<const block_q4_K*>(block)->scales : reinterpret_cast<const block_q5_K*>(block)->scales;
      const std::uint16_t dh =
          q4 ? reinterpret_cast<const block_q4_K*>(block)->d : reinterpret_cast<const block_q5_K*>(block)->d;
      const std::uint16_t mh =
          q4 ? reinterpret_cast<const block_q4_K*>(block)->dmin : reinterpret_cast<const block_q5_K*>(block)->dmin;
      const float d = f16_to_f32(dh), dmin = f16_to_f32(mh);
      for (int s = 0; s < 8; ++s) {
        std::uint8_t sc, m;
        kquant::get_scale_min_k4(s, scales, &sc, &m);
        fill(32 * s, 32, d * sc, -dmin * m);
      }
      g.lmin = 0, g.lmax = q4 ? 15 : 31;
      break;
    }
    case DType::Q6_K: {
      const auto* b = reinterpret_cast<const block_q6_K*>(block);
      const float d = f16_to_f32(b->d);
      for (int s = 0; s < 16; ++s) {
        const float a = d * b->scales[s];
        fill(16 * s, 16, a, -32 * a);
      }
      g.lmin = 0, g.lmax = 63;
      break;
    }
    default:
      fail("internal: --method gptq cannot write {}", dtype_name(t));
  }
}

// Writes the levels L (one block, in [lmin, lmax]) into a block whose scales are already set.
void set_levels(DType t, const int* L, std::uint8_t* block) {
  switch (t) {
    case DType::Q4_0:
      pack_4bit_32(L, reinterpret_cast<block_q4_0*>(block)->qs);
      break;
    case DType::Q4_1:
      pack_4bit_32(L, reinterpret_cast<block_q4_1*>(block)->qs);
      break;
    case DType::Q5_0: {
      auto* b = reinterpret_cast<block_q5_0*>(block);
      pack_5bit_32(L, b->qs, b->qh);
      break;
    }
    case DType::Q5_1: {
      auto* b = reinterpret_cast<block_q5_1*>(block);
      pack_5bit_32(L, b->qs, b->qh);
      break;
    }
    case DType::Q8_0: {
      auto* b = reinterpret_cast<block_q8_0*>(block);
      for (int j = 0; j < 32; ++j) b->qs[j] = static_cast<std::int8_t>(L[j]);
      break;
    }
    case DType::Q2_K:
      pack_2bit_quants(L, reinterpret_cast<block_q2_K*>(block)->qs);
      break;
    case DType::Q3_K: {
      auto* b = reinterpret_cast<block_q3_K*>(block);
      pack_q3_K_levels(L, b->hmask, b->qs);
      break;
    }
    case DType::Q4_K:
      pack_q4_K_levels(L, reinterpret_cast<block_q4_K*>(block)->qs);
      break;
    case DType::Q5_K: {
      auto* b = reinterpret_cast<block_q5_K*>(block);
      pack_q5_K_levels(L, b->qh, b->qs);
      break;
    }
    case DType::Q6_K: {
      auto* b = reinterpret_cast<block_q6_K*>(block);
      pack_q6_K_levels(L, b->ql, b->qh);
      break;
    }
    default:
      fail("internal: --method gptq cannot write {}", dtype_name(t));
  }
}

}  // namespace

bool gptq_supports(DType t) {
  // q8_0 has no weighted quantizer (its scale is the block's absmax either way), but its grid is
  // as affine as the others'.
  return uses_importance(t) || t == DType::Q8_0;
}

void quantize_block_gptq(DType t, float* w, std::int64_t k, std::int64_t b0, const float* qw, const float* U,
                         void* block) {
  const int bs = static_cast<int>(traits(t).block_size);
  auto* out = static_cast<std::uint8_t*>(block);
  BlockGrid grid;
  int L[QK_K];
  // The block's scales: the weighted quantizer's choice for the weights as they are now.
  quantize_row_weighted(t, w + b0, out, bs, qw ? qw + b0 : nullptr);
  block_grid(t, out, grid);
  for (int j = 0; j < bs; ++j) {
    const std::int64_t col = b0 + j;
    const float a = grid.a[j], c = grid.c[j];
    int l = grid.lmin;
    if (a != 0) l = std::clamp(static_cast<int>(std::lround((w[col] - c) / a)), grid.lmin, grid.lmax);
    L[j] = l;
    const float q = a * static_cast<float>(l) + c;
    const float* u = U + col * k;  // row col of U
    const float e = (w[col] - q) / u[col];
    for (std::int64_t i = col + 1; i < k; ++i) w[i] -= e * u[i];
  }
  set_levels(t, L, out);
}

}  // namespace kiln::kernels
