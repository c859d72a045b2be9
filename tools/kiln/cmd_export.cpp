// `kiln export onnx MODEL OUT.onnx`: a Llama-family model as an ONNX graph with Hugging Face
// Optimum's decoder inputs and outputs (KV cache in and out), for ONNX Runtime and the tools
// around it. See src/convert/llama_onnx_graph.h for the graph and docs/formats.md for the layout.
#include <fmt/format.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <memory>
#include <string>

#include "commands.h"
#include "common_options.h"
#include "convert/onnx_export.h"
#include "monitor/progress.h"

namespace kiln::cli {
namespace {

struct ExportOnnxCliOptions {
  std::string in;
  std::string out;
  bool f16 = false;
  bool external_data = false;
  monitor::ProgressMode progress = monitor::ProgressMode::automatic;
};

std::string mib(std::uint64_t bytes) { return fmt::format("{:.2f} MiB", static_cast<double>(bytes) / (1 << 20)); }

// The export's temporary files must not outlive a Ctrl-C or a kill. The paths are prepared
// before exporting so that the handler only calls unlink().
char g_temp_path[4096];
char g_data_temp_path[4096];

void remove_temps_and_die(int sig) {
  ::unlink(g_temp_path);
  ::unlink(g_data_temp_path);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

void run_export_onnx(const ExportOnnxCliOptions& o) {
  convert::OnnxExportOptions options;
  options.storage = o.f16 ? convert::WeightStorage::f16 : convert::WeightStorage::f32;
  if (o.external_data) options.external_data = true;

  std::snprintf(g_temp_path, sizeof(g_temp_path), "%s", convert::onnx_temp_path(o.out).c_str());
  std::snprintf(g_data_temp_path, sizeof(g_data_temp_path), "%s", convert::onnx_data_temp_path(o.out).c_str());
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) std::signal(sig, remove_temps_and_die);

  monitor::Progress progress("export", o.progress);
  const convert::OnnxExportReport r =
      convert::export_llama_onnx(o.in, o.out, options, [&](const convert::OnnxExportProgress& p) {
        if (p.tensor == nullptr) {
          progress.stage("onnx", p.elements_total, "weights");
          return;
        }
        progress.detail(*p.tensor);
        progress.set(p.elements_done);
      });
  progress.finish();
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) std::signal(sig, SIG_DFL);

  const LlamaConfig& c = r.config;
  std::printf("exported %s (%s, %s) -> %s: ONNX opset 17, %d nodes\n", o.in.c_str(), r.input_format.c_str(),
              c.arch.c_str(), o.out.c_str(), r.n_nodes);
  std::printf("model:   %d layers, %d heads (%d key/value) of %d, vocabulary %d%s\n", c.n_layer, c.n_head, c.n_head_kv,
              c.head_dim, c.n_vocab, c.tied_output ? ", output tied to the embedding" : "");
  std::printf("weights: %lld as %s, %s%s\n", static_cast<long long>(r.n_weights), o.f16 ? "f16" : "f32",
              mib(r.weight_bytes).c_str(), r.data_path.empty() ? " inside the graph" : (" in " + r.data_path).c_str());
  std::printf("file:    %s; %.2f s\n", mib(r.file_bytes).c_str(), r.seconds);
}

}  // namespace

void register_export_command(CLI::App& app) {
  CLI::App* group = app.add_subcommand("export", "Export a model to another runtime's format (ONNX)");
  group->require_subcommand(1);

  auto opt = std::make_shared<ExportOnnxCliOptions>();
  CLI::App* onnx = group->add_subcommand("onnx", "Write a Llama-family model as an ONNX graph with its KV cache");
  onnx->footer(
      "MODEL is a GGUF (llama, mistral, qwen2; any weight type kiln reads, dequantized) or a llama2.c .bin.\n"
      "The graph has Hugging Face Optimum's decoder inputs and outputs: input_ids, attention_mask,\n"
      "position_ids and past_key_values.N.key/value in; logits and present.N.key/value out (docs/formats.md).\n"
      "Weights are f32 initializers (--f16: f16, cast to float in the graph). Past 1.5 GiB of weights, or with\n"
      "--external-data, they go to OUT.data beside the graph (ONNX external data), since protobuf caps a\n"
      "message at 2 GiB. The files appear only when complete (written as OUT.tmp-PID, then renamed).\n"
      "Examples:\n"
      "  kiln export onnx stories260K.bin stories260K.onnx\n"
      "  kiln export onnx model-q8_0.gguf model.onnx --f16 --external-data\n");
  onnx->add_option("MODEL", opt->in, "input model (.gguf or llama2.c .bin)")->required();
  onnx->add_option("OUT", opt->out, "output .onnx file")->required();
  onnx->add_flag("--f16", opt->f16, "store the weight matrices as f16 (half the size)");
  onnx->add_flag("--external-data", opt->external_data, "write the weights to OUT.data beside the graph at any size");
  add_progress_options(onnx, opt->progress);
  onnx->callback([opt] { run_export_onnx(*opt); });
}

}  // namespace kiln::cli
