// `kiln prune MODEL.gguf -o OUT.gguf --calib FILE (--target-params N|RATIO | --heads-ratio R |
// --ffn-ratio R | --drop-layers N)`: structured pruning (whole KV groups, FFN channels, layers)
// ranked by activation importance on calibration text, written through the rewrite pipeline.
// See src/optimize/prune_plan.h (sizes), prune_importance.h (scores) and prune_model.h (output).
#include <fmt/format.h>

#include <cstdio>
#include <memory>
#include <string>

#include "commands.h"
#include "common_options.h"
#include "core/error.h"
#include "eval/chunk_source.h"
#include "model/llama_model.h"
#include "monitor/progress.h"
#include "optimize/prune_importance.h"
#include "optimize/prune_model.h"
#include "optimize/prune_plan.h"
#include "temp_output_guard.h"

namespace kiln::cli {
namespace {

struct PruneCliOptions {
  std::string model;
  std::string out;
  std::string calib;
  eval::ChunkSource source;
  std::string target_params;
  double heads_ratio = 0, ffn_ratio = 0;
  bool has_heads = false, has_ffn = false;
  int drop_layers = 0;
  std::string channel_score = "wanda";
  std::string type;
  int batch = 2048;
  int threads = 0;
  bool show_scores = false;
  monitor::ProgressMode progress = monitor::ProgressMode::automatic;
};

double parse_target(const std::string& s) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != s.size())
    fail("--target-params '{}' is not a number: give a parameter count (3e6) or a fraction of the model (0.5)", s);
  return v;
}

std::string millions(std::int64_t n) { return fmt::format("{:.3f}M", static_cast<double>(n) / 1e6); }

void print_scores(const LlamaConfig& c, const optimize::PruneImportance& m, const optimize::PrunePlan& plan) {
  const std::vector<double> groups = m.group_scores();
  std::printf("%-6s %10s %-8s %s\n", "layer", "influence", "kept", "KV group scores (* kept)");
  for (int l = 0; l < c.n_layer; ++l) {
    int kept_index = -1;
    for (std::size_t i = 0; i < plan.layers.size(); ++i)
      if (plan.layers[i] == l) kept_index = static_cast<int>(i);
    std::string g;
    for (int k = 0; k < c.n_head_kv; ++k) {
      bool kept = false;
      if (kept_index >= 0)
        for (int x : plan.kv_groups[static_cast<std::size_t>(kept_index)]) kept = kept || x == k;
      g += fmt::format(" {:.3g}{}", groups[static_cast<std::size_t>(l * c.n_head_kv + k)], kept ? "*" : "");
    }
    std::printf("%-6d %10.4f %-8s%s\n", l, m.block_influence[static_cast<std::size_t>(l)],
                kept_index >= 0 ? "yes" : "dropped", g.c_str());
  }
}

void run_prune(PruneCliOptions& o) {
  if (o.out.empty()) fail("prune: give the output file with -o OUT.gguf");
  if (!o.calib.empty()) {
    if (!o.source.text.empty() || !o.source.tokens.empty()) fail("prune: give one of --calib, --text and --tokens");
    o.source.text = o.calib;
  }
  if (o.channel_score != "activation" && o.channel_score != "wanda")
    fail("prune: --channel-score is activation or wanda, not '{}'", o.channel_score);
  optimize::PruneTargets targets;
  if (!o.target_params.empty()) targets.target_params = parse_target(o.target_params);
  if (o.has_heads) targets.heads_ratio = o.heads_ratio;
  if (o.has_ffn) targets.ffn_ratio = o.ffn_ratio;
  targets.drop_layers = o.drop_layers;
  if (!targets.target_params && !targets.heads_ratio && !targets.ffn_ratio && targets.drop_layers == 0)
    fail("prune: say how much to remove: --target-params N|RATIO, --heads-ratio R, --ffn-ratio R or --drop-layers N");

  std::unique_ptr<LlamaModel> model = LlamaModel::load(o.model);
  const LlamaConfig& c = model->config();
  // Every size is settled before the calibration runs: bad flags cost nothing.
  const optimize::PruneConstraints constraints = optimize::prune_constraints(model->source(), c, o.type);
  const optimize::PruneWidths widths = optimize::resolve_prune_widths(c, targets, constraints);
  const eval::ChunkPlan chunks = eval::plan_chunks(*model, o.source, "prune");

  const std::int64_t params_in = optimize::llama_parameter_count(c, {c.n_layer, c.n_head_kv, c.n_ff});
  const std::int64_t params_out = optimize::llama_parameter_count(c, widths);
  const int G = c.n_head / c.n_head_kv;
  std::printf("kiln prune: %s: %d layers, %d/%d heads, FFN %d (%s parameters) -> %d layers, %d/%d heads, FFN %d "
              "(%s, %.1f%%)\n",
              o.model.c_str(), c.n_layer, c.n_head, c.n_head_kv, c.n_ff, millions(params_in).c_str(), widths.n_layer,
              widths.n_group * G, widths.n_group, widths.n_ff, millions(params_out).c_str(),
              100.0 * static_cast<double>(params_out) / static_cast<double>(params_in));
  std::fflush(stdout);

  ThreadPool pool(thread_count(o.threads));
  monitor::Progress progress("prune", o.progress);
  progress.stage("importance", static_cast<std::int64_t>(chunks.n_chunks) * chunks.n_ctx, "tokens");
  const optimize::PruneImportance importance = optimize::collect_prune_importance(
      *model, chunks, pool, o.batch, [&](const optimize::PruneCollectProgress& p) {
        progress.detail(fmt::format("chunk {}/{}", p.chunks_done, p.n_chunks));
        progress.set(p.tokens_done);
      });
  const optimize::PrunePlan plan = optimize::make_prune_plan(
      c, importance, widths,
      o.channel_score == "wanda" ? optimize::ChannelScore::wanda : optimize::ChannelScore::activation);

  TempOutputGuard guard(o.out);
  optimize::PruneWriteOptions wo;
  wo.type = o.type;
  wo.n_threads = o.threads;
  bool started = false;
  const optimize::PruneReport report = optimize::write_pruned_model(
      model->source(), c, plan, o.model, o.out, wo, [&](const optimize::PruneWriteProgress& p) {
        if (!started) progress.stage("write", p.elements_total, "weights");
        started = true;
        progress.set(p.elements_done);
      });
  progress.finish();
  if (o.show_scores) print_scores(c, importance, plan);
  // The output must load as a model: checked now rather than by its first user.
  const std::unique_ptr<LlamaModel> pruned = LlamaModel::load(o.out);
  const LlamaConfig& pc = pruned->config();
  std::printf("kiln prune: %d chunks of %d tokens; dropped layers:", chunks.n_chunks, chunks.n_ctx);
  int dropped = 0;
  for (int l = 0; l < c.n_layer; ++l) {
    bool kept = false;
    for (int k : plan.layers) kept = kept || k == l;
    if (!kept) std::printf(" %d", l), ++dropped;
  }
  std::printf("%s\n", dropped == 0 ? " none" : "");
  std::printf("kiln prune: -> %s: %d layers, %d/%d heads, FFN %d, %s parameters (%.1f%% of %s), %.2f MiB (%.1f%%)\n",
              o.out.c_str(), pc.n_layer, pc.n_head, pc.n_head_kv, pc.n_ff, millions(report.params_out).c_str(),
              100.0 * static_cast<double>(report.params_out) / static_cast<double>(report.params_in),
              millions(report.params_in).c_str(), static_cast<double>(report.file_bytes_out) / (1 << 20),
              100.0 * static_cast<double>(report.bytes_out) / static_cast<double>(report.bytes_in));
}

}  // namespace

