// The K-quant family: block sizes, reference quantizers (error bounds, hand-derived exact
// bytes, determinism, and optionally byte-for-byte against ggml itself), and every SIMD path
// against the scalar reference over odd sizes, row ranges and misaligned rows.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/dtype.h"
#include "core/half.h"
#include "kernels/blocks.h"
#include "kernels/matmul.h"

namespace kiln::kernels {
namespace {

const DType kWeightTypes[] = {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K};

std::vector<float> gaussian_row(std::int64_t k, std::uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> x(static_cast<std::size_t>(k));
  for (float& v : x) v = dist(rng);
  return x;
}

// Rows that reach the corner cases of the scale searches: all-positive, all-negative, one
// outlier per sub-block, all-zero sub-blocks, tiny magnitudes, a constant run.
std::vector<float> awkward_row(std::int64_t k, std::uint32_t seed) {
  std::vector<float> x = gaussian_row(k, seed);
  for (std::int64_t i = 0; i < k; ++i) {
    const std::int64_t block = i / QK_K, pos = i % QK_K;
    switch (block % 6) {
      case 0:
        x[i] = std::fabs(x[i]) + 0.5f;
        break;
      case 1:
        x[i] = -std::fabs(x[i]);
        break;
      case 2:
        if (pos % 32 == 5) x[i] *= 40.0f;
        break;
      case 3:
        if (pos < 64 || (pos >= 160 && pos < 176)) x[i] = 0.0f;
        break;
      case 4:
        x[i] *= 1e-6f;
        break;
      case 5:
        if (pos >= 100) x[i] = 0.75f;
        break;
    }
  }
  return x;
}

std::vector<std::uint8_t> quantize(DType t, const std::vector<float>& x) {
  std::vector<std::uint8_t> q(row_bytes(t, static_cast<std::int64_t>(x.size())));
  quantize_row_ref(t, x.data(), q.data(), static_cast<std::int64_t>(x.size()));
  return q;
}

std::vector<float> dequantize(DType t, const std::vector<std::uint8_t>& q, std::int64_t k) {
  std::vector<float> y(static_cast<std::size_t>(k));
  dequantize_row(t, q.data(), y.data(), k);
  return y;
}

double relative_rmse(const std::vector<float>& x, const std::vector<float>& y) {
  double err = 0, ref = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    err += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    ref += double(x[i]) * x[i];
  }
  return std::sqrt(err / ref);
}

TEST(KQuants, BlockSizesMatchGgml) {
  EXPECT_EQ(sizeof(block_q2_K), 84u);
  EXPECT_EQ(sizeof(block_q3_K), 110u);
  EXPECT_EQ(sizeof(block_q4_K), 144u);
  EXPECT_EQ(sizeof(block_q5_K), 176u);
  EXPECT_EQ(sizeof(block_q6_K), 210u);
  EXPECT_EQ(sizeof(block_q8_K), 292u);
  const std::size_t sizes[] = {sizeof(block_q2_K), sizeof(block_q3_K), sizeof(block_q4_K), sizeof(block_q5_K),
                               sizeof(block_q6_K)};
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(traits(kWeightTypes[i]).block_size, QK_K);
    EXPECT_EQ(traits(kWeightTypes[i]).block_bytes, sizes[i]);
    EXPECT_TRUE(is_supported_weight_type(kWeightTypes[i]));
    EXPECT_EQ(weight_kernels(kWeightTypes[i], SimdLevel::Scalar).act_type, DType::Q8_K);
  }
  EXPECT_EQ(traits(DType::Q8_K).block_bytes, sizeof(block_q8_K));
}

