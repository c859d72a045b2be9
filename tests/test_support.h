#pragma once
// Helpers shared by the tests: where the shared data lives, and a visible skip when it is absent.
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kiln::test {

// ../shared/data as configured by CMake (KILN_DATA_DIR), or "" when the folder is absent.
std::string data_dir();
// Full path of a file in the shared data folder, or "" when it is absent.
std::string data_file(const std::string& name);
// The kiln binary under test (KILN_BIN).
std::string kiln_binary();
// A fresh temporary directory for this test process.
std::string temp_dir();

// A file's bytes ("" when it cannot be read), and bytes written to a file.
std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& bytes);
// The names in a folder (without . and ..), sorted.
std::vector<std::string> list_dir(const std::string& dir);

// `s` in single quotes for a shell command line.
std::string shell_quote(const std::string& s);

// Runs a shell command, captures stdout (and stderr when merge_stderr), returns the exit code.
int run_command(const std::string& command, std::string* output, bool merge_stderr = false);

// The kiln binary under test run with `args` (a shell fragment), ended after `timeout_seconds`:
// its exit code (128 + the signal when one ended it) and its output.
struct KilnRun {
  int code = -1;
  std::string out;
};
KilnRun run_kiln(const std::string& args, bool merge_stderr = true, int timeout_seconds = 120);

// Expects a clean refusal: a non-zero exit that is not a crash, with `needle` in the output.
void expect_clean_error(const KilnRun& r, const std::string& needle);

}  // namespace kiln::test

// Skips the current test with a visible message when a shared data file is missing.
#define KILN_REQUIRE_DATA(var, name)                                                   \
  std::string var = ::kiln::test::data_file(name);                                     \
  if (var.empty()) GTEST_SKIP() << "shared data file " << name << " not found (set KILN_DATA_DIR)"
