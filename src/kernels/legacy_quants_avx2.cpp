// AVX2 kernels of the legacy block formats.
//
// The same shape as the AVX-512 path (see legacy_quants_avx512.cpp) with 8 weight rows per
// group, one per 32-bit lane, and without VNNI: vpmaddubsw multiplies unsigned weight bytes with
// signed activation bytes into 16-bit pairs and vpmaddwd adds the pairs into 32 bits. The pairs
// cannot overflow for q4/q5 quants (at most 2 * 31 * 127); q8_0 weights stay signed and use the
// sign trick instead: |w| times (a with the sign of w). With only 16 ymm registers, each block
// is unpacked once per tile of up to 4 activation rows.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/blocks.h"
#include "kernels/kernel_families.h"
#include "kernels/legacy_quants_internal.h"
#include "kernels/legacy_quants_panel.h"
#include "kernels/row_count.h"
#include "kernels/row_group_avx2.h"

namespace kiln::kernels::legacy {
namespace {

// ---- activation quantizers (same bytes as quantize_act_*_scalar) ------------------------------

// Quantizes 32 floats with scale amax / 127, rounding half to even; returns d and sum(q).
KILN_INLINE float quantize_block_q8(const float* x, std::int8_t* qs, int* sum) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 v[4];
  __m256 amax = _mm256_setzero_ps();
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_loadu_ps(x + 8 * i);
    amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[i]));
  }
  const float d = reduce_max(amax) / 127;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  __m256i q[4];
  for (int i = 0; i < 4; ++i) q[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], _mm256_set1_ps(id)));
  if (sum != nullptr) {
    const __m256i s8 = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
    *sum = _mm_cvtsi128_si32(s4);
  }
  // The packs work per 128-bit lane; the final permute puts the 8 groups of 4 back in order.
  const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs),
                      _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  return d;
}

void quantize_act_q8_0(const float* x, void* dst, std::int64_t k) {
  for (std::int64_t i = 0; i < k / QK8_0; ++i) {
    std::uint8_t* block = static_cast<std::uint8_t*>(dst) + i * sizeof(block_q8_0);
    const float d =
        quantize_block_q8(x + i * QK8_0, reinterpret_cast<std::int8_t*>(block + offsetof(block_q8_0, qs)), nullptr);
    store_u16(block + offsetof(block_q8_0, d), float_to_half(d));
  }
}

void quantize_act_q8_1(const float* x, void* dst, std::int64_t k) {
  for (std::int64_t i = 0; i < k / QK8_1; ++i) {
    int sum = 0;
    std::uint8_t* block = static_cast<std::uint8_t*>(dst) + i * sizeof(block_q8_1);
    const float d =
        quantize_block_q8(x + i * QK8_1, reinterpret_cast<std::int8_t*>(block + offsetof(block_q8_1, qs)), &sum);
    store_u16(block + offsetof(block_q8_1, d), float_to_half(d));
    store_u16(block + offsetof(block_q8_1, s), float_to_half(static_cast<float>(sum) * d));
  }
}

// ---- weight unpacking: one block of 8 rows into row-per-lane registers ------------------------

struct UnpackedBlock {
  __m256i w[8];  // w[v] lane r = quants 4v..4v+3 of row r
  __m256 d;
  __m256 m;
};

KILN_INLINE void unpack_nibbles(const RowGroup& g, std::size_t qs_off, UnpackedBlock& out) {
  __m256i u[4];
  load_dwords_8x4(g, qs_off, u);
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  for (int t = 0; t < 4; ++t) {
    out.w[t] = _mm256_and_si256(u[t], low4);
    out.w[t + 4] = _mm256_and_si256(_mm256_srli_epi16(u[t], 4), low4);
  }
}

// Adds 16 to each quant whose bit is set in qh (lane r = row r's 32 high bits).
KILN_INLINE void add_high_bits(__m256i qh, UnpackedBlock& out) {
  const __m256i lane_base =
      _mm256_setr_epi32(0, 0x04040404, 0x08080808, 0x0C0C0C0C, 0, 0x04040404, 0x08080808, 0x0C0C0C0C);
  const __m256i bit_low = _mm256_set1_epi32(0x08040201), bit_high = _mm256_set1_epi32(static_cast<int>(0x80402010u));
  const __m256i sixteen = _mm256_set1_epi8(0x10);
  for (int v = 0; v < 8; ++v) {
    const __m256i bits = v % 2 == 0 ? bit_low : bit_high;
    const __m256i bytes =
        _mm256_shuffle_epi8(qh, _mm256_add_epi8(lane_base, _mm256_set1_epi8(static_cast<char>(v / 2))));
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bits), bits);
    out.w[v] = _mm256_or_si256(out.w[v], _mm256_and_si256(set, sixteen));
  }
}

