// The legacy block formats' entry points: picks the table of the requested SIMD level, and
// owns the per-thread scratch the SIMD kernels repack activations and weights into.
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <new>

#include "core/cpu_features.h"
#include "kernels/kernel_families.h"
#include "kernels/legacy_quants_internal.h"

namespace kiln::kernels {
namespace legacy {

namespace {

struct AlignedFree {
  void operator()(std::uint8_t* p) const { std::free(p); }
};

struct ScratchBuffer {
  std::unique_ptr<std::uint8_t, AlignedFree> data;
  std::size_t capacity = 0;
};

}  // namespace

std::uint8_t* legacy_scratch(int slot, std::size_t bytes) {
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
  const WeightKernels* kernels = nullptr;
  if (level >= SimdLevel::Avx512) kernels = legacy::vbmi_kernels(w);
  if (kernels == nullptr && level >= SimdLevel::Avx512) kernels = legacy::avx512_kernels(w);
  if (kernels == nullptr && level >= SimdLevel::Avx2) kernels = legacy::avx2_kernels(w);
  if (kernels == nullptr) kernels = legacy::scalar_kernels(w);
  return kernels;
}

}  // namespace kiln::kernels
