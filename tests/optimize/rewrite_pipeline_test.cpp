// The rewrite pipeline on small tensors: rows and columns picked and reordered, types converted
// (checked against converting each row by hand), copies left byte for byte, non-finite weights
// and maps outside the input refused naming tensor, row and column.
#include "optimize/rewrite_pipeline.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "kernels/matmul.h"
#include "kernels/weighted_quants.h"

namespace kiln::optimize {
namespace {

using ::testing::HasSubstr;

// (rows, cols) f32 values r * 100 + c.
struct Matrix {
  std::vector<float> v;
  SourceTensor t;
  Matrix(std::int64_t rows, std::int64_t cols) : v(static_cast<std::size_t>(rows * cols)) {
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c) v[static_cast<std::size_t>(r * cols + c)] = static_cast<float>(r * 100 + c);
    t.name = "w";
    t.type_name = "f32";
    t.dtype = DType::F32;
    t.n_dims = 2;
    t.ne = {cols, rows, 1, 1};
    t.data = reinterpret_cast<const std::uint8_t*>(v.data());
    t.n_bytes = v.size() * sizeof(float);
  }
};

std::vector<std::uint8_t> run(const RewriteTensor& t, int threads = 2) {
  ThreadPool pool(threads);
  std::vector<std::uint8_t> out;
  std::int64_t rows = 0;
  rewrite_tensor(
      t, "model", pool,
      [&](const void* data, std::size_t n) {
        const auto* p = static_cast<const std::uint8_t*>(data);
        out.insert(out.end(), p, p + n);
      },
      [&](std::int64_t r) { rows += r; });
  EXPECT_EQ(rows, t.n_rows());
  EXPECT_EQ(out.size(), t.n_bytes());
  return out;
}

TEST(RewritePipeline, CopiesWholeTensorsByteForByte) {
  Matrix m(5, 64);
  const std::vector<std::uint8_t> out = run(whole_tensor(m.t, DType::F32));
  EXPECT_EQ(std::memcmp(out.data(), m.v.data(), out.size()), 0);
}

TEST(RewritePipeline, ReordersRowsAndPicksColumns) {
  Matrix m(4, 8);
  RewriteTensor t = whole_tensor(m.t, DType::F32);
  t.rows = {3, 1, 1};
  t.columns = {7, 0, 2, 2};
  t.ne = {4, 3, 1, 1};
  const std::vector<std::uint8_t> out = run(t);
  const auto* y = reinterpret_cast<const float*>(out.data());
  for (std::size_t r = 0; r < t.rows.size(); ++r)
    for (std::size_t c = 0; c < t.columns.size(); ++c)
      EXPECT_EQ(y[r * 4 + c], static_cast<float>(t.rows[r] * 100 + t.columns[c])) << r << "," << c;
}

TEST(RewritePipeline, ConvertsTypesAsTheRowQuantizersDo) {
  Matrix m(6, 64);
  for (float& x : m.v) x = std::sin(x) * 3.0f;
  for (DType to : {DType::F16, DType::BF16, DType::Q8_0, DType::Q4_1}) {
    RewriteTensor t = whole_tensor(m.t, to);
    t.rows = {5, 4, 3, 2, 1, 0};
    const std::vector<std::uint8_t> out = run(t, 1);
    const std::size_t row = row_bytes(to, 64);
    for (std::int64_t r = 0; r < 6; ++r) {
      std::vector<std::uint8_t> want(row);
      kernels::quantize_row_weighted(to, m.v.data() + (5 - r) * 64, want.data(), 64, nullptr);
      EXPECT_EQ(std::memcmp(out.data() + r * static_cast<std::int64_t>(row), want.data(), row), 0)
          << dtype_name(to) << " row " << r;
    }
  }
  // From a converted type back to f32: the dequantized values.
  std::vector<std::uint16_t> half(64 * 2);
  for (std::size_t i = 0; i < half.size(); ++i) half[i] = f32_to_f16(static_cast<float>(i) * 0.25f);
  SourceTensor h;
  h.name = "h";
  h.type_name = "f16";
  h.dtype = DType::F16;
  h.n_dims = 2;
  h.ne = {64, 2, 1, 1};
  h.data = reinterpret_cast<const std::uint8_t*>(half.data());
  h.n_bytes = half.size() * 2;
  const std::vector<std::uint8_t> out = run(whole_tensor(h, DType::F32));
  const auto* y = reinterpret_cast<const float*>(out.data());
  for (std::size_t i = 0; i < half.size(); ++i) EXPECT_EQ(y[i], static_cast<float>(i) * 0.25f);
}

TEST(RewritePipeline, RefusesNonFiniteWeightsAndMapsOutsideTheInput) {
  Matrix m(4, 32);
  m.v[2 * 32 + 5] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THAT([&] { run(whole_tensor(m.t, DType::F16)); },
              ::testing::ThrowsMessage<Error>(HasSubstr("tensor 'w' row 2 has nan at column 5")));
  // Copied float tensors are checked too.
  EXPECT_THAT([&] { run(whole_tensor(m.t, DType::F32)); }, ::testing::Throws<Error>());
  m.v[2 * 32 + 5] = 0;
  RewriteTensor t = whole_tensor(m.t, DType::F32);
  t.rows = {0, 1, 2, 4};
  EXPECT_THAT([&] { check_rewrite(t, "model"); }, ::testing::ThrowsMessage<Error>(HasSubstr("row 4 is outside")));
  t.rows = {0, 1};
  EXPECT_THAT([&] { check_rewrite(t, "model"); }, ::testing::ThrowsMessage<Error>(HasSubstr("4 output rows from 2")));
  t = whole_tensor(m.t, DType::Q4_K);
  EXPECT_THAT([&] { check_rewrite(t, "model"); }, ::testing::ThrowsMessage<Error>(HasSubstr("not a multiple")));
}

}  // namespace
}  // namespace kiln::optimize