// Relative RMS error of quantize -> dequantize on Gaussian rows. The bounds sit ~15% above what
// the ggml algorithms reach (measured: q2_K 0.299, q3_K 0.153, q4_K 0.0730, q5_K 0.0362,
// q6_K 0.0178, q8_K 0.0072), so a weaker search or a packing slip fails.
TEST(KQuants, RoundTripErrorWithinBounds) {
  const struct {
    DType type;
    double bound;
  } cases[] = {{DType::Q2_K, 0.345}, {DType::Q3_K, 0.176},  {DType::Q4_K, 0.084},
               {DType::Q5_K, 0.042}, {DType::Q6_K, 0.0205}, {DType::Q8_K, 0.0083}};
  const std::int64_t k = 16 * QK_K;
  const std::vector<float> x = gaussian_row(k, 1234);
  for (const auto& c : cases) {
    const double rmse = relative_rmse(x, dequantize(c.type, quantize(c.type, x), k));
    EXPECT_LT(rmse, c.bound) << dtype_name(c.type);
    EXPECT_GT(rmse, c.bound / 4) << dtype_name(c.type) << ": suspiciously exact";
  }
  // Awkward rows stay finite and within a few times the Gaussian error (their outliers cost
  // q8_K, with one scale per 256 values, the most: 3.5 times).
  const std::vector<float> w = awkward_row(12 * QK_K, 99);
  for (const auto& c : cases) {
    const std::vector<float> y = dequantize(c.type, quantize(c.type, w), 12 * QK_K);
    for (float v : y) ASSERT_TRUE(std::isfinite(v)) << dtype_name(c.type);
    EXPECT_LT(relative_rmse(w, y), 4 * c.bound) << dtype_name(c.type);
  }
}

TEST(KQuants, ZeroRowQuantizesToZeroBytes) {
  const std::vector<float> zeros(2 * QK_K, 0.0f);
  for (DType t : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K}) {
    const std::vector<std::uint8_t> q = quantize(t, zeros);
    for (std::size_t i = 0; i < q.size(); ++i) ASSERT_EQ(q[i], 0) << dtype_name(t) << " byte " << i;
    for (float v : dequantize(t, q, 2 * QK_K)) ASSERT_EQ(v, 0.0f) << dtype_name(t);
  }
}

// A row of ones, derived by hand from ggml's algorithm: each sub-block fits scale 1/15 with min
// 0 (every regression candidate has all-equal quants, so D = 0 and the start is kept); the
// scales quantize to 63 and the mins to 0; every quant is 15.
TEST(KQuants, Q4KOfOnesIsHandDerivable) {
  const std::vector<float> ones(QK_K, 1.0f);
  const std::vector<std::uint8_t> q = quantize(DType::Q4_K, ones);
  block_q4_K b;
  std::memcpy(&b, q.data(), sizeof(b));
  EXPECT_EQ(b.d, f32_to_f16(1.0f / 15.0f / 63.0f));
  EXPECT_EQ(b.dmin, 0);
  const std::uint8_t scales[12] = {0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0x0F, 0x0F, 0x0F, 0x0F};
  for (int i = 0; i < 12; ++i) EXPECT_EQ(b.scales[i], scales[i]) << i;
  for (int i = 0; i < QK_K / 2; ++i) ASSERT_EQ(b.qs[i], 0xFF) << i;
}

// Ones in q6_K: every group fits scale -1/32 (quant -32; the candidates at -31 tie exactly and
// do not replace it), the block scale is 2^-12 and every group scale -128, all quants 0.
TEST(KQuants, Q6KOfOnesIsHandDerivable) {
  const std::vector<float> ones(QK_K, 1.0f);
  const std::vector<std::uint8_t> q = quantize(DType::Q6_K, ones);
  block_q6_K b;
  std::memcpy(&b, q.data(), sizeof(b));
  EXPECT_EQ(b.d, 0x0C00);  // 2^-12 in half precision
  for (int i = 0; i < 16; ++i) EXPECT_EQ(b.scales[i], -128) << i;
  for (int i = 0; i < QK_K / 2; ++i) ASSERT_EQ(b.ql[i], 0) << i;
  for (int i = 0; i < QK_K / 4; ++i) ASSERT_EQ(b.qh[i], 0) << i;
  for (float v : dequantize(DType::Q6_K, q, QK_K)) ASSERT_EQ(v, 1.0f);
}

