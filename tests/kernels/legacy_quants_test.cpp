// Tests of the legacy block formats (q4_0, q4_1, q5_0, q5_1, q8_0, q8_1): ggml-exact stored-weight
// quantizers on hand-checked blocks, round-trip error bounds, and every SIMD level against the
// scalar reference (activation quantizer byte for byte; vec_dot and gemm within a tight
// relative tolerance over odd sizes, offset ranges and misaligned buffers).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/dtype.h"
#include "core/half.h"
#include "kernels/blocks.h"
#include "kernels/legacy_quants_internal.h"
#include "kernels/matmul.h"

namespace kiln::kernels {
namespace {

constexpr DType kWeightTypes[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0};

std::vector<std::uint8_t> quantize(DType t, const std::vector<float>& x) {
  std::vector<std::uint8_t> out(row_bytes(t, static_cast<std::int64_t>(x.size())));
  quantize_row_ref(t, x.data(), out.data(), static_cast<std::int64_t>(x.size()));
  return out;
}

std::vector<float> block_of(float (*f)(int)) {
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = f(j);
  return x;
}

std::uint32_t qh_of(const std::uint8_t* qh) {
  std::uint32_t v;
  std::memcpy(&v, qh, 4);
  return v;
}

// ---- formats ----------------------------------------------------------------------------------

TEST(LegacyQuants, BlockSizesMatchGgml) {
  EXPECT_EQ(sizeof(block_q4_0), 18u);
  EXPECT_EQ(sizeof(block_q4_1), 20u);
  EXPECT_EQ(sizeof(block_q5_0), 22u);
  EXPECT_EQ(sizeof(block_q5_1), 24u);
  EXPECT_EQ(sizeof(block_q8_0), 34u);
  EXPECT_EQ(sizeof(block_q8_1), 36u);
  EXPECT_EQ(row_bytes(DType::Q4_0, 4096), 4096u / 32 * 18);
  EXPECT_EQ(row_bytes(DType::Q8_1, 64), 72u);
}

TEST(LegacyQuants, ActivationTypesFollowGgml) {
  for (SimdLevel level : {SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512}) {
    EXPECT_EQ(weight_kernels(DType::Q4_0, level).act_type, DType::Q8_0);
    EXPECT_EQ(weight_kernels(DType::Q5_0, level).act_type, DType::Q8_0);
    EXPECT_EQ(weight_kernels(DType::Q8_0, level).act_type, DType::Q8_0);
    EXPECT_EQ(weight_kernels(DType::Q4_1, level).act_type, DType::Q8_1);
    EXPECT_EQ(weight_kernels(DType::Q5_1, level).act_type, DType::Q8_1);
    for (DType t : kWeightTypes) {
      EXPECT_EQ(weight_kernels(t, level).weight_type, t);
      EXPECT_TRUE(is_supported_weight_type(t));
    }
  }
}

// ---- quantize_row_ref on blocks whose ggml output is worked out by hand -------------------------

TEST(LegacyQuants, Q4_0AllZerosIsNegativeZeroScaleAndMidpointQuants) {
  const auto q = quantize(DType::Q4_0, std::vector<float>(32, 0.0f));
  const auto* b = reinterpret_cast<const block_q4_0*>(q.data());
  // d = 0 / -8 is negative zero, as in ggml.
  EXPECT_EQ(b->d, 0x8000);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b->qs[j], 0x88) << j;
}

TEST(LegacyQuants, Q4_0NegativeMaxGivesPositiveScale) {
  // x = -8..7 twice: the extreme value is -8, so d = -8 / -8 = 1 and q = x + 8.
  const auto q = quantize(DType::Q4_0, block_of([](int j) { return static_cast<float>(j % 16 - 8); }));
  const auto* b = reinterpret_cast<const block_q4_0*>(q.data());
  EXPECT_EQ(b->d, 0x3C00);  // +1.0
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b->qs[j], j | (j << 4)) << j;
}

TEST(LegacyQuants, Q4_0PositiveMaxGivesNegativeScale) {
  // x = 8..-7 twice: the extreme is +8, d = 8 / -8 = -1 and q = 8 - x.
  const auto q = quantize(DType::Q4_0, block_of([](int j) { return static_cast<float>(8 - j % 16); }));
  const auto* b = reinterpret_cast<const block_q4_0*>(q.data());
  EXPECT_EQ(b->d, 0xBC00);  // -1.0
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b->qs[j], j | (j << 4)) << j;
  std::vector<float> back(32);
  dequantize_row(DType::Q4_0, q.data(), back.data(), 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(back[j], static_cast<float>(8 - j % 16)) << j;
}

