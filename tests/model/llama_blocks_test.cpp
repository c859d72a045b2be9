// The forward blocks (model/llama_blocks.h) under both of their policies give the same logits:
// LlamaModel::forward (QuantizedProducts over f32 weights, attention over a paged f32 KV cache,
// two sequences interleaved in one batch) and the policies training uses (DenseProducts in f32,
// sequence_attention_forward over each sequence's contiguous keys and values, every activation
// kept). Covered for a llama (interleaved rope, grouped-query attention) and a qwen2 (q/k/v
// biases, halves rope layout), from random f32 GGUFs written here.
#include "model/llama_blocks.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "format/gguf_writer.h"
#include "kernels/dense_gemm.h"
#include "model/dense_products.h"
#include "model/llama_model.h"
#include "model/sequence_attention.h"
#include "test_support.h"

namespace kiln {
namespace {

constexpr int kVocab = 48, kEmbd = 64, kLayers = 2, kHeads = 4, kHeadsKv = 2, kHeadDim = 16, kFf = 96;

// A random f32 model of `arch` ("llama" or "qwen2"); norm gains near 1, qwen2 with biases.
std::string write_model(const std::string& arch, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.2f);
  GgufWriter w;
  const std::string p = arch + ".";
  using gguf_value::u32;
  w.add_metadata("general.architecture", gguf_value::string(arch));
  w.add_metadata(p + "context_length", u32(64));
  w.add_metadata(p + "embedding_length", u32(kEmbd));
  w.add_metadata(p + "block_count", u32(kLayers));
  w.add_metadata(p + "feed_forward_length", u32(kFf));
  w.add_metadata(p + "attention.head_count", u32(kHeads));
  w.add_metadata(p + "attention.head_count_kv", u32(kHeadsKv));
  w.add_metadata(p + "attention.key_length", u32(kHeadDim));
  w.add_metadata(p + "vocab_size", u32(kVocab));
  auto tensor = [&](const std::string& name, std::int64_t rows, std::int64_t cols, float mean) {
    auto data = std::make_shared<std::vector<float>>(static_cast<std::size_t>(rows * cols));
    for (float& v : *data) v = mean + dist(rng);
    GgufTensorSpec spec(name, DType::F32, rows > 1 ? 2 : 1, {cols, rows, 1, 1});
    w.add_tensor(spec, [data](GgufDataSink& out) { out.write(data->data(), data->size() * sizeof(float)); });
  };
  const int QD = kHeads * kHeadDim, KVD = kHeadsKv * kHeadDim;
  tensor("token_embd.weight", kVocab, kEmbd, 0.0f);
  for (int l = 0; l < kLayers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    tensor(b + "attn_norm.weight", 1, kEmbd, 1.0f);
    tensor(b + "attn_q.weight", QD, kEmbd, 0.0f);
    tensor(b + "attn_k.weight", KVD, kEmbd, 0.0f);
    tensor(b + "attn_v.weight", KVD, kEmbd, 0.0f);
    if (arch == "qwen2") {
      tensor(b + "attn_q.bias", 1, QD, 0.0f);
      tensor(b + "attn_k.bias", 1, KVD, 0.0f);
      tensor(b + "attn_v.bias", 1, KVD, 0.0f);
    }
    tensor(b + "attn_output.weight", kEmbd, QD, 0.0f);
    tensor(b + "ffn_norm.weight", 1, kEmbd, 1.0f);
    tensor(b + "ffn_gate.weight", kFf, kEmbd, 0.0f);
    tensor(b + "ffn_up.weight", kFf, kEmbd, 0.0f);
    tensor(b + "ffn_down.weight", kEmbd, kFf, 0.0f);
  }
  tensor("output_norm.weight", 1, kEmbd, 1.0f);
  tensor("output.weight", kVocab, kEmbd, 0.0f);
  const std::string path = test::temp_dir() + "/blocks_" + arch + ".gguf";
  w.write(path);
  return path;
}

const float* floats(const TensorView& t) { return static_cast<const float*>(t.data); }

// The training-side forward of B sequences of T tokens, (B·T, n_vocab) logits: the blocks with
// DenseProducts and sequence attention, over the loaded model's f32 tensors.
std::vector<float> sequence_forward(const LlamaModel& model, const std::vector<int>& tokens, int B, int T,
                                    ThreadPool& pool) {
  const LlamaConfig& c = model.config();
  const LlamaWeights& wt = model.weights();
  const std::int64_t N = static_cast<std::int64_t>(B) * T, E = c.n_embd, F = c.n_ff;
  const auto n = [](std::int64_t count) { return static_cast<std::size_t>(count); };
  Rope rope(c, nullptr);
  std::vector<float> cs(n(T * c.n_rot));  // (T, n_rot)
  for (int t = 0; t < T; ++t) rope.angles(t, cs.data() + t * c.n_rot, cs.data() + t * c.n_rot + c.n_rot / 2);
  const RopeAngles angles{cs.data(), T, c.n_rot};

  // Every layer keeps its own activations, as training does.
  std::vector<std::vector<float>> x(n(c.n_layer + 1), std::vector<float>(n(N * E)));
  for (std::int64_t i = 0; i < N; ++i)
    std::memcpy(x[0].data() + i * E, floats(wt.token_embd) + tokens[n(i)] * E, n(E) * sizeof(float));
  DenseProducts products(kernels::GemmPrecision::F32, pool);
  for (int il = 0; il < c.n_layer; ++il) {
    const LlamaLayerWeights& L = wt.layers[n(il)];
    LlamaLayerParams<const float*> w;
    w.attn_norm = L.attn_norm.data;
    w.wq = floats(L.wq), w.wk = floats(L.wk), w.wv = floats(L.wv), w.wo = floats(L.wo);
    w.bq = L.bq.data, w.bk = L.bk.data, w.bv = L.bv.data;
    w.ffn_norm = L.ffn_norm.data;
    w.w_gate = floats(L.w_gate), w.w_up = floats(L.w_up), w.w_down = floats(L.w_down);
    std::vector<float> xn1(n(N * E)), rstd1(n(N)), q(n(N * c.q_dim())), k(n(N * c.kv_dim())), v(n(N * c.kv_dim()));
    std::vector<float> probs(n(static_cast<std::int64_t>(B) * c.n_head * T * T)), attn(n(N * c.q_dim()));
    std::vector<float> x_mid(n(N * E)), xn2(n(N * E)), rstd2(n(N)), gate(n(N * F)), up(n(N * F)), h(n(N * F));
    LayerActivations a{x[n(il)].data(), xn1.data(),  rstd1.data(), q.data(),           k.data(),
                       v.data(),        attn.data(), x_mid.data(), xn2.data(),         rstd2.data(),
                       gate.data(),     up.data(),   h.data(),     x[n(il + 1)].data()};
    auto attention = [&](const float* qq, const float* kk, const float* vv, float* out) {
      sequence_attention_forward(c, B, T, qq, kk, vv, probs.data(), out, kernels::GemmPrecision::F32, pool);
    };
    llama_layer_forward(c, rope, angles, w, a, N, products, attention, pool);
  }
  std::vector<float> xn(n(N * E)), rstd(n(N)), logits(n(N * c.n_vocab));
  const float* output = floats(wt.output);
  llama_output_forward(c, wt.output_norm.data, output, x[n(c.n_layer)].data(), nullptr, N, xn.data(), rstd.data(),
                       logits.data(), products, pool);
  return logits;
}

void check_paths_agree(const std::string& arch) {
  const std::string path = write_model(arch, 11);
  auto model = LlamaModel::load(path);
  const LlamaConfig& c = model->config();
  ASSERT_EQ(c.qkv_bias, arch == "qwen2");
  ASSERT_EQ(c.rope_layout == RopeLayout::Halves, arch == "qwen2");
  ThreadPool pool(2);
  const int B = 2, T = 13;
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> tok(0, c.n_vocab - 1);
  std::vector<int> tokens(static_cast<std::size_t>(B * T));
  for (int& t : tokens) t = tok(rng);
  const std::vector<float> expected = sequence_forward(*model, tokens, B, T, pool);

  // Inference: both sequences' tokens interleaved in one batch over the paged cache, every row's
  // logits asked for; row (b, t) of the batch is at 2t + b.
  KvCache cache = model->make_kv_cache(64, DType::F32);
  const int seqs[2] = {cache.add_sequence(), cache.add_sequence()};
  Batch batch;
  for (int t = 0; t < T; ++t)
    for (int b = 0; b < B; ++b) batch.add(tokens[static_cast<std::size_t>(b * T + t)], t, seqs[b], true);
  std::vector<float> logits(expected.size());
  model->forward(batch, cache, pool, logits.data());
  double diff = 0, norm = 0;
  const std::int64_t V = c.n_vocab;
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t)
      for (std::int64_t j = 0; j < V; ++j) {
        const double got = logits[static_cast<std::size_t>((2 * t + b) * V + j)];
        const double want = expected[static_cast<std::size_t>((b * T + t) * V + j)];
        diff += (got - want) * (got - want);
        norm += want * want;
      }
  EXPECT_GT(norm, 0.0);
  EXPECT_LT(std::sqrt(diff / norm), 1e-5) << arch;
}

TEST(LlamaBlocks, PagedAndSequenceAttentionGiveTheSameLogitsLlama) { check_paths_agree("llama"); }

TEST(LlamaBlocks, PagedAndSequenceAttentionGiveTheSameLogitsQwen2) { check_paths_agree("qwen2"); }

}  // namespace
}  // namespace kiln