// q8_K scales by the first value of largest magnitude, here -2 (not the later +2), so the
// scale -127 / -2 is positive and the quants keep their signs.
TEST(KQuants, Q8KUsesFirstLargestValue) {
  std::vector<float> x(QK_K, 0.5f);
  x[3] = -2.0f;
  x[10] = 2.0f;
  const std::vector<std::uint8_t> q = quantize(DType::Q8_K, x);
  block_q8_K b;
  std::memcpy(&b, q.data(), sizeof(b));
  EXPECT_EQ(b.d, 1.0f / 63.5f);
  EXPECT_EQ(b.qs[3], -127);
  EXPECT_EQ(b.qs[10], 127);
  EXPECT_EQ(b.qs[0], 32);  // nearest_int(31.75)
  EXPECT_EQ(b.bsums[0], 14 * 32 - 127 + 127);
}

TEST(KQuants, QuantizationIsDeterministicAndBlockwise) {
  const std::vector<float> x = awkward_row(6 * QK_K, 5);
  for (DType t : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K}) {
    const std::vector<std::uint8_t> whole = quantize(t, x);
    EXPECT_EQ(whole, quantize(t, x)) << dtype_name(t);
    const std::size_t bb = traits(t).block_bytes;
    for (int b = 0; b < 6; ++b) {
      const std::vector<float> part(x.begin() + b * QK_K, x.begin() + (b + 1) * QK_K);
      const std::vector<std::uint8_t> qb = quantize(t, part);
      EXPECT_EQ(0, std::memcmp(qb.data(), whole.data() + b * bb, bb)) << dtype_name(t) << " block " << b;
    }
  }
}

// ---- byte-for-byte against ggml, when a ggml build is at hand ------------------------------
// KILN_GGML_BASE_LIB: path of libggml-base.so (quantizers, dequantizers); KILN_GGML_CPU_LIB: a
// ggml CPU backend built without FMA (e.g. libggml-cpu-x64.so) for the generic dot products.
// node-llama-cpp's prebuilt binaries have both (see ../shared/data/README.md).
void* open_env_library(const char* env) {
  const char* path = std::getenv(env);
  if (path == nullptr || *path == '\0') return nullptr;
  void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  EXPECT_NE(lib, nullptr) << env << "=" << path << ": " << dlerror();
  return lib;
}

