#include "eval/kl_divergence.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"
#include "eval/log_softmax.h"

namespace kiln::eval {

TokenComparison compare_token(const BaseRow& base, const BaseRow& model, int n_vocab) {
  TokenComparison t;
  double kld = 0;
  for (int v = 0; v < n_vocab; ++v) {
    const double lb = base.log_probs[v];
    kld += std::exp(lb) * (lb - static_cast<double>(model.log_probs[v]));
  }
  t.kld = kld;
  t.nll_base = -static_cast<double>(base.target_log_prob);
  t.nll_model = -static_cast<double>(model.target_log_prob);
  t.dp = std::exp(static_cast<double>(model.target_log_prob)) - std::exp(static_cast<double>(base.target_log_prob));
  t.same_top = base.argmax == model.argmax;
  return t;
}

void logits_to_rows(float* logits, int n_rows, int n_vocab, const int* targets, BaseRow* rows, ThreadPool& pool) {
  pool.parallel_for(n_rows, [&](std::int64_t r, int) {
    float* x = logits + r * n_vocab;
    BaseRow& row = rows[r];
    row.argmax = argmax(x, n_vocab);
    log_softmax(x, n_vocab, x);
    row.log_probs = x;
    row.target_log_prob = x[targets[r]];
  });
}

void KldAccumulator::add(const TokenComparison& t) {
  kld_.add(t.kld);
  same_top_.add(t.same_top ? 1.0 : 0.0);
  dp_.add(t.dp);
  dp2_.add(t.dp * t.dp);
  nll_base_.add(t.nll_base);
  nll_model_.add(t.nll_model);
  nll_diff_.add(t.nll_model - t.nll_base);
  klds_.push_back(t.kld);
  dps_.push_back(t.dp);
  nlls_base_.push_back(t.nll_base);
  nlls_model_.push_back(t.nll_model);
}

double KldAccumulator::running_ppl_model() const { return std::exp(nll_model_.mean()); }

KldResult KldAccumulator::finish() const {
  KldResult r;
  r.n_tokens = kld_.count();
  r.kld = kld_.mean_estimate();
  std::vector<double> k = klds_, d = dps_;
  std::sort(k.begin(), k.end());
  std::sort(d.begin(), d.end());
  if (!k.empty()) {
    r.kld_min = k.front(), r.kld_max = k.back();
    r.kld_median = percentile(k, 0.5), r.kld_p90 = percentile(k, 0.90);
    r.kld_p95 = percentile(k, 0.95), r.kld_p99 = percentile(k, 0.99);
    r.dp_min = d.front(), r.dp_max = d.back();
  }
  for (std::size_t i = 0; i < kDeltaPLevels.size(); ++i) r.dp_percentiles[i] = percentile(d, kDeltaPLevels[i]);
  r.same_top = same_top_.mean_estimate();
  r.dp = dp_.mean_estimate();
  // RMS = sqrt(m) with m = mean Δp²: d sqrt(m) = dm / (2 sqrt(m)).
  const Estimate ms = dp2_.mean_estimate();
  r.rms_dp.value = std::sqrt(ms.value);
  r.rms_dp.std_err = r.rms_dp.value > 0 ? ms.std_err / (2 * r.rms_dp.value) : 0;
  r.ppl_base = perplexity_estimate(nll_base_);
  r.ppl_model = perplexity_estimate(nll_model_);
  // The ratio's error comes from the per-token differences, which are strongly correlated
  // between the two models: much smaller than the two PPL errors combined.
  r.ln_ppl_ratio = nll_diff_.mean_estimate();
  r.ppl_ratio.value = std::exp(r.ln_ppl_ratio.value);
  r.ppl_ratio.std_err = r.ppl_ratio.value * r.ln_ppl_ratio.std_err;
  r.nll_correlation = correlation(nlls_base_, nlls_model_);
  return r;
}

namespace {

void check_same_vocab(int base_vocab, int model_vocab, const std::string& base, const std::string& model) {
  KILN_CHECK(base_vocab == model_vocab, "{} has a vocabulary of {} tokens but the base {} has {}: KL divergence needs the same vocabulary",
             model, model_vocab, base, base_vocab);
}

void check_finite(const TokenComparison& t, const std::string& model, int chunk, int row) {
  if (!std::isfinite(t.kld) || !std::isfinite(t.nll_base) || !std::isfinite(t.nll_model))
    fail("{}: non-finite log-probabilities at chunk {} row {} (the model's weights or activations overflow)", model,
         chunk + 1, row);
}

// Runs the comparison loop over groups of chunks; `base_rows(begin, count, targets, rows)`
// fills the base's rows of a group.
template <typename BaseRowsFn>
KldResult compare_over_chunks(LlamaModel& model, const ChunkPlan& plan, ThreadPool& pool, int n_batch,
                              BaseRowsFn&& base_rows, const ProgressFn& progress) {
  const int n_vocab = model.config().n_vocab;
  const int n_scored = plan.n_scored();
  ChunkEvaluator evaluator(model, plan, pool, n_batch);
  const int per = evaluator.chunks_per_forward();
  std::vector<int> targets(static_cast<std::size_t>(per * n_scored));
  std::vector<BaseRow> base(targets.size()), mine(targets.size());
  std::vector<TokenComparison> cmp(targets.size());
  KldAccumulator acc;
  std::int64_t evaluated = 0;
  report_start(plan, progress);
  const auto t0 = std::chrono::steady_clock::now();
  for (int begin = 0; begin < plan.n_chunks; begin += per) {
    const int count = std::min(per, plan.n_chunks - begin);
    const int rows = count * n_scored;
    for (int c = 0; c < count; ++c)
      for (int i = 0; i < n_scored; ++i) targets[static_cast<std::size_t>(c * n_scored + i)] = plan.target(begin + c, i);
    base_rows(begin, count, targets.data(), base.data());
    logits_to_rows(evaluator.evaluate(begin, count), rows, n_vocab, targets.data(), mine.data(), pool);
    pool.parallel_for(rows, [&](std::int64_t r, int) { cmp[static_cast<std::size_t>(r)] = compare_token(base[static_cast<std::size_t>(r)], mine[static_cast<std::size_t>(r)], n_vocab); });
    for (int r = 0; r < rows; ++r) {
      check_finite(cmp[static_cast<std::size_t>(r)], model.source().path(), begin + r / n_scored, r % n_scored);
      acc.add(cmp[static_cast<std::size_t>(r)]);
    }
    evaluated += static_cast<std::int64_t>(count) * plan.n_ctx;
    if (progress) {
      EvalProgress p;
      p.chunks_done = begin + count;
      p.n_chunks = plan.n_chunks;
      p.tokens_done = evaluated;
      p.tokens_total = static_cast<std::int64_t>(plan.n_chunks) * plan.n_ctx;
      p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      p.running_ppl = acc.running_ppl_model();
      progress(p);
    }
  }
  KldResult r = acc.finish();
  r.n_ctx = plan.n_ctx;
  r.n_chunks = plan.n_chunks;
  r.n_evaluated = evaluated;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace

KldResult kl_divergence(LlamaModel& base, LlamaModel& model, const ChunkPlan& plan, ThreadPool& pool, int n_batch,
                        LogitsFileWriter* save, const ProgressFn& progress) {
  check_same_vocab(base.config().n_vocab, model.config().n_vocab, base.source().path(), model.source().path());
  const int n_vocab = base.config().n_vocab;
  ChunkEvaluator base_eval(base, plan, pool, n_batch);
  // Both evaluators must take the same groups of chunks; they do, since they share the plan,
  // n_batch and vocabulary size.
  auto base_rows = [&](int begin, int count, const int* targets, BaseRow* rows) {
    const int n = count * plan.n_scored();
    logits_to_rows(base_eval.evaluate(begin, count), n, n_vocab, targets, rows, pool);
    if (save)
      for (int r = 0; r < n; ++r) save->add_row(rows[r]);
  };
  return compare_over_chunks(model, plan, pool, n_batch, base_rows, progress);
}

KldResult kl_divergence(const LogitsFile& base, LlamaModel& model, ThreadPool& pool, int n_batch,
                        const ProgressFn& progress) {
  check_same_vocab(base.n_vocab(), model.config().n_vocab, base.path(), model.source().path());
  const ChunkPlan& plan = base.plan();
  std::vector<float> scratch;
  auto base_rows = [&](int begin, int count, const int*, BaseRow* rows) {
    const int n_scored = plan.n_scored();
    scratch.resize(static_cast<std::size_t>(count) * static_cast<std::size_t>(n_scored) * static_cast<std::size_t>(base.n_vocab()));
    pool.parallel_for(count * n_scored, [&](std::int64_t r, int) {
      rows[r] = base.row(begin + static_cast<int>(r / n_scored), static_cast<int>(r % n_scored),
                         scratch.data() + r * base.n_vocab());
    });
  };
  return compare_over_chunks(model, plan, pool, n_batch, base_rows, progress);
}

PerplexityResult save_base_logits(LlamaModel& base, const ChunkPlan& plan, ThreadPool& pool, int n_batch,
                                  LogitsFileWriter& save, const ProgressFn& progress) {
  const int n_vocab = base.config().n_vocab;
  const int n_scored = plan.n_scored();
  ChunkEvaluator evaluator(base, plan, pool, n_batch);
  const int per = evaluator.chunks_per_forward();
  std::vector<int> targets(static_cast<std::size_t>(per * n_scored));
  std::vector<BaseRow> rows(targets.size());
  PerplexityResult r;
  r.n_ctx = plan.n_ctx;
  r.n_chunks = plan.n_chunks;
  r.chunks_per_forward = per;
  RunningStats nll;
  report_start(plan, progress);
  const auto t0 = std::chrono::steady_clock::now();
  for (int begin = 0; begin < plan.n_chunks; begin += per) {
    const int count = std::min(per, plan.n_chunks - begin);
    for (int c = 0; c < count; ++c)
      for (int i = 0; i < n_scored; ++i) targets[static_cast<std::size_t>(c * n_scored + i)] = plan.target(begin + c, i);
    logits_to_rows(evaluator.evaluate(begin, count), count * n_scored, n_vocab, targets.data(), rows.data(), pool);
    for (int i = 0; i < count * n_scored; ++i) {
      const BaseRow& row = rows[static_cast<std::size_t>(i)];
      if (!std::isfinite(row.target_log_prob))
        fail("{}: non-finite logits at chunk {} (the model's weights or activations overflow)", base.source().path(),
             begin + i / n_scored + 1);
      save.add_row(row);
      nll.add(-static_cast<double>(row.target_log_prob));
      if ((i + 1) % n_scored == 0) r.running_ppl.push_back(std::exp(nll.mean()));
    }
    record_chunks(r, begin + count, count, plan, t0, progress);
  }
  finish_perplexity(r, nll, t0);
  return r;
}

}  // namespace kiln::eval
