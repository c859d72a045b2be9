// The AVX-512 path of kernels/kv_quants.h: each cached block of 32 values becomes two registers
// of floats once, and is multiplied into every query head that shares its KV head while it is
// in registers (the loop shapes of the f16 attention kernels in ops_avx512.cpp).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernels/kv_quants_simd.h"
#include "kernels/reduce_avx512.h"
#include "kernels/simd_scalars.h"

// GCC 12's AVX-512 headers build their "undefined" registers from self-initialised locals,
// which -Wuninitialized reports at every inlined use; the warning says nothing about this code.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace kiln::kernels::avx512 {
namespace {

// Heads handled at once, so that every accumulator stays in a register.
constexpr int kMaxHeads = 8;

// x = d * q, q the 32 int8 after the f16 scale.
struct Q8_0Block {
  static constexpr std::size_t kBytes = 34;
  static KILN_INLINE void load(const std::uint8_t* b, __m512& lo, __m512& hi) {
    const __m512 d = _mm512_set1_ps(half_to_float(load_u16(b)));
    const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
    const __m128i q1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 18));
    lo = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0)), d);
    hi = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1)), d);
  }
};

// The 32 values of 16 bytes of nibbles: values 0..15 in the low nibbles, 16..31 in the high.
KILN_INLINE void load_nibbles(const std::uint8_t* qs, __m512i& lo, __m512i& hi) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i low_mask = _mm_set1_epi8(0x0F);
  lo = _mm512_cvtepu8_epi32(_mm_and_si128(bytes, low_mask));
  hi = _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(bytes, 4), low_mask));
}

// x = d * (q - 8).
struct Q4_0Block {
  static constexpr std::size_t kBytes = 18;
  static KILN_INLINE void load(const std::uint8_t* b, __m512& lo, __m512& hi) {
    const __m512 d = _mm512_set1_ps(half_to_float(load_u16(b)));
    __m512i q0, q1;
    load_nibbles(b + 2, q0, q1);
    const __m512i eight = _mm512_set1_epi32(8);
    lo = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q0, eight)), d);
    hi = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q1, eight)), d);
  }
};

// x = d * q + m.
struct Q4_1Block {
  static constexpr std::size_t kBytes = 20;
  static KILN_INLINE void load(const std::uint8_t* b, __m512& lo, __m512& hi) {
    const __m512 d = _mm512_set1_ps(half_to_float(load_u16(b)));
    const __m512 m = _mm512_set1_ps(half_to_float(load_u16(b + 2)));
    __m512i q0, q1;
    load_nibbles(b + 4, q0, q1);
    lo = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q0), d, m);
    hi = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q1), d, m);
  }
};

template <class Block, int NQ>
void scores_for_heads(const std::uint8_t* k, std::size_t row_bytes, std::int64_t n_rows, const float* q,
                      std::int64_t q_stride, std::int64_t hd, float scale, float* s, std::int64_t s_stride) {
  const std::int64_t nb = hd / 32;
  for (std::int64_t r = 0; r < n_rows; ++r) {
    const std::uint8_t* kr = k + static_cast<std::size_t>(r) * row_bytes;
    __m512 part[NQ];
#pragma GCC unroll 8
    for (int g = 0; g < NQ; ++g) part[g] = _mm512_setzero_ps();
    for (std::int64_t b = 0; b < nb; ++b) {
      __m512 lo, hi;
      Block::load(kr + static_cast<std::size_t>(b) * Block::kBytes, lo, hi);
      const float* qb = q + b * 32;
#pragma GCC unroll 8
      for (int g = 0; g < NQ; ++g) {
        part[g] = _mm512_fmadd_ps(lo, _mm512_loadu_ps(qb + g * q_stride), part[g]);
        part[g] = _mm512_fmadd_ps(hi, _mm512_loadu_ps(qb + g * q_stride + 16), part[g]);
      }
    }
    float sums[NQ];
    reduce_lanes(part, sums);
#pragma GCC unroll 8
    for (int g = 0; g < NQ; ++g) s[g * s_stride + r] = scale * sums[g];
  }
}

template <class Block, int NQ>
void values_for_heads(const std::uint8_t* v, std::size_t row_bytes, std::int64_t n_rows, const float* p,
                      std::int64_t p_stride, std::int64_t hd, float* out, std::int64_t out_stride) {
  const std::int64_t nb = hd / 32;
  for (std::int64_t b = 0; b < nb; ++b) {
    __m512 acc[NQ][2];
#pragma GCC unroll 8
    for (int g = 0; g < NQ; ++g) {
      acc[g][0] = _mm512_loadu_ps(out + g * out_stride + b * 32);
      acc[g][1] = _mm512_loadu_ps(out + g * out_stride + b * 32 + 16);
    }
    const std::uint8_t* vb = v + static_cast<std::size_t>(b) * Block::kBytes;
    for (std::int64_t r = 0; r < n_rows; ++r) {
      __m512 lo, hi;
      Block::load(vb + static_cast<std::size_t>(r) * row_bytes, lo, hi);
#pragma GCC unroll 8
      for (int g = 0; g < NQ; ++g) {
        const __m512 pr = _mm512_set1_ps(p[g * p_stride + r]);
        acc[g][0] = _mm512_fmadd_ps(pr, lo, acc[g][0]);
        acc[g][1] = _mm512_fmadd_ps(pr, hi, acc[g][1]);
      }
    }
#pragma GCC unroll 8
    for (int g = 0; g < NQ; ++g) {
      _mm512_storeu_ps(out + g * out_stride + b * 32, acc[g][0]);
      _mm512_storeu_ps(out + g * out_stride + b * 32 + 16, acc[g][1]);
    }
  }
}

