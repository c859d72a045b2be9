// qwen2: the Llama layer with biases on q, k and v, and rope over the halves of each head
// (ggml's "neox" rope).
#include "model/architecture.h"

namespace kiln {
namespace {

void configure_qwen2(const GgufMetadata&, LlamaConfig& c) {
  c.rope_layout = RopeLayout::Halves;
  c.qkv_bias = true;
}

void write_qwen2_metadata(const LlamaConfig&, GgufWriter&) {}

std::vector<LayerTensor> qwen2_layer_tensors(const LlamaConfig& c, int layer) {
  std::vector<LayerTensor> t = llama_layer_tensors(c, layer);
  t.push_back(layer_vector(layer, "attn_q.bias", c.q_dim(), &LlamaLayerWeights::bq));
  t.push_back(layer_vector(layer, "attn_k.bias", c.kv_dim(), &LlamaLayerWeights::bk));
  t.push_back(layer_vector(layer, "attn_v.bias", c.kv_dim(), &LlamaLayerWeights::bv));
  return t;
}

constexpr ShapePreset kQwen2Presets[] = {
    {"qwen2.5-0.5b", "Qwen2.5-0.5B: 24 layers, width 896, 14 heads (2 KV), FFN 4864, rope base 1000000",
     [](LlamaConfig& c) {
       c.n_embd = 896, c.n_layer = 24, c.n_head = 14, c.n_head_kv = 2, c.head_dim = 64, c.n_ff = 4864;
       c.rope_theta = 1000000.0f, c.n_ctx_train = 32768;
     }},
};

}  // namespace

extern const Architecture kQwen2Architecture{"qwen2", configure_qwen2, write_qwen2_metadata, qwen2_layer_tensors,
                                             kQwen2Presets};

}  // namespace kiln