TEST(LegacyQuants, Q4_0RoundsHalfUpAndClampsAt15) {
  // d = 1 (extreme -8). ggml adds 8.5 and truncates: -0.5 -> 8, 0.5 -> 9, -1.5 -> 7, 1.5 -> 10,
  // and +8 (the far end) clamps to 15.
  std::vector<float> x(32, 0.0f);
  x[0] = -8.0f;
  x[1] = 0.5f;
  x[2] = -0.5f;
  x[3] = 1.5f;
  x[4] = -1.5f;
  x[5] = 8.0f;
  const auto q = quantize(DType::Q4_0, x);
  const auto* b = reinterpret_cast<const block_q4_0*>(q.data());
  EXPECT_EQ(b->d, 0x3C00);
  const int expected_low[6] = {0, 9, 8, 10, 7, 15};
  for (int j = 0; j < 6; ++j) EXPECT_EQ(b->qs[j] & 0x0F, expected_low[j]) << j;
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b->qs[j] >> 4, 8) << j;
}

TEST(LegacyQuants, Q4_1UsesMinAndRange) {
  // x = (j % 16) - 3: min -3, max 12, d = 15 / 15 = 1, q = x + 3.
  const auto q = quantize(DType::Q4_1, block_of([](int j) { return static_cast<float>(j % 16 - 3); }));
  const auto* b = reinterpret_cast<const block_q4_1*>(q.data());
  EXPECT_EQ(b->d, 0x3C00);
  EXPECT_EQ(b->m, 0xC200);  // -3.0
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b->qs[j], j | (j << 4)) << j;
}

TEST(LegacyQuants, Q5_0PacksFifthBitsInQh) {
  // x = j - 16: extreme -16, d = 1, q = j; quants 16..31 have the fifth bit.
  const auto q = quantize(DType::Q5_0, block_of([](int j) { return static_cast<float>(j - 16); }));
  const auto* b = reinterpret_cast<const block_q5_0*>(q.data());
  EXPECT_EQ(b->d, 0x3C00);
  EXPECT_EQ(qh_of(b->qh), 0xFFFF0000u);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b->qs[j], j | (j << 4)) << j;
}

TEST(LegacyQuants, Q5_1UsesMinAndRange) {
  // x = 1 + j / 2: min 1, max 16.5, d = 15.5 / 31 = 0.5, q = j.
  const auto q = quantize(DType::Q5_1, block_of([](int j) { return 1.0f + 0.5f * static_cast<float>(j); }));
  const auto* b = reinterpret_cast<const block_q5_1*>(q.data());
  EXPECT_EQ(b->d, 0x3800);  // 0.5
  EXPECT_EQ(b->m, 0x3C00);  // 1.0
  EXPECT_EQ(qh_of(b->qh), 0xFFFF0000u);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b->qs[j], j | (j << 4)) << j;
}

std::vector<float> q8_tie_block() {
  // amax 127 gives d = 1 exactly, so x * id hits the ties.
  std::vector<float> x(32, 0.0f);
  const float values[] = {127.0f, 2.5f, -2.5f, 0.5f, -0.5f, 1.5f, -127.0f, 3.0f};
  for (int j = 0; j < 8; ++j) x[j] = values[j];
  return x;
}

TEST(LegacyQuants, Q8_0RoundsHalfAwayFromZeroLikeRoundf) {
  const auto q = quantize(DType::Q8_0, q8_tie_block());
  const auto* b = reinterpret_cast<const block_q8_0*>(q.data());
  EXPECT_EQ(b->d, 0x3C00);
  const int expected[] = {127, 3, -3, 1, -1, 2, -127, 3};
  for (int j = 0; j < 8; ++j) EXPECT_EQ(b->qs[j], expected[j]) << j;
  for (int j = 8; j < 32; ++j) EXPECT_EQ(b->qs[j], 0) << j;
}

