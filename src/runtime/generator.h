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
#include "runtime/speculative.h"
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
  // Speculative decoding (a draft given): tokens the draft proposed, how many of them the target
  // accepted, and the verification rounds.
  int drafted = 0;
  int accepted = 0;
  int rounds = 0;
};

// A draft model for speculative decoding (runtime/speculative.h) and the cache it runs in; the
// draft must share the target's tokenizer (check_draft_compatible).
struct SpeculativeDraft {
  LlamaModel* model = nullptr;
  KvCache* cache = nullptr;
  SpeculativeOptions options;
};

// Runs the prompt through `model` in a fresh sequence of `cache` and samples up to n_predict
// tokens. is_eog(id) says whether a token ends generation; on_token(id) is called for every
// generated token and may return false to stop. Throws kiln::Error when the prompt is empty or
// does not fit the cache.
// With a draft, each decode step drafts up to the adaptive draft length and verifies it in one
// forward of the target (several tokens per step, the target's distribution unchanged: greedy
// output is the same tokens). The draft's cache must hold the prompt and n_predict tokens too.
GenerateResult generate(LlamaModel& model, KvCache& cache, ThreadPool& pool, Sampler& sampler,
                        std::span<const int> prompt, const GenerateOptions& options,
                        const std::function<bool(int)>& is_eog, const std::function<bool(int)>& on_token,
                        const SpeculativeDraft* draft = nullptr);

}  // namespace kiln
