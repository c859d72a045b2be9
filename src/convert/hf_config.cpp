#include "convert/hf_config.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace kiln::convert {
namespace {

using nlohmann::json;

constexpr int kMaxDimension = 1 << 24;

int positive_int(const json& j, const std::string& key, const std::string& path, std::optional<int> fallback = {}) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (fallback) return *fallback;
    fail("{}: missing field {}", path, key);
  }
  if (!it->is_number_integer()) fail("{}: field {} is {} (expected an integer)", path, key, it->type_name());
  const std::int64_t v = it->get<std::int64_t>();
  if (v <= 0 || v > kMaxDimension) fail("{}: field {} = {} is out of range (1..{})", path, key, v, kMaxDimension);
  return static_cast<int>(v);
}

double positive_number(const json& j, const std::string& key, const std::string& path, double fallback) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number()) fail("{}: field {} is {} (expected a number)", path, key, it->type_name());
  const double v = it->get<double>();
  if (!(v > 0) || !std::isfinite(v)) fail("{}: field {} = {} must be a positive number", path, key, v);
  return v;
}

// A float32 hyper-parameter as the shortest decimal that reads back to it (1e-06, not
// 9.999999974752427e-07), as config.json files spell them.
double shortest(float v) { return std::stod(fmt::format("{}", v)); }

}  // namespace

HfLlamaConfig parse_hf_config(const std::string& text, const std::string& path) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
  if (!j.is_object()) fail("{}: expected a JSON object", path);
  HfLlamaConfig c;
  if (auto it = j.find("architectures"); it != j.end() && it->is_array() && !it->empty() && (*it)[0].is_string())
    c.hf_architecture = (*it)[0].get<std::string>();
  if (auto it = j.find("model_type"); it != j.end() && it->is_string()) c.model_type = it->get<std::string>();
  const std::string& a = c.hf_architecture;
  if (a == "LlamaForCausalLM" || a == "MistralForCausalLM" || (a.empty() && (c.model_type == "llama" || c.model_type == "mistral")))
    c.gguf_arch = "llama";
  else if (a == "Qwen2ForCausalLM" || (a.empty() && c.model_type == "qwen2"))
    c.gguf_arch = "qwen2";
  else if (!a.empty())
    fail("{}: architectures[0] = '{}' cannot be converted (expected LlamaForCausalLM, MistralForCausalLM or "
         "Qwen2ForCausalLM)", path, a);
  else
    fail("{}: model_type = '{}' cannot be converted (expected llama, mistral or qwen2)", path, c.model_type);

  c.hidden_size = positive_int(j, "hidden_size", path);
  c.intermediate_size = positive_int(j, "intermediate_size", path);
  c.num_layers = positive_int(j, "num_hidden_layers", path);
  c.num_heads = positive_int(j, "num_attention_heads", path);
  c.num_kv_heads = positive_int(j, "num_key_value_heads", path, c.num_heads);
  if (c.num_heads % c.num_kv_heads != 0)
    fail("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", path, c.num_heads, c.num_kv_heads);
  if (j.contains("head_dim") && !j["head_dim"].is_null()) {
    c.head_dim = positive_int(j, "head_dim", path);
  } else {
    if (c.hidden_size % c.num_heads != 0)
      fail("{}: hidden_size {} is not a multiple of num_attention_heads {}", path, c.hidden_size, c.num_heads);
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (c.head_dim % 2 != 0) fail("{}: head_dim {} must be even (rotary pairs)", path, c.head_dim);
  c.max_positions = positive_int(j, "max_position_embeddings", path, 2048);
  c.vocab_size = positive_int(j, "vocab_size", path);
  c.rms_norm_eps = positive_number(j, "rms_norm_eps", path, 1e-6);
  c.rope_theta = positive_number(j, "rope_theta", path, 10000.0);
  if (auto it = j.find("tie_word_embeddings"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) fail("{}: field tie_word_embeddings is {} (expected a boolean)", path, it->type_name());
    c.tie_word_embeddings = it->get<bool>();
  }
  if (auto it = j.find("torch_dtype"); it != j.end() && it->is_string()) c.torch_dtype = it->get<std::string>();
  if (auto it = j.find("rope_scaling"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) fail("{}: field rope_scaling is {} (expected an object)", path, it->type_name());
    const json& rs = *it;
    std::string type;
    for (const char* key : {"rope_type", "type"})
      if (auto t = rs.find(key); t != rs.end() && t->is_string()) {
        type = t->get<std::string>();
        break;
      }
    const std::string where = path + ": rope_scaling";
    if (type == "linear") {
      c.rope_scaling_type = type;
      c.rope_factor = positive_number(rs, "factor", where, 1.0);
    } else if (type == "llama3") {
      c.rope_scaling_type = type;
      c.rope_factor = positive_number(rs, "factor", where, 8.0);
      c.low_freq_factor = positive_number(rs, "low_freq_factor", where, 1.0);
      c.high_freq_factor = positive_number(rs, "high_freq_factor", where, 4.0);
      c.original_max_positions = positive_int(rs, "original_max_position_embeddings", where, 8192);
      if (!(c.high_freq_factor > c.low_freq_factor))
        fail("{}: high_freq_factor {} must exceed low_freq_factor {}", where, c.high_freq_factor, c.low_freq_factor);
    } else if (type != "default" && !type.empty()) {
      fail("{}: rope_scaling type '{}' cannot be converted (expected linear or llama3)", path, type);
    }
  }
  return c;
}

