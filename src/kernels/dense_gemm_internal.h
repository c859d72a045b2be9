#pragma once
// Internal: the packed layout and the per-ISA functions behind kernels/dense_gemm.h.
//
// A packed panel holds `width` lines of an operand (rows of A, or columns of B) over a range
// of k, as `units` groups of 32 bits, unit-major: panel[u * width + l] is unit u of line l.
// A unit is one f32 element (k) for GemmPrecision::F32, or for BF16 the pair of elements
// (2u, 2u + 1) as two bf16 values, the even one in the low half: exactly the pairs vdpbf16ps
// multiplies. Lines past the operand's edge, and a missing odd element, are zero, so the
// micro-kernel always computes whole tiles.
#include <cstdint>

#include "kernels/dense_gemm.h"

namespace kiln::kernels::dense_gemm_detail {

// Where an operand's lines come from. Line l, element k is at
//   data[l * stride + k]   when k_contiguous (A as stored, or B stored transposed), else
//   data[k * stride + l]   (A stored transposed, or B as stored).
struct LineSource {
  const float* data;
  std::int64_t stride;
  bool k_contiguous;
};

// Packs lines [line0, line0 + count) (count <= width), elements [k0, k0 + klen), into `dst`:
// units_for(klen) × width units, zero-padded.
using PackFn = void (*)(const LineSource& src, std::int64_t line0, int count, std::int64_t k0, std::int64_t klen,
                        int width, GemmPrecision precision, std::uint32_t* dst);
// c[i * ldc + j] (+)= the product over `units` of A panel line i and B panel line j, for the
// whole MR × NR tile.
using MicroFn = void (*)(std::int64_t units, const std::uint32_t* a, const std::uint32_t* b, float* c,
                         std::int64_t ldc, bool accumulate);

struct Kernels {
  int mr, nr;         // the register tile
  std::int64_t kc;    // units of k per packed block (B's micro-panel, kc × nr, stays in L1)
  std::int64_t mc;    // rows of A per packed block (a multiple of mr; the block stays in L2)
  std::int64_t nc;    // columns of B per packed block (a multiple of nr)
  PackFn pack;
  MicroFn micro;      // for the precision these kernels were chosen for
  SimdLevel level;
};

inline std::int64_t units_for(std::int64_t klen, GemmPrecision p) {
  return p == GemmPrecision::BF16 ? (klen + 1) / 2 : klen;
}

// nullptr when the CPU or the build lacks the path.
const Kernels* avx512_kernels(GemmPrecision precision);
const Kernels& scalar_kernels(GemmPrecision precision);

}  // namespace kiln::kernels::dense_gemm_detail
