#include "runtime/embedding_pooling.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "format/gguf_metadata.h"

namespace kiln {

const char* pooling_name(Pooling p) {
  switch (p) {
    case Pooling::None:
      return "none";
    case Pooling::Mean:
      return "mean";
    case Pooling::Cls:
      return "cls";
    case Pooling::Last:
      return "last";
  }
  return "mean";
}

std::optional<Pooling> parse_pooling(std::string_view name) {
  for (Pooling p : {Pooling::None, Pooling::Mean, Pooling::Cls, Pooling::Last})
    if (name == pooling_name(p)) return p;
  return std::nullopt;
}

std::optional<Pooling> model_pooling(const GgufMetadata& metadata, const std::string& arch) {
  const std::string key = arch + ".pooling_type";
  const std::optional<std::int64_t> v = metadata.get_int(key);
  if (!v) return std::nullopt;
  // -1 is llama.cpp's "unspecified": the same as an absent key.
  if (*v == -1) return std::nullopt;
  if (*v < 0 || *v > 3)
    fail("{}: {} is {}; kiln pools by 0 (none), 1 (mean), 2 (cls) or 3 (last)", metadata.path(), key, *v);
  return static_cast<Pooling>(*v);
}

void normalize_embedding(std::span<float> v, int norm) {
  double scale = 1.0;
  switch (norm) {
    case -1:
      return;
    case 0: {
      double max_abs = 0;
      for (float x : v) max_abs = std::max(max_abs, std::fabs(static_cast<double>(x)));
      scale = max_abs / 32760.0;
      break;
    }
    case 2: {
      double sum = 0;
      for (float x : v) sum += static_cast<double>(x) * x;
      scale = std::sqrt(sum);
      break;
    }
    default: {
      KILN_CHECK(norm >= 1, "embedding normalisation {} is not -1, 0, 1, 2 or a p-norm above 2", norm);
      double sum = 0;
      for (float x : v) sum += std::pow(std::fabs(static_cast<double>(x)), norm);
      scale = std::pow(sum, 1.0 / norm);
      break;
    }
  }
  const double inv = scale > 0 ? 1.0 / scale : 0.0;
  for (float& x : v) x = static_cast<float>(x * inv);
}

EmbeddingPooler::EmbeddingPooler(Pooling pooling, int n_embd, int n_tokens)
    : pooling_(pooling), n_embd_(n_embd), n_tokens_(n_tokens) {
  KILN_CHECK(n_embd > 0 && n_tokens > 0, "embedding: {} tokens of width {}", n_tokens, n_embd);
  reset();
}

bool EmbeddingPooler::wants(int pos) const {
  switch (pooling_) {
    case Pooling::Cls:
      return pos == 0;
    case Pooling::Last:
      return pos == n_tokens_ - 1;
    case Pooling::None:
    case Pooling::Mean:
      return pos >= 0 && pos < n_tokens_;
  }
  return false;
}

void EmbeddingPooler::add(int pos, const float* row) {
  KILN_CHECK(wants(pos), "embedding: position {} does not contribute to {} pooling of {} tokens", pos,
             pooling_name(pooling_), n_tokens_);
  const auto E = static_cast<std::size_t>(n_embd_);
  switch (pooling_) {
    case Pooling::Mean:
      for (std::size_t i = 0; i < E; ++i) sum_[i] += row[i];
      break;
    case Pooling::None:
      std::memcpy(rows_.data() + static_cast<std::size_t>(pos) * E, row, E * sizeof(float));
      break;
    case Pooling::Cls:
    case Pooling::Last:
      std::memcpy(rows_.data(), row, E * sizeof(float));
      break;
  }
  ++added_;
}

void EmbeddingPooler::reset() {
  const auto E = static_cast<std::size_t>(n_embd_);
  added_ = 0;
  sum_.assign(pooling_ == Pooling::Mean ? E : 0, 0.0);
  rows_.assign(pooling_ == Pooling::None   ? E * static_cast<std::size_t>(n_tokens_)
               : pooling_ == Pooling::Mean ? 0
                                           : E,
               0.0f);
}

std::vector<float> EmbeddingPooler::result() const {
  const int expected = pooling_ == Pooling::Mean || pooling_ == Pooling::None ? n_tokens_ : 1;
  KILN_CHECK(added_ == expected, "embedding: {} of {} positions were computed", added_, expected);
  if (pooling_ != Pooling::Mean) return rows_;
  std::vector<float> mean(sum_.size());
  for (std::size_t i = 0; i < sum_.size(); ++i) mean[i] = static_cast<float>(sum_[i] / n_tokens_);
  return mean;
}

}  // namespace kiln
