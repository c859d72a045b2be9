// The forward pass checked against an independent plain reference written here from the math
// (llama2.c's run.c structure: f32 everywhere, no batching, no SIMD), on the real trained
// checkpoint stories260K.bin. The reference reads the file itself with fread, so neither kiln's
// reader nor its kernels are involved on that side.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "core/cpu_features.h"
#include "model/llama_model.h"
#include "test_support.h"

namespace kiln {
namespace {

struct RefModel {
  int dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len;
  std::vector<float> emb, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, wcls;
  bool shared = true;
};

bool load_ref(const std::string& path, RefModel& m) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  int h[7];
  if (std::fread(h, sizeof(int), 7, f) != 7) return false;
  m.dim = h[0], m.hidden = h[1], m.n_layers = h[2], m.n_heads = h[3], m.n_kv_heads = h[4];
  m.shared = h[5] > 0;
  m.vocab = std::abs(h[5]), m.seq_len = h[6];
  const int kv_dim = m.dim / m.n_heads * m.n_kv_heads;
  const int hs = m.dim / m.n_heads;
  auto rd = [&](std::vector<float>& v, size_t n) {
    v.resize(n);
    return std::fread(v.data(), sizeof(float), n, f) == n;
  };
  const size_t L = static_cast<size_t>(m.n_layers), D = static_cast<size_t>(m.dim);
  bool ok = rd(m.emb, static_cast<size_t>(m.vocab) * D) && rd(m.rms_att, L * D) && rd(m.wq, L * D * D) &&
            rd(m.wk, L * D * kv_dim) && rd(m.wv, L * D * kv_dim) && rd(m.wo, L * D * D) && rd(m.rms_ffn, L * D) &&
            rd(m.w1, L * D * m.hidden) && rd(m.w2, L * D * m.hidden) && rd(m.w3, L * D * m.hidden) &&
            rd(m.rms_final, D);
  std::vector<float> skip;
  ok = ok && rd(skip, static_cast<size_t>(m.seq_len) * hs);  // freq_cis_real, freq_cis_imag (unused)
  if (!m.shared) ok = ok && rd(m.wcls, static_cast<size_t>(m.vocab) * D);
  std::fclose(f);
  if (m.shared) m.wcls = m.emb;
  return ok;
}

// out (d) = W (d, n) · x (n), double accumulation.
void matvec(const float* W, const float* x, float* out, int n, int d) {
  for (int i = 0; i < d; ++i) {
    double s = 0;
    for (int j = 0; j < n; ++j) s += static_cast<double>(W[static_cast<size_t>(i) * n + j]) * x[j];
    out[i] = static_cast<float>(s);
  }
}

void rmsnorm(float* o, const float* x, const float* w, int n) {
  double ss = 0;
  for (int j = 0; j < n; ++j) ss += static_cast<double>(x[j]) * x[j];
  const float inv = static_cast<float>(1.0 / std::sqrt(ss / n + 1e-5));
  for (int j = 0; j < n; ++j) o[j] = w[j] * (inv * x[j]);
}

// Runs tokens[0..n) one at a time, returns the logits after each (n, vocab).
std::vector<std::vector<float>> reference_logits(const RefModel& m, const std::vector<int>& tokens) {
  const int D = m.dim, hs = D / m.n_heads, kv_dim = hs * m.n_kv_heads, kv_mul = m.n_heads / m.n_kv_heads;
  const int T = static_cast<int>(tokens.size());
  std::vector<float> kc(static_cast<size_t>(m.n_layers) * T * kv_dim), vc(kc.size());
  std::vector<float> x(D), xb(D), xb2(D), q(D), k(kv_dim), v(kv_dim), hb(m.hidden), hb2(m.hidden), att(T);
  std::vector<std::vector<float>> all;
  for (int pos = 0; pos < T; ++pos) {
    std::copy_n(&m.emb[static_cast<size_t>(tokens[pos]) * D], D, x.begin());
    for (int l = 0; l < m.n_layers; ++l) {
      rmsnorm(xb.data(), x.data(), &m.rms_att[static_cast<size_t>(l) * D], D);
      matvec(&m.wq[static_cast<size_t>(l) * D * D], xb.data(), q.data(), D, D);
      matvec(&m.wk[static_cast<size_t>(l) * D * kv_dim], xb.data(), k.data(), D, kv_dim);
      matvec(&m.wv[static_cast<size_t>(l) * D * kv_dim], xb.data(), v.data(), D, kv_dim);
      for (int i = 0; i < D; i += 2) {  // rope on adjacent pairs
        const int hd = i % hs;
        const double freq = 1.0 / std::pow(10000.0, hd / static_cast<double>(hs));
        const double val = pos * freq, fcr = std::cos(val), fci = std::sin(val);
        for (int which = 0; which < (i < kv_dim ? 2 : 1); ++which) {
          float* vec = which == 0 ? q.data() : k.data();
          const float v0 = vec[i], v1 = vec[i + 1];
          vec[i] = static_cast<float>(v0 * fcr - v1 * fci);
          vec[i + 1] = static_cast<float>(v0 * fci + v1 * fcr);
        }
      }
      const size_t loff = static_cast<size_t>(l) * T * kv_dim;
      std::copy(k.begin(), k.end(), kc.begin() + static_cast<long>(loff + static_cast<size_t>(pos) * kv_dim));
      std::copy(v.begin(), v.end(), vc.begin() + static_cast<long>(loff + static_cast<size_t>(pos) * kv_dim));
      for (int h = 0; h < m.n_heads; ++h) {
        const float* qh = q.data() + h * hs;
        double mx = -1e30;
        for (int t = 0; t <= pos; ++t) {
          const float* kh = &kc[loff + static_cast<size_t>(t) * kv_dim + (h / kv_mul) * hs];
          double s = 0;
          for (int i = 0; i < hs; ++i) s += static_cast<double>(qh[i]) * kh[i];
          att[t] = static_cast<float>(s / std::sqrt(static_cast<double>(hs)));
          mx = std::max(mx, static_cast<double>(att[t]));
        }
        double sum = 0;
        for (int t = 0; t <= pos; ++t) sum += (att[t] = static_cast<float>(std::exp(att[t] - mx)));
        for (int i = 0; i < hs; ++i) {
          double acc = 0;
          for (int t = 0; t <= pos; ++t)
            acc += att[t] / sum * vc[loff + static_cast<size_t>(t) * kv_dim + (h / kv_mul) * hs + i];
          xb[h * hs + i] = static_cast<float>(acc);
        }
      }
      matvec(&m.wo[static_cast<size_t>(l) * D * D], xb.data(), xb2.data(), D, D);
      for (int i = 0; i < D; ++i) x[i] += xb2[i];
      rmsnorm(xb.data(), x.data(), &m.rms_ffn[static_cast<size_t>(l) * D], D);
      matvec(&m.w1[static_cast<size_t>(l) * D * m.hidden], xb.data(), hb.data(), D, m.hidden);
      matvec(&m.w3[static_cast<size_t>(l) * D * m.hidden], xb.data(), hb2.data(), D, m.hidden);
      for (int i = 0; i < m.hidden; ++i) hb[i] = hb[i] / (1.0f + std::exp(-hb[i])) * hb2[i];
      matvec(&m.w2[static_cast<size_t>(l) * D * m.hidden], hb.data(), xb.data(), m.hidden, D);
      for (int i = 0; i < D; ++i) x[i] += xb[i];
    }
    rmsnorm(x.data(), x.data(), m.rms_final.data(), D);
    std::vector<float> logits(m.vocab);
    matvec(m.wcls.data(), x.data(), logits.data(), D, m.vocab);
    all.push_back(std::move(logits));
  }
  return all;
}

// A fixed token sequence inside the 512-token vocabulary.
std::vector<int> test_tokens(int n) {
  std::vector<int> t{1};
  for (int i = 1; i < n; ++i) t.push_back((37 * i + 11) % 511 + 1);
  return t;
}

double max_abs_diff(const float* a, const float* b, int n, double* max_abs_ref) {
  double d = 0;
  for (int i = 0; i < n; ++i) {
    d = std::max(d, std::fabs(static_cast<double>(a[i]) - b[i]));
    *max_abs_ref = std::max(*max_abs_ref, std::fabs(static_cast<double>(b[i])));
  }
  return d;
}

TEST(LlamaForward, Stories260kMatchesPlainReferenceTokenByTokenAndBatched) {
  KILN_REQUIRE_DATA(path, "stories260K.bin");
  RefModel ref;
  ASSERT_TRUE(load_ref(path, ref));
  const std::vector<int> tokens = test_tokens(40);
  const auto expected = reference_logits(ref, tokens);

  auto model = LlamaModel::load(path);
  ASSERT_EQ(model->config().n_vocab, 512);
  const int V = 512;
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    // Token by token (decode path).
    KvCache cache = model->make_kv_cache(64, DType::F32);
    const int seq = cache.add_sequence();
    std::vector<float> logits(V);
    double worst = 0, scale = 0;
    for (size_t pos = 0; pos < tokens.size(); ++pos) {
      Batch b;
      b.add(tokens[pos], static_cast<int>(pos), seq, true);
      model->forward(b, cache, pool, logits.data());
      worst = std::max(worst, max_abs_diff(logits.data(), expected[pos].data(), V, &scale));
    }
    // Logits here are O(10); f32 accumulation in a different order stays within ~1e-4 of them.
    EXPECT_LT(worst, 2e-3 * std::max(1.0, scale)) << "threads=" << threads << " scale=" << scale;

    // The whole sequence as one prefill batch, logits for every row.
    KvCache cache2 = model->make_kv_cache(64, DType::F32);
    const int seq2 = cache2.add_sequence();
    Batch all;
    for (size_t pos = 0; pos < tokens.size(); ++pos) all.add(tokens[pos], static_cast<int>(pos), seq2, true);
    std::vector<float> batch_logits(tokens.size() * V);
    model->forward(all, cache2, pool, batch_logits.data());
    double worst_b = 0;
    for (size_t pos = 0; pos < tokens.size(); ++pos)
      worst_b = std::max(worst_b, max_abs_diff(&batch_logits[pos * V], expected[pos].data(), V, &scale));
    EXPECT_LT(worst_b, 2e-3 * std::max(1.0, scale)) << "batched, threads=" << threads;
  }
}

