#pragma once
// The readers open files by path (they mmap them), so each fuzz input is written to one
// anonymous in-memory file (memfd) that is reopened through /proc/self/fd: no disk traffic,
// and nothing is left behind when the fuzzer is killed.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace kiln::fuzz {

// Replaces the memory file's contents with `data` and returns a path that opens it.
inline const std::string& input_file(const std::uint8_t* data, std::size_t size) {
  static const int fd = [] {
    int f = ::memfd_create("kiln_fuzz_input", MFD_CLOEXEC);
    if (f < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    return f;
  }();
  static const std::string path = "/proc/self/fd/" + std::to_string(fd);
  if (::ftruncate(fd, 0) != 0 || (size > 0 && ::pwrite(fd, data, size, 0) != static_cast<ssize_t>(size))) {
    std::perror("writing the fuzz input");
    std::abort();
  }
  return path;
}

}  // namespace kiln::fuzz
