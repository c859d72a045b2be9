#pragma once
// Speculative decoding: a small draft model proposes the next tokens one by one, the target
// model scores all of them in one batched forward (one logit row per proposed position), and the
// standard acceptance rule (Leviathan et al. 2023, Chen et al. 2023) keeps a prefix of them, so
// that every emitted token has exactly the distribution the target alone would give it:
//
//   for each drafted token x_i, drawn from the draft's q_i:
//     accept it with probability min(1, p_i(x_i) / q_i(x_i));
//     on the first rejection emit a token drawn from normalize(max(0, p_i − q_i)) and stop;
//   when every drafted token is accepted, emit a bonus token drawn from p_{k+1}.
//
// p and q are the distributions the Sampler chain draws from (logit bias, penalties over the
// history so far, top-k, typical-p, top-p, min-p, temperature: Sampler::distribution), so the
// rule holds for every sampler setting. With temperature 0 both are one-hot: a drafted token is
// accepted exactly when it is the target's greedy pick, and the first rejection emits that pick,
// so greedy output is token for token what the target alone produces, as long as a row scored in
// a batched forward rounds as it does alone (tests/runtime/speculative_test and `kiln bench
// --draft` check the tokens; a near tie between two logits is where a difference could show).
//
// Here live the pieces `run` (runtime/generator) and the serving engine share: the options, the
// adaptive draft length, the check that a draft fits a target, the Drafter (proposals of many
// sequences, one batched draft forward per drafted position) and verify_draft (the rule).
#include <cstdint>
#include <span>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/thread_pool.h"
#include "model/kv_cache.h"
#include "model/llama_model.h"
#include "runtime/speculative_options.h"
#include "sample/sampler.h"

namespace kiln {

class Tokenizer;

// The draft length of one sequence, adapted to how well its draft is doing: a round whose
// proposals were all accepted grows it by 2, a round with a rejection shrinks it to one more than
// the tokens that were accepted (the length that would just have sufficed), within [draft_min,
// draft_max]. It starts at min(draft_max, max(draft_min, 4)).
class DraftLength {
 public:
  DraftLength() = default;
  explicit DraftLength(const SpeculativeOptions& options);
  int current() const { return current_; }
  void update(int proposed, int accepted);

 private:
  int min_ = 1, max_ = 1, current_ = 1;
};

// Throws kiln::Error, before any work starts, when a draft cannot serve a target: another
// vocabulary size, any token whose text, type or score differs, or other special tokens (BOS,
// EOS, end-of-generation). Names the first difference.
void check_draft_compatible(const LlamaModel& target, const Tokenizer& target_tokenizer, const LlamaModel& draft,
                            const Tokenizer& draft_tokenizer);

// One sequence's proposal: the drafted tokens and the draft distribution each was drawn from.
struct DraftProposal {
  std::vector<int> tokens;                 // (k) drafted ids
  std::vector<std::vector<TokenProb>> q;   // (k) the draft's distribution at each drafted position
  void clear() { tokens.clear(), q.clear(); }
};

// What the draft needs to propose for one sequence.
struct DraftJob {
  int draft_seq = -1;             // the sequence in the draft's cache (its first positions hold history's keys)
  std::span<const int> history;   // every token so far, prompt included; the last is not yet in the target's cache
  int max_tokens = 0;             // k: tokens to draft at most
  Sampler* sampler = nullptr;     // the draft's sampler: the target's parameters, a seed of its own
  DraftProposal* out = nullptr;
};

// Runs the draft model for many sequences at once: first each sequence's tokens the draft has
// not seen yet (its cache catches up with the history), then one token per sequence and step,
// each step one forward of every sequence still drafting.
class Drafter {
 public:
  Drafter(LlamaModel& draft, KvCache& cache, ThreadPool& pool, float p_min);

  void propose(std::span<DraftJob> jobs);
  LlamaModel& model() { return draft_; }
  KvCache& cache() { return cache_; }

 private:
  LlamaModel& draft_;
  KvCache& cache_;
  ThreadPool& pool_;
  float p_min_;
  Batch batch_;
  FloatBuffer logits_;  // (sequences, n_vocab)
};

// Scratch of verify_draft, reused between rounds: dense (n_vocab) rows.
struct VerifyScratch {
  std::vector<float> p, q;
  std::vector<int> history;
};

// The acceptance rule over one sequence's round. `logits` holds (k + 1, n_vocab) target rows:
// row i scores the position after history + drafted[0..i). Returns the tokens to emit, in
// order: the accepted drafted tokens, then the correction or the bonus token (1..k+1 tokens).
// `target` supplies p (with the penalties over the history grown by the accepted tokens) and the
// uniform draws.
std::vector<int> verify_draft(Sampler& target, std::span<const float> logits, int n_vocab, std::span<const int> history,
                              const DraftProposal& proposal, VerifyScratch& scratch);

// A token drawn from a distribution with a uniform u in [0, 1) (the draw Sampler::sample makes).
int draw_from(std::span<const TokenProb> dist, double u);

}  // namespace kiln
