// gemma2 and gemma3 (text): the Llama layer with rope over the halves of each head, embeddings
// scaled by sqrt(width), a GELU (tanh form) gated FFN, an RMSNorm of the attention output and of
// the FFN output before each residual add (post_attention_norm, post_ffw_norm), a tied output,
// and sliding-window layers interleaved with global ones, all as llama.cpp computes them:
//
//   gemma2  every other layer (0, 2, ...) windowed over gemma2.attention.sliding_window positions
//           (4096 when absent); attention scores and output logits soft-capped,
//           cap · tanh(x / cap), by gemma2.attn_logit_softcapping (50) and
//           gemma2.final_logit_softcapping (30).
//   gemma3  five windowed layers then one global (il % 6 < 5 windowed) over
//           gemma3.attention.sliding_window positions (no windows when absent); the windowed
//           layers rotate with base 10000 and no scaling, the global ones with the file's base
//           and its linear scaling; a per-head RMSNorm of q and k (attn_q_norm, attn_k_norm)
//           before rope; no attention soft-cap, logits capped only when the file gives
//           gemma3.final_logit_softcapping.
//
// Queries are scaled by 1 / sqrt(head size), except for the 27B models (46 layers for gemma2, 62
// for gemma3), where query_pre_attn_scalar is width / heads: llama.cpp reads no key for it and
// decides by the layer count, and so does kiln.
//
// Gemma's RMSNorm multiplies by (1 + w); llama.cpp's converter stores w + 1, so the weights are
// used as loaded.
#include <cmath>

#include "core/error.h"
#include "format/gguf_metadata.h"
#include "format/gguf_writer.h"
#include "model/architecture.h"