void register_prune_command(CLI::App& app) {
  auto opt = std::make_shared<PruneCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "prune", "Structured pruning: remove KV head groups, FFN channels and layers by activation importance");
  cmd->footer(
      "Runs the model over calibration text (chunks of --ctx tokens, as kiln eval and imatrix cut them) and\n"
      "scores every structure (Minitron's activation importance): a KV group by the summed L2 norm of its\n"
      "query heads' attention outputs, an FFN channel by Wanda's |W_down|.||x|| (its ffn_down column's\n"
      "magnitude times the L2 norm of its SwiGLU output; --channel-score activation: the mean |SwiGLU\n"
      "output| alone), a layer by its Block Influence, 1 - cos(input, output)\n"
      "of its residual stream. Each layer keeps its highest-scoring groups and channels (every layer the\n"
      "same widths); the layers of lowest influence are dropped. Heads go as whole KV groups, so grouped-\n"
      "query attention stays valid; FFN widths stay multiples of the weight type's block (32, 256).\n"
      "--target-params (a count, or a fraction of the model) shrinks heads and FFN by about the same\n"
      "fraction after --drop-layers; or give the fractions kept per axis. The output keeps the input's\n"
      "types (--type requantizes with a kiln quantize mix) and loads in kiln and llama.cpp.\n"
      "Heal it afterwards: kiln distill --teacher MODEL.gguf --student OUT.gguf (or kiln train --init OUT.gguf).\n"
      "Examples:\n"
      "  kiln prune model.gguf -o half.gguf --calib text.txt --target-params 0.5\n"
      "  kiln prune model.gguf -o p.gguf --calib text.txt --heads-ratio 0.5 --ffn-ratio 0.5 --drop-layers 1\n");
  cmd->add_option("MODEL", opt->model, "model to prune (.gguf or llama2.c .bin)")->required();
  cmd->add_option("-o,--output", opt->out, "output GGUF");
  cmd->add_option("--calib", opt->calib, "calibration text file (as --text)")->check(CLI::ExistingFile);
  add_chunk_source_options(cmd, opt->source);
  cmd->add_option("--target-params", opt->target_params,
                  "parameters of the pruned model: a count (3e6) or a fraction of the model (0.5)");
  cmd->add_option_function<double>(
      "--heads-ratio", [o = opt.get()](double r) { o->heads_ratio = r, o->has_heads = true; },
      "fraction of KV head groups kept (a multiple of 1/n_head_kv)");
  cmd->add_option_function<double>(
      "--ffn-ratio", [o = opt.get()](double r) { o->ffn_ratio = r, o->has_ffn = true; },
      "fraction of FFN channels kept (rounded down to the type's block)");
  cmd->add_option("--drop-layers", opt->drop_layers, "layers removed (those of lowest Block Influence)");
  cmd->add_option("--channel-score", opt->channel_score, "FFN channel importance: wanda (default) or activation");
  cmd->add_option("--type", opt->type, "requantize the output with this kiln quantize mix (Q8_0, Q4_K_M, ...)");
  cmd->add_option("-b,--batch", opt->batch, "tokens per forward pass at most")->capture_default_str()
      ->check(CLI::PositiveNumber);
  add_threads_option(cmd, opt->threads);
  cmd->add_flag("--show-scores", opt->show_scores, "print each layer's influence and KV group scores");
  add_progress_options(cmd, opt->progress);
  add_load_mode_option(cmd);
  cmd->callback([opt] { run_prune(*opt); });
}

}  // namespace kiln::cli
