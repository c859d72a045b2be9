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

// Places beyond the connection cap kept for health probes (HttpServerOptions::reserve_connections).
inline constexpr int kReserveConnections = 64;

struct ConnectionLimits {
  int connections;  // the connection table's cap
  int reserve;      // places beyond it for health probes
};

// The connection cap and probe reserve that fit under `open_files` (0: unknown, the wanted
// numbers stand) beside the descriptors kept for the server itself: the reserve's connections
// are descriptors too. When both do not fit, the reserve gets an eighth of the room (at least 1,
// at most what was wanted) and the cap what is left, at least 1.
ConnectionLimits connection_limits(int wanted, int wanted_reserve, std::size_t open_files);

}  // namespace kiln::serve
