// Rope's scaling variants against their formulas written out here as ggml computes them
// (ggml-cpu's rope_yarn and ggml_rope_yarn_corr_dims, with llama.cpp's attention factor), and the
// metadata that asks for them: YaRN's ramp and magnitude, linear, LongRoPE's factors and
// attention factor; phi3's fused tensors bound as row views; bad keys and tensors named.
#include "model/rope.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "format/gguf_file.h"
#include "format/gguf_writer.h"
#include "model/llama_model.h"
#include "model/synthetic_model.h"
#include "test_support.h"

namespace kiln {
namespace {

LlamaConfig base_config() {
  LlamaConfig c;
  c.arch = "qwen3";
  c.n_embd = 64, c.n_layer = 1, c.n_head = 2, c.n_head_kv = 1, c.head_dim = 64, c.n_rot = 64, c.n_ff = 64;
  c.n_ctx_train = 4096, c.rope_theta = 1000000.0f;
  c.rope_layout = RopeLayout::Halves;
  return c;
}

// ggml's YaRN for one pair: theta_extrap = pos * base^(-2i/n_rot) / factor.
void ggml_yarn(const LlamaConfig& c, int pos, int i, const float* ff, float* cos_out, float* sin_out) {
  const float freq_scale = 1.0f / c.rope_scale;
  auto corr_dim = [&](float n_rot_turns) {
    return c.n_rot * logf(c.rope_orig_ctx / (n_rot_turns * 2 * static_cast<float>(M_PI))) / (2 * logf(c.rope_theta));
  };
  const float low = std::max(0.0f, floorf(corr_dim(c.yarn_beta_fast)));
  const float high = std::min(static_cast<float>(c.n_rot - 1), ceilf(corr_dim(c.yarn_beta_slow)));
  const double theta_extrap = pos * std::pow(static_cast<double>(c.rope_theta), -2.0 * i / c.n_rot) / (ff ? ff[i] : 1.0f);
  const double theta_interp = freq_scale * theta_extrap;
  const float y = (i - low) / std::max(0.001f, high - low);
  const float ramp = 1 - std::min(1.0f, std::max(0.0f, y));
  const double theta = theta_interp * (1 - ramp) + theta_extrap * ramp;
  // llama.cpp: yarn_attn_factor = get_mscale(s) / (1 + 0.1 ln s) * rope.scaling.attn_factor, and
  // rope_yarn multiplies by 1 + 0.1 ln s again.
  const float s = c.rope_scale;
  const float mscale = (s > 1 ? (1 + 0.1f * logf(s)) : 1.0f) / (1 + 0.1f * logf(s)) * c.rope_attn_factor *
                       (1 + 0.1f * logf(1.0f / freq_scale));
  *cos_out = static_cast<float>(std::cos(theta)) * mscale;
  *sin_out = static_cast<float>(std::sin(theta)) * mscale;
}

TEST(RopeScaling, YarnMatchesGgmlPairByPair) {
  for (const float factor : {4.0f, 0.5f}) {
    LlamaConfig c = base_config();
    c.rope_scaling = RopeScaling::Yarn;
    c.rope_scale = factor;
    c.rope_orig_ctx = 256;
    c.rope_attn_factor = 1.25f;
    const Rope rope(c, nullptr);
    std::vector<float> cs(static_cast<std::size_t>(c.n_rot));
    int mixed = 0;
    for (const int pos : {0, 1, 7, 300, 4000}) {
      rope.angles(pos, cs.data(), cs.data() + c.n_rot / 2);
      for (int i = 0; i < c.n_rot / 2; ++i) {
        float want_cos = 0, want_sin = 0;
        ggml_yarn(c, pos, i, nullptr, &want_cos, &want_sin);
        EXPECT_NEAR(cs[static_cast<std::size_t>(i)], want_cos, 2e-4) << "pos " << pos << " pair " << i;
        EXPECT_NEAR(cs[static_cast<std::size_t>(c.n_rot / 2 + i)], want_sin, 2e-4) << "pos " << pos << " pair " << i;
      }
    }
    float low = 0, high = 0;
    yarn_correction_range(c.n_rot, c.rope_orig_ctx, c.rope_theta, c.yarn_beta_fast, c.yarn_beta_slow, &low, &high);
    for (int i = 0; i < c.n_rot / 2; ++i) mixed += (i > low && i < high);
    EXPECT_GT(mixed, 2) << "the ramp should cross several pairs at this original context";
    EXPECT_FLOAT_EQ(rope.magnitude(), 1.25f * (factor > 1 ? 1 + 0.1f * std::log(factor) : 1.0f));
  }
}

TEST(RopeScaling, LinearAndFactorsDivideTheAngle) {
  LlamaConfig c = base_config();
  c.rope_scale = 2.0f;
  std::vector<float> factors(static_cast<std::size_t>(c.n_rot / 2));
  for (std::size_t i = 0; i < factors.size(); ++i) factors[i] = 1.0f + static_cast<float>(i);
  c.rope_attn_factor = 1.19f;
  const Rope rope(c, factors.data());
  std::vector<float> cs(static_cast<std::size_t>(c.n_rot));
  rope.angles(100, cs.data(), cs.data() + c.n_rot / 2);
  for (int i = 0; i < c.n_rot / 2; ++i) {
    const double a = 100.0 / 2.0 * std::pow(1e6, -2.0 * i / c.n_rot) / factors[static_cast<std::size_t>(i)];
    EXPECT_NEAR(cs[static_cast<std::size_t>(i)], std::cos(a) * 1.19, 1e-5);
    EXPECT_NEAR(cs[static_cast<std::size_t>(c.n_rot / 2 + i)], std::sin(a) * 1.19, 1e-5);
  }
}

// ---- metadata and tensors ----------------------------------------------------------------------

SyntheticModelSpec spec_of(const std::string& arch) {
  SyntheticModelSpec s;
  s.config.arch = arch;
  s.config.n_embd = 64, s.config.n_layer = 2, s.config.n_head = 4, s.config.n_head_kv = 2, s.config.head_dim = 16;
  s.config.n_rot = 16, s.config.n_ff = 96, s.config.n_ctx_train = 1024, s.config.n_vocab = 50;
  return s;
}

std::string load_error(const std::string& path) {
  try {
    LlamaModel::load(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(RopeScalingMetadata, YarnKeysAreRead) {
  SyntheticModelSpec s = spec_of("qwen3");
  s.overrides = {{"qwen3.rope.scaling.type", gguf_value::string("yarn")},
                 {"qwen3.rope.scaling.factor", gguf_value::f32(4.0f)},
                 {"qwen3.rope.scaling.original_context_length", gguf_value::u32(256)},
                 {"qwen3.rope.scaling.yarn_beta_fast", gguf_value::f32(16.0f)}};
  const std::string path = test::temp_dir() + "/yarn_keys.gguf";
  const LlamaConfig c = write_synthetic_model(s, path);
  EXPECT_EQ(c.rope_scaling, RopeScaling::Yarn);
  EXPECT_FLOAT_EQ(c.rope_scale, 4.0f);
  EXPECT_EQ(c.rope_orig_ctx, 256);
  EXPECT_FLOAT_EQ(c.yarn_beta_fast, 16.0f);
  EXPECT_FLOAT_EQ(c.yarn_beta_slow, 1.0f);
  EXPECT_EQ(LlamaModel::load(path)->config().rope_scaling, RopeScaling::Yarn);
}

TEST(RopeScalingMetadata, BadScalingKeysAreNamed) {
  const std::vector<std::pair<std::pair<std::string, GgufValue>, std::string>> bad = {
      {{"qwen3.rope.scaling.type", gguf_value::string("dynamic")}, "rope.scaling.type 'dynamic' is not supported"},
      {{"qwen3.rope.scaling.attn_factor", gguf_value::f32(-1.0f)}, "rope.scaling.attn_factor"},
      {{"qwen3.rope.scaling.original_context_length", gguf_value::u32(0)}, "rope.scaling.original_context_length"},
  };
  for (const auto& [kv, needle] : bad) {
    SyntheticModelSpec s = spec_of("qwen3");
    s.overrides = {kv};
    try {
      write_synthetic_model(s, test::temp_dir() + "/bad_scaling.gguf");
      ADD_FAILURE() << "accepted " << kv.first;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
}

TEST(Phi3Tensors, FusedMatricesBindAsRowViewsOfOneTensor) {
  SyntheticModelSpec s = spec_of("phi3");
  s.config.n_head_kv = 4;
  const std::string path = test::temp_dir() + "/phi3_fused.gguf";
  write_synthetic_model(s, path);
  std::unique_ptr<LlamaModel> m = LlamaModel::load(path);
  const LlamaConfig& c = m->config();
  EXPECT_TRUE(c.fused_qkv);
  const LlamaLayerWeights& l = m->weights().layers[1];
  const std::optional<TensorView> qkv = m->source().tensor("blk.1.attn_qkv.weight");
  const std::optional<TensorView> up = m->source().tensor("blk.1.ffn_up.weight");
  ASSERT_TRUE(qkv && up);
  EXPECT_EQ(l.wq.data, qkv->data);
  EXPECT_EQ(l.wq.ne[1], c.q_dim());
  EXPECT_EQ(l.wk.data, qkv->row(c.q_dim()));
  EXPECT_EQ(l.wv.data, qkv->row(c.q_dim() + c.kv_dim()));
  EXPECT_EQ(l.wv.ne[1], c.kv_dim());
  EXPECT_EQ(l.w_gate.data, up->data);
  EXPECT_EQ(l.w_up.data, up->row(c.n_ff));
  EXPECT_EQ(l.w_up.ne[1], c.n_ff);
  EXPECT_FALSE(m->weights().rope_factors_long.has_value());
}

TEST(Phi3Tensors, LongRopeFactorsAreWrittenAndPickedByTheCacheSize) {
  SyntheticModelSpec s = spec_of("phi3");
  s.overrides = {{"phi3.rope.scaling.original_context_length", gguf_value::u32(64)},
                 {"phi3.rope.scaling.attn_factor", gguf_value::f32(1.19f)}};
  const std::string path = test::temp_dir() + "/phi3_longrope.gguf";
  write_synthetic_model(s, path);
  std::unique_ptr<LlamaModel> m = LlamaModel::load(path);
  ASSERT_TRUE(m->weights().rope_factors_long && m->weights().rope_factors_short);
  EXPECT_FLOAT_EQ(m->config().rope_attn_factor, 1.19f);
  // The same prompt under a cache within the original context and one past it: the long factors
  // change the logits of every position after the first.
  ThreadPool pool(1);
  auto logits_with = [&](int capacity) {
    KvCache cache = m->make_kv_cache(capacity, DType::F32);
    const int seq = cache.add_sequence();
    Batch b;
    for (int i = 0; i < 4; ++i) b.add(3 + i, i, seq, i == 3);
    std::vector<float> out(static_cast<std::size_t>(m->config().n_vocab));
    m->forward(b, cache, pool, out.data());
    return out;
  };
  const std::vector<float> short_ctx = logits_with(64), short_again = logits_with(48), long_ctx = logits_with(128);
  EXPECT_EQ(short_ctx, short_again);
  EXPECT_NE(short_ctx, long_ctx);
}

// A copy of `from` with general.architecture and the "<arch>." keys renamed to `arch`, without
// the tensors `drop` names.
void rewrite(const std::string& from, const std::string& to, const std::string& arch, const std::string& drop = "") {
  const std::unique_ptr<GgufFile> f = GgufFile::open(from);
  const std::string old_prefix = *f->get_string("general.architecture") + ".";
  GgufWriter w;
  for (const auto& [key, value] : f->metadata()) {
    if (key == "general.architecture") w.add_metadata(key, gguf_value::string(arch));
    else if (key.rfind(old_prefix, 0) == 0) w.add_metadata(arch + "." + key.substr(old_prefix.size()), value);
    else w.add_metadata(key, value);
  }
  for (const GgufTensorInfo& t : f->tensors()) {
    if (t.name == drop) continue;
    const TensorView v = f->tensor_view(t);
    w.add_tensor(GgufTensorSpec(t.name, *t.dtype, t.n_dims, t.ne),
                 [v](GgufDataSink& out) { out.write(v.data, v.n_bytes()); });
  }
  w.write(to);
}

TEST(Phi3Tensors, MissingOrMisshapenTensorsAreNamed) {
  // Llama's separate q/k/v are read (llama.cpp accepts them too), but its ffn_up is half of
  // phi3's gate-and-up.
  const std::string llama = test::temp_dir() + "/phi3_from_llama_src.gguf", as_phi3 = test::temp_dir() + "/phi3_from_llama.gguf";
  write_synthetic_model(spec_of("llama"), llama);
  rewrite(llama, as_phi3, "phi3");
  EXPECT_NE(load_error(as_phi3).find("tensor blk.0.ffn_up.weight has shape [64, 96], expected [64, 192]"),
            std::string::npos)
      << load_error(as_phi3);
  // A phi3 file that lost one layer's attn_qkv.
  const std::string phi3 = test::temp_dir() + "/phi3_whole.gguf", holed = test::temp_dir() + "/phi3_holed.gguf";
  write_synthetic_model(spec_of("phi3"), phi3);
  EXPECT_EQ(load_error(phi3), "");
  rewrite(phi3, holed, "phi3", "blk.1.attn_qkv.weight");
  EXPECT_NE(load_error(holed).find("missing tensor blk.1.attn_qkv.weight"), std::string::npos) << load_error(holed);
  // A LongRoPE factor that is not a positive number.
  SyntheticModelSpec s = spec_of("phi3");
  s.overrides = {{"phi3.rope.scaling.original_context_length", gguf_value::u32(64)}};
  const std::string factors = test::temp_dir() + "/phi3_factors.gguf";
  write_synthetic_model(s, factors);
  const std::unique_ptr<GgufFile> f = GgufFile::open(factors);
  EXPECT_NE(f->find_tensor("rope_factors_long.weight"), nullptr);
}

}  // namespace
}  // namespace kiln
