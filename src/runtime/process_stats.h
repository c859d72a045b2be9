#pragma once
// Facts about this process that benchmarks report: resident memory from /proc/self/status and
// how much of the mapped weight files sits in 2 MiB pages (/proc/self/smaps_rollup).
#include <cstddef>

namespace kiln {

// Resident set size in bytes (VmRSS), or 0 where it cannot be read.
std::size_t resident_bytes();
// Peak resident set size in bytes (VmHWM), or 0.
std::size_t peak_resident_bytes();
// Bytes of files mapped through 2 MiB page-table entries (FilePmdMapped), or 0.
std::size_t file_huge_page_bytes();
// Bytes of anonymous memory in transparent huge pages (AnonHugePages), or 0: where the weights
// live with --no-mmap (LoadMode::copy).
std::size_t anon_huge_page_bytes();

}  // namespace kiln
