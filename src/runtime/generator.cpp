#include "runtime/generator.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "core/error.h"

namespace kiln {
namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
// The decode loop with a draft: every round drafts, verifies all drafted tokens in one target
// forward, emits the accepted ones and the target's own next token, and drops the rejected
// positions from both caches. `logits` holds the target's row after the prompt.
void decode_speculative(LlamaModel& model, KvCache& cache, int seq, ThreadPool& pool, Sampler& sampler,
                        std::vector<int>& history, int budget, const GenerateOptions& options,
                        const std::function<bool(int)>& is_eog, const std::function<bool(int)>& on_token,
                        const SpeculativeDraft& draft, int draft_seq, std::vector<float>& logits, GenerateResult& result) {
  const int n_vocab = model.config().n_vocab;
  Drafter drafter(*draft.model, *draft.cache, pool, draft.options.p_min);
  SamplerParams draft_params = sampler.params();
  draft_params.seed ^= 0x9e3779b97f4a7c15ULL;  // a stream of its own: the draft's draws must not repeat the target's
  Sampler draft_sampler(draft_params);
  DraftLength length(draft.options);
  DraftProposal proposal;
  VerifyScratch scratch;
  Batch batch;
  const auto t0 = std::chrono::steady_clock::now();

  // Emits one token; false when generation ends with it.
  auto emit = [&](int token) {
    result.tokens.push_back(token);
    history.push_back(token);
    const bool end = !options.ignore_eos && is_eog(token);
    if (!on_token(token)) {
      result.stop_reason = "callback";
      return false;
    }
    if (end) {
      result.stop_reason = "eos";
      return false;
    }
    return static_cast<int>(result.tokens.size()) < budget;
  };

  if (budget <= 0 || !emit(sampler.sample(logits, history))) {
    result.decode_seconds = seconds_since(t0);
    return;
  }
  for (;;) {
    // history.back() is not in the target's cache yet; it sits at position `pos`.
    const int pos = static_cast<int>(history.size()) - 1;
    const int k = std::min(length.current(), budget - static_cast<int>(result.tokens.size()) - 1);
    proposal.clear();
    if (k > 0) {
      DraftJob job{draft_seq, history, k, &draft_sampler, &proposal};
      drafter.propose(std::span<DraftJob>(&job, 1));
    }
    const int drafted = static_cast<int>(proposal.tokens.size());
    batch.clear();
    batch.add(history.back(), pos, seq, true);
    for (int i = 0; i < drafted; ++i) batch.add(proposal.tokens[static_cast<std::size_t>(i)], pos + 1 + i, seq, true);
    logits.resize(static_cast<std::size_t>(drafted + 1) * static_cast<std::size_t>(n_vocab));
    model.forward(batch, cache, pool, logits.data());
    const std::vector<int> out = verify_draft(sampler, logits, n_vocab, history, proposal, scratch);
    const int accepted = static_cast<int>(out.size()) - 1;
    // Keep the rows of the pending token and the accepted drafted tokens; drop the rejected ones.
    cache.truncate(seq, pos + 1 + accepted);
    draft.cache->truncate(draft_seq, pos + 1 + accepted);
    if (drafted > 0) {
      result.drafted += drafted;
      result.accepted += accepted;
      ++result.rounds;
      length.update(drafted, accepted);
    }
    bool more = true;
    for (int token : out)
      if (!(more = emit(token))) break;
    if (!more) break;
  }
  result.decode_seconds = seconds_since(t0);
}

}  // namespace

GenerateResult generate(LlamaModel& model, KvCache& cache, ThreadPool& pool, Sampler& sampler,
                        std::span<const int> prompt, const GenerateOptions& options,
                        const std::function<bool(int)>& is_eog, const std::function<bool(int)>& on_token,
                        const SpeculativeDraft* draft) {
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
  if (draft) {
    draft->options.validate();
    const int draft_capacity = draft->cache->total_blocks() * draft->cache->block_size();
    if (draft_capacity < capacity)
      fail("internal: the draft's cache holds {} positions, the target's {}", draft_capacity, capacity);
  }
  const int draft_seq = draft ? draft->cache->add_sequence() : -1;

  auto t0 = std::chrono::steady_clock::now();
  for (int start = 0; start < n_prompt; start += options.batch) {
    batch.clear();
    const int end = std::min(n_prompt, start + options.batch);
    for (int i = start; i < end; ++i) batch.add(prompt[static_cast<std::size_t>(i)], i, seq, i == n_prompt - 1);
    model.forward(batch, cache, pool, logits.data());
    // The draft reads the prompt too (no logits wanted), so that its first proposal starts at once.
    if (draft) {
      batch.logit_rows.clear();
      for (int& s : batch.seq_ids) s = draft_seq;
      draft->model->forward(batch, *draft->cache, pool, nullptr);
    }
  }
  result.prefill_seconds = seconds_since(t0);
  result.stop_reason = budget == capacity - n_prompt ? "context" : "length";
  if (draft) {
    decode_speculative(model, cache, seq, pool, sampler, history, budget, options, is_eog, on_token, *draft, draft_seq,
                       logits, result);
    cache.remove_sequence(seq);
    draft->cache->remove_sequence(draft_seq);
    return result;
  }

  t0 = std::chrono::steady_clock::now();
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