struct FormatQ4_0 {
  using ActBlock = block_q8_0;
  static constexpr std::size_t kBlockBytes = sizeof(block_q4_0);
  static constexpr bool kHasMin = false, kSigned = false;
  static constexpr int kOffset = 8;
  static KILN_INLINE void unpack(const RowGroup& g, std::int64_t b, UnpackedBlock& out) {
    const std::size_t off = b * kBlockBytes;
    unpack_nibbles(g, off + 2, out);
    out.d = low_half_to_float(gather_dword(g, off));
  }
};

struct FormatQ4_1 {
  using ActBlock = block_q8_1;
  static constexpr std::size_t kBlockBytes = sizeof(block_q4_1);
  static constexpr bool kHasMin = true, kSigned = false;
  static constexpr int kOffset = 0;
  static KILN_INLINE void unpack(const RowGroup& g, std::int64_t b, UnpackedBlock& out) {
    const std::size_t off = b * kBlockBytes;
    unpack_nibbles(g, off + 4, out);
    const __m256i dm = gather_dword(g, off);
    out.d = low_half_to_float(dm);
    out.m = low_half_to_float(_mm256_srli_epi32(dm, 16));
  }
};

struct FormatQ5_0 {
  using ActBlock = block_q8_0;
  static constexpr std::size_t kBlockBytes = sizeof(block_q5_0);
  static constexpr bool kHasMin = false, kSigned = false;
  static constexpr int kOffset = 16;
  static KILN_INLINE void unpack(const RowGroup& g, std::int64_t b, UnpackedBlock& out) {
    const std::size_t off = b * kBlockBytes;
    unpack_nibbles(g, off + 6, out);
    add_high_bits(gather_dword(g, off + 2), out);
    out.d = low_half_to_float(gather_dword(g, off));
  }
};

struct FormatQ5_1 {
  using ActBlock = block_q8_1;
  static constexpr std::size_t kBlockBytes = sizeof(block_q5_1);
  static constexpr bool kHasMin = true, kSigned = false;
  static constexpr int kOffset = 0;
  static KILN_INLINE void unpack(const RowGroup& g, std::int64_t b, UnpackedBlock& out) {
    const std::size_t off = b * kBlockBytes;
    unpack_nibbles(g, off + 8, out);
    add_high_bits(gather_dword(g, off + 4), out);
    const __m256i dm = gather_dword(g, off);
    out.d = low_half_to_float(dm);
    out.m = low_half_to_float(_mm256_srli_epi32(dm, 16));
  }
};

// q8_0 weights stay signed (offset 0); the tile multiplies |w| with sign(a, w).
struct FormatQ8_0 {
  using ActBlock = block_q8_0;
  static constexpr std::size_t kBlockBytes = sizeof(block_q8_0);
  static constexpr bool kHasMin = false, kSigned = true;
  static constexpr int kOffset = 0;
  static KILN_INLINE void unpack(const RowGroup& g, std::int64_t b, UnpackedBlock& out) {
    const std::size_t off = b * kBlockBytes;
    load_dwords_8x4(g, off + 2, out.w);
    load_dwords_8x4(g, off + 18, out.w + 4);
    out.d = low_half_to_float(gather_dword(g, off));
  }
};

// ---- the tile: one unpacked block of 8 rows against MR activation rows ------------------------

template <typename F, int MR>
KILN_INLINE void accumulate_block(const UnpackedBlock& u, const ActPanel& act, std::int64_t m0, std::int64_t b,
                                  __m256 acc[MR]) {
  const __m256i ones16 = _mm256_set1_epi16(1);
  __m256i sum[MR];
  for (int i = 0; i < MR; ++i) sum[i] = _mm256_set1_epi32(act.bias[(m0 + i) * act.nb + b]);
  for (int v = 0; v < 8; ++v) {
    const __m256i w = F::kSigned ? _mm256_sign_epi8(u.w[v], u.w[v]) : u.w[v];
    for (int i = 0; i < MR; ++i) {
      __m256i x = _mm256_set1_epi32(load_i32(act.qs + (m0 + i) * act.qs_stride + b * 32 + 4 * v));
      if constexpr (F::kSigned) x = _mm256_sign_epi8(x, u.w[v]);
      sum[i] = _mm256_add_epi32(sum[i], _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones16));
    }
  }
  for (int i = 0; i < MR; ++i) {
    const std::int64_t m = m0 + i;
    acc[i] =
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[i]), _mm256_mul_ps(u.d, _mm256_set1_ps(act.d[m * act.nb + b])), acc[i]);
    if constexpr (F::kHasMin) acc[i] = _mm256_fmadd_ps(u.m, _mm256_set1_ps(act.s[m * act.nb + b]), acc[i]);
  }
}

