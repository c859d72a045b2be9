// The mixture-of-experts FFN (model/moe_ffn.h): routing by hand, and the grouped products
// (one product per chosen expert over its gathered rows) against the scalar reference (each
// row and expert on its own, dequantized weights in f32), for decode-sized and prefill-sized
// steps; and that each chosen expert's weights are multiplied once per step, unchosen ones never.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/matmul.h"
#include "model/moe_ffn.h"

namespace kiln {
namespace {

TEST(RouteExperts, SoftmaxTopKRenormalised) {
  // Row 0: experts 2 and 0 lead; row 1: expert 3 alone leads, then a tie between 0 and 1.
  const std::vector<float> logits = {1.0f, -1.0f, 2.0f, 0.0f,  //
                                     0.5f, 0.5f, -3.0f, 4.0f};
  std::vector<int> e(4);
  std::vector<float> w(4);
  route_experts(logits.data(), 2, 4, 2, e.data(), w.data());
  EXPECT_EQ(e[0], 2);
  EXPECT_EQ(e[1], 0);
  // p2 / (p2 + p0) = 1 / (1 + e^-1): the softmax over the two chosen logits.
  EXPECT_NEAR(w[0], 1.0 / (1.0 + std::exp(-1.0)), 1e-6);
  EXPECT_NEAR(w[0] + w[1], 1.0f, 1e-6);
  EXPECT_EQ(e[2], 3);
  EXPECT_EQ(e[3], 0);  // the tie goes to the lower index
  EXPECT_NEAR(w[2], 1.0 / (1.0 + std::exp(-3.5)), 1e-6);
}

TEST(RouteExperts, OneOfOneGetsWeightOne) {
  const float logits[3] = {0.1f, 0.3f, 0.2f};
  int e = -1;
  float w = 0;
  route_experts(logits, 1, 3, 1, &e, &w);
  EXPECT_EQ(e, 1);
  EXPECT_FLOAT_EQ(w, 1.0f);
}

// Weights of one layer's experts in `type`, the router in f32 (as llama.cpp's quantize keeps it).
struct ExpertLayer {
  LlamaConfig c;
  std::vector<std::uint8_t> router, gate, up, down;
  TensorView router_v, gate_v, up_v, down_v;

