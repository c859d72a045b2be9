#include "convert/llama_onnx_weights.h"

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "kernels/matmul.h"

namespace kiln::convert {

std::int64_t llama_onnx_weight_count(const LlamaConfig& c) {
  const std::int64_t E = c.n_embd, V = c.n_vocab, F = c.n_ff, QD = c.q_dim(), KVD = c.kv_dim();
  const std::int64_t per_layer = 2 * E + E * QD + 2 * E * KVD + QD * E + 3 * E * F + (c.qkv_bias ? QD + 2 * KVD : 0);
  return V * E + E + (c.tied_output ? 0 : V * E) + c.n_layer * per_layer;
}

LlamaOnnxWeights::LlamaOnnxWeights(const TensorSource& source, const LlamaConfig& config, OnnxGraphBuilder& graph, OnnxInitializers& inits,
                                   WeightStorage storage, WeightProgressFn progress)
    : source_(source), config_(config), graph_(graph), inits_(inits), storage_(storage), progress_(std::move(progress)) {}

TensorView LlamaOnnxWeights::require(const std::string& name) const {
  std::optional<TensorView> t = source_.tensor(name);
  if (!t) fail("{}: missing tensor {}", source_.path(), name);
  return *t;
}

// (n_out, n_in) floats from a stored matrix of any type kiln reads.
std::vector<float> LlamaOnnxWeights::rows_f32(const TensorView& t, std::int64_t n_in, std::int64_t n_out) const {
  if (t.ne[0] != n_in || t.n_rows() != n_out)
    fail("{}: tensor {} has shape [{}, {}], expected [{}, {}]", source_.path(), t.name, t.ne[0], t.n_rows(), n_in, n_out);
  std::vector<float> w(static_cast<std::size_t>(n_in * n_out));
  for (std::int64_t r = 0; r < n_out; ++r) kernels::dequantize_row(t.dtype, t.row(r), w.data() + r * n_in, n_in);
  return w;
}

// Within each head, rotated row j takes row 2j (j < n_rot/2) or row 2(j - n_rot/2) + 1: the
// interleaved pair (2i, 2i+1) becomes the halves pair (i, i + n_rot/2). Rows past n_rot stay.
void LlamaOnnxWeights::reorder_rope_rows(std::vector<float>& w, std::int64_t row_len, int n_heads) const {
  const LlamaConfig& c = config_;
  if (c.rope_layout != RopeLayout::Interleaved) return;
  const int half = c.n_rot / 2;
  std::vector<float> head(static_cast<std::size_t>(c.n_rot * row_len));
  for (int h = 0; h < n_heads; ++h) {
    float* base = w.data() + static_cast<std::int64_t>(h) * c.head_dim * row_len;
    for (int j = 0; j < c.n_rot; ++j) {
      const int from = j < half ? 2 * j : 2 * (j - half) + 1;
      std::copy_n(base + from * row_len, row_len, head.data() + j * row_len);
    }
    std::copy(head.begin(), head.end(), base);
  }
}

void LlamaOnnxWeights::done(const std::string& name, std::int64_t elements) {
  elements_done_ += elements;
  if (progress_) progress_(name, elements_done_);
}

std::string LlamaOnnxWeights::as_float(const std::string& stored, WeightStorage storage) {
  if (storage == WeightStorage::f32) return stored;
  return graph_.node("Cast", {stored}, stored + "/float", {{"to", std::int64_t{onnx::TensorProto::FLOAT}}});
}

std::string LlamaOnnxWeights::matrix(const std::string& name, std::int64_t n_in, std::int64_t n_out, int rope_heads) {
  std::vector<float> w = rows_f32(require(name), n_in, n_out);  // (n_out, n_in)
  if (rope_heads > 0) reorder_rope_rows(w, n_in, rope_heads);
  std::vector<float> wt(w.size());  // (n_in, n_out), transposed in tiles that stay in cache
  constexpr std::int64_t kTile = 64;
  for (std::int64_t r0 = 0; r0 < n_out; r0 += kTile)
    for (std::int64_t i0 = 0; i0 < n_in; i0 += kTile)
      for (std::int64_t r = r0; r < std::min(r0 + kTile, n_out); ++r)
        for (std::int64_t i = i0; i < std::min(i0 + kTile, n_in); ++i)
          wt[static_cast<std::size_t>(i * n_out + r)] = w[static_cast<std::size_t>(r * n_in + i)];
  inits_.add(name, {n_in, n_out}, wt.data(), storage_);
  done(name, n_in * n_out);
  return as_float(name, storage_);
}

std::string LlamaOnnxWeights::vector(const std::string& name, std::int64_t n, int rope_heads) {
  const TensorView t = require(name);
  if (t.n_elements() != n || t.ne[0] != n)
    fail("{}: tensor {} has {} elements, expected {}", source_.path(), name, t.n_elements(), n);
  std::vector<float> v(static_cast<std::size_t>(n));
  kernels::dequantize_row(t.dtype, t.data, v.data(), n);
  if (rope_heads > 0) reorder_rope_rows(v, 1, rope_heads);
  inits_.add(name, {n}, v.data(), WeightStorage::f32);
  done(name, n);
  return name;
}

std::string LlamaOnnxWeights::embedding() {
  if (!embedding_.empty()) return embedding_;
  const LlamaConfig& c = config_;
  const std::string name = "token_embd.weight";
  const std::vector<float> w = rows_f32(require(name), c.n_embd, c.n_vocab);  // (V, E)
  inits_.add(name, {c.n_vocab, c.n_embd}, w.data(), storage_);
  done(name, static_cast<std::int64_t>(w.size()));
  embedding_ = as_float(name, storage_);
  return embedding_;
}

std::string LlamaOnnxWeights::output() {
  const LlamaConfig& c = config_;
  if (!c.tied_output) return matrix("output.weight", c.n_embd, c.n_vocab);
  // Tied: one table serves both; runtimes fold the transpose of a constant once, at load.
  return graph_.node("Transpose", {embedding()}, "output.weight", {{"perm", std::vector<std::int64_t>{1, 0}}});
}

}  // namespace kiln::convert
