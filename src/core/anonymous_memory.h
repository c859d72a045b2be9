#pragma once
// Anonymous memory at a 2 MiB-aligned address with transparent huge pages asked for: what
// KILN_LOAD=copy reads weights into (core/mapped_file.cpp) and what the read-bandwidth
// measurement reads (core/memory_bandwidth.cpp), so that both see memory the way decode does.
#include <cstddef>

namespace kiln {

constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;

// Maps `bytes` (rounded up to whole pages) read-write at a 2 MiB-aligned address, with
// MADV_HUGEPAGE; nullptr when the memory cannot be mapped. Release with unmap_anonymous.
void* map_anonymous_huge(std::size_t bytes);
void unmap_anonymous(void* p, std::size_t bytes);

}  // namespace kiln
