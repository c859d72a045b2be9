#pragma once
// Facts about this process that benchmarks report: resident memory from /proc/self/status.
#include <cstddef>

namespace kiln {

// Resident set size in bytes (VmRSS), or 0 where it cannot be read.
std::size_t resident_bytes();
// Peak resident set size in bytes (VmHWM), or 0.
std::size_t peak_resident_bytes();

}  // namespace kiln
