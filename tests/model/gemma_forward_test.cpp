// gemma2 and gemma3 through LlamaModel::forward against a scalar reference written here from the
// definitions: embeddings × sqrt(width), RMSNorms, rope over head halves with the layer's own base
// and scaling, attention whose windowed layers MASK keys with p_query - p_key >= n_swa (the
// reference scores every position and masks; kiln does not read them at all), score and logit
// soft-capping cap · tanh(x / cap), post-norms, GELU-tanh gated FFN. Run as one prefill batch and
// as decode steps, with f32, f16 and q8_0 KV caches, for sequences longer than the window whose
// window starts fall mid-block of the paged cache.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "format/gguf_metadata.h"
#include "kernels/matmul.h"
#include "model/llama_model.h"
#include "model/synthetic_model.h"
#include "test_support.h"

namespace kiln {
namespace {

using Vec = std::vector<double>;

Vec row_of(const TensorView& t, std::int64_t r) {
  std::vector<float> f(static_cast<std::size_t>(t.ne[0]));
  kernels::dequantize_row(t.dtype, t.row(r), f.data(), t.ne[0]);
  return Vec(f.begin(), f.end());
}

// y (out) = W x, W ne {in, out}.
Vec matvec(const TensorView& w, const Vec& x) {
  Vec y(static_cast<std::size_t>(w.ne[1]));
  for (std::int64_t o = 0; o < w.ne[1]; ++o) {
    const Vec r = row_of(w, o);
    double s = 0;
    for (std::size_t i = 0; i < x.size(); ++i) s += r[i] * x[i];
    y[static_cast<std::size_t>(o)] = s;
  }
  return y;
}

Vec rms_norm(const Vec& x, const float* w, std::size_t off, std::size_t n, double eps) {
  double ss = 0;
  for (std::size_t i = 0; i < n; ++i) ss += x[off + i] * x[off + i];
  const double r = 1.0 / std::sqrt(ss / static_cast<double>(n) + eps);
  Vec y(n);
  for (std::size_t i = 0; i < n; ++i) y[i] = x[off + i] * r * w[i];
  return y;
}

void rope_halves(double* v, int n_rot, int pos, double theta, double scale) {
  const int half = n_rot / 2;
  for (int i = 0; i < half; ++i) {
    const double a = pos / scale * std::pow(theta, -2.0 * i / n_rot);
    const double x0 = v[i], x1 = v[i + half];
    v[i] = x0 * std::cos(a) - x1 * std::sin(a);
    v[i + half] = x0 * std::sin(a) + x1 * std::cos(a);
  }
}

double capped(double x, float cap) { return cap > 0 ? cap * std::tanh(x / cap) : x; }

// Logits (T, V) of the whole sequence by the definitions.
std::vector<Vec> reference_logits(const LlamaModel& m, const std::vector<int>& tokens) {
  const LlamaConfig& c = m.config();
  const LlamaWeights& w = m.weights();
  const int T = static_cast<int>(tokens.size()), E = c.n_embd, hd = c.head_dim, group = c.n_head / c.n_head_kv;
  std::vector<Vec> x(static_cast<std::size_t>(T));
  for (int t = 0; t < T; ++t) {
    x[t] = row_of(w.token_embd, tokens[static_cast<std::size_t>(t)]);
    for (double& v : x[t]) v *= std::sqrt(static_cast<double>(E));
  }
  for (int il = 0; il < c.n_layer; ++il) {
    const LlamaLayerWeights& l = w.layers[static_cast<std::size_t>(il)];
    const bool windowed = il % c.swa_pattern < c.swa_pattern - 1;
    const double theta = windowed && c.rope_theta_swa > 0 ? c.rope_theta_swa : c.rope_theta;
    const double scale = windowed && c.rope_theta_swa > 0 ? c.rope_scale_swa : c.rope_scale;
    std::vector<Vec> q(T), k(T), v(T);
    for (int t = 0; t < T; ++t) {
      const Vec xn = rms_norm(x[t], l.attn_norm.data, 0, E, c.rms_eps);
      q[t] = matvec(l.wq, xn), k[t] = matvec(l.wk, xn), v[t] = matvec(l.wv, xn);
      if (c.qk_norm) {
        for (int h = 0; h < c.n_head; ++h) {
          const Vec n = rms_norm(q[t], l.attn_q_norm.data, h * hd, hd, c.rms_eps);
          std::copy(n.begin(), n.end(), q[t].begin() + h * hd);
        }
        for (int h = 0; h < c.n_head_kv; ++h) {
          const Vec n = rms_norm(k[t], l.attn_k_norm.data, h * hd, hd, c.rms_eps);
          std::copy(n.begin(), n.end(), k[t].begin() + h * hd);
        }
      }
      for (int h = 0; h < c.n_head; ++h) rope_halves(q[t].data() + h * hd, c.n_rot, t, theta, scale);
      for (int h = 0; h < c.n_head_kv; ++h) rope_halves(k[t].data() + h * hd, c.n_rot, t, theta, scale);
    }
    for (int t = 0; t < T; ++t) {
      Vec attn(static_cast<std::size_t>(c.q_dim()), 0.0);
      for (int h = 0; h < c.n_head; ++h) {
        const int kvh = h / group;
        Vec s(static_cast<std::size_t>(t + 1));
        double mx = -1e300;
        for (int p = 0; p <= t; ++p) {
          double d = 0;
          for (int i = 0; i < hd; ++i) d += q[t][h * hd + i] * k[p][kvh * hd + i];
          s[p] = capped(d * c.attn_scale, c.attn_softcap);
          if (windowed && t - p >= c.n_swa) s[p] = -INFINITY;  // the mask
          mx = std::max(mx, s[p]);
        }
        double sum = 0;
        for (double& e : s) sum += (e = std::exp(e - mx));
        for (int p = 0; p <= t; ++p)
          for (int i = 0; i < hd; ++i) attn[h * hd + i] += s[p] / sum * v[p][kvh * hd + i];
      }
      const Vec o = rms_norm(matvec(l.wo, attn), l.attn_post_norm.data, 0, E, c.rms_eps);
      for (int i = 0; i < E; ++i) x[t][i] += o[i];
      const Vec xn = rms_norm(x[t], l.ffn_norm.data, 0, E, c.rms_eps);
      const Vec g = matvec(l.w_gate, xn), u = matvec(l.w_up, xn);
      Vec hdn(g.size());
      for (std::size_t i = 0; i < g.size(); ++i)
        hdn[i] = 0.5 * g[i] * (1 + std::tanh(std::sqrt(2 / M_PI) * (g[i] + 0.044715 * g[i] * g[i] * g[i]))) * u[i];
      const Vec d = rms_norm(matvec(l.w_down, hdn), l.ffn_post_norm.data, 0, E, c.rms_eps);
      for (int i = 0; i < E; ++i) x[t][i] += d[i];
    }
  }
  std::vector<Vec> logits(static_cast<std::size_t>(T));
  for (int t = 0; t < T; ++t) {
    logits[t] = matvec(w.output, rms_norm(x[t], w.output_norm.data, 0, E, c.rms_eps));
    for (double& l : logits[t]) l = capped(l, c.final_softcap);
  }
  return logits;
}

struct Case {
  const char* arch;
  int layers;
  std::vector<std::pair<std::string, GgufValue>> keys;
};

std::string write_model(const Case& tc) {
  SyntheticModelSpec spec;
  LlamaConfig& c = spec.config;
  c.arch = tc.arch;
  c.n_embd = 64, c.n_layer = tc.layers, c.n_head = 4, c.n_head_kv = 2, c.head_dim = 32, c.n_ff = 96;
  c.n_rot = 32, c.n_ctx_train = 512, c.n_vocab = 101, c.rms_eps = 1e-6f;
  spec.tied_output = true;
  spec.overrides = tc.keys;
  const std::string path = test::temp_dir() + "/" + tc.arch + "_forward.gguf";
  write_synthetic_model(spec, path);
  return path;
}

double max_abs_diff(const float* a, const Vec& b) {
  double d = 0;
  for (std::size_t i = 0; i < b.size(); ++i) d = std::max(d, std::fabs(a[i] - b[i]));
  return d;
}

void check_against_reference(const Case& tc) {
  auto m = LlamaModel::load(write_model(tc));
  const LlamaConfig& c = m->config();
  ASSERT_GT(c.n_swa, 0);
  std::vector<int> tokens;
  for (int i = 0; i < 45; ++i) tokens.push_back((i * 37 + 11) % c.n_vocab);
  const int T = static_cast<int>(tokens.size()), V = c.n_vocab;
  const std::vector<Vec> want = reference_logits(*m, tokens);
  ThreadPool pool(2);
  // f32 rounding against double; an f16 or q8_0 cache rounds keys and values on top (q8_0's 1%
  // moves logits of ~60 by up to ~0.7). Prefill and decode read the same cache rows, so they
  // must agree with each other far more closely than with the reference.
  for (auto [kv, tol] : {std::pair{DType::F32, 2e-3}, std::pair{DType::F16, 5e-2}, std::pair{DType::Q8_0, 1.5}}) {
    KvCache cache = m->make_kv_cache(T, kv);
    const int seq = cache.add_sequence();
    Batch all;
    for (int t = 0; t < T; ++t) all.add(tokens[t], t, seq, true);
    std::vector<float> logits(static_cast<std::size_t>(T) * V);
    m->forward(all, cache, pool, logits.data());
    double worst = 0;
    for (int t = 0; t < T; ++t) worst = std::max(worst, max_abs_diff(&logits[static_cast<std::size_t>(t) * V], want[t]));
    EXPECT_LT(worst, tol) << tc.arch << " prefill, kv " << dtype_name(kv);

    KvCache cache2 = m->make_kv_cache(T, kv);
    const int seq2 = cache2.add_sequence();
    std::vector<float> step(static_cast<std::size_t>(V));
    double worst_d = 0, prefill_vs_decode = 0;
    for (int t = 0; t < T; ++t) {
      Batch b;
      b.add(tokens[t], t, seq2, true);
      m->forward(b, cache2, pool, step.data());
      worst_d = std::max(worst_d, max_abs_diff(step.data(), want[t]));
      for (int i = 0; i < V; ++i)
        prefill_vs_decode = std::max(prefill_vs_decode, static_cast<double>(std::fabs(
                                                            step[i] - logits[static_cast<std::size_t>(t) * V + i])));
    }
    EXPECT_LT(worst_d, tol) << tc.arch << " decode, kv " << dtype_name(kv);
    EXPECT_LT(prefill_vs_decode, 2e-2) << tc.arch << " prefill against decode, kv " << dtype_name(kv);
  }
}

TEST(GemmaForward, Gemma2WindowedAndCappedMatchesReference) {
  // Window 7 over 45 positions (starts fall mid-block of 16); caps tight enough to bite.
  check_against_reference({"gemma2", 3, {{"gemma2.attention.sliding_window", gguf_value::u32(7)},
                                         {"gemma2.attn_logit_softcapping", gguf_value::f32(1.5f)},
                                         {"gemma2.final_logit_softcapping", gguf_value::f32(10.0f)}}});
}

TEST(GemmaForward, Gemma3LocalAndGlobalLayersMatchReference) {
  // 7 layers: 0-4 and 6 windowed (5 positions, base 10000), 5 global (base 1e6, linear scaling 2).
  check_against_reference({"gemma3", 7, {{"gemma3.attention.sliding_window", gguf_value::u32(5)},
                                         {"gemma3.rope.freq_base", gguf_value::f32(1e6f)},
                                         {"gemma3.rope.scaling.type", gguf_value::string("linear")},
                                         {"gemma3.rope.scaling.factor", gguf_value::f32(2.0f)}}});
}

TEST(GemmaForward, WindowMattersAndCapsBite) {
  // The same gemma2 file with the window as long as the sequence must give other logits: the
  // window is what the check above depends on, not a no-op.
  auto narrow = LlamaModel::load(write_model({"gemma2", 3, {{"gemma2.attention.sliding_window", gguf_value::u32(7)}}}));
  const std::vector<int> tokens = {3, 50, 7, 99, 12, 40, 41, 42, 8, 9, 10, 60, 61, 62, 1};
  const std::vector<Vec> a = reference_logits(*narrow, tokens);
  ThreadPool pool(1);
  KvCache cache = narrow->make_kv_cache(32, DType::F32);
  const int seq = cache.add_sequence();
  Batch all;
  for (std::size_t t = 0; t < tokens.size(); ++t) all.add(tokens[t], static_cast<int>(t), seq, t + 1 == tokens.size());
  std::vector<float> logits(static_cast<std::size_t>(narrow->config().n_vocab));
  narrow->forward(all, cache, pool, logits.data());
  EXPECT_LT(max_abs_diff(logits.data(), a.back()), 2e-3);
  auto wide = LlamaModel::load(write_model({"gemma2", 3, {{"gemma2.attention.sliding_window", gguf_value::u32(64)}}}));
  KvCache cache2 = wide->make_kv_cache(32, DType::F32);
  const int seq2 = cache2.add_sequence();
  Batch all2;
  for (std::size_t t = 0; t < tokens.size(); ++t) all2.add(tokens[t], static_cast<int>(t), seq2, t + 1 == tokens.size());
  std::vector<float> logits2(logits.size());
  wide->forward(all2, cache2, pool, logits2.data());
  double d = 0;
  for (std::size_t i = 0; i < logits.size(); ++i) d = std::max(d, static_cast<double>(std::fabs(logits[i] - logits2[i])));
  EXPECT_GT(d, 0.05) << "a window of 7 and one of 64 gave the same logits at position 14";
}

TEST(GemmaForward, BadWindowAndCapKeysAreRefusedByName) {
  for (auto [key, value] : {std::pair{"gemma2.attention.sliding_window", gguf_value::u32(0)},
                            std::pair{"gemma2.attn_logit_softcapping", gguf_value::f32(0.0f)},
                            std::pair{"gemma2.final_logit_softcapping", gguf_value::f32(-3.0f)}}) {
    try {
      write_model({"gemma2", 2, {{key, value}}});
      ADD_FAILURE() << key << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
  }
  try {
    write_model({"gemma3", 2, {{"gemma3.attention.sliding_window", gguf_value::string("wide")}}});
    ADD_FAILURE() << "a string window accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gemma3.attention.sliding_window"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kiln
