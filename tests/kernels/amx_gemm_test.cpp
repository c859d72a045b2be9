// Checks the AMX prefill path (kernels/amx_gemm.h) against double-precision references, for
// every weight type it supports, over activation counts and weight row ranges that are not
// multiples of a tile. Everything skips visibly when this CPU or OS has no AMX.
//
// Tolerances. The kernel rounds each dequantized weight w to bf16 (8 significant bits, round
// to nearest even: |bf16(w) - w| <= 2^-8 |w|) and sums the exact bf16 x bf16 products in f32.
//   * Against the dequantized weights themselves (what the model means), the error of y[m][n]
//     is at most 2^-8 S + K 2^-24 S, where S = sum_k |w[n][k] a[m][k]|.
//   * Against the bf16-rounded weights (what the kernel multiplies), only the f32 summation
//     differs: at most K 2^-24 S. The decoders compute each weight in f32 with their own
//     operation order (an FMA for d * q + m), so a weight can land on the other bf16 neighbour
//     of a tie; 4 such products (4 * 2^-8 * max_k |w a|) are allowed on top.
#include "kernels/amx_gemm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "kernels/matmul.h"

namespace kiln::kernels {
namespace {

constexpr float kSentinel = -12345.0f;

std::vector<float> random_floats(std::int64_t n, float lo, float hi, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

bool is_k_quant(DType t) { return t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K; }

// N weight rows of K elements in the stored type, and the same rows dequantized to floats.
struct Weights {
  std::vector<std::uint8_t> stored;  // N rows of row_bytes(type, K)
  std::size_t stride = 0;
  std::vector<float> dequantized;  // (N, K)
};

// Fills `out` for the type; returns false (with a reason) when the type's quantizer is not
// implemented yet in this checkout.
bool make_weights(DType type, std::int64_t N, std::int64_t K, std::uint32_t seed, Weights& out, std::string& why) {
  // Rows with different magnitudes, so that per-block scales differ across the panel.
  std::vector<float> f = random_floats(N * K, -1.0f, 1.0f, seed);
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t k = 0; k < K; ++k) f[n * K + k] *= 0.05f + 0.1f * static_cast<float>(n % 7);
  out.stride = row_bytes(type, K);
  out.stored.assign(out.stride * static_cast<std::size_t>(N), 0);
  out.dequantized.assign(static_cast<std::size_t>(N * K), 0.0f);
  for (std::int64_t n = 0; n < N; ++n) {
    const float* src = f.data() + n * K;
    std::uint8_t* dst = out.stored.data() + n * out.stride;
    float* deq = out.dequantized.data() + n * K;
    if (type == DType::F32) {
      std::memcpy(dst, src, K * sizeof(float));
      std::copy(src, src + K, deq);
    } else if (type == DType::F16 || type == DType::BF16) {
      auto* h = reinterpret_cast<std::uint16_t*>(dst);
      for (std::int64_t k = 0; k < K; ++k) {
        h[k] = type == DType::F16 ? f32_to_f16(src[k]) : f32_to_bf16(src[k]);
        deq[k] = type == DType::F16 ? f16_to_f32(h[k]) : bf16_to_f32(h[k]);
      }
    } else {
      try {
        quantize_row_ref(type, src, dst, K);
        dequantize_row(type, dst, deq, K);
      } catch (const Error& e) {
        why = e.what();
        return false;
      }
    }
  }
  return true;
}

std::vector<std::uint16_t> to_bf16(const std::vector<float>& x) {
  std::vector<std::uint16_t> b(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) b[i] = f32_to_bf16(x[i]);
  return b;
}

class AmxGemmTest : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    if (!amx_available()) GTEST_SKIP() << "AMX-BF16 is not available on this CPU/OS (or KILN_AMX=0)";
  }
};

