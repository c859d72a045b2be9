// kiln's affine block formats' entry points: composes each level's table from the family's
// dot products and q8_1's activation quantizer (shared with q4_1 weights), and owns the
// per-thread scratch of the SIMD kernels.
#include <cstdlib>
#include <memory>
#include <new>

#include "kernels/affine_quants_internal.h"
#include "kernels/kernel_families.h"
#include "kernels/legacy_quants_internal.h"

namespace kiln::kernels {
namespace affine {
namespace {

struct AlignedFree {
  void operator()(std::uint8_t* p) const { std::free(p); }
};

struct ScratchBuffer {
  std::unique_ptr<std::uint8_t, AlignedFree> data;
  std::size_t capacity = 0;
};

constexpr DType kTypes[] = {DType::A4G64, DType::A4G128, DType::A8G32, DType::A8G64, DType::A8G128};
constexpr int kTypeCount = sizeof(kTypes) / sizeof(kTypes[0]);

int type_index(DType t) {
  for (int i = 0; i < kTypeCount; ++i)
    if (kTypes[i] == t) return i;
  return -1;
}

const Fns* fns_at(DType w, SimdLevel level) {
  switch (level) {
    case SimdLevel::Avx512:
      return avx512_fns(w);
    case SimdLevel::Avx2:
      return avx2_fns(w);
    default:
      return scalar_fns(w);
  }
}

// tables[level][type], built once: the legacy family's q8_1 quantizers are tables of another
// translation unit, so they are read at first use rather than at static initialization.
struct Tables {
  WeightKernels entries[3][kTypeCount];
  Tables() {
    for (SimdLevel level : {SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512}) {
      const WeightKernels* q4_1 = legacy_weight_kernels(DType::Q4_1, level);
      for (int i = 0; i < kTypeCount; ++i) {
        const Fns* f = fns_at(kTypes[i], level);
        entries[static_cast<int>(level)][i] =
            WeightKernels{kTypes[i], DType::Q8_1, q4_1->quantize_act, f->vec_dot, f->gemm, level};
      }
    }
  }
};

}  // namespace

std::uint8_t* affine_scratch(int slot, std::size_t bytes) {
  thread_local ScratchBuffer buffers[3];
  ScratchBuffer& buffer = buffers[slot];
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

bool amx_usable() { return legacy::amx_usable(); }

}  // namespace affine

const WeightKernels* affine_weight_kernels(DType w, SimdLevel level) {
  const int i = affine::type_index(w);
  if (i < 0) return nullptr;
  static const affine::Tables tables;
  // Every type has all three levels, and the legacy q8_1 quantizer of the same level exists.
  return &tables.entries[static_cast<int>(level)][i];
}

}  // namespace kiln::kernels
