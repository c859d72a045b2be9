// kiln prune on small random models. The row and column selection is checked against an
// equivalent the forward pass already computes: removing a KV group gives the logits of the
// original model with that group's query heads' columns of attn_output set to zero (the heads
// still run, but their output is dropped), removing an FFN channel those of ffn_down's column
// zeroed, dropping a layer those of its attn_output and ffn_down zeroed (the residual passes
// through). Nothing removed gives the input back byte for byte. Importance is checked on models
// built so that one group, channel and layer are the least important; sizes and bad flags on
// the resolver and the command line.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "convert/random_llama_gguf.h"
#include "core/error.h"
#include "eval/chunks.h"
#include "format/gguf_writer.h"
#include "format/tensor_source.h"
#include "model/llama_model.h"
#include "optimize/prune_importance.h"
#include "optimize/prune_model.h"
#include "optimize/prune_plan.h"
#include "test_support.h"

namespace kiln::optimize {
namespace {

using ::testing::HasSubstr;

// Edits an f32 tensor in place: (name, ne, values).
using Edit = std::function<void(const std::string&, const std::array<std::int64_t, 4>&, std::vector<float>&)>;

// A copy of the f32 GGUF `in` at `out` with `edit` applied to every tensor.
void copy_edited(const std::string& in, const std::string& out, const Edit& edit) {
  auto src = TensorSource::open(in);
  GgufWriter w;
  for (const auto& [k, v] : src->metadata().metadata()) w.add_metadata(k, v);
  for (const SourceTensor& t : src->tensors()) {
    auto data = std::make_shared<std::vector<float>>(static_cast<std::size_t>(t.n_elements()));
    std::memcpy(data->data(), t.data, data->size() * sizeof(float));
    edit(t.name, t.ne, *data);
    w.add_tensor(GgufTensorSpec(t.name, DType::F32, t.n_dims, t.ne),
                 [data](GgufDataSink& s) { s.write(data->data(), data->size() * sizeof(float)); });
  }
  w.write(out);
}

// Zeroes columns [c0, c1) of a (rows, ne[0]) matrix.
void zero_columns(const std::array<std::int64_t, 4>& ne, std::vector<float>& v, std::int64_t c0, std::int64_t c1) {
  for (std::int64_t r = 0; r < ne[1]; ++r)
    for (std::int64_t c = c0; c < c1; ++c) v[static_cast<std::size_t>(r * ne[0] + c)] = 0.0f;
}

// The logits of every position of `tokens` (one sequence).
std::vector<float> logits_of(const std::string& path, const std::vector<int>& tokens) {
  auto model = LlamaModel::load(path);
  ThreadPool pool(2);
  KvCache cache = model->make_kv_cache(static_cast<int>(tokens.size()));
  const int seq = cache.add_sequence();
  Batch b;
  for (std::size_t i = 0; i < tokens.size(); ++i) b.add(tokens[i], static_cast<int>(i), seq, true);
  std::vector<float> logits(tokens.size() * static_cast<std::size_t>(model->config().n_vocab));
  model->forward(b, cache, pool, logits.data());
  return logits;
}

void expect_close(const std::vector<float>& a, const std::vector<float>& b, float tol) {
  ASSERT_EQ(a.size(), b.size());
  float worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
  EXPECT_LE(worst, tol);
}

const std::vector<int> kTokens = {1, 5, 9, 17, 33, 2, 40, 12, 7, 21, 3, 45};

struct PruneFixture : ::testing::Test {
  std::string dir = test::temp_dir();
  std::string path(const std::string& name) const { return dir + "/" + name; }

