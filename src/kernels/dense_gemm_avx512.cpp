// The AVX-512 packers and micro-kernels of dense_gemm (layout: dense_gemm_internal.h).
//
// The tile is 12 rows of A × 32 columns of B: 24 zmm accumulators, two vectors of B per unit
// of k and one broadcast of A per row, which vfmadd231ps / vdpbf16ps take as an embedded
// broadcast from memory. Lines whose k runs are contiguous in memory (A as stored, B stored
// transposed) are packed through a 16 × 16 transpose of 32-bit units in registers; bf16 pairs
// are 32-bit units too, so both precisions share it.
#include <immintrin.h>

#include <algorithm>

#include "core/cpu_features.h"
#include "kernels/dense_gemm_internal.h"

#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace kiln::kernels::dense_gemm_detail {
namespace {

constexpr int kMr = 12;
constexpr int kNr = 32;

inline __mmask16 first_16(std::int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << n) - 1u);
}

// r[i] becomes column i of the 16 × 16 matrix of 32-bit elements whose rows were r[0..15].
inline void transpose16(__m512 (&r)[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // Per group g of four rows, u[4g + j] holds in 128-bit lane L the elements of column 4L + j.
  __m512 u[16];
  for (int g = 0; g < 4; ++g) {
    const __m512d t0 = _mm512_castps_pd(t[4 * g]), t1 = _mm512_castps_pd(t[4 * g + 1]);
    const __m512d t2 = _mm512_castps_pd(t[4 * g + 2]), t3 = _mm512_castps_pd(t[4 * g + 3]);
    u[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
    u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
    u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
    u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
  }
  for (int j = 0; j < 4; ++j) {
    const __m512 s0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x44);
    const __m512 s1 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xEE);
    const __m512 s2 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x44);
    const __m512 s3 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xEE);
    r[j] = _mm512_shuffle_f32x4(s0, s2, 0x88);
    r[4 + j] = _mm512_shuffle_f32x4(s0, s2, 0xDD);
    r[8 + j] = _mm512_shuffle_f32x4(s1, s3, 0x88);
    r[12 + j] = _mm512_shuffle_f32x4(s1, s3, 0xDD);
  }
}

// 16 units of one line whose elements are contiguous: 16 floats, or 32 floats as bf16 pairs.
inline __m512 load_units(const float* p, std::int64_t elems_left, GemmPrecision precision) {
  if (precision == GemmPrecision::F32) return _mm512_maskz_loadu_ps(first_16(elems_left), p);
  const __m512 lo = _mm512_maskz_loadu_ps(first_16(elems_left), p);
  const __m512 hi = elems_left > 16 ? _mm512_maskz_loadu_ps(first_16(elems_left - 16), p + 16) : _mm512_setzero_ps();
  return _mm512_castsi512_ps((__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}

// Lines with contiguous k: up to 16 lines at a time are loaded 16 units wide and transposed.
void pack_k_contiguous(const LineSource& src, std::int64_t line0, int count, std::int64_t k0, std::int64_t klen,
                       int width, GemmPrecision precision, std::uint32_t* dst) {
  const std::int64_t units = units_for(klen, precision);
  const std::int64_t per_unit = precision == GemmPrecision::BF16 ? 2 : 1;
  for (int g0 = 0; g0 < width; g0 += 16) {
    const int lanes = std::min(16, width - g0);
    const int live = std::clamp(count - g0, 0, 16);
    for (std::int64_t u0 = 0; u0 < units; u0 += 16) {
      const std::int64_t elems_left = klen - u0 * per_unit;
      __m512 r[16];
      for (int l = 0; l < 16; ++l)
        r[l] = l < live ? load_units(src.data + (line0 + g0 + l) * src.stride + k0 + u0 * per_unit, elems_left, precision)
                        : _mm512_setzero_ps();
      transpose16(r);
      const int n = static_cast<int>(std::min<std::int64_t>(16, units - u0));
      for (int i = 0; i < n; ++i)
        _mm512_mask_storeu_ps(reinterpret_cast<float*>(dst + (u0 + i) * width + g0), first_16(lanes), r[i]);
    }
  }
}

// Lines contiguous in memory at each k (A stored transposed, B as stored): f32 rows are copied;
// for bf16, the rows k and k + 1 are rounded and interleaved into pairs.
void pack_lines_contiguous(const LineSource& src, std::int64_t line0, int count, std::int64_t k0, std::int64_t klen,
                           int width, GemmPrecision precision, std::uint32_t* dst) {
  const std::int64_t units = units_for(klen, precision);
  if (precision == GemmPrecision::F32) {
    for (std::int64_t u = 0; u < units; ++u) {
      const float* row = src.data + (k0 + u) * src.stride + line0;
      for (int g0 = 0; g0 < width; g0 += 16) {
        const __m512 v = _mm512_maskz_loadu_ps(first_16(std::max(0, count - g0)), row + g0);
        _mm512_mask_storeu_ps(reinterpret_cast<float*>(dst + u * width + g0), first_16(width - g0), v);
      }
    }
    return;
  }
  // Word i of [r0 | r1] to word 2i (from r0) and 2i + 1 (from r1).
  const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22,
                                              6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  for (std::int64_t u = 0; u < units; ++u) {
    const float* row0 = src.data + (k0 + 2 * u) * src.stride + line0;
    const bool has_odd = 2 * u + 1 < klen;
    for (int g0 = 0; g0 < width; g0 += 16) {
      const __mmask16 m = first_16(std::max(0, count - g0));
      const __m256bh b0 = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, row0 + g0));
      const __m256bh b1 =
          _mm512_cvtneps_pbh(has_odd ? _mm512_maskz_loadu_ps(m, row0 + src.stride + g0) : _mm512_setzero_ps());
      const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512((__m256i)b0), (__m256i)b1, 1);
      const __m512i pairs = _mm512_permutexvar_epi16(interleave, both);
      _mm512_mask_storeu_epi32(dst + u * width + g0, first_16(width - g0), pairs);
    }
  }
}

