#pragma once
// Internal to kiln's affine block formats (a4g64, a4g128, a8g32, a8g64, a8g128; see blocks.h):
// what the scalar, AVX2, AVX-512 and AMX translation units share.
//
// Every weight is x = d * q + m with an unsigned quant q (4 or 8 bits) and one f16 scale d and
// f16 minimum m per group of G weights. Activations are q8_1 blocks of 32 (the same conversion
// as for q4_1 weights, so linear() can share it): a = da * qa with s = da * sum(qa) per block.
// One weight group spans G / 32 activation blocks b, and
//   dot(w, a) = sum over groups of  d * sum_b(da[b] * sum(q * qa)[b])  +  m * sum_b(s[b]),
// an exact integer sum per block of 32, then the scales.
//
// As in the legacy family, the SIMD files include only this header, <immintrin.h>, C headers
// and the helpers with internal linkage (simd_scalars.h, ...), never inline C++ library code
// (an inline function compiled with -mavx512f could be the copy the linker keeps). Scratch
// memory comes from `affine_scratch`, in the plain TU.
#include <cstddef>
#include <cstdint>

#include "kernels/matmul.h"

namespace kiln::kernels::affine {

// The layout of one affine type: block = {f16 d, f16 m, quants}, G weights per block.
struct Layout {
  int bits;                 // 4 or 8
  int group;                // G: 32, 64 or 128
  std::size_t block_bytes;  // 4 + G * bits / 8
};
// The layout of an affine type, or nullptr for any other type.
const Layout* layout_of(DType t);

// Bytes of quants per 32 weights: 16 (4-bit, packed as q4_1) or 32 (8-bit).
constexpr std::size_t sub_block_bytes(int bits) { return bits == 4 ? 16 : 32; }

// Per-thread scratch of at least `bytes` bytes, 64-byte aligned, valid until the next call on
// the same thread with the same slot (0: activation scales, 1: unpacked weights, 2: a copied
// tail of weight rows).
std::uint8_t* affine_scratch(int slot, std::size_t bytes);

// The dot product and tile product of one type at one level; the activation quantizer is
// q8_1's of the same level, taken from the legacy family (affine_quants.cpp composes them).
struct Fns {
  VecDotFn vec_dot;
  GemmFn gemm;
};
const Fns* scalar_fns(DType w);
const Fns* avx2_fns(DType w);
const Fns* avx512_fns(DType w);

namespace {  // internal linkage: the SIMD translation units include these too

// The family's types, in the order of every level's table of Fns.
constexpr DType kAffineTypes[] = {DType::A4G64, DType::A4G128, DType::A8G32, DType::A8G64, DType::A8G128};
constexpr int kAffineTypeCount = sizeof(kAffineTypes) / sizeof(kAffineTypes[0]);

// The index of t in kAffineTypes, or -1 for a type outside the family.
constexpr int affine_type_index(DType t) {
  for (int i = 0; i < kAffineTypeCount; ++i) {
    if (kAffineTypes[i] == t) return i;
  }
  return -1;
}

// One level's entry for w from its table in kAffineTypes order; nullptr outside the family.
constexpr const Fns* fns_of(const Fns (&table)[kAffineTypeCount], DType w) {
  const int i = affine_type_index(w);
  return i < 0 ? nullptr : &table[i];
}

}  // namespace

// ---- activation rows as the SIMD kernels read them ----------------------------------------

// M rows of q8_1 blocks, read in place (quants at row + b * 36 + 4), with the block scales
// converted once per call: d[m * nb + b] = da, and gs[m * n_groups + g] = the sum of s over the
// activation blocks of weight group g (what the group's minimum multiplies).
struct ActView {
  const std::uint8_t* rows;  // (M, a_stride) bytes of q8_1 blocks
  std::size_t a_stride;
  const float* d;   // (M, nb)
  const float* gs;  // (M, n_groups)
  std::int64_t nb, n_groups;
};

// ---- AMX (the AVX-512 gemm hands whole tiles of 16 activation rows to it) ------------------

// One group of 16 weight rows unpacked by the AVX-512 gemm: per activation block b, 8 rows of
// 64 bytes (4 consecutive quants of each of the 16 rows, AMX's VNNI layout for B) at
// blocks + b * block_stride; per weight group g, 16 float scales and 16 float minimums at
// scales + g * 32 (d first, then m).
struct PackedRows {
  const std::uint8_t* blocks;
  std::size_t block_stride;
  const float* scales;
  int blocks_per_group;  // G / 32
};

// True when AMX-INT8 is there and Linux granted the tile state (asked once, legacy family).
bool amx_usable();
// y[m][n0 + j] for m in [m_begin, m_end) (a multiple of 16 rows) and the lanes j in n_mask.
void amx_gemm_rows(const PackedRows& w, const ActView& act, std::int64_t m_begin, std::int64_t m_end, float* y,
                   std::int64_t ldy, std::int64_t n0, std::uint16_t n_mask);

}  // namespace kiln::kernels::affine
