#include "convert/gguf_to_hf.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "convert/hf_config.h"
#include "convert/hf_tensor_names.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "format/safetensors_writer.h"
#include "format/tensor_source.h"
#include "model/llama_config.h"
#include "optimize/rewrite_pipeline.h"
#include "tokenizer/hf_tokenizer_writer.h"
#include "tokenizer/vocab.h"

namespace kiln::convert {
namespace {

namespace fs = std::filesystem;
using optimize::RewriteTensor;

std::vector<std::int64_t> outermost_first(const RewriteTensor& t) {
  std::vector<std::int64_t> shape;
  for (int d = std::max(t.n_dims, 1) - 1; d >= 0; --d) shape.push_back(t.ne[static_cast<std::size_t>(d)]);
  return shape;
}

const char* torch_dtype_name(DType t) {
  switch (t) {
    case DType::F16:
      return "float16";
    case DType::BF16:
      return "bfloat16";
    default:
      return "float32";
  }
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.flush();
  if (!out) fail("{}: cannot write", path);
}

// Removes the partly written folder unless released.
class TempDir {
 public:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  ~TempDir() {
    if (!path_.empty()) {
      std::error_code ec;
      fs::remove_all(path_, ec);
    }
  }
  const std::string& path() const { return path_; }
  void release() { path_.clear(); }

