// Tests of kiln's affine block formats (a4g64, a4g128, a8g32, a8g64, a8g128): the dtype ids and
// layouts, the min/max round-to-nearest quantizer on hand-checked blocks, round-trip bounds, the
// scalar dot product against plain double arithmetic on the dequantized values, and every SIMD
// level (AVX2, AVX-512 VNNI, AMX-INT8 for 16+ rows) against the scalar reference over odd sizes,
// row ranges and misaligned buffers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/dtype.h"
#include "core/half.h"
#include "kernels/amx_gemm.h"
#include "kernels/blocks.h"
#include "kernels/matmul.h"

namespace kiln::kernels {
namespace {

constexpr DType kAffineTypes[] = {DType::A4G64, DType::A4G128, DType::A8G32, DType::A8G64, DType::A8G128};

int bits_of(DType t) { return t == DType::A4G64 || t == DType::A4G128 ? 4 : 8; }
std::int64_t group_of(DType t) { return traits(t).block_size; }

std::vector<std::uint8_t> quantize(DType t, const std::vector<float>& x) {
  std::vector<std::uint8_t> out(row_bytes(t, static_cast<std::int64_t>(x.size())));
  quantize_row_ref(t, x.data(), out.data(), static_cast<std::int64_t>(x.size()));
  return out;
}

std::uint16_t u16_at(const std::vector<std::uint8_t>& v, std::size_t off) {
  std::uint16_t x;
  std::memcpy(&x, v.data() + off, 2);
  return x;
}

// ---- the types ---------------------------------------------------------------------------------

TEST(AffineQuants, IdsNamesAndLayouts) {
  struct Expect {
    DType t;
    std::uint32_t id;
    const char* name;
    std::int64_t group;
    std::size_t bytes;
  };
  const Expect expect[] = {{DType::A4G64, 1001, "a4g64", 64, 36},   {DType::A4G128, 1002, "a4g128", 128, 68},
                           {DType::A8G32, 1003, "a8g32", 32, 36},   {DType::A8G64, 1004, "a8g64", 64, 68},
                           {DType::A8G128, 1005, "a8g128", 128, 132}};
  for (const Expect& e : expect) {
    EXPECT_EQ(static_cast<std::uint32_t>(e.t), e.id);
    EXPECT_EQ(dtype_name(e.t), e.name);
    EXPECT_EQ(traits(e.t).block_size, e.group);
    EXPECT_EQ(traits(e.t).block_bytes, e.bytes);
    EXPECT_TRUE(traits(e.t).quantized);
    EXPECT_TRUE(is_kiln_only_dtype(e.t));
    EXPECT_EQ(parse_dtype(std::string(e.name)), e.t);
    EXPECT_EQ(dtype_name_for_id(e.id), e.name);
    EXPECT_TRUE(is_supported_weight_type(e.t));
  }
  EXPECT_EQ(parse_dtype("A4G128"), DType::A4G128);
  EXPECT_FALSE(is_kiln_only_dtype(DType::Q4_1));
  EXPECT_EQ(sizeof(block_a4g64), 36u);
  EXPECT_EQ(sizeof(block_a8g128), 132u);
  EXPECT_EQ(row_bytes(DType::A4G128, 4096), 4096u / 128 * 68);
}

TEST(AffineQuants, ActivationsAreQ8_1AtEveryLevel) {
  for (SimdLevel level : {SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512}) {
    for (DType t : kAffineTypes) {
      const WeightKernels& k = weight_kernels(t, level);
      EXPECT_EQ(k.weight_type, t);
      EXPECT_EQ(k.act_type, DType::Q8_1);
      // The same conversion as q4_1 weights, so that linear() can share it between them.
      EXPECT_EQ(k.quantize_act, weight_kernels(DType::Q4_1, level).quantize_act);
    }
  }
}

// ---- the quantizer on hand-checked blocks ---------------------------------------------------------

TEST(AffineQuants, FourBitGroupUsesMinAndRange) {
  // x = (j % 16) - 3 over 64 weights: min -3, max 12, d = 15 / 15 = 1, q = x + 3, packed per 32
  // as q4_1 (byte i: q[i] low nibble, q[i + 16] high nibble).
  std::vector<float> x(64);
  for (int j = 0; j < 64; ++j) x[j] = static_cast<float>(j % 16 - 3);
  const auto q = quantize(DType::A4G64, x);
  ASSERT_EQ(q.size(), 36u);
  EXPECT_EQ(u16_at(q, 0), 0x3C00);  // d = 1
  EXPECT_EQ(u16_at(q, 2), 0xC200);  // m = -3
  for (int run = 0; run < 2; ++run)
    for (int i = 0; i < 16; ++i) EXPECT_EQ(q[4 + 16 * run + i], i | (i << 4)) << run << " " << i;
  std::vector<float> back(64);
  dequantize_row(DType::A4G64, q.data(), back.data(), 64);
  for (int j = 0; j < 64; ++j) EXPECT_EQ(back[j], x[j]) << j;
}

TEST(AffineQuants, EightBitGroupRoundsHalfAwayFromZeroAndKeepsBytesInOrder) {
  // min 0, max 255: d = 1, m = 0, so q = round(x): 2.5 -> 3, 3.5 -> 4, 0.49 -> 0.
  std::vector<float> x(32, 0.0f);
  x[1] = 255.0f;
  x[2] = 2.5f;
  x[3] = 3.5f;
  x[4] = 0.49f;
  x[5] = 100.0f;
  const auto q = quantize(DType::A8G32, x);
  EXPECT_EQ(u16_at(q, 0), 0x3C00);
  EXPECT_EQ(u16_at(q, 2), 0x0000);
  const int expected[] = {0, 255, 3, 4, 0, 100};
  for (int j = 0; j < 6; ++j) EXPECT_EQ(q[4 + j], expected[j]) << j;
}

TEST(AffineQuants, QuantsAreComputedFromTheStoredF16ScaleAndMinimum) {
  // min = 1 + 3 * 2^-12 is not an f16: it rounds up to m = 1 + 2^-10. The range is exactly 15,
  // so d = 1. A weight 6.5001 above the true minimum is 6.49985 above the stored m: kiln stores
  // q = 6 (dequantized 0.49986 away), where dividing by the unrounded minimum (ggml's q4_1) would
  // give 7 (0.50015 away). The minimum itself is below m and clamps to q = 0.
  const float min = 1.0f + 3.0f / 4096;
  std::vector<float> x(64, 8.0f);
  x[0] = min;
  x[1] = min + 15.0f;
  x[2] = min + 6.5001f;
  const auto q = quantize(DType::A4G64, x);
  EXPECT_EQ(u16_at(q, 0), 0x3C00);                          // d = 1
  EXPECT_EQ(f16_to_f32(u16_at(q, 2)), 1.0f + 1.0f / 1024);  // m
  EXPECT_EQ(q[4] & 0x0F, 0);
  EXPECT_EQ(q[5] & 0x0F, 15);
  EXPECT_EQ(q[6] & 0x0F, 6);
  std::vector<float> back(64);
  dequantize_row(DType::A4G64, q.data(), back.data(), 64);
  EXPECT_LT(std::fabs(back[2] - x[2]), 0.5f);
  EXPECT_LT(std::fabs(back[0] - x[0]), 0.001f);
}

TEST(AffineQuants, ConstantGroupHasZeroScaleAndExactValues) {
  const std::vector<float> x(128, -0.75f);
  for (DType t : {DType::A4G128, DType::A8G128}) {
    const auto q = quantize(t, x);
    EXPECT_EQ(u16_at(q, 0), 0x0000) << dtype_name(t);
    std::vector<float> back(128);
    dequantize_row(t, q.data(), back.data(), 128);
    for (float v : back) EXPECT_EQ(v, -0.75f) << dtype_name(t);
  }
}

// ---- round trips --------------------------------------------------------------------------------

std::vector<float> random_floats(std::size_t n, unsigned seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> x(n);
  for (float& v : x) v = normal(rng);
  // Some runs with an offset, as the affine formats are meant for.
  for (std::size_t i = 64; i + 32 <= n; i += 160)
    for (std::size_t j = 0; j < 32; ++j) x[i + j] += 3.0f * scale;
  return x;
}

TEST(AffineQuants, RoundTripErrorIsWithinHalfAStep) {
  const std::int64_t k = 128 * 20;
  const auto x = random_floats(k, 1);
  for (DType t : kAffineTypes) {
    const std::int64_t G = group_of(t);
    const auto q = quantize(t, x);
    std::vector<float> back(k);
    dequantize_row(t, q.data(), back.data(), k);
    for (std::int64_t b = 0; b < k / G; ++b) {
      const float lo = *std::min_element(x.begin() + b * G, x.begin() + (b + 1) * G);
      const float hi = *std::max_element(x.begin() + b * G, x.begin() + (b + 1) * G);
      const float step = (hi - lo) / static_cast<float>((1 << bits_of(t)) - 1);
      // Half a step, plus what the f16 d and m move the grid: 2^-11 of m and of the top level.
      const float bound = 0.5f * step * 1.01f + 1e-3f * (std::fabs(lo) + std::fabs(hi));
      for (std::int64_t j = 0; j < G; ++j)
        ASSERT_LE(std::fabs(back[b * G + j] - x[b * G + j]), bound) << dtype_name(t) << " block " << b << " " << j;
    }
  }
}

TEST(AffineQuants, SmallerGroupsAndMoreBitsGiveSmallerError) {
  const std::int64_t k = 128 * 64;
  const auto x = random_floats(k, 5);
  auto rms_error = [&](DType t) {
    const auto q = quantize(t, x);
    std::vector<float> back(k);
    dequantize_row(t, q.data(), back.data(), k);
    double s = 0;
    for (std::int64_t i = 0; i < k; ++i) s += (back[i] - x[i]) * static_cast<double>(back[i] - x[i]);
    return std::sqrt(s / k);
  };
  const double q4_1 = rms_error(DType::Q4_1);  // groups of 32, 4 bits: kiln writes A4G32 as q4_1
  EXPECT_LT(q4_1, rms_error(DType::A4G64));
  EXPECT_LT(rms_error(DType::A4G64), rms_error(DType::A4G128));
  EXPECT_LT(rms_error(DType::A8G32), rms_error(DType::A8G64));
  EXPECT_LT(rms_error(DType::A8G64), rms_error(DType::A8G128));
  EXPECT_LT(rms_error(DType::A8G128) * 8, rms_error(DType::A4G64));
}

// ---- the scalar reference against plain arithmetic ---------------------------------------------

TEST(AffineQuants, ScalarDotEqualsDoubleDotOfDequantizedValues) {
  for (DType t : kAffineTypes) {
    for (std::int64_t k : {group_of(t), 3 * group_of(t), 4096 + group_of(t)}) {
      const auto w = random_floats(static_cast<std::size_t>(k), 11);
      const auto x = random_floats(static_cast<std::size_t>(k), 12, 2.0f);
      const auto wq = quantize(t, w);
      std::vector<std::uint8_t> aq(row_bytes(DType::Q8_1, k));
      const WeightKernels& ref = weight_kernels(t, SimdLevel::Scalar);
      ref.quantize_act(x.data(), aq.data(), k);
      std::vector<float> wf(k), af(k);
      dequantize_row(t, wq.data(), wf.data(), k);
      dequantize_row(DType::Q8_1, aq.data(), af.data(), k);
      double exact = 0, magnitude = 0;
      for (std::int64_t i = 0; i < k; ++i) {
        exact += static_cast<double>(wf[i]) * af[i];
        magnitude += std::fabs(static_cast<double>(wf[i]) * af[i]);
      }
      // q8_1 carries s = d * sum(q) as an f16, so the minimum's term is off by up to 2^-11 of
      // |m| * |s| per activation block: bounded here by 1e-3 of the magnitude.
      EXPECT_NEAR(ref.vec_dot(k, wq.data(), aq.data()), exact, 1e-3 * magnitude) << dtype_name(t) << " k=" << k;
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

TEST(AffineQuants, FastLevelsAreTheOnesAskedFor) {
  const auto levels = fast_levels();
  if (levels.empty()) GTEST_SKIP() << "this CPU has no AVX2: only the scalar path exists";
  for (SimdLevel level : levels)
    for (DType t : kAffineTypes) EXPECT_EQ(weight_kernels(t, level).level, level) << dtype_name(t);
}

// Weight and activation rows at deliberately misaligned addresses.
struct Operands {
  std::int64_t k, n_rows, M;
  std::size_t w_stride, a_stride;
  std::vector<std::uint8_t> w_storage, a_storage;
  const std::uint8_t* w;
  const std::uint8_t* a;
  std::vector<float> magnitude;  // (M, n_rows) sum of |w * a| over k
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
    // Some rows entirely positive or with large offsets: the minimum's term then dominates.
    if (n % 5 == 1)
      for (float& v : x) v = std::fabs(v) + 1.5f;
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

std::vector<std::int64_t> sizes_for(DType t) {
  const std::int64_t G = group_of(t);
  return {G, 3 * G, 4096 + G};
}

TEST(AffineQuants, FastVecDotMatchesScalar) {
  const auto levels = fast_levels();
  if (levels.empty()) GTEST_SKIP() << "this CPU has no AVX2: only the scalar path exists";
  int misalign = 1;
  for (DType t : kAffineTypes) {
    const WeightKernels& ref = weight_kernels(t, SimdLevel::Scalar);
    for (std::int64_t k : sizes_for(t)) {
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

TEST(AffineQuants, FastGemmMatchesScalar) {
  const auto levels = fast_levels();
  if (levels.empty()) GTEST_SKIP() << "this CPU has no AVX2: only the scalar path exists";
  const std::int64_t n_rows = 37;
  struct Range {
    std::int64_t begin, end;
  };
  const Range ranges[] = {{0, 37}, {3, 37}, {5, 22}, {17, 18}, {16, 32}};
  int misalign = 1;
  for (DType t : kAffineTypes) {
    const WeightKernels& ref = weight_kernels(t, SimdLevel::Scalar);
    for (std::int64_t k : sizes_for(t)) {
      // 1..4 rows take the direct path, more the unpacked one; 16 and more also AMX tiles on
      // CPUs that have them (16 rows per tile, the rest by VNNI).
      for (std::int64_t M : {1, 2, 3, 4, 5, 8, 16, 17, 33}) {
        if (k > 1000 && M > 5 && M != 17) continue;  // keep the run short
        const Operands op = make_operands(t, k, n_rows, M, static_cast<unsigned>(k * 31 + M), misalign);
        misalign = misalign % 62 + 1;
        const std::int64_t ldy = n_rows + 3;
        std::vector<float> expected(M * ldy);
        for (std::int64_t m = 0; m < M; ++m)
          for (std::int64_t n = 0; n < n_rows; ++n)
            expected[m * ldy + n] = ref.vec_dot(k, op.w + n * op.w_stride, op.a + m * op.a_stride);
        for (SimdLevel level : levels) {
          const WeightKernels& fast = weight_kernels(t, level);
          for (const Range& r : ranges) {
            std::vector<float> y(M * ldy, std::nanf(""));
            fast.gemm(k, op.w, op.w_stride, op.a, op.a_stride, M, r.begin, r.end, y.data(), ldy);
            for (std::int64_t m = 0; m < M; ++m)
              for (std::int64_t n = 0; n < ldy; ++n) {
                const float got = y[m * ldy + n];
                const std::string where = std::string(dtype_name(t)) + " " + std::string(simd_level_name(level)) +
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

// Decode over 64+ rows walks pairs of strided row groups (the memory-bandwidth path): every row
// of wide ranges, odd-sized ones included, must still equal the scalar reference.
TEST(AffineQuants, WideDecodeRangesMatchScalar) {
  const auto levels = fast_levels();
  if (levels.empty()) GTEST_SKIP() << "this CPU has no AVX2: only the scalar path exists";
  const std::int64_t n_rows = 203, k = 256;
  for (DType t : kAffineTypes) {
    const WeightKernels& ref = weight_kernels(t, SimdLevel::Scalar);
    for (std::int64_t M : {1, 3}) {
      const Operands op = make_operands(t, k, n_rows, M, 91u + static_cast<unsigned>(M), 5);
      for (SimdLevel level : levels) {
        const WeightKernels& fast = weight_kernels(t, level);
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
                    << dtype_name(t) << " " << simd_level_name(level) << " M=" << M << " [" << b << "," << e
                    << ") m=" << m << " n=" << n;
              }
            }
        }
      }
    }
  }
}

// Prefill of 32+ rows goes through the AMX-BF16 path (linear() converts the activations to
// bf16 for any type amx_supports): the affine decoders there, against double sums of the
// dequantized weights and the same bf16 activations, within bf16's rounding of the weights.
TEST(AffineQuants, AmxBf16GemmMatchesDequantizedWeights) {
  if (!amx_available()) GTEST_SKIP() << "no AMX-BF16 on this CPU/OS: the prefill path is the VNNI/AMX-INT8 gemm";
  for (DType t : kAffineTypes) {
    ASSERT_TRUE(amx_supports(t)) << dtype_name(t);
    for (std::int64_t K : {group_of(t) == 32 ? std::int64_t{96} : 3 * group_of(t), std::int64_t{2048 + 128}}) {
      const std::int64_t N = 45, M = 37;
      const std::size_t w_stride = row_bytes(t, K) + 3;  // misaligned rows
      std::vector<std::uint8_t> w(w_stride * N + 64);
      std::vector<float> wf(N * K);
      for (std::int64_t n = 0; n < N; ++n) {
        const auto x = random_floats(static_cast<std::size_t>(K), 300 + static_cast<unsigned>(n));
        quantize_row_ref(t, x.data(), w.data() + 1 + n * w_stride, K);
        dequantize_row(t, w.data() + 1 + n * w_stride, wf.data() + n * K, K);
      }
      const auto x = random_floats(static_cast<std::size_t>(M * K), 77, 2.0f);
      std::vector<std::uint16_t> a(M * K);
      amx_convert_activations(x.data(), M, K, a.data());
      std::vector<float> y(M * N, std::nanf(""));
      amx_gemm(t, K, w.data() + 1, w_stride, a.data(), static_cast<std::size_t>(K), M, 3, N, y.data(), N);
      for (std::int64_t m = 0; m < M; ++m)
        for (std::int64_t n = 0; n < N; ++n) {
          if (n < 3) {
            ASSERT_TRUE(std::isnan(y[m * N + n])) << "wrote outside its range";
            continue;
          }
          double exact = 0, magnitude = 0;
          for (std::int64_t i = 0; i < K; ++i) {
            const double p = static_cast<double>(wf[n * K + i]) * bf16_to_f32(a[m * K + i]);
            exact += p;
            magnitude += std::fabs(p);
          }
          ASSERT_NEAR(y[m * N + n], exact, std::ldexp(1.0, -8) * magnitude + 1e-6 * magnitude)
              << dtype_name(t) << " K=" << K << " m=" << m << " n=" << n;
        }
    }
  }
}

TEST(AffineQuants, GemmOfScalarLevelEqualsVecDot) {
  const Operands op = make_operands(DType::A4G128, 256, 5, 3, 9, 7);
  const WeightKernels& ref = weight_kernels(DType::A4G128, SimdLevel::Scalar);
  std::vector<float> y(3 * 5, -1.0f);
  ref.gemm(256, op.w, op.w_stride, op.a, op.a_stride, 3, 1, 4, y.data(), 5);
  for (std::int64_t m = 0; m < 3; ++m)
    for (std::int64_t n = 0; n < 5; ++n) {
      if (n < 1 || n >= 4) {
        EXPECT_EQ(y[m * 5 + n], -1.0f);
      } else {
        EXPECT_EQ(y[m * 5 + n], ref.vec_dot(256, op.w + n * op.w_stride, op.a + m * op.a_stride));
      }
    }
}

}  // namespace
}  // namespace kiln::kernels