// Runs amx_gemm for rows [n_begin, n_end) of N weight rows and checks every output against
// both references, and that nothing outside the range was written.
void check_gemm(DType type, const Weights& wt, std::int64_t N, std::int64_t K, std::int64_t M, std::int64_t n_begin,
                std::int64_t n_end, std::uint32_t seed) {
  SCOPED_TRACE("type=" + std::string(dtype_name(type)) + " K=" + std::to_string(K) + " M=" + std::to_string(M) +
               " n=[" + std::to_string(n_begin) + "," + std::to_string(n_end) + ")");
  // Activation rows padded to lda > K, to check that the kernel honours lda.
  const std::int64_t lda = K + 32;
  std::vector<float> x = random_floats(M * K, -2.0f, 2.0f, seed);
  std::vector<std::uint16_t> a(static_cast<std::size_t>(M * lda), 0x7fc0);  // NaN padding must not leak
  std::vector<std::uint16_t> a_packed(static_cast<std::size_t>(M * K));
  amx_convert_activations(x.data(), M, K, a_packed.data());
  for (std::int64_t m = 0; m < M; ++m) std::copy_n(a_packed.data() + m * K, K, a.data() + m * lda);

  const std::int64_t ldy = N + 3;
  std::vector<float> y(static_cast<std::size_t>(M * ldy), kSentinel);
  amx_gemm(type, K, wt.stored.data(), wt.stride, a.data(), lda, M, n_begin, n_end, y.data(), ldy);

  const std::vector<std::uint16_t> w_bf16 = to_bf16(wt.dequantized);
  int reported = 0;
  for (std::int64_t m = 0; m < M; ++m) {
    for (std::int64_t n = 0; n < ldy; ++n) {
      const float got = y[m * ldy + n];
      if (n < n_begin || n >= n_end) {
        ASSERT_EQ(got, kSentinel) << "wrote outside the weight row range at m=" << m << " n=" << n;
        continue;
      }
      double exact = 0.0, rounded = 0.0, magnitude = 0.0, largest = 0.0;
      for (std::int64_t k = 0; k < K; ++k) {
        const double av = bf16_to_f32(a_packed[m * K + k]);
        const double wv = wt.dequantized[n * K + k];
        exact += wv * av;
        rounded += static_cast<double>(bf16_to_f32(w_bf16[n * K + k])) * av;
        magnitude += std::fabs(wv * av);
        largest = std::max(largest, std::fabs(wv * av));
      }
      const double f32_sum_error = static_cast<double>(K) * std::ldexp(1.0, -24) * magnitude;
      const double tol_exact = std::ldexp(1.0, -8) * magnitude + f32_sum_error + 1e-30;
      const double tol_rounded = f32_sum_error + 4 * std::ldexp(1.0, -8) * largest + 1e-30;
      if ((std::fabs(got - exact) > tol_exact || std::fabs(got - rounded) > tol_rounded) && reported++ < 5) {
        ADD_FAILURE() << "m=" << m << " n=" << n << " got " << got << ", dequantized weights give " << exact << " (tol "
                      << tol_exact << "), bf16 weights give " << rounded << " (tol " << tol_rounded << ")";
      }
    }
  }
  ASSERT_EQ(reported, 0) << reported << " outputs out of tolerance";
}

TEST_P(AmxGemmTest, MatchesDoublePrecisionReference) {
  const DType type = GetParam();
  ASSERT_TRUE(amx_supports(type)) << dtype_name(type) << " should have an AMX decoder";
  const std::vector<std::int64_t> ks =
      is_k_quant(type) ? std::vector<std::int64_t>{256, 768} : std::vector<std::int64_t>{32, 96, 288, 1024};
  constexpr std::int64_t N = 80;
  // Ranges not starting at 0 and not multiples of 16, one of a single row, one spanning all.
  const std::pair<std::int64_t, std::int64_t> ranges[] = {{3, 4}, {5, 50}, {16, 48}, {0, N}, {7, 77}};
  const std::int64_t ms[] = {1, 15, 16, 17, 33, 128};
  std::uint32_t seed = 100;
  for (std::int64_t K : ks) {
    Weights wt;
    std::string why;
    if (!make_weights(type, N, K, seed++, wt, why))
      GTEST_SKIP() << dtype_name(type) << " quantizer not available in this checkout: " << why;
    for (std::int64_t M : ms) {
      for (auto [n_begin, n_end] : ranges) {
        // The full sweep for the small K; the large K only with a few shapes to bound the time.
        if (K >= 768 && M != 17 && M != 128) continue;
        check_gemm(type, wt, N, K, M, n_begin, n_end, seed++);
        if (HasFatalFailure()) return;
      }
    }
  }
}

// With K = 4096 the kernel decodes 96 weight rows per chunk and multiplies 64 activation rows
// per block (see block_sizes in amx_gemm_amx.cpp); these shapes cross both boundaries, with
// ragged ends on each side.
TEST_P(AmxGemmTest, MatchesReferenceAcrossCacheBlocks) {
  const DType type = GetParam();
  constexpr std::int64_t N = 200, K = 4096, M = 150;
  Weights wt;
  std::string why;
  if (!make_weights(type, N, K, 11, wt, why))
    GTEST_SKIP() << dtype_name(type) << " quantizer not available in this checkout: " << why;
  check_gemm(type, wt, N, K, M, 5, 197, 12);
}