template <class Block>
void scores(const void* k, std::size_t row_bytes, std::int64_t n_rows, const float* q, std::int64_t q_stride,
            std::int64_t n_q, std::int64_t hd, float scale, float* s, std::int64_t s_stride) {
  const auto* kb = static_cast<const std::uint8_t*>(k);
  for (std::int64_t g0 = 0; g0 < n_q; g0 += kMaxHeads) {
    const float* qg = q + g0 * q_stride;
    float* sg = s + g0 * s_stride;
    const std::int64_t left = n_q - g0;
    switch (left < kMaxHeads ? left : kMaxHeads) {
      case 1: scores_for_heads<Block, 1>(kb, row_bytes, n_rows, qg, q_stride, hd, scale, sg, s_stride); break;
      case 2: scores_for_heads<Block, 2>(kb, row_bytes, n_rows, qg, q_stride, hd, scale, sg, s_stride); break;
      case 3: scores_for_heads<Block, 3>(kb, row_bytes, n_rows, qg, q_stride, hd, scale, sg, s_stride); break;
      case 4: scores_for_heads<Block, 4>(kb, row_bytes, n_rows, qg, q_stride, hd, scale, sg, s_stride); break;
      case 5: scores_for_heads<Block, 5>(kb, row_bytes, n_rows, qg, q_stride, hd, scale, sg, s_stride); break;
      case 6: scores_for_heads<Block, 6>(kb, row_bytes, n_rows, qg, q_stride, hd, scale, sg, s_stride); break;
      case 7: scores_for_heads<Block, 7>(kb, row_bytes, n_rows, qg, q_stride, hd, scale, sg, s_stride); break;
      default: scores_for_heads<Block, 8>(kb, row_bytes, n_rows, qg, q_stride, hd, scale, sg, s_stride); break;
    }
  }
}

template <class Block>
void values(const void* v, std::size_t row_bytes, std::int64_t n_rows, const float* p, std::int64_t p_stride,
            std::int64_t n_q, std::int64_t hd, float* out, std::int64_t out_stride) {
  const auto* vb = static_cast<const std::uint8_t*>(v);
  for (std::int64_t g0 = 0; g0 < n_q; g0 += kMaxHeads) {
    const float* pg = p + g0 * p_stride;
    float* og = out + g0 * out_stride;
    const std::int64_t left = n_q - g0;
    switch (left < kMaxHeads ? left : kMaxHeads) {
      case 1: values_for_heads<Block, 1>(vb, row_bytes, n_rows, pg, p_stride, hd, og, out_stride); break;
      case 2: values_for_heads<Block, 2>(vb, row_bytes, n_rows, pg, p_stride, hd, og, out_stride); break;
      case 3: values_for_heads<Block, 3>(vb, row_bytes, n_rows, pg, p_stride, hd, og, out_stride); break;
      case 4: values_for_heads<Block, 4>(vb, row_bytes, n_rows, pg, p_stride, hd, og, out_stride); break;
      case 5: values_for_heads<Block, 5>(vb, row_bytes, n_rows, pg, p_stride, hd, og, out_stride); break;
      case 6: values_for_heads<Block, 6>(vb, row_bytes, n_rows, pg, p_stride, hd, og, out_stride); break;
      case 7: values_for_heads<Block, 7>(vb, row_bytes, n_rows, pg, p_stride, hd, og, out_stride); break;
      default: values_for_heads<Block, 8>(vb, row_bytes, n_rows, pg, p_stride, hd, og, out_stride); break;
    }
  }
}

}  // namespace

void attn_scores_q(std::uint32_t type, const void* k, std::size_t row_bytes, std::int64_t n_rows, const float* q,
                   std::int64_t q_stride, std::int64_t n_q, std::int64_t hd, float scale, float* s,
                   std::int64_t s_stride) {
  switch (type) {
    case kKvQ8_0: return scores<Q8_0Block>(k, row_bytes, n_rows, q, q_stride, n_q, hd, scale, s, s_stride);
    case kKvQ4_0: return scores<Q4_0Block>(k, row_bytes, n_rows, q, q_stride, n_q, hd, scale, s, s_stride);
    case kKvQ4_1: return scores<Q4_1Block>(k, row_bytes, n_rows, q, q_stride, n_q, hd, scale, s, s_stride);
    default: return;  // the dispatcher checked the type
  }
}

void attn_values_q(std::uint32_t type, const void* v, std::size_t row_bytes, std::int64_t n_rows, const float* p,
                   std::int64_t p_stride, std::int64_t n_q, std::int64_t hd, float* out, std::int64_t out_stride) {
  switch (type) {
    case kKvQ8_0: return values<Q8_0Block>(v, row_bytes, n_rows, p, p_stride, n_q, hd, out, out_stride);
    case kKvQ4_0: return values<Q4_0Block>(v, row_bytes, n_rows, p, p_stride, n_q, hd, out, out_stride);
    case kKvQ4_1: return values<Q4_1Block>(v, row_bytes, n_rows, p, p_stride, n_q, hd, out, out_stride);
    default: return;
  }
}

}  // namespace kiln::kernels::avx512
