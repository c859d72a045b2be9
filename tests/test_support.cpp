#include "test_support.h"

#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <sstream>
#include <cstdio>
#include <cstdlib>

namespace kiln::test {

static bool exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

std::string data_dir() {
  const char* env = std::getenv("KILN_DATA_DIR");
  std::string dir = env ? env : "../shared/data";
  return exists(dir) ? dir : "";
}

std::string data_file(const std::string& name) {
  std::string dir = data_dir();
  if (dir.empty()) return "";
  std::string p = dir + "/" + name;
  return exists(p) ? p : "";
}

std::string kiln_binary() {
  const char* env = std::getenv("KILN_BIN");
  return env ? env : "kiln";
}

std::string temp_dir() {
  static std::string dir = [] {
    std::string tmpl = "/tmp/kiln_test_XXXXXX";
    char* p = ::mkdtemp(tmpl.data());
    return p ? std::string(p) : std::string("/tmp");
  }();
  return dir;
}

int run_command(const std::string& command, std::string* output, bool merge_stderr) {
  std::string cmd = command + (merge_stderr ? " 2>&1" : "");
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) return -1;
  std::array<char, 4096> buf{};
  std::string out;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  int status = ::pclose(pipe);
  if (output) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

KilnRun run_kiln(const std::string& args, bool merge_stderr, int timeout_seconds) {
  KilnRun r;
  r.code = run_command("timeout " + std::to_string(timeout_seconds) + " " + kiln_binary() + " " + args, &r.out,
                       merge_stderr);
  return r;
}

void expect_clean_error(const KilnRun& r, const std::string& needle) {
  EXPECT_GT(r.code, 0) << r.out;
  EXPECT_LT(r.code, 128) << "crashed: " << r.out;
  EXPECT_NE(r.out.find(needle), std::string::npos) << "expected '" << needle << "' in: " << r.out;
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f << bytes;
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d))
      if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") names.push_back(e->d_name);
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace kiln::test
