#include "optimize/imatrix_collect.h"

#include <algorithm>
#include <chrono>

namespace kiln::optimize {

Imatrix collect_imatrix(LlamaModel& model, const eval::ChunkPlan& plan, ThreadPool& pool,
                        const ImatrixCollector::Options& options, int n_batch,
                        const ImatrixCollectProgressFn& progress) {
  ImatrixCollector collector(options);
  eval::ChunkEvaluator evaluator(model, plan, pool, n_batch);
  // The observer is detached on every way out, so the model is left as it was given.
  struct Attach {
    LlamaModel& m;
    Attach(LlamaModel& model_, ActivationObserver* o) : m(model_) { m.set_observer(o); }
    ~Attach() { m.set_observer(nullptr); }
  } attach(model, &collector);

  const auto start = std::chrono::steady_clock::now();
  for (int c = 0; c < plan.n_chunks;) {
    const int count = std::min(evaluator.chunks_per_forward(), plan.n_chunks - c);
    evaluator.evaluate(c, count);
    c += count;
    if (progress) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      progress({c, plan.n_chunks, static_cast<std::int64_t>(c) * plan.n_ctx, s});
    }
  }
  Imatrix m = collector.result();
  m.chunk_count = static_cast<std::uint32_t>(plan.n_chunks);
  m.chunk_size = static_cast<std::uint32_t>(plan.n_ctx);
  return m;
}

}  // namespace kiln::optimize
