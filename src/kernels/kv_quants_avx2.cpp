// The AVX2 path of kernels/kv_quants.h: each cached block is turned into floats 16 values
// (two registers) at a time and multiplied into every query head sharing its KV head while in
// registers. With 16 registers, scores take up to 8 heads at once and values up to 4.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernels/kv_quants_simd.h"
#include "kernels/reduce_avx2.h"
#include "kernels/simd_scalars.h"

namespace kiln::kernels::avx2 {
namespace {

constexpr int kMaxScoreHeads = 8;
constexpr int kMaxValueHeads = 4;

// Each Block::load16 gives values [16 * half, 16 * half + 16) of a block as two registers.

// x = d * q.
struct Q8_0Block {
  static constexpr std::size_t kBytes = 34;
  static KILN_INLINE void load16(const std::uint8_t* b, int half, __m256& x0, __m256& x1) {
    const __m256 d = _mm256_set1_ps(half_to_float(load_u16(b)));
    const std::uint8_t* qs = b + 2 + 16 * half;
    x0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs)))), d);
    x1 = _mm256_mul_ps(
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs + 8)))), d);
  }
};

// Values 0..15 of a block's nibbles are the low nibbles of its 16 bytes, 16..31 the high ones.
KILN_INLINE void load_nibbles16(const std::uint8_t* qs, int half, __m256i& q0, __m256i& q1) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i shifted = half ? _mm_srli_epi16(bytes, 4) : bytes;
  const __m128i nibbles = _mm_and_si128(shifted, _mm_set1_epi8(0x0F));
  q0 = _mm256_cvtepu8_epi32(nibbles);
  q1 = _mm256_cvtepu8_epi32(_mm_srli_si128(nibbles, 8));
}

// x = d * (q - 8).
struct Q4_0Block {
  static constexpr std::size_t kBytes = 18;
  static KILN_INLINE void load16(const std::uint8_t* b, int half, __m256& x0, __m256& x1) {
    const __m256 d = _mm256_set1_ps(half_to_float(load_u16(b)));
    __m256i q0, q1;
    load_nibbles16(b + 2, half, q0, q1);
    const __m256i eight = _mm256_set1_epi32(8);
    x0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q0, eight)), d);
    x1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q1, eight)), d);
  }
};

// x = d * q + m.
struct Q4_1Block {
  static constexpr std::size_t kBytes = 20;
  static KILN_INLINE void load16(const std::uint8_t* b, int half, __m256& x0, __m256& x1) {
    const __m256 d = _mm256_set1_ps(half_to_float(load_u16(b)));
    const __m256 m = _mm256_set1_ps(half_to_float(load_u16(b + 2)));
    __m256i q0, q1;
    load_nibbles16(b + 4, half, q0, q1);
    x0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q0), d, m);
    x1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q1), d, m);
  }
};

template <class Block, int NQ>
void scores_for_heads(const std::uint8_t* k, std::size_t row_bytes, std::int64_t n_rows, const float* q,
                      std::int64_t q_stride, std::int64_t hd, float scale, float* s, std::int64_t s_stride) {
  const std::int64_t nb = hd / 32;
  for (std::int64_t r = 0; r < n_rows; ++r) {
    const std::uint8_t* kr = k + static_cast<std::size_t>(r) * row_bytes;
    __m256 part[NQ];
#pragma GCC unroll 8
    for (int g = 0; g < NQ; ++g) part[g] = _mm256_setzero_ps();
    for (std::int64_t b = 0; b < nb; ++b)
      for (int half = 0; half < 2; ++half) {
        __m256 x0, x1;
        Block::load16(kr + static_cast<std::size_t>(b) * Block::kBytes, half, x0, x1);
        const float* qb = q + b * 32 + half * 16;
#pragma GCC unroll 8
        for (int g = 0; g < NQ; ++g) {
          part[g] = _mm256_fmadd_ps(x0, _mm256_loadu_ps(qb + g * q_stride), part[g]);
          part[g] = _mm256_fmadd_ps(x1, _mm256_loadu_ps(qb + g * q_stride + 8), part[g]);
        }
      }
#pragma GCC unroll 8
    for (int g = 0; g < NQ; ++g) s[g * s_stride + r] = scale * reduce_add(part[g]);
  }
}

template <class Block, int NQ>
void values_for_heads(const std::uint8_t* v, std::size_t row_bytes, std::int64_t n_rows, const float* p,
                      std::int64_t p_stride, std::int64_t hd, float* out, std::int64_t out_stride) {
  const std::int64_t nb = hd / 32;
  for (std::int64_t b = 0; b < nb; ++b)
    for (int half = 0; half < 2; ++half) {
      const std::int64_t col = b * 32 + half * 16;
      __m256 acc[NQ][2];
#pragma GCC unroll 4
      for (int g = 0; g < NQ; ++g) {
        acc[g][0] = _mm256_loadu_ps(out + g * out_stride + col);
        acc[g][1] = _mm256_loadu_ps(out + g * out_stride + col + 8);
      }
      const std::uint8_t* vb = v + static_cast<std::size_t>(b) * Block::kBytes;
      for (std::int64_t r = 0; r < n_rows; ++r) {
        __m256 x0, x1;
        Block::load16(vb + static_cast<std::size_t>(r) * row_bytes, half, x0, x1);
#pragma GCC unroll 4
        for (int g = 0; g < NQ; ++g) {
          const __m256 pr = _mm256_set1_ps(p[g * p_stride + r]);
          acc[g][0] = _mm256_fmadd_ps(pr, x0, acc[g][0]);
          acc[g][1] = _mm256_fmadd_ps(pr, x1, acc[g][1]);
        }
      }
#pragma GCC unroll 4
      for (int g = 0; g < NQ; ++g) {
        _mm256_storeu_ps(out + g * out_stride + col, acc[g][0]);
        _mm256_storeu_ps(out + g * out_stride + col + 8, acc[g][1]);
      }
    }
}

template <class Block>
void scores(const void* k, std::size_t row_bytes, std::int64_t n_rows, const float* q, std::int64_t q_stride,
            std::int64_t n_q, std::int64_t hd, float scale, float* s, std::int64_t s_stride) {
  const auto* kb = static_cast<const std::uint8_t*>(k);
  for (std::int64_t g0 = 0; g0 < n_q; g0 += kMaxScoreHeads) {
    const float* qg = q + g0 * q_stride;
    float* sg = s + g0 * s_stride;
    const std::int64_t left = n_q - g0;
    switch (left < kMaxScoreHeads ? left : kMaxScoreHeads) {
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
  for (std::int64_t g0 = 0; g0 < n_q; g0 += kMaxValueHeads) {
    const float* pg = p + g0 * p_stride;
    float* og = out + g0 * out_stride;
    const std::int64_t left = n_q - g0;
    switch (left < kMaxValueHeads ? left : kMaxValueHeads) {
      case 1: values_for_heads<Block, 1>(vb, row_bytes, n_rows, pg, p_stride, hd, og, out_stride); break;
      case 2: values_for_heads<Block, 2>(vb, row_bytes, n_rows, pg, p_stride, hd, og, out_stride); break;
      case 3: values_for_heads<Block, 3>(vb, row_bytes, n_rows, pg, p_stride, hd, og, out_stride); break;
      default: values_for_heads<Block, 4>(vb, row_bytes, n_rows, pg, p_stride, hd, og, out_stride); break;
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

}  // namespace kiln::kernels::avx2