TEST(KQuantsGgml, QuantizersAndDotsAreBitExact) {
  void* base = open_env_library("KILN_GGML_BASE_LIB");
  if (base == nullptr) GTEST_SKIP() << "set KILN_GGML_BASE_LIB to a libggml-base.so to compare with ggml";
  using QuantizeFn = void (*)(const float*, void*, std::int64_t);
  using DequantizeFn = void (*)(const void*, float*, std::int64_t);
  const struct {
    DType type;
    const char* suffix;
  } types[] = {{DType::Q2_K, "q2_K"}, {DType::Q3_K, "q3_K"}, {DType::Q4_K, "q4_K"},
               {DType::Q5_K, "q5_K"}, {DType::Q6_K, "q6_K"}, {DType::Q8_K, "q8_K"}};
  const std::int64_t k = 24 * QK_K;
  std::vector<std::vector<float>> rows = {gaussian_row(k, 1), gaussian_row(k, 2, 0.02f), awkward_row(k, 3),
                                          gaussian_row(k, 4, 300.0f)};
  for (const auto& t : types) {
    auto quantize_ggml =
        reinterpret_cast<QuantizeFn>(dlsym(base, (std::string("quantize_row_") + t.suffix + "_ref").c_str()));
    auto dequantize_ggml =
        reinterpret_cast<DequantizeFn>(dlsym(base, (std::string("dequantize_row_") + t.suffix).c_str()));
    ASSERT_NE(quantize_ggml, nullptr) << t.suffix;
    ASSERT_NE(dequantize_ggml, nullptr) << t.suffix;
    for (std::size_t r = 0; r < rows.size(); ++r) {
      const std::vector<std::uint8_t> ours = quantize(t.type, rows[r]);
      std::vector<std::uint8_t> theirs(ours.size());
      quantize_ggml(rows[r].data(), theirs.data(), k);
      // (ggml leaves the bsums of an all-zero q8_K block unwritten; these rows have none.)
      ASSERT_EQ(ours, theirs) << t.suffix << " row " << r;
      std::vector<float> y_theirs(static_cast<std::size_t>(k));
      dequantize_ggml(theirs.data(), y_theirs.data(), k);
      const std::vector<float> y_ours = dequantize(t.type, ours, k);
      ASSERT_EQ(0, std::memcmp(y_ours.data(), y_theirs.data(), sizeof(float) * k)) << t.suffix << " row " << r;
    }
  }
  void* cpu = open_env_library("KILN_GGML_CPU_LIB");
  if (cpu == nullptr) GTEST_SKIP() << "set KILN_GGML_CPU_LIB to compare the scalar dot products with ggml's";
  using GgmlDotFn = void (*)(int, float*, std::size_t, const void*, std::size_t, const void*, std::size_t, int);
  // ggml's CPU backend converts f16 scales through a table that ggml_cpu_init fills.
  auto cpu_init = reinterpret_cast<void (*)()>(dlsym(cpu, "ggml_cpu_init"));
  ASSERT_NE(cpu_init, nullptr);
  cpu_init();
  const std::vector<std::uint8_t> act = quantize(DType::Q8_K, rows[0]);
  for (const auto& t : types) {
    if (t.type == DType::Q8_K) continue;
    auto dot_ggml =
        reinterpret_cast<GgmlDotFn>(dlsym(cpu, (std::string("ggml_vec_dot_") + t.suffix + "_q8_K_generic").c_str()));
    ASSERT_NE(dot_ggml, nullptr) << t.suffix;
    for (std::size_t r = 1; r < rows.size(); ++r) {
      const std::vector<std::uint8_t> w = quantize(t.type, rows[r]);
      float theirs = 0;
      dot_ggml(static_cast<int>(k), &theirs, 0, w.data(), 0, act.data(), 0, 1);
      const float ours = weight_kernels(t.type, SimdLevel::Scalar).vec_dot(k, w.data(), act.data());
      EXPECT_EQ(ours, theirs) << t.suffix << " row " << r;
    }
  }
}

// ---- SIMD paths against the scalar reference --------------------------------------------------

std::vector<SimdLevel> fast_levels() {
  std::vector<SimdLevel> levels;
  if (max_supported_simd_level() >= SimdLevel::Avx2) levels.push_back(SimdLevel::Avx2);
  if (max_supported_simd_level() >= SimdLevel::Avx512) levels.push_back(SimdLevel::Avx512);
  return levels;
}

// Bytes at a chosen misalignment: data() + offset is where the rows start. Offsets keep the
// blocks' own alignment (2 bytes for the f16 scales of weight blocks, 4 for q8_K's float), as
// GGUF tensors and kiln's activation buffers always do, and are otherwise off any SIMD width.
constexpr std::size_t kWeightAlign = alignof(block_q4_K), kActAlign = alignof(block_q8_K);
static_assert(alignof(block_q2_K) == kWeightAlign && alignof(block_q3_K) == kWeightAlign &&
              alignof(block_q5_K) == kWeightAlign && alignof(block_q6_K) == kWeightAlign);
struct MisalignedBuffer {
  std::vector<std::uint8_t> storage;
  std::size_t offset;
  MisalignedBuffer(std::size_t bytes, std::size_t misalign) : storage(bytes + 256), offset(0) {
    const auto base = reinterpret_cast<std::uintptr_t>(storage.data());
    offset = (64 - base % 64) % 64 + misalign;
  }
  std::uint8_t* data() { return storage.data() + offset; }
};

