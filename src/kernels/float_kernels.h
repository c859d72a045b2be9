#pragma once
// Internal: the f32 / f16 / bf16 weight kernels at each SIMD level. float_kernels.cpp holds the
// scalar reference and answers kernel_families.h; the SIMD tables live in
// float_kernels_avx2.cpp and float_kernels_avx512.cpp (instances of float_kernels_tiled.h).
//
//   weight  activations  product
//   F32     F32 (copy)   f32 FMA
//   F16     F32 (copy)   halves widened to f32 in registers (vcvtph2ps), f32 FMA
//   BF16    BF16         AVX-512: vdpbf16ps on bf16 pairs for M <= 6, both widened to f32
//                        (activations once per call) for larger M; AVX2 and scalar: widened
#include "kernels/matmul.h"

namespace kiln::kernels::float_kernels {

// nullptr for a type outside {F32, F16, BF16}.
const WeightKernels* scalar_weight_kernels(DType w);
const WeightKernels* avx2_weight_kernels(DType w);
const WeightKernels* avx512_weight_kernels(DType w);

// The activation "quantizer" of f32 and f16 weights at every level: activations stay f32.
void copy_f32_row(const float* x, void* dst, std::int64_t k);

// k floats to k bf16 values, rounded to nearest even as kiln::f32_to_bf16 (bit-exact).
void f32_to_bf16_row_ref(const float* x, std::uint16_t* y, std::int64_t k);

}  // namespace kiln::kernels::float_kernels
