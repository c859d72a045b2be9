// kiln's affine block formats' entry points: composes each level's table from the family's
// dot products and q8_1's activation quantizer (shared with q4_1 weights), and owns the
// per-thread scratch of the SIMD kernels.
#include "kernels/affine_quants_internal.h"
#include "kernels/kernel_families.h"
#include "kernels/legacy_quants_internal.h"
#include "kernels/thread_scratch.h"

namespace kiln::kernels {
namespace affine {
namespace {

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
  WeightKernels entries[3][kAffineTypeCount];
  Tables() {
    for (SimdLevel level : {SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512}) {
      const WeightKernels* q4_1 = legacy_weight_kernels(DType::Q4_1, level);
      for (int i = 0; i < kAffineTypeCount; ++i) {
        const Fns* f = fns_at(kAffineTypes[i], level);
        entries[static_cast<int>(level)][i] =
            WeightKernels{kAffineTypes[i], DType::Q8_1, q4_1->quantize_act, f->vec_dot, f->gemm, level};
      }
    }
  }
};

}  // namespace

std::uint8_t* affine_scratch(int slot, std::size_t bytes) {
  thread_local ScratchSlots slots;
  return slots.get(slot, bytes);
}

bool amx_usable() { return legacy::amx_usable(); }

}  // namespace affine

const WeightKernels* affine_weight_kernels(DType w, SimdLevel level) {
  const int i = affine::affine_type_index(w);
  if (i < 0) return nullptr;
  static const affine::Tables tables;
  // Every type has all three levels, and the legacy q8_1 quantizer of the same level exists.
  return &tables.entries[static_cast<int>(level)][i];
}

}  // namespace kiln::kernels
