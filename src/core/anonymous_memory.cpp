#include "core/anonymous_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <new>
#include <utility>

namespace kiln {
namespace {

std::size_t whole_pages(std::size_t bytes) {
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return (bytes + page - 1) / page * page;
}

}  // namespace

void* map_huge_aligned(std::size_t len, int prot, int flags, int fd) {
  // Reserve 2 MiB more than needed, place the mapping at the first aligned address in it and
  // give the slack on both sides back.
  len = whole_pages(len);
  void* reserve = ::mmap(nullptr, len + kHugePageBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (reserve == MAP_FAILED) return nullptr;
  const auto base = reinterpret_cast<std::uintptr_t>(reserve);
  const std::uintptr_t aligned = (base + kHugePageBytes - 1) & ~(std::uintptr_t{kHugePageBytes} - 1);
  void* p = ::mmap(reinterpret_cast<void*>(aligned), len, prot, flags | MAP_FIXED, fd, 0);
  if (p == MAP_FAILED) {
    ::munmap(reserve, len + kHugePageBytes);
    return nullptr;
  }
  if (aligned > base) ::munmap(reserve, aligned - base);
  const std::uintptr_t end = aligned + len, reserve_end = base + len + kHugePageBytes;
  if (reserve_end > end) ::munmap(reinterpret_cast<void*>(end), reserve_end - end);
  ::madvise(p, len, MADV_HUGEPAGE);  // a hint: EINVAL where THP is compiled out is fine
  return p;
}

void* map_anonymous_huge(std::size_t bytes) {
  return map_huge_aligned(bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
}

void unmap_anonymous(void* p, std::size_t bytes) {
  if (p != nullptr) ::munmap(p, whole_pages(bytes));
}

AnonymousRegion::AnonymousRegion(std::size_t bytes) : size_(bytes) {
  data_ = static_cast<std::uint8_t*>(map_anonymous_huge(bytes));
  if (data_ == nullptr) throw std::bad_alloc();
}

AnonymousRegion::AnonymousRegion(AnonymousRegion&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}

AnonymousRegion& AnonymousRegion::operator=(AnonymousRegion&& o) noexcept {
  if (this != &o) {
    unmap_anonymous(data_, size_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

}  // namespace kiln
