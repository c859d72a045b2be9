// Every row-wise backward of training against central finite differences of its forward, in
// double precision: RMSNorm (input and gain), the SwiGLU gate, causal softmax, cross-entropy, the
// distillation loss (full and top-k with its tail bucket).
#include <gtest/gtest.h>

#include <cmath>
#include <algorithm>
#include <functional>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/training_ops.h"

namespace kiln::kernels::training_ref {
namespace {

std::vector<double> random_vector(std::size_t n, std::mt19937& rng, double lo = -1.5, double hi = 1.5) {
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(n);
  for (double& x : v) x = dist(rng);
  return v;
}

// d(loss)/d(v[i]) by central differences, loss a function of v.
double numeric(std::vector<double>& v, std::size_t i, const std::function<double()>& loss) {
  const double h = 1e-6, keep = v[i];
  v[i] = keep + h;
  const double up = loss();
  v[i] = keep - h;
  const double down = loss();
  v[i] = keep;
  return (up - down) / (2 * h);
}

void expect_gradient(double analytic, double fd, const char* what, std::size_t i) {
  EXPECT_NEAR(analytic, fd, 1e-7 + 1e-6 * std::fabs(fd)) << what << "[" << i << "]";
}

TEST(TrainOps, RmsNormBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(1);
  const std::size_t n = 19;
  auto x = random_vector(n, rng), w = random_vector(n, rng), dy = random_vector(n, rng);
  // loss = dy · rms_norm(x, w): its gradient is what the backward computes from dy.
  auto loss = [&] {
    std::vector<double> y(n);
    rms_norm_forward(x.data(), w.data(), y.data(), n, 1e-5);
    double s = 0;
    for (std::size_t i = 0; i < n; ++i) s += dy[i] * y[i];
    return s;
  };
  std::vector<double> y(n), dx(n, 0.0), dw(n, 0.0);
  const double rstd = rms_norm_forward(x.data(), w.data(), y.data(), n, 1e-5);
  rms_norm_backward(x.data(), w.data(), rstd, dy.data(), dx.data(), dw.data(), n);
  for (std::size_t i = 0; i < n; ++i) {
    expect_gradient(dx[i], numeric(x, i, loss), "dx", i);
    expect_gradient(dw[i], numeric(w, i, loss), "dw", i);
  }
}

TEST(TrainOps, SwigluBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(2);
  const std::size_t n = 23;
  auto g = random_vector(n, rng, -6, 6), u = random_vector(n, rng), dh = random_vector(n, rng);
  auto loss = [&] {
    std::vector<double> h(n);
    swiglu_forward(g.data(), u.data(), h.data(), n);
    double s = 0;
    for (std::size_t i = 0; i < n; ++i) s += dh[i] * h[i];
    return s;
  };
  std::vector<double> dg(n), du(n);
  swiglu_backward(g.data(), u.data(), dh.data(), dg.data(), du.data(), n);
  for (std::size_t i = 0; i < n; ++i) {
    expect_gradient(dg[i], numeric(g, i, loss), "dgate", i);
    expect_gradient(du[i], numeric(u, i, loss), "dup", i);
  }
}

TEST(TrainOps, CausalSoftmaxBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(3);
  const std::size_t n = 11;
  const double scale = 0.37;
  for (std::size_t t : {std::size_t{0}, std::size_t{4}, n - 1}) {
    auto s = random_vector(n, rng, -4, 4), dp = random_vector(n, rng);
    // loss = dp · causal_softmax(scale · s)
    auto loss = [&] {
      std::vector<double> p(n);
      for (std::size_t j = 0; j < n; ++j) p[j] = s[j] * scale;
      causal_softmax_row(p.data(), static_cast<std::int64_t>(t), static_cast<std::int64_t>(n));
      double sum = 0;
      for (std::size_t j = 0; j < n; ++j) sum += dp[j] * p[j];
      return sum;
    };
    std::vector<double> p(n);
    for (std::size_t j = 0; j < n; ++j) p[j] = s[j] * scale;
    causal_softmax_row(p.data(), static_cast<std::int64_t>(t), static_cast<std::int64_t>(n));
    for (std::size_t j = t + 1; j < n; ++j) EXPECT_EQ(p[j], 0.0);
    std::vector<double> ds = dp;
    softmax_backward_row(p.data(), ds.data(), static_cast<std::int64_t>(t + 1), scale);
    for (std::size_t j = 0; j <= t; ++j) expect_gradient(ds[j], numeric(s, j, loss), "dscores", j);
  }
}

TEST(TrainOps, CrossEntropyBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(4);
  const std::size_t n = 29;
  auto z = random_vector(n, rng, -5, 5);
  const int target = 7;
  const double scale = 0.25;
  auto loss = [&] {
    std::vector<double> copy = z;
    return scale * cross_entropy_row(copy.data(), static_cast<std::int64_t>(n), target, 1.0);
  };
  std::vector<double> g = z;
  const double l = cross_entropy_row(g.data(), static_cast<std::int64_t>(n), target, scale);
  double lse = 0;
  for (double v : z) lse += std::exp(v);
  EXPECT_NEAR(l, std::log(lse) - z[target], 1e-12);
  for (std::size_t j = 0; j < n; ++j) expect_gradient(g[j], numeric(z, j, loss), "dlogits", j);
}


// log softmax(t / tau) of a teacher's logits t.
std::vector<double> teacher_log_probs(const std::vector<double>& t, double tau) {
  double m = *std::max_element(t.begin(), t.end()), sum = 0;
  for (double v : t) sum += std::exp((v - m) / tau);
  std::vector<double> lp(t.size());
  for (std::size_t j = 0; j < t.size(); ++j) lp[j] = (t[j] - m) / tau - std::log(sum);
  return lp;
}

// The ids of the k largest values of v, largest first.
std::vector<int> top_ids(const std::vector<double>& v, std::size_t k) {
  std::vector<int> ids(v.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(k), ids.end(),
                    [&](int a, int b) { return v[static_cast<std::size_t>(a)] > v[static_cast<std::size_t>(b)]; });
  ids.resize(k);
  return ids;
}

// The distillation loss α·CE + (1 − α)·τ²·KL of z, its gradient checked against finite
// differences; ids empty: the full teacher row.
void check_distill_gradient(const std::vector<int>& ids, const std::vector<double>& teacher_lp, double alpha,
                            double tau, std::vector<double> z, int target) {
  const auto n = static_cast<std::int64_t>(z.size());
  const auto k = static_cast<std::int64_t>(ids.empty() ? z.size() : ids.size());
  const int* id_ptr = ids.empty() ? nullptr : ids.data();
  std::vector<double> work(static_cast<std::size_t>(k));
  const double scale = 0.5;
  auto loss = [&] {
    std::vector<double> copy = z;
    const DistillTerms<double> t = distill_row(copy.data(), n, target, id_ptr, teacher_lp.data(), k, alpha, tau, 1.0,
                                               work.data());
    return scale * (alpha * t.ce + (1 - alpha) * tau * tau * t.kl);
  };
  std::vector<double> g = z;
  distill_row(g.data(), n, target, id_ptr, teacher_lp.data(), k, alpha, tau, scale, work.data());
  for (std::size_t j = 0; j < z.size(); ++j) expect_gradient(g[j], numeric(z, j, loss), "dlogits", j);
}

TEST(TrainOps, DistillBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(5);
  const std::size_t n = 29;
  const auto t = random_vector(n, rng, -4, 4);
  for (double tau : {1.0, 2.0, 4.0})
    for (double alpha : {0.0, 0.5, 1.0}) {
      const auto z = random_vector(n, rng, -4, 4);
      check_distill_gradient({}, teacher_log_probs(t, tau), alpha, tau, z, 3);
    }
}

TEST(TrainOps, TopKDistillBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(6);
  const std::size_t n = 31;
  const auto t = random_vector(n, rng, -4, 4);
  for (std::size_t k : {1u, 5u, 30u})
    for (double tau : {1.0, 2.0}) {
      const auto lp = teacher_log_probs(t, tau);
      const std::vector<int> ids = top_ids(lp, k);
      std::vector<double> lp_k;
      for (int id : ids) lp_k.push_back(lp[static_cast<std::size_t>(id)]);
      check_distill_gradient(ids, lp_k, 0.25, tau, random_vector(n, rng, -4, 4), 11);
    }
}

TEST(TrainOps, DistillKlIsTheKlDivergenceOverTopKAndOneTailBucket) {
  std::mt19937 rng(7);
  const std::size_t n = 40;
  const double tau = 2.0;
  const auto t = random_vector(n, rng, -5, 5), z = random_vector(n, rng, -5, 5);
  const auto lp = teacher_log_probs(t, tau), lq = teacher_log_probs(z, tau);
  // Full row: Σ p (log p − log q).
  double full = 0;
  for (std::size_t j = 0; j < n; ++j) full += std::exp(lp[j]) * (lp[j] - lq[j]);
  std::vector<double> g = z, work(n);
  const auto terms = distill_row(g.data(), static_cast<std::int64_t>(n), 0, nullptr, lp.data(),
                                 static_cast<std::int64_t>(n), 0.5, tau, 1.0, work.data());
  EXPECT_NEAR(terms.kl, full, 1e-12);
  // k = n through the top-k path (ids in another order): the same KL and gradient.
  {
    const std::vector<int> ids = top_ids(lp, n);
    std::vector<double> lp_k;
    for (int id : ids) lp_k.push_back(lp[static_cast<std::size_t>(id)]);
    std::vector<double> gk = z;
    const auto tk = distill_row(gk.data(), static_cast<std::int64_t>(n), 0, ids.data(), lp_k.data(),
                                static_cast<std::int64_t>(n), 0.5, tau, 1.0, work.data());
    EXPECT_NEAR(tk.kl, full, 1e-12);
    for (std::size_t j = 0; j < n; ++j) EXPECT_NEAR(gk[j], g[j], 1e-12) << j;
  }
  // k < n: the KL of the (k + 1)-outcome distributions, written out.
  for (std::size_t k : {1u, 8u, 39u}) {
    const std::vector<int> ids = top_ids(lp, k);
    std::vector<double> lp_k;
    double p_in = 0, q_in = 0, expect = 0;
    for (int id : ids) {
      const auto i = static_cast<std::size_t>(id);
      lp_k.push_back(lp[i]);
      p_in += std::exp(lp[i]), q_in += std::exp(lq[i]);
      expect += std::exp(lp[i]) * (lp[i] - lq[i]);
    }
    expect += (1 - p_in) * std::log((1 - p_in) / (1 - q_in));
    std::vector<double> gk = z;
    const auto tk = distill_row(gk.data(), static_cast<std::int64_t>(n), 0, ids.data(), lp_k.data(),
                                static_cast<std::int64_t>(k), 0.5, tau, 1.0, work.data());
    EXPECT_NEAR(tk.kl, expect, 1e-12) << k;
    EXPECT_LE(tk.kl, full + 1e-12) << k;  // merging outcomes never raises a KL divergence
    EXPECT_GE(tk.kl, -1e-12) << k;
  }
}

}  // namespace
}  // namespace kiln::kernels::training_ref

