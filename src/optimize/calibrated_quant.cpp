#include "optimize/calibrated_quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "kernels/blocks.h"
#include "kernels/kquants_internal.h"
#include "kernels/matmul.h"
#include "optimize/imatrix_quants.h"

namespace kiln::optimize {
namespace {

using namespace kiln::kernels;

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
      const std::uint8_t* scales = q4 ? reinterpret_cast<const block_q4_K*>(block)->scales
                                      : reinterpret_cast<const block_q5_K*>(block)->scales;
      const std::uint16_t dh = q4 ? reinterpret_cast<const block_q4_K*>(block)->d
                                  : reinterpret_cast<const block_q5_K*>(block)->d;
      const std::uint16_t mh = q4 ? reinterpret_cast<const block_q4_K*>(block)->dmin
                                  : reinterpret_cast<const block_q5_K*>(block)->dmin;
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

void pack_2bit(const int* L, std::uint8_t* qs) {
  for (int j = 0; j < QK_K; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = static_cast<std::uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                                (L[j + l + 96] << 6));
}

void pack_5bit32(const int* L, std::uint8_t* qs, std::uint8_t* qh_bytes) {
  std::uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    qs[j] = static_cast<std::uint8_t>((L[j] & 0x0F) | ((L[j + 16] & 0x0F) << 4));
    qh |= static_cast<std::uint32_t>((L[j] >> 4) & 1) << j;
    qh |= static_cast<std::uint32_t>((L[j + 16] >> 4) & 1) << (j + 16);
  }
  std::memcpy(qh_bytes, &qh, 4);
}

// Writes the levels L (one block, in [lmin, lmax]) into a block whose scales are already set.
void set_levels(DType t, const int* L, std::uint8_t* block) {
  switch (t) {
    case DType::Q4_0:
    case DType::Q4_1: {
      std::uint8_t* qs = t == DType::Q4_0 ? reinterpret_cast<block_q4_0*>(block)->qs
                                          : reinterpret_cast<block_q4_1*>(block)->qs;
      for (int j = 0; j < 16; ++j) qs[j] = static_cast<std::uint8_t>(L[j] | (L[j + 16] << 4));
      break;
    }
    case DType::Q5_0: {
      auto* b = reinterpret_cast<block_q5_0*>(block);
      pack_5bit32(L, b->qs, b->qh);
      break;
    }
    case DType::Q5_1: {
      auto* b = reinterpret_cast<block_q5_1*>(block);
      pack_5bit32(L, b->qs, b->qh);
      break;
    }
    case DType::Q8_0: {
      auto* b = reinterpret_cast<block_q8_0*>(block);
      for (int j = 0; j < 32; ++j) b->qs[j] = static_cast<std::int8_t>(L[j]);
      break;
    }
    case DType::Q2_K:
      pack_2bit(L, reinterpret_cast<block_q2_K*>(block)->qs);
      break;
    case DType::Q3_K: {
      auto* b = reinterpret_cast<block_q3_K*>(block);
      int low[QK_K];
      std::memset(b->hmask, 0, sizeof(b->hmask));
      for (int j = 0; j < QK_K; ++j) {
        low[j] = L[j] & 3;
        if (L[j] > 3) b->hmask[j % 32] |= static_cast<std::uint8_t>(1 << (j / 32));
      }
      pack_2bit(low, b->qs);
      break;
    }
    case DType::Q4_K: {
      std::uint8_t* q = reinterpret_cast<block_q4_K*>(block)->qs;
      for (int j = 0; j < QK_K; j += 64, q += 32)
        for (int l = 0; l < 32; ++l) q[l] = static_cast<std::uint8_t>(L[j + l] | (L[j + l + 32] << 4));
      break;
    }
    case DType::Q5_K: {
      auto* b = reinterpret_cast<block_q5_K*>(block);
      std::memset(b->qh, 0, sizeof(b->qh));
      std::uint8_t* ql = b->qs;
      std::uint8_t m1 = 1, m2 = 2;
      for (int n = 0; n < QK_K; n += 64, ql += 32) {
        for (int j = 0; j < 32; ++j) {
          const int l1 = L[n + j], l2 = L[n + j + 32];
          if (l1 > 15) b->qh[j] |= m1;
          if (l2 > 15) b->qh[j] |= m2;
          ql[j] = static_cast<std::uint8_t>((l1 & 15) | ((l2 & 15) << 4));
        }
        m1 = static_cast<std::uint8_t>(m1 << 2);
        m2 = static_cast<std::uint8_t>(m2 << 2);
      }
      break;
    }
    case DType::Q6_K: {
      auto* b = reinterpret_cast<block_q6_K*>(block);
      std::uint8_t* ql = b->ql;
      std::uint8_t* qh = b->qh;
      for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32)
        for (int l = 0; l < 32; ++l) {
          ql[l] = static_cast<std::uint8_t>((L[j + l] & 0xF) | ((L[j + l + 64] & 0xF) << 4));
          ql[l + 32] = static_cast<std::uint8_t>((L[j + l + 32] & 0xF) | ((L[j + l + 96] & 0xF) << 4));
          qh[l] = static_cast<std::uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                            ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
        }
      break;
    }
    default:
      fail("internal: --method gptq cannot write {}", dtype_name(t));
  }
}

