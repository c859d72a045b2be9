#include "optimize/prune_importance.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "core/error.h"
#include "kernels/matmul.h"

namespace kiln::optimize {
namespace {

// "blk.12.attn_q.weight" -> 12 and "attn_q.weight"; -1 for names outside the blocks.
int block_of(const std::string& name, std::string& rest) {
  if (name.rfind("blk.", 0) != 0) return -1;
  const std::size_t dot = name.find('.', 4);
  if (dot == std::string::npos) return -1;
  int layer = 0;
  for (std::size_t i = 4; i < dot; ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    layer = layer * 10 + (name[i] - '0');
  }
  rest = name.substr(dot + 1);
  return layer;
}

}  // namespace

std::vector<double> PruneImportance::group_scores() const {
  const int G = n_head / n_head_kv;
  std::vector<double> s(static_cast<std::size_t>(n_layer) * n_head_kv, 0.0);
  for (int l = 0; l < n_layer; ++l)
    for (int h = 0; h < n_head; ++h)
      s[static_cast<std::size_t>(l * n_head_kv + h / G)] += head_norm[static_cast<std::size_t>(l * n_head + h)];
  return s;
}

PruneImportanceCollector::PruneImportanceCollector(const LlamaModel& model) : model_(model), c_(model.config()) {
  sums_.n_layer = c_.n_layer;
  sums_.n_head = c_.n_head;
  sums_.n_head_kv = c_.n_head_kv;
  sums_.n_ff = c_.n_ff;
  sums_.head_norm.assign(static_cast<std::size_t>(c_.n_layer) * c_.n_head, 0.0);
  sums_.channel_abs.assign(static_cast<std::size_t>(c_.n_layer) * c_.n_ff, 0.0);
  sums_.channel_sq.assign(static_cast<std::size_t>(c_.n_layer) * c_.n_ff, 0.0);
  bi_sum_.assign(static_cast<std::size_t>(c_.n_layer), 0.0);
  bi_count_.assign(static_cast<std::size_t>(c_.n_layer), 0);
}

void PruneImportanceCollector::set_stream(const float* x, const float* gamma, std::int64_t rows,
                                          std::vector<float>& out) const {
  const std::int64_t E = c_.n_embd;
  out.resize(static_cast<std::size_t>(rows * E));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t j = 0; j < E; ++j)
      // A zero gain hides that column of the stream; it is left out of the cosine.
      out[static_cast<std::size_t>(r * E + j)] = gamma[j] != 0.0f ? x[r * E + j] / gamma[j] : 0.0f;
}

void PruneImportanceCollector::add_influence(int layer, const std::vector<float>& next, std::int64_t rows) {
  const std::int64_t E = c_.n_embd;
  if (stream_layer_ != layer || static_cast<std::int64_t>(stream_.size()) != rows * E) return;
  for (std::int64_t r = 0; r < rows; ++r) {
    double dot = 0, a2 = 0, b2 = 0;
    for (std::int64_t j = 0; j < E; ++j) {
      const double a = stream_[static_cast<std::size_t>(r * E + j)], b = next[static_cast<std::size_t>(r * E + j)];
      dot += a * b, a2 += a * a, b2 += b * b;
    }
    const double cos = a2 > 0 && b2 > 0 ? dot / std::sqrt(a2 * b2) : 1.0;
    bi_sum_[static_cast<std::size_t>(layer)] += 1.0 - cos;
  }
  bi_count_[static_cast<std::size_t>(layer)] += rows;
}

void PruneImportanceCollector::observe(const TensorView& W, const float* x, std::int64_t rows) {
  std::string rest;
  const int l = block_of(W.name, rest);
  if (l < 0 || l >= c_.n_layer) return;
  const LlamaLayerWeights& lw = model_.weights().layers[static_cast<std::size_t>(l)];
  if (rest == "attn_q.weight") {
    // This layer's input is the previous layer's output.
    std::vector<float> next;
    set_stream(x, lw.attn_norm.data, rows, next);
    if (l > 0) add_influence(l - 1, next, rows);
    stream_ = std::move(next);
    stream_layer_ = l;
  } else if (rest == "attn_output.weight") {
    const std::int64_t D = c_.head_dim, QD = c_.q_dim();
    double* s = sums_.head_norm.data() + static_cast<std::size_t>(l) * c_.n_head;
    for (std::int64_t r = 0; r < rows; ++r)
      for (int h = 0; h < c_.n_head; ++h) {
        const float* v = x + r * QD + h * D;  // (D) head h's attention output
        double n2 = 0;
        for (std::int64_t d = 0; d < D; ++d) n2 += static_cast<double>(v[d]) * v[d];
        s[h] += std::sqrt(n2);
      }
  } else if (rest == "ffn_down.weight") {
    const std::int64_t F = c_.n_ff;
    double* a = sums_.channel_abs.data() + static_cast<std::size_t>(l) * F;
    double* q = sums_.channel_sq.data() + static_cast<std::size_t>(l) * F;
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t j = 0; j < F; ++j) {
        const double v = x[r * F + j];
        a[j] += std::fabs(v);
        q[j] += v * v;
      }
    if (l == 0) sums_.tokens += rows;
  }
}

