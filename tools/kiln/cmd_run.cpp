// Placeholder registration while the command is written.
#include "commands.h"
namespace kiln::cli {
void register_run_command(CLI::App& app) { app.add_subcommand("run", "(not yet built)"); }
}  // namespace kiln::cli
