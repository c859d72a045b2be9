// The importance-weighted quantizers, the scale searches under them and the GPTQ block step:
// properties that hold whatever the data (levels in range, least-squares scales, the x²
// weighting being the reference's, rounding to the nearest point of a block's grid). Their bytes
// against ggml's own quantize_chunk are checked in tests/interop/weighted_quants_vs_ggml_test.cpp.
#include "kernels/weighted_quants.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "kernels/gptq_block.h"
#include "kernels/matmul.h"
#include "kernels/scale_search.h"

namespace kiln::kernels {
namespace {

const DType kWeightedTypes[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q2_K,
                                DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K};

std::vector<float> gaussian(std::int64_t n, std::uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> x(static_cast<std::size_t>(n));
  for (float& v : x) v = dist(rng);
  return x;
}

// Positive importances spread over three orders of magnitude, as an imatrix's are.
std::vector<float> importance(std::int64_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> exponent(-2.0f, 1.0f);
  std::vector<float> qw(static_cast<std::size_t>(n));
  for (float& v : qw) v = std::pow(10.0f, exponent(rng));
  return qw;
}

std::vector<std::uint8_t> quantize_weighted(DType t, const std::vector<float>& x, const float* qw) {
  const auto k = static_cast<std::int64_t>(x.size());
  std::vector<std::uint8_t> q(row_bytes(t, k));
  quantize_row_weighted(t, x.data(), q.data(), k, qw);
  return q;
}

std::vector<float> dequantize(DType t, const std::vector<std::uint8_t>& q, std::int64_t k) {
  std::vector<float> y(static_cast<std::size_t>(k));
  dequantize_row(t, q.data(), y.data(), k);
  return y;
}

// ---- scale searches -----------------------------------------------------------------------------

TEST(ScaleSearch, QxLevelsInRangeAndScaleIsTheirLeastSquaresFit) {
  for (int nmax : {4, 8, 16, 32}) {
    for (std::uint32_t seed = 0; seed < 20; ++seed) {
      const std::vector<float> x = gaussian(32, seed);
      const std::vector<float> w = importance(32, seed + 100);
      std::int8_t L[32];
      const float scale = make_qx_quants(32, nmax, x.data(), L, w.data());
      double slx = 0, sl2 = 0;
      for (int i = 0; i < 32; ++i) {
        ASSERT_GE(L[i], 0);
        ASSERT_LT(L[i], 2 * nmax);
        const int l = L[i] - nmax;
        slx += w[i] * x[i] * l;
        sl2 += w[i] * l * l;
      }
      EXPECT_NEAR(scale, slx / sl2, 1e-4 * std::fabs(slx / sl2)) << "nmax " << nmax << " seed " << seed;
    }
  }
}

TEST(ScaleSearch, AllZeroGroupsGetZeroScaleAndLevels) {
  const float x[16] = {};
  const float w[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  std::int8_t L[16];
  std::uint8_t U[16], Laux[16];
  float the_min = -1;
  EXPECT_EQ(make_qx_quants(16, 32, x, L, w), 0.0f);
  for (std::int8_t l : L) EXPECT_EQ(l, 0);
  EXPECT_EQ(make_q3_quants(16, 4, x, L), 0.0f);
  EXPECT_EQ(make_qkx2_quants(16, 3, x, w, U, &the_min, Laux, -0.5f, 0.1f, 15, true), 0.0f);
  EXPECT_EQ(the_min, 0.0f);
  EXPECT_EQ(make_qp_quants(16, 15, x, U, w), 0.0f);
}

TEST(ScaleSearch, AffineSearchBeatsTheMinMaxFit) {
  // The search starts from the min/max fit and keeps a candidate only if its weighted error is
  // lower, so the result is never worse than that fit.
  for (std::uint32_t seed = 0; seed < 20; ++seed) {
    const std::vector<float> x = gaussian(32, seed);
    const std::vector<float> w = importance(32, seed + 7);
    std::uint8_t L[32], Laux[32];
    float the_min = 0;
    const int nmax = 15;
    const float scale = make_qkx2_quants(32, nmax, x.data(), w.data(), L, &the_min, Laux, -0.9f, 0.05f, 36, false);
    float lo = 0, hi = x[0];
    for (float v : x) lo = std::min(lo, v), hi = std::max(hi, v);
    const float s0 = (hi - lo) / nmax;
    double err = 0, err0 = 0;
    for (int i = 0; i < 32; ++i) {
      ASSERT_LE(L[i], nmax);
      const double d = scale * L[i] - the_min - x[i];
      const int l0 = std::max(0, std::min(nmax, nearest_int((x[i] - lo) / s0)));
      const double d0 = s0 * l0 + lo - x[i];
      err += w[i] * d * d;
      err0 += w[i] * d0 * d0;
    }
    EXPECT_LE(err, err0 * (1 + 1e-5)) << "seed " << seed;
  }
}

TEST(ScaleSearch, QpLevelsInRange) {
  for (std::uint32_t seed = 0; seed < 20; ++seed) {
    std::vector<float> x = gaussian(16, seed);
    for (float& v : x) v = std::fabs(v);
    const std::vector<float> w = importance(16, seed + 3);
    std::uint8_t L[16];
    const float scale = make_qp_quants(16, 63, x.data(), L, w.data());
    EXPECT_GT(scale, 0.0f);
    for (std::uint8_t l : L) EXPECT_LE(l, 63);
  }
}

// ---- weighted quantizers ------------------------------------------------------------------------

TEST(WeightedQuants, WithoutImportanceTheyAreTheReference) {
  const std::int64_t k = 2 * 256;
  const std::vector<float> x = gaussian(k, 11);
  for (DType t : kWeightedTypes) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    std::vector<std::uint8_t> ref(row_bytes(t, k));
    quantize_row_ref(t, x.data(), ref.data(), k);
    EXPECT_EQ(quantize_weighted(t, x, nullptr), ref);
  }
}

TEST(WeightedQuants, Q6KWeighedByXSquaredIsTheReference) {
  // ggml's reference q6_K weighs each error by x², so that importance gives the reference bytes.
  const std::int64_t k = 4 * 256;
  const std::vector<float> x = gaussian(k, 12);
  std::vector<float> x2(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) x2[i] = x[i] * x[i];
  std::vector<std::uint8_t> ref(row_bytes(DType::Q6_K, k));
  quantize_row_ref(DType::Q6_K, x.data(), ref.data(), k);
  EXPECT_EQ(quantize_weighted(DType::Q6_K, x, x2.data()), ref);
}

TEST(WeightedQuants, RoundTripErrorWithinBounds) {
  const std::int64_t k = 8 * 256;
  const std::vector<float> x = gaussian(k, 13);
  const std::vector<float> qw = importance(k, 14);
  struct Bound {
    DType t;
    double rel_rms;  // RMS error over RMS value
  };
  for (const Bound b : {Bound{DType::Q4_0, 0.15}, Bound{DType::Q4_1, 0.15}, Bound{DType::Q5_0, 0.08},
                        Bound{DType::Q5_1, 0.08}, Bound{DType::Q2_K, 0.5}, Bound{DType::Q3_K, 0.3},
                        Bound{DType::Q4_K, 0.15}, Bound{DType::Q5_K, 0.08}, Bound{DType::Q6_K, 0.04}}) {
    SCOPED_TRACE(std::string(dtype_name(b.t)));
    const std::vector<float> y = dequantize(b.t, quantize_weighted(b.t, x, qw.data()), k);
    double e2 = 0, x2 = 0;
    for (std::int64_t i = 0; i < k; ++i) {
      e2 += (x[i] - y[i]) * (x[i] - y[i]);
      x2 += x[i] * x[i];
    }
    EXPECT_LT(std::sqrt(e2 / x2), b.rel_rms);
  }
}

TEST(WeightedQuants, ImportanceLowersTheWeightedError) {
  // Over many rows, the importance-weighted quantizer's error weighted by that importance is
  // below the reference quantizer's, which does not see it.
  const std::int64_t k = 256;
  for (DType t : kWeightedTypes) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    double err_ref = 0, err_weighted = 0;
    for (std::uint32_t row = 0; row < 32; ++row) {
      const std::vector<float> x = gaussian(k, 200 + row);
      const std::vector<float> qw = importance(k, 300 + row);
      const std::vector<float> yr = dequantize(t, quantize_weighted(t, x, nullptr), k);
      const std::vector<float> yw = dequantize(t, quantize_weighted(t, x, qw.data()), k);
      for (std::int64_t i = 0; i < k; ++i) {
        err_ref += qw[i] * (x[i] - yr[i]) * (x[i] - yr[i]);
        err_weighted += qw[i] * (x[i] - yw[i]) * (x[i] - yw[i]);
      }
    }
    EXPECT_LT(err_weighted, err_ref);
  }
}

// ---- GPTQ block step ----------------------------------------------------------------------------

TEST(GptqBlock, WithoutCorrelationItRoundsToTheNearestGridPoint) {
  // U = I feeds nothing forward, so each weight is rounded alone to its block's grid: the scales
  // are the weighted quantizer's for that block alone (a row of one block), and no element can
  // be farther from its value than that quantizer put it.
  const std::int64_t k = 2 * 256;
  std::vector<float> U(static_cast<std::size_t>(k * k), 0.0f);
  for (std::int64_t i = 0; i < k; ++i) U[static_cast<std::size_t>(i * k + i)] = 1.0f;
  const std::vector<float> x = gaussian(k, 21);
  const std::vector<float> qw = importance(k, 22);
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K,
                  DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    ASSERT_TRUE(gptq_supports(t));
    const std::int64_t bs = traits(t).block_size;
    std::vector<float> w = x;
    std::vector<std::uint8_t> q(row_bytes(t, k));
    for (std::int64_t b0 = 0; b0 < k; b0 += bs) {
      quantize_block_gptq(t, w.data(), k, b0, qw.data(), U.data(), q.data() + (b0 / bs) * traits(t).block_bytes);
    }
    EXPECT_EQ(w, x);
    const std::vector<float> yg = dequantize(t, q, k);
    std::vector<std::uint8_t> qb(row_bytes(t, k));
    for (std::int64_t b0 = 0; b0 < k; b0 += bs) {
      quantize_row_weighted(t, x.data() + b0, qb.data() + (b0 / bs) * traits(t).block_bytes, bs, qw.data() + b0);
    }
    const std::vector<float> yw = dequantize(t, qb, k);
    for (std::int64_t i = 0; i < k; ++i) {
      EXPECT_LE(std::fabs(x[i] - yg[i]), std::fabs(x[i] - yw[i]) + 1e-6f) << "column " << i;
    }
  }
}

