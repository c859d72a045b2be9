#pragma once
// Runs a model over calibration chunks with an ImatrixCollector attached: what `kiln imatrix`
// does, like llama-imatrix (chunks of n_ctx tokens with BOS first, each in a fresh context, every
// token's activations counted).
#include <functional>

#include "core/thread_pool.h"
#include "eval/chunks.h"
#include "model/llama_model.h"
#include "optimize/imatrix.h"

namespace kiln::optimize {

struct ImatrixCollectProgress {
  int chunks_done = 0;
  int n_chunks = 0;
  std::int64_t tokens_done = 0;
  double seconds = 0;
};
using ImatrixCollectProgressFn = std::function<void(const ImatrixCollectProgress&)>;

// Every chunk of `plan` through `model`; n_batch tokens per forward pass at most. The result has
// chunk_count = plan.n_chunks and chunk_size = plan.n_ctx; datasets are the caller's to fill.
Imatrix collect_imatrix(LlamaModel& model, const eval::ChunkPlan& plan, ThreadPool& pool,
                        const ImatrixCollector::Options& options, int n_batch,
                        const ImatrixCollectProgressFn& progress = nullptr);

}  // namespace kiln::optimize
