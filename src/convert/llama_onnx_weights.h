#pragma once
// A Llama model's tensors as the ONNX graph's initializers, under their GGUF names:
//   - matrices dequantized to f32 (kernels::dequantize_row, any stored type) and stored
//     transposed, (n_in, n_out), so that a projection is one MatMul x · W;
//   - q and k projections (and their biases) with each head's rotated rows in the halves order
//     (x[i], x[i + n_rot/2]) when the model ropes interleaved pairs (x[2i], x[2i+1]), as GGUF's
//     llama does: the same permutation of q's and k's rows leaves every q·k unchanged, and the
//     graph then ropes one way for every model, the way Hugging Face's llama does;
//   - the token embedding as (n_vocab, n_embd) rows for Gather;
//   - vectors (norm weights, biases) in f32 always; matrices in f32 or f16 (--f16), a Cast to
//     float following f16 ones in the graph.
#include <cstdint>
#include <functional>
#include <string>

#include "format/tensor_source.h"
#include "model/llama_config.h"
#include "convert/onnx_graph_builder.h"
#include "convert/onnx_initializers.h"

namespace kiln::convert {

// After each tensor: its name and the weights (elements) written so far.
using WeightProgressFn = std::function<void(const std::string& name, std::int64_t elements_done)>;

// The number of weights the graph stores for this model (for progress and the size estimate).
std::int64_t llama_onnx_weight_count(const LlamaConfig& c);

class LlamaOnnxWeights {
 public:
  LlamaOnnxWeights(const TensorSource& source, const LlamaConfig& config, OnnxGraphBuilder& graph, OnnxInitializers& inits, WeightStorage storage,
                   WeightProgressFn progress);

  // Tensor `name` (n_out rows of n_in) as a float (n_in, n_out) value for MatMul. rope_heads > 0:
  // the rows are that many q or k heads, whose rotated rows may need reordering.
  std::string matrix(const std::string& name, std::int64_t n_in, std::int64_t n_out, int rope_heads = 0);
  // A 1-D tensor of n floats (norm weight, bias; rope_heads as for matrix).
  std::string vector(const std::string& name, std::int64_t n, int rope_heads = 0);
  // token_embd.weight as float (n_vocab, n_embd) rows.
  std::string embedding();
  // The output projection as a float (n_embd, n_vocab) value: output.weight, or the transposed
  // embedding when the output is tied to it.
  std::string output();

 private:
  TensorView require(const std::string& name) const;
  std::vector<float> rows_f32(const TensorView& t, std::int64_t n_in, std::int64_t n_out) const;
  void reorder_rope_rows(std::vector<float>& w, std::int64_t row_len, int n_heads) const;
  std::string as_float(const std::string& stored, WeightStorage storage);
  void done(const std::string& name, std::int64_t elements);

  const TensorSource& source_;
  const LlamaConfig& config_;
  OnnxGraphBuilder& graph_;
  OnnxInitializers& inits_;
  WeightStorage storage_;
  WeightProgressFn progress_;
  std::int64_t elements_done_ = 0;
  std::string embedding_;  // the float value of token_embd once added
};

}  // namespace kiln::convert