namespace kiln {
namespace {

// The parts both generations share.
void configure_gemma_common(LlamaConfig& c, int layers_of_27b) {
  c.rope_layout = RopeLayout::Halves;
  c.qkv_bias = false;
  c.embd_scale = true;
  c.gelu_ffn = true;
  c.post_norms = true;
  c.attn_scale = c.n_layer == layers_of_27b ? 1.0f / std::sqrt(static_cast<float>(c.n_embd / c.n_head))
                                            : 1.0f / std::sqrt(static_cast<float>(c.head_dim));
}

int read_window(const GgufMetadata& f, const std::string& key, int absent) {
  const GgufValue* v = f.find(key);
  if (v == nullptr) return absent;
  std::optional<std::int64_t> n = v->as_int();
  if (!n || *n <= 0 || *n > (1 << 24))
    fail("{}: metadata {} must be a positive integer number of positions (1..16777216)", f.path(), key);
  return static_cast<int>(*n);
}

float read_cap(const GgufMetadata& f, const std::string& key, float absent) {
  if (f.find(key) == nullptr) return absent;
  std::optional<double> v = f.get_float(key);
  if (!v || !(*v > 0.0) || !std::isfinite(*v)) fail("{}: metadata {} must be a positive number", f.path(), key);
  return static_cast<float>(*v);
}

void configure_gemma2(const GgufMetadata& f, LlamaConfig& c) {
  configure_gemma_common(c, 46);
  c.n_swa = read_window(f, "gemma2.attention.sliding_window", 4096);
  c.swa_pattern = 2;
  c.attn_softcap = read_cap(f, "gemma2.attn_logit_softcapping", 50.0f);
  c.final_softcap = read_cap(f, "gemma2.final_logit_softcapping", 30.0f);
}

void write_gemma2_metadata(const LlamaConfig& c, GgufWriter& w) {
  using namespace gguf_value;
  w.set_metadata("gemma2.attention.sliding_window", u32(static_cast<std::uint32_t>(c.n_swa > 0 ? c.n_swa : 4096)));
  w.set_metadata("gemma2.attn_logit_softcapping", f32(c.attn_softcap > 0 ? c.attn_softcap : 50.0f));
  w.set_metadata("gemma2.final_logit_softcapping", f32(c.final_softcap > 0 ? c.final_softcap : 30.0f));
}

void configure_gemma3(const GgufMetadata& f, LlamaConfig& c) {
  configure_gemma_common(c, 62);
  c.qk_norm = true;
  c.n_swa = read_window(f, "gemma3.attention.sliding_window", 0);
  if (c.n_swa > 0) {
    c.swa_pattern = 6;
    c.rope_theta_swa = 10000.0f;
    c.rope_scale_swa = 1.0f;
  }
  c.final_softcap = read_cap(f, "gemma3.final_logit_softcapping", 0.0f);
}

void write_gemma3_metadata(const LlamaConfig& c, GgufWriter& w) {
  using namespace gguf_value;
  w.set_metadata("gemma3.attention.sliding_window", u32(static_cast<std::uint32_t>(c.n_swa > 0 ? c.n_swa : 512)));
  if (c.final_softcap > 0) w.set_metadata("gemma3.final_logit_softcapping", f32(c.final_softcap));
}

// The Llama layer's tensors and the two post-norms (gemma2); gemma3 adds the q/k norms.
std::vector<LayerTensor> gemma2_layer_tensors(const LlamaConfig& c, int layer) {
  std::vector<LayerTensor> t = llama_layer_tensors(c, layer);
  // kiln synth draws the post-norms around 4 sqrt(width): the embedding enters the residual
  // stream times sqrt(width), and with the tied output a layer output of unit scale beside it
  // would leave the input token the most likely next one at every position (real Gemma models'
  // post-norm weights are large for the same reason).
  const float post_norm_mean = 4.0f * std::sqrt(static_cast<float>(c.n_embd));
  t.push_back(layer_vector(layer, "post_attention_norm.weight", c.n_embd, &LlamaLayerWeights::attn_post_norm,
                           post_norm_mean));
  t.push_back(layer_vector(layer, "post_ffw_norm.weight", c.n_embd, &LlamaLayerWeights::ffn_post_norm, post_norm_mean));
  return t;
}

std::vector<LayerTensor> gemma3_layer_tensors(const LlamaConfig& c, int layer) {
  std::vector<LayerTensor> t = gemma2_layer_tensors(c, layer);
  add_qk_norm_tensors(c, layer, t);
  return t;
}

// Real shapes (the vocabulary comes from kiln synth's donor: Gemma's is 256000 / 262144).
constexpr ShapePreset kGemma2Presets[] = {
    {"gemma-2-2b", "Gemma-2-2B: 26 layers, width 2304, 8 heads (4 KV) of 256, FFN 9216, window 4096, tied output",
     [](LlamaConfig& c) {
       c.n_embd = 2304, c.n_layer = 26, c.n_head = 8, c.n_head_kv = 4, c.head_dim = 256, c.n_ff = 9216;
       c.rope_theta = 10000.0f, c.n_ctx_train = 8192, c.tied_output = true;
       c.n_swa = 4096, c.attn_softcap = 50.0f, c.final_softcap = 30.0f;
     }},
};

constexpr ShapePreset kGemma3Presets[] = {
    {"gemma-3-1b", "Gemma-3-1B: 26 layers, width 1152, 4 heads (1 KV) of 256, FFN 6912, window 512, tied output",
     [](LlamaConfig& c) {
       c.n_embd = 1152, c.n_layer = 26, c.n_head = 4, c.n_head_kv = 1, c.head_dim = 256, c.n_ff = 6912;
       c.rope_theta = 1000000.0f, c.n_ctx_train = 32768, c.tied_output = true, c.n_swa = 512;
     }},
};

}  // namespace

extern const Architecture kGemma2Architecture{"gemma2", configure_gemma2, write_gemma2_metadata, gemma2_layer_tensors,
                                              kGemma2Presets};
extern const Architecture kGemma3Architecture{"gemma3", configure_gemma3, write_gemma3_metadata, gemma3_layer_tensors,
                                              kGemma3Presets};

}  // namespace kiln