std::vector<int> greedy_from_bos(LlamaModel& model, int threads, int n, DType kv) {
  ThreadPool pool(threads);
  KvCache cache = model.make_kv_cache(n + 1, kv);
  const int seq = cache.add_sequence();
  std::vector<float> logits(static_cast<size_t>(model.config().n_vocab));
  std::vector<int> out;
  int token = 1;
  for (int pos = 0; pos < n; ++pos) {
    Batch b;
    b.add(token, pos, seq, true);
    model.forward(b, cache, pool, logits.data());
    token = static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(token);
  }
  return out;
}

TEST(LlamaForward, Stories260kGreedyIsStableAcrossThreadsAndSimdPaths) {
  KILN_REQUIRE_DATA(path, "stories260K.bin");
  auto model = LlamaModel::load(path);
  const SimdLevel best = max_supported_simd_level();
  set_simd_level(best);
  const std::vector<int> baseline = greedy_from_bos(*model, 1, 100, DType::F16);
  for (SimdLevel level : {SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512}) {
    if (level > best) continue;
    set_simd_level(level);
    for (int threads : {1, 2})
      EXPECT_EQ(greedy_from_bos(*model, threads, 100, DType::F16), baseline)
          << "simd=" << simd_level_name(level) << " threads=" << threads;
  }
  set_simd_level(best);
  // The story it tells is not degenerate: many distinct tokens.
  std::vector<int> sorted = baseline;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_GT(std::unique(sorted.begin(), sorted.end()) - sorted.begin(), 20);
}

}  // namespace
}  // namespace kiln
