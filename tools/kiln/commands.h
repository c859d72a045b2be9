#pragma once
// Each subcommand lives in its own file and registers itself on the top-level CLI11 app.
// A command's callback throws kiln::Error on failure; main() prints it and exits non-zero.
#include <CLI/CLI.hpp>

namespace kiln::cli {

void register_run_command(CLI::App& app);
void register_bench_command(CLI::App& app);
void register_inspect_command(CLI::App& app);
void register_eval_command(CLI::App& app);
void register_quantize_command(CLI::App& app);
void register_imatrix_command(CLI::App& app);
void register_prune_command(CLI::App& app);
void register_tokenize_commands(CLI::App& app);  // tokenize, detokenize
void register_tokenizer_commands(CLI::App& app);  // tokenizer train
void register_chat_command(CLI::App& app);
void register_serve_command(CLI::App& app);
void register_data_command(CLI::App& app);  // data prepare, data inspect
void register_train_command(CLI::App& app);
void register_distill_command(CLI::App& app);
void register_convert_command(CLI::App& app);
void register_export_command(CLI::App& app);  // export onnx
void register_embed_command(CLI::App& app);
void register_synth_command(CLI::App& app);

}  // namespace kiln::cli
