#pragma once
// Internal to the legacy block formats (ggml's original blocks of 32 from before the K-quants:
// q4_0, q4_1, q5_0, q5_1, q8_0 weights; q8_0 / q8_1 activations): what the scalar, AVX2 and
// AVX-512 translation units share.
//
// The SIMD files include only this header, <immintrin.h>, the C headers and the helpers with
// internal linkage (simd_scalars.h, reduce_avx2.h, row_group_*.h), never inline C++ library
// code: an inline function instantiated in a TU built with -mavx512f could be the copy
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

// ---- AMX (used by the AVX-512 gemm; see legacy_quants_amx.cpp) ------------------------------

// True when the CPU has AMX-INT8 and Linux granted this process the tile state (asked once).
bool amx_usable();

// A group of 16 weight rows unpacked by the AVX-512 gemm: nb blocks, block_stride bytes apart,
// each 8 x 64 bytes of quants in VNNI order followed (at scale_offset) by 16 float scales and,
// for q4_1 / q5_1 (has_min), at min_offset by 16 float zero points.
struct PackedWeights {
  const std::uint8_t* blocks;
  std::int64_t nb;
  std::size_t block_stride, scale_offset, min_offset;
  bool has_min;
};

// Activation rows split into arrays (see ActPanel in legacy_quants_panel.h).
struct ActRows {
  const std::int8_t* qs;  // (M, nb * 32), row stride qs_stride
  std::int64_t qs_stride;
  const float* d;            // (M, nb)
  const std::int32_t* bias;  // (M, nb)
  const float* s;            // (M, nb) q8_1's d * sum(q), used when the weights have a zero point
  std::int64_t nb;
};

// y[m][n0 + j] (j where n_mask has bit j) for m in [m_begin, m_end) in whole tiles of 16 rows
// (m_end - m_begin a multiple of 16).
void amx_gemm_rows(const PackedWeights& w, const ActRows& act, std::int64_t m_begin, std::int64_t m_end, float* y,
                   std::int64_t ldy, std::int64_t n0, std::uint16_t n_mask);

// The function tables of each level; nullptr for a type outside the family.
const WeightKernels* scalar_kernels(DType w);
const WeightKernels* avx2_kernels(DType w);
const WeightKernels* avx512_kernels(DType w);

// ---- AVX-512 VBMI (legacy_quants_vbmi.cpp) ----------------------------------------------------

// Up to this many activation rows, CPUs with VBMI take the row-wise kernel below instead of
// the AVX-512 gemm's row-per-lane one. Beyond 4 the row-wise kernel must hold fewer weight
// rows in flight and lost: decode steps of 6 / 8 sequences (1.1B q4_0) took 52 / 63 ms
// against 46 / 57 ms with the row-per-lane kernel.
constexpr std::int64_t kRowwiseMaxRows = 4;

// The gemm contract of WeightKernels for w_type in {Q4_0, Q4_1, Q5_0, Q5_1, Q8_0}, one weight
// row at a time in stored order; M <= kRowwiseMaxRows. Needs AVX-512 VBMI.
void rowwise_gemm(DType w_type, std::int64_t k, const void* w, std::size_t w_stride, const void* a,
                  std::size_t a_stride, std::int64_t M, std::int64_t n_begin, std::int64_t n_end, float* y,
                  std::int64_t ldy);

// The AVX-512 tables with few-row gemms going to rowwise_gemm; nullptr for a type outside the
// family or a CPU without VBMI. The AVX-512 level uses these where they exist.
const WeightKernels* vbmi_kernels(DType w);

// ---- AVX-512 column tiles (legacy_quants_columns_avx512.cpp) ----------------------------------

// Activation rows from which the AVX-512 gemm takes the column-tile kernel below (a decode step
// of several sequences, a short prompt chunk); fewer rows stay row-per-lane or row-wise, more go
// to the unpacked-panel tiles and AMX.
constexpr std::int64_t kColumnsMinRows = 5;
constexpr std::int64_t kColumnsMaxRows = 64;

// The gemm contract of WeightKernels for w_type in {Q4_0, Q4_1, Q5_0, Q5_1, Q8_0}: 16 activation
// rows per vector, 8 weight rows per pass. Needs AVX-512 VNNI (BW, VL).
void columns_gemm(DType w_type, std::int64_t k, const void* w, std::size_t w_stride, const void* a,
                  std::size_t a_stride, std::int64_t M, std::int64_t n_begin, std::int64_t n_end, float* y,
                  std::int64_t ldy);

}  // namespace kiln::kernels::legacy
