#pragma once
// The Products of llama_blocks.h for a model whose weights stay in their stored formats: the
// input is converted once to the weights' activation format and reused by every weight of the
// call that takes the same format (Q, K and V; gate and up), then each product runs through
// `linear` (model/linear.h). An ActivationObserver, when set, sees every product's float input.
#include <cstdint>
#include <initializer_list>

#include "core/tensor.h"
#include "core/thread_pool.h"
#include "model/activation_observer.h"
#include "model/linear.h"
#include "model/llama_blocks.h"
#include "model/llama_weights.h"
#include "model/moe_ffn.h"

namespace kiln {

class QuantizedProducts {
 public:
  QuantizedProducts(ActivationRows& act, ThreadPool& pool, ActivationObserver* observer, MoeFfn* moe = nullptr)
      : act_(act), pool_(pool), observer_(observer), moe_(moe) {}

  // y = x (rows, in) · Wᵀ for each product; W's ne[1] is the product's `out`.
  void operator()(const float* x, std::int64_t rows, std::int64_t in,
                  std::initializer_list<Product<const TensorView*>> products);

  // y (rows, E) = the mixture-of-experts FFN of each row of x (rows, E) (model/moe_ffn.h), with
  // the MoeFfn given at construction.
  void experts(const LlamaConfig& c, const LlamaLayerParams<const TensorView*>& w, const float* x, std::int64_t rows,
               float* y);

 private:
  ActivationRows& act_;  // the converted input, reused between products
  ThreadPool& pool_;
  ActivationObserver* observer_;
  MoeFfn* moe_;  // the expert FFN's scratch, or nullptr for dense models
};

// A layer's weights as the blocks take them (views into the stored tensors).
LlamaLayerParams<const TensorView*> layer_params(const LlamaLayerWeights& w);

}  // namespace kiln
