#include "runtime/speculative.h"

#include <algorithm>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace kiln {

void SpeculativeOptions::validate() const {
  KILN_CHECK(draft_max >= 1 && draft_max <= 256, "draft-max = {} is outside its allowed range [1, 256]", draft_max);
  KILN_CHECK(draft_min >= 1 && draft_min <= draft_max, "draft-min = {} is outside its allowed range [1, draft-max = {}]",
             draft_min, draft_max);
  KILN_CHECK(p_min >= 0.0f && p_min <= 1.0f, "draft-p-min = {} is outside its allowed range [0, 1]", p_min);
  KILN_CHECK(max_sequences >= 0, "draft-max-sequences = {} must not be negative", max_sequences);
}

DraftLength::DraftLength(const SpeculativeOptions& o)
    : min_(o.draft_min), max_(o.draft_max), current_(std::min(o.draft_max, std::max(o.draft_min, 4))) {}

void DraftLength::update(int proposed, int accepted) {
  if (proposed <= 0) return;
  const int next = accepted >= proposed ? current_ + 2 : accepted + 1;
  current_ = std::clamp(next, min_, max_);
}

void check_draft_compatible(const LlamaModel& target, const Tokenizer& target_tokenizer, const LlamaModel& draft,
                            const Tokenizer& draft_tokenizer) {
  const Vocab& a = target_tokenizer.vocab();
  const Vocab& b = draft_tokenizer.vocab();
  const auto fail_because = [](const std::string& why) {
    fail("the draft model cannot draft for this target: {} (a draft must share the target's tokenizer)", why);
  };
  if (target.config().n_vocab != draft.config().n_vocab)
    fail_because(fmt::format("its vocabulary has {} tokens, the target's {}", draft.config().n_vocab,
                             target.config().n_vocab));
  if (a.size() != b.size())
    fail_because(fmt::format("its tokenizer has {} tokens, the target's {}", b.size(), a.size()));
  if (a.model != b.model) fail_because(fmt::format("its tokenizer is \"{}\", the target's \"{}\"", b.model, a.model));
  for (std::int32_t id = 0; id < a.size(); ++id) {
    const std::size_t i = static_cast<std::size_t>(id);
    if (a.tokens[i] != b.tokens[i])
      fail_because(fmt::format("token {} is \"{}\" in the draft and \"{}\" in the target", id, b.tokens[i], a.tokens[i]));
    if (a.types[i] != b.types[i]) fail_because(fmt::format("token {} has another type in the draft", id));
  }
  if (a.merges != b.merges) fail_because("its BPE merges differ");
  const std::pair<const char*, std::pair<std::int32_t, std::int32_t>> specials[] = {
      {"BOS", {a.bos_id, b.bos_id}}, {"EOS", {a.eos_id, b.eos_id}},
      {"end-of-turn", {a.eot_id, b.eot_id}}, {"end-of-message", {a.eom_id, b.eom_id}}};
  for (const auto& [name, ids] : specials)
    if (ids.first != ids.second)
      fail_because(fmt::format("its {} token is {}, the target's {}", name, ids.second, ids.first));
}

Drafter::Drafter(LlamaModel& draft, KvCache& cache, ThreadPool& pool, float p_min)
    : draft_(draft), cache_(cache), pool_(pool), p_min_(p_min) {}

void Drafter::propose(std::span<DraftJob> jobs) {
  const std::size_t n_vocab = static_cast<std::size_t>(draft_.config().n_vocab);
  logits_.resize(jobs.size() * n_vocab);
  std::vector<DraftJob*> active;  // (rows of the current forward) the job each logit row drafts for
  std::vector<std::vector<int>> histories(jobs.size());
  // First forward: whatever of each history the draft's cache lacks (the last target token at
  // least; a whole prompt when the sequence is new to the draft).
  batch_.clear();
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    DraftJob& job = jobs[j];
    job.out->clear();
    if (job.max_tokens <= 0) continue;
    const int n = static_cast<int>(job.history.size());
    const int have = std::min(cache_.length(job.draft_seq), n - 1);
    if (cache_.length(job.draft_seq) > have) cache_.truncate(job.draft_seq, have);
    for (int pos = have; pos < n; ++pos) batch_.add(job.history[static_cast<std::size_t>(pos)], pos, job.draft_seq, pos == n - 1);
    histories[j].assign(job.history.begin(), job.history.end());
    active.push_back(&job);
  }
  std::vector<std::size_t> index_of(active.size());
  for (std::size_t r = 0; r < active.size(); ++r) index_of[r] = static_cast<std::size_t>(active[r] - jobs.data());
  while (!active.empty()) {
    draft_.forward(batch_, cache_, pool_, logits_.data());
    batch_.clear();
    std::vector<DraftJob*> next;
    std::vector<std::size_t> next_index;
    for (std::size_t r = 0; r < active.size(); ++r) {
      DraftJob& job = *active[r];
      std::vector<int>& history = histories[index_of[r]];
      const std::span<const float> row(logits_.data() + r * n_vocab, n_vocab);
      const std::span<const TokenProb> q = job.sampler->distribution(row, history);
      const int token = draw_from(q, q.size() == 1 ? 0.0 : job.sampler->uniform());
      float q_token = 0.0f;
      for (const TokenProb& t : q)
        if (t.id == token) q_token = t.prob;
      // A draft unsure of its own token is likely to be rejected: end the round (never its first token).
      if (!job.out->tokens.empty() && q_token < p_min_) continue;
      job.out->tokens.push_back(token);
      job.out->q.emplace_back(q.begin(), q.end());
      history.push_back(token);
      if (static_cast<int>(job.out->tokens.size()) >= job.max_tokens) continue;
      batch_.add(token, static_cast<int>(history.size()) - 1, job.draft_seq, true);
      next.push_back(&job);
      next_index.push_back(index_of[r]);
    }
    active.swap(next);
    index_of.swap(next_index);
  }
}

