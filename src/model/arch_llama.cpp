// llama and mistral: the Llama layer as it is (interleaved rope, no biases). Mistral's sliding
// window is not in its GGUFs (llama.cpp runs it with full attention too).
#include "model/architecture.h"

namespace kiln {
namespace {

void configure_llama(const GgufMetadata&, LlamaConfig& c) {
  c.rope_layout = RopeLayout::Interleaved;
  c.qkv_bias = false;
}

void write_llama_metadata(const LlamaConfig&, GgufWriter&) {}

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
};

}  // namespace

extern const Architecture kLlamaArchitecture{"llama", configure_llama, write_llama_metadata, llama_layer_tensors,
                                             kLlamaPresets};
extern const Architecture kMistralArchitecture{"mistral", configure_llama, write_llama_metadata, llama_layer_tensors,
                                               {}};

}  // namespace kiln
