#pragma once
// Writers put their bytes in `<out>.tmp-<pid>` and rename it when complete; on Ctrl-C or a kill
// that temporary file must not be left behind. While a guard lives, SIGINT, SIGTERM and SIGHUP
// remove it and then end the process as the signal would. The path is prepared up front so that
// the handler only calls unlink().
#include <string>

namespace kiln::cli {

class TempOutputGuard {
 public:
  explicit TempOutputGuard(const std::string& out);
  ~TempOutputGuard();
  TempOutputGuard(const TempOutputGuard&) = delete;
  TempOutputGuard& operator=(const TempOutputGuard&) = delete;
};

}  // namespace kiln::cli
