#include "train/parameter_table.h"

#include "core/error.h"

namespace kiln::train {

ParameterTable::ParameterTable(const LlamaConfig& c) : config_(c) {
  if (c.n_vocab <= 0 || c.n_embd <= 0 || c.n_layer <= 0 || c.n_head <= 0 || c.n_head_kv <= 0 || c.n_ff <= 0 ||
      c.head_dim <= 0)
    fail("a model to train needs positive sizes (vocabulary {}, width {}, layers {}, heads {}/{}, ffn {})", c.n_vocab,
         c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.n_ff);
  if (c.n_head % c.n_head_kv != 0) fail("{} attention heads cannot share {} key/value heads evenly", c.n_head, c.n_head_kv);
  if (c.n_rot % 2 != 0 || c.n_rot > c.head_dim) fail("rotary dimensions {} must be even and at most the head size {}", c.n_rot, c.head_dim);
  if (c.qkv_bias) fail("training models with q/k/v biases (qwen2) is not supported");
  if (c.n_expert > 0) fail("training mixtures of experts ({} experts per layer) is not supported", c.n_expert);
  const std::int64_t E = c.n_embd, F = c.n_ff, QD = c.q_dim(), KVD = c.kv_dim();
  token_embd_ = add("token_embd.weight", c.n_vocab, E, true);
  for (int l = 0; l < c.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerOffsets o{};
    o.attn_norm = add(p + "attn_norm.weight", 1, E, false);
    o.wq = add(p + "attn_q.weight", QD, E, true);
    o.wk = add(p + "attn_k.weight", KVD, E, true);
    o.wv = add(p + "attn_v.weight", KVD, E, true);
    o.wo = add(p + "attn_output.weight", E, QD, true);
    o.ffn_norm = add(p + "ffn_norm.weight", 1, E, false);
    o.w_gate = add(p + "ffn_gate.weight", F, E, true);
    o.w_up = add(p + "ffn_up.weight", F, E, true);
    o.w_down = add(p + "ffn_down.weight", E, F, true);
    layers_.push_back(o);
  }
  output_norm_ = add("output_norm.weight", 1, E, false);
  output_ = c.tied_output ? token_embd_ : add("output.weight", c.n_vocab, E, true);
}

std::int64_t ParameterTable::add(std::string name, std::int64_t rows, std::int64_t cols, bool decay) {
  ParameterInfo p;
  p.name = std::move(name);
  p.rows = rows;
  p.cols = cols;
  p.offset = total_;
  p.decay = decay;
  total_ += (p.size() + 15) / 16 * 16;
  entries_.push_back(std::move(p));
  return entries_.back().offset;
}

const ParameterInfo& ParameterTable::find(std::string_view name) const {
  for (const ParameterInfo& p : entries_)
    if (p.name == name) return p;
  fail("the model has no tensor named {}", name);
}

}  // namespace kiln::train
