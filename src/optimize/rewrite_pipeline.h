#pragma once
// The one way kiln rewrites a model's tensors: source tensor -> per-row transform -> writer.
// `quantize`, `convert` and `prune` describe each output tensor as a RewriteTensor (which input
// tensor, which of its rows and columns, in what order, into what type, with what calibration)
// and hand the bytes to a GGUF or safetensors writer through a sink callback. Rows are converted
// in slabs over the thread pool: memory stays at a few slabs whatever the model's size, and the
// input's pages are dropped from the process as each tensor is done (they stay in the page cache).
//
// Per output row r: read input row rows[r] (or r) in its stored type; if the type, the columns
// and the calibration are unchanged, copy its bytes; else dequantize to f32, keep columns[c] (or
// all), check every value is finite (a NaN or Inf weight is an error naming tensor, row and
// column), and quantize to `to` (ggml's reference quantizers, importance-weighted when given,
// or GPTQ when a factor is given). Float inputs are checked even when copied.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "format/tensor_source.h"
#include "optimize/gptq_quant.h"

namespace kiln::optimize {

struct RewriteTensor {
  std::string name;                     // in the output
  const SourceTensor* source = nullptr;  // must have a kiln dtype
  DType to = DType::F32;
  int n_dims = 0;                              // of the output
  std::array<std::int64_t, 4> ne{1, 1, 1, 1};  // of the output: ne[0] columns, ne[1]*ne[2]*ne[3] rows
  std::vector<std::int64_t> rows;     // output row r is input row rows[r]; empty: the same row
  std::vector<std::int64_t> columns;  // output column c is input column columns[c]; empty: the same columns
  // (n_mat, ne[0]) per-column importance, matrix m of a 3-D tensor taking row m; empty: none.
  std::vector<float> importance;
  const GptqFactor* gptq = nullptr;  // quantize with GPTQ (needs importance) instead of rounding

  std::int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
  std::uint64_t n_bytes() const { return row_bytes(to, ne[0]) * static_cast<std::uint64_t>(n_rows()); }
};

// A RewriteTensor that copies or converts `source` whole under its own name and shape.
RewriteTensor whole_tensor(const SourceTensor& source, DType to);

// Checks `t` against its source (a kiln dtype, maps inside the input, column count a multiple of
// the output type's block); throws kiln::Error naming `path` and the tensor.
void check_rewrite(const RewriteTensor& t, const std::string& path);

// Writes `t`'s bytes to `out` in slabs, calling `on_rows(rows_done_in_this_slab)` after each.
// Throws kiln::Error naming `path`, the tensor, row and column on a non-finite weight.
void rewrite_tensor(const RewriteTensor& t, const std::string& path, ThreadPool& pool,
                    const std::function<void(const void* data, std::size_t n)>& out,
                    const std::function<void(std::int64_t rows)>& on_rows = {});

}  // namespace kiln::optimize
