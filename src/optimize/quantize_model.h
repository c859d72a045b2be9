#pragma once
// `kiln quantize`: rewrites a model (GGUF or llama2.c) as a GGUF whose weights are quantized by
// a plan (optimize/quant_plan.h), with ggml's reference quantizers (bit-exact: the same input gives
// the same bytes as llama.cpp's llama-quantize, with or without an importance matrix), or with
// kiln's calibrated method (--method gptq). The output's
// metadata is the input's, with general.quantization_version = 2 and general.file_type = the
// preset's LLAMA_FTYPE value appended as llama.cpp does; tensors are in llama.cpp's order.
//
// Tensors are converted one at a time, in slabs of rows spread over the thread pool, and streamed
// to the GGUF writer: memory stays at a few slabs, whatever the model's size. The output appears
// only when complete (temporary file + rename).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "optimize/quant_plan.h"

namespace kiln::optimize {

struct QuantizeOptions {
  std::string type = "Q8_0";               // a preset name (quant_presets())
  std::vector<std::string> tensor_types;   // "REGEX=TYPE" overrides, first match wins
  bool allow_requantize = false;           // dequantize quantized inputs and quantize again
  bool pure = false;                       // every quantizable tensor the preset's type
  int n_threads = 0;                       // <= 0: the hardware threads
  // An importance matrix (optimize/imatrix.h, GGUF or .dat): the quantizers then weigh each
  // weight's error by its input channel's mean squared activation, exactly as llama-quantize
  // --imatrix does (same bytes), and the file records it (quantize.imatrix.* metadata).
  std::string imatrix;
  // "rtn": each block rounded on its own (llama.cpp's method, the default). "gptq": kiln's
  // calibrated method (optimize/gptq_quant.h), which needs an imatrix with covariance.
  std::string method = "rtn";
};

// Reported once before the first tensor (elements_done 0) and as each slab of rows is written.
struct QuantizeProgress {
  std::size_t tensor = 0;  // index of the tensor being written, 0-based
  std::size_t n_tensors = 0;
  const std::string* name = nullptr;
  std::int64_t elements_done = 0;  // over the whole model
  std::int64_t elements_total = 0;
  double seconds = 0;  // since the first tensor started
};

struct QuantizeReport {
  const QuantPreset* preset = nullptr;
  std::vector<TensorPlan> plan;  // in output order
  std::uint64_t bytes_in = 0;    // tensor data
  std::uint64_t bytes_out = 0;
  std::uint64_t file_bytes_in = 0;
  std::uint64_t file_bytes_out = 0;
  std::int64_t n_elements = 0;
  double seconds = 0;
  int n_threads = 0;
  std::string input_format;
};

// Called on the calling thread after each slab of rows.
using QuantizeProgressFn = std::function<void(const QuantizeProgress&)>;
// One line for the user (a fallback, say), before any tensor is written.
using QuantizeNoticeFn = std::function<void(const std::string&)>;

// The plan alone: opens `in` and returns what quantize_model would write (no output).
QuantizeReport plan_model_quantization(const std::string& in, const QuantizeOptions& options);

// Quantizes `in` into `out`. Throws kiln::Error (and leaves nothing at `out`) on an unknown type,
// a quantized input without allow_requantize, a NaN or Inf weight (naming the tensor and row), or
// any read or write failure.
QuantizeReport quantize_model(const std::string& in, const std::string& out, const QuantizeOptions& options,
                              const QuantizeProgressFn& progress = {}, const QuantizeNoticeFn& notice = {});

}  // namespace kiln::optimize
