#include "eval/serving_bench.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/error.h"
#include "eval/bench_prompt.h"
#include "eval/eval_stats.h"
#include "model/llama_model.h"
#include "monitor/registry.h"
#include "monitor/text_format.h"
#include "runtime/engine.h"

namespace kiln::eval {

namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// `streams` requests submitted at once; timed from the first submit to the last finish.
ServingBenchResult run_streams(LlamaModel& model, const Tokenizer& tokenizer, const ServingBenchOptions& o,
                               int streams) {
  EngineOptions eo;
  eo.threads = o.threads;
  eo.max_running = std::max(streams, 1);
  eo.context_tokens = o.n_prompt + o.n_gen + 1;
  eo.kv_cache_tokens = streams * (o.n_prompt + o.n_gen + 16);
  eo.max_batch_tokens = std::max(o.batch, streams);
  eo.decode_step_tokens = o.decode_step_tokens;
  eo.max_queued = streams;
  eo.prefix_cache = false;
  eo.record_metrics = o.metrics;
  eo.kv_type = o.kv_type;
  std::shared_ptr<monitor::Registry> registry;
  if (o.metrics) {
    registry = std::make_shared<monitor::Registry>();
    eo.metrics = registry;
    eo.metrics_model = "bench";
  }
  Engine engine(model, tokenizer, eo);
  // The scraper: collects and writes the whole registry out every second while the streams run.
  std::mutex scrape_mu;
  std::condition_variable scrape_cv;
  bool scrape_stop = false;
  std::uint64_t scrapes = 0;
  std::thread scraper;
  if (registry) {
    scraper = std::thread([&] {
      std::unique_lock<std::mutex> lk(scrape_mu);
      while (!scrape_cv.wait_for(lk, std::chrono::seconds(1), [&] { return scrape_stop; })) {
        lk.unlock();
        const std::string text = monitor::to_text(registry->collect());
        lk.lock();
        scrapes += text.empty() ? 0 : 1;
      }
    });
  }

  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  std::vector<std::vector<Clock::time_point>> stamps(static_cast<std::size_t>(streams));
  std::vector<std::string> errors;
  const Clock::time_point t0 = Clock::now();
  for (int s = 0; s < streams; ++s) {
    if (o.arrival_rate > 0 && s > 0)
      std::this_thread::sleep_until(t0 + std::chrono::duration_cast<Clock::duration>(
                                              std::chrono::duration<double>(s / o.arrival_rate)));
    GenerationRequest r;
    r.prompt = bench_prompt(o.n_prompt, model.config().n_vocab, s);
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
  ServingBenchResult r;
  r.streams = streams;
  r.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  if (scraper.joinable()) {
    {
      std::lock_guard<std::mutex> lk(scrape_mu);
      scrape_stop = true;
    }
    scrape_cv.notify_all();
    scraper.join();
  }
  r.scrapes = scrapes;
  if (!errors.empty()) fail("serving bench: a stream failed: {}", errors.front());
  std::vector<double> ttft, itl;
  std::size_t tokens = 0;
  Clock::time_point all_decoding = t0, first_done = Clock::time_point::max();
  for (const auto& st : stamps) {
    tokens += st.size();
    if (st.empty()) continue;
    ttft.push_back(ms_between(t0, st.front()));
    for (std::size_t i = 1; i < st.size(); ++i) itl.push_back(ms_between(st[i - 1], st[i]));
    all_decoding = std::max(all_decoding, st.front());
    first_done = std::min(first_done, st.back());
  }
  if (first_done > all_decoding) {
    std::size_t in_phase = 0;  // tokens after every stream had its first, up to the first stream's last
    for (const auto& st : stamps)
      for (const Clock::time_point t : st) in_phase += t > all_decoding && t <= first_done ? 1 : 0;
    r.decode_tok_s = static_cast<double>(in_phase) / std::chrono::duration<double>(first_done - all_decoding).count();
  }
  std::sort(ttft.begin(), ttft.end());
  std::sort(itl.begin(), itl.end());
  r.gen_tok_s = static_cast<double>(tokens) / r.wall_s;
  r.ttft_p50_ms = percentile(ttft, 0.50);
  r.ttft_p99_ms = percentile(ttft, 0.99);
  r.itl_p50_ms = percentile(itl, 0.50);
  r.itl_p99_ms = percentile(itl, 0.99);
  if (o.metrics) r.preemptions = engine.stats().preemptions_total;
  return r;
}

}  // namespace

std::vector<ServingBenchResult> run_serving_bench(LlamaModel& model, const Tokenizer& tokenizer,
                                                  const ServingBenchOptions& o, const std::vector<int>& stream_counts,
                                                  const ServingBenchProgress& progress) {
  if (o.n_prompt < 1 || o.n_gen < 1 || o.batch < 1)
    fail("serving bench: needs n_prompt >= 1, n_gen >= 1, batch >= 1 (got {}, {}, {})", o.n_prompt, o.n_gen, o.batch);
  if (o.decode_step_tokens < 0 || !(o.arrival_rate >= 0))
    fail("serving bench: needs decode_step_tokens >= 0 and arrival_rate >= 0 (got {}, {})", o.decode_step_tokens,
         o.arrival_rate);
  for (int n : stream_counts)
    if (n < 1 || n > 4096) fail("serving bench: stream counts go from 1 to 4096, got {}", n);
  {
    ServingBenchOptions warm_up = o;
    warm_up.n_prompt = std::min(o.n_prompt, 16);
    warm_up.n_gen = 2;
    warm_up.arrival_rate = 0;
    run_streams(model, tokenizer, warm_up, 1);
  }
  std::vector<ServingBenchResult> results;
  for (int n : stream_counts) {
    if (progress) progress(n);
    results.push_back(run_streams(model, tokenizer, o, n));
  }
  return results;
}

}  // namespace kiln::eval
