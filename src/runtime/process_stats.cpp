#include "runtime/process_stats.h"

#include <cstdio>
#include <cstring>

namespace kiln {
namespace {
std::size_t status_kib(const char* field) {
  std::FILE* f = std::fopen("/proc/self/status", "r");
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

std::size_t resident_bytes() { return status_kib("VmRSS"); }
std::size_t peak_resident_bytes() { return status_kib("VmHWM"); }

}  // namespace kiln
