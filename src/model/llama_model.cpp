#include "model/llama_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "kernels/kv_quants.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "model/llama_blocks.h"
#include "model/quantized_products.h"

namespace kiln {

std::unique_ptr<LlamaModel> LlamaModel::load(const std::string& path) {
  std::unique_ptr<LlamaModel> m(new LlamaModel());
  m->source_ = TensorSource::open(path);
  m->config_ = llama_config_from_source(*m->source_);
  m->weights_ = bind_llama_weights(*m->source_, m->config_);
  m->rope_ = std::make_unique<Rope>(m->config_, m->weights_.rope_freqs ? m->weights_.rope_freqs->data : nullptr);
  // phi3's LongRoPE: the short factors, and the long ones for contexts past the original one
  // (as llama.cpp picks them by its context size; rope_freqs, when present, wins as there).
  const LlamaWeights& w = m->weights_;
  if (!w.rope_freqs && w.rope_factors_short) m->rope_ = std::make_unique<Rope>(m->config_, w.rope_factors_short->data);
  if (!w.rope_freqs && w.rope_factors_long) m->rope_long_ = std::make_unique<Rope>(m->config_, w.rope_factors_long->data);
  if (m->config_.has_swa_rope()) {
    // gemma3's local layers rotate with a base (and scaling) of their own.
    LlamaConfig local = m->config_;
    local.rope_theta = local.rope_theta_swa;
    local.rope_scale = local.rope_scale_swa;
    m->rope_swa_ = std::make_unique<Rope>(local, m->weights_.rope_freqs ? m->weights_.rope_freqs->data : nullptr);
  }
  return m;
}

KvCache LlamaModel::make_kv_cache(int capacity_tokens) const { return make_kv_cache(capacity_tokens, kv_type_); }

void LlamaModel::check_kv_type(DType dtype) const {
  if (!is_kv_cache_type(dtype)) fail("kv cache type {} is not supported (expected {})", dtype_name(dtype), kKvCacheTypeNames);
  // Attention reads one head's slice of a cached row at a time, which must be whole blocks
  // (llama.cpp refuses such a cache type for the same reason).
  if (kernels::is_kv_block_type(dtype) && config_.head_dim % kernels::kKvBlock != 0)
    fail("kv cache type {} needs a head size that is a multiple of {}; this model's is {} (use f16)",
         dtype_name(dtype), kernels::kKvBlock, config_.head_dim);
}

void LlamaModel::set_kv_type(DType dtype) {
  check_kv_type(dtype);
  kv_type_ = dtype;
}

KvCache LlamaModel::make_kv_cache(int capacity_tokens, DType dtype) const {
  check_kv_type(dtype);
  KvCacheOptions o;
  o.n_layer = config_.n_layer;
  o.kv_dim = config_.kv_dim();
  o.capacity_tokens = capacity_tokens;
  o.dtype = dtype;
  return KvCache(o);
}

void LlamaModel::forward(const Batch& batch, KvCache& cache, ThreadPool& pool, float* logits, float* hidden) {
  const LlamaConfig& c = config_;
  const int B = batch.size();
  if (B == 0) return;
  const std::int64_t E = c.n_embd, F = c.n_ff, QD = c.q_dim(), KVD = c.kv_dim();
  for (int t = 0; t < B; ++t) {
    const int tok = batch.tokens[static_cast<std::size_t>(t)];
    if (tok < 0 || tok >= c.n_vocab) fail("token id {} is out of range (vocabulary of {})", tok, c.n_vocab);
    const int pos = batch.positions[static_cast<std::size_t>(t)];
    if (pos < 0) fail("negative position {}", pos);
  }
  for (int row : batch.hidden_rows)
    if (row < 0 || row >= B) fail("hidden row {} is outside the batch of {}", row, B);
  // Reserve cache room for every sequence up to its furthest position in this batch.
  for (int t = 0; t < B; ++t) {
    const int seq = batch.seq_ids[static_cast<std::size_t>(t)];
    const int end = batch.positions[static_cast<std::size_t>(t)] + 1;
    if (end > cache.length(seq)) cache.reserve(seq, end);
  }

  float* x = x_.resize(static_cast<std::size_t>(B * E));
  float* cs = rope_cs_.resize(static_cast<std::size_t>(B * c.n_rot));
  // One set of scratch serves every layer: the residual stream is updated in place (x_out is
  // x_in), the ffn norm reuses the attention norm's buffer and SwiGLU writes over gate.
  LayerActivations a;
  a.x_in = x;
  a.xn1 = xn_.resize(static_cast<std::size_t>(B * E));
  a.q = q_.resize(static_cast<std::size_t>(B * QD));
  a.k = k_.resize(static_cast<std::size_t>(B * KVD));
  a.v = v_.resize(static_cast<std::size_t>(B * KVD));
  a.attn = attn_.resize(static_cast<std::size_t>(B * QD));
  a.x_mid = proj_.resize(static_cast<std::size_t>(B * E));
  a.xn2 = a.xn1;
  a.gate = gate_.resize(static_cast<std::size_t>(B * F));
  a.up = up_.resize(static_cast<std::size_t>(B * F));
  a.h = a.gate;
  a.x_out = x;

  // Embeddings: one row of token_embd per token, dequantized from its stored format.
  const TensorView& emb = weights_.token_embd;
  for (int t = 0; t < B; ++t)
    kernels::dequantize_row(emb.dtype, emb.row(batch.tokens[static_cast<std::size_t>(t)]), x + t * E, E);
  // The context a run was set up for is its cache's size (llama.cpp's n_ctx).
  const Rope& rope = rope_long_ && cache.total_blocks() * cache.block_size() > c.rope_orig_ctx ? *rope_long_ : *rope_;
  if (c.embd_scale) {  // gemma: embeddings times sqrt(n_embd), in f32 as llama.cpp
    const float s = std::sqrt(static_cast<float>(E));
    for (std::int64_t i = 0; i < B * E; ++i) x[i] *= s;
  }
  for (int t = 0; t < B; ++t)
    rope.angles(batch.positions[static_cast<std::size_t>(t)], cs + t * c.n_rot, cs + t * c.n_rot + c.n_rot / 2);
  const RopeAngles angles{cs, B, c.n_rot};
  RopeAngles angles_swa = angles;
  if (rope_swa_) {
    float* cs_swa = rope_cs_swa_.resize(static_cast<std::size_t>(B * c.n_rot));
    for (int t = 0; t < B; ++t)
      rope_swa_->angles(batch.positions[static_cast<std::size_t>(t)], cs_swa + t * c.n_rot,
                        cs_swa + t * c.n_rot + c.n_rot / 2);
    angles_swa = RopeAngles{cs_swa, B, c.n_rot};
  }

  QuantizedProducts products(act_, pool, observer_, &moe_);
  for (int il = 0; il < c.n_layer; ++il) {
    auto attention = [&](const float* q, const float* k, const float* v, float* out) {
      attention_paged(il, batch, cache, q, k, v, out, pool);
    };
    const bool local_rope = rope_swa_ && c.is_swa_layer(il);
    llama_layer_forward(c, local_rope ? *rope_swa_ : rope, local_rope ? angles_swa : angles,
                        layer_params(weights_.layers[static_cast<std::size_t>(il)]), a, B, products, attention, pool);
  }

  for (int t = 0; t < B; ++t) {
    const int seq = batch.seq_ids[static_cast<std::size_t>(t)];
    const int end = batch.positions[static_cast<std::size_t>(t)] + 1;
    if (end > cache.length(seq)) cache.set_length(seq, end);
  }

  // Final hidden states (after the output norm, before the output product) of the rows asked for.
  const auto H = static_cast<std::int64_t>(batch.hidden_rows.size());
  if (H > 0) {
    KILN_CHECK(hidden != nullptr, "forward: hidden rows were asked for without a buffer for them");
    for_each_row(pool, H, [&](std::int64_t i) {
      const int row = batch.hidden_rows[static_cast<std::size_t>(i)];
      kernels::rms_norm(x + row * E, weights_.output_norm.data, hidden + i * E, E, c.rms_eps);
    });
  }

  // Logits only for the rows asked for (the last prompt token, or every decode token).
  const int R = static_cast<int>(batch.logit_rows.size());
  if (R == 0) return;
  const TensorView* output = &weights_.output;
  llama_output_forward(c, weights_.output_norm.data, output, x, batch.logit_rows.data(), R, a.xn1, nullptr, logits,
                       products, pool);
}

void LlamaModel::attention_paged(int il, const Batch& batch, KvCache& cache, const float* q, const float* k,
                                 const float* v, float* out, ThreadPool& pool) {
  const LlamaConfig& c = config_;
  const int B = batch.size();
  const std::int64_t KVD = c.kv_dim();
  // Append each row's key and value to its sequence's cache first: a row attends to the rows of
  // its own sequence before it in the same batch.
  for_each_row(pool, B, [&](std::int64_t t) {
    const int seq = batch.seq_ids[static_cast<std::size_t>(t)];
    const int pos = batch.positions[static_cast<std::size_t>(t)];
    void* kdst = cache.key(il, seq, pos);
    void* vdst = cache.value(il, seq, pos);
    if (cache.dtype() == DType::F16) {
      kernels::f32_to_f16_row(k + t * KVD, static_cast<std::uint16_t*>(kdst), KVD);
      kernels::f32_to_f16_row(v + t * KVD, static_cast<std::uint16_t*>(vdst), KVD);
    } else if (kernels::is_kv_block_type(cache.dtype())) {
      kernels::kv_quantize_row(cache.dtype(), k + t * KVD, kdst, KVD);
      kernels::kv_quantize_row(cache.dtype(), v + t * KVD, vdst, KVD);
    } else {
      std::memcpy(kdst, k + t * KVD, static_cast<std::size_t>(KVD) * sizeof(float));
      std::memcpy(vdst, v + t * KVD, static_cast<std::size_t>(KVD) * sizeof(float));
    }
  });
  const int hd = c.head_dim;
  const int group = c.n_head / c.n_head_kv;  // query heads per kv head
  const float scale = c.attn_scale > 0.0f ? c.attn_scale : 1.0f / std::sqrt(static_cast<float>(hd));
  // A sliding-window layer's query at position p reads keys [first(p), p] only (llama.cpp masks
  // p - p_k >= n_swa); the rest of the cache is neither read nor scored.
  const int window = c.is_swa_layer(il) ? c.n_swa : 0;
  auto first_position = [window](int pos) { return window > 0 ? std::max(0, pos + 1 - window) : 0; };
  const float softcap = c.attn_softcap;
  int max_len = 0;
  for (int t = 0; t < B; ++t) {
    const int pos = batch.positions[static_cast<std::size_t>(t)];
    max_len = std::max(max_len, pos + 1 - first_position(pos));
  }
  const std::size_t stride = static_cast<std::size_t>((max_len + 15) / 16 * 16);
  float* scores_all = scores_.resize(stride * static_cast<std::size_t>(pool.size()));
  const DType kv_type = cache.dtype();
  const bool quantized = kernels::is_kv_block_type(kv_type);

  if (kv_type == DType::F16 || quantized) {
    // One task per (token, kv head): the `group` query heads that share a key/value head are
    // done together, so each cached row is read once for all of them, a block's rows (which
    // are contiguous) at a time. A quantized cache takes the same walk with kv_quants' kernels.
    float* scores_group = scores_.resize(stride * static_cast<std::size_t>(group) * static_cast<std::size_t>(pool.size()));
    const int bs = cache.block_size();
    const std::int64_t row_elems = c.kv_dim();
    const std::size_t row_bytes = cache.row_bytes();
    // A head's slice of a row: its byte offset and length (whole blocks when quantized).
    const std::size_t head_bytes = row_bytes / static_cast<std::size_t>(c.n_head_kv);
    pool.parallel_for(static_cast<std::int64_t>(B) * c.n_head_kv, [&](std::int64_t task, int worker) {
      const int t = static_cast<int>(task / c.n_head_kv);
      const int kvh = static_cast<int>(task % c.n_head_kv);
      const int seq = batch.seq_ids[static_cast<std::size_t>(t)];
      const int n = batch.positions[static_cast<std::size_t>(t)] + 1;
      const int first = first_position(n - 1);  // scores[i] is position first + i
      const int len = n - first;
      const float* qh = q + static_cast<std::ptrdiff_t>(t) * c.q_dim() + kvh * group * hd;  // (group, hd)
      float* scores = scores_group + stride * static_cast<std::size_t>(group) * static_cast<std::size_t>(worker);  // (group, stride)
      const auto s_stride = static_cast<std::int64_t>(stride);
      // The next block's rows of this head are prefetched while a block is worked on: a head's
      // slice is a short piece of every cached row, which the hardware prefetchers do not
      // follow, and at position 1024 the KV cache has long left the caches (the weights stream
      // through them every token). With the cache in 2 MiB pages, this took a 1078-row task's
      // scores from 80 to 33 us in a microbenchmark with the caches flushed between layers.
      const std::size_t head_offset = static_cast<std::size_t>(kvh) * head_bytes;
      auto prefetch_block = [&](const void* block) {
        const auto* b = static_cast<const std::uint8_t*>(block) + head_offset;
        for (int r = 0; r < bs; ++r)
          for (std::size_t off = 0; off < head_bytes; off += 64)
            __builtin_prefetch(b + static_cast<std::size_t>(r) * row_bytes + off, 0, 3);
      };
      // Runs of rows within one block (contiguous), from `first` (a window may start mid-block).
      for (int p0 = first; p0 < n;) {
        const int block_end = (p0 / bs + 1) * bs;
        const int rows = std::min(block_end, n) - p0;
        if (block_end < n) prefetch_block(cache.key(il, seq, block_end));
        const auto* krow = static_cast<const std::uint8_t*>(cache.key(il, seq, p0)) + head_offset;
        if (quantized)
          kernels::attn_scores_q(kv_type, krow, row_bytes, rows, qh, hd, group, hd, scale, scores + (p0 - first), s_stride);
        else
          kernels::attn_scores_f16(reinterpret_cast<const std::uint16_t*>(krow), row_elems, rows, qh, hd, group, hd,
                                   scale, scores + (p0 - first), s_stride);
        p0 += rows;
      }
      for (int g = 0; g < group; ++g) {
        if (softcap > 0.0f) kernels::softcap_inplace(scores + g * s_stride, len, softcap);
        kernels::softmax_inplace(scores + g * s_stride, len);
      }
      float* oh = out + static_cast<std::ptrdiff_t>(t) * c.q_dim() + kvh * group * hd;  // (group, hd)
      std::memset(oh, 0, static_cast<std::size_t>(group) * static_cast<std::size_t>(hd) * sizeof(float));
      prefetch_block(cache.value(il, seq, first / bs * bs));
      for (int p0 = first; p0 < n;) {
        const int block_end = (p0 / bs + 1) * bs;
        const int rows = std::min(block_end, n) - p0;
        if (block_end < n) prefetch_block(cache.value(il, seq, block_end));
        const auto* vrow = static_cast<const std::uint8_t*>(cache.value(il, seq, p0)) + head_offset;
        if (quantized)
          kernels::attn_values_q(kv_type, vrow, row_bytes, rows, scores + (p0 - first), s_stride, group, hd, oh, hd);
        else
          kernels::attn_values_f16(reinterpret_cast<const std::uint16_t*>(vrow), row_elems, rows, scores + (p0 - first),
                                   s_stride, group, hd, oh, hd);
        p0 += rows;
      }
    }, 1);
    return;
  }

  // f32 cache: one task per (token, head), causal attention over positions [first, pos].
  pool.parallel_for(static_cast<std::int64_t>(B) * c.n_head, [&](std::int64_t task, int worker) {
    const int t = static_cast<int>(task / c.n_head);
    const int h = static_cast<int>(task % c.n_head);
    const int kvh = h / group;
    const int seq = batch.seq_ids[static_cast<std::size_t>(t)];
    const int n = batch.positions[static_cast<std::size_t>(t)] + 1;
    const float* qh = q + static_cast<std::ptrdiff_t>(t) * c.q_dim() + h * hd;
    const int first = first_position(n - 1);  // scores[i] is position first + i
    float* scores = scores_all + stride * static_cast<std::size_t>(worker);
    for (int p = first; p < n; ++p)
      scores[p - first] = kernels::dot_f32(static_cast<const float*>(cache.key(il, seq, p)) + kvh * hd, qh, hd) * scale;
    if (softcap > 0.0f) kernels::softcap_inplace(scores, n - first, softcap);
    kernels::softmax_inplace(scores, n - first);
    float* oh = out + static_cast<std::ptrdiff_t>(t) * c.q_dim() + h * hd;
    std::memset(oh, 0, static_cast<std::size_t>(hd) * sizeof(float));
    for (int p = first; p < n; ++p)
      kernels::axpy_f32(scores[p - first], static_cast<const float*>(cache.value(il, seq, p)) + kvh * hd, oh, hd);
  }, 4);
}

}  // namespace kiln
