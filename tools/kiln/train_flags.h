#pragma once
// The flags `kiln train` and `kiln distill` share: a new model's shape, the run's schedule and
// outputs, and the summary printed before the first step.
#include <CLI/CLI.hpp>
#include <functional>
#include <string>

#include "kernels/dense_gemm.h"
#include "model/llama_config.h"
#include "train/trainer.h"

namespace kiln::cli {

struct ModelFlags {
  int dim = 256, layers = 4, heads = 8, kv_heads = 0, ffn = 0, vocab = 0;
  bool untied = false;
  float rope_theta = 10000.0f;
};

// --precision: auto (bf16 where the CPU has AVX-512 BF16 or AMX), f32 or bf16.
kernels::GemmPrecision precision_from_flag(const std::string& p, const char* command);
// A llama of the flags' shape; n_vocab is m.vocab, or `default_vocab` when that is 0.
LlamaConfig config_from_flags(const ModelFlags& m, int context, std::uint32_t default_vocab, const char* command);

// Registers the run's flags (-c, -b, --accum, --steps, the learning rates and AdamW's, --clip,
// --precision, --eval-*, --save-every, -s, --export-type, --name); `opt` records each option
// (for the flags a resumed run must not change).
void add_run_options(CLI::App* t, train::TrainOptions& o, std::string& precision, std::string& export_type,
                     const std::function<CLI::Option*(CLI::Option*)>& opt);

// The model, data and run lines printed before the first step.
void print_run_start(const train::TrainOptions& o, const LlamaConfig& c, const train::Trainer::DataSummary& data,
                     int ranks, int threads, std::int64_t start_step);

}  // namespace kiln::cli
