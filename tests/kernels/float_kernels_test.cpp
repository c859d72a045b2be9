// The F32 / F16 / BF16 weight kernels: every SIMD level this CPU runs against the scalar
// reference (weight_kernels(t, SimdLevel::Scalar)) over odd sizes, n ranges that do not start
// at 0, row strides with padding and misaligned pointers; and the row conversions against
// core/half.h bit for bit, special values included.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/cpu_features.h"
#include "core/dtype.h"
#include "core/half.h"
#include "kernels/matmul.h"

namespace kiln::kernels {
namespace {

constexpr std::int64_t kLengths[] = {1, 7, 16, 31, 33, 100, 4099};
constexpr std::int64_t kBatchSizes[] = {1, 2, 3, 5, 8, 17};
constexpr DType kTypes[] = {DType::F32, DType::F16, DType::BF16};
constexpr SimdLevel kFastLevels[] = {SimdLevel::Avx2, SimdLevel::Avx512};

// Bytes of one element of a float type.
std::size_t element_bytes(DType t) { return t == DType::F32 ? 4 : 2; }

// Rows of `count` elements of type t, `stride` bytes apart, starting `offset` bytes into the
// buffer so that no row is aligned to a vector. Values are uniform in [-1, 1].
struct Rows {
  std::vector<char> bytes;
  std::size_t offset = 0, stride = 0;
  const char* row(std::int64_t r) const { return bytes.data() + offset + static_cast<std::size_t>(r) * stride; }
  char* row(std::int64_t r) { return bytes.data() + offset + static_cast<std::size_t>(r) * stride; }
};

Rows random_weight_rows(DType t, std::int64_t n_rows, std::int64_t k, std::size_t offset, std::uint32_t seed) {
  Rows rows;
  rows.offset = offset;
  rows.stride = row_bytes(t, k) + 3 * element_bytes(t);  // padding between rows
  rows.bytes.assign(offset + static_cast<std::size_t>(n_rows) * rows.stride, 0);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> values(static_cast<std::size_t>(k));
  for (std::int64_t r = 0; r < n_rows; ++r) {
    for (float& v : values) v = dist(rng);
    quantize_row_ref(t, values.data(), rows.row(r), k);
  }
  return rows;
}

// The weight element as a float, the way the reference sees it.
float weight_value(DType t, const char* row, std::int64_t i) {
  std::uint16_t h;
  switch (t) {
    case DType::F16:
      std::memcpy(&h, row + 2 * i, 2);
      return f16_to_f32(h);
    case DType::BF16:
      std::memcpy(&h, row + 2 * i, 2);
      return bf16_to_f32(h);
    default: {
      float f;
      std::memcpy(&f, row + 4 * i, 4);
      return f;
    }
  }
}
float activation_value(DType act, const char* row, std::int64_t i) { return weight_value(act, row, i); }

std::string describe(DType t, SimdLevel level, std::int64_t k, std::int64_t M) {
  return std::string(dtype_name(t)) + " " + std::string(simd_level_name(level)) + " k=" + std::to_string(k) +
         " M=" + std::to_string(M);
}

TEST(FloatKernels, LevelsAreTheOnesAskedFor) {
  for (DType t : kTypes) {
    EXPECT_TRUE(is_supported_weight_type(t));
    EXPECT_EQ(weight_kernels(t, SimdLevel::Scalar).level, SimdLevel::Scalar);
    EXPECT_EQ(weight_kernels(t, SimdLevel::Scalar).weight_type, t);
    EXPECT_EQ(weight_kernels(t, SimdLevel::Scalar).act_type, t == DType::BF16 ? DType::BF16 : DType::F32);
    for (SimdLevel level : kFastLevels) {
      if (level > max_supported_simd_level()) continue;
      const WeightKernels& fast = weight_kernels(t, level);
      EXPECT_EQ(fast.level, level) << dtype_name(t);
      EXPECT_EQ(fast.weight_type, t);
      EXPECT_EQ(fast.act_type, weight_kernels(t, SimdLevel::Scalar).act_type);
    }
  }
}

// Every fast level's quantize_act, vec_dot and gemm against the reference. The reference sums
// in double; the fast paths in f32 registers, so the bound is relative to sum |w·a| (a single
// wrong or missing product of k = 4099 would exceed it twenty times over).
TEST(FloatKernels, FastPathsMatchReference) {
  constexpr double kRelativeTolerance = 1e-5;
  constexpr std::int64_t kRowsN = 13;  // weight rows used, 4·3 + 1: full tiles and a tail
  constexpr std::int64_t kNBegin = 5;  // the n range starts inside the matrix
  constexpr std::int64_t kLdy = kNBegin + kRowsN + 2;
  bool ran_a_fast_level = false;
  for (SimdLevel level : kFastLevels) {
    if (level > max_supported_simd_level()) {
      std::printf("note: this CPU cannot run %s; that path was not tested\n",
                  std::string(simd_level_name(level)).c_str());
      continue;
    }
    ran_a_fast_level = true;
    for (DType t : kTypes) {
      const WeightKernels& fast = weight_kernels(t, level);
      const WeightKernels& ref = weight_kernels(t, SimdLevel::Scalar);
      ASSERT_EQ(fast.level, level);
      for (std::int64_t k : kLengths) {
        const Rows w = random_weight_rows(t, kNBegin + kRowsN, k, 3 * element_bytes(t), 100 + k);
        for (std::int64_t M : kBatchSizes) {
          const std::string what = describe(t, level, k, M);
          // Activation rows: quantized by both paths, which must agree bit for bit.
          std::mt19937 rng(static_cast<std::uint32_t>(7 * k + M));
          std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
          std::vector<float> x(static_cast<std::size_t>(M * k + 1));
          for (float& v : x) v = dist(rng);
          Rows a, a_ref;
          a.offset = a_ref.offset = 3 * element_bytes(fast.act_type);
          a.stride = a_ref.stride = row_bytes(fast.act_type, k) + element_bytes(fast.act_type);
          a.bytes.assign(a.offset + static_cast<std::size_t>(M) * a.stride, 0);
          a_ref.bytes = a.bytes;
          for (std::int64_t m = 0; m < M; ++m) {
            fast.quantize_act(x.data() + 1 + m * k, a.row(m), k);
            ref.quantize_act(x.data() + 1 + m * k, a_ref.row(m), k);
          }
          ASSERT_EQ(a.bytes, a_ref.bytes) << "quantize_act differs, " << what;

          const float kSentinel = -12345.0f;
          std::vector<float> y(static_cast<std::size_t>(M * kLdy), kSentinel), y_ref = y;
          fast.gemm(k, w.row(0), w.stride, a.row(0), a.stride, M, kNBegin, kNBegin + kRowsN, y.data(), kLdy);
          ref.gemm(k, w.row(0), w.stride, a.row(0), a.stride, M, kNBegin, kNBegin + kRowsN, y_ref.data(), kLdy);
          for (std::int64_t m = 0; m < M; ++m) {
            for (std::int64_t n = 0; n < kLdy; ++n) {
              const float got = y[m * kLdy + n];
              if (n < kNBegin || n >= kNBegin + kRowsN) {
                ASSERT_EQ(got, kSentinel) << "gemm wrote outside its n range, " << what << " m=" << m << " n=" << n;
                continue;
              }
              double abs_sum = 0.0;
              for (std::int64_t i = 0; i < k; ++i)
                abs_sum += std::fabs(static_cast<double>(weight_value(t, w.row(n), i)) *
                                     activation_value(fast.act_type, a.row(m), i));
              ASSERT_NEAR(got, y_ref[m * kLdy + n], kRelativeTolerance * abs_sum + 1e-30)
                  << "gemm, " << what << " m=" << m << " n=" << n;
              if (m == 0) {
                ASSERT_NEAR(fast.vec_dot(k, w.row(n), a.row(0)), ref.vec_dot(k, w.row(n), a.row(0)),
                            kRelativeTolerance * abs_sum + 1e-30)
                    << "vec_dot, " << what << " n=" << n;
              }
            }
          }
        }
      }
    }
  }
  if (!ran_a_fast_level) GTEST_SKIP() << "no SIMD level available on this CPU; only the reference exists";
}

// A prefill-sized product (M = 64 > one activation tile, k = 2100 > one k block) exercises
// the blocked loops of the fast path: k blocks accumulate into y, n blocks cover the range.
TEST(FloatKernels, BlockedPrefillMatchesReference) {
  constexpr std::int64_t k = 2100, M = 64, n_begin = 1, n_end = 131, ldy = 140;
  for (SimdLevel level : kFastLevels) {
    if (level > max_supported_simd_level()) continue;
    for (DType t : kTypes) {
      const WeightKernels& fast = weight_kernels(t, level);
      const WeightKernels& ref = weight_kernels(t, SimdLevel::Scalar);
      const Rows w = random_weight_rows(t, n_end, k, 0, 9);
      Rows a;
      a.stride = row_bytes(fast.act_type, k);
      a.bytes.resize(static_cast<std::size_t>(M) * a.stride);
      std::mt19937 rng(3);
      std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
      std::vector<float> x(static_cast<std::size_t>(k));
      for (std::int64_t m = 0; m < M; ++m) {
        for (float& v : x) v = dist(rng);
        ref.quantize_act(x.data(), a.row(m), k);
      }
      std::vector<float> y(static_cast<std::size_t>(M * ldy), 0.0f), y_ref = y;
      fast.gemm(k, w.row(0), w.stride, a.row(0), a.stride, M, n_begin, n_end, y.data(), ldy);
      ref.gemm(k, w.row(0), w.stride, a.row(0), a.stride, M, n_begin, n_end, y_ref.data(), ldy);
      double max_error = 0.0;
      for (std::int64_t m = 0; m < M; ++m)
        for (std::int64_t n = n_begin; n < n_end; ++n)
          max_error = std::max(max_error, std::fabs(static_cast<double>(y[m * ldy + n]) - y_ref[m * ldy + n]));
      // sum |w·a| is about k/4 = 525 here; 1e-5 of it bounds the f32 rounding.
      EXPECT_LT(max_error, 1e-5 * k / 4) << dtype_name(t) << " " << simd_level_name(level);
    }
  }
}

// Decode (one activation row) over 64+ weight rows reads rows far apart in groups, with
// prefetches ahead of each: every row of wide and odd ranges must equal the reference, also
// with k not a multiple of the register width.
TEST(FloatKernels, WideDecodeRangesMatchReference) {
  constexpr std::int64_t n_rows = 211;
  for (SimdLevel level : kFastLevels) {
    if (level > max_supported_simd_level()) continue;
    for (DType t : kTypes) {
      const WeightKernels& fast = weight_kernels(t, level);
      const WeightKernels& ref = weight_kernels(t, SimdLevel::Scalar);
      for (std::int64_t k : {512, 1000}) {
        const Rows w = random_weight_rows(t, n_rows, k, 0, 17 + k);
        Rows a;
        a.stride = row_bytes(fast.act_type, k);
        a.bytes.resize(a.stride);
        std::mt19937 rng(static_cast<std::uint32_t>(k));
        std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
        std::vector<float> x(static_cast<std::size_t>(k));
        for (float& v : x) v = dist(rng);
        ref.quantize_act(x.data(), a.row(0), k);
        for (auto [b, e] : {std::pair<std::int64_t, std::int64_t>{0, 64}, {0, 211}, {3, 200}, {7, 138}}) {
          std::vector<float> y(n_rows, -12345.0f), y_ref = y;
          fast.gemm(k, w.row(0), w.stride, a.row(0), a.stride, 1, b, e, y.data(), n_rows);
          ref.gemm(k, w.row(0), w.stride, a.row(0), a.stride, 1, b, e, y_ref.data(), n_rows);
          for (std::int64_t n = 0; n < n_rows; ++n) {
            if (n < b || n >= e) {
              ASSERT_EQ(y[n], -12345.0f) << "wrote outside [" << b << "," << e << ") n=" << n;
              continue;
            }
            // sum |w·a| is at most k here; 1e-5 of it bounds the f32 rounding.
            ASSERT_NEAR(y[n], y_ref[n], 1e-5 * static_cast<double>(k))
                << describe(t, level, k, 1) << " range [" << b << "," << e << ") n=" << n;
          }
        }
      }
    }
  }
}

std::vector<std::uint32_t> special_float_bits() {
  std::vector<std::uint32_t> bits = {
      0x00000000u, 0x80000000u,                                                      // ±0
      0x00000001u, 0x80000001u, 0x007FFFFFu, 0x00008000u, 0x00018000u,               // subnormals (bf16 ties)
      0x7F800000u, 0xFF800000u,                                                      // ±inf
      0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0xFF800001u, 0x7FFFFFFFu, 0x7FA02000u,  // NaNs
      0x3F808000u, 0x3F818000u, 0x3F808001u, 0x3F807FFFu,                            // bf16 ties at 1.0
      0x7F7F8000u, 0x7F7FFFFFu,                                                      // rounding up to inf
      0x477FE000u, 0x477FF000u, 0x33000000u, 0x33C00000u, 0x3F801000u, 0x3F803000u,  // f16 ties
  };
  std::mt19937 rng(11);
  for (int i = 0; i < 100000; ++i) bits.push_back(rng());
  return bits;
}

TEST(FloatKernels, RowConversionsAreBitExact) {
  const std::vector<std::uint32_t> bits = special_float_bits();
  const std::int64_t k = static_cast<std::int64_t>(bits.size());
  std::vector<float> x(bits.size());
  for (std::size_t i = 0; i < bits.size(); ++i) x[i] = std::bit_cast<float>(bits[i]);

  std::vector<std::uint16_t> halves(bits.size());
  quantize_row_ref(DType::F16, x.data(), halves.data(), k);
  for (std::size_t i = 0; i < bits.size(); ++i)
    ASSERT_EQ(halves[i], f32_to_f16(x[i])) << "f16 of float bits 0x" << std::hex << bits[i];
  std::vector<std::uint16_t> bf16(bits.size());
  quantize_row_ref(DType::BF16, x.data(), bf16.data(), k);
  for (std::size_t i = 0; i < bits.size(); ++i)
    ASSERT_EQ(bf16[i], f32_to_bf16(x[i])) << "bf16 of float bits 0x" << std::hex << bits[i];
  // Spot checks that pin the rounding itself, not just agreement with core/half.h.
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3F808000u)), 0x3F80);  // tie to even: down
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3F818000u)), 0x3F82);  // tie to even: up
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x7F800001u)), 0x7FC0);  // NaN stays NaN

  // The BF16 activation quantizers of every level, at several misalignments and tail lengths.
  for (SimdLevel level : {SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512}) {
    if (level > max_supported_simd_level()) continue;
    const WeightKernels& kernels = weight_kernels(DType::BF16, level);
    for (std::int64_t offset : {0, 1, 3}) {
      for (std::int64_t n : {std::int64_t{1}, std::int64_t{15}, std::int64_t{33}, k - offset}) {
        std::vector<std::uint16_t> out(static_cast<std::size_t>(n) + 1, 0xBEEF);
        kernels.quantize_act(x.data() + offset, out.data(), n);
        for (std::int64_t i = 0; i < n; ++i)
          ASSERT_EQ(out[i], f32_to_bf16(x[offset + i]))
              << simd_level_name(level) << " bf16 of float bits 0x" << std::hex << bits[offset + i];
        ASSERT_EQ(out[n], 0xBEEF) << "quantize_act wrote past the end";
      }
    }
  }

  // Back to floats: every half and every bf16 bit pattern.
  std::vector<std::uint16_t> all(65536);
  for (std::uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<std::uint16_t>(i);
  std::vector<float> back(65536);
  dequantize_row(DType::F16, all.data(), back.data(), 65536);
  for (std::uint32_t i = 0; i < 65536; ++i)
    ASSERT_EQ(std::bit_cast<std::uint32_t>(back[i]), std::bit_cast<std::uint32_t>(f16_to_f32(all[i]))) << i;
  dequantize_row(DType::BF16, all.data(), back.data(), 65536);
  for (std::uint32_t i = 0; i < 65536; ++i) ASSERT_EQ(std::bit_cast<std::uint32_t>(back[i]), i << 16) << i;
  std::vector<float> copy(bits.size());
  quantize_row_ref(DType::F32, x.data(), copy.data(), k);
  EXPECT_EQ(std::memcmp(copy.data(), x.data(), bits.size() * 4), 0);
  dequantize_row(DType::F32, x.data(), copy.data(), k);
  EXPECT_EQ(std::memcmp(copy.data(), x.data(), bits.size() * 4), 0);
}

}  // namespace
}  // namespace kiln::kernels
