// Placeholder registration while the command is written.
#include "commands.h"
namespace kiln::cli {
void register_inspect_command(CLI::App& app) { app.add_subcommand("inspect", "(not yet built)"); }
}  // namespace kiln::cli
