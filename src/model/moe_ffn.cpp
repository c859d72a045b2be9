#include "model/moe_ffn.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"

namespace kiln {

TensorView expert_matrix(const TensorView& stacked, std::int64_t e) {
  KILN_CHECK(e >= 0 && e < stacked.ne[2] && stacked.ne[3] == 1, "expert {} of {} (ne[2] = {})", e, stacked.name,
             stacked.ne[2]);
  TensorView v = stacked;
  v.n_dims = 2;
  v.ne = {stacked.ne[0], stacked.ne[1], 1, 1};
  v.nb[3] = v.nb[2];
  v.data = static_cast<const std::uint8_t*>(stacked.data) + static_cast<std::size_t>(e) * stacked.nb[2];
  return v;
}

void route_experts(const float* logits, std::int64_t N, int n_expert, int n_used, int* experts, float* weights) {
  std::vector<float> p(static_cast<std::size_t>(n_expert));  // (n_expert) one row's probabilities
  std::vector<int> order(static_cast<std::size_t>(n_expert));
  for (std::int64_t r = 0; r < N; ++r) {
    const float* l = logits + r * n_expert;
    float max = l[0];
    for (int e = 1; e < n_expert; ++e) max = std::max(max, l[e]);
    double sum = 0;
    for (int e = 0; e < n_expert; ++e) sum += p[static_cast<std::size_t>(e)] = std::exp(l[e] - max);
    for (int e = 0; e < n_expert; ++e) p[static_cast<std::size_t>(e)] = static_cast<float>(p[static_cast<std::size_t>(e)] / sum);
    for (int e = 0; e < n_expert; ++e) order[static_cast<std::size_t>(e)] = e;
    std::partial_sort(order.begin(), order.begin() + n_used, order.end(), [&](int a, int b) {
      const float pa = p[static_cast<std::size_t>(a)], pb = p[static_cast<std::size_t>(b)];
      return pa > pb || (pa == pb && a < b);
    });
    float top = 0;
    for (int k = 0; k < n_used; ++k) top += p[static_cast<std::size_t>(order[static_cast<std::size_t>(k)])];
    for (int k = 0; k < n_used; ++k) {
      const int e = order[static_cast<std::size_t>(k)];
      experts[r * n_used + k] = e;
      weights[r * n_used + k] = p[static_cast<std::size_t>(e)] / top;
    }
  }
}

void MoeFfn::forward(const LlamaConfig& c, const ExpertFfnWeights& w, const float* x, std::int64_t N, float* y,
                     ActivationRows& act, ThreadPool& pool, ActivationObserver* observer) {
  const std::int64_t E = c.n_embd, F = c.n_ff_exp;
  const int X = c.n_expert, K = c.n_expert_used;

  // --- routing: logits (N, X), then each row's top K experts and weights ---
  float* logits = logits_.resize(static_cast<std::size_t>(N * X));
  if (observer != nullptr) observer->observe(*w.router, x, N);
  prepare_activations(*w.router, x, N, E, act, pool);
  linear(*w.router, act, logits, pool);
  experts_.resize(static_cast<std::size_t>(N * K));
  weights_.resize(static_cast<std::size_t>(N * K));
  route_experts(logits, N, X, K, experts_.data(), weights_.data());

  // --- grouping: the (row, k) slots of each expert, contiguous, by a counting sort ---
  offsets_.assign(static_cast<std::size_t>(X + 1), 0);
  for (int e : experts_) ++offsets_[static_cast<std::size_t>(e + 1)];
  for (int e = 0; e < X; ++e) offsets_[static_cast<std::size_t>(e + 1)] += offsets_[static_cast<std::size_t>(e)];
  slots_.resize(static_cast<std::size_t>(N * K));
  {
    std::vector<int> next(offsets_.begin(), offsets_.end() - 1);
    for (std::int64_t s = 0; s < N * K; ++s)
      slots_[static_cast<std::size_t>(next[static_cast<std::size_t>(experts_[static_cast<std::size_t>(s)])]++)] =
          static_cast<int>(s);
  }

  // --- one product per chosen expert and matrix over its gathered rows, scattered back weighted ---
  std::memset(y, 0, static_cast<std::size_t>(N * E) * sizeof(float));
  for (int e = 0; e < X; ++e) {
    const int begin = offsets_[static_cast<std::size_t>(e)], n = offsets_[static_cast<std::size_t>(e + 1)] - begin;
    if (n == 0) continue;  // never read: the point of the mixture
    const int* slots = slots_.data() + begin;
    float* xg = xg_.resize(static_cast<std::size_t>(n * E));
    for (int i = 0; i < n; ++i) std::memcpy(xg + i * E, x + (slots[i] / K) * E, static_cast<std::size_t>(E) * sizeof(float));
    const TensorView gate = expert_matrix(*w.gate, e), up = expert_matrix(*w.up, e), down = expert_matrix(*w.down, e);
    float* g = gate_.resize(static_cast<std::size_t>(n * F));
    float* u = up_.resize(static_cast<std::size_t>(n * F));
    float* o = out_.resize(static_cast<std::size_t>(n * E));
    if (observer != nullptr) {
      observer->observe_expert(*w.gate, e, xg, n);
      observer->observe_expert(*w.up, e, xg, n);
    }
    prepare_activations(gate, xg, n, E, act, pool);
    linear(gate, act, g, pool);
    if (!activations_fit(up, act)) prepare_activations(up, xg, n, E, act, pool);
    linear(up, act, u, pool);
    for (int i = 0; i < n; ++i) kernels::silu_mul(g + i * F, u + i * F, g + i * F, F);
    if (observer != nullptr) observer->observe_expert(*w.down, e, g, n);
    prepare_activations(down, g, n, F, act, pool);
    linear(down, act, o, pool);
    for (int i = 0; i < n; ++i)
      kernels::axpy_f32(weights_[static_cast<std::size_t>(slots[i])], o + i * E, y + (slots[i] / K) * E, E);
  }
}

void moe_ffn_reference(const LlamaConfig& c, const ExpertFfnWeights& w, const float* x, std::int64_t N, float* y) {
  const std::int64_t E = c.n_embd, F = c.n_ff_exp;
  const int X = c.n_expert, K = c.n_expert_used;
  std::vector<float> row(static_cast<std::size_t>(std::max(E, F)));  // one dequantized weight row
  // y_j = Σ_i W[j, i] x_i for a matrix W (out, in).
  auto product = [&](const TensorView& W, const float* in, float* out) {
    for (std::int64_t j = 0; j < W.ne[1]; ++j) {
      kernels::dequantize_row(W.dtype, W.row(j), row.data(), W.ne[0]);
      double s = 0;
      for (std::int64_t i = 0; i < W.ne[0]; ++i) s += static_cast<double>(row[static_cast<std::size_t>(i)]) * in[i];
      out[j] = static_cast<float>(s);
    }
  };
  std::vector<float> logits(static_cast<std::size_t>(X)), g(static_cast<std::size_t>(F)), u(static_cast<std::size_t>(F)),
      o(static_cast<std::size_t>(E));
  std::vector<int> experts(static_cast<std::size_t>(K));
  std::vector<float> weights(static_cast<std::size_t>(K));
  for (std::int64_t r = 0; r < N; ++r) {
    const float* xr = x + r * E;
    float* yr = y + r * E;
    product(*w.router, xr, logits.data());
    route_experts(logits.data(), 1, X, K, experts.data(), weights.data());
    std::fill(yr, yr + E, 0.0f);
    for (int k = 0; k < K; ++k) {
      const int e = experts[static_cast<std::size_t>(k)];
      product(expert_matrix(*w.gate, e), xr, g.data());
      product(expert_matrix(*w.up, e), xr, u.data());
      for (std::int64_t j = 0; j < F; ++j) {
        const float a = g[static_cast<std::size_t>(j)];
        g[static_cast<std::size_t>(j)] = a / (1.0f + std::exp(-a)) * u[static_cast<std::size_t>(j)];
      }
      product(expert_matrix(*w.down, e), g.data(), o.data());
      for (std::int64_t j = 0; j < E; ++j) yr[j] += weights[static_cast<std::size_t>(k)] * o[static_cast<std::size_t>(j)];
    }
  }
}

}  // namespace kiln
