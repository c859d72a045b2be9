// kiln bench MODEL: prefill and decode speed as mean ± stdev over repetitions, like llama-bench.
// Prefill runs a fixed prompt of -p tokens as one batch (chunks of --batch); decode then runs
// -n single-token steps on top of it. End of sequence is ignored and no sampling is timed: the
// next token is the argmax.
//
// With --parallel N[,N...] it measures serving instead: N streams at once through the
// continuous-batching engine (the one `kiln serve` runs), each a distinct -p token prompt
// generating -n tokens, and reports aggregate generated tokens/s with time-to-first-token and
// inter-token latency percentiles, like vLLM's benchmark_serving without the HTTP layer.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "commands.h"
#include "load_option.h"
#include "core/cpu_features.h"
#include "core/error.h"
#include "core/memory_bandwidth.h"
#include "format/gguf_file.h"
#include "model/llama_model.h"
#include "runtime/engine.h"
#include "runtime/model_stats.h"
#include "runtime/process_stats.h"
#include "tokenizer/load_tokenizer.h"

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
};

struct MeanStd {
  double mean = 0, std = 0;
};

MeanStd mean_std(const std::vector<double>& v) {
  MeanStd r;
  if (v.empty()) return r;
  for (double x : v) r.mean += x;
  r.mean /= static_cast<double>(v.size());
  if (v.size() > 1) {
    double ss = 0;
    for (double x : v) ss += (x - r.mean) * (x - r.mean);
    r.std = std::sqrt(ss / static_cast<double>(v.size() - 1));
  }
  return r;
}

// 1234567 -> "1.23 M".
std::string human_count(double n) {
  const char* units[] = {"", " K", " M", " B", " T"};
  int u = 0;
  while (n >= 1000 && u < 4) n /= 1000, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%s", n, units[u]);
  return buf;
}

int argmax(const float* x, int n) { return static_cast<int>(std::max_element(x, x + n) - x); }

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double idx = p / 100.0 * static_cast<double>(v.size() - 1);
  const std::size_t lo = static_cast<std::size_t>(idx);
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (idx - static_cast<double>(lo));
}

struct ParallelResult {
  int streams = 0;
  double wall_s = 0;
  double gen_tok_s = 0;        // generated tokens / wall time, all streams together
  double ttft_p50_ms = 0, ttft_p99_ms = 0;
  double itl_p50_ms = 0, itl_p99_ms = 0;
  std::uint64_t preemptions = 0;
};

// N streams submitted at once; timed from the first submit to the last finish.
ParallelResult run_streams(LlamaModel& model, const Tokenizer& tokenizer, const BenchOptions& o, int threads,
                           int streams) {
  const LlamaConfig& c = model.config();
  EngineOptions eo;
  eo.threads = threads;
  eo.max_running = std::max(streams, 1);
  eo.context_tokens = o.n_prompt + o.n_gen + 1;
  eo.kv_cache_tokens = streams * (o.n_prompt + o.n_gen + 16);
  eo.max_batch_tokens = std::max(o.batch, streams);
  eo.max_queued = streams;
  eo.prefix_cache = false;  // distinct prompts; measure the work, not the cache
  Engine engine(model, tokenizer, eo);

  using Clock = std::chrono::steady_clock;
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  std::vector<std::vector<Clock::time_point>> stamps(static_cast<std::size_t>(streams));
  std::vector<std::string> errors;
  const Clock::time_point t0 = Clock::now();
  for (int s = 0; s < streams; ++s) {
    GenerationRequest r;
    r.prompt.resize(static_cast<std::size_t>(o.n_prompt));
    // The peer script's prompt (ids 100 + 7i mod 1000), shifted per stream so no two match.
    for (int i = 0; i < o.n_prompt; ++i)
      r.prompt[static_cast<std::size_t>(i)] = (100 + (i * 7 + s * 13) % 1000) % c.n_vocab;
    r.sampling.temperature = 0;
    r.max_tokens = o.n_gen;
    r.ignore_eos = true;
    auto* st = &stamps[static_cast<std::size_t>(s)];
    engine.submit(std::move(r), {[st](const TokenEvent&) { st->push_back(Clock::now()); },
                                 [&](const Finish& f) {
                                   std::lock_guard<std::mutex> lk(mu);
                                   if (f.reason != FinishReason::Length) errors.push_back(f.error);
                                   ++done;
                                   cv.notify_all();
                                 }});
  }
  {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return done == streams; });
  }
  ParallelResult r;
  r.streams = streams;
  r.wall_s = seconds_since(t0);
  if (!errors.empty()) fail("bench: a stream failed: {}", errors.front());
  std::vector<double> ttft, itl;
  std::size_t tokens = 0;
  for (const auto& st : stamps) {
    tokens += st.size();
    if (st.empty()) continue;
    ttft.push_back(std::chrono::duration<double, std::milli>(st.front() - t0).count());
    for (std::size_t i = 1; i < st.size(); ++i) itl.push_back(std::chrono::duration<double, std::milli>(st[i] - st[i - 1]).count());
  }
  r.gen_tok_s = static_cast<double>(tokens) / r.wall_s;
  r.ttft_p50_ms = percentile(ttft, 50);
  r.ttft_p99_ms = percentile(ttft, 99);
  r.itl_p50_ms = percentile(itl, 50);
  r.itl_p99_ms = percentile(itl, 99);
  r.preemptions = engine.stats().preemptions_total;
  return r;
}

