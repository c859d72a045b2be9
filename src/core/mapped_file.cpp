#include "core/mapped_file.h"

#include "core/anonymous_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string_view>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <utility>

#include "core/error.h"

namespace kiln {

namespace {

// Maps the file read-only at a 2 MiB-aligned address and asks for transparent huge pages.
// Why: decode streams every weight once per token, so it is bound by memory bandwidth, and
// 4 KiB pages cost a TLB miss every 4 KiB of a stream. With the start aligned, file offsets and
// addresses agree modulo 2 MiB, so page-cache folios of 2 MiB (which the kernel allocates for
// MADV_HUGEPAGE ranges on filesystems with large folios, such as ext4 and xfs) can be mapped by
// one PMD each: measured on these machines, a 0.6 GB weight file reads at 28.7 GB/s that way
// against 24 GB/s through 4 KiB pages. The weights are still the page cache, never copied.
// Files already cached in small folios keep them; the advice only shapes future reads.
void* map_file(int fd, std::size_t size) {
  if (size >= kHugePageBytes) {
    if (void* p = map_huge_aligned(size, PROT_READ, MAP_SHARED, fd)) return p;
  }
  return ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
}

// KILN_LOAD=copy sets the starting mode; --no-mmap sets it through set_load_mode().
LoadMode initial_load_mode() {
  const char* v = std::getenv("KILN_LOAD");
  return v != nullptr && std::string_view(v) == "copy" ? LoadMode::copy : LoadMode::map;
}

std::atomic<LoadMode>& process_load_mode() {
  static std::atomic<LoadMode> mode{initial_load_mode()};
  return mode;
}

// LoadMode::copy: the file's bytes read into anonymous memory (2 MiB-aligned, transparent huge
// pages) instead of mapped. On these VMs the page cache's memory has at times read at half the
// speed of freshly allocated anonymous memory (16 against 32 GB/s measured on the same 0.6 GB
// file, both in 2 MiB pages), which halves decode; llama.cpp keeps its repacked weights in
// anonymous memory and does not see it. The cost is a private copy per process (no sharing of
// the page cache between servers) and the read at load. pread, not a copy out of a mapping, so
// the page cache is not also mapped into this process and RSS stays about the file size.
// Returns MAP_FAILED when the copy cannot be made, and the caller falls back to the mapping.
void* read_into_anonymous(int fd, std::size_t size) {
  void* p = map_anonymous_huge(size);
  if (p == nullptr) return MAP_FAILED;
  auto* dst = static_cast<std::uint8_t*>(p);
  for (std::size_t done = 0; done < size;) {
    const ssize_t n = ::pread(fd, dst + done, std::min<std::size_t>(size - done, std::size_t{64} << 20), static_cast<off_t>(done));
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      unmap_anonymous(p, size);
      return MAP_FAILED;
    }
    done += static_cast<std::size_t>(n);
  }
  ::mprotect(p, size, PROT_READ);
  return p;
}

}  // namespace

LoadMode load_mode() { return process_load_mode().load(std::memory_order_relaxed); }
void set_load_mode(LoadMode mode) { process_load_mode().store(mode, std::memory_order_relaxed); }
const char* load_mode_name(LoadMode mode) { return mode == LoadMode::copy ? "copy" : "map"; }

MappedFile::MappedFile(const std::string& path) : MappedFile(path, load_mode()) {}

MappedFile::MappedFile(const std::string& path, LoadMode mode) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    fail("{}: cannot stat: {}", path, std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path);
  }
  size_ = static_cast<std::size_t>(st.st_size);
  if (size_ > 0) {
    void* p = MAP_FAILED;
    if (mode == LoadMode::copy) p = read_into_anonymous(fd, size_);
    copied_ = p != MAP_FAILED;
    if (p == MAP_FAILED) p = map_file(fd, size_);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      fail("{}: cannot mmap {} bytes: {}", path, size_, std::strerror(e));
    }
    data_ = static_cast<const std::uint8_t*>(p);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<std::uint8_t*>(data_), size_);
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      copied_(std::exchange(other.copied_, false)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(const_cast<std::uint8_t*>(data_), size_);
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    copied_ = std::exchange(other.copied_, false);
  }
  return *this;
}

void MappedFile::prefetch(std::size_t offset, std::size_t length) const {
  if (data_ == nullptr || offset >= size_) return;
  if (length > size_ - offset) length = size_ - offset;
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  std::size_t start = offset / page * page;
  ::madvise(const_cast<std::uint8_t*>(data_) + start, length + (offset - start), MADV_WILLNEED);
}

}  // namespace kiln