  ExpertLayer(int E, int F, int X, int K, DType type, std::uint32_t seed) {
    c.n_embd = E, c.n_ff_exp = F, c.n_expert = X, c.n_expert_used = K;
    std::mt19937 rng(seed);
    auto fill = [&](std::vector<std::uint8_t>& bytes, DType t, std::int64_t in, std::int64_t rows, float scale) {
      std::normal_distribution<float> dist(0.0f, scale);
      std::vector<float> row(static_cast<std::size_t>(in));
      bytes.resize(row_bytes(t, in) * static_cast<std::size_t>(rows));
      for (std::int64_t r = 0; r < rows; ++r) {
        for (float& v : row) v = dist(rng);
        if (t == DType::F32) std::memcpy(bytes.data() + r * row_bytes(t, in), row.data(), row.size() * 4);
        else kernels::quantize_row_ref(t, row.data(), bytes.data() + r * row_bytes(t, in), in);
      }
    };
    fill(router, DType::F32, E, X, 2.0f / std::sqrt(static_cast<float>(E)));
    fill(gate, type, E, static_cast<std::int64_t>(F) * X, 1.0f / std::sqrt(static_cast<float>(E)));
    fill(up, type, E, static_cast<std::int64_t>(F) * X, 1.0f / std::sqrt(static_cast<float>(E)));
    fill(down, type, F, static_cast<std::int64_t>(E) * X, 1.0f / std::sqrt(static_cast<float>(F)));
    router_v = TensorView::contiguous("blk.0.ffn_gate_inp.weight", DType::F32, {E, X, 1, 1}, 2, router.data());
    gate_v = TensorView::contiguous("blk.0.ffn_gate_exps.weight", type, {E, F, X, 1}, 3, gate.data());
    up_v = TensorView::contiguous("blk.0.ffn_up_exps.weight", type, {E, F, X, 1}, 3, up.data());
    down_v = TensorView::contiguous("blk.0.ffn_down_exps.weight", type, {F, E, X, 1}, 3, down.data());
  }
  ExpertFfnWeights weights() const { return {&router_v, &gate_v, &up_v, &down_v}; }
};

std::vector<float> random_rows(std::int64_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(n));
  for (float& v : x) v = dist(rng);
  return x;
}

// Counts, per stacked tensor and expert, the products and the rows each was given.
struct ExpertCalls : ActivationObserver {
  std::map<std::pair<std::string, std::int64_t>, std::vector<std::int64_t>> calls;  // rows of each call
  void observe(const TensorView&, const float*, std::int64_t) override {}
  void observe_expert(const TensorView& W, std::int64_t e, const float*, std::int64_t rows) override {
    calls[{W.name, e}].push_back(rows);
  }
};

struct Case {
  DType type;
  int rows;
  double tolerance;  // of the largest error, relative to the output's RMS
  int width = 64;    // E and F: 256 for the K-quants' blocks
};

class MoeFfnVsReference : public ::testing::TestWithParam<Case> {};

TEST_P(MoeFfnVsReference, GroupedEqualsPerRowReference) {
  const Case p = GetParam();
  const int E = p.width, F = p.width == 64 ? 96 : p.width, X = 8, K = 2;
  ExpertLayer layer(E, F, X, K, p.type, 7);
  const std::vector<float> x = random_rows(static_cast<std::int64_t>(p.rows) * E, 11);
  std::vector<float> y(x.size(), 1e9f), ref(x.size());
  ThreadPool pool(2);
  ActivationRows act;
  MoeFfn moe;
  ExpertCalls observer;
  moe.forward(layer.c, layer.weights(), x.data(), p.rows, y.data(), act, pool, &observer);
  moe_ffn_reference(layer.c, layer.weights(), x.data(), p.rows, ref.data());

  double ss = 0, max_err = 0;
  for (std::size_t i = 0; i < y.size(); ++i) {
    ss += static_cast<double>(ref[i]) * ref[i];
    max_err = std::max(max_err, std::fabs(static_cast<double>(y[i]) - ref[i]));
  }
  const double rms = std::sqrt(ss / static_cast<double>(y.size()));
  ASSERT_GT(rms, 0.05);
  EXPECT_LE(max_err, p.tolerance * rms) << dtype_name(p.type) << " rows " << p.rows;

  // Each expert chosen by some row was multiplied once (gate, up, down), with exactly the rows
  // routed to it; the others not at all.
  std::map<int, std::int64_t> routed;
  for (int e : moe.experts()) ++routed[e];
  for (int e = 0; e < X; ++e) {
    for (const char* name : {"blk.0.ffn_gate_exps.weight", "blk.0.ffn_up_exps.weight", "blk.0.ffn_down_exps.weight"}) {
      auto it = observer.calls.find({name, e});
      if (routed.count(e) == 0) {
        EXPECT_TRUE(it == observer.calls.end()) << name << " expert " << e << " was read but not chosen";
      } else {
        ASSERT_TRUE(it != observer.calls.end()) << name << " expert " << e;
        EXPECT_EQ(it->second, std::vector<std::int64_t>{routed[e]}) << name << " expert " << e;
      }
    }
  }
  if (p.rows == 1) EXPECT_EQ(routed.size(), static_cast<std::size_t>(K));
}

// f32 weights: the same sums in another order. Block formats: the grouped path quantizes its
// activations to the weights' activation type (q8_0, q8_K) twice (the experts' input and the
// down product's), the reference keeps them f32: a few percent of the RMS at the worst of
// hundreds of outputs (q4_K's q8_K activations have one scale per 256 values: more), where a
// wrong expert, weight, row or slab would be of the order of the RMS.
INSTANTIATE_TEST_SUITE_P(Types, MoeFfnVsReference,
                         ::testing::Values(Case{DType::F32, 1, 1e-4}, Case{DType::F32, 5, 1e-4},
                                           Case{DType::F32, 40, 1e-4}, Case{DType::Q8_0, 1, 0.08},
                                           Case{DType::Q8_0, 40, 0.08}, Case{DType::Q4_0, 1, 0.08},
                                           Case{DType::Q4_0, 40, 0.08}, Case{DType::Q4_K, 3, 0.15, 256}),
                         [](const auto& info) {
                           return std::string(dtype_name(info.param.type)) + "_rows" + std::to_string(info.param.rows);
                         });

TEST(ExpertMatrix, ViewsTheExpertsSlab) {
  std::vector<float> data(4 * 3 * 5);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>(i);
  const TensorView s = TensorView::contiguous("x", DType::F32, {4, 3, 5, 1}, 3, data.data());
  const TensorView v = expert_matrix(s, 2);
  EXPECT_EQ(v.ne, (std::array<std::int64_t, 4>{4, 3, 1, 1}));
  EXPECT_EQ(v.n_rows(), 3);
  EXPECT_EQ(reinterpret_cast<const float*>(v.row(1))[0], 4 * 3 * 2 + 4);
}

}  // namespace
}  // namespace kiln