int draw_from(std::span<const TokenProb> dist, double u) {
  KILN_CHECK(!dist.empty(), "internal: drawing from an empty distribution");
  double total = 0.0;
  for (const TokenProb& t : dist) total += t.prob;
  const double target = u * total;
  double cumulative = 0.0;
  for (const TokenProb& t : dist) {
    cumulative += t.prob;
    if (target < cumulative) return t.id;
  }
  // Rounding left u past the last partial sum: the last token with weight.
  for (std::size_t i = dist.size(); i-- > 0;)
    if (dist[i].prob > 0.0f) return dist[i].id;
  return dist.back().id;
}

std::vector<int> verify_draft(Sampler& target, std::span<const float> logits, int n_vocab, std::span<const int> history,
                              const DraftProposal& proposal, VerifyScratch& scratch) {
  const std::size_t v = static_cast<std::size_t>(n_vocab);
  const std::size_t k = proposal.tokens.size();
  KILN_CHECK(logits.size() >= (k + 1) * v, "internal: verify_draft needs {} logit rows", k + 1);
  scratch.history.assign(history.begin(), history.end());
  scratch.p.assign(v, 0.0f);
  scratch.q.assign(v, 0.0f);
  std::vector<int> out;
  for (std::size_t i = 0; i <= k; ++i) {
    const std::span<const float> row = logits.subspan(i * v, v);
    const std::span<const TokenProb> p = target.distribution(row, scratch.history);
    if (i == k) {  // every drafted token accepted: the bonus token, from p
      out.push_back(draw_from(p, p.size() == 1 ? 0.0 : target.uniform()));
      return out;
    }
    const int x = proposal.tokens[i];
    const std::vector<TokenProb>& q = proposal.q[i];
    for (const TokenProb& t : p) scratch.p[static_cast<std::size_t>(t.id)] = t.prob;
    for (const TokenProb& t : q) scratch.q[static_cast<std::size_t>(t.id)] = t.prob;
    const float px = scratch.p[static_cast<std::size_t>(x)], qx = scratch.q[static_cast<std::size_t>(x)];
    // Accept with probability min(1, p(x) / q(x)); p(x) >= q(x) needs no draw (greedy stays
    // deterministic: p and q one-hot, accepted exactly when they agree).
    const bool accept = qx > 0.0f && (px >= qx || target.uniform() * static_cast<double>(qx) < static_cast<double>(px));
    if (accept) {
      out.push_back(x);
      scratch.history.push_back(x);
      for (const TokenProb& t : p) scratch.p[static_cast<std::size_t>(t.id)] = 0.0f;
      for (const TokenProb& t : q) scratch.q[static_cast<std::size_t>(t.id)] = 0.0f;
      continue;
    }
    // Rejected: a token from the residual normalize(max(0, p − q)). Only tokens of p can have
    // mass there. When rounding leaves it empty (p equal to q), p itself is the residual's limit.
    std::vector<TokenProb> residual;
    residual.reserve(p.size());
    for (const TokenProb& t : p) {
      const float r = t.prob - scratch.q[static_cast<std::size_t>(t.id)];
      if (r > 0.0f) residual.push_back({t.id, r});
    }
    if (residual.empty()) residual.assign(p.begin(), p.end());
    out.push_back(draw_from(residual, residual.size() == 1 ? 0.0 : target.uniform()));
    return out;
  }
  return out;
}

}  // namespace kiln
