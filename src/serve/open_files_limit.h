#pragma once
// The open-file limit a server lives under: every connection is a file descriptor, so a
// connection cap above the limit would end in accept() failing with EMFILE instead of a 503.
#include <cstddef>

namespace kiln::serve {

// Raises the soft limit on open files (RLIMIT_NOFILE) to the hard limit, as far as the process
// may, and returns the soft limit now in force; 0 when it cannot be read (no cap to derive).
std::size_t raise_open_files_limit();

// Descriptors the server needs besides connections: the model files, the listening socket, the
// log, the threads' wake-up descriptors and some room for what libraries open.
inline constexpr std::size_t kReservedFileDescriptors = 64;

// The connection cap that fits under `open_files` (0: unknown, `wanted` stands): `wanted`, or
// what is left after the reserve, at least 1.
int connection_cap(int wanted, std::size_t open_files);

}  // namespace kiln::serve
