// Every row-wise backward of training against central finite differences of its forward, in
// double precision: RMSNorm (input and gain), the SwiGLU gate, causal softmax, cross-entropy.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
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

}  // namespace
}  // namespace kiln::kernels
