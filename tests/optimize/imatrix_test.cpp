// kiln imatrix and the calibrated method: collection against a hand computation, file round
// trips (GGUF and legacy .dat), gptq against plain rounding on fixed data, and bad input.
#include "optimize/imatrix.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/matmul.h"
#include "kernels/weighted_quants.h"
#include "optimize/gptq_quant.h"
#include "optimize/quantize_model.h"
#include "test_support.h"

namespace kiln {
namespace {

TensorView weight(const std::string& name, std::int64_t k, std::int64_t n) {
  return TensorView::contiguous(name, DType::F32, {k, n, 1, 1}, 2, nullptr);
}

TEST(ImatrixCollector, SumsSquaresAndCountsLikeAHandComputation) {
  optimize::ImatrixCollector c({.process_output = false, .covariance = true});
  // x is (2, 3): two tokens of three channels, seen twice (two forward passes).
  const float x[6] = {1, -2, 3, 0.5f, 4, -1};
  c.observe(weight("blk.0.attn_q.weight", 3, 5), x, 2);
  c.observe(weight("blk.0.attn_q.weight", 3, 5), x + 3, 1);
  c.observe(weight("output.weight", 3, 7), x, 2);  // not a block weight: skipped by default
  const optimize::Imatrix m = c.result();
  ASSERT_EQ(m.entries.size(), 1u);
  const optimize::ImatrixEntry& e = m.entries.at("blk.0.attn_q.weight");
  EXPECT_EQ(e.counts, std::vector<float>{3});
  EXPECT_EQ(e.in_sum2, (std::vector<float>{1 + 0.25f + 0.25f, 4 + 16 + 16, 9 + 1 + 1}));
  // covariance: sum over the three tokens of x xᵀ, symmetric.
  EXPECT_FLOAT_EQ(e.in_cov[0 * 3 + 1], 1 * -2 + 0.5f * 4 + 0.5f * 4);
  EXPECT_FLOAT_EQ(e.in_cov[1 * 3 + 0], e.in_cov[0 * 3 + 1]);
  EXPECT_FLOAT_EQ(e.in_cov[2 * 3 + 2], e.in_sum2[2]);
  EXPECT_EQ(m.importance("blk.0.attn_q.weight"), (std::vector<float>{1.5f / 3, 36.0f / 3, 11.0f / 3}));
}

optimize::Imatrix sample_imatrix() {
  optimize::Imatrix m;
  m.datasets = {"calib.txt"};
  m.chunk_count = 4;
  m.chunk_size = 128;
  m.entries["blk.0.ffn_down.weight"] = {3, {1, 2, 3}, {512}, {}};
  m.entries["blk.0.attn_q.weight"] = {2, {0.5f, 8}, {512}, {1, 2, 2, 5}};
  return m;
}

TEST(ImatrixFile, GgufRoundTrip) {
  const std::string path = test::temp_dir() + "/m.imatrix.gguf";
  optimize::write_imatrix(sample_imatrix(), path);
  const optimize::Imatrix r = optimize::read_imatrix(path);
  EXPECT_FALSE(r.legacy);
  EXPECT_EQ(r.datasets, std::vector<std::string>{"calib.txt"});
  EXPECT_EQ(r.chunk_count, 4u);
  EXPECT_EQ(r.chunk_size, 128u);
  ASSERT_EQ(r.entries.size(), 2u);
  EXPECT_EQ(r.entries.at("blk.0.ffn_down.weight").in_sum2, (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(r.entries.at("blk.0.attn_q.weight").in_cov, (std::vector<float>{1, 2, 2, 5}));
  EXPECT_TRUE(r.entries.at("blk.0.ffn_down.weight").in_cov.empty());
}

TEST(ImatrixFile, LegacyDatRoundTripGivesTheSameImportance) {
  const std::string path = test::temp_dir() + "/m.imatrix.dat";
  const optimize::Imatrix m = sample_imatrix();
  optimize::write_imatrix_legacy(m, path);
  const optimize::Imatrix r = optimize::read_imatrix(path);
  EXPECT_TRUE(r.legacy);
  EXPECT_EQ(r.chunk_count, 4u);
  EXPECT_EQ(r.datasets, std::vector<std::string>{"calib.txt"});
  for (const char* name : {"blk.0.ffn_down.weight", "blk.0.attn_q.weight"}) {
    const std::vector<float> a = m.importance(name), b = r.importance(name);
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-6f * a[i]) << name;
  }
}

TEST(ImatrixFile, MalformedFilesGiveOneLineErrors) {
  const std::string dir = test::temp_dir();
  std::ofstream(dir + "/short.dat", std::ios::binary).write("\x01\x00\x00\x00\x05\x00", 6);
  EXPECT_THROW(optimize::read_imatrix(dir + "/short.dat"), Error);
  std::ofstream(dir + "/empty.dat", std::ios::binary).write("\x00\x00\x00\x00", 4);
  try {
    optimize::read_imatrix(dir + "/empty.dat");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("empty.dat"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
  }
}

// ---- gptq against plain rounding ----------------------------------------------------------------

TEST(Gptq, LowersTheOutputErrorOfPlainRoundingOnCorrelatedInputs) {
  const std::int64_t k = 256, n_tokens = 2048;
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  // Correlated inputs: x = A z with a random mixing A, so H has strong off-diagonal terms.
  std::vector<float> A(static_cast<std::size_t>(k * k));
  for (float& v : A) v = normal(rng) / 16;
  std::vector<float> cov(static_cast<std::size_t>(k * k), 0.0f), imp(static_cast<std::size_t>(k), 0.0f);
  std::vector<float> z(static_cast<std::size_t>(k)), x(static_cast<std::size_t>(k));
  for (std::int64_t t = 0; t < n_tokens; ++t) {
    for (float& v : z) v = normal(rng);
    for (std::int64_t i = 0; i < k; ++i) {
      float s = 0;
      for (std::int64_t j = 0; j < k; ++j) s += A[static_cast<std::size_t>(i * k + j)] * z[static_cast<std::size_t>(j)];
      x[static_cast<std::size_t>(i)] = s * (i % 7 == 0 ? 4.0f : 1.0f);
    }
    for (std::int64_t i = 0; i < k; ++i)
      for (std::int64_t j = 0; j < k; ++j)
        cov[static_cast<std::size_t>(i * k + j)] += x[static_cast<std::size_t>(i)] * x[static_cast<std::size_t>(j)];
  }
  for (std::int64_t i = 0; i < k; ++i) imp[static_cast<std::size_t>(i)] = cov[static_cast<std::size_t>(i * k + i)] / n_tokens;
  const optimize::GptqFactor g = optimize::prepare_gptq(cov.data(), k, n_tokens);
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q3_K, DType::Q4_K, DType::Q2_K}) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    double err_plain = 0, err_weighted = 0, err_gptq = 0;
    for (int row = 0; row < 8; ++row) {
      std::vector<float> w(static_cast<std::size_t>(k));
      for (float& v : w) v = normal(rng) * 0.02f;
      std::vector<std::uint8_t> q(row_bytes(t, k));
      std::vector<float> d(static_cast<std::size_t>(k));
      kernels::quantize_row_ref(t, w.data(), q.data(), k);
      kernels::dequantize_row(t, q.data(), d.data(), k);
      err_plain += optimize::output_error(w.data(), d.data(), cov.data(), k, n_tokens);
      kernels::quantize_row_weighted(t, w.data(), q.data(), k, imp.data());
      kernels::dequantize_row(t, q.data(), d.data(), k);
      err_weighted += optimize::output_error(w.data(), d.data(), cov.data(), k, n_tokens);
      optimize::quantize_row_gptq(t, w.data(), q.data(), k, imp.data(), g);
      kernels::dequantize_row(t, q.data(), d.data(), k);
      err_gptq += optimize::output_error(w.data(), d.data(), cov.data(), k, n_tokens);
    }
    EXPECT_LT(err_gptq, 0.8 * err_weighted) << "plain " << err_plain << " weighted " << err_weighted;
    EXPECT_LT(err_gptq, 0.8 * err_plain);
  }
}

// ---- bad input ----------------------------------------------------------------------------------

TEST(ImatrixQuantize, AnImatrixForAnotherModelIsAOneLineError) {
  KILN_REQUIRE_DATA(model, "stories260K.bin");
  const std::string dir = test::temp_dir();
  optimize::Imatrix other;
  other.entries["blk.0.attn_q.weight"] = {128, std::vector<float>(128, 1.0f), {10}, {}};  // stories: 64 columns
  optimize::write_imatrix(other, dir + "/other.gguf");
  optimize::QuantizeOptions o;
  o.type = "Q4_0";
  o.imatrix = dir + "/other.gguf";
  try {
    optimize::quantize_model(model, dir + "/out.gguf", o);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("blk.0.attn_q.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("another model"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  other.entries.clear();
  other.entries["model.layers.0.q_proj"] = {64, std::vector<float>(64, 1.0f), {10}, {}};
  optimize::write_imatrix(other, dir + "/names.gguf");
  o.imatrix = dir + "/names.gguf";
  EXPECT_THROW(optimize::quantize_model(model, dir + "/out.gguf", o), Error);
  std::ifstream out(dir + "/out.gguf");
  EXPECT_FALSE(out.good()) << "no output on failure";
}

TEST(ImatrixCli, TooFewCalibrationTokensIsAClearError) {
  KILN_REQUIRE_DATA(model, "stories260K.bin");
  const std::string dir = test::temp_dir();
  std::ofstream(dir + "/few.txt") << "1 2 3 4 5 6 7 8\n";
  std::string out;
  const int rc = test::run_command(test::kiln_binary() + " imatrix " + model + " --tokens " + dir +
                                       "/few.txt --ctx 64 -o " + dir + "/x.gguf",
                                   &out, true);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("has 8 tokens, fewer than one chunk of 64"), std::string::npos) << out;
  std::ifstream f(dir + "/x.gguf");
  EXPECT_FALSE(f.good());
}

}  // namespace
}  // namespace kiln
