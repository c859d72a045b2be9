#include "monitor/process_stats.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace kiln::monitor {
namespace {

std::size_t proc_kib(const char* file, const char* field) {
  std::FILE* f = std::fopen(file, "r");
  if (f == nullptr) return 0;
  char line[256];
  std::size_t kib = 0;
  const std::size_t len = std::strlen(field);
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, field, len) == 0 && line[len] == ':') {
      std::sscanf(line + len + 1, "%zu", &kib);
      break;
    }
  }
  std::fclose(f);
  return kib * 1024;
}

// The system's boot time in Unix seconds (btime in /proc/stat), or 0.
double boot_unix_seconds() {
  std::FILE* f = std::fopen("/proc/stat", "r");
  if (f == nullptr) return 0;
  char line[256];
  unsigned long long btime = 0;
  while (std::fgets(line, sizeof line, f) != nullptr)
    if (std::sscanf(line, "btime %llu", &btime) == 1) break;
  std::fclose(f);
  return static_cast<double>(btime);
}

}  // namespace

std::size_t resident_bytes() { return proc_kib("/proc/self/status", "VmRSS"); }
std::size_t peak_resident_bytes() { return proc_kib("/proc/self/status", "VmHWM"); }
std::size_t file_huge_page_bytes() { return proc_kib("/proc/self/smaps_rollup", "FilePmdMapped"); }
std::size_t anon_huge_page_bytes() { return proc_kib("/proc/self/smaps_rollup", "AnonHugePages"); }

ProcessTimes process_times() {
  ProcessTimes t;
  std::FILE* f = std::fopen("/proc/self/stat", "r");
  if (f == nullptr) return t;
  char buf[1024];
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  // The command name (field 2) is in parentheses and may hold spaces: fields are counted after
  // its closing parenthesis, which starts at field 3 (state).
  const char* rest = std::strrchr(buf, ')');
  if (rest == nullptr) return t;
  unsigned long long utime = 0, stime = 0, start_ticks = 0, vsize = 0;
  // Fields 3..23: state, then 10 we skip, utime (14), stime (15), 6 more, starttime (22), vsize (23).
  const int got =
      std::sscanf(rest + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d %llu %llu",
                  &utime, &stime, &start_ticks, &vsize);
  const long ticks = ::sysconf(_SC_CLK_TCK);
  if (got != 4 || ticks <= 0) return t;
  t.cpu_seconds = static_cast<double>(utime + stime) / static_cast<double>(ticks);
  t.start_unix_seconds = boot_unix_seconds() + static_cast<double>(start_ticks) / static_cast<double>(ticks);
  t.virtual_bytes = static_cast<std::size_t>(vsize);
  t.valid = true;
  return t;
}

int open_file_descriptors() {
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  int n = 0;
  while (const dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n - 1;  // the directory's own descriptor
}

}  // namespace kiln::monitor
