#pragma once
// The Llama-family decoder (llama, mistral, qwen2) as an ONNX graph, with the inputs and outputs
// Hugging Face Optimum gives a decoder exported with its KV cache:
//   input_ids                  int64 (batch_size, sequence_length)
//   attention_mask             int64 (batch_size, past_sequence_length + sequence_length): 1 = attend
//   position_ids               int64 (batch_size, sequence_length)
//   past_key_values.N.key      float (batch_size, n_head_kv, past_sequence_length, head_dim)
//   past_key_values.N.value    float (same)
// ->
//   logits                     float (batch_size, sequence_length, n_vocab)
//   present.N.key / .value     float (batch_size, n_head_kv, past_sequence_length + sequence_length, head_dim):
//                              the past with this call's keys and values appended
// A query attends to the keys of every earlier position and of its own (causal within the new
// tokens, every past key visible) whose attention_mask is 1. The sequence is the one
// model/llama_blocks.h computes: RMSNorm (Pow, ReduceMean, Add, Sqrt, Div, Mul: opset 17 has no
// RMSNormalization), q/k/v with qwen2's biases, rope on the halves pairs (llama_onnx_weights.h
// reorders interleaved models' rows), grouped-query attention, SwiGLU, tied or own output.
#include <string>

#include "convert/llama_onnx_weights.h"
#include "convert/onnx_graph_builder.h"

namespace kiln::convert {

constexpr int kLlamaOnnxOpset = 17;

// Adds the inputs, outputs and nodes of the decoder to `graph`, its weights through `weights`.
void build_llama_onnx_graph(const LlamaConfig& c, const float* rope_freq_factors, OnnxGraphBuilder& graph,
                            LlamaOnnxWeights& weights);

}  // namespace kiln::convert