// Two threads on disjoint halves of the rows, at once: the scratch and tile configuration are
// per thread, so the result must equal the single-threaded one exactly.
TEST_P(AmxGemmTest, ConcurrentCallsOnDisjointRangesMatchOneCall) {
  const DType type = GetParam();
  constexpr std::int64_t N = 96, K = 512, M = 40;
  Weights wt;
  std::string why;
  if (!make_weights(type, N, K, 7, wt, why))
    GTEST_SKIP() << dtype_name(type) << " quantizer not available in this checkout: " << why;
  std::vector<std::uint16_t> a = to_bf16(random_floats(M * K, -1.0f, 1.0f, 8));
  std::vector<float> y_one(M * N, kSentinel), y_two(M * N, kSentinel);
  amx_gemm(type, K, wt.stored.data(), wt.stride, a.data(), K, M, 0, N, y_one.data(), N);
  auto run = [&](std::int64_t n0, std::int64_t n1) {
    for (int rep = 0; rep < 20; ++rep)
      amx_gemm(type, K, wt.stored.data(), wt.stride, a.data(), K, M, n0, n1, y_two.data(), N);
  };
  std::thread t1(run, 0, 37), t2(run, 37, N);
  t1.join();
  t2.join();
  for (std::int64_t i = 0; i < M * N; ++i) ASSERT_EQ(y_one[i], y_two[i]) << "i=" << i;
}

INSTANTIATE_TEST_SUITE_P(AllTypes, AmxGemmTest,
                         ::testing::Values(DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1,
                                           DType::Q5_0, DType::Q5_1, DType::Q4_K, DType::Q5_K, DType::Q6_K),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(dtype_name(info.param));
                         });

TEST(AmxConvertActivations, MatchesScalarBf16RoundingBitForBit) {
  if (!amx_available()) GTEST_SKIP() << "AMX-BF16 is not available on this CPU/OS (or KILN_AMX=0)";
  // Random values plus the cases that need care: ties (both parities), denormals, infinities,
  // NaNs, zeros, and the largest finite float (which rounds to infinity).
  std::vector<float> x = random_floats(16 * 37 - 5, -100.0f, 100.0f, 3);
  const std::uint32_t specials[] = {0x3f808000u, 0x3f818000u, 0x3f80ffffu, 0x00000001u, 0x807fffffu,
                                    0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u, 0xffbfffffu,
                                    0x00000000u, 0x80000000u, 0x7f7fffffu, 0x00ff8000u};
  for (std::size_t i = 0; i < std::size(specials); ++i) x[i * 7] = std::bit_cast<float>(specials[i]);
  const std::int64_t K = 37, M = static_cast<std::int64_t>(x.size()) / K;
  x.resize(static_cast<std::size_t>(M * K));
  std::vector<std::uint16_t> got(x.size() + 1, 0xABCD);
  amx_convert_activations(x.data(), M, K, got.data());
  for (std::size_t i = 0; i < x.size(); ++i)
    ASSERT_EQ(got[i], f32_to_bf16(x[i])) << "i=" << i << " bits=" << std::bit_cast<std::uint32_t>(x[i]);
  EXPECT_EQ(got[x.size()], 0xABCD) << "wrote past the end";
}

TEST(AmxGemmSupport, RejectsTypesWithoutDecoderAndBadK) {
  if (!amx_available()) GTEST_SKIP() << "AMX-BF16 is not available on this CPU/OS (or KILN_AMX=0)";
  EXPECT_FALSE(amx_supports(DType::Q2_K));
  EXPECT_FALSE(amx_supports(DType::Q8_K));
  EXPECT_FALSE(amx_supports(DType::I32));
  std::vector<std::uint8_t> w(4096, 0);
  std::vector<std::uint16_t> a(512, 0);
  std::vector<float> y(64, 0.0f);
  EXPECT_THROW(amx_gemm(DType::Q2_K, 256, w.data(), 84, a.data(), 256, 1, 0, 1, y.data(), 1), Error);
  EXPECT_THROW(amx_gemm(DType::Q4_0, 48, w.data(), 27, a.data(), 48, 1, 0, 1, y.data(), 1), Error);
  EXPECT_THROW(amx_gemm(DType::Q4_K, 32, w.data(), 144, a.data(), 32, 1, 0, 1, y.data(), 1), Error);
}

}  // namespace
}  // namespace kiln::kernels