TEST(LegacyQuants, Q8_1CarriesScaledSum) {
  const auto q = quantize(DType::Q8_1, q8_tie_block());
  const auto* b = reinterpret_cast<const block_q8_1*>(q.data());
  EXPECT_EQ(b->d, 0x3C00);
  EXPECT_EQ(b->s, f32_to_f16(127 + 3 - 3 + 1 - 1 + 2 - 127 + 3));
  EXPECT_EQ(b->qs[1], 3);
}

TEST(LegacyQuants, ActivationQuantizerRoundsHalfToEven) {
  // kiln's activation quantizers (every level) round ties to even, unlike the stored-weight
  // quantizer above.
  const auto x = q8_tie_block();
  const int expected[] = {127, 2, -2, 0, 0, 2, -127, 3};
  for (SimdLevel level : {SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512}) {
    if (level > max_supported_simd_level()) continue;
    block_q8_0 b;
    weight_kernels(DType::Q8_0, level).quantize_act(x.data(), &b, 32);
    for (int j = 0; j < 8; ++j) EXPECT_EQ(b.qs[j], expected[j]) << simd_level_name(level) << " " << j;
  }
}

// ---- round trips --------------------------------------------------------------------------------

std::vector<float> random_floats(std::size_t n, unsigned seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> x(n);
  for (float& v : x) v = normal(rng);
  // Some blocks with an offset, as the affine formats are meant for.
  for (std::size_t i = 64; i + 32 <= n; i += 160)
    for (std::size_t j = 0; j < 32; ++j) x[i + j] += 3.0f * scale;
  return x;
}

TEST(LegacyQuants, RoundTripErrorIsWithinHalfAStep) {
  const std::int64_t k = 32 * 40;
  const auto x = random_floats(k, 1);
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q8_1}) {
    const auto q = quantize(t, x);
    std::vector<float> back(k);
    dequantize_row(t, q.data(), back.data(), k);
    for (std::int64_t b = 0; b < k / 32; ++b) {
      float lo = x[b * 32], hi = x[b * 32], amax = 0.0f;
      for (int j = 0; j < 32; ++j) {
        lo = std::min(lo, x[b * 32 + j]);
        hi = std::max(hi, x[b * 32 + j]);
        amax = std::max(amax, std::fabs(x[b * 32 + j]));
      }
      // The step of each format; q4_0/q5_0 may lose up to a full step at the clamped end.
      float step = 0.0f, slack = 0.5f;
      if (t == DType::Q4_0) step = amax / 8, slack = 1.0f;
      if (t == DType::Q5_0) step = amax / 16, slack = 1.0f;
      if (t == DType::Q4_1) step = (hi - lo) / 15;
      if (t == DType::Q5_1) step = (hi - lo) / 31;
      if (t == DType::Q8_0 || t == DType::Q8_1) step = amax / 127;
      // The f16 scale and zero point add a relative error of about 2^-11 of the magnitude.
      const float bound = slack * step * 1.01f + 2e-3f * amax;
      for (int j = 0; j < 32; ++j)
        ASSERT_LE(std::fabs(back[b * 32 + j] - x[b * 32 + j]), bound)
            << dtype_name(t) << " block " << b << " element " << j;
    }
  }
}

// ---- SIMD levels against the scalar reference -----------------------------------------------------

std::vector<SimdLevel> fast_levels() {
  std::vector<SimdLevel> levels;
  for (SimdLevel level : {SimdLevel::Avx2, SimdLevel::Avx512})
    if (level <= max_supported_simd_level()) levels.push_back(level);
  return levels;
}

// The gemm paths to hold against the scalar reference: each fast level's table and, on CPUs
// with VBMI (whose AVX-512 level takes the row-wise kernel for few rows), the AVX-512 gemm
// without it, which other AVX-512 CPUs run.
struct GemmPath {
  std::string name;
  const WeightKernels* (*table)(DType);
};

std::vector<GemmPath> gemm_paths() {
  std::vector<GemmPath> paths;
  if (SimdLevel::Avx2 <= max_supported_simd_level())
    paths.push_back({"avx2", [](DType t) { return &weight_kernels(t, SimdLevel::Avx2); }});
  if (SimdLevel::Avx512 <= max_supported_simd_level()) {
    paths.push_back({"avx512", [](DType t) { return &weight_kernels(t, SimdLevel::Avx512); }});
    if (cpu_features().avx512vbmi) paths.push_back({"avx512 without vbmi", legacy::avx512_kernels});
  }
  return paths;
}

