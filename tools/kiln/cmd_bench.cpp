// kiln bench MODEL: prefill and decode speed as mean ± stdev over repetitions, like llama-bench
// (eval/speed_bench.h). With --parallel N[,N...] it measures serving instead: N streams at once
// through the continuous-batching engine (eval/serving_bench.h). This file parses the flags and
// prints the results as a table or one JSON object.
#include <fmt/format.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "commands.h"
#include "common_options.h"
#include "core/cpu_features.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "core/memory_bandwidth.h"
#include "eval/serving_bench.h"
#include "eval/speculative_bench.h"
#include "eval/speed_bench.h"
#include "monitor/process_stats.h"
#include "monitor/progress.h"
#include "runtime/loaded_model.h"
#include "runtime/model_stats.h"

namespace kiln::cli {
namespace {

struct BenchOptions {
  std::string model;
  int n_prompt = 128;
  int n_gen = 64;
  int repetitions = 5;
  int threads = 0;
  int batch = 512;
  std::string kv_type = "f16";
  bool json = false;
  bool no_bandwidth = false;  // skip measuring the memory read bandwidth after decode
  std::vector<int> parallel;  // stream counts for the serving benchmark; empty: single-stream bench
  bool no_metrics = false;    // --parallel: the engine records no metrics (the overhead baseline)
  int decode_step_tokens = 64;  // --parallel: the engine's budget of a step with decodes
  double arrival_rate = 0;      // --parallel: streams arriving per second (0: all at once)
  monitor::ProgressMode progress = monitor::ProgressMode::automatic;
  DraftOptions draft;           // --draft: speculative decoding against plain decode
  std::string prompt_text = "The prince";  // --draft: the prompt (a draft needs text it can predict)
};

// 1234567 -> "1.23 M".
std::string human_count(double n) {
  const char* units[] = {"", " K", " M", " B", " T"};
  int u = 0;
  while (n >= 1000 && u < 4) n /= 1000, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%s", n, units[u]);
  return buf;
}

void run_parallel_bench(const BenchOptions& o) {
  if (o.n_prompt < 1 || o.n_gen < 1 || o.batch < 1) fail("bench: --parallel needs -p >= 1, -n >= 1, --batch >= 1");
  for (int n : o.parallel)
    if (n < 1 || n > 4096) fail("bench: --parallel takes stream counts between 1 and 4096, got {}", n);
  const DType kv_type = kv_type_from_flag(o.kv_type, "bench");
  const int threads = thread_count(o.threads);
  LoadedModel loaded =
      load_model(o.model, {.tokenizer = TokenizerNeed::required, .needed_by = "bench --parallel (the serving engine)"});
  // Counted in the tokens the runs generate (streams x -n each), which weighs a run of 64 streams
  // against one of 1 closer to their cost than a count of runs would; the bench reports as each
  // run starts, so a run's tokens count when the next one starts.
  std::int64_t total = 0;
  for (int n : o.parallel) total += static_cast<std::int64_t>(n) * o.n_gen;
  monitor::Progress progress("bench", o.progress);
  progress.stage("serving", total, "tokens");
  std::int64_t started = 0;
  const std::vector<eval::ServingBenchResult> results = eval::run_serving_bench(
      *loaded.model, *loaded.tokenizer,
      {.n_prompt = o.n_prompt,
       .n_gen = o.n_gen,
       .batch = o.batch,
       .decode_step_tokens = o.decode_step_tokens,
       .arrival_rate = o.arrival_rate,
       .threads = threads,
       .metrics = !o.no_metrics,
       .kv_type = kv_type},
      o.parallel, [&](int n) {
        progress.detail(fmt::format("{} stream{}", n, n == 1 ? "" : "s"));
        progress.set(started);
        started += static_cast<std::int64_t>(n) * o.n_gen;
      });
  progress.set(started);
  progress.finish();
  const double single = results.front().streams == 1 ? results.front().gen_tok_s : 0.0;
  const double single_decode = results.front().streams == 1 ? results.front().decode_tok_s : 0.0;
  if (o.json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const eval::ServingBenchResult& r : results)
      arr.push_back({{"streams", r.streams}, {"wall_s", r.wall_s}, {"gen_tok_s", r.gen_tok_s},
                     {"decode_tok_s", r.decode_tok_s},
                     {"ttft_p50_ms", r.ttft_p50_ms}, {"ttft_p99_ms", r.ttft_p99_ms}, {"itl_p50_ms", r.itl_p50_ms},
                     {"itl_p99_ms", r.itl_p99_ms},
                     {"preemptions", r.preemptions ? nlohmann::json(*r.preemptions) : nlohmann::json(nullptr)}});
    nlohmann::json j = {{"model", o.model},   {"threads", threads}, {"n_prompt", o.n_prompt},
                        {"n_gen", o.n_gen},   {"metrics", !o.no_metrics}, {"results", arr},
                        {"decode_step_tokens", o.decode_step_tokens}, {"arrival_rate", o.arrival_rate},
                        {"peak_rss_bytes", monitor::peak_resident_bytes()}};
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf("model   %s   threads %d   prompt %d   generate %d per stream (greedy, end of sequence ignored)%s\n",
              o.model.c_str(), threads, o.n_prompt, o.n_gen, o.no_metrics ? "   metrics off" : "");
  std::printf("decode step budget %d tokens   %s\n\n", o.decode_step_tokens,
              o.arrival_rate > 0 ? fmt::format("streams arrive {:g}/s", o.arrival_rate).c_str() : "streams start at once");
  std::printf("| streams | generated tok/s | vs 1 stream | decode-phase tok/s | vs 1 stream | TTFT p50 / p99 ms | "
              "inter-token p50 / p99 ms |\n");
  std::printf("| ------: | --------------: | ----------: | -----------------: | ----------: | ----------------: | "
              "-----------------------: |\n");
  for (const eval::ServingBenchResult& r : results) {
    char ratio[32] = "", decode_ratio[32] = "", decode[32] = "-";
    if (single > 0) std::snprintf(ratio, sizeof ratio, "%.2fx", r.gen_tok_s / single);
    if (r.decode_tok_s > 0) std::snprintf(decode, sizeof decode, "%.1f", r.decode_tok_s);
    if (single_decode > 0 && r.decode_tok_s > 0)
      std::snprintf(decode_ratio, sizeof decode_ratio, "%.2fx", r.decode_tok_s / single_decode);
    std::printf("| %7d | %15.1f | %11s | %18s | %11s | %7.0f / %-7.0f | %10.1f / %-11.1f |\n", r.streams, r.gen_tok_s,
                ratio, decode, decode_ratio, r.ttft_p50_ms, r.ttft_p99_ms, r.itl_p50_ms, r.itl_p99_ms);
  }
}

// --draft: greedy decode of one text prompt with and without the draft.
void run_draft_bench(const BenchOptions& o) {
  if (!o.parallel.empty()) fail("bench: --draft measures single-stream decode; it does not combine with --parallel");
  const int threads = thread_count(o.threads);
  const LoadedModel target = load_model(o.model, {.tokenizer = TokenizerNeed::required, .needed_by = "bench --draft"});
  const LoadedModel draft = load_draft_model(o.draft.model, target);
  const std::vector<std::int32_t> ids = target.tokenizer->encode(o.prompt_text, target.tokenizer->vocab().add_bos, false);
  ThreadPool pool(threads);
  eval::SpeculativeBenchOptions so;
  so.prompt.assign(ids.begin(), ids.end());
  so.n_gen = o.n_gen;
  so.repetitions = o.repetitions;
  so.batch = o.batch;
  so.kv_type = kv_type_from_flag(o.kv_type, "bench");
  so.speculative = o.draft.speculative;
  monitor::Progress progress("bench", o.progress);
  progress.stage("speculative", 1 + o.repetitions, "repetitions");
  const eval::SpeculativeBenchResult r = eval::run_speculative_bench(*target.model, *draft.model, pool, so, [&](int rep) {
    progress.detail(rep == 0 ? std::string("warm-up done") : fmt::format("repetition {}/{}", rep, o.repetitions));
    progress.set(rep + 1);
  });
  progress.finish();
  const double ratio = r.plain.mean > 0 ? r.speculative.mean / r.plain.mean : 0.0;
  const double acceptance = r.drafted > 0 ? static_cast<double>(r.accepted) / r.drafted : 0.0;
  const double per_step = r.steps > 0 ? static_cast<double>(r.accepted + r.steps) / r.steps : 0.0;
  if (o.json) {
    nlohmann::json j = {{"model", o.model},
                        {"draft", o.draft.model},
                        {"threads", threads},
                        {"n_prompt", so.prompt.size()},
                        {"n_gen", o.n_gen},
                        {"repetitions", o.repetitions},
                        {"draft_max", so.speculative.draft_max},
                        {"draft_min", so.speculative.draft_min},
                        {"decode_tok_s_mean", r.plain.mean},
                        {"decode_tok_s_std", r.plain.stdev},
                        {"speculative_tok_s_mean", r.speculative.mean},
                        {"speculative_tok_s_std", r.speculative.stdev},
                        {"speedup", ratio},
                        {"drafted", r.drafted},
                        {"accepted", r.accepted},
                        {"acceptance_rate", acceptance},
                        {"tokens_per_step", per_step},
                        {"identical", r.identical}};
    std::printf("%s\n", j.dump().c_str());
    if (!r.identical) fail("bench --draft: the draft changed the greedy output (a bug: please report it)");
    return;
  }
  std::printf("model   %s\ndraft   %s\n", o.model.c_str(), o.draft.model.c_str());
  std::printf("threads %d   prompt %zu tokens   generate %d (greedy, end of sequence ignored)   repetitions %d   "
              "draft length %d..%d (adaptive)\n\n",
              threads, so.prompt.size(), o.n_gen, o.repetitions, so.speculative.draft_min, so.speculative.draft_max);
  std::printf("| decode      | tok/s              | vs plain |\n");
  std::printf("| ----------- | ------------------ | -------: |\n");
  std::printf("| plain       | %8.2f ± %-7.2f |    1.00x |\n", r.plain.mean, r.plain.stdev);
  std::printf("| speculative | %8.2f ± %-7.2f | %7.2fx |\n", r.speculative.mean, r.speculative.stdev, ratio);
  std::printf("\ndraft accepted %d of %d tokens (%.1f%%), %.2f tokens per target forward; output %s\n", r.accepted,
              r.drafted, 100.0 * acceptance, per_step, r.identical ? "identical" : "DIFFERENT");
  if (!r.identical) fail("bench --draft: the draft changed the greedy output (a bug: please report it)");
}

void run_bench(const BenchOptions& o) {
  if (!o.draft.model.empty()) {
    run_draft_bench(o);
    return;
  }
  if (!o.parallel.empty()) {
    run_parallel_bench(o);
    return;
  }
  if (o.n_prompt < 1 || o.n_gen < 0 || o.repetitions < 1 || o.batch < 1)
    fail("bench: -p must be >= 1, -n >= 0, -r >= 1, --batch >= 1");
  const DType kv_type = kv_type_from_flag(o.kv_type, "bench");
  const int threads = thread_count(o.threads);
  const LoadedModel loaded = load_model(o.model, {.tokenizer = TokenizerNeed::skip});
  LlamaModel* model = loaded.model.get();
  const LlamaConfig& c = model->config();
  const ModelStats stats = model_stats(*model);
  ThreadPool pool(threads);
  const eval::SpeedBenchOptions so{.n_prompt = o.n_prompt, .n_gen = o.n_gen, .repetitions = o.repetitions, .batch = o.batch};
  KvCache cache = model->make_kv_cache(eval::speed_bench_positions(so), kv_type);
  // The warm-up is a repetition like the others, so it counts: 1 + repetitions units.
  monitor::Progress progress("bench", o.progress);
  progress.stage("speed", 1 + o.repetitions, "repetitions");
  const eval::SpeedBenchResult bench = eval::run_speed_bench(*model, cache, pool, so, [&](int rep) {
    progress.detail(rep == 0 ? std::string("warm-up done") : fmt::format("repetition {}/{}", rep, o.repetitions));
    progress.set(rep + 1);
  });
  progress.finish();
  const eval::MeanStdev& pf = bench.prefill;
  const eval::MeanStdev& dc = bench.decode;
  const double decode_gbs = dc.mean * static_cast<double>(stats.decode_bytes_per_token) / 1e9;
  // The ceiling decode is measured against, read with the same threads right after it.
  const double read_gbs = o.no_bandwidth || o.n_gen == 0 ? 0.0 : measure_read_bandwidth(pool) / 1e9;
  const std::string simd(simd_level_name(simd_level()));
  const double rss_mb = static_cast<double>(monitor::resident_bytes()) / 1e6;
  if (o.json) {
    nlohmann::json j = {{"model", o.model},
                        {"name", c.name},
                        {"arch", c.arch},
                        {"type", stats.main_dtype},
                        {"params", stats.n_params},
                        {"file_bytes", model->source().file_size()},
                        {"kv_cache_bytes", cache.bytes()},
                        {"kv_type", dtype_name(kv_type)},
                        {"threads", threads},
                        {"simd", simd},
                        {"n_prompt", o.n_prompt},
                        {"n_gen", o.n_gen},
                        {"repetitions", o.repetitions},
                        {"prefill_tok_s_mean", pf.mean},
                        {"prefill_tok_s_std", pf.stdev},
                        {"decode_tok_s_mean", dc.mean},
                        {"decode_tok_s_std", dc.stdev},
                        {"decode_weight_bytes_per_token", stats.decode_bytes_per_token},
                        {"active_params", stats.n_active_params},
                        {"n_expert", c.n_expert},
                        {"n_expert_used", c.n_expert_used},
                        {"decode_weight_gb_s", decode_gbs},
                        {"read_bandwidth_gb_s", read_gbs > 0 ? nlohmann::json(read_gbs) : nlohmann::json(nullptr)},
                        {"rss_bytes", monitor::resident_bytes()},
                        {"peak_rss_bytes", monitor::peak_resident_bytes()},
                        {"huge_page_mapped_bytes", monitor::file_huge_page_bytes() + monitor::anon_huge_page_bytes()},
                        {"load", load_mode_name(model->source().weights_copied() ? LoadMode::copy : LoadMode::map)}};
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf("model   %s (%s, %s, %s, %s params, %.3f GB)\n", o.model.c_str(), model->source().format_name().c_str(),
              c.arch.c_str(), stats.main_dtype.c_str(), human_count(static_cast<double>(stats.n_params)).c_str(),
              static_cast<double>(model->source().file_size()) / 1e9);
  std::printf("threads %d   simd %s   repetitions %d   resident %.0f MB (file %.0f MB + kv cache %.0f MB, %s)\n",
              threads, simd.c_str(), o.repetitions, rss_mb, static_cast<double>(model->source().file_size()) / 1e6,
              static_cast<double>(cache.bytes()) / 1e6, std::string(dtype_name(kv_type)).c_str());
  // Decode speed depends on it (see core/mapped_file.cpp): a file first read without the
  // huge-page advice stays in 4 KiB pages until the page cache drops it.
  std::printf("weights in 2 MiB pages: %.0f MB of %.0f MB (%s)\n\n",
              static_cast<double>(monitor::file_huge_page_bytes() + monitor::anon_huge_page_bytes()) / 1e6,
              static_cast<double>(model->source().file_size()) / 1e6,
              model->source().weights_copied() ? "copied into anonymous memory, --no-mmap"
                                               : "memory-mapped file");
  if (c.n_expert > 0)
    std::printf("experts %d per layer, %d used per token: decode reads %.0f MB of weights per token (%s active "
                "parameters)\n\n",
                c.n_expert, c.n_expert_used, static_cast<double>(stats.decode_bytes_per_token) / 1e6,
                human_count(static_cast<double>(stats.n_active_params)).c_str());
  std::printf("| test    | tokens | tok/s              | weights streamed |\n");
  std::printf("| ------- | ------ | ------------------ | ---------------- |\n");
  std::printf("| prefill | %6d | %8.2f ± %-7.2f |                  |\n", o.n_prompt, pf.mean, pf.stdev);
  if (o.n_gen > 0)
    std::printf("| decode  | %6d | %8.2f ± %-7.2f | %9.1f GB/s   |\n", o.n_gen, dc.mean, dc.stdev, decode_gbs);
  if (read_gbs > 0)
    std::printf("\nmemory read bandwidth %.1f GB/s (%d threads, 2 MiB pages): decode streams %.0f%% of it\n", read_gbs,
                threads, 100.0 * decode_gbs / read_gbs);
}

}  // namespace

void register_bench_command(CLI::App& app) {
  auto opts = std::make_shared<BenchOptions>();
  CLI::App* cmd = app.add_subcommand("bench", "Measure prefill and decode tokens/s (mean ± stdev over repetitions)");
  cmd->add_option("model", opts->model, "Model file (.gguf or llama2.c .bin)")->required()->check(CLI::ExistingFile);
  cmd->add_option("-p,--n-prompt", opts->n_prompt, "Prompt tokens processed as one prefill")->capture_default_str();
  cmd->add_option("-n,--n-gen", opts->n_gen, "Tokens generated one at a time after the prompt")->capture_default_str();
  cmd->add_option("-r,--repetitions", opts->repetitions, "Timed repetitions (after one warm-up)")->capture_default_str();
  add_threads_option(cmd, opts->threads);
  cmd->add_option("-b,--batch", opts->batch, "Largest prefill batch")->capture_default_str();
  add_kv_type_option(cmd, opts->kv_type);
  cmd->add_flag("--json", opts->json, "Print one JSON object instead of a table");
  add_load_mode_option(cmd);
  cmd->add_flag("--no-bandwidth", opts->no_bandwidth,
                "Skip measuring the memory read bandwidth after decode (printed beside decode's weights GB/s; "
                "takes about half a second and 512 MiB)");
  cmd->add_option("--parallel", opts->parallel,
                  "Serving benchmark: run N streams at once through the continuous-batching engine, for each N "
                  "given (e.g. --parallel 1,4,16,64); reports aggregate tok/s, TTFT and inter-token latency")
      ->delimiter(',');
  cmd->add_option("--decode-step-tokens", opts->decode_step_tokens,
                  "With --parallel: token budget of an engine step that carries decode tokens (prompt chunks fill "
                  "what the decodes leave; 0: --batch), as kiln serve --decode-step-tokens")
      ->capture_default_str();
  cmd->add_option("--arrival-rate", opts->arrival_rate,
                  "With --parallel: streams arrive this many per second, evenly spaced (a mixed load of new prompts "
                  "and running streams); 0: all at once")
      ->capture_default_str();
  cmd->add_flag("--no-metrics", opts->no_metrics,
                "With --parallel: the engine records no metrics (by default it records them as kiln serve does, and "
                "the registry is written out every second as a 1 s Prometheus scrape would); for measuring their cost");
  add_progress_options(cmd, opts->progress);
  add_draft_options(cmd, opts->draft);
  cmd->add_option("--prompt-text", opts->prompt_text, "With --draft: the prompt text (a draft needs text it can predict)")
      ->capture_default_str();
  cmd->callback([opts] { run_bench(*opts); });
}

}  // namespace kiln::cli
