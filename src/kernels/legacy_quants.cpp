// Entry points of the legacy block formats (ggml's original q4_0, q4_1, q5_0, q5_1 and q8_0
// blocks of 32, "legacy" since the K-quants; activations in q8_0 / q8_1): picks the table of the
// requested SIMD level, and owns the per-thread scratch the SIMD kernels repack activations and
// weights into.
#include <sys/syscall.h>
#include <unistd.h>

#include "core/cpu_features.h"
#include "kernels/kernel_families.h"
#include "kernels/legacy_quants_internal.h"
#include "kernels/thread_scratch.h"

namespace kiln::kernels {
namespace legacy {

std::uint8_t* legacy_scratch(int slot, std::size_t bytes) {
  thread_local ScratchSlots slots;
  return slots.get(slot, bytes);
}

bool amx_usable() {
  static const bool usable = [] {
    const CpuFeatures& f = cpu_features();
    if (!f.amx_tile || !f.amx_int8) return false;
    // Linux keeps the 8 KB tile state off until a process asks for it (ARCH_REQ_XCOMP_PERM for
    // XFEATURE_XTILEDATA); a refusal leaves the VNNI path in use.
    constexpr int kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return usable;
}

namespace {

template <DType T>
void vbmi_gemm(std::int64_t k, const void* w, std::size_t w_stride, const void* a, std::size_t a_stride,
               std::int64_t M, std::int64_t n_begin, std::int64_t n_end, float* y, std::int64_t ldy) {
  if (M <= kRowwiseMaxRows) return rowwise_gemm(T, k, w, w_stride, a, a_stride, M, n_begin, n_end, y, ldy);
  avx512_kernels(T)->gemm(k, w, w_stride, a, a_stride, M, n_begin, n_end, y, ldy);
}

template <DType T>
const WeightKernels* vbmi_table() {
  static const WeightKernels table = [] {
    WeightKernels t = *avx512_kernels(T);
    t.gemm = vbmi_gemm<T>;
    return t;
  }();
  return &table;
}

}  // namespace

const WeightKernels* vbmi_kernels(DType w) {
  if (!cpu_features().avx512vbmi || avx512_kernels(w) == nullptr) return nullptr;
  switch (w) {
    case DType::Q4_0:
      return vbmi_table<DType::Q4_0>();
    case DType::Q4_1:
      return vbmi_table<DType::Q4_1>();
    case DType::Q5_0:
      return vbmi_table<DType::Q5_0>();
    case DType::Q5_1:
      return vbmi_table<DType::Q5_1>();
    case DType::Q8_0:
      return vbmi_table<DType::Q8_0>();
    default:
      return nullptr;
  }
}

}  // namespace legacy

const WeightKernels* legacy_weight_kernels(DType w, SimdLevel level) {
  // vbmi_kernels answers only on CPUs with AVX512-VBMI (an extension SimdLevel does not name).
  static constexpr KernelLevel kLevels[] = {{SimdLevel::Avx512, legacy::vbmi_kernels},
                                            {SimdLevel::Avx512, legacy::avx512_kernels},
                                            {SimdLevel::Avx2, legacy::avx2_kernels},
                                            {SimdLevel::Scalar, legacy::scalar_kernels}};
  return best_kernels(w, level, kLevels);
}

}  // namespace kiln::kernels
