#pragma once
// `kiln bench --draft`: greedy single-stream decode of one prompt with and without a draft model
// (speculative decoding, runtime/speculative.h), repetitions of the two interleaved so that both
// see the same machine, and the draft's acceptance. Greedy output must be the same tokens either
// way; the result says whether it was.
#include <functional>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "eval/eval_stats.h"
#include "model/llama_model.h"
#include "runtime/speculative_options.h"

namespace kiln::eval {

struct SpeculativeBenchOptions {
  std::vector<int> prompt;  // token ids
  int n_gen = 128;          // tokens generated per run (end of sequence ignored)
  int repetitions = 5;      // timed runs of each, after one warm-up of each
  int batch = 512;          // largest prefill batch
  DType kv_type = DType::F16;
  SpeculativeOptions speculative;
};

struct SpeculativeBenchResult {
  MeanStdev plain;        // decode tok/s without the draft (tokens after the first / decode time)
  MeanStdev speculative;  // with it
  int drafted = 0;        // over the timed runs with the draft
  int accepted = 0;
  int steps = 0;          // verification forwards of the target
  bool identical = true;  // every run with the draft gave the tokens of the runs without it
};

// Runs the benchmark; `on_repetition(i)` after each pair (0: the warm-up). Throws kiln::Error on
// an empty prompt or one that does not fit the models' context.
SpeculativeBenchResult run_speculative_bench(LlamaModel& target, LlamaModel& draft, ThreadPool& pool,
                                             const SpeculativeBenchOptions& options,
                                             const std::function<void(int)>& on_repetition = {});

}  // namespace kiln::eval
