// Placeholder so the tree builds while this family is written; replaced by its implementation.
#include "kernels/kernel_families.h"

namespace kiln::kernels {
const WeightKernels* legacy_weight_kernels(DType, SimdLevel) { return nullptr; }
bool legacy_quantize_row_ref(DType, const float*, void*, std::int64_t) { return false; }
bool legacy_dequantize_row(DType, const void*, float*, std::int64_t) { return false; }
}  // namespace kiln::kernels
