// dense_gemm against its scalar reference: both precisions, every operand orientation, shapes
// that cross every edge of the tile and of the packed blocks (k not a multiple of a unit pair
// or of kc, m and n not multiples of the tile or the block), padded strides, accumulation, one
// and two threads; the scalar path and the AVX-512 path each.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "kernels/dense_gemm.h"

namespace kiln::kernels {
namespace {

struct Operand {
  std::vector<float> values;
  MatrixArg arg;
};

// rows × cols as the product sees it, stored in the given orientation with 3 floats of padding
// after each stored row.
Operand random_operand(std::int64_t rows, std::int64_t cols, bool transposed, std::mt19937& rng) {
  Operand o;
  const std::int64_t stored_rows = transposed ? cols : rows, stored_cols = transposed ? rows : cols;
  const std::int64_t stride = stored_cols + 3;
  o.values.resize(static_cast<std::size_t>(stored_rows * stride + 1));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (float& v : o.values) v = dist(rng);
  o.arg = MatrixArg{o.values.data(), stride, transposed};
  return o;
}

// |fast - reference| within a few f32 roundings of the sum of |a||b| (K terms).
void expect_close(const std::vector<float>& fast, const std::vector<float>& ref, std::int64_t K, const std::string& what) {
  const double tol = 4e-7 * static_cast<double>(K) + 1e-6;
  int bad = 0;
  for (std::size_t i = 0; i < fast.size(); ++i)
    if (!(std::fabs(static_cast<double>(fast[i]) - ref[i]) <= tol * (1.0 + std::fabs(ref[i]))) && bad++ < 3)
      ADD_FAILURE() << what << ": element " << i << " is " << fast[i] << ", the reference " << ref[i];
}

struct Shape {
  std::int64_t M, N, K;
};

void check_level(SimdLevel level, int threads) {
  const Shape shapes[] = {{1, 1, 1},     {3, 5, 7},      {12, 32, 16},   {13, 33, 17},   {25, 65, 255},
                          {241, 70, 513}, {37, 1030, 40}, {300, 45, 1000}, {7, 19, 2049}};
  ThreadPool pool(threads);
  std::mt19937 rng(7);
  for (GemmPrecision p : {GemmPrecision::F32, GemmPrecision::BF16})
    for (const Shape& s : shapes)
      for (int orient = 0; orient < 4; ++orient)
        for (bool accumulate : {false, true}) {
          const bool ta = orient & 1, tb = orient & 2;
          Operand a = random_operand(s.M, s.K, ta, rng);
          Operand b = random_operand(s.K, s.N, tb, rng);
          const std::int64_t ldc = s.N + 5;
          std::vector<float> c(static_cast<std::size_t>(s.M * ldc));
          std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
          for (float& v : c) v = dist(rng);
          std::vector<float> ref = c;
          dense_gemm(s.M, s.N, s.K, a.arg, b.arg, c.data(), ldc, accumulate, p, pool, level);
          dense_gemm_ref(s.M, s.N, s.K, a.arg, b.arg, ref.data(), ldc, accumulate, p);
          // Padding between C's rows is never written.
          for (std::int64_t i = 0; i < s.M; ++i)
            for (std::int64_t j = s.N; j < ldc && i + 1 < s.M; ++j)
              ASSERT_EQ(std::bit_cast<std::uint32_t>(c[static_cast<std::size_t>(i * ldc + j)]),
                        std::bit_cast<std::uint32_t>(ref[static_cast<std::size_t>(i * ldc + j)]));
          expect_close(c, ref, s.K,
                       std::string(p == GemmPrecision::F32 ? "f32 " : "bf16 ") + std::to_string(s.M) + "x" +
                           std::to_string(s.N) + "x" + std::to_string(s.K) + (ta ? " At" : " A") + (tb ? " Bt" : " B") +
                           (accumulate ? " +=" : " =") + " threads " + std::to_string(threads));
        }
}

TEST(DenseGemm, ScalarPathMatchesTheReference) {
  check_level(SimdLevel::Scalar, 1);
  check_level(SimdLevel::Scalar, 2);
}

TEST(DenseGemm, Avx512PathMatchesTheReference) {
  if (max_supported_simd_level() < SimdLevel::Avx512) GTEST_SKIP() << "this CPU has no AVX-512";
  EXPECT_EQ(dense_gemm_path(GemmPrecision::F32, SimdLevel::Avx512), SimdLevel::Avx512);
  if (!cpu_features().avx512bf16) std::printf("no AVX-512 BF16: bf16 products take the scalar path\n");
  check_level(SimdLevel::Avx512, 1);
  check_level(SimdLevel::Avx512, 2);
}

TEST(DenseGemm, Bf16RoundsInputsToNearestEven) {
  // 1 + 2^-8 lies halfway between two bf16 values: it rounds to 1 (even), 1 + 3·2^-8 to 1 + 2^-6.
  // A wrong rounding (truncation, or f32 inputs) changes the product.
  ThreadPool pool(1);
  for (SimdLevel level : {SimdLevel::Scalar, max_supported_simd_level()}) {
    const float a[2] = {1.0f + 1.0f / 256, 1.0f + 3.0f / 256};
    const float b[2] = {1.0f, 1.0f};
    float c = 0;
    dense_gemm(1, 1, 2, MatrixArg{a, 2}, MatrixArg{b, 1}, &c, 1, false, GemmPrecision::BF16, pool, level);
    EXPECT_EQ(c, 1.0f + (1.0f + 1.0f / 64)) << simd_level_name(level);
  }
}

TEST(DenseGemm, ZeroDepthClearsOrKeepsC) {
  ThreadPool pool(2);
  std::vector<float> c(6, 5.0f);
  dense_gemm(2, 3, 0, MatrixArg{nullptr, 0}, MatrixArg{nullptr, 0}, c.data(), 3, true, GemmPrecision::F32, pool);
  EXPECT_EQ(c, std::vector<float>(6, 5.0f));
  dense_gemm(2, 3, 0, MatrixArg{nullptr, 0}, MatrixArg{nullptr, 0}, c.data(), 3, false, GemmPrecision::F32, pool);
  EXPECT_EQ(c, std::vector<float>(6, 0.0f));
}

}  // namespace
}  // namespace kiln::kernels
