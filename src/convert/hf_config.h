#pragma once
// A Hugging Face model folder's config.json for the Llama family, and its GGUF metadata both ways.
//   LlamaForCausalLM, MistralForCausalLM  -> GGUF architecture "llama" (as llama.cpp converts Mistral)
//   Qwen2ForCausalLM                      -> "qwen2" (q/k/v biases, neox rope)
// Read: hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
// num_key_value_heads (default: the heads), head_dim (default: hidden / heads),
// max_position_embeddings, rms_norm_eps, rope_theta, rope_scaling (linear, or llama3 whose
// per-frequency factors become the rope_freqs.weight tensor llama.cpp reads), tie_word_embeddings,
// vocab_size. Everything else in the file is ignored.
#include <string>
#include <utility>
#include <vector>

#include "format/gguf_metadata.h"
#include "model/llama_config.h"

namespace kiln::convert {

struct HfLlamaConfig {
  std::string hf_architecture;  // "LlamaForCausalLM", ...
  std::string model_type;       // config.json's model_type
  std::string gguf_arch;        // "llama" or "qwen2"
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int max_positions = 0;
  int vocab_size = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  std::string rope_scaling_type;  // "", "linear", "llama3"
  double rope_factor = 1.0;
  // llama3 rope scaling
  double low_freq_factor = 1.0, high_freq_factor = 4.0;
  int original_max_positions = 8192;
  bool tie_word_embeddings = false;
  std::string torch_dtype;  // "float16", "bfloat16", "float32" or ""

  bool permutes_qk() const { return gguf_arch == "llama"; }
};

// Parses `text` (the config.json at `path`, named in messages). Throws kiln::Error naming the
// file and the field on a missing or inconsistent field, or an architecture kiln cannot convert.
HfLlamaConfig parse_hf_config(const std::string& text, const std::string& path);
HfLlamaConfig read_hf_config(const std::string& path);

// The <arch>.* and general.architecture / general.name keys of the GGUF kiln writes.
std::vector<std::pair<std::string, GgufValue>> hf_config_gguf_metadata(const HfLlamaConfig& config,
                                                                       const std::string& name);

// llama3 rope scaling's per-frequency divisors ((head_dim / 2) floats), as llama.cpp's converter
// stores them in rope_freqs.weight.
std::vector<float> llama3_rope_factors(const HfLlamaConfig& config);

// The config.json text of a model (for `convert --to hf`): LlamaForCausalLM or Qwen2ForCausalLM
// with the model's hyper-parameters; `torch_dtype` names the weights' type; `bos`/`eos` the ids
// (-1: absent).
std::string hf_config_json(const LlamaConfig& config, const std::string& torch_dtype, int bos_id, int eos_id);

}  // namespace kiln::convert
