#include "train/parameter_init.h"

#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "kernels/matmul.h"

namespace kiln::train {
namespace {

std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// Uniform in (0, 1]: 53 random bits, never 0 (the logarithm below needs that).
double uniform_open0(std::mt19937_64& rng) { return (static_cast<double>(rng() >> 11) + 1.0) * 0x1.0p-53; }

}  // namespace

void init_parameters(const ParameterTable& table, const LlamaConfig& config, std::uint64_t seed, float* params) {
  const double residual_scale = 1.0 / std::sqrt(2.0 * config.n_layer);
  for (const ParameterInfo& p : table.entries()) {
    float* w = params + p.offset;
    if (!p.decay) {  // a norm gain
      for (std::int64_t i = 0; i < p.size(); ++i) w[i] = 1.0f;
      continue;
    }
    const bool residual = p.name.find("attn_output") != std::string::npos || p.name.find("ffn_down") != std::string::npos;
    const double stddev = 0.02 * (residual ? residual_scale : 1.0);
    std::mt19937_64 rng(seed ^ fnv1a(p.name));
    for (std::int64_t i = 0; i < p.size(); i += 2) {
      const double r = std::sqrt(-2.0 * std::log(uniform_open0(rng)));
      const double a = 2.0 * M_PI * uniform_open0(rng);
      w[i] = static_cast<float>(stddev * r * std::cos(a));
      if (i + 1 < p.size()) w[i + 1] = static_cast<float>(stddev * r * std::sin(a));
    }
  }
}

void load_parameters(const GgufFile& gguf, const ParameterTable& table, float* params) {
  for (const ParameterInfo& p : table.entries()) {
    const GgufTensorInfo* info = gguf.find_tensor(p.name);
    KILN_CHECK(info != nullptr, "{}: has no tensor {}, which the model needs", gguf.path(), p.name);
    const bool shape_ok = info->ne[0] == p.cols && info->ne[1] * info->ne[2] * info->ne[3] == p.rows;
    KILN_CHECK(shape_ok, "{}: tensor {} is {}x{}, expected {}x{}", gguf.path(), p.name, info->ne[1], info->ne[0],
               p.rows, p.cols);
    const TensorView view = gguf.tensor_view(*info);
    for (std::int64_t r = 0; r < p.rows; ++r)
      kernels::dequantize_row(view.dtype, view.row(r), params + p.offset + r * p.cols, p.cols);
  }
}

LlamaConfig trainable_config_from_gguf(const GgufFile& gguf) {
  LlamaConfig c = llama_config_from_gguf(gguf);
  KILN_CHECK(c.arch == "llama", "{}: training continues llama models only, not {}", gguf.path(), c.arch);
  KILN_CHECK(!c.qkv_bias, "{}: training does not support q/k/v biases", gguf.path());
  if (c.n_expert > 0) fail("{}: training does not support mixtures of experts ({} experts)", gguf.path(), c.n_expert);
  KILN_CHECK(c.rope_layout == RopeLayout::Interleaved && c.rope_scale == 1.0f && c.rope_attn_factor == 1.0f &&
                 (c.rope_scaling == RopeScaling::None || c.rope_scaling == RopeScaling::Linear),
             "{}: training supports llama's rope without scaling only", gguf.path());
  KILN_CHECK(c.n_rot == c.head_dim, "{}: training rotates whole heads only (rope dimension {} of {})", gguf.path(),
             c.n_rot, c.head_dim);
  return c;
}

}  // namespace kiln::train
