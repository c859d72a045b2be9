#include "model/llama_weights.h"

#include <cmath>
#include <string>

#include "core/error.h"
#include "kernels/matmul.h"
#include "format/tensor_source.h"
#include "model/architecture.h"

namespace kiln {
namespace {

std::string shape_str(const TensorView& t) {
  std::string s = "[";
  for (int i = 0; i < t.n_dims; ++i) s += (i ? ", " : "") + std::to_string(t.ne[i]);
  return s + "]";
}

TensorView require(const TensorSource& src, const std::string& name) {
  std::optional<TensorView> t = src.tensor(name);
  if (!t) fail("{}: missing tensor {}", src.path(), name);
  return *t;
}

TensorView matrix(const TensorSource& src, const std::string& name, std::int64_t n_in, std::int64_t n_out) {
  TensorView t = require(src, name);
  if (t.ne[0] != n_in || t.ne[1] != n_out || t.ne[2] != 1 || t.ne[3] != 1)
    fail("{}: tensor {} has shape {}, expected [{}, {}]", src.path(), name, shape_str(t), n_in, n_out);
  if (!kernels::is_supported_weight_type(t.dtype))
    fail("{}: tensor {} has type {}, which kiln cannot compute with yet", src.path(), name, dtype_name(t.dtype));
  return t;
}

// A matrix (or a stack of them, n_dims 3) of exactly the shape `ne`, in a type kiln computes with.
TensorView tensor_of_shape(const TensorSource& src, const std::string& name, int n_dims, const std::array<std::int64_t, 4>& ne) {
  TensorView t = require(src, name);
  if (t.ne != ne) {
    std::string want = "[";
    for (int i = 0; i < n_dims; ++i) want += (i ? ", " : "") + std::to_string(ne[static_cast<std::size_t>(i)]);
    fail("{}: tensor {} has shape {}, expected {}]", src.path(), name, shape_str(t), want);
  }
  if (!kernels::is_supported_weight_type(t.dtype))
    fail("{}: tensor {} has type {}, which kiln cannot compute with yet", src.path(), name, dtype_name(t.dtype));
  return t;
}

FloatVector vector_of(const TensorView& t, const std::string& path, std::int64_t n) {
  if (t.n_elements() != n || t.ne[0] != n)
    fail("{}: tensor {} has shape {}, expected [{}]", path, t.name, shape_str(t), n);
  FloatVector v;
  if (t.dtype == DType::F32) {
    v.data = static_cast<const float*>(t.data);
  } else {
    v.owned.resize(static_cast<std::size_t>(n));
    kernels::dequantize_row(t.dtype, t.data, v.owned.data(), n);
    v.data = v.owned.data();
  }
  return v;
}

FloatVector vector(const TensorSource& src, const std::string& name, std::int64_t n) {
  return vector_of(require(src, name), src.path(), n);
}

}  // namespace

LlamaWeights bind_llama_weights(const TensorSource& src, const LlamaConfig& c) {
  LlamaWeights w;
  w.token_embd = matrix(src, "token_embd.weight", c.n_embd, c.n_vocab);
  w.output_norm = vector(src, "output_norm.weight", c.n_embd);
  w.output = c.tied_output ? w.token_embd : matrix(src, "output.weight", c.n_embd, c.n_vocab);
  if (std::optional<TensorView> f = src.tensor("rope_freqs.weight")) w.rope_freqs = vector_of(*f, src.path(), c.n_rot / 2);
  if (std::optional<TensorView> f = src.tensor("rope_factors_short.weight"))
    w.rope_factors_short = vector_of(*f, src.path(), c.n_rot / 2);
  if (std::optional<TensorView> f = src.tensor("rope_factors_long.weight"))
    w.rope_factors_long = vector_of(*f, src.path(), c.n_rot / 2);
  for (const auto* factors : {&w.rope_freqs, &w.rope_factors_short, &w.rope_factors_long})
    if (*factors)
      for (int i = 0; i < c.n_rot / 2; ++i)
        if (!((*factors)->data[i] > 0 && std::isfinite((*factors)->data[i])))
          fail("{}: rope frequency factor {} is {}, expected a positive number", src.path(), i, (*factors)->data[i]);
  const Architecture* family = find_architecture(c.arch);
  if (family == nullptr) fail("{}: architecture '{}' is not supported", src.path(), c.arch);
  w.layers.resize(static_cast<std::size_t>(c.n_layer));
  for (int i = 0; i < c.n_layer; ++i) {
    LlamaLayerWeights& l = w.layers[static_cast<std::size_t>(i)];
    for (const LayerTensor& t : family->layer_tensors(c, i)) {
      if (t.optional && !src.tensor(t.name)) continue;
      if (t.matrix != nullptr) {
        l.*t.matrix = tensor_of_shape(src, t.name, t.n_dims, t.ne);
      } else if (!t.row_parts.empty()) {
        // Views of consecutive rows of one stored matrix (rows of every format are contiguous).
        const TensorView whole = tensor_of_shape(src, t.name, t.n_dims, t.ne);
        std::int64_t first = 0;
        for (const LayerTensor::RowPart& part : t.row_parts) {
          TensorView v = whole;
          v.ne[1] = part.rows;
          v.data = whole.row(first);
          v.nb[2] = v.nb[1] * static_cast<std::size_t>(part.rows);
          v.nb[3] = v.nb[2];
          l.*part.matrix = v;
          first += part.rows;
        }
        KILN_CHECK(first == t.ne[1], "layer tensor {}: parts of {} rows do not cover its {}", t.name, first, t.ne[1]);
      } else {
        KILN_CHECK(t.vector != nullptr, "layer tensor {} binds nowhere", t.name);
        l.*t.vector = vector(src, t.name, t.ne[0]);
      }
    }
  }
  return w;
}

}  // namespace kiln
