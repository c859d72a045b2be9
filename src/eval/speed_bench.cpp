#include "eval/speed_bench.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "eval/bench_prompt.h"
#include "eval/log_softmax.h"
#include "model/llama_model.h"

namespace kiln::eval {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int speed_bench_positions(const SpeedBenchOptions& options) { return options.n_prompt + options.n_gen + 1; }

SpeedBenchResult run_speed_bench(LlamaModel& model, KvCache& cache, ThreadPool& pool, const SpeedBenchOptions& o,
                                 const SpeedBenchProgress& progress) {
  if (o.n_prompt < 1 || o.n_gen < 0 || o.repetitions < 1 || o.batch < 1)
    fail("speed bench: needs n_prompt >= 1, n_gen >= 0, repetitions >= 1, batch >= 1 (got {}, {}, {}, {})", o.n_prompt,
         o.n_gen, o.repetitions, o.batch);
  if (cache.free_blocks() * cache.block_size() < o.n_prompt + o.n_gen)
    fail("speed bench: the KV cache holds {} free positions, fewer than the {} a repetition needs",
         cache.free_blocks() * cache.block_size(), o.n_prompt + o.n_gen);
  const int n_vocab = model.config().n_vocab;
  const std::vector<int> prompt = bench_prompt(o.n_prompt, n_vocab);
  std::vector<float> logits(static_cast<std::size_t>(n_vocab));

  SpeedBenchResult r;
  // Repetition 0 warms up (page faults on the mapped weights, caches) and is not counted.
  for (int rep = 0; rep <= o.repetitions; ++rep) {
    const int seq = cache.add_sequence();
    Batch batch;
    auto t0 = std::chrono::steady_clock::now();
    for (int start = 0; start < o.n_prompt; start += o.batch) {
      batch.clear();
      const int end = std::min(o.n_prompt, start + o.batch);
      for (int i = start; i < end; ++i) batch.add(prompt[static_cast<std::size_t>(i)], i, seq, i == o.n_prompt - 1);
      model.forward(batch, cache, pool, logits.data());
    }
    const double t_prefill = seconds_since(t0);
    int token = argmax(logits.data(), n_vocab);
    t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < o.n_gen; ++i) {
      batch.clear();
      batch.add(token, o.n_prompt + i, seq, true);
      model.forward(batch, cache, pool, logits.data());
      token = argmax(logits.data(), n_vocab);
    }
    const double t_decode = seconds_since(t0);
    cache.remove_sequence(seq);
    if (progress) progress(rep);
    if (rep == 0) continue;
    r.prefill_tok_s.push_back(o.n_prompt / t_prefill);
    if (o.n_gen > 0) r.decode_tok_s.push_back(o.n_gen / t_decode);
  }
  r.prefill = mean_stdev(r.prefill_tok_s);
  r.decode = mean_stdev(r.decode_tok_s);
  return r;
}

}  // namespace kiln::eval
