#pragma once
// How a sequence's final hidden states become one embedding, as llama.cpp does it: the pooling
// types of its `--pooling` flag and of a GGUF's `<arch>.pooling_type` (none, mean, cls, last),
// the accumulation of a sequence's rows while its prompt is computed in chunks over several
// engine steps, and the normalisations of its `--embd-normalize` flag.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kiln {

class GgufMetadata;

// llama.cpp's enum llama_pooling_type values (what `<arch>.pooling_type` stores).
enum class Pooling : int {
  None = 0,  // one vector per token
  Mean = 1,  // the average of every token's vector
  Cls = 2,   // the first token's vector (for a causal model: the BOS token's, whatever follows)
  Last = 3,  // the last token's vector (decoder embedding models: e5-mistral, gte-Qwen)
};

const char* pooling_name(Pooling p);  // "none", "mean", "cls", "last"
std::optional<Pooling> parse_pooling(std::string_view name);

// The pooling a model's metadata asks for (`<arch>.pooling_type`), or nullopt when the key is
// absent. Throws kiln::Error on a value kiln does not pool by (4, rank: rerankers' classifier head).
std::optional<Pooling> model_pooling(const GgufMetadata& metadata, const std::string& arch);

// Scales `v` in place as llama.cpp's common_embd_normalize does: -1 leaves it, 0 scales the
// largest magnitude to 32760 (int16's range), 1 to unit taxicab norm, 2 to unit Euclidean
// length (what OpenAI returns), p > 2 to unit p-norm. A zero vector stays zero.
void normalize_embedding(std::span<float> v, int norm);

// Collects one sequence's final hidden states, in any order of positions, into its embedding.
class EmbeddingPooler {
 public:
  EmbeddingPooler() = default;
  EmbeddingPooler(Pooling pooling, int n_embd, int n_tokens);

  // Whether position `pos` contributes (mean and none: every one; cls: 0; last: n_tokens - 1).
  bool wants(int pos) const;
  // Adds the hidden state (n_embd) of position `pos`; each wanted position exactly once.
  void add(int pos, const float* row);
  // Forgets what was added (the sequence is computed again after a preemption).
  void reset();
  // Once every wanted position was added: (n_embd) pooled, or (n_tokens, n_embd) with None.
  std::vector<float> result() const;

 private:
  Pooling pooling_ = Pooling::Mean;
  int n_embd_ = 0;
  int n_tokens_ = 0;
  int added_ = 0;
  std::vector<double> sum_;  // (n_embd) mean: the running sum, in double so that order does not matter
  std::vector<float> rows_;  // (n_embd) cls/last: the row; (n_tokens, n_embd) none: every row
};

}  // namespace kiln