// How many blocks ahead of the current one decode prefetches each row (into L1): 324 bytes for
// q4_0, 612 for q8_0. The kernel spends about the same time on a block of any format, so the
// distance is counted in blocks. 1.1B decode with 2 threads and KILN_SIMD=avx2 (far-apart row
// groups, host read bandwidth 28-29 GB/s): q4_0 at 192 / 320 / 640 bytes ahead measured
// 34.4-34.9 / 36.7-39.0 / 36.2-37.5 tok/s and 31.7-32.4 without prefetches; q8_0 at 320 / 640 /
// 1024 bytes 21.7-22.1 / 22.6-23.7 / 22.0-22.5 and 20.9-21.0 without. Prefetching each row only
// once per 64 bytes (every third q4_0 block) measured no faster (36.3-37.0).
constexpr std::int64_t kPrefetchBlocks = 18;
// The neighbouring rows of prefill (M > 4) keep the 320 bytes they had before: q8_0 at M = 128
// measured 86-88 GOP/s with the decode distance against 87-90 with this one.
constexpr std::int64_t kPrefillPrefetchBytes = 320;

// y[(m0 + i) * ldy + n0 + r * span] receives row r of the group (r < valid) against activation
// row m0 + i.
template <typename F, int MR>
void tile(const RowGroup& g, const ActPanel& act, std::int64_t m0, float* y, std::int64_t ldy, std::int64_t n0,
          int valid, std::int64_t span = 1) {
  __m256 acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm256_setzero_ps();
  const std::int64_t ahead = span == 1 ? kPrefillPrefetchBytes : kPrefetchBlocks * F::kBlockBytes;
  for (std::int64_t b = 0; b < act.nb; ++b) {
    // The 8 rows are 8 streams; prefetching ahead keeps more lines in flight than the
    // hardware prefetcher does on its own.
    for (int r = 0; r < 8; ++r)
      _mm_prefetch(reinterpret_cast<const char*>(g.row[r] + b * F::kBlockBytes + ahead), _MM_HINT_T0);
    UnpackedBlock u;
    F::unpack(g, b, u);
    accumulate_block<F, MR>(u, act, m0, b, acc);
  }
  if (span == 1) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(valid), lane);
    for (int i = 0; i < MR; ++i) _mm256_maskstore_ps(y + (m0 + i) * ldy + n0, mask, acc[i]);
    return;
  }
  for (int i = 0; i < MR; ++i) {
    alignas(32) float sums[8];
    _mm256_store_ps(sums, acc[i]);
    for (int r = 0; r < valid; ++r) y[(m0 + i) * ldy + n0 + r * span] = sums[r];
  }
}

constexpr int kTileRows = 4;

template <typename F>
void gemm(std::int64_t k, const void* w, std::size_t w_stride, const void* a, std::size_t a_stride, std::int64_t M,
          std::int64_t n_begin, std::int64_t n_end, float* y, std::int64_t ldy) {
  if (M <= 0 || n_end <= n_begin) return;
  const ActPanel act = repack_activations<typename F::ActBlock>(a, a_stride, M, k / 32, F::kOffset);
  const auto* wb = static_cast<const std::uint8_t*>(w);
  if (M <= kTileRows) {
    // Decode: the 8 rows of a group lie far apart, n, n + span, ..., n + 7 * span, so that each
    // is its own sequential stream in its own pages (see legacy_quants_vbmi.cpp: one core reads
    // several far-apart streams much faster than neighbouring rows interleaved): 1.1B decode
    // with 2 threads and KILN_SIMD=avx2 went from 24-25 to 38-40 tok/s for q4_0 and from 17-18
    // to 24-25 for q8_0. The gathers address the rows by 32-bit offsets from row 0, which
    // bounds the span.
    const std::int64_t span = (n_end - n_begin) / 8;
    if (span > 0 && 7 * span * static_cast<std::int64_t>(w_stride) <= INT32_MAX) {
      for (std::int64_t n = n_begin; n < n_begin + span; ++n) {
        const RowGroup g = make_row_group(wb, w_stride, n, 8, span);
        switch (M) {
          case 1:
            tile<F, 1>(g, act, 0, y, ldy, n, 8, span);
            break;
          case 2:
            tile<F, 2>(g, act, 0, y, ldy, n, 8, span);
            break;
          case 3:
            tile<F, 3>(g, act, 0, y, ldy, n, 8, span);
            break;
          default:
            tile<F, 4>(g, act, 0, y, ldy, n, 8, span);
            break;
        }
      }
      n_begin += 8 * span;
    }
  }
  for (std::int64_t n0 = n_begin; n0 < n_end; n0 += 8) {
    const int valid = static_cast<int>(n_end - n0 < 8 ? n_end - n0 : 8);
    const RowGroup g = make_row_group(wb, w_stride, n0, valid);
    std::int64_t m0 = 0;
    for (; m0 + kTileRows <= M; m0 += kTileRows) tile<F, kTileRows>(g, act, m0, y, ldy, n0, valid);
    with_row_count<kTileRows - 1>(M - m0,
                                  [&](auto rows) { tile<F, decltype(rows)::value>(g, act, m0, y, ldy, n0, valid); });
  }
}

