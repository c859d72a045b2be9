// kiln's importance-weighted quantizers against ggml's own (ggml_quantize_chunk with an imatrix,
// from the npm peer's libggml-base): the same rows and importance give the same bytes, for every
// type whose ggml quantizer uses the importance, on rows with outliers, zeros and tiny values.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "kernels/matmul.h"
#include "kernels/weighted_quants.h"

namespace kiln {
namespace {

using QuantizeChunkFn = std::size_t (*)(int type, const float* src, void* dst, std::int64_t start, std::int64_t nrows,
                                        std::int64_t n_per_row, const float* imatrix);

QuantizeChunkFn ggml_quantize_chunk() {
  static QuantizeChunkFn fn = []() -> QuantizeChunkFn {
    const char* path = std::getenv("KILN_GGML_BASE_LIB");
    if (path == nullptr) return nullptr;
    void* lib = ::dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) return nullptr;
    return reinterpret_cast<QuantizeChunkFn>(::dlsym(lib, "ggml_quantize_chunk"));
  }();
  return fn;
}

// Rows of a plausible weight matrix: normal values, a few outliers, a zero block, a tiny block.
std::vector<float> make_rows(std::int64_t rows, std::int64_t k, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> x(static_cast<std::size_t>(rows * k));
  for (float& v : x) v = normal(rng);
  for (std::size_t i = 5; i < x.size(); i += 97) x[i] *= 25.0f;
  if (rows > 2) {
    for (std::int64_t j = 0; j < 32; ++j) x[static_cast<std::size_t>(k + j)] = 0.0f;         // row 1: a zero block
    for (std::int64_t j = 32; j < 64; ++j) x[static_cast<std::size_t>(2 * k + j)] *= 1e-6f;  // row 2: a tiny block
  }
  return x;
}

// An importance row like an imatrix's: positive, spread over orders of magnitude.
std::vector<float> make_importance(std::int64_t k, unsigned seed) {
  std::mt19937 rng(seed);
  std::lognormal_distribution<float> logn(0.0f, 1.5f);
  std::vector<float> w(static_cast<std::size_t>(k));
  for (float& v : w) v = logn(rng);
  w[3] = 0.0f;  // a channel that never fired
  return w;
}

TEST(ImatrixQuantsVsGgml, SameBytesAsGgmlQuantizeChunkWithImatrix) {
  QuantizeChunkFn chunk = ggml_quantize_chunk();
  if (chunk == nullptr) GTEST_SKIP() << "libggml-base from node-llama-cpp not found (KILN_GGML_BASE_LIB)";
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K,
                  DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    for (std::int64_t k : {256, 512, 1024}) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " k=" + std::to_string(k));
      const std::int64_t rows = 7;
      const std::vector<float> x = make_rows(rows, k, static_cast<unsigned>(k) + static_cast<unsigned>(t));
      const std::vector<float> qw = make_importance(k, 11);
      const std::size_t row_size = row_bytes(t, k);
      std::vector<std::uint8_t> ours(row_size * rows), theirs(row_size * rows);
      for (std::int64_t r = 0; r < rows; ++r)
        kernels::quantize_row_weighted(t, x.data() + r * k, ours.data() + r * row_size, k, qw.data());
      ASSERT_EQ(chunk(static_cast<int>(t), x.data(), theirs.data(), 0, rows, k, qw.data()), row_size * rows);
      for (std::int64_t r = 0; r < rows; ++r)
        EXPECT_EQ(0, std::memcmp(ours.data() + r * row_size, theirs.data() + r * row_size, row_size)) << "row " << r;
    }
  }
}

TEST(ImatrixQuantsVsGgml, ImportanceChangesTheBytes) {
  // Guards against a weighted path that silently falls back to the reference quantizer.
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q2_K, DType::Q3_K, DType::Q4_K,
                  DType::Q5_K, DType::Q6_K}) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    const std::int64_t k = 512;
    const std::vector<float> x = make_rows(1, k, 3);
    const std::vector<float> qw = make_importance(k, 5);
    std::vector<std::uint8_t> weighted(row_bytes(t, k)), plain(row_bytes(t, k));
    kernels::quantize_row_weighted(t, x.data(), weighted.data(), k, qw.data());
    kernels::quantize_row_ref(t, x.data(), plain.data(), k);
    EXPECT_NE(weighted, plain);
  }
}

}  // namespace
}  // namespace kiln
