#include "runtime/model_stats.h"

#include <map>

#include "model/llama_model.h"

namespace kiln {

ModelStats model_stats(const LlamaModel& model) {
  const LlamaWeights& w = model.weights();
  const LlamaConfig& c = model.config();
  ModelStats s;
  std::map<std::string, std::size_t> bytes_by_type;
  auto add_matrix = [&](const TensorView& t, bool streamed) {
    s.n_params += t.n_elements();
    s.weight_bytes += t.n_bytes();
    if (streamed) s.decode_bytes_per_token += t.n_bytes(), s.n_active_params += t.n_elements();
    bytes_by_type[std::string(dtype_name(t.dtype))] += t.n_bytes();
  };
  const auto vec = static_cast<std::int64_t>(c.n_embd);
  add_matrix(w.token_embd, false);
  s.decode_bytes_per_token += row_bytes(w.token_embd.dtype, c.n_embd);
  if (!c.tied_output) add_matrix(w.output, true);
  else s.decode_bytes_per_token += w.output.n_bytes(), s.n_active_params += w.output.n_elements();
  s.n_params += vec;
  for (const LlamaLayerWeights& l : w.layers) {
    for (const TensorView* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down})
      if (t->data != nullptr) add_matrix(*t, true);
    s.n_params += 2 * vec;
    // Mixture of experts: the router is read whole, the stacked experts only for the
    // n_expert_used of them a token is routed to (model/moe_ffn.h reads no others).
    if (c.n_expert > 0) {
      add_matrix(l.ffn_gate_inp, true);
      for (const TensorView* t : {&l.ffn_gate_exps, &l.ffn_up_exps, &l.ffn_down_exps}) {
        add_matrix(*t, false);
        s.decode_bytes_per_token += t->n_bytes() / static_cast<std::size_t>(c.n_expert) *
                                    static_cast<std::size_t>(c.n_expert_used);
        s.n_active_params += t->n_elements() / c.n_expert * c.n_expert_used;
      }
    }
  }
  std::size_t best = 0;
  for (const auto& [name, bytes] : bytes_by_type)
    if (bytes > best) best = bytes, s.main_dtype = name;
  return s;
}

}  // namespace kiln
