#include "train/gguf_export.h"

#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "format/gguf_writer.h"
#include "tokenizer/vocab_gguf.h"

namespace kiln::train {

void export_gguf(const LlamaTrainingModel& model, const std::string& path, const GgufExportOptions& options) {
  if (options.type != DType::F32 && options.type != DType::F16 && options.type != DType::BF16)
    fail("a trained model is exported as F32, F16 or BF16");
  const LlamaConfig& c = model.config();
  if (c.rope_layout != RopeLayout::Interleaved || c.rope_scale != 1.0f)
    fail("export writes llama's rope layout without scaling only");
  GgufWriter w;
  using namespace gguf_value;
  w.add_metadata("general.architecture", string("llama"));
  if (!options.name.empty()) w.add_metadata("general.name", string(options.name));
  w.add_metadata("general.file_type", u32(options.type == DType::F32 ? 0u : options.type == DType::F16 ? 1u : 32u));
  w.add_metadata("llama.context_length", u32(static_cast<std::uint32_t>(c.n_ctx_train)));
  w.add_metadata("llama.embedding_length", u32(static_cast<std::uint32_t>(c.n_embd)));
  w.add_metadata("llama.block_count", u32(static_cast<std::uint32_t>(c.n_layer)));
  w.add_metadata("llama.feed_forward_length", u32(static_cast<std::uint32_t>(c.n_ff)));
  w.add_metadata("llama.attention.head_count", u32(static_cast<std::uint32_t>(c.n_head)));
  w.add_metadata("llama.attention.head_count_kv", u32(static_cast<std::uint32_t>(c.n_head_kv)));
  w.add_metadata("llama.attention.key_length", u32(static_cast<std::uint32_t>(c.head_dim)));
  w.add_metadata("llama.attention.value_length", u32(static_cast<std::uint32_t>(c.head_dim)));
  w.add_metadata("llama.rope.dimension_count", u32(static_cast<std::uint32_t>(c.n_rot)));
  w.add_metadata("llama.rope.freq_base", f32(c.rope_theta));
  w.add_metadata("llama.attention.layer_norm_rms_epsilon", f32(c.rms_eps));
  w.add_metadata("llama.vocab_size", u32(static_cast<std::uint32_t>(c.n_vocab)));
  if (options.tokenizer != nullptr)
    for (const auto& [key, value] : options.tokenizer->metadata())
      if (key.rfind("tokenizer.", 0) == 0) w.add_metadata(key, value);
  if (options.tokenizer == nullptr && options.vocab != nullptr) {
    KILN_CHECK(options.vocab->size() == c.n_vocab, "the tokenizer has {} tokens, the model {}: they must be equal",
               options.vocab->size(), c.n_vocab);
    add_vocab_metadata(w, *options.vocab);
  }

  const float* params = model.params();
  const ParameterTable& table = model.table();
  for (const ParameterInfo& p : table.entries()) {
    const bool matrix = p.rows > 1;
    const DType type = matrix ? options.type : DType::F32;
    GgufTensorSpec spec(p.name, type, matrix ? 2 : 1, {p.cols, matrix ? p.rows : 1, 1, 1});
    const float* data = params + p.offset;
    const std::int64_t n = p.size();
    w.add_tensor(spec, [data, n, type](GgufDataSink& out) {
      if (type == DType::F32) return out.write(data, static_cast<std::size_t>(n) * sizeof(float));
      std::vector<std::uint16_t> row(4096);
      for (std::int64_t i = 0; i < n; i += 4096) {
        const std::int64_t m = std::min<std::int64_t>(4096, n - i);
        for (std::int64_t j = 0; j < m; ++j)
          row[static_cast<std::size_t>(j)] = type == DType::F16 ? f32_to_f16(data[i + j]) : f32_to_bf16(data[i + j]);
        out.write(row.data(), static_cast<std::size_t>(m) * sizeof(std::uint16_t));
      }
    });
  }
  w.write(path);
}

}  // namespace kiln::train
