#pragma once
// Where a training run's first weights come from: drawn at random for a model made from a
// config, or read from a GGUF to continue training a model that exists.
#include <cstdint>

#include "format/gguf_file.h"
#include "model/llama_config.h"
#include "train/parameter_table.h"

namespace kiln::train {

// Normal(0, 0.02) for every matrix, as GPT-2 and llama2.c start, with the two projections that
// add into the residual stream (attn_output, ffn_down) scaled by 1/√(2·n_layer) so that the
// stream's variance does not grow with depth; norm gains 1. Each tensor draws from its own
// std::mt19937_64 seeded from (seed, its name), through a Box-Muller transform written out
// (std::normal_distribution is implementation-defined), so that the same seed gives the same
// model on every machine, whatever order the table lists its tensors in.
void init_parameters(const ParameterTable& table, const LlamaConfig& config, std::uint64_t seed, float* params);

// Reads every tensor of `table` by its GGUF name from `gguf` (any stored type kiln can
// dequantize) into `params`. Throws kiln::Error naming the file and the tensor when one is
// missing or has another shape.
void load_parameters(const GgufFile& gguf, const ParameterTable& table, float* params);

// The config of a GGUF that training can continue: a llama without q/k/v biases, with llama's
// rope layout and no rope scaling. Throws kiln::Error naming what training does not support.
LlamaConfig trainable_config_from_gguf(const GgufFile& gguf);

}  // namespace kiln::train
