// kiln eval: how good a model is, and how much a variant of it lost.
//   kiln eval perplexity MODEL (--text FILE | --tokens FILE)       PPL like llama-perplexity
//   kiln eval kld --base BASE MODEL (--text FILE | --tokens FILE)  KL divergence from a base
//   kiln eval compare BASE VARIANT... (--text FILE | --tokens FILE) table + plot of variants
// Results go to stdout (a report, or one JSON object with --json); progress goes to stderr
// (monitor/progress.h): a bar with rate and ETA on a terminal, JSON lines otherwise.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "commands.h"
#include "common_options.h"
#include "core/error.h"
#include "eval/chunk_source.h"
#include "eval/chunks.h"
#include "eval/compare.h"
#include "eval/kl_divergence.h"
#include "eval/logits_file.h"
#include "eval/perplexity.h"
#include "format/gguf_file.h"
#include "model/llama_model.h"
#include "monitor/progress.h"
#include "tokenizer/tokenizer.h"

namespace kiln::cli {
namespace {

using eval::ChunkPlan;
using eval::Estimate;
using eval::EvalProgress;

// Options shared by the three subcommands: where the tokens come from and how they are cut.
struct InputOptions {
  eval::ChunkSource source;
  int batch = 2048;
  int threads = 0;
  bool json = false;
  monitor::ProgressMode progress = monitor::ProgressMode::automatic;
};

void add_input_options(CLI::App* cmd, InputOptions& o) {
  add_chunk_source_options(cmd, o.source);
  cmd->add_option("-b,--batch", o.batch, "Most tokens per forward pass (whole chunks are packed into it)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  add_threads_option(cmd, o.threads);
  cmd->add_flag("--json", o.json, "Print one JSON object instead of a report");
  add_progress_options(cmd, o.progress);
  add_load_mode_option(cmd);
}

ChunkPlan make_plan(const LlamaModel& model, const InputOptions& o) {
  return eval::plan_chunks(model, o.source, "eval");
}

// Eval's reports as the job's progress, in tokens (so that the rate reads in tok/s). Every run
// over the chunks reports once before its first chunk, which starts a stage (compare: one per
// model, named after it).
class EvalProgressView {
 public:
  explicit EvalProgressView(monitor::ProgressMode mode) : progress_("eval", mode) {}

  void update(const std::string& stage, const EvalProgress& p) {
    if (p.chunks_done == 0) {
      progress_.stage(stage, p.tokens_total, "tokens");
      return;
    }
    progress_.detail(fmt::format("chunk {}/{}, PPL {:.4f}", p.chunks_done, p.n_chunks, p.running_ppl));
    progress_.set(p.tokens_done);
  }
  void finish() { progress_.finish(); }

 private:
  monitor::Progress progress_;
};

std::string pm(const Estimate& e, int digits) {
  return fmt::format("{:.{}f} ± {:.{}f}", e.value, digits, e.std_err, digits);
}
std::string pm_percent(const Estimate& e) { return fmt::format("{:.3f} ± {:.3f} %", 100 * e.value, 100 * e.std_err); }

std::string describe_plan(const ChunkPlan& plan) {
  return fmt::format("{} chunks of {} tokens, BOS {}, scoring the last {} of each", plan.n_chunks, plan.n_ctx,
                     plan.bos_id >= 0 ? std::to_string(plan.bos_id) : std::string("not written"), plan.n_scored());
}

// ---- perplexity --------------------------------------------------------------------------------

struct PerplexityOptions {
  std::string model;
  std::string kv_type = "f16";
  InputOptions in;
};

// Loads a model whose chunks run with a KV cache of the flag's type (checked against it).
std::unique_ptr<LlamaModel> load_with_kv_type(const std::string& path, DType kv_type) {
  std::unique_ptr<LlamaModel> model = LlamaModel::load(path);
  model->set_kv_type(kv_type);
  return model;
}

void run_perplexity(const PerplexityOptions& o) {
  std::unique_ptr<LlamaModel> model = load_with_kv_type(o.model, kv_type_from_flag(o.kv_type, "perplexity"));
  const ChunkPlan plan = make_plan(*model, o.in);
  ThreadPool pool(thread_count(o.in.threads));
  EvalProgressView progress(o.in.progress);
  const eval::PerplexityResult r = eval::perplexity(
      *model, plan, pool, o.in.batch, [&](const EvalProgress& p) { progress.update("perplexity", p); });
  progress.finish();
  if (o.in.json) {
    nlohmann::json j = {{"model", o.model},
                        {"kv_type", dtype_name(model->kv_type())},
                        {"n_ctx", r.n_ctx},
                        {"n_chunks", r.n_chunks},
                        {"bos_id", plan.bos_id},
                        {"n_scored", r.n_scored},
                        {"n_evaluated", r.n_evaluated},
                        {"ppl", r.ppl.value},
                        {"ppl_std_err", r.ppl.std_err},
                        {"mean_nll", r.nll.value},
                        {"nll_std_err", r.nll.std_err},
                        {"running_ppl", r.running_ppl},
                        {"seconds", r.seconds},
                        {"tokens_per_second", r.tokens_per_second()},
                        {"chunks_per_forward", r.chunks_per_forward},
                        {"threads", pool.size()}};
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf("model   %s (%s, %s, KV cache %s)\n", o.model.c_str(), model->source().format_name().c_str(),
              model->config().arch.c_str(), std::string(dtype_name(model->kv_type())).c_str());
  std::printf("input   %s\n\n", describe_plan(plan).c_str());
  std::string running;
  for (std::size_t c = 0; c < r.running_ppl.size(); ++c)
    running += fmt::format("{}[{}]{:.4f}", c ? "," : "", c + 1, r.running_ppl[c]);
  std::printf("%s\n\n", running.c_str());
  std::printf("Final estimate: PPL = %.4f +/- %.5f\n", r.ppl.value, r.ppl.std_err);
  std::printf("scored %lld tokens, mean NLL %s nats; %lld tokens evaluated in %.2f s (%.0f tok/s, %d chunks per forward, %d threads)\n",
              static_cast<long long>(r.n_scored), pm(r.nll, 5).c_str(), static_cast<long long>(r.n_evaluated),
              r.seconds, r.tokens_per_second(), r.chunks_per_forward, pool.size());
}

// ---- kld ---------------------------------------------------------------------------------------

struct KldOptions {
  std::string model;
  std::string base;
  std::string base_logits;
  std::string save_base_logits;
  std::string kv_type = "f16";       // the model's KV cache
  std::string base_kv_type = "f16";  // the base's (--base)
  InputOptions in;
};

void print_kld(const eval::KldResult& r) {
  std::printf("====== Perplexity statistics ======\n");
  std::printf("Mean PPL(model)                   : %s\n", pm(r.ppl_model, 6).c_str());
  std::printf("Mean PPL(base)                    : %s\n", pm(r.ppl_base, 6).c_str());
  std::printf("Cor(ln(PPL(model)), ln(PPL(base))): %.2f %%\n", 100 * r.nll_correlation);
  std::printf("Mean ln(PPL(model)/PPL(base))     : %s\n", pm(r.ln_ppl_ratio, 6).c_str());
  std::printf("Mean PPL(model)/PPL(base)         : %s\n\n", pm(r.ppl_ratio, 6).c_str());
  std::printf("====== KL divergence statistics ======\n");
  std::printf("Mean    KLD: %s\n", pm(r.kld, 6).c_str());
  std::printf("Maximum KLD: %10.6f\n", r.kld_max);
  std::printf("99.0%%   KLD: %10.6f\n", r.kld_p99);
  std::printf("95.0%%   KLD: %10.6f\n", r.kld_p95);
  std::printf("90.0%%   KLD: %10.6f\n", r.kld_p90);
  std::printf("Median  KLD: %10.6f\n", r.kld_median);
  std::printf("Minimum KLD: %10.6f\n\n", r.kld_min);
  std::printf("====== Token probability statistics ======\n");
  std::printf("Mean    Δp: %.3f ± %.3f %%\n", 100 * r.dp.value, 100 * r.dp.std_err);
  std::printf("Maximum Δp: %7.3f %%\n", 100 * r.dp_max);
  for (std::size_t i = eval::kDeltaPLevels.size(); i-- > 0;)
    std::printf("%4.1f%%   Δp: %7.3f %%\n", 100 * eval::kDeltaPLevels[i], 100 * r.dp_percentiles[i]);
  std::printf("Minimum Δp: %7.3f %%\n", 100 * r.dp_min);
  std::printf("RMS Δp    : %s\n", pm_percent(r.rms_dp).c_str());
  std::printf("Same top p: %s\n", pm_percent(r.same_top).c_str());
}

nlohmann::json kld_json(const eval::KldResult& r) {
  nlohmann::json dp = nlohmann::json::object();
  for (std::size_t i = 0; i < eval::kDeltaPLevels.size(); ++i)
    dp[fmt::format("p{}", static_cast<int>(std::lround(100 * eval::kDeltaPLevels[i])))] = r.dp_percentiles[i];
  return {{"n_ctx", r.n_ctx},
          {"n_chunks", r.n_chunks},
          {"n_tokens", r.n_tokens},
          {"kld_mean", r.kld.value},
          {"kld_std_err", r.kld.std_err},
          {"kld_min", r.kld_min},
          {"kld_median", r.kld_median},
          {"kld_p90", r.kld_p90},
          {"kld_p95", r.kld_p95},
          {"kld_p99", r.kld_p99},
          {"kld_max", r.kld_max},
          {"same_top", r.same_top.value},
          {"same_top_std_err", r.same_top.std_err},
          {"dp_mean", r.dp.value},
          {"dp_std_err", r.dp.std_err},
          {"dp_min", r.dp_min},
          {"dp_max", r.dp_max},
          {"dp_percentiles", dp},
          {"rms_dp", r.rms_dp.value},
          {"rms_dp_std_err", r.rms_dp.std_err},
          {"ppl_model", r.ppl_model.value},
          {"ppl_model_std_err", r.ppl_model.std_err},
          {"ppl_base", r.ppl_base.value},
          {"ppl_base_std_err", r.ppl_base.std_err},
          {"ln_ppl_ratio", r.ln_ppl_ratio.value},
          {"ln_ppl_ratio_std_err", r.ln_ppl_ratio.std_err},
          {"ppl_ratio", r.ppl_ratio.value},
          {"ppl_ratio_std_err", r.ppl_ratio.std_err},
          {"nll_correlation", r.nll_correlation},
          {"seconds", r.seconds}};
}

void run_kld(const KldOptions& o) {
  if (!o.base_logits.empty() && (!o.base.empty() || !o.save_base_logits.empty()))
    fail("kld: --base-logits reads a saved base; it goes without --base and --save-base-logits");
  if (o.base_logits.empty() && o.base.empty()) fail("kld: give the base model (--base BASE) or its saved logits (--base-logits FILE)");
  if (o.model.empty() && o.save_base_logits.empty())
    fail("kld: give the MODEL to compare with the base (or only --save-base-logits FILE to save the base)");
  const DType kv_type = kv_type_from_flag(o.kv_type, "kld");
  const DType base_kv_type = kv_type_from_flag(o.base_kv_type, "kld", "--base-kv-type");
  const std::string kv_names = fmt::format("KV cache {}", dtype_name(kv_type));
  const std::string base_kv_names = fmt::format("KV cache {}", dtype_name(base_kv_type));
  ThreadPool pool(thread_count(o.in.threads));
  EvalProgressView progress(o.in.progress);

  if (!o.base_logits.empty()) {
    if (o.model.empty()) fail("kld: give the MODEL to compare with {}", o.base_logits);
    const eval::LogitsFile base(o.base_logits);
    std::unique_ptr<LlamaModel> model = load_with_kv_type(o.model, kv_type);
    // Text given too: it must make exactly the chunks the base was run on.
    if (!o.in.source.text.empty() || !o.in.source.tokens.empty()) {
      InputOptions in = o.in;
      if (in.source.ctx == 0) in.source.ctx = base.plan().n_ctx;
      const ChunkPlan plan = make_plan(*model, in);
      const std::size_t n = std::min(plan.tokens.size(), base.plan().tokens.size());
      if (plan.n_ctx != base.plan().n_ctx || !std::equal(plan.tokens.begin(), plan.tokens.begin() + static_cast<std::ptrdiff_t>(n), base.plan().tokens.begin()))
        fail("{}: the saved base was run on other tokens than {} (leave out --text/--tokens to use the file's)",
             o.base_logits, !o.in.source.text.empty() ? o.in.source.text : o.in.source.tokens);
    }
    const eval::KldResult r = eval::kl_divergence(base, *model, pool, o.in.batch,
                                                  [&](const EvalProgress& p) { progress.update("kld", p); });
    progress.finish();
    if (o.in.json) {
      nlohmann::json j = kld_json(r);
      j["model"] = o.model;
      j["kv_type"] = dtype_name(kv_type);
      j["base_logits"] = o.base_logits;
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("model   %s (%s)\nbase    %s (saved logits)\ninput   %s\n\n", o.model.c_str(), kv_names.c_str(),
                  o.base_logits.c_str(), describe_plan(base.plan()).c_str());
      print_kld(r);
    }
    return;
  }

  std::unique_ptr<LlamaModel> base = load_with_kv_type(o.base, base_kv_type);
  const ChunkPlan plan = make_plan(*base, o.in);
  std::unique_ptr<eval::LogitsFileWriter> writer;
  if (!o.save_base_logits.empty())
    writer = std::make_unique<eval::LogitsFileWriter>(o.save_base_logits, plan, base->config().n_vocab);

  if (o.model.empty()) {
    const eval::PerplexityResult r = eval::save_base_logits(
        *base, plan, pool, o.in.batch, *writer, [&](const EvalProgress& p) { progress.update("base", p); });
    writer->finish();
    progress.finish();
    if (o.in.json) {
      nlohmann::json j = {{"base", o.base},           {"base_kv_type", dtype_name(base_kv_type)},
                          {"saved", o.save_base_logits}, {"n_ctx", r.n_ctx},
                          {"n_chunks", r.n_chunks},   {"n_scored", r.n_scored},      {"ppl_base", r.ppl.value},
                          {"ppl_base_std_err", r.ppl.std_err}, {"seconds", r.seconds}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("base    %s (%s)\ninput   %s\n\nsaved the base's log-probabilities to %s\nPPL(base) = %.4f +/- %.5f\n",
                  o.base.c_str(), base_kv_names.c_str(), describe_plan(plan).c_str(), o.save_base_logits.c_str(), r.ppl.value, r.ppl.std_err);
    }
    return;
  }

  std::unique_ptr<LlamaModel> model = load_with_kv_type(o.model, kv_type);
  const eval::KldResult r = eval::kl_divergence(*base, *model, plan, pool, o.in.batch, writer.get(),
                                                [&](const EvalProgress& p) { progress.update("kld", p); });
  if (writer) writer->finish();
  progress.finish();
  if (o.in.json) {
    nlohmann::json j = kld_json(r);
    j["model"] = o.model;
    j["kv_type"] = dtype_name(kv_type);
    j["base"] = o.base;
    j["base_kv_type"] = dtype_name(base_kv_type);
    if (writer) j["saved"] = o.save_base_logits;
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf("model   %s (%s)\nbase    %s (%s)\ninput   %s\n\n", o.model.c_str(), kv_names.c_str(), o.base.c_str(),
              base_kv_names.c_str(), describe_plan(plan).c_str());
  print_kld(r);
  if (writer) std::printf("\nsaved the base's log-probabilities to %s\n", o.save_base_logits.c_str());
}

// ---- compare -----------------------------------------------------------------------------------

struct CompareCliOptions {
  std::vector<std::string> models;  // base first
  std::string base_logits;
  std::string save_base_logits;
  std::string plot;
  bool plot_ppl = false;
  bool no_speed = false;
  int speed_tokens = 32;
  InputOptions in;
};

void run_compare(const CompareCliOptions& o) {
  if (o.models.size() < 2) fail("compare: give the base model and at least one variant");
  if (!o.base_logits.empty() && !o.save_base_logits.empty())
    fail("compare: --base-logits and --save-base-logits exclude each other");
  ThreadPool pool(thread_count(o.in.threads));
  ChunkPlan plan;
  if (o.base_logits.empty()) {
    std::unique_ptr<LlamaModel> base = LlamaModel::load(o.models[0]);
    plan = make_plan(*base, o.in);
  } else if (!o.in.source.text.empty() || !o.in.source.tokens.empty()) {
    fail("compare: --base-logits brings its own tokens; leave out --text/--tokens");
  }
  eval::CompareOptions co;
  co.n_batch = o.in.batch;
  co.speed_tokens = o.no_speed ? 0 : o.speed_tokens;
  co.base_logits = o.base_logits;
  co.save_base_logits = o.save_base_logits;
  EvalProgressView progress(o.in.progress);
  const std::vector<std::string> variants(o.models.begin() + 1, o.models.end());
  const eval::CompareResult r = eval::compare_models(
      o.models[0], variants, plan, pool, co,
      [&](const std::string& stage, const EvalProgress& p) { progress.update(stage, p); });
  progress.finish();
  if (!o.plot.empty()) eval::write_svg(o.plot, eval::compare_plot(r, o.plot_ppl));

  if (o.in.json) {
    nlohmann::json rows = nlohmann::json::array();
    for (const eval::CompareRow& row : r.rows) {
      nlohmann::json j = {{"path", row.path},
                          {"name", row.name},
                          {"is_base", row.is_base},
                          {"file_bytes", row.file_bytes},
                          {"matrix_params", row.weights.n_params},
                          {"matrix_bytes", row.weights.bytes},
                          {"bits_per_weight", row.weights.bits_per_weight()},
                          {"ppl", row.ppl.value},
                          {"ppl_std_err", row.ppl.std_err},
                          {"kld_mean", row.kld.value},
                          {"kld_std_err", row.kld.std_err},
                          {"kld_p99", row.kld_p99},
                          {"same_top", row.same_top.value},
                          {"same_top_std_err", row.same_top.std_err},
                          {"ln_ppl_ratio", row.ln_ppl_ratio.value},
                          {"ln_ppl_ratio_std_err", row.ln_ppl_ratio.std_err}};
      j["decode_tok_s"] = row.decode_tok_s >= 0 ? nlohmann::json(row.decode_tok_s) : nlohmann::json(nullptr);
      rows.push_back(j);
    }
    nlohmann::json j = {{"n_ctx", r.n_ctx}, {"n_chunks", r.n_chunks}, {"n_tokens", r.n_tokens}, {"models", rows}};
    if (!o.plot.empty()) j["plot"] = o.plot;
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf("%d chunks of %d tokens, %lld scored tokens per model; KLD and top-1 against %s\n\n", r.n_chunks,
              r.n_ctx, static_cast<long long>(r.n_tokens), r.rows[0].name.c_str());
  std::size_t w = 5;
  for (const eval::CompareRow& row : r.rows) w = std::max(w, row.name.size());
  std::printf("| %-*s | size MiB | bits/w | PPL                 | mean KLD              | KLD p99  | top-1 %%          | decode tok/s |\n",
              static_cast<int>(w), "model");
  std::printf("| %s | -------- | ------ | ------------------- | --------------------- | -------- | ---------------- | ------------ |\n",
              std::string(w, '-').c_str());
  for (const eval::CompareRow& row : r.rows) {
    const std::string speed = row.decode_tok_s >= 0 ? fmt::format("{:12.1f}", row.decode_tok_s) : fmt::format("{:>12}", "-");
    const std::string kld = row.is_base ? fmt::format("{:<21}", "(base)") : fmt::format("{:<21}", pm(row.kld, 6));
    const std::string p99 = row.is_base ? fmt::format("{:<8}", "") : fmt::format("{:8.5f}", row.kld_p99);
    const std::string top = row.is_base ? fmt::format("{:<16}", "") : fmt::format("{:<16}", pm_percent(row.same_top));
    std::printf("| %-*s | %8.2f | %6.3f | %-19s | %s | %s | %s | %s |\n", static_cast<int>(w), row.name.c_str(),
                static_cast<double>(row.file_bytes) / (1024.0 * 1024.0), row.weights.bits_per_weight(),
                pm(row.ppl, 4).c_str(), kld.c_str(), p99.c_str(), top.c_str(), speed.c_str());
  }
  if (!o.plot.empty()) std::printf("\nplot: %s\n", o.plot.c_str());
}

}  // namespace

void register_eval_command(CLI::App& app) {
  CLI::App* eval = app.add_subcommand("eval", "Evaluate models: perplexity, KL divergence from a base, compare variants");
  eval->require_subcommand(1);
  eval->footer(
      "Examples:\n"
      "  kiln eval perplexity model.gguf --text wiki.test.raw\n"
      "  kiln eval perplexity stories260K.bin --tokens ids.txt --ctx 256\n"
      "  kiln eval kld --base model-f16.gguf model-q4_0.gguf --text wiki.test.raw\n"
      "  kiln eval kld --base model-f16.gguf --save-base-logits base.kll --text wiki.test.raw\n"
      "  kiln eval kld model-q4_0.gguf --base-logits base.kll\n"
      "  kiln eval kld model.gguf --base model.gguf --kv-type q8_0 --text wiki.test.raw   (cost of a q8_0 KV cache)\n"
      "  kiln eval compare model-f16.gguf model-q8_0.gguf model-q4_0.gguf --text wiki.test.raw --plot quality.svg");

  auto p = std::make_shared<PerplexityOptions>();
  CLI::App* ppl = eval->add_subcommand(
      "perplexity", "Perplexity over chunks of a text, scoring the second half of each (like llama-perplexity)");
  ppl->add_option("model", p->model, "Model file (.gguf or llama2.c .bin)")->required()->check(CLI::ExistingFile);
  add_input_options(ppl, p->in);
  add_kv_type_option(ppl, p->kv_type);
  ppl->callback([p] { run_perplexity(*p); });

  auto k = std::make_shared<KldOptions>();
  CLI::App* kld = eval->add_subcommand(
      "kld", "KL divergence of a model from a base model on the same chunks, top-1 agreement and Δp");
  kld->add_option("model", k->model, "Model file compared with the base")->check(CLI::ExistingFile);
  kld->add_option("--base", k->base, "Base model file (runs on the fly)")->check(CLI::ExistingFile);
  kld->add_option("--base-logits", k->base_logits, "Saved base logits file to compare with (instead of --base)")
      ->check(CLI::ExistingFile);
  kld->add_option("--save-base-logits", k->save_base_logits,
                  "Also save the base's log-probabilities to this file (without MODEL: only save)");
  add_input_options(kld, k->in);
  add_kv_type_option(kld, k->kv_type, "--kv-type", "KV cache element type of MODEL");
  add_kv_type_option(kld, k->base_kv_type, "--base-kv-type", "KV cache element type of the base (--base)");
  kld->callback([k] { run_kld(*k); });

  auto c = std::make_shared<CompareCliOptions>();
  CLI::App* cmp = eval->add_subcommand(
      "compare", "Compare variants of a model with the base: size, bits/weight, PPL, KLD, top-1, decode tok/s");
  cmp->add_option("models", c->models, "BASE VARIANT...: the base model first, then its variants")
      ->required()
      ->check(CLI::ExistingFile);
  cmp->add_option("--base-logits", c->base_logits, "Saved base logits file (instead of running the base on the text)")
      ->check(CLI::ExistingFile);
  cmp->add_option("--save-base-logits", c->save_base_logits, "Keep the base's logits file here");
  cmp->add_option("--plot", c->plot, "Write a plot of quality against bits per weight to this SVG file");
  cmp->add_flag("--plot-ppl", c->plot_ppl, "Plot PPL instead of KLD (log scale) against bits per weight");
  cmp->add_option("--speed-tokens", c->speed_tokens, "Decode steps in the speed measurement")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmp->add_flag("--no-speed", c->no_speed, "Skip the decode speed measurement");
  add_input_options(cmp, c->in);
  cmp->callback([c] { run_compare(*c); });
}

}  // namespace kiln::cli
