// kiln: the one binary. Subcommands are registered from tools/kiln/cmd_*.cpp.
#include <cstdio>
#include <exception>

#include "commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"kiln: make, shrink, check, convert, run, serve and watch language models on the CPU", "kiln"};
  app.set_version_flag("--version", "kiln 0.1.0");
  app.require_subcommand(1);
  app.fallthrough(false);
  kiln::cli::register_run_command(app);
  kiln::cli::register_bench_command(app);
  kiln::cli::register_inspect_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 prints help (exit 0) or a usage error (exit non-zero).
    return app.exit(e);
  } catch (const kiln::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "kiln: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "kiln: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}
