#include "train/distill_loss.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/training_ops.h"

namespace kiln::train {
namespace {

void check_options(const DistillOptions& o) {
  KILN_CHECK(std::isfinite(o.alpha) && o.alpha >= 0 && o.alpha <= 1, "--alpha {} must be between 0 and 1", o.alpha);
  KILN_CHECK(std::isfinite(o.temperature) && o.temperature > 0, "--temperature {} must be positive", o.temperature);
  KILN_CHECK(o.top_k >= 0, "--top-k {} must not be negative", o.top_k);
}

}  // namespace

DistillLoss::DistillLoss(const DistillOptions& options, TeacherForward& teacher, nlohmann::json identity)
    : options_(options), teacher_(&teacher), identity_(std::move(identity)) {
  check_options(options_);
}

DistillLoss::DistillLoss(const DistillOptions& options, const TeacherCache& cache, nlohmann::json identity)
    : options_(options), cache_(&cache), identity_(std::move(identity)) {
  check_options(options_);
  KILN_CHECK(options_.temperature == cache.key().temperature,
             "the cache holds the teacher at temperature {}, not --temperature {}", cache.key().temperature,
             options_.temperature);
  options_.top_k = cache.key().k;
}

void DistillLoss::prepare(const TokenWindows& split, const std::uint64_t* windows, const TokenBatch& batch) {
  prepared_rows_ = batch.B * batch.T;
  if (teacher_ != nullptr) return teacher_->run(batch.tokens, batch.B, batch.T, options_.temperature, options_.top_k, rows_);
  const int K = cache_->key().k;
  KILN_CHECK(batch.T == cache_->key().context, "the cache holds windows of {} tokens, not {}", cache_->key().context,
             batch.T);
  rows_.k = K;
  rows_.ids.resize(static_cast<std::size_t>(prepared_rows_) * static_cast<std::size_t>(K));
  rows_.log_probs.resize(rows_.ids.size());
  for (int b = 0; b < batch.B; ++b) {
    const std::size_t at = static_cast<std::size_t>(b) * static_cast<std::size_t>(batch.T) * static_cast<std::size_t>(K);
    cache_->read_window(split.split(), windows[b], rows_.ids.data() + at, rows_.log_probs.data() + at);
  }
}

LossValue DistillLoss::apply(const TokenBatch& batch, float* z, std::int64_t V, float grad_scale, bool want_grad,
                             ThreadPool& pool) {
  const std::int64_t N = static_cast<std::int64_t>(batch.B) * batch.T;
  KILN_CHECK(N == prepared_rows_, "the distillation loss was prepared for {} rows, not {}", prepared_rows_, N);
  KILN_CHECK(rows_.full() ? rows_.k == V : rows_.k <= V, "the teacher's rows ({} values) do not fit the student's {} logits",
             rows_.k, V);
  std::int64_t counted = 0;
  for (std::int64_t i = 0; i < N; ++i) counted += batch.targets[i] >= 0;
  LossValue v;
  if (counted == 0) {
    if (want_grad) std::memset(z, 0, static_cast<std::size_t>(N * V) * sizeof(float));
    return v;
  }
  const float row_scale = grad_scale / static_cast<float>(counted);
  const std::int64_t K = rows_.k;
  std::vector<double> ce(static_cast<std::size_t>(N), 0.0), kl(ce.size(), 0.0);
  pool.parallel_for(N, [&](std::int64_t r, int) {
    const int target = batch.targets[r];
    float* row = z + r * V;
    if (target < 0) {
      if (want_grad) std::memset(row, 0, static_cast<std::size_t>(V) * sizeof(float));
      return;
    }
    thread_local std::vector<float> work;
    work.resize(static_cast<std::size_t>(K));
    const int* ids = rows_.full() ? nullptr : rows_.ids.data() + r * K;
    const auto t = kernels::distill_row(row, V, target, ids, rows_.log_probs.data() + r * K, K, options_.alpha,
                                        options_.temperature, row_scale, work.data());
    ce[static_cast<std::size_t>(r)] = t.ce, kl[static_cast<std::size_t>(r)] = t.kl;
  }, 8);
  double ce_sum = 0, kl_sum = 0;
  for (std::size_t i = 0; i < ce.size(); ++i) ce_sum += ce[i], kl_sum += kl[i];
  v.ce = ce_sum / static_cast<double>(counted);
  v.kl = kl_sum / static_cast<double>(counted);
  const double a = options_.alpha, t = options_.temperature;
  v.loss = a * v.ce + (1 - a) * t * t * v.kl;
  return v;
}

nlohmann::json DistillLoss::to_json() const {
  return {{"kind", "distill"},
          {"alpha", options_.alpha},
          {"temperature", options_.temperature},
          {"top_k", options_.top_k},
          {"teacher", identity_}};
}

}  // namespace kiln::train
