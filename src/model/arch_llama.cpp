// llama and mistral: the Llama layer as it is (interleaved rope, no biases). Mistral's sliding
// window is not in its GGUFs (llama.cpp runs it with full attention too).
// Mixtral is llama with llama.expert_count and expert_used_count: its FFN is the stacked experts
// (model/moe_ffn.h), top-2 of 8 with softmax gating.
#include "model/architecture.h"

namespace kiln {
namespace {

void configure_llama(const GgufMetadata& f, LlamaConfig& c) {
  c.rope_layout = RopeLayout::Interleaved;
  c.qkv_bias = false;
  configure_experts(f, c, /*required=*/false);  // mixtral
}

void write_llama_metadata(const LlamaConfig& c, GgufWriter& w) { write_expert_metadata(c, w); }

std::vector<LayerTensor> llama_or_mixtral_layer_tensors(const LlamaConfig& c, int layer) {
  return with_expert_ffn(c, layer, llama_layer_tensors(c, layer));
}

// The Llama shapes kiln's benchmarks time (TinyLlama-1.1B is what bench/ and the README use).
constexpr ShapePreset kLlamaPresets[] = {
    {"tinyllama-1.1b", "TinyLlama-1.1B: 22 layers, width 2048, 32 heads (4 KV), FFN 5632",
     [](LlamaConfig& c) {
       c.n_embd = 2048, c.n_layer = 22, c.n_head = 32, c.n_head_kv = 4, c.head_dim = 64, c.n_ff = 5632;
       c.n_ctx_train = 2048;
     }},
    {"llama-3.2-1b", "Llama-3.2-1B: 16 layers, width 2048, 32 heads (8 KV), FFN 8192, rope base 500000",
     [](LlamaConfig& c) {
       c.n_embd = 2048, c.n_layer = 16, c.n_head = 32, c.n_head_kv = 8, c.head_dim = 64, c.n_ff = 8192;
       c.rope_theta = 500000.0f, c.n_ctx_train = 131072;
     }},
    // Mixtral-8x7B's layer (8 experts, top-2, 32 heads over 8 KV heads, rope base 1e6) at
    // TinyLlama's widths and half its depth: 4.6B parameters, 1.3B active, 2.6 GB at q4_0.
    {"mixtral-8x-tiny", "Mixtral layout scaled: 16 layers, width 2048, 32 heads (8 KV), 8 experts of FFN 5632, top-2",
     [](LlamaConfig& c) {
       c.n_embd = 2048, c.n_layer = 16, c.n_head = 32, c.n_head_kv = 8, c.head_dim = 64, c.n_ff = 5632;
       c.rope_theta = 1000000.0f, c.n_ctx_train = 32768;
       c.n_expert = 8, c.n_expert_used = 2, c.n_ff_exp = 5632;
     }},
};

}  // namespace

extern const Architecture kLlamaArchitecture{"llama", configure_llama, write_llama_metadata,
                                             llama_or_mixtral_layer_tensors, kLlamaPresets};
extern const Architecture kMistralArchitecture{"mistral", configure_llama, write_llama_metadata, llama_layer_tensors,
                                               {}};

}  // namespace kiln