TEST(LegacyQuants, Avx512LevelTakesTheRowwiseKernelWhereVbmiExists) {
  if (SimdLevel::Avx512 > max_supported_simd_level()) GTEST_SKIP() << "this CPU has no AVX-512";
  for (DType t : kWeightTypes) {
    const WeightKernels& k = weight_kernels(t, SimdLevel::Avx512);
    if (cpu_features().avx512vbmi) {
      EXPECT_EQ(&k, legacy::vbmi_kernels(t)) << dtype_name(t);
      EXPECT_NE(k.gemm, legacy::avx512_kernels(t)->gemm) << dtype_name(t);
    } else {
      EXPECT_EQ(&k, legacy::avx512_kernels(t)) << dtype_name(t);
    }
  }
  if (!cpu_features().avx512vbmi) GTEST_SKIP() << "this CPU has no AVX-512 VBMI: the row-wise kernel is not used";
}

TEST(LegacyQuants, FastLevelsAreTheOnesAskedFor) {
  const auto levels = fast_levels();
  if (levels.empty()) GTEST_SKIP() << "this CPU has no AVX2: only the scalar path exists";
  for (SimdLevel level : levels)
    for (DType t : kWeightTypes) EXPECT_EQ(weight_kernels(t, level).level, level) << dtype_name(t);
  for (DType t : kWeightTypes) EXPECT_EQ(weight_kernels(t, SimdLevel::Scalar).level, SimdLevel::Scalar);
}

TEST(LegacyQuants, FastActivationQuantizersMatchScalarBytes) {
  const std::int64_t k = 32 * 129;
  auto x = random_floats(k, 2, 5.0f);
  // Blocks with exact ties and an all-zero block.
  for (int j = 0; j < 32; ++j) x[32 + j] = static_cast<float>(j) - 15.5f;  // amax 15.5
  for (int j = 0; j < 32; ++j) x[64 + j] = 0.0f;
  for (int j = 0; j < 32; ++j) x[96 + j] = (j == 0 ? 127.0f : 0.5f * static_cast<float>(j - 16));
  for (DType w : {DType::Q8_0, DType::Q4_1}) {
    const WeightKernels& ref = weight_kernels(w, SimdLevel::Scalar);
    std::vector<std::uint8_t> expected(row_bytes(ref.act_type, k));
    ref.quantize_act(x.data(), expected.data(), k);
    for (SimdLevel level : fast_levels()) {
      const WeightKernels& fast = weight_kernels(w, level);
      std::vector<std::uint8_t> got(expected.size(), 0xAB);
      fast.quantize_act(x.data(), got.data(), k);
      for (std::size_t i = 0; i < got.size(); ++i)
        ASSERT_EQ(got[i], expected[i]) << dtype_name(ref.act_type) << " " << simd_level_name(level) << " byte " << i;
    }
  }
}

// Weight and activation rows at deliberately misaligned addresses.
struct Operands {
  std::int64_t k, n_rows, M;
  std::size_t w_stride, a_stride;
  std::vector<std::uint8_t> w_storage, a_storage;
  const std::uint8_t* w;
  const std::uint8_t* a;
  std::vector<float> magnitude;  // (M, n_rows) sum of |w * a| over k, in double-then-float
};

