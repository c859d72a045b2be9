#pragma once
// The model an export reads: its hyper-parameters and its tensors by GGUF name
// (token_embd.weight, blk.N.attn_q.weight, ...; output.weight absent when the output is tied).
// The exporters see only this, so that where tensors come from (today model/ModelSource, for
// GGUF and llama2.c files) is decided in open_export_source alone.
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/tensor.h"
#include "model/llama_config.h"

namespace kiln::convert {

struct ExportSource {
  std::string path;
  std::string format_name;  // "gguf v3", "llama2.c", ...
  LlamaConfig config;
  // The tensor's view, or nullopt if the model has no tensor of that name. Views stay valid for
  // as long as this ExportSource lives.
  std::function<std::optional<TensorView>(const std::string&)> tensor;
  std::shared_ptr<const void> owner;  // keeps the opened file (and its mapping) alive
};

// Opens a model file kiln reads; throws kiln::Error naming the file on anything it cannot use.
ExportSource open_export_source(const std::string& path);

}  // namespace kiln::convert
