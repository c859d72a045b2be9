// qwen3: the Llama layer with rope over the halves of each head, no biases, and an RMSNorm over
// each head of q and of k (attn_q_norm, attn_k_norm: one weight of head_dim shared by the heads)
// before rope. Its head size (128) is not width / heads: key_length says it.
#include "model/architecture.h"

namespace kiln {
namespace {

void configure_qwen3(const GgufMetadata&, LlamaConfig& c) {
  c.rope_layout = RopeLayout::Halves;
  c.qkv_bias = false;
  c.qk_norm = true;
}

void write_qwen3_metadata(const LlamaConfig&, GgufWriter&) {}

std::vector<LayerTensor> qwen3_layer_tensors(const LlamaConfig& c, int layer) {
  std::vector<LayerTensor> t = llama_layer_tensors(c, layer);
  add_qk_norm_tensors(c, layer, t);
  return t;
}

constexpr ShapePreset kQwen3Presets[] = {
    {"qwen3-0.6b", "Qwen3-0.6B: 28 layers, width 1024, 16 heads (8 KV) of 128, FFN 3072, tied output",
     [](LlamaConfig& c) {
       c.n_embd = 1024, c.n_layer = 28, c.n_head = 16, c.n_head_kv = 8, c.head_dim = 128, c.n_ff = 3072;
       c.rope_theta = 1000000.0f, c.n_ctx_train = 40960, c.tied_output = true;
     }},
    {"qwen3-1.7b", "Qwen3-1.7B: 28 layers, width 2048, 16 heads (8 KV) of 128, FFN 6144, tied output",
     [](LlamaConfig& c) {
       c.n_embd = 2048, c.n_layer = 28, c.n_head = 16, c.n_head_kv = 8, c.head_dim = 128, c.n_ff = 6144;
       c.rope_theta = 1000000.0f, c.n_ctx_train = 40960, c.tied_output = true;
     }},
};

}  // namespace

extern const Architecture kQwen3Architecture{"qwen3", configure_qwen3, write_qwen3_metadata, qwen3_layer_tensors,
                                             kQwen3Presets};

}  // namespace kiln
