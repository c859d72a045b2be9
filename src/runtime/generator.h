#pragma once
// Generation for one sequence: prefill the prompt in batches, then decode token by token,
// sampling each next token. Used by `kiln run`; the server's scheduler batches many sequences
// through the same LlamaModel::forward instead.
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "model/llama_model.h"
#include "sample/sampler.h"

namespace kiln {

struct GenerateOptions {
  int n_predict = 128;      // tokens to generate at most; -1: until the context is full
  int batch = 512;          // largest prefill batch
  bool ignore_eos = false;  // keep going past end-of-generation tokens
};

struct GenerateResult {
  std::vector<int> tokens;  // generated ids (the end token included when it stopped there)
  int n_prompt = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;  // from the first to the last generated token
  std::string stop_reason;    // "eos", "length", "context", "callback"
};

// Runs the prompt through `model` in a fresh sequence of `cache` and samples up to n_predict
// tokens. is_eog(id) says whether a token ends generation; on_token(id) is called for every
// generated token and may return false to stop. Throws kiln::Error when the prompt is empty or
// does not fit the cache.
GenerateResult generate(LlamaModel& model, KvCache& cache, ThreadPool& pool, Sampler& sampler,
                        std::span<const int> prompt, const GenerateOptions& options,
                        const std::function<bool(int)>& is_eog, const std::function<bool(int)>& on_token);

}  // namespace kiln
