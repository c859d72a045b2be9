#pragma once
// A model of any family kiln runs, with random weights, written as a GGUF that kiln and
// llama.cpp both load (kiln synth): for timing a real shape without its weights, and for
// checking a family's forward against llama.cpp's on the same file.
//
// The metadata is built first (the common keys, the family's own, then `overrides`) and read
// back through llama_config_from_metadata, so every key a family reads can be set, and a
// synthetic model is checked exactly as a downloaded one is. The tensors are then the family's
// layer_tensors for that config.
//
// Weights are drawn so that logits are peaked rather than flat (greedy tokens that agree then
// mean something): matrices N(0, 1/in) (unit-variance outputs), token embeddings N(0, 1), the
// output matrix N(0, logit_std²/in), so that a normed hidden state gives logits of standard
// deviation logit_std (token embeddings too when tied to the output); norm weights
// N(synthetic_mean, 0.1²), other vectors N(0, 0.1²).
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "format/gguf_metadata.h"
#include "model/llama_config.h"

namespace kiln {

struct SyntheticModelSpec {
  LlamaConfig config;  // arch, name and shape; the family's switches come from its configure
  bool tied_output = false;  // no output.weight: logits use token_embd
  // Keys set after the common and family keys, e.g. {"gemma2.attention.sliding_window", u32(64)}.
  std::vector<std::pair<std::string, GgufValue>> overrides;
  // tokenizer.* keys copied from here (the vocabulary size is its token count); nullptr writes
  // no tokenizer (config.n_vocab must then be set, and only kiln loads the file).
  const GgufMetadata* tokenizer = nullptr;
  DType type = DType::F32;  // every matrix's type; vectors are f32
  std::uint64_t seed = 1;
  float logit_std = 4.0f;
};

// Writes `path` (atomically) and returns the config as read back from the written metadata.
// `on_tensor(done, total)` is called after each tensor (progress), may be empty.
LlamaConfig write_synthetic_model(const SyntheticModelSpec& spec, const std::string& path,
                                  const std::function<void(std::size_t done, std::size_t total)>& on_tensor = {});

// The metadata of the model write_synthetic_model(spec) writes, before its tensors.
GgufMetadata synthetic_model_metadata(const SyntheticModelSpec& spec);

}  // namespace kiln
