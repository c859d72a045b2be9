#pragma once
// Small random f32 Llama-family GGUFs for the export tests: llama (interleaved rope, optional
// partial rotary and tied output) or qwen2 (halves rope, q/k/v biases), grouped-query attention.
// With f16_exact every value is one an IEEE half holds exactly, so that an f16 export stores
// the same weights.
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "format/gguf_writer.h"

namespace kiln::test {

struct RandomLlamaSpec {
  std::string arch = "llama";  // "llama" or "qwen2" (biases, halves rope)
  int n_vocab = 48, n_embd = 64, n_layer = 2, n_head = 4, n_head_kv = 2, head_dim = 16, n_ff = 96;
  int n_rot = 0;  // 0: head_dim
  bool tied_output = false;
  bool f16_exact = false;
  std::uint32_t seed = 7;
};

inline void write_random_llama_gguf(const RandomLlamaSpec& s, const std::string& path) {
  std::mt19937 rng(s.seed);
  std::normal_distribution<float> dist(0.0f, 0.2f);
  GgufWriter w;
  const std::string p = s.arch + ".";
  using gguf_value::u32;
  w.add_metadata("general.architecture", gguf_value::string(s.arch));
  w.add_metadata(p + "context_length", u32(64));
  w.add_metadata(p + "embedding_length", u32(static_cast<std::uint32_t>(s.n_embd)));
  w.add_metadata(p + "block_count", u32(static_cast<std::uint32_t>(s.n_layer)));
  w.add_metadata(p + "feed_forward_length", u32(static_cast<std::uint32_t>(s.n_ff)));
  w.add_metadata(p + "attention.head_count", u32(static_cast<std::uint32_t>(s.n_head)));
  w.add_metadata(p + "attention.head_count_kv", u32(static_cast<std::uint32_t>(s.n_head_kv)));
  w.add_metadata(p + "attention.key_length", u32(static_cast<std::uint32_t>(s.head_dim)));
  w.add_metadata(p + "vocab_size", u32(static_cast<std::uint32_t>(s.n_vocab)));
  if (s.n_rot > 0) w.add_metadata(p + "rope.dimension_count", u32(static_cast<std::uint32_t>(s.n_rot)));
  auto tensor = [&](const std::string& name, std::int64_t rows, std::int64_t cols, float mean) {
    auto data = std::make_shared<std::vector<float>>(static_cast<std::size_t>(rows * cols));
    for (float& v : *data) {
      v = mean + dist(rng);
      if (s.f16_exact) v = f16_to_f32(f32_to_f16(v));
    }
    GgufTensorSpec spec(name, DType::F32, rows > 1 ? 2 : 1, {cols, rows, 1, 1});
    w.add_tensor(spec, [data](GgufDataSink& out) { out.write(data->data(), data->size() * sizeof(float)); });
  };
  const int QD = s.n_head * s.head_dim, KVD = s.n_head_kv * s.head_dim;
  tensor("token_embd.weight", s.n_vocab, s.n_embd, 0.0f);
  for (int l = 0; l < s.n_layer; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    tensor(b + "attn_norm.weight", 1, s.n_embd, 1.0f);
    tensor(b + "attn_q.weight", QD, s.n_embd, 0.0f);
    tensor(b + "attn_k.weight", KVD, s.n_embd, 0.0f);
    tensor(b + "attn_v.weight", KVD, s.n_embd, 0.0f);
    if (s.arch == "qwen2") {
      tensor(b + "attn_q.bias", 1, QD, 0.0f);
      tensor(b + "attn_k.bias", 1, KVD, 0.0f);
      tensor(b + "attn_v.bias", 1, KVD, 0.0f);
    }
    tensor(b + "attn_output.weight", s.n_embd, QD, 0.0f);
    tensor(b + "ffn_norm.weight", 1, s.n_embd, 1.0f);
    tensor(b + "ffn_gate.weight", s.n_ff, s.n_embd, 0.0f);
    tensor(b + "ffn_up.weight", s.n_ff, s.n_embd, 0.0f);
    tensor(b + "ffn_down.weight", s.n_embd, s.n_ff, 0.0f);
  }
  tensor("output_norm.weight", 1, s.n_embd, 1.0f);
  if (!s.tied_output) tensor("output.weight", s.n_vocab, s.n_embd, 0.0f);
  w.write(path);
}

}  // namespace kiln::test
