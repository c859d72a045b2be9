#pragma once
// How far a model's next-token distributions are from a base model's on the same chunks, with
// the statistics llama-perplexity --kl-divergence reports: mean KL(base || model) ± standard
// error and its percentiles, how often both pick the same top token, the change Δp of the
// probability given to the token that actually follows (percentiles and RMS), and the
// perplexity of both with their ratio. The base runs on the fly (both models loaded) or comes
// from a saved logits file (eval/logits_file.h).
#include <array>
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "eval/chunks.h"
#include "eval/eval_stats.h"
#include "eval/logits_file.h"
#include "eval/perplexity.h"
#include "model/llama_model.h"

namespace kiln::eval {

// What one scored position contributes.
struct TokenComparison {
  double kld = 0;       // sum_v p_base(v) (log p_base(v) - log p_model(v)), nats
  double nll_base = 0;  // -log p_base(target)
  double nll_model = 0; // -log p_model(target)
  double dp = 0;        // p_model(target) - p_base(target)
  bool same_top = false;
};

// Compares one position of the base and the model, both given as rows of log-probabilities
// (for the model too: its row is made from its logits exactly as an on-the-fly base row is, so
// a model compared with itself gives exactly kld = 0 and Δp = 0). Double accumulation.
TokenComparison compare_token(const BaseRow& base, const BaseRow& model, int n_vocab);

// Turns rows of logits (n_rows, n_vocab) in place into rows of log-probabilities and fills
// rows[r] (argmax taken on the logits, target log-probability from the row). Spread over the pool.
void logits_to_rows(float* logits, int n_rows, int n_vocab, const int* targets, BaseRow* rows, ThreadPool& pool);

inline constexpr std::array<double, 9> kDeltaPLevels = {0.01, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.99};

struct KldResult {
  int n_ctx = 0;
  int n_chunks = 0;
  std::int64_t n_tokens = 0;  // scored positions compared
  Estimate kld;               // mean KL divergence (nats) ± standard error
  double kld_min = 0, kld_median = 0, kld_p90 = 0, kld_p95 = 0, kld_p99 = 0, kld_max = 0;
  Estimate same_top;          // fraction of positions where both top tokens agree
  Estimate dp;                // mean Δp ± standard error
  std::array<double, 9> dp_percentiles{};  // at kDeltaPLevels
  double dp_min = 0, dp_max = 0;
  Estimate rms_dp;            // sqrt(mean Δp²) ± standard error
  Estimate ppl_base, ppl_model;
  Estimate ln_ppl_ratio;      // mean ln(PPL(model) / PPL(base)) = mean(nll_model - nll_base)
  Estimate ppl_ratio;         // exp(ln_ppl_ratio)
  double nll_correlation = 0; // Pearson correlation of the per-token NLL of both
  double seconds = 0;
  std::int64_t n_evaluated = 0;  // tokens run through the model (not counting the base)
};

// Collects TokenComparisons in order and turns them into a KldResult.
class KldAccumulator {
 public:
  void add(const TokenComparison& t);
  std::int64_t count() const { return kld_.count(); }
  double running_ppl_model() const;
  KldResult finish() const;

 private:
  RunningStats kld_, same_top_, dp_, dp2_, nll_base_, nll_model_, nll_diff_;
  std::vector<double> klds_, dps_, nlls_base_, nlls_model_;
};

// Both models on the fly over `plan`. When `save` is given, the base's rows are also written
// to it (the caller calls save->finish()). The two must share the vocabulary size.
KldResult kl_divergence(LlamaModel& base, LlamaModel& model, const ChunkPlan& plan, ThreadPool& pool, int n_batch,
                        LogitsFileWriter* save, const ProgressFn& progress = nullptr);

// The model against a saved base, over the file's own chunks (plan()).
KldResult kl_divergence(const LogitsFile& base, LlamaModel& model, ThreadPool& pool, int n_batch,
                        const ProgressFn& progress = nullptr);

// Only the base: runs it over `plan`, writes its rows to `save` (the caller finishes it) and
// returns its perplexity.
PerplexityResult save_base_logits(LlamaModel& base, const ChunkPlan& plan, ThreadPool& pool, int n_batch,
                                  LogitsFileWriter& save, const ProgressFn& progress = nullptr);

}  // namespace kiln::eval
