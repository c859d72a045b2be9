// The forward pass on stories260K quantized to kiln's affine presets (kiln quantize's code
// path, GGUF written and read back): the files hold the affine types where the shapes allow,
// greedy decoding stays close to the f32 checkpoint, and the batched prefill (unpacked / AMX
// tiles) agrees with token-by-token decode (the direct VNNI path) on the same file.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "format/gguf_file.h"
#include "model/llama_model.h"
#include "optimize/quantize_model.h"
#include "test_support.h"

namespace kiln {
namespace {

constexpr int kTokens = 48;

// Greedy tokens from BOS, one token per forward (decode), and the logits of each step.
std::vector<int> greedy(LlamaModel& model, ThreadPool& pool, std::vector<std::vector<float>>* logits_out) {
  const int V = model.config().n_vocab;
  KvCache cache = model.make_kv_cache(kTokens + 1, DType::F32);
  const int seq = cache.add_sequence();
  std::vector<float> logits(static_cast<std::size_t>(V));
  std::vector<int> out;
  int token = 1;
  for (int pos = 0; pos < kTokens; ++pos) {
    Batch b;
    b.add(token, pos, seq, true);
    model.forward(b, cache, pool, logits.data());
    if (logits_out != nullptr) logits_out->push_back(logits);
    token = static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(token);
  }
  return out;
}

// Logits of every position for BOS + tokens[0..n-2] in one batch of n rows (the prefill path).
std::vector<std::vector<float>> batched_logits(LlamaModel& model, ThreadPool& pool, const std::vector<int>& tokens,
                                               int n) {
  const int V = model.config().n_vocab;
  KvCache cache = model.make_kv_cache(kTokens + 1, DType::F32);
  const int seq = cache.add_sequence();
  Batch all;
  all.add(1, 0, seq, true);
  for (int pos = 1; pos < n; ++pos) all.add(tokens[static_cast<std::size_t>(pos - 1)], pos, seq, true);
  std::vector<float> flat(static_cast<std::size_t>(n) * V);
  model.forward(all, cache, pool, flat.data());
  std::vector<std::vector<float>> rows;
  for (int pos = 0; pos < n; ++pos) rows.emplace_back(flat.begin() + pos * V, flat.begin() + (pos + 1) * V);
  return rows;
}

int argmax(const std::vector<float>& v) { return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin()); }

// KL(p || q) of the softmaxes of two logit rows.
double kl_divergence(const std::vector<float>& p_logits, const std::vector<float>& q_logits) {
  auto log_softmax = [](const std::vector<float>& x) {
    const double mx = *std::max_element(x.begin(), x.end());
    double sum = 0;
    for (float v : x) sum += std::exp(v - mx);
    std::vector<double> out(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = x[i] - mx - std::log(sum);
    return out;
  };
  const auto lp = log_softmax(p_logits), lq = log_softmax(q_logits);
  double kl = 0;
  for (std::size_t i = 0; i < lp.size(); ++i) kl += std::exp(lp[i]) * (lp[i] - lq[i]);
  return kl;
}

// Batches of 32+ rows run on bf16 AMX tiles where the CPU has them (linear.h: kAmxMinRows),
// smaller ones on the affine family's own gemm (q8_1 activations, VNNI and AMX-INT8).
constexpr int kSmallBatch = 24;

struct Quality {
  double decode_kl = 0, prefill_kl = 0;  // mean over all positions, vs f32
  double decode_small_kl = 0, prefill_small_kl = 0;  // the first kSmallBatch positions
  double decode_top1 = 0, prefill_top1 = 0;
};

// Teacher-forced on f32's greedy tokens, token by token (decode path) and as one batch
// (prefill path), against the f32 logits.
Quality measure(LlamaModel& model, ThreadPool& pool, const std::vector<int>& f32_tokens,
                const std::vector<std::vector<float>>& f32_logits) {
  std::vector<std::vector<float>> decode_logits;
  {
    KvCache cache = model.make_kv_cache(kTokens + 1, DType::F32);
    const int seq = cache.add_sequence();
    std::vector<float> logits(static_cast<std::size_t>(model.config().n_vocab));
    int token = 1;
    for (int pos = 0; pos < kTokens; ++pos) {
      Batch b;
      b.add(token, pos, seq, true);
      model.forward(b, cache, pool, logits.data());
      decode_logits.push_back(logits);
      token = f32_tokens[static_cast<std::size_t>(pos)];
    }
  }
  const auto prefill_logits = batched_logits(model, pool, f32_tokens, kTokens);
  const auto small_logits = batched_logits(model, pool, f32_tokens, kSmallBatch);
  Quality q;
  for (int pos = 0; pos < kTokens; ++pos) {
    q.decode_kl += kl_divergence(f32_logits[pos], decode_logits[pos]) / kTokens;
    q.prefill_kl += kl_divergence(f32_logits[pos], prefill_logits[pos]) / kTokens;
    q.decode_top1 += (argmax(decode_logits[pos]) == argmax(f32_logits[pos])) / static_cast<double>(kTokens);
    q.prefill_top1 += (argmax(prefill_logits[pos]) == argmax(f32_logits[pos])) / static_cast<double>(kTokens);
    if (pos < kSmallBatch) {
      q.decode_small_kl += kl_divergence(f32_logits[pos], decode_logits[pos]) / kSmallBatch;
      q.prefill_small_kl += kl_divergence(f32_logits[pos], small_logits[pos]) / kSmallBatch;
    }
  }
  return q;
}

TEST(AffineForward, Stories260kQuantizedToAffinePresetsStaysCloseToF32) {
  KILN_REQUIRE_DATA(bin, "stories260K.bin");
  const std::string dir = test::temp_dir() + "/affine_forward";
  std::filesystem::create_directories(dir);
  ThreadPool pool(2);

  auto f32 = LlamaModel::load(bin);
  std::vector<std::vector<float>> f32_logits;
  const std::vector<int> f32_tokens = greedy(*f32, pool, &f32_logits);

  // This 260K-parameter model is very sensitive to quantization: q8_0 already moves its logits
  // by up to 2 of 14 (mostly through the 8-bit activations), q4_0 by all of them. So each affine
  // preset is held to the ggml type of the same bits, quantized and run the same way here, by
  // the mean KL divergence of its decode logits from f32 (deterministic: the kernels do not
  // depend on the thread count). Prefill (bf16 AMX for ggml types) is compared only with the
  // preset's own decode. stories260K: width 64, kv width 32, FFN 172 (not a multiple of 32:
  // ffn_down stays f16), so groups of 128 do not divide the rows and fall back to groups of 64.
  struct Case {
    const char* preset;
    DType expect_attn_q;    // what blk.0.attn_q.weight must hold
    const char* reference;  // the ggml preset it is compared with
  };
  const Case cases[] = {{"Q8_0", DType::Q8_0, nullptr},      {"Q4_0", DType::Q4_0, nullptr},
                        {"A4G32", DType::Q4_1, "Q4_0"},     {"A4G64", DType::A4G64, "Q4_0"},
                        {"A4G128", DType::A4G64, "Q4_0"},   {"A8G32", DType::A8G32, "Q8_0"},
                        {"A8G64", DType::A8G64, "Q8_0"},    {"A8G128", DType::A8G64, "Q8_0"}};
  std::map<std::string, Quality> results;
  for (const Case& c : cases) {
    const std::string path = dir + "/" + c.preset + ".gguf";
    optimize::QuantizeOptions o;
    o.type = c.preset;
    o.n_threads = 2;
    optimize::quantize_model(bin, path, o);
    {
      // The file holds the affine type, under its own name.
      auto g = GgufFile::open(path);
      const GgufTensorInfo* q = nullptr;
      for (const GgufTensorInfo& t : g->tensors())
        if (t.name == "blk.0.attn_q.weight") q = &t;
      ASSERT_NE(q, nullptr);
      EXPECT_EQ(q->ggml_type, static_cast<std::uint32_t>(c.expect_attn_q)) << c.preset;
      EXPECT_EQ(dtype_name_for_id(q->ggml_type), dtype_name(c.expect_attn_q));
    }
    auto model = LlamaModel::load(path);
    const Quality q = measure(*model, pool, f32_tokens, f32_logits);
    results[c.preset] = q;
    std::printf("%-7s decode KL %.5f top-1 %.3f | prefill %d KL %.5f top-1 %.3f | first %d: decode KL %.5f, prefill KL %.5f\n",
                c.preset, q.decode_kl, q.decode_top1, kTokens, q.prefill_kl, q.prefill_top1, kSmallBatch,
                q.decode_small_kl, q.prefill_small_kl);
    if (c.reference == nullptr) continue;
    const Quality& ref = results.at(c.reference);
    if (c.expect_attn_q == DType::A4G64 || c.expect_attn_q == DType::Q4_1) {
      // Asymmetric 4-bit (4.5-5 bpw) against symmetric q4_0 (4.5 bpw): measured 1.30 (A4G32) and
      // 1.58 (A4G64) against 1.80 here; on 4096 held-out ids (docs/formats.md) A4G64 is the worse
      // one, 2.16 against 2.02: at width 64 its group is a whole row. So: the same league.
      EXPECT_LT(q.decode_kl, 1.3 * ref.decode_kl) << c.preset << " vs " << c.reference;
      EXPECT_GE(q.decode_top1, 0.35) << c.preset;
    } else {
      // 8-bit: measured 0.033 (A8G32), 0.056 (A8G64), 0.060 (A8G128 = A8G64 + q8_0 embeddings)
      // against q8_0's 0.039; the activations' own 8 bits dominate at this size.
      EXPECT_LT(q.decode_kl, 2.0 * ref.decode_kl) << c.preset << " vs " << c.reference;
      EXPECT_GE(q.decode_top1, 0.75) << c.preset;
    }
    // Prefill of kSmallBatch rows runs other kernels than decode on the same weights and the same
    // q8_1 activations: their distances from f32 must be alike (a wrong tile would stand out).
    EXPECT_LE(q.prefill_small_kl, 1.2 * q.decode_small_kl + 1e-4) << c.preset;
    EXPECT_LE(q.decode_small_kl, 1.2 * q.prefill_small_kl + 1e-4) << c.preset;
    // The long prefill has bf16 activations where AMX exists (finer than q8_1): not worse.
    EXPECT_LE(q.prefill_kl, 1.2 * q.decode_kl + 1e-4) << c.preset;
  }
}

}  // namespace
}  // namespace kiln