void PruneImportanceCollector::end_forward(const float* hidden, std::int64_t rows) {
  std::vector<float> next;
  set_stream(hidden, model_.weights().output_norm.data, rows, next);
  add_influence(c_.n_layer - 1, next, rows);
  stream_.clear();
  stream_layer_ = -1;
}

PruneImportance PruneImportanceCollector::result() const {
  PruneImportance m = sums_;
  const double n = m.tokens > 0 ? static_cast<double>(m.tokens) : 1.0;
  for (double& v : m.head_norm) v /= n;
  for (double& v : m.channel_abs) v /= n;
  for (double& v : m.channel_sq) v /= n;
  m.block_influence.assign(static_cast<std::size_t>(c_.n_layer), 0.0);
  for (int l = 0; l < c_.n_layer; ++l)
    if (bi_count_[static_cast<std::size_t>(l)] > 0)
      m.block_influence[static_cast<std::size_t>(l)] =
          bi_sum_[static_cast<std::size_t>(l)] / static_cast<double>(bi_count_[static_cast<std::size_t>(l)]);
  return m;
}

void weigh_down_columns(const LlamaModel& model, PruneImportance& importance) {
  const LlamaConfig& c = model.config();
  const std::int64_t F = c.n_ff, E = c.n_embd;
  importance.down_column_abs.assign(static_cast<std::size_t>(c.n_layer) * F, 0.0);
  std::vector<float> row(static_cast<std::size_t>(F));  // (F) one row of ffn_down
  for (int l = 0; l < c.n_layer; ++l) {
    const TensorView& w = model.weights().layers[static_cast<std::size_t>(l)].w_down;  // ne {F, E}
    double* s = importance.down_column_abs.data() + static_cast<std::size_t>(l) * F;
    for (std::int64_t i = 0; i < E; ++i) {
      kernels::dequantize_row(w.dtype, w.row(i), row.data(), F);
      for (std::int64_t j = 0; j < F; ++j) s[j] += std::fabs(row[static_cast<std::size_t>(j)]);
    }
  }
}

PruneImportance collect_prune_importance(LlamaModel& model, const eval::ChunkPlan& plan, ThreadPool& pool,
                                         int n_batch,
                                         const std::function<void(const PruneCollectProgress&)>& progress) {
  const LlamaConfig& c = model.config();
  eval::check_token_range(plan.tokens, c.n_vocab, "the calibration text");
  const int per_forward = std::max(1, std::min(plan.n_chunks, n_batch / std::max(1, plan.n_ctx)));
  // Each chunk's sequence takes whole cache blocks.
  const int block = KvCacheOptions{}.block_size;
  KvCache cache = model.make_kv_cache(per_forward * ((plan.n_ctx + block - 1) / block * block));
  PruneImportanceCollector collector(model);
  // The observer is detached on every way out, so the model is left as it was given.
  struct Attach {
    LlamaModel& m;
    Attach(LlamaModel& model_, ActivationObserver* o) : m(model_) { m.set_observer(o); }
    ~Attach() { m.set_observer(nullptr); }
  } attach(model, &collector);

  Batch batch;
  std::vector<float> hidden;  // (rows, E) final hidden states of every row
  for (int begin = 0; begin < plan.n_chunks;) {
    const int count = std::min(per_forward, plan.n_chunks - begin);
    batch.clear();
    std::vector<int> seqs;
    for (int k = 0; k < count; ++k) {
      const int seq = cache.add_sequence();
      seqs.push_back(seq);
      const std::span<const int> toks = plan.chunk(begin + k);
      for (int pos = 0; pos < plan.n_ctx; ++pos) {
        batch.hidden_rows.push_back(batch.size());
        batch.add(toks[static_cast<std::size_t>(pos)], pos, seq, false);
      }
    }
    hidden.resize(static_cast<std::size_t>(batch.size()) * static_cast<std::size_t>(c.n_embd));
    model.forward(batch, cache, pool, nullptr, hidden.data());
    collector.end_forward(hidden.data(), batch.size());
    for (int seq : seqs) cache.remove_sequence(seq);
    begin += count;
    if (progress) progress({begin, plan.n_chunks, static_cast<std::int64_t>(begin) * plan.n_ctx});
  }
  PruneImportance m = collector.result();
  weigh_down_columns(model, m);
  return m;
}

}  // namespace kiln::optimize
