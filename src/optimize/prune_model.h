#pragma once
// Writes the pruned model: a PrunePlan (optimize/prune_plan.h) applied to a Llama-family model's
// tensors through the rewrite pipeline (optimize/rewrite_pipeline.h), streamed to a GGUF.
//
//   blk.N of a kept layer      -> blk.<its rank among the kept layers> (renumbered from 0)
//   attn_q rows, q bias        -> the rows of the kept groups' query heads (head h: rows h·D .. h·D+D-1)
//   attn_k, attn_v rows, biases -> the rows of the kept KV heads
//   attn_output columns        -> the same query-head slices (its input is the heads' outputs)
//   ffn_gate, ffn_up rows      -> the kept channels
//   ffn_down columns           -> the kept channels
//   norms, embeddings, output  -> as they are
// The metadata is the input's with block_count, attention.head_count, attention.head_count_kv
// and feed_forward_length set (keeping each key's stored type), and attention.key_length /
// value_length / rope.dimension_count added when the head count changes and the input left them
// implicit (they were n_embd / n_head). Tensors keep their stored types and order unless a
// quantization mix is given (then llama.cpp's order and kiln quantize's plan); nothing removed
// and no mix gives the input back byte for byte.
#include <cstdint>
#include <functional>
#include <string>

#include "format/tensor_source.h"
#include "model/llama_config.h"
#include "optimize/prune_plan.h"

namespace kiln::optimize {

struct PruneWriteOptions {
  std::string type;  // empty: every tensor keeps its stored type; else a quantize preset (Q4_K_M, Q8_0, ...)
  int n_threads = 0;
};

// The widths the output's types need (block sizes of ffn_down and attn_output as stored, or of
// the preset `type`'s type when given).
PruneConstraints prune_constraints(const TensorSource& source, const LlamaConfig& c, const std::string& type);

struct PruneWriteProgress {
  std::int64_t elements_done = 0;
  std::int64_t elements_total = 0;
};

struct PruneReport {
  std::int64_t params_in = 0, params_out = 0;    // elements of every tensor
  std::uint64_t bytes_in = 0, bytes_out = 0;     // tensor data
  std::uint64_t file_bytes_out = 0;
  std::size_t n_tensors = 0;
};

// Writes `source` (config `c`, read from `in_path`) pruned by `plan` to `out` (temporary file +
// rename). Throws kiln::Error on a plan that does not fit the model, a blk tensor it does not know
// how to cut, a NaN or Inf weight, or any write failure.
PruneReport write_pruned_model(const TensorSource& source, const LlamaConfig& c, const PrunePlan& plan,
                               const std::string& in_path, const std::string& out, const PruneWriteOptions& options,
                               const std::function<void(const PruneWriteProgress&)>& progress = {});

}  // namespace kiln::optimize
