// `kiln convert IN OUT`: a model from the formats training frameworks write (a Hugging Face
// folder, a llama2.c checkpoint) or a GGUF, as a GGUF that llama.cpp and kiln load. See
// src/convert/convert_model.h for what is read and written.
#include <fmt/format.h>

#include <cstdio>
#include <memory>
#include <string>

#include "commands.h"
#include "common_options.h"
#include "convert/convert_model.h"
#include "convert/gguf_to_hf.h"
#include "core/error.h"
#include "monitor/progress.h"
#include "optimize/quant_plan.h"
#include "temp_output_guard.h"

namespace kiln::cli {
namespace {

struct ConvertCliOptions {
  std::string in;
  std::string out;
  std::string to = "gguf";
  convert::ConvertOptions c;
  bool dequantize = false;
  double shard_gb = 5.0;
  monitor::ProgressMode progress = monitor::ProgressMode::automatic;
};

std::string mib(std::uint64_t bytes) { return fmt::format("{:.2f} MiB", static_cast<double>(bytes) / (1 << 20)); }

std::string count(std::int64_t n) {
  return n >= 1'000'000'000 ? fmt::format("{:.2f} B", n / 1e9) : fmt::format("{:.2f} M", n / 1e6);
}

void run_convert_to_hf(ConvertCliOptions& o) {
  convert::HfExportOptions h;
  h.type = o.c.type;
  h.dequantize = o.dequantize;
  h.n_threads = o.c.n_threads;
  if (!(o.shard_gb > 0)) fail("--shard-size must be positive");
  h.max_shard_bytes = static_cast<std::uint64_t>(o.shard_gb * 1e9);
  if (!o.c.tokenizer.empty()) fail("--tokenizer applies to GGUF output; --to hf writes the model's own vocabulary");
  convert::HfExportReport r;
  {
    monitor::Progress progress("convert", o.progress);
    bool started = false;
    r = convert::convert_to_hf(o.in, o.out, h, [&](const convert::HfExportProgress& p) {
      if (!started) {
        progress.stage("write", static_cast<std::int64_t>(p.bytes_total), "bytes");
        started = true;
      }
      progress.set(static_cast<std::int64_t>(p.bytes_done));
    });
    progress.finish();
  }
  std::printf("converted %s (%s, %s) -> %s (Hugging Face folder)\n", o.in.c_str(), r.input_format.c_str(),
              r.architecture.c_str(), o.out.c_str());
  std::printf("tensors:   %zu in %zu safetensors file%s, %s%s\n", r.n_tensors, r.n_shards, r.n_shards == 1 ? "" : "s",
              mib(r.bytes_out).c_str(), r.tokenizer ? ", tokenizer.json + tokenizer_config.json" : ", no tokenizer");
  std::printf("time:      %.2f s, %.1f MB/s written\n", r.seconds,
              r.seconds > 0 ? static_cast<double>(r.bytes_out) / r.seconds / 1e6 : 0.0);
}

void run_convert(ConvertCliOptions& o) {
  if (o.to == "hf") return run_convert_to_hf(o);
  if (o.to != "gguf") fail("--to is gguf or hf, not '{}'", o.to);
  if (o.dequantize) fail("--dequantize applies to --to hf");
  convert::ConvertReport r;
  {
    TempOutputGuard guard(o.out);
    monitor::Progress progress("convert", o.progress);
    bool started = false;
    r = convert::convert_to_gguf(
        o.in, o.out, o.c,
        [&](const convert::ConvertProgress& p) {
          if (!started) {
            progress.stage("write", static_cast<std::int64_t>(p.bytes_total), "bytes");
            started = true;
          }
          progress.set(static_cast<std::int64_t>(p.bytes_done));
        },
        [&](const std::string& line) { progress.log("kiln convert: " + line); });
    progress.finish();
  }
  std::printf("converted %s (%s, %s) -> %s\n", o.in.c_str(), r.input_format.c_str(), r.architecture.c_str(),
              o.out.c_str());
  std::printf("tensors:   %zu, %s weights, %s -> %s (file %s)\n", r.n_tensors, count(r.n_elements).c_str(),
              mib(r.bytes_in).c_str(), mib(r.bytes_out).c_str(), mib(r.file_bytes_out).c_str());
  if (!r.vocab_file.empty())
    std::printf("tokenizer: %d tokens from %s, %zu chat template%s\n", r.n_vocab, r.vocab_file.c_str(),
                r.n_chat_templates, r.n_chat_templates == 1 ? "" : "s");
  std::printf("time:      %.2f s, %.1f MB/s written\n", r.seconds,
              r.seconds > 0 ? static_cast<double>(r.file_bytes_out) / r.seconds / 1e6 : 0.0);
}

}  // namespace

void register_convert_command(CLI::App& app) {
  auto opt = std::make_shared<ConvertCliOptions>();
  CLI::App* cmd = app.add_subcommand("convert", "Convert a Hugging Face folder, llama2.c checkpoint or GGUF into a GGUF");
  cmd->footer(
      "IN is one of:\n"
      "  a Hugging Face folder: config.json (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM), weights as\n"
      "    model.safetensors, sharded *.safetensors with model.safetensors.index.json, or pytorch_model*.bin\n"
      "    (read without running the pickle), tokenizer.model or tokenizer.json, tokenizer_config.json (special\n"
      "    tokens, chat template), generation_config.json (end-of-generation ids);\n"
      "  a llama2.c checkpoint (.bin): give its tokenizer with --tokenizer (tokenizer.model, tokenizer.json, ...);\n"
      "  a GGUF: rewritten with another --type or --tokenizer.\n"
      "--to hf writes a GGUF or llama2.c model as a Hugging Face folder OUT: config.json, generation_config.json,\n"
      "  model.safetensors (sharded past --shard-size GB), tokenizer.json and tokenizer_config.json with the chat\n"
      "  template; --type auto|F32|F16|BF16; quantized weights only with --dequantize.\n"
      "--type auto keeps each weight's float type (norms become f32); F32, F16, BF16 or a quantization preset\n"
      "  (" + optimize::quant_preset_names() + ") plans the types as kiln quantize does.\n"
      "The output appears only when complete (written to OUT.tmp-PID, then renamed).\n"
      "Examples:\n"
      "  kiln convert ./Llama-3.2-1B-Instruct llama-3.2-1b-f16.gguf --type F16\n"
      "  kiln convert ./Qwen2.5-0.5B qwen2.5-0.5b-q8_0.gguf --type Q8_0\n"
      "  kiln convert stories15M.bin stories15M.gguf --tokenizer tokenizer.model\n"
      "  kiln convert model-f16.gguf ./model-hf --to hf\n");
  cmd->add_option("IN", opt->in, "input: a Hugging Face folder, a llama2.c .bin or a .gguf")->required();
  cmd->add_option("OUT", opt->out, "output GGUF file (a folder with --to hf)")->required();
  cmd->add_option("--to", opt->to, "gguf or hf")->capture_default_str();
  cmd->add_flag("--dequantize", opt->dequantize, "--to hf: write quantized weights as floats");
  cmd->add_option("--shard-size", opt->shard_gb, "--to hf: largest safetensors file, in GB")->capture_default_str();
  cmd->add_option("--type", opt->c.type, "auto, F32, F16, BF16 or a quantization preset")->capture_default_str();
  cmd->add_option("--tokenizer", opt->c.tokenizer, "tokenizer file or folder to write into the output");
  cmd->add_option("--name", opt->c.name, "general.name of the output (default: the input's)");
  add_threads_option(cmd, opt->c.n_threads);
  add_progress_options(cmd, opt->progress);
  cmd->callback([opt] { run_convert(*opt); });
}

}  // namespace kiln::cli