  std::string model(const test::RandomLlamaSpec& s, const std::string& name) {
    test::write_random_llama_gguf(s, path(name));
    return path(name);
  }
  PruneReport prune(const std::string& in, const std::string& out, const PrunePlan& plan, const std::string& type = "") {
    auto src = TensorSource::open(in);
    const LlamaConfig c = llama_config_from_source(*src);
    PruneWriteOptions o;
    o.type = type;
    o.n_threads = 2;
    return write_pruned_model(*src, c, plan, in, out, o);
  }
};

TEST_F(PruneFixture, NothingRemovedIsTheInputByteForByte) {
  for (const char* arch : {"llama", "qwen2"}) {
    test::RandomLlamaSpec s;
    s.arch = arch;
    const std::string in = model(s, std::string(arch) + ".gguf");
    auto src = TensorSource::open(in);
    const std::string out = path(std::string(arch) + "-same.gguf");
    prune(in, out, identity_prune_plan(llama_config_from_source(*src)));
    EXPECT_EQ(test::read_file(out), test::read_file(in)) << arch;
    expect_close(logits_of(out, kTokens), logits_of(in, kTokens), 0.0f);
  }
}

TEST_F(PruneFixture, RemovingAKvGroupEqualsZeroingItsHeadsInAttnOutput) {
  for (const char* arch : {"llama", "qwen2"}) {
    test::RandomLlamaSpec s;  // 4 query heads, 2 KV groups of 2, head size 16
    s.arch = arch;
    const std::string in = model(s, std::string(arch) + ".gguf");
    // Layer 0 keeps group 1, layer 1 keeps group 0.
    PrunePlan plan = identity_prune_plan(llama_config_from_source(*TensorSource::open(in)));
    plan.kv_groups = {{1}, {0}};
    const std::string out = path(std::string(arch) + "-pruned.gguf");
    prune(in, out, plan);
    const std::string ref = path(std::string(arch) + "-zeroed.gguf");
    copy_edited(in, ref, [](const std::string& name, const auto& ne, std::vector<float>& v) {
      if (name == "blk.0.attn_output.weight") zero_columns(ne, v, 0, 32);   // heads 0, 1
      if (name == "blk.1.attn_output.weight") zero_columns(ne, v, 32, 64);  // heads 2, 3
    });
    auto pruned = LlamaModel::load(out);
    EXPECT_EQ(pruned->config().n_head, 2);
    EXPECT_EQ(pruned->config().n_head_kv, 1);
    EXPECT_EQ(pruned->config().head_dim, 16);
    expect_close(logits_of(out, kTokens), logits_of(ref, kTokens), 1e-4f);
  }
}

TEST_F(PruneFixture, RemovingFfnChannelsEqualsZeroingTheirDownColumns) {
  test::RandomLlamaSpec s;
  const std::string in = model(s, "m.gguf");
  PrunePlan plan = identity_prune_plan(llama_config_from_source(*TensorSource::open(in)));
  // One channel out of each layer: 5 in layer 0, 90 in layer 1.
  plan.ffn_channels[0].erase(plan.ffn_channels[0].begin() + 5);
  plan.ffn_channels[1].erase(plan.ffn_channels[1].begin() + 90);
  prune(in, path("p.gguf"), plan);
  copy_edited(in, path("z.gguf"), [](const std::string& name, const auto& ne, std::vector<float>& v) {
    if (name == "blk.0.ffn_down.weight") zero_columns(ne, v, 5, 6);
    if (name == "blk.1.ffn_down.weight") zero_columns(ne, v, 90, 91);
  });
  EXPECT_EQ(LlamaModel::load(path("p.gguf"))->config().n_ff, 95);
  expect_close(logits_of(path("p.gguf"), kTokens), logits_of(path("z.gguf"), kTokens), 1e-4f);
}

TEST_F(PruneFixture, DroppingALayerEqualsZeroingItsOutputs) {
  test::RandomLlamaSpec s;
  s.n_layer = 3;
  const std::string in = model(s, "m.gguf");
  PrunePlan plan = identity_prune_plan(llama_config_from_source(*TensorSource::open(in)));
  plan.layers = {0, 2};
  plan.kv_groups.pop_back();
  plan.ffn_channels.pop_back();
  prune(in, path("p.gguf"), plan);
  copy_edited(in, path("z.gguf"), [](const std::string& name, const auto& ne, std::vector<float>& v) {
    if (name == "blk.1.attn_output.weight" || name == "blk.1.ffn_down.weight") zero_columns(ne, v, 0, ne[0]);
  });
  EXPECT_EQ(LlamaModel::load(path("p.gguf"))->config().n_layer, 2);
  // blk.2 was renumbered to blk.1.
  auto src = TensorSource::open(path("p.gguf"));
  EXPECT_NE(src->find_tensor("blk.1.ffn_down.weight"), nullptr);
  EXPECT_EQ(src->find_tensor("blk.2.ffn_down.weight"), nullptr);
  expect_close(logits_of(path("p.gguf"), kTokens), logits_of(path("z.gguf"), kTokens), 1e-4f);
}

TEST_F(PruneFixture, RequantizedOutputLoadsWithTheMixTypes) {
  test::RandomLlamaSpec s;
  s.n_embd = 64, s.n_ff = 128;
  const std::string in = model(s, "m.gguf");
  PrunePlan plan = identity_prune_plan(llama_config_from_source(*TensorSource::open(in)));
  for (auto& ch : plan.ffn_channels) ch.resize(64);
  prune(in, path("q.gguf"), plan, "Q8_0");
  auto src = TensorSource::open(path("q.gguf"));
  EXPECT_EQ(*src->find_tensor("blk.0.ffn_down.weight")->dtype, DType::Q8_0);
  EXPECT_EQ(LlamaModel::load(path("q.gguf"))->config().n_ff, 64);
}

TEST_F(PruneFixture, ImportanceRanksConstructedStructures) {
  test::RandomLlamaSpec s;
  s.n_layer = 3;
  const std::string base = model(s, "m.gguf");
  const std::string in = path("built.gguf");
  copy_edited(base, in, [](const std::string& name, const auto& ne, std::vector<float>& v) {
    // Layer 1 does nothing (Block Influence 0); in layer 0, KV head 0's values are tiny (its group's
    // attention output is), FFN channel 7 never activates (its up row is zero) and channel 3 has no
    // weight in ffn_down (Wanda's |W|·‖x‖ is 0) although it activates.
    if (name == "blk.1.attn_output.weight" || name == "blk.1.ffn_down.weight") zero_columns(ne, v, 0, ne[0]);
    if (name == "blk.0.attn_v.weight")
      for (std::int64_t i = 0; i < 16 * ne[0]; ++i) v[static_cast<std::size_t>(i)] *= 0.01f;
    if (name == "blk.0.ffn_up.weight")
      for (std::int64_t c = 0; c < ne[0]; ++c) v[static_cast<std::size_t>(7 * ne[0] + c)] = 0.0f;
    if (name == "blk.0.ffn_down.weight") zero_columns(ne, v, 3, 4);
  });
  auto m = LlamaModel::load(in);
  const LlamaConfig& c = m->config();
  std::mt19937 rng(3);
  std::vector<int> tokens(64);
  for (int& t : tokens) t = static_cast<int>(rng() % static_cast<unsigned>(c.n_vocab));
  const eval::ChunkPlan chunks = eval::make_chunk_plan(tokens, 16, 0, 1, "test");
  ThreadPool pool(2);
  const PruneImportance imp = collect_prune_importance(*m, chunks, pool, 32);
  EXPECT_EQ(imp.tokens, 64);
  EXPECT_NEAR(imp.block_influence[1], 0.0, 1e-6);
  EXPECT_GT(imp.block_influence[0], 0.01);
  EXPECT_GT(imp.block_influence[2], 0.01);
  EXPECT_LT(imp.group_scores()[0], imp.group_scores()[1]);
  EXPECT_EQ(imp.channel_abs[7], 0.0);

  const PruneWidths w{2, 1, c.n_ff - 1};
  const PrunePlan act = make_prune_plan(c, imp, w, ChannelScore::activation);
  EXPECT_EQ(act.layers, (std::vector<int>{0, 2}));
  EXPECT_EQ(act.kv_groups[0], (std::vector<int>{1}));
  EXPECT_EQ(std::count(act.ffn_channels[0].begin(), act.ffn_channels[0].end(), 7), 0);
  EXPECT_EQ(std::count(act.ffn_channels[0].begin(), act.ffn_channels[0].end(), 3), 1);
  // Wanda scores both 3 (no weight) and 7 (no activation) zero: two channels out drop both.
  const PrunePlan wanda = make_prune_plan(c, imp, {2, 1, c.n_ff - 2}, ChannelScore::wanda);
  EXPECT_EQ(std::count(wanda.ffn_channels[0].begin(), wanda.ffn_channels[0].end(), 3), 0);
  EXPECT_EQ(std::count(wanda.ffn_channels[0].begin(), wanda.ffn_channels[0].end(), 7), 0);
}

LlamaConfig shape(int n_layer, int n_head, int n_kv, int head_dim, int n_ff) {
  LlamaConfig c;
  c.n_vocab = 1000, c.n_embd = n_head * head_dim, c.n_layer = n_layer, c.n_head = n_head, c.n_head_kv = n_kv;
  c.head_dim = head_dim, c.n_ff = n_ff, c.n_rot = head_dim;
  return c;
}

std::string resolve_error(const LlamaConfig& c, const PruneTargets& t, const PruneConstraints& k = {}) {
  try {
    resolve_prune_widths(c, t, k);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(PruneWidths, RatiosAndTargets) {
  const LlamaConfig c = shape(6, 8, 4, 32, 768);
  PruneTargets t;
  t.heads_ratio = 0.5, t.ffn_ratio = 0.5, t.drop_layers = 2;
  PruneWidths w = resolve_prune_widths(c, t, {});
  EXPECT_EQ(w.n_layer, 4);
  EXPECT_EQ(w.n_group, 2);
  EXPECT_EQ(w.n_ff, 384);
  // FFN widths round down to the type's block.
  t = {};
  t.ffn_ratio = 0.6;
  PruneConstraints k;
  k.ffn_multiple = 256, k.ffn_type = "q4_K";
  EXPECT_EQ(resolve_prune_widths(c, t, k).n_ff, 256);
  // A target: at most the target, heads and FFN shrunk alike.
  t = {};
  t.target_params = 0.5;
  w = resolve_prune_widths(c, t, {});
  const std::int64_t total = llama_parameter_count(c, {6, 4, 768});
  EXPECT_LE(llama_parameter_count(c, w), total / 2);
  EXPECT_GT(llama_parameter_count(c, w), total * 2 / 5);
  EXPECT_EQ(w.n_layer, 6);
  EXPECT_NEAR(static_cast<double>(w.n_ff) / 768, static_cast<double>(w.n_group) / 4, 0.25);
}

TEST(PruneWidths, BadInputIsRefusedNamingTheFlag) {
  const LlamaConfig c = shape(6, 8, 4, 32, 768);
  PruneTargets t;
  t.heads_ratio = 0.0;
  EXPECT_THAT(resolve_error(c, t), HasSubstr("--heads-ratio 0 leaves nothing"));
  t.heads_ratio = 0.3;  // 1.2 of 4 groups
  EXPECT_THAT(resolve_error(c, t), HasSubstr("whole KV groups"));
  t = {};
  t.ffn_ratio = 1.5;
  EXPECT_THAT(resolve_error(c, t), HasSubstr("--ffn-ratio 1.5"));
  t.ffn_ratio = 0.2;  // 153 channels: less than a block of 256
  PruneConstraints k;
  k.ffn_multiple = 256, k.ffn_type = "q4_K";
  EXPECT_THAT(resolve_error(c, t, k), HasSubstr("multiple of 256"));
  t = {};
  t.drop_layers = 6;
  EXPECT_THAT(resolve_error(c, t), HasSubstr("--drop-layers 6 leaves nothing"));
  t = {};
  t.target_params = 2.0;  // a count above 1: two parameters, below any model
  EXPECT_THAT(resolve_error(c, t), HasSubstr("below the smallest model"));
  t.target_params = 1e12;
  EXPECT_THAT(resolve_error(c, t), HasSubstr("not smaller than the model"));
  t.target_params = 0.5, t.heads_ratio = 0.5, t.ffn_ratio = 0.5;
  EXPECT_THAT(resolve_error(c, t), HasSubstr("at most two"));
  // attn_output's blocks of 256 columns hold 8 heads of 32 = 4 groups: one group would split a block.
  t = {};
  t.heads_ratio = 0.25;
  k = {};
  k.q_dim_multiple = 256, k.q_type = "q4_K";
  EXPECT_THAT(resolve_error(c, t, k), HasSubstr("multiple of 4 groups"));
}

TEST_F(PruneFixture, CommandRefusesBadFlagsBeforeAnyWork) {
  test::RandomLlamaSpec s;
  const std::string in = model(s, "m.gguf");
  test::write_file(path("calib.txt"), "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20");
  const std::string base = "prune " + test::shell_quote(in) + " -o " + test::shell_quote(path("o.gguf")) +
                           " --tokens " + test::shell_quote(path("calib.txt")) + " -c 8";
  test::expect_clean_error(test::run_kiln(base + " --heads-ratio 0.3"), "whole KV groups");
  test::expect_clean_error(test::run_kiln(base + " --drop-layers 2"), "leaves nothing");
  test::expect_clean_error(test::run_kiln(base), "say how much to remove");
  EXPECT_FALSE(std::ifstream(path("o.gguf")).good());
  // And a good run writes a model with the widths asked for.
  const test::KilnRun ok = test::run_kiln(base + " --heads-ratio 0.5 --ffn-ratio 0.5 --drop-layers 1 -q");
  ASSERT_EQ(ok.code, 0) << ok.out;
  const LlamaConfig pc = LlamaModel::load(path("o.gguf"))->config();
  EXPECT_EQ(pc.n_layer, 1);
  EXPECT_EQ(pc.n_head_kv, 1);
  EXPECT_EQ(pc.n_head, 2);
  EXPECT_EQ(pc.n_ff, 32);  // 48 rounded down to whole 32-column blocks
}

}  // namespace
}  // namespace kiln::optimize