// The fast paths against the references in double, at every SIMD level this CPU runs.
namespace kiln::kernels {
namespace {

std::vector<float> random_floats(std::size_t n, std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<double> widen(const std::vector<float>& v) { return {v.begin(), v.end()}; }

constexpr std::size_t kSizes[] = {1, 5, 16, 17, 100, 4099};

TEST(TrainingOpsFastPaths, CrossEntropyMatchesTheReference) {
  std::mt19937 rng(10);
  for (std::size_t n : kSizes)
    for (float spread : {1.0f, 30.0f}) {
      auto z = random_floats(n, rng, -spread, spread);
      const int target = static_cast<int>(n / 2);
      auto ref = widen(z);
      const double ref_loss = training_ref::cross_entropy_row(ref.data(), static_cast<std::int64_t>(n), target, 0.5);
      const float loss = cross_entropy_row(z.data(), static_cast<std::int64_t>(n), target, 0.5f);
      EXPECT_NEAR(loss, ref_loss, 2e-5 * (1 + std::fabs(ref_loss))) << n;
      for (std::size_t j = 0; j < n; ++j) ASSERT_NEAR(z[j], ref[j], 2e-6) << "n " << n << " j " << j;
    }
}

TEST(TrainingOpsFastPaths, SwigluBackwardMatchesTheReference) {
  std::mt19937 rng(11);
  for (std::size_t n : kSizes) {
    auto g = random_floats(n, rng, -20, 20), u = random_floats(n, rng, -2, 2), dh = random_floats(n, rng, -2, 2);
    std::vector<float> dg(n), du(n);
    swiglu_backward(g.data(), u.data(), dh.data(), dg.data(), du.data(), static_cast<std::int64_t>(n));
    auto gd = widen(g), ud = widen(u), dhd = widen(dh);
    std::vector<double> rdg(n), rdu(n);
    training_ref::swiglu_backward(gd.data(), ud.data(), dhd.data(), rdg.data(), rdu.data(), static_cast<std::int64_t>(n));
    for (std::size_t j = 0; j < n; ++j) {
      ASSERT_NEAR(dg[j], rdg[j], 1e-6 * (1 + std::fabs(rdg[j]))) << j;
      ASSERT_NEAR(du[j], rdu[j], 1e-6 * (1 + std::fabs(rdu[j]))) << j;
    }
  }
}

TEST(TrainingOpsFastPaths, SoftmaxBackwardMatchesTheReference) {
  std::mt19937 rng(12);
  for (std::size_t n : kSizes) {
    auto p = random_floats(n, rng, 0, 1), dp = random_floats(n, rng, -1, 1);
    auto pd = widen(p), dpd = widen(dp);
    softmax_backward_row(p.data(), dp.data(), static_cast<std::int64_t>(n), 0.125f);
    training_ref::softmax_backward_row(pd.data(), dpd.data(), static_cast<std::int64_t>(n), 0.125);
    for (std::size_t j = 0; j < n; ++j) ASSERT_NEAR(dp[j], dpd[j], 1e-5 * (1 + std::sqrt(static_cast<double>(n)))) << j;
  }
}

TEST(TrainingOpsFastPaths, DistillMatchesTheReference) {
  std::mt19937 rng(13);
  for (std::size_t n : kSizes)
    for (float tau : {1.0f, 2.0f}) {
      auto z = random_floats(n, rng, -8, 8), t = random_floats(n, rng, -8, 8);
      const auto lp = training_ref::teacher_log_probs(widen(t), tau);
      const std::size_t k = std::min<std::size_t>(n, 7);
      const std::vector<int> ids = training_ref::top_ids(lp, k);
      for (bool top : {false, true}) {
        std::vector<double> lp_d;
        if (top)
          for (int id : ids) lp_d.push_back(lp[static_cast<std::size_t>(id)]);
        else
          lp_d = lp;
        const std::vector<float> lp_f(lp_d.begin(), lp_d.end());
        const auto kk = static_cast<std::int64_t>(lp_d.size());
        const int* id_ptr = top ? ids.data() : nullptr;
        auto ref = widen(z);
        auto zf = z;
        std::vector<double> work_d(lp_d.size());
        std::vector<float> work_f(lp_d.size());
        const int target = static_cast<int>(n / 3);
        const auto rt = training_ref::distill_row(ref.data(), static_cast<std::int64_t>(n), target, id_ptr,
                                                  widen(lp_f).data(), kk, 0.5, static_cast<double>(tau), 0.25,
                                                  work_d.data());
        const auto ft = distill_row(zf.data(), static_cast<std::int64_t>(n), target, id_ptr, lp_f.data(), kk, 0.5f, tau,
                                    0.25f, work_f.data());
        EXPECT_NEAR(ft.ce, rt.ce, 2e-5 * (1 + std::fabs(rt.ce))) << n;
        EXPECT_NEAR(ft.kl, rt.kl, 2e-5 * (1 + std::fabs(rt.kl))) << n << " top " << top;
        for (std::size_t j = 0; j < n; ++j) ASSERT_NEAR(zf[j], ref[j], 2e-6) << "n " << n << " j " << j << " top " << top;
      }
    }
}

}  // namespace
}  // namespace kiln::kernels
