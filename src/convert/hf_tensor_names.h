#pragma once
// Hugging Face's Llama-family tensor names and GGUF's, both ways, and the row order of the
// query and key projections. Hugging Face's Llama checkpoints store each head's q/k rows for
// rotate-half rope (pairs (i, i + d/2)); GGUF's "llama" architecture rotates adjacent pairs
// (2i, 2i + 1), so llama.cpp's converter permutes those rows, and kiln does the same (qwen2 keeps
// rotate-half in GGUF too: no permutation).
//   model.embed_tokens.weight                 token_embd.weight
//   model.norm.weight                         output_norm.weight
//   lm_head.weight                            output.weight
//   model.layers.N.input_layernorm.weight     blk.N.attn_norm.weight
//   model.layers.N.self_attn.{q,k,v}_proj.*   blk.N.attn_{q,k,v}.*      (weight, and bias: qwen2)
//   model.layers.N.self_attn.o_proj.weight    blk.N.attn_output.weight
//   model.layers.N.post_attention_layernorm.* blk.N.ffn_norm.weight
//   model.layers.N.mlp.{gate,up,down}_proj.*  blk.N.ffn_{gate,up,down}.weight
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kiln::convert {

// The GGUF name of a Hugging Face tensor; nullopt for a tensor the conversion drops
// (rotary_emb.inv_freq, which is recomputed); throws kiln::Error naming `path` and the tensor for
// a name that is not part of a Llama-family model.
std::optional<std::string> gguf_tensor_name(const std::string& hf_name, const std::string& path);
// The Hugging Face name of a GGUF tensor; throws kiln::Error for a name without one.
std::string hf_tensor_name(const std::string& gguf_name, const std::string& path);

// Row order of a q or k projection with `n_rows` rows in `n_heads` heads: output row o of the
// GGUF tensor is input row map[o] of the Hugging Face one (llama.cpp's permute), and back.
std::vector<std::int64_t> hf_to_gguf_rope_rows(std::int64_t n_rows, int n_heads);
std::vector<std::int64_t> gguf_to_hf_rope_rows(std::int64_t n_rows, int n_heads);

// Whether a GGUF tensor is blk.N.attn_q.weight / attn_k.weight (or their biases); *kv is set
// to whether it is the key projection.
bool is_rope_projection(const std::string& gguf_name, bool* kv);

}  // namespace kiln::convert