HfLlamaConfig read_hf_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open", path);
  std::ostringstream text;
  text << in.rdbuf();
  return parse_hf_config(text.str(), path);
}

std::vector<std::pair<std::string, GgufValue>> hf_config_gguf_metadata(const HfLlamaConfig& c, const std::string& name) {
  using namespace gguf_value;
  const std::string p = c.gguf_arch + ".";
  const auto u = [](int v) { return u32(static_cast<std::uint32_t>(v)); };
  std::vector<std::pair<std::string, GgufValue>> kv = {
      {"general.architecture", string(c.gguf_arch)},
      {"general.name", string(name)},
      {p + "context_length", u(c.max_positions)},
      {p + "embedding_length", u(c.hidden_size)},
      {p + "block_count", u(c.num_layers)},
      {p + "feed_forward_length", u(c.intermediate_size)},
      {p + "rope.dimension_count", u(c.head_dim)},
      {p + "attention.head_count", u(c.num_heads)},
      {p + "attention.head_count_kv", u(c.num_kv_heads)},
      {p + "attention.layer_norm_rms_epsilon", f32(static_cast<float>(c.rms_norm_eps))},
      {p + "rope.freq_base", f32(static_cast<float>(c.rope_theta))},
  };
  if (c.head_dim * c.num_heads != c.hidden_size) {
    kv.emplace_back(p + "attention.key_length", u(c.head_dim));
    kv.emplace_back(p + "attention.value_length", u(c.head_dim));
  }
  if (c.rope_scaling_type == "linear") {
    kv.emplace_back(p + "rope.scaling.type", string("linear"));
    kv.emplace_back(p + "rope.scaling.factor", f32(static_cast<float>(c.rope_factor)));
  }
  return kv;
}

std::vector<float> llama3_rope_factors(const HfLlamaConfig& c) {
  std::vector<float> factors;
  const double low_wavelen = c.original_max_positions / c.low_freq_factor;
  const double high_wavelen = c.original_max_positions / c.high_freq_factor;
  for (int i = 0; i < c.head_dim; i += 2) {
    const float freq = 1.0f / std::pow(static_cast<float>(c.rope_theta), static_cast<float>(i) / static_cast<float>(c.head_dim));
    const double wavelen = 2 * M_PI / freq;
    if (wavelen < high_wavelen) {
      factors.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      factors.push_back(static_cast<float>(c.rope_factor));
    } else {
      const double smooth = (c.original_max_positions / wavelen - c.low_freq_factor) / (c.high_freq_factor - c.low_freq_factor);
      factors.push_back(static_cast<float>(1.0 / ((1 - smooth) / c.rope_factor + smooth)));
    }
  }
  return factors;
}

std::string hf_config_json(const LlamaConfig& c, const std::string& torch_dtype, int bos_id, int eos_id) {
  const bool qwen2 = c.arch == "qwen2";
  json j;
  j["architectures"] = json::array({qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM"});
  j["model_type"] = qwen2 ? "qwen2" : "llama";
  j["hidden_size"] = c.n_embd;
  j["intermediate_size"] = c.n_ff;
  j["num_hidden_layers"] = c.n_layer;
  j["num_attention_heads"] = c.n_head;
  j["num_key_value_heads"] = c.n_head_kv;
  j["head_dim"] = c.head_dim;
  j["max_position_embeddings"] = c.n_ctx_train;
  j["vocab_size"] = c.n_vocab;
  j["rms_norm_eps"] = shortest(c.rms_eps);
  j["rope_theta"] = shortest(c.rope_theta);
  j["rope_scaling"] = c.rope_scale != 1.0f ? json{{"type", "linear"}, {"factor", shortest(c.rope_scale)}} : json(nullptr);
  j["tie_word_embeddings"] = c.tied_output;
  j["hidden_act"] = "silu";
  j["attention_bias"] = c.qkv_bias;
  j["torch_dtype"] = torch_dtype;
  j["bos_token_id"] = bos_id >= 0 ? json(bos_id) : json(nullptr);
  j["eos_token_id"] = eos_id >= 0 ? json(eos_id) : json(nullptr);
  j["use_cache"] = true;
  return j.dump(2) + "\n";
}

}  // namespace kiln::convert
