// `kiln quantize IN OUT TYPE`: rewrites a model as a GGUF quantized by a named mix (Q4_K_M, Q8_0,
// ...), bit-exact with llama.cpp's llama-quantize (with or without --imatrix), or with kiln's
// calibrated method (--method gptq). See
// src/optimize/quantize_model.h for what is written and src/optimize/quant_plan.h for the rules.
#include <fmt/format.h>

#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "common_options.h"
#include "core/error.h"
#include "temp_output_guard.h"
#include "monitor/progress.h"
#include "optimize/quant_plan.h"
#include "optimize/quantize_model.h"

namespace kiln::cli {
namespace {

struct QuantizeCliOptions {
  std::string in;
  std::string out;
  std::string type;
  optimize::QuantizeOptions q;
  bool dry_run = false;
  monitor::ProgressMode progress = monitor::ProgressMode::automatic;
};

std::string mib(std::uint64_t bytes) { return fmt::format("{:.2f} MiB", static_cast<double>(bytes) / (1 << 20)); }

double bpw(std::uint64_t bytes, std::int64_t n) { return n > 0 ? 8.0 * static_cast<double>(bytes) / n : 0; }

// The writer's reports as the job's progress, in weights. The first (before any tensor) starts
// the stage, so that a refused input prints nothing but its error; the stage is named after the
// preset, which is known to be valid by then.
void show_progress(monitor::Progress& progress, const std::string& type, const optimize::QuantizeProgress& p) {
  if (p.elements_done == 0 && p.tensor == 0)
    progress.stage(std::string(optimize::find_quant_preset(type).name), p.elements_total, "weights");
  progress.detail(fmt::format("{}/{} {}", p.tensor + 1, p.n_tensors, *p.name));
  progress.set(p.elements_done);
}

void print_plan_summary(const optimize::QuantizeReport& r) {
  std::map<std::string, int> counts;
  for (const optimize::TensorPlan& t : r.plan) ++counts[std::string(dtype_name(t.to))];
  std::string types;
  for (const auto& [name, n] : counts) types += fmt::format("{}{} x{}", types.empty() ? "" : ", ", name, n);
  std::printf("types:   %s\n", types.c_str());
}

void run_quantize(QuantizeCliOptions& o) {
  o.q.type = o.type;
  if (o.dry_run) {
    const optimize::QuantizeReport r = optimize::plan_model_quantization(o.in, o.q);
    std::printf("%-36s %-8s %-8s %s\n", "tensor", "from", "to", "note");
    for (const optimize::TensorPlan& t : r.plan)
      std::printf("%-36s %-8s %-8s %s\n", t.name.c_str(), std::string(dtype_name(t.from)).c_str(),
                  std::string(dtype_name(t.to)).c_str(),
                  !t.fallback.empty() ? t.fallback.c_str() : t.overridden ? "--tensor-type" : "");
    std::printf("before:  %s, %.3f bits per weight\n", mib(r.bytes_in).c_str(), bpw(r.bytes_in, r.n_elements));
    std::printf("after:   %s, %.3f bits per weight (%s, dry run: nothing written)\n", mib(r.bytes_out).c_str(),
                bpw(r.bytes_out, r.n_elements), std::string(r.preset->name).c_str());
    print_plan_summary(r);
    return;
  }
  optimize::QuantizeReport r;
  {
    TempOutputGuard guard(o.out);
    monitor::Progress progress("quantize", o.progress);
    r = optimize::quantize_model(
        o.in, o.out, o.q, [&](const optimize::QuantizeProgress& p) { show_progress(progress, o.type, p); },
        [&](const std::string& line) { progress.log("kiln quantize: " + line); });
    progress.finish();
  }

  std::printf("quantized %s (%s) -> %s as %s (general.file_type %u), %d threads\n", o.in.c_str(),
              r.input_format.c_str(), o.out.c_str(), std::string(r.preset->name).c_str(), r.preset->ftype,
              r.n_threads);
  std::printf("before:  %s in %zu tensors, %.3f bits per weight (file %s)\n", mib(r.bytes_in).c_str(), r.plan.size(),
              bpw(r.bytes_in, r.n_elements), mib(r.file_bytes_in).c_str());
  std::printf("after:   %s, %.3f bits per weight (file %s)\n", mib(r.bytes_out).c_str(), bpw(r.bytes_out, r.n_elements),
              mib(r.file_bytes_out).c_str());
  print_plan_summary(r);
  std::printf("time:    %.2f s, %.1f Mweights/s\n", r.seconds, r.seconds > 0 ? r.n_elements / r.seconds / 1e6 : 0.0);
}

}  // namespace

void register_quantize_command(CLI::App& app) {
  auto opt = std::make_shared<QuantizeCliOptions>();
  CLI::App* cmd = app.add_subcommand("quantize", "Quantize a model into a GGUF file (llama.cpp's presets, bit-exact)");
  cmd->footer(
      "IN is a GGUF or a llama2.c checkpoint (.bin; written as a llama GGUF without a vocabulary).\n"
      "TYPE is one of: " + optimize::quant_preset_names() + "\n"
      "  (Q3_K, Q4_K, Q5_K mean the _M mixes). The mixes follow llama.cpp's rules: output.weight q6_K,\n"
      "  attn_v and ffn_down with more bits in some layers for the _M and Q3_K mixes; 1-D tensors stay as they\n"
      "  are. Rows that do not divide into a type's blocks fall back (q4_K->q5_0, q5_K->q5_1, q6_K->q8_0,\n"
      "  q2_K/q3_K->q4_0, else f16), said on stderr.\n"
      "--imatrix FILE (from kiln imatrix or llama-imatrix, GGUF or .dat) weighs each weight's rounding error by\n"
      "  its input channel's mean squared activation, as llama-quantize --imatrix does (same bytes); the Q4_0\n"
      "  and Q5_0 mixes then also raise the first eighth of ffn_down to q4_1/q5_1, as llama.cpp does.\n"
      "--method gptq (kiln's, needs an imatrix collected with --covariance) feeds each rounding error forward\n"
      "  onto the columns not yet rounded, as the inputs' covariance says (GPTQ), into the same GGUF types.\n"
      "The output appears only when complete (written to OUT.tmp-PID, then renamed).\n"
      "Examples:\n"
      "  kiln quantize model-f16.gguf model-q4_k_m.gguf Q4_K_M\n"
      "  kiln quantize model-f16.gguf model-q4_0.gguf Q4_0 --tensor-type 'attn_v=q8_0' --threads 2\n"
      "  kiln quantize stories260K.bin stories260K.gguf F32   # llama2.c -> GGUF\n"
      "  kiln quantize model-q8_0.gguf model-q4_0.gguf Q4_0 --allow-requantize\n"
      "  kiln quantize model-f16.gguf model-q4_k_m.gguf Q4_K_M --imatrix model.imatrix.gguf\n"
      "  kiln quantize model-f16.gguf model-q4_k_m.gguf Q4_K_M --imatrix cov.imatrix.gguf --method gptq\n");
  cmd->add_option("IN", opt->in, "input model (.gguf or llama2.c .bin)")->required();
  cmd->add_option("OUT", opt->out, "output GGUF file")->required();
  cmd->add_option("TYPE", opt->type, "quantization preset (Q4_K_M, Q8_0, ...)")->required();
  cmd->add_option("--tensor-type", opt->q.tensor_types,
                  "REGEX=TYPE: tensors whose name matches REGEX get TYPE (repeatable, first match wins)");
  cmd->add_flag("--allow-requantize", opt->q.allow_requantize,
                "dequantize already quantized tensors and quantize them again (loses quality twice)");
  cmd->add_option("--imatrix", opt->q.imatrix, "importance matrix file (kiln imatrix / llama-imatrix output)");
  cmd->add_option("--method", opt->q.method, "rtn (round each block, llama.cpp's; default) or gptq (kiln's calibrated)")
      ->capture_default_str();
  cmd->add_flag("--pure", opt->q.pure, "no mix: every 2-D weight gets TYPE's base type (fallbacks still apply)");
  add_threads_option(cmd, opt->q.n_threads);
  cmd->add_flag("--dry-run", opt->dry_run, "print the per-tensor plan and sizes, write nothing");
  add_progress_options(cmd, opt->progress);
  cmd->callback([opt] { run_quantize(*opt); });
}

}  // namespace kiln::cli
