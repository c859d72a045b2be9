#pragma once
// A hook into the forward pass for calibration: an observer set on a LlamaModel is shown the
// float input of every matrix product (before it is converted to the weight type's activation
// format), with the weight it multiplies. `kiln imatrix` collects its importance matrix this way.
// Unset (the default), the forward pass pays one pointer test per matrix product.
#include <cstdint>

#include "core/tensor.h"

namespace kiln {

class ActivationObserver {
 public:
  virtual ~ActivationObserver() = default;
  // x is (rows, W.ne[0]) floats, row-major: the activations that y = x · Wᵀ is about to use.
  // Called on the thread that runs forward(), in the order of the products.
  virtual void observe(const TensorView& W, const float* x, std::int64_t rows) = 0;
  // The same for expert `expert` of a stacked expert tensor (ne {in, out, n_expert}, mixtures of
  // experts): x (rows, in) are the inputs of the rows routed to that expert. Observers that
  // keep nothing per expert leave it as is.
  virtual void observe_expert(const TensorView& stacked, std::int64_t expert, const float* x, std::int64_t rows) {
    (void)stacked, (void)expert, (void)x, (void)rows;
  }
};

}  // namespace kiln
