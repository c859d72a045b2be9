#pragma once
// Perplexity of a model on a token stream, measured like llama-perplexity (see eval/chunks.h
// for the chunking): PPL = exp(mean NLL over the scored tokens) ± its standard error, with the
// running value after every chunk.
#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/thread_pool.h"
#include "eval/chunks.h"
#include "eval/eval_stats.h"
#include "model/llama_model.h"

namespace kiln::eval {

// Reported while a run goes on, after every forward pass.
// Reported once before the first chunk (chunks_done 0, so that a caller's progress starts when
// the work does) and after every group of chunks.
struct EvalProgress {
  int chunks_done = 0;
  int n_chunks = 0;
  std::int64_t tokens_done = 0;   // tokens run through the model(s)
  std::int64_t tokens_total = 0;  // n_chunks * n_ctx
  double seconds = 0;
  double running_ppl = 0;        // of the model being evaluated, over the chunks done
};
using ProgressFn = std::function<void(const EvalProgress&)>;

struct PerplexityResult {
  int n_ctx = 0;
  int n_chunks = 0;
  std::int64_t n_scored = 0;          // tokens whose NLL is averaged
  std::int64_t n_evaluated = 0;       // tokens run through the model (n_chunks * n_ctx)
  Estimate ppl;                       // exp(mean NLL) ± standard error
  Estimate nll;                       // mean NLL (nats) ± standard error
  std::vector<double> running_ppl;    // (n_chunks) PPL over chunks [0, c]
  int chunks_per_forward = 1;
  double seconds = 0;                 // model forward passes and scoring
  double tokens_per_second() const { return seconds > 0 ? static_cast<double>(n_evaluated) / seconds : 0; }
};

// NLL of each scored row: nll[r] = token_nll(logits row r, targets[r]), rows spread over the pool.
// logits is (n_rows, n_vocab).
void score_rows(const float* logits, int n_rows, int n_vocab, const int* targets, double* nll, ThreadPool& pool);

// The bookkeeping every chunked run shares (perplexity, and kld when it saves base logits):
// after a forward over `count` chunks ending at chunk `chunks_done`, counts their tokens and
// reports progress; at the end, the time and the NLL's statistics.
// The report before the first chunk.
void report_start(const ChunkPlan& plan, const ProgressFn& progress);
void record_chunks(PerplexityResult& r, int chunks_done, int count, const ChunkPlan& plan,
                   std::chrono::steady_clock::time_point t0, const ProgressFn& progress);
void finish_perplexity(PerplexityResult& r, const RunningStats& nll, std::chrono::steady_clock::time_point t0);

// Runs every chunk of `plan` through `model` (n_batch tokens per forward at most) and returns
// its perplexity. Throws kiln::Error if the logits are not finite.
PerplexityResult perplexity(LlamaModel& model, const ChunkPlan& plan, ThreadPool& pool, int n_batch,
                            const ProgressFn& progress = nullptr);

}  // namespace kiln::eval
