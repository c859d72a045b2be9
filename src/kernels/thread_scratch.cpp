#include "kernels/thread_scratch.h"

#include <new>

namespace kiln::kernels {

std::uint8_t* ScratchSlots::get(int slot, std::size_t bytes) {
  Buffer& buffer = buffers_[slot];
  if (buffer.capacity < bytes) {
    // Grow geometrically and round to whole cache lines so aligned_alloc accepts the size.
    std::size_t capacity = buffer.capacity * 2 > bytes ? buffer.capacity * 2 : bytes;
    capacity = (capacity + 63) / 64 * 64;
    auto* p = static_cast<std::uint8_t*>(std::aligned_alloc(64, capacity));
    if (p == nullptr) throw std::bad_alloc();
    buffer.data.reset(p);
    buffer.capacity = capacity;
  }
  return buffer.data.get();
}

}  // namespace kiln::kernels
