#include "model/synthetic_model.h"

#include <cmath>
#include <memory>

#include "core/error.h"
#include "format/gguf_writer.h"
#include "kernels/weighted_quants.h"
#include "model/architecture.h"

namespace kiln {
namespace {

// Normal draws from a counter-based generator: tensor `stream`, element i always gets the same
// value, whatever the type or the order tensors are written in.
class NormalStream {
 public:
  explicit NormalStream(std::uint64_t seed) : state_(seed) {}
  float next() {
    if (have_spare_) {
      have_spare_ = false;
      return spare_;
    }
    // Box-Muller over two uniforms in (0, 1].
    const double u1 = (static_cast<double>(next_u64() >> 11) + 1.0) * 0x1.0p-53;
    const double u2 = static_cast<double>(next_u64() >> 11) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = static_cast<float>(r * std::sin(6.283185307179586 * u2));
    have_spare_ = true;
    return static_cast<float>(r * std::cos(6.283185307179586 * u2));
  }

 private:
  std::uint64_t next_u64() {  // splitmix64
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  std::uint64_t state_;
  float spare_ = 0.0f;
  bool have_spare_ = false;
};

std::uint64_t name_hash(const std::string& s) {
  std::uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ULL;
  return h;
}

struct TensorPlan {
  std::string name;
  int n_dims;
  std::array<std::int64_t, 4> ne;
  bool matrix;
  float mean;
  float stddev;
  bool keep_f32 = false;  // a matrix written f32 whatever the type (MoE routers)
};

void add_tensor(GgufWriter& w, const TensorPlan& t, DType type, std::uint64_t seed, std::function<void()> done) {
  const DType dtype = t.matrix && !t.keep_f32 ? type : DType::F32;
  const std::int64_t cols = t.ne[0];
  if (t.matrix && cols % traits(dtype).block_size != 0)
    fail("kiln synth: tensor {} has rows of {} values, not a multiple of {}'s block of {} (choose other widths or "
         "--type f32)",
         t.name, cols, dtype_name(dtype), traits(dtype).block_size);
  GgufTensorSpec spec(t.name, dtype, t.n_dims, t.ne);
  const std::uint64_t stream_seed = seed ^ name_hash(t.name);
  w.add_tensor(spec, [t, dtype, cols, stream_seed, done](GgufDataSink& out) {
    NormalStream rng(stream_seed);
    const std::int64_t rows = t.ne[1] * t.ne[2] * t.ne[3];
    std::vector<float> row(static_cast<std::size_t>(cols));  // (cols) one row's values
    std::vector<std::uint8_t> bytes(row_bytes(dtype, cols));
    for (std::int64_t r = 0; r < rows; ++r) {
      for (float& v : row) v = t.mean + t.stddev * rng.next();
      if (dtype == DType::F32) {
        out.write(row.data(), row.size() * sizeof(float));
      } else {
        kernels::quantize_row_weighted(dtype, row.data(), bytes.data(), cols, nullptr);
        out.write(bytes.data(), bytes.size());
      }
    }
    if (done) done();
  });
}

std::optional<std::array<std::int64_t, 4>> no_tensor(const std::string&) { return std::nullopt; }

}  // namespace

GgufMetadata synthetic_model_metadata(const SyntheticModelSpec& spec) {
  const Architecture* family = find_architecture(spec.config.arch);
  if (family == nullptr)
    fail("kiln synth: architecture '{}' is not supported (expected {})", spec.config.arch, supported_architectures());
  LlamaConfig c = spec.config;
  if (spec.tokenizer != nullptr) {
    const GgufArray* tokens = spec.tokenizer->get_array("tokenizer.ggml.tokens");
    if (tokens == nullptr) fail("{}: has no tokenizer.ggml.tokens to copy", spec.tokenizer->path());
    c.n_vocab = static_cast<int>(tokens->size());
  }
  if (c.n_vocab <= 0) fail("kiln synth: the vocabulary size is not set (give a tokenizer to copy, or a size)");
  GgufWriter w;
  write_common_metadata(c, w);
  family->write_metadata(c, w);
  w.set_metadata("general.file_type", gguf_value::u32(spec.type == DType::F32 ? 0u : spec.type == DType::F16 ? 1u : 7u));
  if (spec.tokenizer != nullptr)
    for (const auto& [key, value] : spec.tokenizer->metadata())
      if (key.rfind("tokenizer.", 0) == 0) w.set_metadata(key, value);
  for (const auto& [key, value] : spec.overrides) w.set_metadata(key, value);
  GgufMetadata m("kiln synth");
  for (const auto& [key, value] : w.metadata()) m.add(key, value);
  return m;
}

LlamaConfig write_synthetic_model(const SyntheticModelSpec& spec, const std::string& path,
                                  const std::function<void(std::size_t, std::size_t)>& on_tensor) {
  const GgufMetadata m = synthetic_model_metadata(spec);
  const bool tied = spec.tied_output || spec.config.tied_output;
  // Read back as any file is: the family's checks run on what is about to be written.
  const LlamaConfig c = llama_config_from_metadata(m, [&](const std::string& name) {
    if (name == "output.weight" && !tied) return std::optional<std::array<std::int64_t, 4>>({1, 1, 1, 1});
    return no_tensor(name);
  });
  const Architecture* family = find_architecture(c.arch);

  std::vector<TensorPlan> plan;
  const auto E = static_cast<std::int64_t>(c.n_embd), V = static_cast<std::int64_t>(c.n_vocab);
  // Tied: token_embd is also the output matrix, drawn as output.weight is (the first layer's
  // norm makes the embeddings' scale irrelevant to it), else logits of standard deviation
  // sqrt(E) saturate every softmax.
  plan.push_back({"token_embd.weight", 2, {E, V, 1, 1}, true, 0.0f,
                  tied ? spec.logit_std / std::sqrt(static_cast<float>(E)) : 1.0f});
  for (int il = 0; il < c.n_layer; ++il)
    for (const LayerTensor& t : family->layer_tensors(c, il)) {
      if (t.optional) continue;
      const bool matrix = t.is_matrix();
      const float stddev = matrix ? 1.0f / std::sqrt(static_cast<float>(t.ne[0])) : 0.1f;
      plan.push_back({t.name, t.n_dims, t.ne, matrix, t.synthetic_mean, stddev, t.keep_f32});
    }
  if (family->model_tensors != nullptr)
    for (const LayerTensor& t : family->model_tensors(c))
      plan.push_back({t.name, t.n_dims, t.ne, t.is_matrix(), t.synthetic_mean, t.is_matrix() ? 1.0f / std::sqrt(static_cast<float>(t.ne[0])) : 0.1f});
  plan.push_back({"output_norm.weight", 1, {E, 1, 1, 1}, false, 1.0f, 0.1f});
  if (!tied)
    plan.push_back({"output.weight", 2, {E, V, 1, 1}, true, 0.0f, spec.logit_std / std::sqrt(static_cast<float>(E))});

  GgufWriter w;
  for (const auto& [key, value] : m.metadata()) w.add_metadata(key, value);
  std::size_t written = 0;
  for (const TensorPlan& t : plan)
    add_tensor(w, t, spec.type, spec.seed, [&, total = plan.size()] {
      if (on_tensor) on_tensor(++written, total);
    });
  w.write(path);
  return c;
}

}  // namespace kiln