// In-place Cholesky factorization A = L Lᵀ of a symmetric (n, n) matrix (lower triangle used,
// L written there). Returns false if A is not positive definite.
bool cholesky_lower(std::vector<double>& A, std::int64_t n) {
  for (std::int64_t j = 0; j < n; ++j) {
    double d = A[static_cast<std::size_t>(j * n + j)];
    for (std::int64_t p = 0; p < j; ++p) d -= A[static_cast<std::size_t>(j * n + p)] * A[static_cast<std::size_t>(j * n + p)];
    if (!(d > 0)) return false;
    d = std::sqrt(d);
    A[static_cast<std::size_t>(j * n + j)] = d;
    for (std::int64_t i = j + 1; i < n; ++i) {
      double s = A[static_cast<std::size_t>(i * n + j)];
      for (std::int64_t p = 0; p < j; ++p) s -= A[static_cast<std::size_t>(i * n + p)] * A[static_cast<std::size_t>(j * n + p)];
      A[static_cast<std::size_t>(i * n + j)] = s / d;
    }
  }
  return true;
}

}  // namespace

bool gptq_supports(DType t) {
  switch (t) {
    case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0:
    case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
      return true;
    default:
      return false;
  }
}

GptqFactor prepare_gptq(const float* cov, std::int64_t k, double n_tokens, double damp) {
  KILN_CHECK(n_tokens > 0, "gptq: the covariance was summed over no tokens");
  const auto at = [k](std::int64_t i, std::int64_t j) { return static_cast<std::size_t>(i * k + j); };
  // H = cov / n (+ damping), in double: the factorizations below lose digits otherwise.
  std::vector<double> H(static_cast<std::size_t>(k * k));
  double mean_diag = 0;
  for (std::int64_t i = 0; i < k; ++i) mean_diag += cov[at(i, i)] / n_tokens;
  mean_diag /= static_cast<double>(k);
  if (!(mean_diag > 0)) mean_diag = 1;
  for (std::int64_t i = 0; i < k; ++i)
    for (std::int64_t j = 0; j < k; ++j) H[at(i, j)] = cov[at(i, j)] / n_tokens;
  for (std::int64_t i = 0; i < k; ++i) {
    if (H[at(i, i)] == 0) H[at(i, i)] = mean_diag;  // an input that never fired
    H[at(i, i)] += damp * mean_diag;
  }
  // H = L Lᵀ, then H⁻¹ = L⁻ᵀ L⁻¹; its upper Cholesky factor U (H⁻¹ = Uᵀ U) is what GPTQ uses.
  if (!cholesky_lower(H, k)) fail("gptq: the input covariance is not positive definite even with damping {}", damp);
  // Linv = L⁻¹ (lower triangular), by forward substitution column by column.
  std::vector<double> Linv(static_cast<std::size_t>(k * k), 0.0);
  for (std::int64_t c = 0; c < k; ++c) {
    Linv[at(c, c)] = 1.0 / H[at(c, c)];
    for (std::int64_t i = c + 1; i < k; ++i) {
      double s = 0;
      for (std::int64_t p = c; p < i; ++p) s += H[at(i, p)] * Linv[at(p, c)];
      Linv[at(i, c)] = -s / H[at(i, i)];
    }
  }
  // Hinv = Linvᵀ Linv.
  std::vector<double> Hinv(static_cast<std::size_t>(k * k), 0.0);
  for (std::int64_t i = 0; i < k; ++i)
    for (std::int64_t j = i; j < k; ++j) {
      double s = 0;
      for (std::int64_t p = j; p < k; ++p) s += Linv[at(p, i)] * Linv[at(p, j)];
      Hinv[at(i, j)] = Hinv[at(j, i)] = s;
    }
  if (!cholesky_lower(Hinv, k)) fail("gptq: the inverse covariance is not positive definite (damping {})", damp);
  GptqFactor g;
  g.k = k;
  g.U.assign(static_cast<std::size_t>(k * k), 0.0f);
  for (std::int64_t i = 0; i < k; ++i)
    for (std::int64_t j = i; j < k; ++j) g.U[at(i, j)] = static_cast<float>(Hinv[at(j, i)]);  // U = Lᵀ
  return g;
}

