#include "runtime/generator.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace kiln {
namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

GenerateResult generate(LlamaModel& model, KvCache& cache, ThreadPool& pool, Sampler& sampler,
                        std::span<const int> prompt, const GenerateOptions& options,
                        const std::function<bool(int)>& is_eog, const std::function<bool(int)>& on_token) {
  const int n_vocab = model.config().n_vocab;
  const int capacity = cache.total_blocks() * cache.block_size();
  const int n_prompt = static_cast<int>(prompt.size());
  if (n_prompt == 0) fail("the prompt is empty: give at least one token");
  if (n_prompt >= capacity)
    fail("the prompt has {} tokens but the context holds {} (raise --ctx or shorten the prompt)", n_prompt, capacity);
  for (int id : prompt)
    if (id < 0 || id >= n_vocab) fail("prompt token id {} is out of range (vocabulary of {})", id, n_vocab);
  int budget = capacity - n_prompt;
  if (options.n_predict >= 0 && options.n_predict < budget) budget = options.n_predict;

  GenerateResult result;
  result.n_prompt = n_prompt;
  std::vector<int> history(prompt.begin(), prompt.end());
  std::vector<float> logits(static_cast<std::size_t>(n_vocab));
  const int seq = cache.add_sequence();
  Batch batch;

  auto t0 = std::chrono::steady_clock::now();
  for (int start = 0; start < n_prompt; start += options.batch) {
    batch.clear();
    const int end = std::min(n_prompt, start + options.batch);
    for (int i = start; i < end; ++i) batch.add(prompt[static_cast<std::size_t>(i)], i, seq, i == n_prompt - 1);
    model.forward(batch, cache, pool, logits.data());
  }
  result.prefill_seconds = seconds_since(t0);

  t0 = std::chrono::steady_clock::now();
  result.stop_reason = budget == capacity - n_prompt ? "context" : "length";
  for (int i = 0; i < budget; ++i) {
    const int token = sampler.sample(logits, history);
    result.tokens.push_back(token);
    history.push_back(token);
    const bool end = !options.ignore_eos && is_eog(token);
    if (!on_token(token)) {
      result.stop_reason = "callback";
      break;
    }
    if (end) {
      result.stop_reason = "eos";
      break;
    }
    if (i + 1 == budget) break;
    batch.clear();
    batch.add(token, n_prompt + i, seq, true);
    model.forward(batch, cache, pool, logits.data());
  }
  result.decode_seconds = seconds_since(t0);
  cache.remove_sequence(seq);
  return result;
}

}  // namespace kiln
