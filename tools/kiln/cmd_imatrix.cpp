// `kiln imatrix MODEL (--text FILE | --tokens FILE) -o OUT`: runs the model over calibration
// text and writes llama.cpp's importance matrix (src/optimize/imatrix.h) for `kiln quantize
// --imatrix` or llama-quantize. `kiln imatrix --show FILE` prints what an imatrix file holds.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "common_options.h"
#include "core/error.h"
#include "eval/chunk_source.h"
#include "eval/chunks.h"
#include "format/gguf_file.h"
#include "model/llama_model.h"
#include "monitor/progress.h"
#include "optimize/imatrix.h"
#include "optimize/imatrix_collect.h"
#include "tokenizer/tokenizer.h"

namespace kiln::cli {
namespace {

struct ImatrixCliOptions {
  std::string model;
  eval::ChunkSource source;
  std::string out;
  std::string format = "gguf";
  int batch = 2048;
  int threads = 0;
  bool process_output = false;
  bool covariance = false;
  bool show = false;
  monitor::ProgressMode progress = monitor::ProgressMode::automatic;
};

// The calibration tokens, cut like kiln eval cuts them (BOS over each chunk's first token).
eval::ChunkPlan calibration_plan(const LlamaModel& model, const ImatrixCliOptions& o) {
  return eval::plan_chunks(model, o.source, "imatrix");
}

void show(const std::string& path) {
  const optimize::Imatrix m = optimize::read_imatrix(path);
  std::printf("file:     %s (%s)\n", path.c_str(), m.legacy ? "legacy .dat" : "GGUF");
  std::string datasets;
  for (const std::string& d : m.datasets) datasets += (datasets.empty() ? "" : ", ") + d;
  std::printf("datasets: %s\n", datasets.empty() ? "(none)" : datasets.c_str());
  std::printf("chunks:   %u of %u tokens\n", m.chunk_count, m.chunk_size);
  std::printf("%-36s %8s %10s %12s %12s %s\n", "weight", "columns", "tokens", "mean x²", "max x²", "covariance");
  for (const auto& [name, e] : m.entries) {
    const std::vector<float> w = m.importance(name);
    double sum = 0;
    float max = 0;
    for (float v : w) sum += v, max = std::max(max, v);
    float count = 0;
    for (float c : e.counts) count += c;
    std::printf("%-36s %8lld %10.0f %12.5g %12.5g %s\n", name.c_str(), static_cast<long long>(e.n_cols), count,
                w.empty() ? 0.0 : sum / static_cast<double>(w.size()), static_cast<double>(max),
                e.in_cov.empty() ? "" : "yes");
  }
}

void run_imatrix(const ImatrixCliOptions& o) {
  if (o.show) {
    show(o.model);
    return;
  }
  if (o.out.empty()) fail("imatrix: give the output file with -o OUT");
  if (o.format != "gguf" && o.format != "dat") fail("imatrix: --output-format is gguf or dat, not '{}'", o.format);
  if (o.covariance && o.format == "dat") fail("imatrix: the legacy .dat format has no place for --covariance");
  std::unique_ptr<LlamaModel> model = LlamaModel::load(o.model);
  const eval::ChunkPlan plan = calibration_plan(*model, o);
  ThreadPool pool(thread_count(o.threads));
  monitor::Progress progress("imatrix", o.progress);
  progress.stage("collect", static_cast<std::int64_t>(plan.n_chunks) * plan.n_ctx, "tokens");
  const auto report = [&](const optimize::ImatrixCollectProgress& p) {
    progress.detail(fmt::format("chunk {}/{}", p.chunks_done, p.n_chunks));
    progress.set(p.tokens_done);
  };
  optimize::ImatrixCollector::Options co;
  co.process_output = o.process_output;
  co.covariance = o.covariance;
  optimize::Imatrix m = optimize::collect_imatrix(*model, plan, pool, co, o.batch, report);
  progress.finish();
  m.datasets = {o.source.text.empty() ? o.source.tokens : o.source.text};
  if (o.format == "dat") optimize::write_imatrix_legacy(m, o.out);
  else optimize::write_imatrix(m, o.out);
  std::printf("kiln imatrix: %zu weights from %d chunks of %d tokens (%lld tokens) -> %s (%s%s)\n", m.entries.size(),
              plan.n_chunks, plan.n_ctx, static_cast<long long>(plan.n_chunks) * plan.n_ctx, o.out.c_str(),
              o.format == "dat" ? "legacy .dat" : "GGUF", o.covariance ? ", with covariance" : "");
}

}  // namespace

void register_imatrix_command(CLI::App& app) {
  auto opt = std::make_shared<ImatrixCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "imatrix", "Collect an importance matrix (llama.cpp's imatrix) from calibration text, for quantize --imatrix");
  cmd->footer(
      "The model runs over chunks of --ctx tokens (BOS first, each in a fresh context), and for every\n"
      "2-D weight of the blocks (blk.*; the output too with --process-output) the sum over tokens of each\n"
      "input channel's squared activation is kept with the token count. OUT is llama.cpp's imatrix GGUF\n"
      "(<weight>.in_sum2, <weight>.counts; imatrix.datasets, imatrix.chunk_count, imatrix.chunk_size), or\n"
      "its legacy .dat with --output-format dat; both load in llama-quantize --imatrix and kiln quantize.\n"
      "--covariance adds <weight>.in_cov (sum of x xT, columns^2 floats per weight: small models only),\n"
      "which kiln quantize --method gptq needs.\n"
      "Examples:\n"
      "  kiln imatrix model-f16.gguf --text calibration.txt -o model.imatrix.gguf --chunks 100\n"
      "  kiln imatrix stories260K.bin --tokens calib-ids.txt -o stories.imatrix --ctx 256 --covariance\n"
      "  kiln imatrix --show model.imatrix.gguf\n");
  cmd->add_option("MODEL", opt->model, "model (.gguf or llama2.c .bin); with --show, an imatrix file")->required();
  add_chunk_source_options(cmd, opt->source);
  cmd->add_option("-o,--output", opt->out, "output imatrix file");
  cmd->add_option("--output-format", opt->format, "gguf (default) or dat (llama.cpp's legacy format)");
  cmd->add_option("-b,--batch", opt->batch, "tokens per forward pass at most")->capture_default_str()
      ->check(CLI::PositiveNumber);
  add_threads_option(cmd, opt->threads);
  cmd->add_flag("--process-output", opt->process_output, "also collect the output matrix (llama-imatrix's flag)");
  cmd->add_flag("--covariance", opt->covariance, "also store each weight's input covariance (for --method gptq)");
  cmd->add_flag("--show", opt->show, "print the entries of the imatrix file MODEL and exit");
  add_progress_options(cmd, opt->progress);
  add_load_mode_option(cmd);
  cmd->callback([opt] { run_imatrix(*opt); });
}

}  // namespace kiln::cli