Operands make_operands(DType t, std::int64_t k, std::int64_t n_rows, std::int64_t M, unsigned seed, int misalign) {
  Operands op{k, n_rows, M, 0, 0, {}, {}, nullptr, nullptr, {}};
  const WeightKernels& ref = weight_kernels(t, SimdLevel::Scalar);
  // Strides that are not multiples of anything useful, and bases off by 1..63 bytes.
  op.w_stride = row_bytes(t, k) + static_cast<std::size_t>(misalign % 7);
  op.a_stride = row_bytes(ref.act_type, k) + static_cast<std::size_t>((misalign * 3) % 5);
  op.w_storage.assign(op.w_stride * n_rows + 128, 0);
  op.a_storage.assign(op.a_stride * M + 128, 0);
  std::uint8_t* w = op.w_storage.data() + misalign;
  std::uint8_t* a = op.a_storage.data() + (misalign * 5) % 63 + 1;
  std::vector<float> wf(k * n_rows), af(k * M);
  for (std::int64_t n = 0; n < n_rows; ++n) {
    auto x = random_floats(k, seed * 1000 + static_cast<unsigned>(n));
    quantize_row_ref(t, x.data(), w + n * op.w_stride, k);
    dequantize_row(t, w + n * op.w_stride, wf.data() + n * k, k);
  }
  for (std::int64_t m = 0; m < M; ++m) {
    auto x = random_floats(k, seed * 7777 + static_cast<unsigned>(m), 2.0f);
    ref.quantize_act(x.data(), a + m * op.a_stride, k);
    dequantize_row(ref.act_type, a + m * op.a_stride, af.data() + m * k, k);
  }
  op.magnitude.resize(M * n_rows);
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t n = 0; n < n_rows; ++n) {
      double s = 0.0;
      for (std::int64_t i = 0; i < k; ++i) s += std::fabs(static_cast<double>(wf[n * k + i]) * af[m * k + i]);
      op.magnitude[m * n_rows + n] = static_cast<float>(s);
    }
  op.w = w;
  op.a = a;
  return op;
}

// Float rounding order is all that may differ: a few ulps of the sum of |terms|.
constexpr float kRelTol = 4e-6f;

TEST(LegacyQuants, FastVecDotMatchesScalar) {
  const auto levels = fast_levels();
  if (levels.empty()) GTEST_SKIP() << "this CPU has no AVX2: only the scalar path exists";
  int misalign = 1;
  for (DType t : kWeightTypes) {
    const WeightKernels& ref = weight_kernels(t, SimdLevel::Scalar);
    for (std::int64_t k : {32, 64, 96, 4096 + 32}) {
      const Operands op = make_operands(t, k, 3, 2, static_cast<unsigned>(k), misalign);
      misalign = (misalign + 17) % 63 + 1;
      for (SimdLevel level : levels) {
        const WeightKernels& fast = weight_kernels(t, level);
        for (std::int64_t n = 0; n < op.n_rows; ++n)
          for (std::int64_t m = 0; m < op.M; ++m) {
            const float expected = ref.vec_dot(k, op.w + n * op.w_stride, op.a + m * op.a_stride);
            const float got = fast.vec_dot(k, op.w + n * op.w_stride, op.a + m * op.a_stride);
            ASSERT_NEAR(got, expected, kRelTol * op.magnitude[m * op.n_rows + n] + 1e-30f)
                << dtype_name(t) << " " << simd_level_name(level) << " k=" << k << " n=" << n << " m=" << m;
          }
      }
    }
  }
}

TEST(LegacyQuants, FastGemmMatchesScalar) {
  if (gemm_paths().empty()) GTEST_SKIP() << "this CPU has no AVX2: only the scalar path exists";
  const std::int64_t n_rows = 37;
  struct Range {
    std::int64_t begin, end;
  };
  const Range ranges[] = {{0, 37}, {3, 37}, {5, 22}, {17, 18}, {16, 32}};
  int misalign = 1;
  for (DType t : kWeightTypes) {
    const WeightKernels& ref = weight_kernels(t, SimdLevel::Scalar);
    for (std::int64_t k : {32, 64, 96, 4096 + 32}) {
      // M >= 16 also takes the AMX tiles on CPUs that have them (16 rows per tile, the rest by VNNI).
      // 5..64 rows take the column tiles on AVX-512 (16 rows per tile, a last partial one).
      for (std::int64_t M : {1, 2, 3, 4, 5, 8, 12, 16, 17, 33, 48, 64, 65}) {
        if (k > 96 && M > 8 && t != DType::Q4_0 && t != DType::Q8_0) continue;  // keep the run short
        if (k > 96 && M > 33 && t != DType::Q4_0) continue;  // keep the run short
        const Operands op = make_operands(t, k, n_rows, M, static_cast<unsigned>(k * 31 + M), misalign);
        misalign = misalign % 62 + 1;
        const std::int64_t ldy = n_rows + 3;
        std::vector<float> expected(M * ldy);
        for (std::int64_t m = 0; m < M; ++m)
          for (std::int64_t n = 0; n < n_rows; ++n)
            expected[m * ldy + n] = ref.vec_dot(k, op.w + n * op.w_stride, op.a + m * op.a_stride);
        for (const GemmPath& path : gemm_paths()) {
          const WeightKernels& fast = *path.table(t);
          for (const Range& r : ranges) {
            std::vector<float> y(M * ldy, std::nanf(""));
            fast.gemm(k, op.w, op.w_stride, op.a, op.a_stride, M, r.begin, r.end, y.data(), ldy);
            for (std::int64_t m = 0; m < M; ++m)
              for (std::int64_t n = 0; n < ldy; ++n) {
                const float got = y[m * ldy + n];
                const std::string where = std::string(dtype_name(t)) + " " + path.name +
                                          " k=" + std::to_string(k) + " M=" + std::to_string(M) + " range [" +
                                          std::to_string(r.begin) + "," + std::to_string(r.end) +
                                          ") m=" + std::to_string(m) + " n=" + std::to_string(n);
                if (n < r.begin || n >= r.end) {
                  ASSERT_TRUE(std::isnan(got)) << "wrote outside its range: " << where;
                } else {
                  ASSERT_NEAR(got, expected[m * ldy + n], kRelTol * op.magnitude[m * n_rows + n] + 1e-30f) << where;
                }
              }
          }
        }
      }
    }
  }
}

