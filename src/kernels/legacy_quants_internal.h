#pragma once
// Internal to the legacy block formats (q4_0, q4_1, q5_0, q5_1, q8_0 weights; q8_0 / q8_1
// activations): what the scalar, AVX2 and AVX-512 translation units share.
//
// The SIMD files include only this header, <immintrin.h> and the C headers, never inline C++
// library code: an inline function instantiated in a TU built with -mavx512f could be the copy
// the linker keeps, and would then run on a CPU without AVX-512. Scratch memory therefore comes
// from `legacy_scratch` below, which lives in the scalar TU.
#include <cstddef>
#include <cstdint>

#include "kernels/matmul.h"

namespace kiln::kernels::legacy {

// Per-thread scratch of at least `bytes` bytes, 64-byte aligned, valid until the next call on
// the same thread. `slot` picks one of three independent buffers (0: activations, 1: unpacked
// weights, 2: a copied tail of weight rows).
std::uint8_t* legacy_scratch(int slot, std::size_t bytes);

// Activation quantizers of all levels round x / d half to even (nearbyint in the default
// rounding mode, vcvtps2dq in SIMD), so every level produces the same bytes. The stored-weight
// quantizers (quantize_row_ref) use ggml's roundf instead, to match ggml's files.
void quantize_act_q8_0_scalar(const float* x, void* dst, std::int64_t k);
void quantize_act_q8_1_scalar(const float* x, void* dst, std::int64_t k);

// The function tables of each level; nullptr for a type outside the family.
const WeightKernels* scalar_kernels(DType w);
const WeightKernels* avx2_kernels(DType w);
const WeightKernels* avx512_kernels(DType w);

}  // namespace kiln::kernels::legacy
