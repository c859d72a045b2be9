#pragma once
// The small Llama configs the training tests build models of: grouped-query attention, whole
// heads rotated, llama's rope layout. Shared so that every test spells a config the same way and
// changes to LlamaConfig's required fields land in one place.
#include "model/llama_config.h"

namespace kiln::test {

struct TinyLlama {
  int n_vocab = 37;
  int n_embd = 32;
  int n_layer = 2;
  int n_head = 4;
  int n_head_kv = 2;
  int n_ff = 48;
  int n_ctx = 16;
  bool tied = false;
};

// head_dim = n_embd / n_head, every dimension of a head rotated.
inline LlamaConfig tiny_llama_config(const TinyLlama& t = {}) {
  LlamaConfig c;
  c.arch = "llama";
  c.n_vocab = t.n_vocab;
  c.n_embd = t.n_embd;
  c.n_layer = t.n_layer;
  c.n_head = t.n_head;
  c.n_head_kv = t.n_head_kv;
  c.head_dim = t.n_embd / t.n_head;
  c.n_rot = c.head_dim;
  c.n_ff = t.n_ff;
  c.n_ctx_train = t.n_ctx;
  c.tied_output = t.tied;
  return c;
}

}  // namespace kiln::test