// Sum of |w_i * a_i| over the dequantized rows: the scale of the rounding a dot may carry.
double dot_magnitude(DType t, const std::uint8_t* w, const std::uint8_t* a, std::int64_t k) {
  std::vector<float> wf(static_cast<std::size_t>(k)), af(static_cast<std::size_t>(k));
  dequantize_row(t, w, wf.data(), k);
  dequantize_row(DType::Q8_K, a, af.data(), k);
  double s = 0;
  for (std::int64_t i = 0; i < k; ++i) s += std::fabs(double(wf[i]) * af[i]);
  return s;
}

TEST(KQuantsSimd, QuantizeActMatchesScalarBitForBit) {
  const std::int64_t k = 22 * QK_K;
  std::vector<float> x = awkward_row(k, 17);
  // Values that land exactly on .5 after scaling, to pin round-half-to-even: with max 127 the
  // scale is -1, so x = 2.5 must give -2 and 3.5 -4.
  for (int j = 0; j < QK_K; ++j) x[j] = (j % 4) + 0.5f;
  x[7] = 127.0f;
  for (int j = 2 * QK_K; j < 3 * QK_K; ++j) x[j] = 0.0f;  // an all-zero block
  const auto& ref = weight_kernels(DType::Q4_K, SimdLevel::Scalar);
  std::vector<std::uint8_t> expected(row_bytes(DType::Q8_K, k));
  ref.quantize_act(x.data(), expected.data(), k);
  block_q8_K first;
  std::memcpy(&first, expected.data(), sizeof(first));
  ASSERT_EQ(first.qs[2], -2);
  ASSERT_EQ(first.qs[3], -4);
  for (SimdLevel level : fast_levels()) {
    for (DType t : kWeightTypes) {
      const auto& fast = weight_kernels(t, level);
      ASSERT_EQ(fast.level, level) << dtype_name(t);
      std::vector<std::uint8_t> got(expected.size(), 0xAB);
      fast.quantize_act(x.data(), got.data(), k);
      ASSERT_EQ(got, expected) << dtype_name(t) << " at " << simd_level_name(level);
    }
  }
}

TEST(KQuantsSimd, VecDotMatchesScalar) {
  for (SimdLevel level : fast_levels()) {
    for (DType t : kWeightTypes) {
      const auto& ref = weight_kernels(t, SimdLevel::Scalar);
      const auto& fast = weight_kernels(t, level);
      ASSERT_EQ(fast.level, level) << dtype_name(t);
      ASSERT_EQ(ref.level, SimdLevel::Scalar);
      for (std::int64_t k : {256, 512, 2816, 5632}) {
        for (std::size_t misalign : {2u, 14u, 62u}) {
          const std::size_t wb = row_bytes(t, k), ab = row_bytes(DType::Q8_K, k);
          MisalignedBuffer w(wb, misalign * kWeightAlign / 2), a(ab, (64 - misalign) * kActAlign / 2);
          const std::vector<float> wx = awkward_row(k, static_cast<std::uint32_t>(k + misalign));
          const std::vector<float> ax = gaussian_row(k, static_cast<std::uint32_t>(3 * k + misalign));
          quantize_row_ref(t, wx.data(), w.data(), k);
          ref.quantize_act(ax.data(), a.data(), k);
          const float expected = ref.vec_dot(k, w.data(), a.data());
          const float got = fast.vec_dot(k, w.data(), a.data());
          const double tol = 2e-6 * dot_magnitude(t, w.data(), a.data(), k) + 1e-30;
          EXPECT_NEAR(got, expected, tol)
              << dtype_name(t) << " k=" << k << " misalign=" << misalign << " at " << simd_level_name(level);
        }
      }
    }
  }
}

