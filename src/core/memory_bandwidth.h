#pragma once
// The machine's memory read bandwidth as decode sees it: the ceiling that a memory-bound decode
// (every weight read once per token) is measured against. `kiln bench` prints its decode GB/s
// beside this number, and bench/memory_bandwidth_bench sweeps page sizes and thread counts.
#include <cstddef>
#include <cstdint>

#include "core/thread_pool.h"

namespace kiln {

// The sum of the 64-bit words of [p, p + n), n a multiple of 64 and p 16-byte aligned, read
// with four independent SSE2 accumulators: plain 16-byte loads saturate memory on any x86-64,
// what matters is keeping many loads in flight.
std::uint64_t sum_words(const std::uint8_t* p, std::size_t n);

// Bytes per second read by every worker of `pool` summing its share of a fresh anonymous
// buffer of `bytes` (2 MiB-aligned, transparent huge pages asked for, as kiln's weights are
// mapped), after one untimed pass, over repeated passes lasting at least `min_seconds`.
// Throws kiln::Error when the buffer cannot be mapped.
double measure_read_bandwidth(ThreadPool& pool, std::size_t bytes = std::size_t{512} << 20, double min_seconds = 0.3);

}  // namespace kiln
