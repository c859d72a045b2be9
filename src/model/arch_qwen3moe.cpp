// qwen3moe: qwen3's attention (rope over halves, per-head RMSNorm of q and k, no biases) with a
// mixture-of-experts FFN in every layer (model/moe_ffn.h): top-k of many small experts
// (Qwen3-30B-A3B: 8 of 128, each of width expert_feed_forward_length 768), softmax gating with
// the top-k probabilities renormalised, no shared expert.
#include "model/architecture.h"

#include "core/error.h"
#include "format/gguf_file.h"
#include "format/gguf_writer.h"

namespace kiln {

extern const Architecture kQwen3Architecture;

namespace {

void configure_qwen3moe(const GgufMetadata& f, LlamaConfig& c) {
  c.rope_layout = RopeLayout::Halves;
  c.qkv_bias = false;
  c.qk_norm = true;
  configure_experts(f, c, /*required=*/true);
  const std::string key = c.arch + ".expert_feed_forward_length";
  const std::optional<std::int64_t> ff = f.get_int(key);
  if (!ff) fail("{}: missing metadata key {}", f.path(), key);
  if (*ff <= 0 || *ff > (1 << 24)) fail("{}: metadata {} = {} is out of range (expected 1..16777216)", f.path(), key, *ff);
  c.n_ff_exp = static_cast<int>(*ff);
}

// A config without experts (kiln synth's default shape) gets 8 experts of top-2, each of the
// config's FFN width.
void write_qwen3moe_metadata(const LlamaConfig& c, GgufWriter& w) {
  LlamaConfig m = c;
  if (m.n_expert == 0) m.n_expert = 8, m.n_expert_used = 2;
  if (m.n_ff_exp == 0) m.n_ff_exp = m.n_ff;
  write_expert_metadata(m, w);
  w.set_metadata(c.arch + ".expert_feed_forward_length", gguf_value::u32(static_cast<std::uint32_t>(m.n_ff_exp)));
}

std::vector<LayerTensor> qwen3moe_layer_tensors(const LlamaConfig& c, int layer) {
  return with_expert_ffn(c, layer, kQwen3Architecture.layer_tensors(c, layer));
}

constexpr ShapePreset kQwen3MoePresets[] = {
    // Qwen3-30B-A3B's layer (width 2048, 32 heads over 4 KV heads of 128, 128 experts of 768,
    // top-8) at 10 of its 48 layers: 6.1B parameters, 0.6B active, 3.4 GB at q4_0.
    {"qwen3-30b-a3b-10l", "Qwen3-30B-A3B's layer at 10 of 48 layers: width 2048, 32 heads (4 KV) of 128, 128 experts of 768, top-8",
     [](LlamaConfig& c) {
       c.n_embd = 2048, c.n_layer = 10, c.n_head = 32, c.n_head_kv = 4, c.head_dim = 128, c.n_ff = 6144;
       c.rope_theta = 1000000.0f, c.n_ctx_train = 40960;
       c.n_expert = 128, c.n_expert_used = 8, c.n_ff_exp = 768;
     }},
};

}  // namespace

extern const Architecture kQwen3MoeArchitecture{"qwen3moe", configure_qwen3moe, write_qwen3moe_metadata,
                                                qwen3moe_layer_tensors, kQwen3MoePresets};

}  // namespace kiln
