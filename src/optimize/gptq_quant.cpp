// GPTQ over a whole weight: the factor of the input covariance, the row loop over
// kernels/gptq_block.h's per-block step, and the output error it is judged by.
#include "optimize/gptq_quant.h"

#include <cmath>

#include "core/error.h"
#include "kernels/gptq_block.h"

namespace kiln::optimize {
namespace {

// In-place Cholesky factorization A = L Lᵀ of a symmetric (n, n) matrix (lower triangle used,
// L written there). Returns false if A is not positive definite.
bool cholesky_lower(std::vector<double>& A, std::int64_t n) {
  for (std::int64_t j = 0; j < n; ++j) {
    double d = A[static_cast<std::size_t>(j * n + j)];
    for (std::int64_t p = 0; p < j; ++p)
      d -= A[static_cast<std::size_t>(j * n + p)] * A[static_cast<std::size_t>(j * n + p)];
    if (!(d > 0)) return false;
    d = std::sqrt(d);
    A[static_cast<std::size_t>(j * n + j)] = d;
    for (std::int64_t i = j + 1; i < n; ++i) {
      double s = A[static_cast<std::size_t>(i * n + j)];
      for (std::int64_t p = 0; p < j; ++p)
        s -= A[static_cast<std::size_t>(i * n + p)] * A[static_cast<std::size_t>(j * n + p)];
      A[static_cast<std::size_t>(i * n + j)] = s / d;
    }
  }
  return true;
}

}  // namespace

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
  KILN_CHECK(kernels::gptq_supports(t), "--method gptq cannot write {}", dtype_name(t));
  KILN_CHECK(g.k == k, "internal: gptq factor for {} columns used on a row of {}", g.k, k);
  const std::int64_t bs = traits(t).block_size;
  const std::size_t block_bytes = traits(t).block_bytes;
  std::vector<float> w(x, x + k);  // (k) the row as updated by the error fed forward
  auto* out = static_cast<std::uint8_t*>(dst);
  for (std::int64_t b0 = 0; b0 < k; b0 += bs) {
    kernels::quantize_block_gptq(t, w.data(), k, b0, qw, g.U.data(),
                                 out + static_cast<std::size_t>(b0 / bs) * block_bytes);
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
