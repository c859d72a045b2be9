#pragma once
// Facts about this process read from /proc: resident memory (/proc/self/status), how much of the
// mapped weight files sits in 2 MiB pages (/proc/self/smaps_rollup), and the CPU time, start time
// and virtual size behind Prometheus' standard process_* metrics (/proc/self/stat).
#include <cstddef>

namespace kiln::monitor {

// Resident set size in bytes (VmRSS), or 0 where it cannot be read.
std::size_t resident_bytes();
// Peak resident set size in bytes (VmHWM), or 0.
std::size_t peak_resident_bytes();
// Bytes of files mapped through 2 MiB page-table entries (FilePmdMapped), or 0.
std::size_t file_huge_page_bytes();
// Bytes of anonymous memory in transparent huge pages (AnonHugePages), or 0: where the weights
// live with --no-mmap (LoadMode::copy).
std::size_t anon_huge_page_bytes();

struct ProcessTimes {
  double cpu_seconds = 0;         // user + system
  double start_unix_seconds = 0;  // when the process started
  std::size_t virtual_bytes = 0;
  bool valid = false;  // false where /proc/self/stat cannot be read
};
ProcessTimes process_times();

// Open file descriptors (entries of /proc/self/fd), or -1.
int open_file_descriptors();

}  // namespace kiln::monitor