void run_parallel_bench(const BenchOptions& o) {
  if (o.n_prompt < 1 || o.n_gen < 1 || o.batch < 1) fail("bench: --parallel needs -p >= 1, -n >= 1, --batch >= 1");
  for (int n : o.parallel)
    if (n < 1 || n > 4096) fail("bench: --parallel takes stream counts between 1 and 4096, got {}", n);
  const int threads = o.threads > 0 ? o.threads : static_cast<int>(std::thread::hardware_concurrency());
  std::unique_ptr<LlamaModel> model = LlamaModel::load(o.model);
  const GgufFile* gguf = model->source().gguf();
  if (gguf == nullptr || gguf->find("tokenizer.ggml.tokens") == nullptr)
    fail("{}: --parallel runs the serving engine, which needs a model with a tokenizer (a GGUF with tokenizer.ggml.*)",
         o.model);
  std::unique_ptr<Tokenizer> tokenizer = load_tokenizer(*gguf);
  // Warm-up: one short stream faults the weights in.
  {
    BenchOptions w = o;
    w.n_prompt = std::min(o.n_prompt, 16);
    w.n_gen = 2;
    run_streams(*model, *tokenizer, w, threads, 1);
  }
  std::vector<ParallelResult> results;
  const bool progress = !o.json && ::isatty(STDERR_FILENO);
  for (int n : o.parallel) {
    if (progress) std::fprintf(stderr, "\rbench: %d streams ...", n);
    results.push_back(run_streams(*model, *tokenizer, o, threads, n));
  }
  if (progress) std::fprintf(stderr, "\r%40s\r", "");
  const double single = results.front().streams == 1 ? results.front().gen_tok_s : 0.0;
  if (o.json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const ParallelResult& r : results)
      arr.push_back({{"streams", r.streams}, {"wall_s", r.wall_s}, {"gen_tok_s", r.gen_tok_s},
                     {"ttft_p50_ms", r.ttft_p50_ms}, {"ttft_p99_ms", r.ttft_p99_ms}, {"itl_p50_ms", r.itl_p50_ms},
                     {"itl_p99_ms", r.itl_p99_ms}, {"preemptions", r.preemptions}});
    nlohmann::json j = {{"model", o.model}, {"threads", threads}, {"n_prompt", o.n_prompt}, {"n_gen", o.n_gen},
                        {"results", arr}, {"peak_rss_bytes", peak_resident_bytes()}};
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf("model   %s   threads %d   prompt %d   generate %d per stream (greedy, end of sequence ignored)\n\n",
              o.model.c_str(), threads, o.n_prompt, o.n_gen);
  std::printf("| streams | generated tok/s | vs 1 stream | TTFT p50 / p99 ms | inter-token p50 / p99 ms |\n");
  std::printf("| ------: | --------------: | ----------: | ----------------: | -----------------------: |\n");
  for (const ParallelResult& r : results) {
    char ratio[32] = "";
    if (single > 0) std::snprintf(ratio, sizeof ratio, "%.2fx", r.gen_tok_s / single);
    std::printf("| %7d | %15.1f | %11s | %7.0f / %-7.0f | %10.1f / %-11.1f |\n", r.streams, r.gen_tok_s, ratio,
                r.ttft_p50_ms, r.ttft_p99_ms, r.itl_p50_ms, r.itl_p99_ms);
  }
}

