// Compares every SIMD path of kernels/kv_quants.h that this CPU can run with the scalar
// reference over the KV block types, head sizes of one to four blocks, group sizes around the
// fast paths' register limits and rows that sit inside wider cache rows (one KV head's slice of
// kv_dim), within the tolerances stated per test.
#include "kernels/kv_quants.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/dtype.h"
#include "kernels/matmul.h"

namespace kiln::kernels {
namespace {

constexpr DType kTypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_1};
constexpr std::int64_t kHeadDims[] = {32, 64, 128};
constexpr std::int64_t kGroups[] = {1, 3, 4, 5, 8, 9};
constexpr std::int64_t kRows[] = {1, 7, 16};

std::vector<float> random_floats(std::int64_t n, float lo, float hi, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// n_rows cache rows of 3 KV heads each, quantized as the cache writes them; the kernels read
// the slice of head 1.
struct CachedRows {
  std::vector<float> values;  // (n_rows, 3 * hd) before quantization
  std::vector<std::uint8_t> bytes;
  std::size_t row_bytes = 0, head_offset = 0;
  std::vector<float> dequantized;  // (n_rows, hd) of head 1, as stored

  CachedRows(DType t, std::int64_t n_rows, std::int64_t hd, std::uint32_t seed) {
    const std::int64_t width = 3 * hd;
    values = random_floats(n_rows * width, -2.0f, 2.0f, seed);
    row_bytes = row_bytes_of(t, width);
    head_offset = row_bytes_of(t, hd);
    bytes.resize(row_bytes * static_cast<std::size_t>(n_rows));
    dequantized.resize(static_cast<std::size_t>(n_rows * hd));
    for (std::int64_t r = 0; r < n_rows; ++r) {
      kv_quantize_row(t, values.data() + r * width, bytes.data() + static_cast<std::size_t>(r) * row_bytes, width);
      dequantize_row(t, head(r), dequantized.data() + r * hd, hd);
    }
  }
  const std::uint8_t* head(std::int64_t r) const { return bytes.data() + static_cast<std::size_t>(r) * row_bytes + head_offset; }
  static std::size_t row_bytes_of(DType t, std::int64_t n) { return kiln::row_bytes(t, n); }
};

class KvQuantsTest : public ::testing::TestWithParam<SimdLevel> {
 protected:
  void SetUp() override {
    if (GetParam() > max_supported_simd_level()) GTEST_SKIP() << "this CPU cannot run " << simd_level_name(GetParam());
    set_simd_level(GetParam());
    ASSERT_EQ(simd_level(), GetParam());
  }
  void TearDown() override { set_simd_level(max_supported_simd_level()); }
};

TEST_P(KvQuantsTest, QuantizeRowIsGgmlsReferenceAndClose) {
  for (DType t : kTypes) {
    const std::vector<float> x = random_floats(256, -3.0f, 3.0f, 5);
    std::vector<std::uint8_t> a(row_bytes(t, 256)), b(row_bytes(t, 256));
    kv_quantize_row(t, x.data(), a.data(), 256);
    quantize_row_ref(t, x.data(), b.data(), 256);
    EXPECT_EQ(a, b) << dtype_name(t);
    std::vector<float> y(256);
    dequantize_row(t, a.data(), y.data(), 256);
    // The step is max|x| / 127 (q8_0), / 8 (q4_0) or range / 15 (q4_1); an element is off by
    // at most about half a step (q4_0's extreme side by a whole one).
    const float step = t == DType::Q8_0 ? 3.0f / 127 : t == DType::Q4_0 ? 3.0f / 8 : 6.0f / 15;
    for (int i = 0; i < 256; ++i) ASSERT_NEAR(y[i], x[i], step * 1.01f) << dtype_name(t) << " i=" << i;
  }
}

TEST_P(KvQuantsTest, ScoresMatchReference) {
  for (DType t : kTypes)
    for (std::int64_t hd : kHeadDims)
      for (std::int64_t n_q : kGroups)
        for (std::int64_t n_rows : kRows) {
          const CachedRows k(t, n_rows, hd, static_cast<std::uint32_t>(hd + n_rows));
          const std::int64_t q_stride = hd * n_q + 5;  // the query heads of a token are q_dim apart
          const std::vector<float> q = random_floats(q_stride * n_q, -1.5f, 1.5f, static_cast<std::uint32_t>(n_q));
          const std::int64_t s_stride = n_rows + 3;
          const float scale = 0.125f;
          std::vector<float> s(static_cast<std::size_t>(s_stride * n_q), 777.0f), s_ref = s;
          attn_scores_q(t, k.head(0), k.row_bytes, n_rows, q.data(), q_stride, n_q, hd, scale, s.data(), s_stride);
          ref::attn_scores_q(t, k.head(0), k.row_bytes, n_rows, q.data(), q_stride, n_q, hd, scale, s_ref.data(),
                             s_stride);
          for (std::int64_t g = 0; g < n_q; ++g)
            for (std::int64_t r = 0; r < s_stride; ++r) {
              const std::size_t i = static_cast<std::size_t>(g * s_stride + r);
              if (r >= n_rows) {
                ASSERT_EQ(s[i], 777.0f) << "wrote outside the rows";
                continue;
              }
              // Float accumulation of hd products against the double reference.
              double magnitude = 0;
              for (std::int64_t d = 0; d < hd; ++d)
                magnitude += std::fabs(k.dequantized[static_cast<std::size_t>(r * hd + d)] * q[static_cast<std::size_t>(g * q_stride + d)]);
              ASSERT_NEAR(s[i], s_ref[i], 1e-6 * scale * magnitude + 1e-7)
                  << dtype_name(t) << " hd=" << hd << " n_q=" << n_q << " rows=" << n_rows << " g=" << g << " r=" << r;
            }
          // The reference itself is the dot product with the stored values.
          double exact = 0;
          for (std::int64_t d = 0; d < hd; ++d) exact += static_cast<double>(k.dequantized[static_cast<std::size_t>(d)]) * q[static_cast<std::size_t>(d)];
          ASSERT_NEAR(s_ref[0], scale * exact, 1e-5 * std::fabs(scale * exact) + 1e-6);
        }
}

TEST_P(KvQuantsTest, ValuesMatchReference) {
  for (DType t : kTypes)
    for (std::int64_t hd : kHeadDims)
      for (std::int64_t n_q : kGroups)
        for (std::int64_t n_rows : kRows) {
          const CachedRows v(t, n_rows, hd, static_cast<std::uint32_t>(3 * hd + n_rows));
          const std::int64_t p_stride = n_rows + 2;
          const std::vector<float> p = random_floats(p_stride * n_q, 0.0f, 1.0f, static_cast<std::uint32_t>(7 * n_q));
          const std::int64_t out_stride = hd * n_q + 3;
          // The output accumulates: it starts from earlier blocks' sums.
          std::vector<float> out = random_floats(out_stride * n_q, -1.0f, 1.0f, 99), out_ref = out;
          attn_values_q(t, v.head(0), v.row_bytes, n_rows, p.data(), p_stride, n_q, hd, out.data(), out_stride);
          ref::attn_values_q(t, v.head(0), v.row_bytes, n_rows, p.data(), p_stride, n_q, hd, out_ref.data(),
                             out_stride);
          for (std::int64_t g = 0; g < n_q; ++g)
            for (std::int64_t i = 0; i < out_stride; ++i) {
              const std::size_t at = static_cast<std::size_t>(g * out_stride + i);
              if (i >= hd) {
                ASSERT_EQ(out[at], out_ref[at]) << "wrote outside the head";
                continue;
              }
              double magnitude = 1.0;  // the starting value
              for (std::int64_t r = 0; r < n_rows; ++r)
                magnitude += std::fabs(p[static_cast<std::size_t>(g * p_stride + r)] * v.dequantized[static_cast<std::size_t>(r * hd + i)]);
              ASSERT_NEAR(out[at], out_ref[at], 1e-6 * magnitude)
                  << dtype_name(t) << " hd=" << hd << " n_q=" << n_q << " rows=" << n_rows << " g=" << g << " i=" << i;
            }
        }
}

INSTANTIATE_TEST_SUITE_P(Levels, KvQuantsTest, ::testing::Values(SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512),
                         [](const ::testing::TestParamInfo<SimdLevel>& info) {
                           return std::string(simd_level_name(info.param));
                         });

}  // namespace
}  // namespace kiln::kernels
