#pragma once
// What the quantize interop tests share: libllama's llama_model_quantize, loaded by path from the
// npm peer's bundle (beside KILN_GGML_BASE_LIB), and a small random Llama GGUF to quantize.
#include <dlfcn.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "format/gguf_writer.h"
#include "kernels/matmul.h"

namespace kiln::test {

struct alignas(16) QuantizeParamsBytes {
  unsigned char bytes[1024];
};
struct LlamaQuantizeApi {
  QuantizeParamsBytes (*default_params)() = nullptr;
  std::uint32_t (*quantize)(const char*, const char*, const void*) = nullptr;
};

inline void silent_log(int, const char*, void*) {}

inline const LlamaQuantizeApi* llama_quantize_api() {
  static LlamaQuantizeApi api = [] {
    LlamaQuantizeApi a;
    const char* base = std::getenv("KILN_GGML_BASE_LIB");
    if (base == nullptr) return a;
    std::string dir(base);
    dir = dir.substr(0, dir.rfind('/'));
    void* lib = ::dlopen((dir + "/libllama.v0.4.0.so").c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) return a;
    if (auto init = reinterpret_cast<void (*)()>(::dlsym(lib, "llama_backend_init"))) init();
    if (auto set_log = reinterpret_cast<void (*)(void (*)(int, const char*, void*), void*)>(::dlsym(lib, "llama_log_set")))
      set_log(silent_log, nullptr);
    a.default_params = reinterpret_cast<QuantizeParamsBytes (*)()>(::dlsym(lib, "llama_model_quantize_default_params"));
    a.quantize = reinterpret_cast<std::uint32_t (*)(const char*, const char*, const void*)>(
        ::dlsym(lib, "llama_model_quantize"));
    return a;
  }();
  return api.default_params && api.quantize ? &api : nullptr;
}

// A small Llama GGUF with random weights (outliers included), `layers` layers, grouped-query
// attention (n_gqa 4), feed-forward width `ffn`: rows of 256 fit every block; ffn = 352 makes
// ffn_down's rows fit only the 32-blocks, so the K-quant mixes take their fallbacks there.
inline std::string write_model(const std::string& path, DType weight_type, int layers, int ffn) {
  using namespace gguf_value;
  const int dim = 256, heads = 8, kv_heads = 2, vocab = 1000;
  GgufWriter w;
  w.add_metadata("general.architecture", string("llama"));
  w.add_metadata("general.name", string("random"));
  w.add_metadata("llama.context_length", u32(256));
  w.add_metadata("llama.embedding_length", u32(dim));
  w.add_metadata("llama.block_count", u32(static_cast<std::uint32_t>(layers)));
  w.add_metadata("llama.feed_forward_length", u32(static_cast<std::uint32_t>(ffn)));
  w.add_metadata("llama.rope.dimension_count", u32(dim / heads));
  w.add_metadata("llama.attention.head_count", u32(heads));
  w.add_metadata("llama.attention.head_count_kv", u32(kv_heads));
  w.add_metadata("llama.attention.layer_norm_rms_epsilon", f32(1e-5f));
  w.add_metadata("llama.vocab_size", u32(vocab));
  w.add_metadata("general.file_type", u32(weight_type == DType::F32 ? 0 : 1));
  w.add_metadata("tokenizer.ggml.model", string("no_vocab"));
  unsigned seed = 7;
  const auto add = [&](const std::string& name, std::int64_t ne0, std::int64_t ne1) {
    const DType t = ne1 == 1 ? DType::F32 : weight_type;
    std::vector<float> x(static_cast<std::size_t>(ne0 * ne1));
    std::mt19937 rng(seed++);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    for (float& v : x) v = ne1 == 1 ? 1.0f + normal(rng) : normal(rng);
    for (std::size_t i = 3; i < x.size(); i += 101) x[i] *= 20.0f;
    std::vector<std::uint8_t> bytes(row_bytes(t, ne0) * static_cast<std::size_t>(ne1));
    kernels::quantize_row_ref(t, x.data(), bytes.data(), ne0 * ne1);
    w.add_tensor(GgufTensorSpec(name, t, ne1 == 1 ? 1 : 2, {ne0, ne1, 1, 1}),
                 [bytes = std::move(bytes)](GgufDataSink& out) { out.write(bytes.data(), bytes.size()); });
  };
  add("token_embd.weight", dim, vocab);
  for (int l = 0; l < layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    add(p + "attn_norm.weight", dim, 1);
    add(p + "attn_q.weight", dim, dim);
    add(p + "attn_k.weight", dim, dim / heads * kv_heads);
    add(p + "attn_v.weight", dim, dim / heads * kv_heads);
    add(p + "attn_output.weight", dim, dim);
    add(p + "ffn_norm.weight", dim, 1);
    add(p + "ffn_gate.weight", dim, ffn);
    add(p + "ffn_down.weight", ffn, dim);
    add(p + "ffn_up.weight", dim, ffn);
  }
  add("output_norm.weight", dim, 1);
  add("output.weight", dim, vocab);
  w.write(path);
  return path;
}


}  // namespace kiln::test