TEST(GptqBlock, FeedsTheErrorForwardOnly) {
  // One q4_0 block of a 64-column row: the columns before it stay, the ones after it take
  // -e · U[col][i] / U[col][col] from every rounded column.
  const std::int64_t k = 64, b0 = 0;
  std::vector<float> U(static_cast<std::size_t>(k * k), 0.0f);
  std::mt19937 rng(31);
  std::uniform_real_distribution<float> u(-0.2f, 0.2f);
  for (std::int64_t i = 0; i < k; ++i) {
    U[static_cast<std::size_t>(i * k + i)] = 1.0f;
    for (std::int64_t j = i + 1; j < k; ++j) U[static_cast<std::size_t>(i * k + j)] = u(rng);
  }
  const std::vector<float> x = gaussian(k, 32);
  std::vector<float> w = x;
  std::vector<std::uint8_t> q(row_bytes(DType::Q4_0, k));
  quantize_block_gptq(DType::Q4_0, w.data(), k, b0, nullptr, U.data(), q.data());
  const std::vector<float> y = dequantize(DType::Q4_0, q, 32);
  // Replay the feedback from the rounded values: w as the step left it.
  std::vector<float> expect = x;
  for (std::int64_t col = 0; col < 32; ++col) {
    const float e = (expect[col] - y[col]) / U[static_cast<std::size_t>(col * k + col)];
    for (std::int64_t i = col + 1; i < k; ++i) expect[i] -= e * U[static_cast<std::size_t>(col * k + i)];
  }
  for (std::int64_t i = 0; i < k; ++i) EXPECT_NEAR(w[i], expect[i], 1e-5f) << "column " << i;
}

}  // namespace
}  // namespace kiln::kernels
