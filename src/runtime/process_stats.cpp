#include "runtime/process_stats.h"

#include <cstdio>
#include <cstring>

namespace kiln {
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
}  // namespace

std::size_t resident_bytes() { return proc_kib("/proc/self/status", "VmRSS"); }
std::size_t peak_resident_bytes() { return proc_kib("/proc/self/status", "VmHWM"); }
std::size_t file_huge_page_bytes() { return proc_kib("/proc/self/smaps_rollup", "FilePmdMapped"); }
std::size_t anon_huge_page_bytes() { return proc_kib("/proc/self/smaps_rollup", "AnonHugePages"); }

}  // namespace kiln
