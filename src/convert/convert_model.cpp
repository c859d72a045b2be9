#include "convert/convert_model.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "convert/hf_config.h"
#include "convert/hf_folder.h"
#include "convert/hf_tensor_names.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "format/gguf_writer.h"
#include "format/tensor_source.h"
#include "model/llama_config.h"
#include "model/llama_weights.h"
#include "optimize/quant_plan.h"
#include "optimize/rewrite_pipeline.h"
#include "tokenizer/load_tokenizer.h"
#include "tokenizer/vocab_gguf.h"

namespace kiln::convert {
namespace {

namespace fs = std::filesystem;
using optimize::RewriteTensor;

// ggml's GGML_QNT_VERSION, written with a quantized output as llama-quantize does.
constexpr std::uint32_t kQuantizationVersion = 2;

// Keys of the input that the output sets itself.
bool replaced_key(const std::string& key, bool new_vocab) {
  if (key == "general.file_type" || key == "general.quantization_version" || key == "general.name" ||
      key.rfind("split.", 0) == 0)
    return true;
  return new_vocab && key.rfind("tokenizer.", 0) == 0;
}

std::string stem_of(const std::string& path) {
  fs::path p(path);
  if (p.filename().empty()) p = p.parent_path();
  return p.stem().string();
}

// ggml_n_dims: the dimensions up to the last one above 1.
int effective_dims(const std::array<std::int64_t, 4>& ne) {
  int n = 1;
  for (int d = 1; d < 4; ++d)
    if (ne[d] > 1) n = d + 1;
  return n;
}

struct Plan {
  std::unique_ptr<TensorSource> input;
  std::vector<std::pair<std::string, GgufValue>> metadata;
  std::optional<Vocab> vocab;  // written as tokenizer.ggml.*
  std::vector<std::pair<std::string, std::string>> chat_templates;
  std::vector<RewriteTensor> tensors;
  std::vector<float> rope_freqs;  // llama3 rope scaling: written as rope_freqs.weight
  std::string vocab_file;
  std::string format;
};

// Output tensors of a Hugging Face folder: renamed, q/k rows put in GGUF's rope order.
void plan_hf(Plan& p, const std::string& dir, const ConvertOptions& options) {
  const HfLlamaConfig cfg = read_hf_config(dir + "/config.json");
  p.input = TensorSource::open(dir);
  p.format = "Hugging Face (" + p.input->format_name() + ")";
  p.metadata = hf_config_gguf_metadata(cfg, options.name.empty() ? stem_of(dir) : options.name);
  if (options.tokenizer.empty() && !has_hf_tokenizer(dir)) {
    // A folder without a tokenizer (one written from a llama2.c checkpoint, say) becomes a GGUF
    // driven by ids, as a llama2.c checkpoint does: llama.cpp accepts no_vocab with the size.
    p.metadata.emplace_back("tokenizer.ggml.model", gguf_value::string("no_vocab"));
    p.metadata.emplace_back(cfg.gguf_arch + ".vocab_size", gguf_value::u32(static_cast<std::uint32_t>(cfg.vocab_size)));
  } else {
    HfTokenizer tok = read_hf_tokenizer(dir, cfg.vocab_size, options.tokenizer);
    p.vocab = std::move(tok.vocab);
    p.vocab_file = tok.vocab_file;
    p.chat_templates = std::move(tok.chat_templates);
  }
  bool has_lm_head = false;
  for (const SourceTensor& s : p.input->tensors()) {
    const std::optional<std::string> name = gguf_tensor_name(s.name, s.file.empty() ? dir : s.file);
    if (!name) continue;
    if (*name == "output.weight") {
      has_lm_head = true;
      if (cfg.tie_word_embeddings) continue;  // the output is token_embd
    }
    RewriteTensor t = optimize::whole_tensor(s, s.dtype.value_or(DType::F32));
    t.name = *name;
    bool kv = false;
    if (cfg.permutes_qk() && is_rope_projection(*name, &kv)) {
      const int heads = kv ? cfg.num_kv_heads : cfg.num_heads;
      if (s.n_dims == 1)
        t.columns = hf_to_gguf_rope_rows(s.ne[0], heads);
      else
        t.rows = hf_to_gguf_rope_rows(s.ne[1], heads);
    }
    p.tensors.push_back(std::move(t));
  }
  if (!cfg.tie_word_embeddings && !has_lm_head)
    fail("{}: config.json says tie_word_embeddings is false, but there is no lm_head.weight", dir);
  if (cfg.rope_scaling_type == "llama3") p.rope_freqs = llama3_rope_factors(cfg);
}

// Output tensors of a GGUF or llama2.c file: its own names and metadata.
void plan_model_file(Plan& p, const std::string& in, const ConvertOptions& options) {
  p.input = TensorSource::open(in);
  p.format = p.input->format_name();
  const bool new_vocab = !options.tokenizer.empty();
  for (const auto& [key, value] : p.input->metadata().metadata())
    if (!replaced_key(key, new_vocab)) p.metadata.emplace_back(key, value);
  const std::string name = options.name.empty() ? p.input->metadata().get_string("general.name").value_or(stem_of(in))
                                                : options.name;
  p.metadata.insert(p.metadata.begin() + std::min<std::ptrdiff_t>(1, static_cast<std::ptrdiff_t>(p.metadata.size())),
                    {"general.name", gguf_value::string(name)});
  if (new_vocab) {
    const LlamaConfig c = llama_config_from_source(*p.input);
    Vocab v = load_vocab_file(options.tokenizer);
    name_pretokenizer(v, options.tokenizer);
    pad_vocab(v, c.n_vocab, options.tokenizer, in + " vocabulary size");
    v.finalize(options.tokenizer);
    p.vocab = std::move(v);
    p.vocab_file = options.tokenizer;
  }
  for (const SourceTensor& s : p.input->tensors()) {
    if (!s.dtype) fail("{}: tensor '{}' has type {}, which kiln cannot read", in, s.name, s.type_name);
    p.tensors.push_back(optimize::whole_tensor(s, *s.dtype));
  }
}

// Sets each tensor's output type: auto keeps float weights as they are; a preset plans the types
// as kiln quantize does. Norms and biases are F32 either way.
std::uint32_t plan_types(Plan& p, const std::string& type, const GgufMetadata& shape_source) {
  std::uint32_t ftype = 0;
  std::vector<optimize::TensorDesc> descs;
  for (const RewriteTensor& t : p.tensors) descs.push_back({t.name, *t.source->dtype, t.n_dims, t.ne});
  std::vector<optimize::TensorPlan> plan;
  const bool automatic = type == "auto" || type == "AUTO";
  if (!automatic) {
    optimize::PlanOptions o;
    o.preset = &optimize::find_quant_preset(type);
    ftype = o.preset->ftype;
    plan = optimize::plan_quantization(optimize::model_shape(shape_source), descs, o);
  }
  bool any_f16 = false, any_bf16 = false;
  for (std::size_t i = 0; i < p.tensors.size(); ++i) {
    RewriteTensor& t = p.tensors[i];
    const DType from = *t.source->dtype;
    DType to = automatic ? from : plan[i].to;
    if (effective_dims(t.ne) == 1 && !traits(from).quantized) to = DType::F32;
    if (traits(from).quantized && to != from)
      fail("{}: tensor '{}' is already quantized ({}); use kiln quantize --allow-requantize to quantize it again",
           p.input->path(), t.source->name, dtype_name(from));
    t.to = to;
    any_f16 = any_f16 || to == DType::F16;
    any_bf16 = any_bf16 || to == DType::BF16;
  }
  if (automatic) ftype = any_bf16 ? 32 : any_f16 ? 1 : 0;  // LLAMA_FTYPE_MOSTLY_BF16 / F16 / ALL_F32
  return ftype;
}

}  // namespace

ConvertReport convert_to_gguf(const std::string& in, const std::string& out, const ConvertOptions& options,
                              const ConvertProgressFn& progress, const ConvertNoticeFn& notice) {
  const auto start = std::chrono::steady_clock::now();
  const auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  Plan p;
  const bool hf = fs::is_directory(in);
  if (hf) {
    if (!fs::exists(in + "/config.json")) fail("{}: a folder without config.json is not a Hugging Face model", in);
    plan_hf(p, in, options);
  } else {
    plan_model_file(p, in, options);
  }

  // The output's metadata and tensors, checked as kiln's loader will check them before any
  // byte is written: a TensorSource over the planned tensors (shapes and names of the output,
  // bytes of the input) must give a LlamaConfig and bind as a model.
  GgufMetadata out_meta(in);
  for (const auto& [key, value] : p.metadata) out_meta.add(key, value);
  const std::uint32_t ftype = plan_types(p, options.type, out_meta);
  {
    TensorSource check("planned output", std::move(out_meta));
    for (const RewriteTensor& t : p.tensors) {
      SourceTensor s = *t.source;
      s.name = t.name;
      s.ne = t.ne;
      s.n_dims = t.n_dims;
      s.file = t.source->file.empty() ? in : t.source->file;
      check.add_tensor(std::move(s));
    }
    SourceTensor freqs;
    if (!p.rope_freqs.empty()) {
      freqs.name = "rope_freqs.weight";
      freqs.type_name = "f32";
      freqs.dtype = DType::F32;
      freqs.n_dims = 1;
      freqs.ne = {static_cast<std::int64_t>(p.rope_freqs.size()), 1, 1, 1};
      freqs.data = reinterpret_cast<const std::uint8_t*>(p.rope_freqs.data());
      freqs.n_bytes = p.rope_freqs.size() * sizeof(float);
      check.add_tensor(freqs);
    }
    const LlamaConfig c = llama_config_from_source(check);
    bind_llama_weights(check, c);
    if (p.vocab && p.vocab->size() != c.n_vocab)
      fail("{}: the tokenizer has {} tokens but the model's embedding has {} rows", p.vocab_file, p.vocab->size(),
           c.n_vocab);
  }
  for (const RewriteTensor& t : p.tensors) optimize::check_rewrite(t, in);

  const std::size_t slash = out.rfind('/');
  const std::string out_dir = slash == std::string::npos ? "." : slash == 0 ? "/" : out.substr(0, slash);
  if (::access(out_dir.c_str(), W_OK) != 0) fail("{}: cannot create a file in {}: {}", out, out_dir, std::strerror(errno));

  GgufWriter writer;
  for (const auto& [key, value] : p.metadata) writer.add_metadata(key, value);
  writer.add_metadata("general.file_type", gguf_value::u32(ftype));
  bool quantized = false;
  for (const RewriteTensor& t : p.tensors) quantized = quantized || traits(t.to).quantized;
  if (quantized) writer.add_metadata("general.quantization_version", gguf_value::u32(kQuantizationVersion));
  if (p.vocab) add_vocab_metadata(writer, *p.vocab);
  for (const auto& [name, text] : p.chat_templates)
    writer.set_metadata(name.empty() ? "tokenizer.chat_template" : "tokenizer.chat_template." + name,
                        gguf_value::string(text));
  if (p.chat_templates.size() > 1) {
    GgufArray names;
    names.elem_type = GgufType::String;
    for (const auto& [name, text] : p.chat_templates)
      if (!name.empty()) names.strings.push_back(name);
    writer.set_metadata("tokenizer.chat_templates", gguf_value::array(std::move(names)));
  }

  ConvertReport report;
  report.input_format = p.format;
  report.architecture = p.input->metadata().get_string("general.architecture").value_or("");
  for (const auto& [key, value] : p.metadata)
    if (key == "general.architecture") report.architecture = *value.as_string();
  report.vocab_file = p.vocab_file;
  report.n_vocab = p.vocab ? p.vocab->size() : 0;
  report.n_chat_templates = p.chat_templates.size();
  const bool has_tokens = std::any_of(p.metadata.begin(), p.metadata.end(),
                                      [](const auto& kv) { return kv.first == "tokenizer.ggml.tokens"; });
  if (notice && !p.vocab && !has_tokens)
    notice("the output has no tokenizer (give one with --tokenizer): it runs from token ids only");

  std::sort(p.tensors.begin(), p.tensors.end(),
            [](const RewriteTensor& a, const RewriteTensor& b) { return optimize::llamacpp_tensor_order(a.name, b.name); });
  std::uint64_t total = 0;
  for (const RewriteTensor& t : p.tensors) {
    total += t.n_bytes();
    report.bytes_in += t.source->n_bytes;
    report.n_elements += t.ne[0] * t.n_rows();
  }
  report.n_tensors = p.tensors.size() + (p.rope_freqs.empty() ? 0 : 1);
  report.bytes_out = total;

  ThreadPool pool(options.n_threads);
  std::uint64_t done = 0;
  if (progress) progress({0, total, 0.0});
  if (!p.rope_freqs.empty()) {
    GgufTensorSpec spec("rope_freqs.weight", DType::F32, 1, {static_cast<std::int64_t>(p.rope_freqs.size()), 1, 1, 1});
    writer.add_tensor(std::move(spec), [&](GgufDataSink& sink) { sink.write(p.rope_freqs.data(), p.rope_freqs.size() * 4); });
  }
  for (const RewriteTensor& t : p.tensors) {
    writer.add_tensor(GgufTensorSpec(t.name, t.to, effective_dims(t.ne), t.ne), [&](GgufDataSink& sink) {
      optimize::rewrite_tensor(
          t, t.source->file.empty() ? in : t.source->file, pool,
          [&](const void* data, std::size_t n) {
            sink.write(data, n);
            done += n;
          },
          [&](std::int64_t) {
            if (progress) progress({done, total, elapsed()});
          });
    });
  }
  writer.write(out);
  report.seconds = elapsed();
  struct stat st {};
  if (::stat(out.c_str(), &st) == 0) report.file_bytes_out = static_cast<std::uint64_t>(st.st_size);
  return report;
}

}  // namespace kiln::convert
