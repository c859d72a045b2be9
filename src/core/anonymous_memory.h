#pragma once
// Anonymous memory at a 2 MiB-aligned address with transparent huge pages asked for: what
// KILN_LOAD=copy reads weights into (core/mapped_file.cpp) and what the read-bandwidth
// measurement reads (core/memory_bandwidth.cpp), so that both see memory the way decode does,
// and where the KV cache lives (model/kv_cache.cpp).
#include <cstddef>
#include <cstdint>

namespace kiln {

constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;

// mmap(len, prot, flags, fd, offset 0) placed at a 2 MiB-aligned address, with MADV_HUGEPAGE:
// the one placement both anonymous memory below and file mappings (core/mapped_file.cpp) use.
// nullptr when it cannot be mapped. Release with unmap_anonymous (any mapping it made).
void* map_huge_aligned(std::size_t len, int prot, int flags, int fd);

// Maps `bytes` (rounded up to whole pages) read-write at a 2 MiB-aligned address, with
// MADV_HUGEPAGE; nullptr when the memory cannot be mapped. Release with unmap_anonymous.
void* map_anonymous_huge(std::size_t bytes);
void unmap_anonymous(void* p, std::size_t bytes);

// An owned map_anonymous_huge region (zero-filled). Throws std::bad_alloc when it cannot be
// mapped.
class AnonymousRegion {
 public:
  AnonymousRegion() = default;
  explicit AnonymousRegion(std::size_t bytes);
  ~AnonymousRegion() { unmap_anonymous(data_, size_); }
  AnonymousRegion(const AnonymousRegion&) = delete;
  AnonymousRegion& operator=(const AnonymousRegion&) = delete;
  AnonymousRegion(AnonymousRegion&& o) noexcept;
  AnonymousRegion& operator=(AnonymousRegion&& o) noexcept;

  std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace kiln
