#pragma once
// `kiln export onnx`: a Llama-family model (GGUF or llama2.c) written as one ONNX graph with its
// KV cache as inputs and outputs (convert/llama_onnx_graph.h says which), weights as
// initializers (convert/llama_onnx_weights.h says how). The files appear only when complete:
// written as OUT.tmp-PID (and OUT.data.tmp-PID), then renamed.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "convert/onnx_initializers.h"
#include "model/llama_config.h"

namespace kiln::convert {

// Above this many bytes of weights the data goes to an external file even unasked: protobuf
// refuses a message past 2 GiB, and the graph itself needs some of that.
constexpr std::uint64_t kExternalDataThreshold = 1536ull << 20;

struct OnnxExportOptions {
  WeightStorage storage = WeightStorage::f32;
  // true: weights in OUT.data; false: inside OUT (refused past 2 GiB); nullopt: external above
  // kExternalDataThreshold.
  std::optional<bool> external_data;
};

struct OnnxExportProgress {
  std::int64_t elements_done = 0;
  std::int64_t elements_total = 0;
  const std::string* tensor = nullptr;  // the tensor just written
};

struct OnnxExportReport {
  LlamaConfig config;
  std::string input_format;
  std::int64_t n_weights = 0;
  std::uint64_t weight_bytes = 0;  // as stored (f32 or f16)
  std::uint64_t file_bytes = 0;    // OUT
  std::string data_path;           // OUT.data, or empty when the weights are inside OUT
  int n_nodes = 0;
  double seconds = 0;
};

// The temporary names the export writes before renaming (for a front end's signal handler).
std::string onnx_temp_path(const std::string& out_path);
std::string onnx_data_path(const std::string& out_path);
std::string onnx_data_temp_path(const std::string& out_path);

OnnxExportReport export_llama_onnx(const std::string& model_path, const std::string& out_path,
                                   const OnnxExportOptions& options,
                                   const std::function<void(const OnnxExportProgress&)>& progress = {});

}  // namespace kiln::convert