 private:
  std::string path_;
};

}  // namespace

HfExportReport convert_to_hf(const std::string& in, const std::string& out_dir, const HfExportOptions& options,
                             const std::function<void(const HfExportProgress&)>& progress) {
  const auto start = std::chrono::steady_clock::now();
  std::unique_ptr<TensorSource> src = TensorSource::open(in);
  const LlamaConfig config = llama_config_from_source(*src);
  // config.json is written for transformers' Llama and Qwen2 classes only: other families'
  // tensors and switches (q/k norms, fused matrices, YaRN, LongRoPE) would be lost.
  if (config.arch != "llama" && config.arch != "mistral" && config.arch != "qwen2")
    fail("{}: architecture '{}' cannot be converted to a Hugging Face folder (llama, mistral and qwen2 can)", in,
         config.arch);
  if (config.rope_scaling == RopeScaling::Yarn || config.rope_scaling == RopeScaling::LongRope ||
      config.rope_attn_factor != 1.0f)
    fail("{}: YaRN, LongRoPE and rope attention factors have no Hugging Face config.json that kiln writes", in);
  if (config.n_expert > 0)
    fail("{}: {} with {} experts per layer: kiln writes Hugging Face folders of dense Llama and Qwen2 models only", in,
         config.arch, config.n_expert);
  if (src->find_tensor("rope_freqs.weight") != nullptr)
    fail("{}: rope_freqs.weight (llama3-style rope scaling) has no Hugging Face config.json that kiln writes", in);
  // gemma: its post-norms, GELU, soft-caps and windows have no place in the Llama config.json.
  if (config.post_norms || config.n_swa > 0)
    fail("{}: converting {} to Hugging Face is not supported (kiln writes Llama and Qwen2 checkpoints)", in, config.arch);
  if (config.n_rot != config.head_dim)
    fail("{}: {} of the head's {} dimensions are rotated; Hugging Face's Llama rotates all of them", in, config.n_rot,
         config.head_dim);
  std::optional<DType> forced;
  if (options.type == "F32" || options.type == "f32") forced = DType::F32;
  else if (options.type == "F16" || options.type == "f16") forced = DType::F16;
  else if (options.type == "BF16" || options.type == "bf16") forced = DType::BF16;
  else if (options.type != "auto") fail("--type for --to hf is auto, F32, F16 or BF16, not '{}'", options.type);

  // The tensors: Hugging Face names, q/k rows back in rotate-half order for "llama".
  std::vector<RewriteTensor> tensors;
  bool any_f32 = false, any_bf16 = false;
  for (const SourceTensor& s : src->tensors()) {
    if (!s.dtype) fail("{}: tensor '{}' has type {}, which kiln cannot read", in, s.name, s.type_name);
    const DType from = *s.dtype;
    DType to = forced.value_or(from);
    if (traits(from).quantized && !forced) {
      if (!options.dequantize)
        fail("{}: tensor '{}' is quantized ({}); Hugging Face folders hold floats: pass --dequantize (F32, or --type)",
             in, s.name, dtype_name(from));
      to = DType::F32;
    }
    if (s.n_dims == 1 && !forced) to = DType::F32;  // norms and biases, as transformers keeps them in float32 here
    RewriteTensor t = optimize::whole_tensor(s, to);
    t.name = hf_tensor_name(s.name, in);
    bool kv = false;
    if (config.rope_layout == RopeLayout::Interleaved && is_rope_projection(s.name, &kv)) {
      const int heads = kv ? config.n_head_kv : config.n_head;
      if (s.n_dims == 1)
        t.columns = gguf_to_hf_rope_rows(s.ne[0], heads);
      else
        t.rows = gguf_to_hf_rope_rows(s.ne[1], heads);
    }
    optimize::check_rewrite(t, in);
    if (s.n_dims >= 2) {
      any_f32 = any_f32 || to == DType::F32;
      any_bf16 = any_bf16 || to == DType::BF16;
    }
    tensors.push_back(std::move(t));
  }
  // config.json's torch_dtype: the widest type of the matrices.
  const DType widest = any_f32 ? DType::F32 : any_bf16 ? DType::BF16 : DType::F16;

  if (fs::exists(out_dir) && !(fs::is_directory(out_dir) && fs::is_empty(out_dir)))
    fail("{}: exists and is not an empty folder", out_dir);
  const fs::path target = fs::absolute(out_dir);
  TempDir tmp(target.string() + ".tmp-" + std::to_string(::getpid()));
  fs::remove_all(tmp.path());
  fs::create_directories(tmp.path());

  // Vocabulary, when the model has one.
  std::optional<Vocab> vocab;
  if (src->metadata().find("tokenizer.ggml.tokens") != nullptr) vocab = Vocab::from_gguf(src->metadata());
  const int bos = vocab ? vocab->bos_id : -1;
  const int eos = vocab ? vocab->eos_id : -1;
  write_text(tmp.path() + "/config.json", hf_config_json(config, torch_dtype_name(widest), bos, eos));
  {
    nlohmann::json g;
    g["_from_model_config"] = true;
    if (bos >= 0) g["bos_token_id"] = bos;
    nlohmann::json eos_ids = nlohmann::json::array();
    if (vocab)
      for (std::int32_t id : {vocab->eos_id, vocab->eot_id, vocab->eom_id})
        if (id >= 0 && std::find(eos_ids.begin(), eos_ids.end(), id) == eos_ids.end()) eos_ids.push_back(id);
    if (eos_ids.size() == 1) g["eos_token_id"] = eos_ids[0];
    if (eos_ids.size() > 1) g["eos_token_id"] = eos_ids;
    write_text(tmp.path() + "/generation_config.json", g.dump(2) + "\n");
  }
  if (vocab) {
    HfTokenizerConfig tc;
    tc.chat_template = src->metadata().get_string("tokenizer.chat_template").value_or("");
    tc.model_max_length = config.n_ctx_train;
    write_hf_tokenizer_files(*vocab, tc, tmp.path());
  }

  HfExportReport report;
  report.input_format = src->format_name();
  report.architecture = config.arch;
  report.n_tensors = tensors.size();
  report.tokenizer = vocab.has_value();
  std::uint64_t total = 0;
  for (const RewriteTensor& t : tensors) total += t.n_bytes();
  ThreadPool pool(options.n_threads);
  std::uint64_t done = 0;
  SafetensorsWriter writer;
  writer.add_metadata("format", "pt");
  for (const RewriteTensor& t : tensors)
    writer.add_tensor(t.name, t.to, outermost_first(t), [&](SafetensorsDataSink& sink) {
      optimize::rewrite_tensor(
          t, in, pool,
          [&](const void* data, std::size_t n) {
            sink.write(data, n);
            done += n;
          },
          [&](std::int64_t) {
            if (progress) progress({done, total});
          });
    });
  if (progress) progress({0, total});
  const SafetensorsWriteResult files = writer.write_sharded(tmp.path(), options.max_shard_bytes);
  report.n_shards = files.files.size();
  report.bytes_out = total;

  // The folder appears whole: an empty target is replaced by the finished one.
  if (fs::exists(target)) fs::remove(target);
  fs::rename(tmp.path(), target);
  tmp.release();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace kiln::convert
