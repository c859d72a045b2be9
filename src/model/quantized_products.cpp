#include "model/quantized_products.h"

#include "core/error.h"

namespace kiln {

void QuantizedProducts::operator()(const float* x, std::int64_t rows, std::int64_t in,
                                   std::initializer_list<Product<const TensorView*>> products) {
  if (observer_ != nullptr)
    for (const auto& p : products) observer_->observe(*p.w, x, rows);
  bool converted = false;
  for (const auto& p : products) {
    if (p.w->ne[0] != in || p.w->ne[1] != p.out)
      fail("weight {} is {}x{}, the forward needs {}x{}", p.w->name, p.w->ne[1], p.w->ne[0], p.out, in);
    if (!converted || !activations_fit(*p.w, act_)) prepare_activations(*p.w, x, rows, in, act_, pool_);
    converted = true;
    linear(*p.w, act_, p.y, pool_);
  }
}

void QuantizedProducts::experts(const LlamaConfig& c, const LlamaLayerParams<const TensorView*>& w, const float* x,
                                std::int64_t rows, float* y) {
  KILN_CHECK(moe_ != nullptr, "internal: a mixture-of-experts layer without the expert FFN's scratch");
  moe_->forward(c, ExpertFfnWeights{w.ffn_gate_inp, w.ffn_gate_exps, w.ffn_up_exps, w.ffn_down_exps}, x, rows, y, act_,
                pool_, observer_);
}

LlamaLayerParams<const TensorView*> layer_params(const LlamaLayerWeights& w) {
  LlamaLayerParams<const TensorView*> p;
  p.attn_norm = w.attn_norm.data;
  p.wq = &w.wq;
  p.wk = &w.wk;
  p.wv = &w.wv;
  p.bq = w.bq.data;
  p.bk = w.bk.data;
  p.bv = w.bv.data;
  p.q_norm = w.attn_q_norm.data;
  p.k_norm = w.attn_k_norm.data;
  p.wo = &w.wo;
  p.ffn_norm = w.ffn_norm.data;
  p.w_gate = &w.w_gate;
  p.w_up = &w.w_up;
  p.w_down = &w.w_down;
  p.attn_post_norm = w.attn_post_norm.data;
  p.ffn_post_norm = w.ffn_post_norm.data;
  p.ffn_gate_inp = &w.ffn_gate_inp;
  p.ffn_gate_exps = &w.ffn_gate_exps;
  p.ffn_up_exps = &w.ffn_up_exps;
  p.ffn_down_exps = &w.ffn_down_exps;
  return p;
}

}  // namespace kiln
