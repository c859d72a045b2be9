#pragma once
// Per-thread scratch memory of a kernel family (legacy_scratch, affine_scratch): a few slots,
// each a 64-byte aligned buffer that grows on demand and is kept for the thread's next call.
// Lives in the plain translation units; the SIMD files reach it through the family's function.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

namespace kiln::kernels {

class ScratchSlots {
 public:
  static constexpr int kSlots = 3;

  // At least `bytes` bytes, 64-byte aligned, valid until the next call with the same slot.
  // Throws std::bad_alloc when the memory is not there.
  std::uint8_t* get(int slot, std::size_t bytes);

 private:
  struct AlignedFree {
    void operator()(std::uint8_t* p) const { std::free(p); }
  };
  struct Buffer {
    std::unique_ptr<std::uint8_t, AlignedFree> data;
    std::size_t capacity = 0;
  };
  Buffer buffers_[kSlots];
};

}  // namespace kiln::kernels
