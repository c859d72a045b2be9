#pragma once
// Prefill and decode speed of one sequence, like llama-bench: a prompt of n_prompt tokens as one
// prefill (in chunks of `batch`), then n_gen single-token decode steps on top of it, repeated.
// End of sequence is ignored and no sampling is timed: the next token is the argmax.
#include <cstddef>
#include <functional>
#include <vector>

#include "eval/eval_stats.h"

namespace kiln {
class KvCache;
class LlamaModel;
class ThreadPool;
}  // namespace kiln

namespace kiln::eval {

struct SpeedBenchOptions {
  int n_prompt = 128;
  int n_gen = 64;
  int repetitions = 5;  // timed, after one warm-up
  int batch = 512;      // largest prefill batch
};

struct SpeedBenchResult {
  std::vector<double> prefill_tok_s;  // one per timed repetition
  std::vector<double> decode_tok_s;   // one per timed repetition; empty when n_gen is 0
  MeanStdev prefill;
  MeanStdev decode;
};

// The cache positions a run needs: make the cache with model.make_kv_cache(this, type).
int speed_bench_positions(const SpeedBenchOptions& options);

// Called after each repetition with its number: 0 for the warm-up, then 1..repetitions.
using SpeedBenchProgress = std::function<void(int repetition)>;

// Runs one warm-up repetition (page faults on the mapped weights, caches; not counted) and
// `repetitions` timed ones on a fresh sequence of `cache` each. The caller owns the cache so
// that what it reports afterwards (its size, the resident memory) still includes it. Throws
// kiln::Error when the options are out of range or the cache is too small.
SpeedBenchResult run_speed_bench(LlamaModel& model, KvCache& cache, ThreadPool& pool, const SpeedBenchOptions& options,
                                 const SpeedBenchProgress& progress = {});

}  // namespace kiln::eval
