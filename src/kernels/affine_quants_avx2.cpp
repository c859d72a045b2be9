// AVX2 kernels of kiln's affine formats.
//
// The shape of the AVX-512 path (affine_quants_avx512.cpp) with 8 weight rows per group, one per
// 32-bit lane, and without VNNI: vpmaddubsw multiplies unsigned weight bytes with signed
// activation bytes into 16-bit pairs and vpmaddwd adds the pairs into 32 bits. 4-bit quants
// cannot overflow the pairs (2 * 15 * 127); 8-bit quants could (2 * 255 * 127), so they are
// taken as q - 128 (q ^ 0x80, signed) and multiplied with the sign trick of q8_0 (|w| times a
// with the sign of w, at most 2 * 128 * 127), and 128 * sum(a) of each activation block is added
// back as an exact integer.
#include <immintrin.h>

#include <cstddef>
#include <cstring>

#include "kernels/affine_quants_internal.h"
#include "kernels/affine_quants_simd.h"
#include "kernels/row_count.h"
#include "kernels/row_group_avx2.h"

namespace kiln::kernels::affine {
namespace {

// Lane r = the f16 scale and minimum of row r's block at off, as floats.
KILN_INLINE void load_scales(const RowGroup& g, std::size_t off, __m256* d, __m256* m) {
  const __m256i dm = gather_dword(g, off);
  *d = low_half_to_float(dm);
  *m = low_half_to_float(_mm256_srli_epi32(dm, 16));
}

// w[v] lane r = quants 4v..4v+3 of the run of 32 at row r + off: unsigned for 4 bits, q - 128
// (signed) for 8 bits.
template <typename F>
KILN_INLINE void unpack_run(const RowGroup& g, std::size_t off, __m256i w[8]) {
  __m256i u[4];
  load_dwords_8x4(g, off, u);
  if constexpr (F::kBits == 4) {
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    for (int t = 0; t < 4; ++t) {
      w[t] = _mm256_and_si256(u[t], low4);
      w[t + 4] = _mm256_and_si256(_mm256_srli_epi16(u[t], 4), low4);
    }
  } else {
    const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
    for (int t = 0; t < 4; ++t) w[t] = _mm256_xor_si256(u[t], flip);
    load_dwords_8x4(g, off + 16, u);
    for (int t = 0; t < 4; ++t) w[t + 4] = _mm256_xor_si256(u[t], flip);
  }
}

template <typename F>
constexpr std::size_t run_offset(std::int64_t group, int sub) {
  return static_cast<std::size_t>(group) * F::kBlockBytes + 4 + static_cast<std::size_t>(sub) * F::kSubBytes;
}

// Integer sum(q * a) of a run for 8 rows, starting from `start` (128 * sum(a) for 8 bits).
template <typename F>
KILN_INLINE __m256i run_sum(const __m256i w[8], const std::uint8_t* q, __m256i start) {
  const __m256i ones16 = _mm256_set1_epi16(1);
  __m256i sum = start;
  for (int v = 0; v < 8; ++v) {
    __m256i x = _mm256_set1_epi32(load_i32(q + 4 * v));
    __m256i wv = w[v];
    if constexpr (F::kBits == 8) {
      x = _mm256_sign_epi8(x, wv);
      wv = _mm256_sign_epi8(wv, wv);
    }
    sum = _mm256_add_epi32(sum, _mm256_madd_epi16(_mm256_maddubs_epi16(wv, x), ones16));
  }
  return sum;
}

constexpr std::int64_t kPrefetchBytes = 320;

// One group of 8 rows against MR activation rows, all weight groups.
template <typename F, int MR>
void tile(const RowGroup& g, const ActView& act, const std::int32_t* qsum, std::int64_t m0, float* y,
          std::int64_t ldy, std::int64_t n0, int valid) {
  __m256 acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm256_setzero_ps();
  for (std::int64_t gi = 0; gi < act.n_groups; ++gi) {
    __m256 t[MR];
    for (int i = 0; i < MR; ++i) t[i] = _mm256_setzero_ps();
    for (int s = 0; s < F::kSubBlocks; ++s) {
      const std::size_t off = run_offset<F>(gi, s);
      for (int r = 0; r < 8; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(g.row[r] + off + kPrefetchBytes), _MM_HINT_T0);
      const std::int64_t b = gi * F::kSubBlocks + s;
      __m256i w[8];
      unpack_run<F>(g, off, w);
      for (int i = 0; i < MR; ++i) {
        const std::int64_t m = m0 + i;
        const __m256i start = F::kBits == 8 ? _mm256_set1_epi32(128 * qsum[m * act.nb + b]) : _mm256_setzero_si256();
        const __m256i sum = run_sum<F>(w, act_quants(act, m, b), start);
        t[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(act.d[m * act.nb + b]), t[i]);
      }
    }
    __m256 d, mn;
    load_scales(g, static_cast<std::size_t>(gi) * F::kBlockBytes, &d, &mn);
    for (int i = 0; i < MR; ++i) {
      acc[i] = _mm256_fmadd_ps(t[i], d, acc[i]);
      acc[i] = _mm256_fmadd_ps(mn, _mm256_set1_ps(act.gs[(m0 + i) * act.n_groups + gi]), acc[i]);
    }
  }
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(valid), lane);
  for (int i = 0; i < MR; ++i) _mm256_maskstore_ps(y + (m0 + i) * ldy + n0, mask, acc[i]);
}

constexpr int kTileRows = 4;

template <typename F>
void gemm(std::int64_t k, const void* w, std::size_t w_stride, const void* a, std::size_t a_stride, std::int64_t M,
          std::int64_t n_begin, std::int64_t n_end, float* y, std::int64_t ldy) {
  if (M <= 0 || n_end <= n_begin) return;
  const std::int32_t* qsum = nullptr;
  const ActView act = view_activations(a, a_stride, M, k / 32, F::kSubBlocks, F::kBits == 8, &qsum);
  const auto* wb = static_cast<const std::uint8_t*>(w);
  for (std::int64_t n0 = n_begin; n0 < n_end; n0 += 8) {
    const int valid = static_cast<int>(n_end - n0 < 8 ? n_end - n0 : 8);
    const RowGroup g = make_row_group(wb, w_stride, n0, valid);
    std::int64_t m0 = 0;
    for (; m0 + kTileRows <= M; m0 += kTileRows) tile<F, kTileRows>(g, act, qsum, m0, y, ldy, n0, valid);
    with_row_count<kTileRows - 1>(
        M - m0, [&](auto rows) { tile<F, decltype(rows)::value>(g, act, qsum, m0, y, ldy, n0, valid); });
  }
}

// ---- vec_dot: one row, one run of 32 at a time ------------------------------------------------

template <typename F>
float vec_dot(std::int64_t k, const void* w_row, const void* a_row) {
  const auto* w = static_cast<const std::uint8_t*>(w_row);
  const auto* a = static_cast<const std::uint8_t*>(a_row);
  const __m256i ones16 = _mm256_set1_epi16(1);
  __m256 acc = _mm256_setzero_ps();
  float min_sum = 0.0f;
  for (std::int64_t gi = 0; gi < k / F::kGroup; ++gi, w += F::kBlockBytes) {
    __m256 t = _mm256_setzero_ps();
    float s = 0.0f;
    for (int j = 0; j < F::kSubBlocks; ++j) {
      const std::uint8_t* ab = a + (gi * F::kSubBlocks + j) * kActBlockBytes;
      const std::uint8_t* qs = w + 4 + j * F::kSubBytes;
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ab + kActQs));
      __m256i sum;
      if constexpr (F::kBits == 4) {
        const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
        const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(packed), _mm_srli_epi16(packed, 4), 1);
        const __m256i q = _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
        sum = _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), ones16);
      } else {
        // sum((q - 128) * a) + 128 * sum(a), both halves within 16 bits before vpmaddwd.
        const __m256i q = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs)),
                                           _mm256_set1_epi8(static_cast<char>(0x80)));
        const __m256i prod = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q));
        const __m256i offset = _mm256_maddubs_epi16(_mm256_set1_epi8(static_cast<char>(0x80)), x);
        sum = _mm256_add_epi32(_mm256_madd_epi16(prod, ones16), _mm256_madd_epi16(offset, ones16));
      }
      t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(half_to_float(load_u16(ab))), t);
      s += half_to_float(load_u16(ab + 2));
    }
    acc = _mm256_fmadd_ps(t, _mm256_set1_ps(half_to_float(load_u16(w))), acc);
    min_sum += half_to_float(load_u16(w + 2)) * s;
  }
  return reduce_add(acc) + min_sum;
}

template <typename F>
constexpr Fns avx2_entry() {
  return Fns{vec_dot<F>, gemm<F>};
}

// In the order of kAffineTypes.
constexpr Fns kAvx2Fns[] = {avx2_entry<Format<4, 64>>(), avx2_entry<Format<4, 128>>(), avx2_entry<Format<8, 32>>(),
                            avx2_entry<Format<8, 64>>(), avx2_entry<Format<8, 128>>()};

}  // namespace

const Fns* avx2_fns(DType w) { return fns_of(kAvx2Fns, w); }

}  // namespace kiln::kernels::affine
