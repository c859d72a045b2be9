#pragma once
// `kiln convert IN OUT.gguf`: any model kiln reads, as a GGUF that llama.cpp and kiln load.
//   a Hugging Face folder (config.json, *.safetensors or pytorch_model*.bin, tokenizer files):
//     hyper-parameters from config.json (convert/hf_config.h), tensors renamed and q/k rows
//     permuted for GGUF's rope (convert/hf_tensor_names.h), the tokenizer, special tokens, chat
//     templates and end-of-generation ids (convert/hf_folder.h);
//   a llama2.c checkpoint or a GGUF: metadata and tensors carried over, with the tokenizer of
//     `--tokenizer` written in (a llama2.c checkpoint holds none).
// Types: "auto" keeps each weight's float type (norms and biases become F32, as llama.cpp's
// converter writes them); F32, F16, BF16 or any quantization preset (optimize/quant_plan.h) plan
// every tensor as `kiln quantize` would. Tensors stream one at a time through the rewrite pipeline
// (optimize/rewrite_pipeline.h) into the GGUF writer, which writes a temporary file and renames it.
#include <cstdint>
#include <functional>
#include <string>

namespace kiln::convert {

struct ConvertOptions {
  std::string type = "auto";
  std::string tokenizer;  // a tokenizer file or folder to use instead of the model's own
  std::string name;       // general.name; default: the input's name
  int n_threads = 0;      // <= 0: the hardware threads
};

struct ConvertProgress {
  std::uint64_t bytes_done = 0;  // of output tensor data
  std::uint64_t bytes_total = 0;
  double seconds = 0;
};

struct ConvertReport {
  std::string input_format;  // "Hugging Face (safetensors)", "llama2.c", "GGUF v3"
  std::string architecture;
  std::size_t n_tensors = 0;
  std::int64_t n_elements = 0;
  std::uint64_t bytes_in = 0;   // input tensor data
  std::uint64_t bytes_out = 0;  // output tensor data
  std::uint64_t file_bytes_out = 0;
  int n_vocab = 0;
  std::string vocab_file;  // where the tokenizer came from ("" when the output has none)
  std::size_t n_chat_templates = 0;
  double seconds = 0;
};

using ConvertProgressFn = std::function<void(const ConvertProgress&)>;
using ConvertNoticeFn = std::function<void(const std::string&)>;

// Converts `in` to the GGUF `out`. Throws kiln::Error naming the file and field on anything it
// cannot convert, and leaves nothing at `out`.
ConvertReport convert_to_gguf(const std::string& in, const std::string& out, const ConvertOptions& options,
                              const ConvertProgressFn& progress = {}, const ConvertNoticeFn& notice = {});

}  // namespace kiln::convert
