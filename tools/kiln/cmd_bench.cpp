// Placeholder registration while the command is written.
#include "commands.h"
namespace kiln::cli {
void register_bench_command(CLI::App& app) { app.add_subcommand("bench", "(not yet built)"); }
}  // namespace kiln::cli