void quantize_row_gptq(DType t, const float* x, void* dst, std::int64_t k, const float* qw, const GptqFactor& g) {
  KILN_CHECK(gptq_supports(t), "--method gptq cannot write {}", dtype_name(t));
  KILN_CHECK(g.k == k, "internal: gptq factor for {} columns used on a row of {}", g.k, k);
  const int bs = static_cast<int>(traits(t).block_size);
  const std::size_t block_bytes = traits(t).block_bytes;
  std::vector<float> w(x, x + k);  // (k) the row as updated by the error fed forward
  auto* out = static_cast<std::uint8_t*>(dst);
  BlockGrid grid;
  int L[QK_K];
  for (std::int64_t b0 = 0; b0 < k; b0 += bs) {
    std::uint8_t* block = out + static_cast<std::size_t>(b0 / bs) * block_bytes;
    // The block's scales: the weighted quantizer's choice for the weights as they are now.
    quantize_row_weighted(t, w.data() + b0, block, bs, qw ? qw + b0 : nullptr);
    block_grid(t, block, grid);
    for (int j = 0; j < bs; ++j) {
      const std::int64_t col = b0 + j;
      const float a = grid.a[j], c = grid.c[j];
      int l = grid.lmin;
      if (a != 0) l = std::clamp(static_cast<int>(std::lround((w[static_cast<std::size_t>(col)] - c) / a)), grid.lmin, grid.lmax);
      L[j] = l;
      const float q = a * static_cast<float>(l) + c;
      const float* u = g.U.data() + col * k;  // row col of U
      const float e = (w[static_cast<std::size_t>(col)] - q) / u[col];
      for (std::int64_t i = col + 1; i < k; ++i) w[static_cast<std::size_t>(i)] -= e * u[i];
    }
    set_levels(t, L, block);
  }
}

double output_error(const float* w, const float* q, const float* cov, std::int64_t k, double n_tokens) {
  double s = 0;
  for (std::int64_t i = 0; i < k; ++i) {
    const double di = static_cast<double>(w[i]) - q[i];
    for (std::int64_t j = 0; j < k; ++j) s += di * cov[i * k + j] * (static_cast<double>(w[j]) - q[j]);
  }
  return s / n_tokens;
}

}  // namespace kiln::optimize