void run_bench(const BenchOptions& o) {
  if (!o.parallel.empty()) {
    run_parallel_bench(o);
    return;
  }
  if (o.n_prompt < 1 || o.n_gen < 0 || o.repetitions < 1 || o.batch < 1)
    fail("bench: -p must be >= 1, -n >= 0, -r >= 1, --batch >= 1");
  const int threads = o.threads > 0 ? o.threads : static_cast<int>(std::thread::hardware_concurrency());
  std::unique_ptr<LlamaModel> model = LlamaModel::load(o.model);
  const LlamaConfig& c = model->config();
  const ModelStats stats = model_stats(*model);
  ThreadPool pool(threads);
  std::optional<DType> kv = parse_dtype(o.kv_type);
  if (!kv) fail("bench: --kv-type '{}' is not a type (expected f16 or f32)", o.kv_type);
  KvCache cache = model->make_kv_cache(o.n_prompt + o.n_gen + 1, *kv);

  // The same synthetic prompt as the llama.cpp peer script: ids 100 + 7i mod 1000.
  std::vector<int> prompt(static_cast<std::size_t>(o.n_prompt));
  for (int i = 0; i < o.n_prompt; ++i) prompt[static_cast<std::size_t>(i)] = (100 + (i * 7) % 1000) % c.n_vocab;
  std::vector<float> logits(static_cast<std::size_t>(c.n_vocab));

  std::vector<double> prefill_rates, decode_rates;
  const bool progress = !o.json && ::isatty(STDERR_FILENO);
  // Repetition 0 warms up (page faults on the mapped weights, caches) and is not counted.
  for (int rep = 0; rep <= o.repetitions; ++rep) {
    const int seq = cache.add_sequence();
    Batch batch;
    auto t0 = std::chrono::steady_clock::now();
    for (int start = 0; start < o.n_prompt; start += o.batch) {
      batch.clear();
      const int end = std::min(o.n_prompt, start + o.batch);
      for (int i = start; i < end; ++i) batch.add(prompt[static_cast<std::size_t>(i)], i, seq, i == o.n_prompt - 1);
      model->forward(batch, cache, pool, logits.data());
    }
    const double t_prefill = seconds_since(t0);
    int token = argmax(logits.data(), c.n_vocab);
    t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < o.n_gen; ++i) {
      batch.clear();
      batch.add(token, o.n_prompt + i, seq, true);
      model->forward(batch, cache, pool, logits.data());
      token = argmax(logits.data(), c.n_vocab);
    }
    const double t_decode = seconds_since(t0);
    cache.remove_sequence(seq);
    if (rep == 0) continue;
    prefill_rates.push_back(o.n_prompt / t_prefill);
    if (o.n_gen > 0) decode_rates.push_back(o.n_gen / t_decode);
    if (progress) std::fprintf(stderr, "\rbench: repetition %d/%d", rep, o.repetitions);
  }
  if (progress) std::fprintf(stderr, "\r%40s\r", "");
  const MeanStd pf = mean_std(prefill_rates), dc = mean_std(decode_rates);
  const double decode_gbs = dc.mean * static_cast<double>(stats.decode_bytes_per_token) / 1e9;
  // The ceiling decode is measured against, read with the same threads right after it.
  const double read_gbs = o.no_bandwidth || o.n_gen == 0 ? 0.0 : measure_read_bandwidth(pool) / 1e9;
  const std::string simd(simd_level_name(simd_level()));
  const double rss_mb = static_cast<double>(resident_bytes()) / 1e6;
  if (o.json) {
    nlohmann::json j = {{"model", o.model},
                        {"name", c.name},
                        {"arch", c.arch},
                        {"type", stats.main_dtype},
                        {"params", stats.n_params},
                        {"file_bytes", model->source().file_size()},
                        {"kv_cache_bytes", cache.bytes()},
                        {"threads", threads},
                        {"simd", simd},
                        {"n_prompt", o.n_prompt},
                        {"n_gen", o.n_gen},
                        {"repetitions", o.repetitions},
                        {"prefill_tok_s_mean", pf.mean},
                        {"prefill_tok_s_std", pf.std},
                        {"decode_tok_s_mean", dc.mean},
                        {"decode_tok_s_std", dc.std},
                        {"decode_weight_bytes_per_token", stats.decode_bytes_per_token},
                        {"decode_weight_gb_s", decode_gbs},
                        {"read_bandwidth_gb_s", read_gbs > 0 ? nlohmann::json(read_gbs) : nlohmann::json(nullptr)},
                        {"rss_bytes", resident_bytes()},
                        {"peak_rss_bytes", peak_resident_bytes()},
                        {"huge_page_mapped_bytes", file_huge_page_bytes() + anon_huge_page_bytes()},
                        {"load", load_mode_name(model->source().weights_copied() ? LoadMode::copy : LoadMode::map)}};
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf("model   %s (%s, %s, %s, %s params, %.3f GB)\n", o.model.c_str(), model->source().format_name().c_str(),
              c.arch.c_str(), stats.main_dtype.c_str(), human_count(static_cast<double>(stats.n_params)).c_str(),
              static_cast<double>(model->source().file_size()) / 1e9);
  std::printf("threads %d   simd %s   repetitions %d   resident %.0f MB (file %.0f MB + kv cache %.0f MB)\n", threads,
              simd.c_str(), o.repetitions, rss_mb, static_cast<double>(model->source().file_size()) / 1e6,
              static_cast<double>(cache.bytes()) / 1e6);
  // Decode speed depends on it (see core/mapped_file.cpp): a file first read without the
  // huge-page advice stays in 4 KiB pages until the page cache drops it.
  std::printf("weights in 2 MiB pages: %.0f MB of %.0f MB (%s)\n\n",
              static_cast<double>(file_huge_page_bytes() + anon_huge_page_bytes()) / 1e6,
              static_cast<double>(model->source().file_size()) / 1e6,
              model->source().weights_copied() ? "copied into anonymous memory, --no-mmap"
                                               : "memory-mapped file");
  std::printf("| test    | tokens | tok/s              | weights streamed |\n");
  std::printf("| ------- | ------ | ------------------ | ---------------- |\n");
  std::printf("| prefill | %6d | %8.2f ± %-7.2f |                  |\n", o.n_prompt, pf.mean, pf.std);
  if (o.n_gen > 0)
    std::printf("| decode  | %6d | %8.2f ± %-7.2f | %9.1f GB/s   |\n", o.n_gen, dc.mean, dc.std, decode_gbs);
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
  cmd->add_option("-t,--threads", opts->threads, "Worker threads (0: all hardware threads)")->capture_default_str();
  cmd->add_option("-b,--batch", opts->batch, "Largest prefill batch")->capture_default_str();
  cmd->add_option("--kv-type", opts->kv_type, "KV cache element type: f16 or f32")->capture_default_str();
  cmd->add_flag("--json", opts->json, "Print one JSON object instead of a table");
  add_no_mmap_flag(cmd);
  cmd->add_flag("--no-bandwidth", opts->no_bandwidth,
                "Skip measuring the memory read bandwidth after decode (printed beside decode's weights GB/s; "
                "takes about half a second and 512 MiB)");
  cmd->add_option("--parallel", opts->parallel,
                  "Serving benchmark: run N streams at once through the continuous-batching engine, for each N "
                  "given (e.g. --parallel 1,4,16,64); reports aggregate tok/s, TTFT and inter-token latency")
      ->delimiter(',');
  cmd->callback([opts] { run_bench(*opts); });
}

}  // namespace kiln::cli