TEST(KQuantsSimd, GemmMatchesScalar) {
  const std::int64_t n_rows = 23;
  for (SimdLevel level : fast_levels()) {
    for (DType t : kWeightTypes) {
      const auto& ref = weight_kernels(t, SimdLevel::Scalar);
      const auto& fast = weight_kernels(t, level);
      ASSERT_EQ(fast.level, level);
      for (std::int64_t k : {256, 512, 2816, 5632}) {
        // Rows padded by a few bytes beyond their size, and starting off every SIMD alignment.
        const std::size_t w_stride = row_bytes(t, k) + 3 * kWeightAlign;
        const std::size_t a_stride = row_bytes(DType::Q8_K, k) + 3 * kActAlign;
        const std::size_t misalign = static_cast<std::size_t>(k % 29) + 1;
        MisalignedBuffer w(w_stride * n_rows, misalign * kWeightAlign),
            a(a_stride * 17, (15 - misalign % 15) * kActAlign);
        for (std::int64_t n = 0; n < n_rows; ++n) {
          const std::vector<float> x = n % 3 == 0 ? awkward_row(k, static_cast<std::uint32_t>(n))
                                                  : gaussian_row(k, static_cast<std::uint32_t>(100 + n));
          quantize_row_ref(t, x.data(), w.data() + n * w_stride, k);
        }
        for (std::int64_t m = 0; m < 17; ++m) {
          const std::vector<float> x = gaussian_row(k, static_cast<std::uint32_t>(1000 + m), 0.1f);
          ref.quantize_act(x.data(), a.data() + m * a_stride, k);
        }
        for (std::int64_t M : {1, 2, 3, 5, 6, 7, 8, 17}) {
          const std::int64_t n_begin = 3, n_end = 3 + (M % 2 ? 19 : 12);
          const std::int64_t ldy = n_rows + 2;
          std::vector<float> expected(static_cast<std::size_t>(M * ldy), -7.0f), got(expected.size(), -7.0f);
          ref.gemm(k, w.data(), w_stride, a.data(), a_stride, M, n_begin, n_end, expected.data(), ldy);
          fast.gemm(k, w.data(), w_stride, a.data(), a_stride, M, n_begin, n_end, got.data(), ldy);
          for (std::int64_t m = 0; m < M; ++m) {
            for (std::int64_t n = 0; n < ldy; ++n) {
              const float e = expected[m * ldy + n], g = got[m * ldy + n];
              if (n < n_begin || n >= n_end) {
                ASSERT_EQ(g, -7.0f) << "gemm wrote outside its range: m=" << m << " n=" << n;
                continue;
              }
              const double tol = 2e-6 * dot_magnitude(t, w.data() + n * w_stride, a.data() + m * a_stride, k) + 1e-30;
              ASSERT_NEAR(g, e, tol) << dtype_name(t) << " at " << simd_level_name(level) << " k=" << k << " M=" << M
                                     << " m=" << m << " n=" << n;
            }
          }
        }
      }
    }
  }
}

// The gemm's reference is vec_dot itself: both agree exactly at every level.
TEST(KQuantsSimd, GemmOfOneRowEqualsVecDot) {
  const std::int64_t k = 2816;
  for (SimdLevel level : {SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512}) {
    if (level > max_supported_simd_level()) continue;
    for (DType t : kWeightTypes) {
      const auto& kern = weight_kernels(t, level);
      const std::vector<float> wx = gaussian_row(k, 8), ax = gaussian_row(k, 9);
      std::vector<std::uint8_t> w(row_bytes(t, k)), a(row_bytes(DType::Q8_K, k));
      quantize_row_ref(t, wx.data(), w.data(), k);
      kern.quantize_act(ax.data(), a.data(), k);
      float y = 0;
      kern.gemm(k, w.data(), w.size(), a.data(), a.size(), 1, 0, 1, &y, 1);
      EXPECT_EQ(y, kern.vec_dot(k, w.data(), a.data())) << dtype_name(t) << " at " << simd_level_name(level);
    }
  }
}

}  // namespace
}  // namespace kiln::kernels
