// Compares every SIMD path of kernels/ops.h that this CPU can run with the scalar reference
// (namespace ref) over odd sizes and misaligned pointers, with the tolerances stated per test.
// The f16 conversions must match core/half.h bit for bit.
#include "kernels/ops.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/half.h"

namespace kiln::kernels {
namespace {

constexpr std::int64_t kSizes[] = {1, 7, 16, 31, 33, 100, 4099};
// Element offsets applied to every buffer so that the fast paths see unaligned pointers.
constexpr std::int64_t kOffsets[] = {0, 1, 3};

std::vector<float> random_floats(std::int64_t n, float lo, float hi, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// Runs each test once per SIMD level; levels above what the CPU has are skipped visibly.
class OpsTest : public ::testing::TestWithParam<SimdLevel> {
 protected:
  void SetUp() override {
    if (GetParam() > max_supported_simd_level()) GTEST_SKIP() << "this CPU cannot run " << simd_level_name(GetParam());
    set_simd_level(GetParam());
    ASSERT_EQ(simd_level(), GetParam());
  }
  void TearDown() override { set_simd_level(max_supported_simd_level()); }
};

TEST_P(OpsTest, RmsNormMatchesReference) {
  for (std::int64_t n : kSizes) {
    for (std::int64_t offset : kOffsets) {
      std::vector<float> x = random_floats(n + offset, -3.0f, 3.0f, 1 + static_cast<std::uint32_t>(n));
      std::vector<float> w = random_floats(n + offset, 0.5f, 1.5f, 2 + static_cast<std::uint32_t>(n));
      std::vector<float> y(n + offset + 1, 12345.0f), y_ref(n + offset + 1, 12345.0f);
      const float scale = rms_norm(x.data() + offset, w.data() + offset, y.data() + offset, n, 1e-5f);
      const float scale_ref = ref::rms_norm(x.data() + offset, w.data() + offset, y_ref.data() + offset, n, 1e-5f);
      // The scale is 1 / rms(x), which training's backward keeps per row.
      if (n > 0) {
        ASSERT_NEAR(scale, scale_ref, 2e-6f * scale_ref) << "n=" << n << " offset=" << offset;
      }
      for (std::int64_t i = 0; i < n; ++i)
        ASSERT_NEAR(y[offset + i], y_ref[offset + i], 2e-6f * std::fabs(y_ref[offset + i]) + 1e-30f)
            << "n=" << n << " offset=" << offset << " i=" << i;
      EXPECT_EQ(y[offset + n], 12345.0f) << "wrote past the end, n=" << n;
      // In place (y aliasing x) gives the same result.
      rms_norm(x.data() + offset, w.data() + offset, x.data() + offset, n, 1e-5f);
      for (std::int64_t i = 0; i < n; ++i) ASSERT_EQ(x[offset + i], y[offset + i]) << "in place, n=" << n;
    }
  }
}

TEST_P(OpsTest, SoftmaxMatchesReferenceAndSumsToOne) {
  for (std::int64_t n : kSizes) {
    for (std::int64_t offset : kOffsets) {
      std::vector<float> x = random_floats(n + offset + 1, -20.0f, 20.0f, 3 + static_cast<std::uint32_t>(n));
      x[offset + n] = 777.0f;  // a sentinel past the end
      std::vector<float> x_ref = x;
      softmax_inplace(x.data() + offset, n);
      ref::softmax_inplace(x_ref.data() + offset, n);
      double sum = 0.0;
      for (std::int64_t i = 0; i < n; ++i) {
        // exp differs from std::exp by < 2.5e-7 relative; the float sum adds a little more.
        ASSERT_NEAR(x[offset + i], x_ref[offset + i], 2e-6f * x_ref[offset + i] + 1e-37f)
            << "n=" << n << " offset=" << offset << " i=" << i;
        sum += x[offset + i];
      }
      EXPECT_NEAR(sum, 1.0, 1e-5) << "n=" << n;
      EXPECT_EQ(x[offset + n], 777.0f) << "wrote past the end, n=" << n;
    }
  }
}

TEST_P(OpsTest, SoftmaxOfExtremeValuesStaysFinite) {
  const float big = 3.0e38f;
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<std::vector<float>> rows = {
      {big, big, -big, 0.0f},
      {-big, -big, -big},
      {1e4f, 1e4f + 1.0f, 1e4f - 50.0f, 1e4f + 0.5f, 1e4f, 1e4f, 1e4f, 1e4f, 1e4f, 1e4f, 1e4f, 1e4f, 1e4f, 1e4f, 1e4f,
       1e4f, 1e4f, 1e4f, 1e4f},
      {-1e4f, -1e4f - 200.0f, -1e4f - 90.0f, -1e4f + 3.0f, -1e4f},
      {0.0f, -inf, -inf, 1.0f, -inf, -inf, -inf, -inf, -inf, -inf, -inf, -inf, -inf, -inf, -inf, -inf, -inf, 2.0f},
      {-1e-30f, 1e-30f, 0.0f, -0.0f, 1e-40f},
  };
  for (const std::vector<float>& row : rows) {
    std::vector<float> x = row, x_ref = row;
    const std::int64_t n = static_cast<std::int64_t>(row.size());
    softmax_inplace(x.data(), n);
    ref::softmax_inplace(x_ref.data(), n);
    double sum = 0.0;
    for (std::int64_t i = 0; i < n; ++i) {
      ASSERT_TRUE(std::isfinite(x[i])) << "row of " << n << ", i=" << i;
      ASSERT_GE(x[i], 0.0f);
      ASSERT_NEAR(x[i], x_ref[i], 2e-6f * x_ref[i] + 1e-37f) << "row of " << n << ", i=" << i;
      sum += x[i];
    }
    EXPECT_NEAR(sum, 1.0, 1e-5);
  }
}

TEST_P(OpsTest, SiluMulMatchesReference) {
  // A dense sweep of the gate through the whole range where exp is neither 0 nor inf, plus
  // values past both ends, with up = 1 so that the comparison measures exp's error directly.
  std::vector<float> gate;
  for (float g = -100.0f; g <= 100.0f; g += 0.0137f) gate.push_back(g);
  for (float g : {0.0f, -0.0f, 1e-30f, -1e-30f, 88.0f, -88.0f, 89.0f, -89.0f, 103.0f, -103.0f, 1e30f, -1e30f})
    gate.push_back(g);
  const std::int64_t n = static_cast<std::int64_t>(gate.size());
  std::vector<float> ones(gate.size(), 1.0f), y(gate.size()), y_ref(gate.size());
  silu_mul(gate.data(), ones.data(), y.data(), n);
  ref::silu_mul(gate.data(), ones.data(), y_ref.data(), n);
  for (std::int64_t i = 0; i < n; ++i)
    ASSERT_NEAR(y[i], y_ref[i], 1e-6f * std::fabs(y_ref[i]) + 1e-38f) << "gate=" << gate[i];

  for (std::int64_t size : kSizes) {
    for (std::int64_t offset : kOffsets) {
      std::vector<float> g = random_floats(size + offset, -12.0f, 12.0f, 4 + static_cast<std::uint32_t>(size));
      std::vector<float> up = random_floats(size + offset, -2.0f, 2.0f, 5 + static_cast<std::uint32_t>(size));
      std::vector<float> out(size + offset + 1, 55.0f), out_ref(size + offset + 1, 55.0f);
      silu_mul(g.data() + offset, up.data() + offset, out.data() + offset, size);
      ref::silu_mul(g.data() + offset, up.data() + offset, out_ref.data() + offset, size);
      for (std::int64_t i = 0; i < size; ++i)
        ASSERT_NEAR(out[offset + i], out_ref[offset + i], 1e-6f * std::fabs(out_ref[offset + i]) + 1e-38f)
            << "n=" << size << " offset=" << offset << " i=" << i;
      EXPECT_EQ(out[offset + size], 55.0f) << "wrote past the end, n=" << size;
      // In place (y aliasing gate).
      silu_mul(g.data() + offset, up.data() + offset, g.data() + offset, size);
      for (std::int64_t i = 0; i < size; ++i) ASSERT_EQ(g[offset + i], out[offset + i]) << "in place, n=" << size;
    }
  }
}

TEST_P(OpsTest, GeluTanhMulMatchesReference) {
  // A dense sweep of the gate over the range where the tanh is not yet ±1, plus values past it
  // and extremes whose cube overflows float, with up = 1 so that the comparison measures the
  // gelu itself; then odd sizes, misaligned pointers and in place.
  std::vector<float> gate;
  for (float g = -40.0f; g <= 40.0f; g += 0.0071f) gate.push_back(g);
  for (float g : {0.0f, -0.0f, 1e-30f, -1e-30f, 100.0f, -100.0f, 1e15f, -1e15f, 1e30f, -1e30f}) gate.push_back(g);
  const std::int64_t n = static_cast<std::int64_t>(gate.size());
  std::vector<float> ones(gate.size(), 1.0f), y(gate.size()), y_ref(gate.size());
  gelu_tanh_mul(gate.data(), ones.data(), y.data(), n);
  ref::gelu_tanh_mul(gate.data(), ones.data(), y_ref.data(), n);
  for (std::int64_t i = 0; i < n; ++i)
    ASSERT_NEAR(y[i], y_ref[i], 2e-6f * std::fabs(y_ref[i]) + 1e-7f) << "gate=" << gate[i];
  // The reference itself at known points: gelu(1) = 0.8411920, gelu(-1) = -0.1588080.
  EXPECT_NEAR(y_ref[static_cast<std::size_t>(std::lround((1.0f + 40.0f) / 0.0071f))], 0.8412f, 3e-3f);

  for (std::int64_t size : kSizes) {
    for (std::int64_t offset : kOffsets) {
      std::vector<float> g = random_floats(size + offset, -8.0f, 8.0f, 14 + static_cast<std::uint32_t>(size));
      std::vector<float> up = random_floats(size + offset, -2.0f, 2.0f, 15 + static_cast<std::uint32_t>(size));
      std::vector<float> out(size + offset + 1, 55.0f), out_ref(size + offset + 1, 55.0f);
      gelu_tanh_mul(g.data() + offset, up.data() + offset, out.data() + offset, size);
      ref::gelu_tanh_mul(g.data() + offset, up.data() + offset, out_ref.data() + offset, size);
      for (std::int64_t i = 0; i < size; ++i)
        ASSERT_NEAR(out[offset + i], out_ref[offset + i], 2e-6f * std::fabs(out_ref[offset + i]) + 1e-7f)
            << "n=" << size << " offset=" << offset << " i=" << i;
      EXPECT_EQ(out[offset + size], 55.0f) << "wrote past the end, n=" << size;
      gelu_tanh_mul(g.data() + offset, up.data() + offset, g.data() + offset, size);
      for (std::int64_t i = 0; i < size; ++i) ASSERT_EQ(g[offset + i], out[offset + i]) << "in place, n=" << size;
    }
  }
}

TEST_P(OpsTest, SoftcapMatchesReference) {
  // cap · tanh(x / cap) for gemma2's caps (attention 50, logits 30) over a sweep and extremes:
  // the result stays within (-cap, cap), is odd, and matches the reference to a small absolute
  // error relative to the cap.
  for (float cap : {50.0f, 30.0f, 1.0f}) {
    std::vector<float> x;
    for (float v = -20.0f * cap; v <= 20.0f * cap; v += 0.0093f * cap) x.push_back(v);
    for (float v : {0.0f, -0.0f, 1e-30f, 1e30f, -1e30f}) x.push_back(v);
    std::vector<float> y = x, y_ref = x;
    softcap_inplace(y.data(), static_cast<std::int64_t>(y.size()), cap);
    ref::softcap_inplace(y_ref.data(), static_cast<std::int64_t>(y_ref.size()), cap);
    for (std::size_t i = 0; i < x.size(); ++i) {
      ASSERT_NEAR(y[i], y_ref[i], 4e-7f * cap) << "cap=" << cap << " x=" << x[i];
      ASSERT_LE(std::fabs(y[i]), cap) << "x=" << x[i];
    }
    EXPECT_NEAR(y_ref[y_ref.size() - 2], cap, 1e-6f * cap);
  }
  for (std::int64_t size : kSizes) {
    for (std::int64_t offset : kOffsets) {
      std::vector<float> x = random_floats(size + offset + 1, -200.0f, 200.0f, 24 + static_cast<std::uint32_t>(size));
      x[static_cast<std::size_t>(size + offset)] = 77.0f;
      std::vector<float> x_ref = x;
      softcap_inplace(x.data() + offset, size, 50.0f);
      ref::softcap_inplace(x_ref.data() + offset, size, 50.0f);
      for (std::int64_t i = 0; i < size; ++i)
        ASSERT_NEAR(x[offset + i], x_ref[offset + i], 2e-5f) << "n=" << size << " offset=" << offset << " i=" << i;
      EXPECT_EQ(x[offset + size], 77.0f) << "wrote past the end, n=" << size;
    }
  }
}

TEST_P(OpsTest, AddDotAxpyMatchReference) {
  for (std::int64_t n : kSizes) {
    for (std::int64_t offset : kOffsets) {
      const auto seed = static_cast<std::uint32_t>(10 * n + offset);
      std::vector<float> a = random_floats(n + offset, -1.0f, 1.0f, seed);
      std::vector<float> b = random_floats(n + offset, -1.0f, 1.0f, seed + 1);
      std::vector<float> y0 = random_floats(n + offset + 1, -1.0f, 1.0f, seed + 2);

      // add is exact: one rounding per element either way.
      std::vector<float> y = y0, y_ref = y0;
      add_inplace(y.data() + offset, a.data() + offset, n);
      ref::add_inplace(y_ref.data() + offset, a.data() + offset, n);
      ASSERT_EQ(y, y_ref) << "add, n=" << n << " offset=" << offset;

      // dot: float accumulation against the double reference, bounded by the sum of |a·b|.
      double abs_sum = 0.0;
      for (std::int64_t i = 0; i < n; ++i) abs_sum += std::fabs(a[offset + i] * b[offset + i]);
      EXPECT_NEAR(dot_f32(a.data() + offset, b.data() + offset, n),
                  ref::dot_f32(a.data() + offset, b.data() + offset, n), 2e-6 * abs_sum + 1e-30)
          << "dot, n=" << n << " offset=" << offset;

      // axpy: a fused multiply-add may differ from the reference's two roundings by an ulp.
      y = y0;
      y_ref = y0;
      axpy_f32(0.37f, a.data() + offset, y.data() + offset, n);
      ref::axpy_f32(0.37f, a.data() + offset, y_ref.data() + offset, n);
      for (std::int64_t i = 0; i < n + 1; ++i)
        ASSERT_NEAR(y[i], y_ref[i], 3e-7f * (std::fabs(y0[i]) + 1.0f)) << "axpy, n=" << n << " i=" << i;
      EXPECT_EQ(y[offset + n], y0[offset + n]) << "axpy wrote past the end";
    }
  }
}

TEST_P(OpsTest, F16DotAndAxpyMatchReference) {
  for (std::int64_t n : kSizes) {
    for (std::int64_t offset : kOffsets) {
      const auto seed = static_cast<std::uint32_t>(20 * n + offset);
      std::vector<float> a_f32 = random_floats(n + offset, -2.0f, 2.0f, seed);
      std::vector<std::uint16_t> a(a_f32.size());
      for (std::size_t i = 0; i < a.size(); ++i) a[i] = f32_to_f16(a_f32[i]);
      std::vector<float> b = random_floats(n + offset, -1.0f, 1.0f, seed + 1);
      double abs_sum = 0.0;
      for (std::int64_t i = 0; i < n; ++i) abs_sum += std::fabs(f16_to_f32(a[offset + i]) * b[offset + i]);
      EXPECT_NEAR(dot_f16_f32(a.data() + offset, b.data() + offset, n),
                  ref::dot_f16_f32(a.data() + offset, b.data() + offset, n), 2e-6 * abs_sum + 1e-30)
          << "n=" << n << " offset=" << offset;

      std::vector<float> y0 = random_floats(n + offset + 1, -1.0f, 1.0f, seed + 2);
      std::vector<float> y = y0, y_ref = y0;
      axpy_f16_f32(-1.25f, a.data() + offset, y.data() + offset, n);
      ref::axpy_f16_f32(-1.25f, a.data() + offset, y_ref.data() + offset, n);
      for (std::int64_t i = 0; i < n + 1; ++i)
        ASSERT_NEAR(y[i], y_ref[i], 3e-7f * (std::fabs(y0[i]) + 3.0f)) << "n=" << n << " i=" << i;
      EXPECT_EQ(y[offset + n], y0[offset + n]) << "axpy wrote past the end";
    }
  }
}

TEST_P(OpsTest, F16ToF32IsBitExactForEveryHalf) {
  std::vector<std::uint16_t> halves(65536 + 3);
  for (std::uint32_t h = 0; h < 65536; ++h) halves[h + 3] = static_cast<std::uint16_t>(h);
  std::vector<float> out(65536 + 3);
  f16_to_f32_row(halves.data() + 3, out.data() + 3, 65536);
  for (std::uint32_t h = 0; h < 65536; ++h)
    ASSERT_EQ(std::bit_cast<std::uint32_t>(out[h + 3]),
              std::bit_cast<std::uint32_t>(f16_to_f32(static_cast<std::uint16_t>(h))))
        << "half 0x" << std::hex << h;
  for (std::int64_t n : kSizes) {  // tails
    std::vector<float> y(n + 1, 9.0f);
    f16_to_f32_row(halves.data() + 1000, y.data(), n);
    for (std::int64_t i = 0; i < n; ++i) ASSERT_EQ(y[i], f16_to_f32(halves[1000 + i]));
    EXPECT_EQ(y[n], 9.0f) << "wrote past the end, n=" << n;
  }
}

TEST_P(OpsTest, F32ToF16IsBitExact) {
  std::vector<std::uint32_t> bits = {
      0x00000000u, 0x80000000u,                                                                   // ±0
      0x00000001u, 0x80000001u, 0x007FFFFFu, 0x00400000u,                                         // f32 subnormals
      0x7F800000u, 0xFF800000u,                                                                   // ±inf
      0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0xFF800001u, 0x7FFFFFFFu, 0x7FA02000u, 0xFFBFE000u,  // NaNs
      0x477FE000u, 0x477FEFFFu, 0x477FF000u, 0x477FF001u,  // 65504, just below and at the overflow tie
      0x33000000u, 0x33000001u, 0x33C00000u, 0x32FFFFFFu,  // 2^-25 (tie to 0), 3·2^-25 (tie up)
      0x3F801000u, 0x3F803000u, 0x3F801001u, 0x3F800FFFu,  // ties around 1.0 and their neighbours
      0x38800000u, 0x387FC000u, 0x387FE000u, 0x387FF000u,  // the f16 normal/subnormal boundary
  };
  // Every half's value and the midpoints between neighbouring halves, ± one float ulp: all
  // rounding ties of the conversion, both signs.
  for (std::uint32_t h = 0; h < 0x7C00u; ++h) {
    const std::uint32_t v = std::bit_cast<std::uint32_t>(f16_to_f32(static_cast<std::uint16_t>(h)));
    const std::uint32_t next = std::bit_cast<std::uint32_t>(f16_to_f32(static_cast<std::uint16_t>(h + 1)));
    const std::uint32_t mid = std::bit_cast<std::uint32_t>(
        0.5f * (std::bit_cast<float>(v) + std::bit_cast<float>(next)));  // exact: halves have 11 bits
    for (std::uint32_t b : {v, mid - 1, mid, mid + 1}) {
      bits.push_back(b);
      bits.push_back(b | 0x80000000u);
    }
  }
  std::mt19937 rng(7);
  for (int i = 0; i < 200000; ++i) bits.push_back(rng());

  std::vector<float> x(bits.size() + 1);
  for (std::size_t i = 0; i < bits.size(); ++i) x[i + 1] = std::bit_cast<float>(bits[i]);
  std::vector<std::uint16_t> out(bits.size() + 1);
  f32_to_f16_row(x.data() + 1, out.data() + 1, static_cast<std::int64_t>(bits.size()));
  for (std::size_t i = 0; i < bits.size(); ++i)
    ASSERT_EQ(out[i + 1], f32_to_f16(x[i + 1])) << "float bits 0x" << std::hex << bits[i];
  for (std::int64_t n : kSizes) {  // tails
    std::vector<std::uint16_t> y(n + 1, 0xABCD);
    f32_to_f16_row(x.data() + 1, y.data(), n);
    for (std::int64_t i = 0; i < n; ++i) ASSERT_EQ(y[i], f32_to_f16(x[1 + i]));
    EXPECT_EQ(y[n], 0xABCD) << "wrote past the end, n=" << n;
  }
}

TEST_P(OpsTest, AttentionScoresAndValuesMatchReference) {
  // Grouped heads over a run of rows with strides wider than a head, as in the KV cache.
  for (std::int64_t hd : {1, 7, 16, 40, 64, 80, 128}) {
    for (std::int64_t n_q : {1, 3, 4, 8, 12}) {  // 12: more heads than one register pass takes
      for (std::int64_t n_rows : {1, 5, 16, 33}) {
        const auto seed = static_cast<std::uint32_t>(hd * 1000 + n_q * 100 + n_rows);
        const std::int64_t k_stride = hd * 4 + 3, q_stride = hd + 5, s_stride = n_rows + 2;
        std::vector<float> kf = random_floats(n_rows * k_stride, -2.0f, 2.0f, seed);
        std::vector<std::uint16_t> k(kf.size());
        for (std::size_t i = 0; i < k.size(); ++i) k[i] = f32_to_f16(kf[i]);
        std::vector<float> q = random_floats(n_q * q_stride, -1.0f, 1.0f, seed + 1);
        std::vector<float> s(n_q * s_stride, 7.0f), s_ref(s);
        attn_scores_f16(k.data() + 1, k_stride, n_rows, q.data(), q_stride, n_q, hd, 0.125f, s.data(), s_stride);
        ref::attn_scores_f16(k.data() + 1, k_stride, n_rows, q.data(), q_stride, n_q, hd, 0.125f, s_ref.data(), s_stride);
        for (std::size_t i = 0; i < s.size(); ++i)
          ASSERT_NEAR(s[i], s_ref[i], 2e-6f * static_cast<float>(hd) + 1e-6f) << "scores hd=" << hd << " i=" << i;

        std::vector<float> p = random_floats(n_q * s_stride, 0.0f, 1.0f, seed + 2);
        std::vector<float> out = random_floats(n_q * q_stride, -1.0f, 1.0f, seed + 3), out_ref(out);
        attn_values_f16(k.data() + 1, k_stride, n_rows, p.data(), s_stride, n_q, hd, out.data(), q_stride);
        ref::attn_values_f16(k.data() + 1, k_stride, n_rows, p.data(), s_stride, n_q, hd, out_ref.data(), q_stride);
        for (std::size_t i = 0; i < out.size(); ++i)
          ASSERT_NEAR(out[i], out_ref[i], 3e-6f * static_cast<float>(n_rows + 1)) << "values hd=" << hd << " i=" << i;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Levels, OpsTest, ::testing::Values(SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512),
                         [](const ::testing::TestParamInfo<SimdLevel>& info) {
                           return std::string(simd_level_name(info.param));
                         });

}  // namespace
}  // namespace kiln::kernels
