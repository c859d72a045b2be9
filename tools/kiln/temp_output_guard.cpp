#include "temp_output_guard.h"

#include <unistd.h>

#include <csignal>
#include <cstdio>

namespace kiln::cli {
namespace {

char g_temp_path[4096];

void remove_temp_and_die(int sig) {
  ::unlink(g_temp_path);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

}  // namespace

TempOutputGuard::TempOutputGuard(const std::string& out) {
  std::snprintf(g_temp_path, sizeof(g_temp_path), "%s.tmp-%d", out.c_str(), static_cast<int>(::getpid()));
  std::signal(SIGINT, remove_temp_and_die);
  std::signal(SIGTERM, remove_temp_and_die);
  std::signal(SIGHUP, remove_temp_and_die);
}

TempOutputGuard::~TempOutputGuard() {
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  std::signal(SIGHUP, SIG_DFL);
}

}  // namespace kiln::cli
