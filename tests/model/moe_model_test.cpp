// Mixture-of-experts models end to end in kiln: a mixtral-style and a qwen3moe-style model
// written by kiln synth's writer load with the experts bound; a prompt in one batch (tokens
// grouped by expert) gives the logits of the same tokens one per forward (decode); the bytes a
// decode step reads are the active parameters'; metadata or tensors that disagree about the
// experts are refused naming the key or the tensor.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "core/error.h"
#include "core/thread_pool.h"
#include "format/gguf_file.h"
#include "format/gguf_writer.h"
#include "model/llama_model.h"
#include "model/synthetic_model.h"
#include "runtime/model_stats.h"
#include "test_support.h"

namespace kiln {
namespace {

SyntheticModelSpec moe_spec(const std::string& arch, int n_expert, int n_used, int n_ff_exp) {
  SyntheticModelSpec s;
  LlamaConfig& c = s.config;
  c.arch = arch;
  c.n_vocab = 96, c.n_embd = 64, c.n_layer = 2, c.n_head = 4, c.n_head_kv = 2, c.head_dim = 16, c.n_ff = 96;
  c.n_rot = 16, c.n_ctx_train = 256, c.rms_eps = 1e-6f;
  c.n_expert = n_expert, c.n_expert_used = n_used, c.n_ff_exp = n_ff_exp;
  return s;
}

std::string write_model(const SyntheticModelSpec& spec, const std::string& name) {
  const std::string path = test::temp_dir() + "/" + name;
  write_synthetic_model(spec, path);
  return path;
}

// The same file with `edit` applied to its metadata and tensors (dropped when it returns false).
std::string rewrite(const std::string& in, const std::string& name,
                    const std::function<void(GgufWriter&)>& edit_metadata,
                    const std::function<bool(const GgufTensorInfo&)>& keep) {
  const std::unique_ptr<GgufFile> f = GgufFile::open(in);
  GgufWriter w;
  for (const auto& [key, value] : f->metadata()) w.add_metadata(key, value);
  edit_metadata(w);
  for (const GgufTensorInfo& t : f->tensors()) {
    if (!keep(t)) continue;
    const TensorView v = f->tensor_view(t);
    w.add_tensor(GgufTensorSpec(v.name, v.dtype, v.n_dims, v.ne),
                 [v](GgufDataSink& out) { out.write(v.data, v.n_bytes()); });
  }
  const std::string path = test::temp_dir() + "/" + name;
  w.write(path);
  return path;
}

std::vector<float> prompt_logits(LlamaModel& m, const std::vector<int>& tokens, bool one_batch) {
  ThreadPool pool(2);
  const int V = m.config().n_vocab;
  KvCache cache = m.make_kv_cache(64, DType::F32);
  const int seq = cache.add_sequence();
  std::vector<float> logits(tokens.size() * static_cast<std::size_t>(V));
  if (one_batch) {
    Batch b;
    for (int i = 0; i < static_cast<int>(tokens.size()); ++i) b.add(tokens[static_cast<std::size_t>(i)], i, seq, true);
    m.forward(b, cache, pool, logits.data());
  } else {
    for (int i = 0; i < static_cast<int>(tokens.size()); ++i) {
      Batch b;
      b.add(tokens[static_cast<std::size_t>(i)], i, seq, true);
      m.forward(b, cache, pool, logits.data() + static_cast<std::size_t>(i) * V);
    }
  }
  return logits;
}

class MoeModel : public ::testing::TestWithParam<const char*> {};

TEST_P(MoeModel, PrefillEqualsDecodeAndStatsCountActiveExperts) {
  const std::string arch = GetParam();
  const int X = 8, K = 2, FX = arch == "qwen3moe" ? 48 : 96;
  const std::string path = write_model(moe_spec(arch, X, K, FX), arch + "_moe.gguf");
  std::unique_ptr<LlamaModel> m = LlamaModel::load(path);
  const LlamaConfig& c = m->config();
  ASSERT_EQ(c.n_expert, X);
  ASSERT_EQ(c.n_expert_used, K);
  ASSERT_EQ(c.n_ff_exp, FX);
  EXPECT_EQ(c.qk_norm, arch == "qwen3moe");
  const LlamaLayerWeights& l = m->weights().layers[0];
  EXPECT_EQ(l.ffn_gate_exps.ne, (std::array<std::int64_t, 4>{64, FX, X, 1}));
  EXPECT_EQ(l.ffn_down_exps.ne, (std::array<std::int64_t, 4>{FX, 64, X, 1}));
  EXPECT_EQ(l.ffn_gate_inp.ne, (std::array<std::int64_t, 4>{64, X, 1, 1}));
  EXPECT_EQ(l.w_gate.data, nullptr);  // no dense FFN

  // 24 tokens in one batch: every expert is chosen by several rows at once.
  std::vector<int> tokens;
  for (int i = 0; i < 24; ++i) tokens.push_back((i * 37 + 5) % c.n_vocab);
  const std::vector<float> batched = prompt_logits(*m, tokens, true);
  const std::vector<float> stepped = prompt_logits(*m, tokens, false);
  double max_err = 0, ss = 0;
  for (std::size_t i = 0; i < batched.size(); ++i) {
    max_err = std::max(max_err, std::fabs(static_cast<double>(batched[i]) - stepped[i]));
    ss += static_cast<double>(stepped[i]) * stepped[i];
  }
  EXPECT_GT(ss / static_cast<double>(stepped.size()), 0.5);  // not flat
  EXPECT_LT(max_err, 1e-3);

  // Decode reads attention, the router, K of X experts, the output matrix and an embedding row.
  const ModelStats s = model_stats(*m);
  const std::size_t E = 64, V = static_cast<std::size_t>(c.n_vocab), QD = 64, KVD = 32;
  const std::size_t attention = (E * QD + 2 * E * KVD + QD * E) * 4, router = E * X * 4;
  const std::size_t experts = 3 * E * static_cast<std::size_t>(FX) * 4 * K;
  EXPECT_EQ(s.decode_bytes_per_token, 2 * (attention + router + experts) + E * V * 4 + E * 4);
  EXPECT_EQ(s.weight_bytes, 2 * (attention + router + experts / K * X) + 2 * E * V * 4);
}

INSTANTIATE_TEST_SUITE_P(Families, MoeModel, ::testing::Values("llama", "qwen3moe"));

void expect_error(const std::function<void()>& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing: " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(MoeModel, InconsistentMetadataIsRefusedNamingTheKey) {
  auto config_of = [](SyntheticModelSpec s) {
    const GgufMetadata m = synthetic_model_metadata(s);
    return llama_config_from_metadata(m, [](const std::string&) { return std::nullopt; });
  };
  SyntheticModelSpec used_too_many = moe_spec("llama", 4, 2, 96);
  used_too_many.overrides.push_back({"llama.expert_used_count", gguf_value::u32(5)});
  expect_error([&] { config_of(used_too_many); }, "llama.expert_used_count = 5 is out of range");
  SyntheticModelSpec too_many = moe_spec("qwen3moe", 4, 2, 96);
  too_many.overrides.push_back({"qwen3moe.expert_count", gguf_value::u32(100000)});
  expect_error([&] { config_of(too_many); }, "qwen3moe.expert_count = 100000 is out of range");
  SyntheticModelSpec no_ff = moe_spec("qwen3moe", 4, 2, 96);
  no_ff.overrides.push_back({"qwen3moe.expert_feed_forward_length", gguf_value::u32(0)});
  expect_error([&] { config_of(no_ff); }, "qwen3moe.expert_feed_forward_length = 0 is out of range");

  // qwen3moe without expert counts at all: the keys are required.
  const std::string path = write_model(moe_spec("qwen3moe", 4, 2, 32), "qwen3moe_keys.gguf");
  const std::string no_count = rewrite(
      path, "qwen3moe_no_count.gguf", [](GgufWriter& w) { w.remove_metadata("qwen3moe.expert_count"); },
      [](const GgufTensorInfo&) { return true; });
  expect_error([&] { LlamaModel::load(no_count); }, "missing metadata key qwen3moe.expert_count");
  const std::string no_used = rewrite(
      path, "qwen3moe_no_used.gguf", [](GgufWriter& w) { w.remove_metadata("qwen3moe.expert_used_count"); },
      [](const GgufTensorInfo&) { return true; });
  expect_error([&] { LlamaModel::load(no_used); }, "missing metadata key qwen3moe.expert_used_count");
}

TEST(MoeModel, TensorsThatDisagreeWithTheExpertCountAreRefusedNamingTheTensor) {
  const std::string path = write_model(moe_spec("llama", 4, 2, 96), "mixtral_tensors.gguf");
  // The metadata says 8 experts, the tensors hold 4.
  const std::string eight = rewrite(
      path, "mixtral_eight.gguf", [](GgufWriter& w) { w.set_metadata("llama.expert_count", gguf_value::u32(8)); },
      [](const GgufTensorInfo&) { return true; });
  expect_error([&] { LlamaModel::load(eight); }, "tensor blk.0.ffn_gate_inp.weight has shape [64, 4], expected [64, 8]");
  // One stacked expert tensor missing.
  const std::string missing = rewrite(
      path, "mixtral_missing.gguf", [](GgufWriter&) {},
      [](const GgufTensorInfo& t) { return t.name != "blk.1.ffn_up_exps.weight"; });
  expect_error([&] { LlamaModel::load(missing); }, "missing tensor blk.1.ffn_up_exps.weight");
  // Experts claimed by a model that has a dense FFN.
  const std::string dense = write_model(moe_spec("llama", 0, 0, 0), "llama_dense.gguf");
  const std::string claimed = rewrite(
      dense, "llama_claims_experts.gguf",
      [](GgufWriter& w) {
        w.set_metadata("llama.expert_count", gguf_value::u32(4));
        w.set_metadata("llama.expert_used_count", gguf_value::u32(2));
      },
      [](const GgufTensorInfo&) { return true; });
  expect_error([&] { LlamaModel::load(claimed); }, "missing tensor blk.0.ffn_gate_inp.weight");
}

}  // namespace
}  // namespace kiln
