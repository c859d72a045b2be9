#pragma once
// A loaded Llama-family model and its batched forward pass. One forward serves prompt
// prefill (many tokens of one or more sequences as matrix-matrix products) and decode (one
// new token per sequence): a batch is just a list of (token, position, sequence).
#include <memory>
#include <string>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/thread_pool.h"
#include "model/activation_observer.h"
#include "model/kv_cache.h"
#include "model/linear.h"
#include "model/llama_config.h"
#include "model/llama_weights.h"
#include "model/moe_ffn.h"
#include "format/tensor_source.h"
#include "model/rope.h"

namespace kiln {

struct Batch {
  std::vector<int> tokens;     // (B) token ids
  std::vector<int> positions;  // (B) position of each token in its sequence
  std::vector<int> seq_ids;    // (B) kv cache sequence of each token
  std::vector<int> logit_rows; // indices into the batch whose next-token logits are wanted
  std::vector<int> hidden_rows;  // indices into the batch whose final hidden states are wanted (embeddings)

  void add(int token, int pos, int seq, bool want_logits) {
    if (want_logits) logit_rows.push_back(static_cast<int>(tokens.size()));
    tokens.push_back(token);
    positions.push_back(pos);
    seq_ids.push_back(seq);
  }
  int size() const { return static_cast<int>(tokens.size()); }
  void clear() { tokens.clear(), positions.clear(), seq_ids.clear(), logit_rows.clear(), hidden_rows.clear(); }
};

class LlamaModel {
 public:
  static std::unique_ptr<LlamaModel> load(const std::string& path);

  const LlamaConfig& config() const { return config_; }
  const TensorSource& source() const { return *source_; }
  const LlamaWeights& weights() const { return weights_; }

  // A cache sized for `capacity_tokens` positions over all sequences, of kv_type() or of
  // `dtype` (is_kv_cache_type; a block type needs a head size that is a multiple of 32).
  KvCache make_kv_cache(int capacity_tokens) const;
  KvCache make_kv_cache(int capacity_tokens, DType dtype) const;
  // The element type of the caches that make_kv_cache(capacity) gives, f16 unless set: what
  // the workflows that make their own caches (eval's chunks) run with.
  DType kv_type() const { return kv_type_; }
  // Throws kiln::Error naming the reason when this model cannot use a cache of `dtype`.
  void check_kv_type(DType dtype) const;
  void set_kv_type(DType dtype);

  // Runs the batch through the model, appending its keys and values to the cache, and writes
  // the logits of batch.logit_rows into `logits` (logit_rows.size(), n_vocab). Positions must
  // continue each sequence's cache (the cache length is advanced here). Not re-entrant: one
  // forward at a time per model object (it reuses its scratch buffers).
  // `hidden` (hidden_rows.size(), n_embd) receives the final hidden state of batch.hidden_rows:
  // the residual stream after the output norm, the input of the output product (what llama.cpp
  // pools into embeddings); it may be nullptr when hidden_rows is empty.
  void forward(const Batch& batch, KvCache& cache, ThreadPool& pool, float* logits, float* hidden = nullptr);

  // Shows every matrix product's input to `observer` during forward() (nullptr: none). The
  // observer must outlive its use; it is not owned.
  void set_observer(ActivationObserver* observer) { observer_ = observer; }

 private:
  // The Attention of llama_blocks.h: appends the batch's keys and values (B, kv_dim) to the
  // cache, then out (B, q_dim) = causal attention of q (B, q_dim) over each row's sequence
  // (over the last n_swa positions only on a sliding-window layer: earlier ones are not read).
  void attention_paged(int layer, const Batch& batch, KvCache& cache, const float* q, const float* k, const float* v,
                       float* out, ThreadPool& pool);

  std::unique_ptr<TensorSource> source_;
  LlamaConfig config_;
  LlamaWeights weights_;
  std::unique_ptr<Rope> rope_;
  std::unique_ptr<Rope> rope_swa_;  // the windowed layers' rope when their base differs (gemma3), else null
  ActivationObserver* observer_ = nullptr;
  DType kv_type_ = DType::F16;

  // Scratch, grown to the largest batch seen. B = batch size, E = n_embd, F = n_ff.
  FloatBuffer x_;       // (B, E) residual stream
  FloatBuffer xn_;      // (B, E) normalized input of a sub-layer (rows of logit_rows for the output)
  FloatBuffer q_;       // (B, q_dim)
  FloatBuffer k_;       // (B, kv_dim)
  FloatBuffer v_;       // (B, kv_dim)
  FloatBuffer attn_;    // (B, q_dim) attention output before wo
  FloatBuffer proj_;    // (B, E) the residual stream after attention (x_mid)
  FloatBuffer gate_;    // (B, F) then silu(gate) ⊙ up
  FloatBuffer up_;      // (B, F)
  FloatBuffer rope_cs_; // (B, n_rot) cos then sin per token
  FloatBuffer rope_cs_swa_;  // (B, n_rot) the same with rope_swa_
  // Attention scores per worker, one row of `stride` (the batch's longest context rounded up to
  // 16) per query head it handles at once: (n_workers, group, stride) with an f16 or quantized
  // KV cache (group = query heads per KV head), (n_workers, stride) with an f32 one.
  FloatBuffer scores_;
  ActivationRows act_;  // converted activations for the current matmuls
  // phi3's rope with its long LongRoPE factors, used when the cache holds more than
  // rope_orig_ctx positions (rope_ then has the short ones); nullptr for other models.
  std::unique_ptr<Rope> rope_long_;
  MoeFfn moe_;          // the mixture-of-experts FFN's routing and scratch (n_expert > 0)
};

}  // namespace kiln