// ---- vec_dot: one row, one block at a time ---------------------------------------------------

KILN_INLINE __m256i nibbles_in_order(const std::uint8_t* qs) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(packed), _mm_srli_epi16(packed, 4), 1);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// Byte j gets 0x10 where bit j of the 32 bits at qh is set.
KILN_INLINE __m256i high_bits_in_order(const std::uint8_t* qh) {
  const __m256i bytes = _mm256_shuffle_epi8(
      _mm256_set1_epi32(load_i32(qh)),
      _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
  const __m256i bits = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(bytes, bits), bits), _mm256_set1_epi8(0x10));
}

template <typename F>
KILN_INLINE __m256i block_quants(const std::uint8_t* blk) {
  if constexpr (F::kSigned) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
  } else if constexpr (F::kBlockBytes == sizeof(block_q4_0)) {
    return nibbles_in_order(blk + 2);
  } else if constexpr (F::kBlockBytes == sizeof(block_q4_1)) {
    return nibbles_in_order(blk + 4);
  } else if constexpr (F::kBlockBytes == sizeof(block_q5_0)) {
    return _mm256_or_si256(nibbles_in_order(blk + 6), high_bits_in_order(blk + 2));
  } else {
    return _mm256_or_si256(nibbles_in_order(blk + 8), high_bits_in_order(blk + 4));
  }
}

template <typename F>
float vec_dot(std::int64_t k, const void* w_row, const void* a_row) {
  using A = typename F::ActBlock;
  const auto* w = static_cast<const std::uint8_t*>(w_row);
  const auto* a = static_cast<const std::uint8_t*>(a_row);
  const __m256i ones16 = _mm256_set1_epi16(1);
  const __m256i offset = _mm256_set1_epi8(static_cast<char>(F::kOffset));
  __m256 acc = _mm256_setzero_ps();
  float min_sum = 0.0f;
  for (std::int64_t b = 0; b < k / 32; ++b, w += F::kBlockBytes) {
    const __m256i q = block_quants<F>(w);
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + b * sizeof(A) + offsetof(A, qs)));
    __m256i prod;
    if constexpr (F::kSigned) {
      prod = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q));
    } else if constexpr (F::kOffset != 0) {
      prod = _mm256_sub_epi16(_mm256_maddubs_epi16(q, x), _mm256_maddubs_epi16(offset, x));
    } else {
      prod = _mm256_maddubs_epi16(q, x);
    }
    const __m256i sum = _mm256_madd_epi16(prod, ones16);
    scale_block_dot<F>(sum, w, a, b, acc, min_sum);
  }
  return reduce_add(acc) + min_sum;
}

template <typename F>
constexpr WeightKernels avx2_entry(DType w) {
  return table_entry<F>(w, quantize_act_q8_0, quantize_act_q8_1, vec_dot<F>, gemm<F>, SimdLevel::Avx2);
}

constexpr WeightKernels kAvx2Kernels[] = {
    avx2_entry<FormatQ4_0>(DType::Q4_0), avx2_entry<FormatQ4_1>(DType::Q4_1), avx2_entry<FormatQ5_0>(DType::Q5_0),
    avx2_entry<FormatQ5_1>(DType::Q5_1), avx2_entry<FormatQ8_0>(DType::Q8_0),
};

}  // namespace

const WeightKernels* avx2_kernels(DType w) { return find_kernels(kAvx2Kernels, w); }

}  // namespace kiln::kernels::legacy
