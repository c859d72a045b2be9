// phi3 (Phi-3, Phi-3.5, Phi-4-mini): the Llama layer with rope over the halves of each head, no
// biases, q, k and v in one matrix (attn_qkv, rows q_dim + 2 kv_dim) and the FFN's gate and up
// in one (ffn_up, rows 2 n_ff, gate first), as llama.cpp's converter writes them; a file with
// separate attn_q/k/v is read as such (llama.cpp accepts both). The long-context models carry
// LongRoPE/SuRoPE factors (rope_factors_short/long.weight, n_rot/2 each; the long ones for
// contexts past rope.scaling.original_context_length) and rope.scaling.attn_factor
// (sqrt(1 + ln(context / original) / ln(original))), which scales cos and sin.
// phi3.attention.sliding_window is read by neither: llama.cpp runs phi3 with full attention
// (its sliding window is disabled there), and so does kiln, to give the same tokens.
#include "core/error.h"
#include "model/architecture.h"

namespace kiln {
namespace {

void configure_phi3(const GgufMetadata&, LlamaConfig& c) {
  c.rope_layout = RopeLayout::Halves;
  c.qkv_bias = false;
  c.fused_qkv = true;
  c.fused_gate_up = true;
}

void write_phi3_metadata(const LlamaConfig&, GgufWriter&) {}

std::vector<LayerTensor> phi3_layer_tensors(const LlamaConfig& c, int layer) {
  std::vector<LayerTensor> llama = llama_layer_tensors(c, layer);
  const std::string p = "blk." + std::to_string(layer) + ".";
  auto entry = [&](const std::string& name) -> const LayerTensor& {
    for (const LayerTensor& t : llama)
      if (t.name == p + name) return t;
    fail("phi3: the llama layer has no {}", name);
  };
  auto fused = [&](const char* name, std::int64_t in, std::vector<LayerTensor::RowPart> parts) {
    LayerTensor t;
    t.name = p + name;
    t.n_dims = 2;
    std::int64_t rows = 0;
    for (const LayerTensor::RowPart& part : parts) rows += part.rows;
    t.ne = {in, rows, 1, 1};
    t.row_parts = std::move(parts);
    return t;
  };
  const std::int64_t E = c.n_embd, F = c.n_ff, QD = c.q_dim(), KVD = c.kv_dim();
  std::vector<LayerTensor> t;
  t.push_back(entry("attn_norm.weight"));
  if (c.fused_qkv) {
    t.push_back(fused("attn_qkv.weight", E,
                      {{&LlamaLayerWeights::wq, QD}, {&LlamaLayerWeights::wk, KVD}, {&LlamaLayerWeights::wv, KVD}}));
  } else {
    t.push_back(entry("attn_q.weight"));
    t.push_back(entry("attn_k.weight"));
    t.push_back(entry("attn_v.weight"));
  }
  t.push_back(entry("attn_output.weight"));
  t.push_back(entry("ffn_norm.weight"));
  if (c.fused_gate_up) {
    t.push_back(fused("ffn_up.weight", E, {{&LlamaLayerWeights::w_gate, F}, {&LlamaLayerWeights::w_up, F}}));
  } else {
    t.push_back(entry("ffn_gate.weight"));
    t.push_back(entry("ffn_up.weight"));
  }
  t.push_back(entry("ffn_down.weight"));
  return t;
}

// The LongRoPE factors of a long-context model (one whose context exceeds the original one):
// kiln synth draws the short ones around 1 and the long ones around 4 (positive, as real ones).
std::vector<LayerTensor> phi3_model_tensors(const LlamaConfig& c) {
  if (!(c.rope_orig_ctx > 0 && c.rope_orig_ctx < c.n_ctx_train)) return {};
  auto factors = [&](const char* name, float mean) {
    LayerTensor t;
    t.name = name;
    t.n_dims = 1;
    t.ne = {c.n_rot / 2, 1, 1, 1};
    t.synthetic_mean = mean;
    return t;
  };
  return {factors("rope_factors_long.weight", 4.0f), factors("rope_factors_short.weight", 1.0f)};
}

void phi3_mini(LlamaConfig& c) {
  c.n_embd = 3072, c.n_layer = 32, c.n_head = 32, c.n_head_kv = 32, c.head_dim = 96, c.n_ff = 8192;
  c.rope_theta = 10000.0f, c.n_ctx_train = 4096, c.rms_eps = 1e-5f;
}

constexpr ShapePreset kPhi3Presets[] = {
    {"phi-3-mini", "Phi-3-mini-4k: 32 layers, width 3072, 32 heads of 96, FFN 8192, fused qkv and gate-up",
     phi3_mini},
    {"phi-3-mini-128k",
     "Phi-3-mini-128k: phi-3-mini with LongRoPE factors over 4096 positions, context 131072, attn factor 1.19",
     [](LlamaConfig& c) {
       phi3_mini(c);
       c.n_ctx_train = 131072, c.rope_orig_ctx = 4096, c.rope_scaling = RopeScaling::LongRope;
       c.rope_attn_factor = 1.1902380714238083f;  // sqrt(1 + ln(32) / ln(4096))
     }},
};

}  // namespace

extern const Architecture kPhi3Architecture{"phi3", configure_phi3, write_phi3_metadata, phi3_layer_tensors,
                                            kPhi3Presets, phi3_model_tensors};

}  // namespace kiln
