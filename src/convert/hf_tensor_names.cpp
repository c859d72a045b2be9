#include "convert/hf_tensor_names.h"

#include <array>
#include <utility>

#include "core/error.h"

namespace kiln::convert {
namespace {

// (Hugging Face suffix after model.layers.N., GGUF suffix after blk.N.)
constexpr std::array<std::pair<const char*, const char*>, 14> kLayerNames = {{
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
    {"self_attn.rotary_emb.inv_freq", ""},
    {"rotary_emb.inv_freq", ""},
}};

constexpr std::array<std::pair<const char*, const char*>, 3> kModelNames = {{
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
}};

// "<prefix><digits>.<rest>" -> (layer, rest); nullopt when `name` does not have that form.
std::optional<std::pair<int, std::string>> split_layer(const std::string& name, const std::string& prefix) {
  if (name.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  std::size_t i = prefix.size();
  int layer = 0;
  const std::size_t digits_start = i;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9' && i - digits_start < 7) layer = layer * 10 + (name[i++] - '0');
  if (i == digits_start || i >= name.size() || name[i] != '.') return std::nullopt;
  return std::make_pair(layer, name.substr(i + 1));
}

std::vector<std::int64_t> rope_rows(std::int64_t n_rows, int n_heads, bool to_gguf) {
  if (n_heads <= 0 || n_rows % (2 * n_heads) != 0)
    fail("a rope projection of {} rows cannot be split into {} heads of rotary pairs", n_rows, n_heads);
  const std::int64_t head = n_rows / n_heads, half = head / 2;
  std::vector<std::int64_t> map(static_cast<std::size_t>(n_rows));
  for (std::int64_t h = 0; h < n_heads; ++h)
    for (std::int64_t i = 0; i < half; ++i)
      for (std::int64_t j = 0; j < 2; ++j) {
        const std::int64_t adjacent = h * head + 2 * i + j;  // GGUF: pairs (2i, 2i+1)
        const std::int64_t halves = h * head + j * half + i; // Hugging Face: pairs (i, i + half)
        if (to_gguf)
          map[static_cast<std::size_t>(adjacent)] = halves;
        else
          map[static_cast<std::size_t>(halves)] = adjacent;
      }
  return map;
}

}  // namespace

std::optional<std::string> gguf_tensor_name(const std::string& hf_name, const std::string& path) {
  for (const auto& [hf, gguf] : kModelNames)
    if (hf_name == hf) return std::string(gguf);
  if (auto split = split_layer(hf_name, "model.layers.")) {
    for (const auto& [hf, gguf] : kLayerNames)
      if (split->second == hf) {
        if (*gguf == '\0') return std::nullopt;
        return "blk." + std::to_string(split->first) + "." + gguf;
      }
  }
  fail("{}: tensor '{}' is not part of a Llama-family model (llama, mistral, qwen2)", path, hf_name);
}

std::string hf_tensor_name(const std::string& gguf_name, const std::string& path) {
  for (const auto& [hf, gguf] : kModelNames)
    if (gguf_name == gguf) return hf;
  if (auto split = split_layer(gguf_name, "blk.")) {
    for (const auto& [hf, gguf] : kLayerNames)
      if (*gguf != '\0' && split->second == gguf) return "model.layers." + std::to_string(split->first) + "." + hf;
  }
  fail("{}: tensor '{}' has no Hugging Face name in a Llama-family model", path, gguf_name);
}

std::vector<std::int64_t> hf_to_gguf_rope_rows(std::int64_t n_rows, int n_heads) { return rope_rows(n_rows, n_heads, true); }
std::vector<std::int64_t> gguf_to_hf_rope_rows(std::int64_t n_rows, int n_heads) { return rope_rows(n_rows, n_heads, false); }

bool is_rope_projection(const std::string& gguf_name, bool* kv) {
  auto split = split_layer(gguf_name, "blk.");
  if (!split) return false;
  const std::string& s = split->second;
  if (s == "attn_q.weight" || s == "attn_q.bias") {
    *kv = false;
    return true;
  }
  if (s == "attn_k.weight" || s == "attn_k.bias") {
    *kv = true;
    return true;
  }
  return false;
}

}  // namespace kiln::convert