void pack(const LineSource& src, std::int64_t line0, int count, std::int64_t k0, std::int64_t klen, int width,
          GemmPrecision precision, std::uint32_t* dst) {
  if (src.k_contiguous) pack_k_contiguous(src, line0, count, k0, klen, width, precision, dst);
  else pack_lines_contiguous(src, line0, count, k0, klen, width, precision, dst);
}

template <GemmPrecision P>
void micro(std::int64_t units, const std::uint32_t* a, const std::uint32_t* b, float* c, std::int64_t ldc,
           bool accumulate) {
  __m512 acc0[kMr], acc1[kMr];
#pragma GCC unroll 12
  for (int i = 0; i < kMr; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
  for (std::int64_t u = 0; u < units; ++u) {
    const __m512 b0 = _mm512_load_ps(reinterpret_cast<const float*>(b + u * kNr));
    const __m512 b1 = _mm512_load_ps(reinterpret_cast<const float*>(b + u * kNr + 16));
    const std::uint32_t* au = a + u * kMr;
#pragma GCC unroll 12
    for (int i = 0; i < kMr; ++i) {
      if constexpr (P == GemmPrecision::F32) {
        const __m512 ai = _mm512_set1_ps(reinterpret_cast<const float*>(au)[i]);
        acc0[i] = _mm512_fmadd_ps(ai, b0, acc0[i]);
        acc1[i] = _mm512_fmadd_ps(ai, b1, acc1[i]);
      } else {
        const __m512bh ai = (__m512bh)_mm512_set1_epi32(static_cast<int>(au[i]));
        acc0[i] = _mm512_dpbf16_ps(acc0[i], ai, (__m512bh)b0);
        acc1[i] = _mm512_dpbf16_ps(acc1[i], ai, (__m512bh)b1);
      }
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < kMr; ++i) {
    float* row = c + i * ldc;
    if (accumulate) {
      acc0[i] = _mm512_add_ps(acc0[i], _mm512_loadu_ps(row));
      acc1[i] = _mm512_add_ps(acc1[i], _mm512_loadu_ps(row + 16));
    }
    _mm512_storeu_ps(row, acc0[i]);
    _mm512_storeu_ps(row + 16, acc1[i]);
  }
}

// kc: B's micro-panel (kc units × 32 columns × 4 bytes = 32 KiB) and A's (12 KiB) share the
// 48 KiB L1. mc × kc × 4 = 240 KiB of A per block in the 1 MiB L2.
const Kernels kF32{kMr, kNr, 256, 240, 1024, pack, micro<GemmPrecision::F32>, SimdLevel::Avx512};
const Kernels kBf16{kMr, kNr, 256, 240, 1024, pack, micro<GemmPrecision::BF16>, SimdLevel::Avx512};

}  // namespace

const Kernels* avx512_kernels(GemmPrecision precision) {
  const CpuFeatures& f = cpu_features();
  if (!f.avx512f || !f.avx512bw) return nullptr;
  if (precision == GemmPrecision::BF16) return f.avx512bf16 ? &kBf16 : nullptr;
  return &kF32;
}

}  // namespace kiln::kernels::dense_gemm_detail
