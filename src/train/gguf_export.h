#pragma once
// Writes a training model as a llama GGUF that kiln (and llama.cpp) run: the hyper-parameters
// under llama.*, every tensor of the parameter table by its GGUF name (F32, or F16/BF16
// rounded to nearest even), the output left out when it is tied to the embeddings, and the
// tokenizer: its keys (tokenizer.*, the chat template too) copied from another GGUF, or written
// from a Vocab (tokenizer/vocab_gguf.h). The file
// appears atomically (GgufWriter writes a temporary file and renames it).
#include <string>

#include "core/dtype.h"
#include "format/gguf_file.h"
#include "tokenizer/vocab.h"
#include "train/llama_training_model.h"

namespace kiln::train {

struct GgufExportOptions {
  DType type = DType::F32;              // of the matrices; F32, F16 or BF16. Norm gains stay F32.
  const GgufFile* tokenizer = nullptr;  // whose tokenizer.* keys to copy, or none
  const Vocab* vocab = nullptr;         // else a vocabulary to write as tokenizer.ggml.*, or none
  std::string name;                     // general.name, when not empty
};

void export_gguf(const LlamaTrainingModel& model, const std::string& path, const GgufExportOptions& options);

}  // namespace kiln::train
