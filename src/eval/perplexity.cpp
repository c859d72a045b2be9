#include "eval/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"
#include "eval/log_softmax.h"

namespace kiln::eval {

void score_rows(const float* logits, int n_rows, int n_vocab, const int* targets, double* nll, ThreadPool& pool) {
  pool.parallel_for(n_rows, [&](std::int64_t r, int) {
    nll[r] = token_nll(logits + r * n_vocab, n_vocab, targets[r]);
  });
}

PerplexityResult perplexity(LlamaModel& model, const ChunkPlan& plan, ThreadPool& pool, int n_batch,
                            const ProgressFn& progress) {
  const int n_vocab = model.config().n_vocab;
  const int n_scored = plan.n_scored();
  ChunkEvaluator evaluator(model, plan, pool, n_batch);
  PerplexityResult r;
  r.n_ctx = plan.n_ctx;
  r.n_chunks = plan.n_chunks;
  r.chunks_per_forward = evaluator.chunks_per_forward();
  RunningStats nll_stats;
  std::vector<int> targets(static_cast<std::size_t>(evaluator.chunks_per_forward() * n_scored));
  std::vector<double> nll(targets.size());
  report_start(plan, progress);
  const auto t0 = std::chrono::steady_clock::now();
  for (int begin = 0; begin < plan.n_chunks; begin += evaluator.chunks_per_forward()) {
    const int count = std::min(evaluator.chunks_per_forward(), plan.n_chunks - begin);
    const float* logits = evaluator.evaluate(begin, count);
    for (int c = 0; c < count; ++c)
      for (int i = 0; i < n_scored; ++i) targets[static_cast<std::size_t>(c * n_scored + i)] = plan.target(begin + c, i);
    score_rows(logits, count * n_scored, n_vocab, targets.data(), nll.data(), pool);
    for (int c = 0; c < count; ++c) {
      for (int i = 0; i < n_scored; ++i) {
        const double x = nll[static_cast<std::size_t>(c * n_scored + i)];
        if (!std::isfinite(x))
          fail("{}: non-finite logits at chunk {} position {} (the model's weights or activations overflow)",
               model.source().path(), begin + c + 1, plan.first + i);
        nll_stats.add(x);
      }
      r.running_ppl.push_back(std::exp(nll_stats.mean()));
    }
    record_chunks(r, begin + count, count, plan, t0, progress);
  }
  finish_perplexity(r, nll_stats, t0);
  return r;
}

void report_start(const ChunkPlan& plan, const ProgressFn& progress) {
  if (!progress) return;
  EvalProgress p;
  p.n_chunks = plan.n_chunks;
  p.tokens_total = static_cast<std::int64_t>(plan.n_chunks) * plan.n_ctx;
  progress(p);
}

void record_chunks(PerplexityResult& r, int chunks_done, int count, const ChunkPlan& plan,
                   std::chrono::steady_clock::time_point t0, const ProgressFn& progress) {
  r.n_evaluated += static_cast<std::int64_t>(count) * plan.n_ctx;
  if (!progress) return;
  EvalProgress p;
  p.chunks_done = chunks_done;
  p.n_chunks = plan.n_chunks;
  p.tokens_done = r.n_evaluated;
  p.tokens_total = static_cast<std::int64_t>(plan.n_chunks) * plan.n_ctx;
  p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  p.running_ppl = r.running_ppl.empty() ? 0 : r.running_ppl.back();
  progress(p);
}

void finish_perplexity(PerplexityResult& r, const RunningStats& nll, std::chrono::steady_clock::time_point t0) {
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.n_scored = nll.count();
  r.nll = nll.mean_estimate();
  r.ppl = perplexity_estimate(nll);
}

}  // namespace kiln::eval
