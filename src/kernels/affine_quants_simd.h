#pragma once
// Internal to the SIMD files of the affine formats (needs AVX2 or better at compile time): the
// per-format constants, unaligned loads, and the once-per-call conversion of the q8_1
// activation scales. Everything here has internal linkage, so each SIMD translation unit keeps
// its own copy compiled with its own flags (see affine_quants_internal.h).
#include <immintrin.h>

#include <cstddef>
#include <cstring>

#include "kernels/affine_quants_internal.h"
#include "kernels/blocks.h"
#include "kernels/reduce_avx2.h"
#include "kernels/simd_scalars.h"

namespace kiln::kernels::affine {
namespace {

// An affine format as template constants: a block of kGroup weights is {f16 d, f16 m, quants},
// and each run of 32 weights (one q8_1 activation block) has kSubBytes bytes of quants.
template <int Bits, int Group>
struct Format {
  static constexpr int kBits = Bits;
  static constexpr int kGroup = Group;
  static constexpr int kSubBlocks = Group / 32;
  static constexpr std::size_t kSubBytes = Bits == 4 ? 16 : 32;
  static constexpr std::size_t kBlockBytes = 4 + static_cast<std::size_t>(Group) * Bits / 8;
};
static_assert(Format<4, 64>::kBlockBytes == sizeof(block_a4g64) && Format<4, 128>::kBlockBytes == sizeof(block_a4g128) &&
                  Format<8, 32>::kBlockBytes == sizeof(block_a8g32) &&
                  Format<8, 64>::kBlockBytes == sizeof(block_a8g64) &&
                  Format<8, 128>::kBlockBytes == sizeof(block_a8g128),
              "Format matches the block structs");

// Offsets inside a q8_1 block (block_q8_1 is {f16 d, f16 s, int8 qs[32]}).
constexpr std::size_t kActBlockBytes = sizeof(block_q8_1);
constexpr std::size_t kActQs = 4;

// The activation view of M q8_1 rows (see ActView); with `want_qsum`, also the integer sum of
// each block's quants in qsum (M, nb), for the AVX2 8-bit path.
KILN_INLINE ActView view_activations(const void* a, std::size_t a_stride, std::int64_t M, std::int64_t nb,
                                     int sub_blocks, bool want_qsum, const std::int32_t** qsum) {
  const std::int64_t n_groups = nb / sub_blocks;
  std::uint8_t* mem = affine_scratch(0, static_cast<std::size_t>(M * (2 * nb + n_groups)) * 4 + 64);
  auto* d = reinterpret_cast<float*>(mem);
  auto* gs = d + M * nb;
  auto* sums = reinterpret_cast<std::int32_t*>(gs + M * n_groups);
  const auto* rows = static_cast<const std::uint8_t*>(a);
  for (std::int64_t m = 0; m < M; ++m) {
    const std::uint8_t* row = rows + m * a_stride;
    for (std::int64_t g = 0; g < n_groups; ++g) {
      float s = 0.0f;
      for (int j = 0; j < sub_blocks; ++j) {
        const std::int64_t b = g * sub_blocks + j;
        const std::uint8_t* block = row + b * kActBlockBytes;
        d[m * nb + b] = half_to_float(load_u16(block));
        s += half_to_float(load_u16(block + 2));
        if (want_qsum) {
          // sum(q) = sum(q ^ 0x80 read as unsigned) - 32 * 128, and psadbw sums unsigned bytes.
          const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + kActQs));
          const __m256i sad = _mm256_sad_epu8(_mm256_xor_si256(q, _mm256_set1_epi8(static_cast<char>(0x80))),
                                              _mm256_setzero_si256());
          const __m128i sad2 = _mm_add_epi64(_mm256_castsi256_si128(sad), _mm256_extracti128_si256(sad, 1));
          sums[m * nb + b] = static_cast<std::int32_t>(_mm_cvtsi128_si64(sad2) + _mm_extract_epi64(sad2, 1)) - 32 * 128;
        }
      }
      gs[m * n_groups + g] = s;
    }
  }
  if (qsum != nullptr) *qsum = sums;
  return ActView{rows, a_stride, d, gs, nb, n_groups};
}

KILN_INLINE const std::uint8_t* act_quants(const ActView& act, std::int64_t m, std::int64_t b) {
  return act.rows + m * act.a_stride + b * kActBlockBytes + kActQs;
}

}  // namespace
}  // namespace kiln::kernels::affine