// Decode over many rows walks rows or row groups far apart (the memory-bandwidth paths): every
// row of wide ranges, odd-sized ones included, must still equal the scalar reference, also
// when a row ends in a partial step of the row-wise kernel (k = 192, 224: 6 and 7 blocks).
TEST(LegacyQuants, WideDecodeRangesMatchScalar) {
  if (gemm_paths().empty()) GTEST_SKIP() << "this CPU has no AVX2: only the scalar path exists";
  const std::int64_t n_rows = 203;
  for (DType t : kWeightTypes) {
    const WeightKernels& ref = weight_kernels(t, SimdLevel::Scalar);
    for (auto [M, k] : {std::pair<std::int64_t, std::int64_t>{1, 256}, {3, 256}, {1, 224}, {2, 192}, {4, 224}}) {
      const Operands op = make_operands(t, k, n_rows, M, 91u + static_cast<unsigned>(M + k), 5);
      for (const GemmPath& path : gemm_paths()) {
        const WeightKernels& fast = *path.table(t);
        for (auto [b, e] : {std::pair<std::int64_t, std::int64_t>{0, 64}, {0, 203}, {7, 200}, {11, 139}}) {
          std::vector<float> y(M * n_rows, std::nanf(""));
          fast.gemm(k, op.w, op.w_stride, op.a, op.a_stride, M, b, e, y.data(), n_rows);
          for (std::int64_t m = 0; m < M; ++m)
            for (std::int64_t n = 0; n < n_rows; ++n) {
              const float got = y[m * n_rows + n];
              if (n < b || n >= e) {
                ASSERT_TRUE(std::isnan(got)) << dtype_name(t) << " wrote outside [" << b << "," << e << ") n=" << n;
              } else {
                ASSERT_NEAR(got, ref.vec_dot(k, op.w + n * op.w_stride, op.a + m * op.a_stride),
                            kRelTol * op.magnitude[m * n_rows + n] + 1e-30f)
                    << dtype_name(t) << " " << path.name << " M=" << M << " k=" << k << " [" << b << "," << e
                    << ") m=" << m << " n=" << n;
              }
            }
        }
      }
    }
  }
}

TEST(LegacyQuants, GemmOfScalarLevelEqualsVecDot) {
  const Operands op = make_operands(DType::Q5_1, 96, 5, 3, 9, 7);
  const WeightKernels& ref = weight_kernels(DType::Q5_1, SimdLevel::Scalar);
  std::vector<float> y(3 * 5, -1.0f);
  ref.gemm(96, op.w, op.w_stride, op.a, op.a_stride, 3, 1, 4, y.data(), 5);
  for (std::int64_t m = 0; m < 3; ++m)
    for (std::int64_t n = 0; n < 5; ++n) {
      if (n < 1 || n >= 4) {
        EXPECT_EQ(y[m * 5 + n], -1.0f);
      } else {
        EXPECT_EQ(y[m * 5 + n], ref.vec_dot(96, op.w + n * op.w_stride, op.a + m * op.a_stride));
      }
    }
}

}  // namespace
}  // namespace kiln::kernels
