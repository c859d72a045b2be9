#include "train/teacher_forward.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace kiln::train {
namespace {

std::size_t sz(std::int64_t n) { return static_cast<std::size_t>(n); }

// Sequences per forward: whole windows, up to about 2048 tokens (the batch's matrix products
// are then large enough to run at the kernels' speed, and the logits stay small).
int sequences_per_forward(int T) { return std::max(1, 2048 / T); }

}  // namespace

void log_softmax_at(const float* logits, std::int64_t n, float tau, float* out) {
  const double inv = 1.0 / static_cast<double>(tau);
  float m = logits[0];
  for (std::int64_t j = 1; j < n; ++j) m = std::max(m, logits[j]);
  double sum = 0;
  for (std::int64_t j = 0; j < n; ++j) sum += std::exp((static_cast<double>(logits[j]) - m) * inv);
  const double lse = std::log(sum);
  for (std::int64_t j = 0; j < n; ++j) out[j] = static_cast<float>((static_cast<double>(logits[j]) - m) * inv - lse);
}

void top_k_of_row(const float* log_probs, std::int64_t n, int k, int* ids, float* values) {
  thread_local std::vector<int> order;
  order.resize(sz(n));
  std::iota(order.begin(), order.end(), 0);
  auto larger = [&](int a, int b) { return log_probs[a] > log_probs[b] || (log_probs[a] == log_probs[b] && a < b); };
  std::partial_sort(order.begin(), order.begin() + k, order.end(), larger);
  for (int i = 0; i < k; ++i) {
    ids[i] = order[sz(i)];
    values[i] = log_probs[order[sz(i)]];
  }
}

TeacherForward::TeacherForward(LlamaModel& model, ThreadPool& pool) : model_(model), pool_(pool) {}

void TeacherForward::run(const int* tokens, int B, int T, float tau, int top_k, TeacherRows& out) {
  const LlamaConfig& c = model_.config();
  const std::int64_t V = c.n_vocab, N = static_cast<std::int64_t>(B) * T;
  KILN_CHECK(T <= c.n_ctx_train, "the teacher's context is {} tokens, shorter than the windows' {}", c.n_ctx_train, T);
  KILN_CHECK(top_k >= 0 && top_k <= V, "top-k {} is not between 0 and the vocabulary's {}", top_k, V);
  for (std::int64_t i = 0; i < N; ++i)
    KILN_CHECK(tokens[i] >= 0 && tokens[i] < V, "token {} is outside the teacher's vocabulary of {}", tokens[i], V);
  out.k = top_k > 0 ? top_k : V;
  out.log_probs.resize(sz(N * out.k));
  if (top_k > 0) out.ids.resize(sz(N * out.k));
  else out.ids.clear();

  const int per = std::min(B, sequences_per_forward(T));
  logits_.resize(sz(static_cast<std::int64_t>(per) * T * V));
  KvCache cache = model_.make_kv_cache(per * T);
  Batch batch;
  for (int b0 = 0; b0 < B; b0 += per) {
    const int count = std::min(per, B - b0);
    batch.clear();
    std::vector<int> seqs;
    for (int s = 0; s < count; ++s) {
      const int seq = cache.add_sequence();
      seqs.push_back(seq);
      for (int t = 0; t < T; ++t) batch.add(tokens[static_cast<std::int64_t>(b0 + s) * T + t], t, seq, true);
    }
    model_.forward(batch, cache, pool_, logits_.data());
    for (int seq : seqs) cache.remove_sequence(seq);
    const std::int64_t row0 = static_cast<std::int64_t>(b0) * T;
    pool_.parallel_for(static_cast<std::int64_t>(count) * T, [&](std::int64_t r, int) {
      const float* z = logits_.data() + r * V;
      float* lp = out.log_probs.data() + (row0 + r) * out.k;
      if (top_k == 0) return log_softmax_at(z, V, tau, lp);
      thread_local std::vector<float> row;
      row.resize(sz(V));
      log_softmax_at(z, V, tau, row.data());
      top_k_of_row(row.data(), V, top_k, out.ids.data() + (row0 + r) * out.k, lp);
    }, 4);
  }
}

}  // namespace kiln::train
