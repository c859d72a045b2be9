#pragma once
// `kiln convert MODEL OUT_DIR --to hf`: a Llama-family model kiln reads (GGUF, llama2.c) as a
// Hugging Face folder that transformers-style loaders accept:
//   config.json             LlamaForCausalLM or Qwen2ForCausalLM with the model's hyper-parameters
//   generation_config.json  bos and the end-of-generation ids (EOS, EOT, EOM)
//   model.safetensors       (or model-0000i-of-0000N.safetensors + model.safetensors.index.json
//                           past the shard size) with Hugging Face's names; q/k rows put back in
//                           rotate-half order for "llama" (the inverse of convert_model's permutation)
//   tokenizer.json, tokenizer_config.json (with the chat template), when the model has a vocabulary
// Weights stay F32/F16/BF16 as stored (or all become --type); quantized ones are dequantized only
// with `dequantize` (to F32, or --type). The folder is written as OUT_DIR.tmp-<pid> and renamed
// when complete; an OUT_DIR that exists and is not empty is refused.
#include <cstdint>
#include <functional>
#include <string>

namespace kiln::convert {

struct HfExportOptions {
  std::string type = "auto";  // auto, F32, F16 or BF16
  bool dequantize = false;    // allow quantized weights (written as F32 unless --type says otherwise)
  std::uint64_t max_shard_bytes = 5'000'000'000;
  int n_threads = 0;
};

struct HfExportReport {
  std::string input_format;
  std::string architecture;
  std::size_t n_tensors = 0;
  std::size_t n_shards = 0;
  std::uint64_t bytes_out = 0;
  bool tokenizer = false;
  double seconds = 0;
};

struct HfExportProgress {
  std::uint64_t bytes_done = 0;
  std::uint64_t bytes_total = 0;
};

HfExportReport convert_to_hf(const std::string& in, const std::string& out_dir, const HfExportOptions& options,
                             const std::function<void(const HfExportProgress&)>& progress = {});

}  // namespace kiln::convert
