// Decode kernels of the legacy block formats for CPUs with AVX-512 VBMI (Ice Lake and later):
// a few activation rows (M <= kRowwiseMaxRows) against weight rows read in their stored order.
//
// The AVX-512 gemm (legacy_quants_avx512.cpp) puts one weight row per 32-bit lane, which needs
// a 16x4 dword transpose and a gather of the 16 scales for every block: for a single activation
// row that work is not amortized, and it kept one thread at about 18 GB/s of q4_0 weights with
// the data in cache, too slow to hide memory stalls. Here each weight row is read as one
// stream instead. One step covers G consecutive blocks of a row (4 for the 4- and 5-bit
// formats, 2 for q8_0): a 64-byte load plus a short exact load of the rest of the step, then
// `vpermt2b` pulls the quant bytes of the G blocks into one register and the G f16 scales into
// 16 words (each scale repeated over the 16 / G lanes its block's sums land in). The
// activation rows are repacked once per call into the same order, so one or two `vpdpbusd`
// give every block's partial sums, and a single multiply-add applies the per-block scales.
// A row's 16 lanes are summed once, at its end.
//
// As in the AVX-512 gemm, weight quants are made unsigned by a per-format offset (q4_0: q - 8,
// q5_0: q - 16, q8_0: q ^ 0x80 for q - 128), and the sums start from -offset * sum(a), which
// the repack computes per block. The integer part is exact; results differ from the scalar
// reference by float rounding order only.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <immintrin.h>

#include <cstddef>
#include <cstring>
#include <type_traits>

#include "kernels/blocks.h"
#include "kernels/legacy_quants_internal.h"
#include "kernels/simd_scalars.h"

namespace kiln::kernels::legacy {
namespace {

// What a step of G blocks of one weight row decodes to.
struct WeightStep {
  __m512i lo, hi;  // 4/5-bit formats: quants 0..15 and 16..31 of block j at bytes 16j..16j+15
                   // q8_0: quants of block j at bytes 32j..32j+31 in `lo`; `hi` unused
  __m512 d;        // block j's scale in lanes (16/G)j .. (16/G)(j+1)-1
  __m512 m;        // zero points (q4_1, q5_1), same lanes
};

// ---- the formats ------------------------------------------------------------------------------

// Byte index vectors for vpermt2b over the 128 bytes [p, p + 128) of a step. quant_index: the
// first N quant bytes of each block j < 64 / N at N * j + i (N = 16: a nibble format's 16 bytes,
// N = 32: q8_0's 32); word_index: the f16 word at byte `Field` of block j into the words of the
// low 256 bits that block j's sums land in.
template <int S, int QsOff, int N>
KILN_INLINE __m512i quant_index() {
  alignas(64) std::int8_t idx[64];
  for (int j = 0; j < 64 / N; ++j)
    for (int i = 0; i < N; ++i) idx[N * j + i] = static_cast<std::int8_t>(j * S + QsOff + i);
  return _mm512_load_si512(idx);
}
template <int S, int G, int Field>
KILN_INLINE __m512i word_index() {
  alignas(64) std::int8_t idx[64] = {};
  for (int k = 0; k < 16; ++k) {
    const int j = k / (16 / G);
    idx[2 * k] = static_cast<std::int8_t>(j * S + Field);
    idx[2 * k + 1] = static_cast<std::int8_t>(j * S + Field + 1);
  }
  return _mm512_load_si512(idx);
}
// q5_0 / q5_1: the four qh words of a step as bytes 0..7 = low halves of qh_0..qh_3 (the fifth
// bits of quants 0..15 of each block), bytes 8..15 = high halves (quants 16..31).
template <int S, int QhOff>
KILN_INLINE __m512i qh_index() {
  alignas(64) std::int8_t idx[64] = {};
  for (int j = 0; j < 4; ++j) {
    idx[2 * j] = static_cast<std::int8_t>(j * S + QhOff);
    idx[2 * j + 1] = static_cast<std::int8_t>(j * S + QhOff + 1);
    idx[8 + 2 * j] = static_cast<std::int8_t>(j * S + QhOff + 2);
    idx[8 + 2 * j + 1] = static_cast<std::int8_t>(j * S + QhOff + 3);
  }
  return _mm512_load_si512(idx);
}

// The scale words of a step: from the first 64 bytes alone where they all lie there (vpermb,
// cheaper than the two-source vpermt2b).
template <bool InFirst>
KILN_INLINE __m512i pick_words(__m512i a, __m512i b, __m512i idx) {
  if constexpr (InFirst) {
    return _mm512_permutexvar_epi8(idx, a);
  } else {
    return _mm512_permutex2var_epi8(a, idx, b);
  }
}

// Index vectors a format needs, built once per call.
struct Indices {
  __m512i qs, d, m, qh;
};

template <int S, int QsOff, int MinOff, int QhOff, int Offset, bool Q8_1Act>
struct NibbleFormat {
  static constexpr int kBlockBytes = S;
  static constexpr int kG = 4;                  // blocks per step
  static constexpr int kStepBytes = 4 * S;      // 72..96: one 64-byte load plus the rest
  static constexpr int kOffset = Offset;
  static constexpr bool kHasMin = MinOff >= 0;
  static constexpr bool kHasQh = QhOff >= 0;
  static constexpr bool kNibbles = true;
  using ActBlock = std::conditional_t<Q8_1Act, block_q8_1, block_q8_0>;

  static KILN_INLINE Indices indices() {
    Indices ix;
    ix.qs = quant_index<S, QsOff, 16>();
    ix.d = word_index<S, 4, 0>();
    if constexpr (kHasMin) ix.m = word_index<S, 4, (MinOff < 0 ? 0 : MinOff)>();
    if constexpr (kHasQh) ix.qh = qh_index<S, (QhOff < 0 ? 0 : QhOff)>();
    return ix;
  }

  // The step's bytes past the first 64, read exactly (no byte beyond the step is touched).
  static KILN_INLINE __m512i load_rest(const std::uint8_t* p) {
    if constexpr (kStepBytes - 64 == 8) {
      return _mm512_castsi128_si512(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    } else if constexpr (kStepBytes - 64 == 16) {
      return _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    } else if constexpr (kStepBytes - 64 == 32) {
      return _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    } else {
      return _mm512_maskz_loadu_epi8((1ull << (kStepBytes - 64)) - 1, p);
    }
  }

  static KILN_INLINE void decode(__m512i a, __m512i b, const Indices& ix, WeightStep& out) {
    const __m512i q = _mm512_permutex2var_epi8(a, ix.qs, b);
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    out.lo = _mm512_and_si512(q, low4);
    out.hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), low4);
    if constexpr (kHasQh) {
      const __m128i qh = _mm512_castsi512_si128(_mm512_permutex2var_epi8(a, ix.qh, b));
      const __mmask64 lo_bits = _cvtu64_mask64(static_cast<std::uint64_t>(_mm_cvtsi128_si64(qh)));
      const __mmask64 hi_bits = _cvtu64_mask64(static_cast<std::uint64_t>(_mm_extract_epi64(qh, 1)));
      const __m512i sixteen = _mm512_set1_epi8(0x10);
      out.lo = _mm512_mask_add_epi8(out.lo, lo_bits, out.lo, sixteen);
      out.hi = _mm512_mask_add_epi8(out.hi, hi_bits, out.hi, sixteen);
    }
    out.d = _mm512_cvtph_ps(_mm512_castsi512_si256(pick_words<3 * S + 1 < 64>(a, b, ix.d)));
    if constexpr (kHasMin) out.m = _mm512_cvtph_ps(_mm512_castsi512_si256(pick_words<3 * S + 3 < 64>(a, b, ix.m)));
  }
};

using RowQ4_0 = NibbleFormat<sizeof(block_q4_0), offsetof(block_q4_0, qs), -1, -1, 8, false>;
using RowQ4_1 = NibbleFormat<sizeof(block_q4_1), offsetof(block_q4_1, qs), offsetof(block_q4_1, m), -1, 0, true>;
using RowQ5_0 = NibbleFormat<sizeof(block_q5_0), offsetof(block_q5_0, qs), -1, offsetof(block_q5_0, qh), 16, false>;
using RowQ5_1 =
    NibbleFormat<sizeof(block_q5_1), offsetof(block_q5_1, qs), offsetof(block_q5_1, m), offsetof(block_q5_1, qh), 0, true>;

struct RowQ8_0 {
  static constexpr int kBlockBytes = sizeof(block_q8_0);
  static constexpr int kG = 2;
  static constexpr int kStepBytes = 2 * sizeof(block_q8_0);  // 68
  static constexpr int kOffset = 128;
  static constexpr bool kHasMin = false;
  static constexpr bool kNibbles = false;
  using ActBlock = block_q8_0;

  static KILN_INLINE Indices indices() {
    Indices ix;
    ix.qs = quant_index<sizeof(block_q8_0), offsetof(block_q8_0, qs), 32>();
    ix.d = word_index<sizeof(block_q8_0), 2, 0>();
    return ix;
  }
  static KILN_INLINE __m512i load_rest(const std::uint8_t* p) {
    std::int32_t v;
    std::memcpy(&v, p, sizeof(v));
    return _mm512_castsi128_si512(_mm_cvtsi32_si128(v));
  }
  static KILN_INLINE void decode(__m512i a, __m512i b, const Indices& ix, WeightStep& out) {
    out.lo = _mm512_xor_si512(_mm512_permutex2var_epi8(a, ix.qs, b), _mm512_set1_epi8(static_cast<char>(0x80)));
    out.d = _mm512_cvtph_ps(_mm512_castsi512_si256(pick_words<true>(a, b, ix.d)));
  }
};

// ---- activations: repacked into the order of WeightStep ---------------------------------------

// One step of one activation row, 64-byte aligned.
struct alignas(64) ActStep {
  std::int8_t lo[64];   // same byte order as WeightStep::lo
  std::int8_t hi[64];   // same as WeightStep::hi (nibble formats only)
  std::int32_t bias[16];  // block j's -offset * sum(a) in lane (16/G)j, 0 elsewhere
  float d[16];          // block j's scale in lanes (16/G)j ..
  float s[16];          // q8_1's d * sum(a) in lane (16/G)j, 0 elsewhere (zero-point formats)
};

// The activation rows, `steps` ActSteps each; a partial last step is zero-padded, so that its
// missing blocks add 0 * 0.
struct RowPanel {
  const ActStep* steps;  // (M, n_steps)
  std::int64_t n_steps;
  std::int64_t nb;  // blocks per row
};

template <typename F>
RowPanel repack_rows(const void* a, std::size_t a_stride, std::int64_t M, std::int64_t nb) {
  using A = typename F::ActBlock;
  constexpr int G = F::kG, lanes = 16 / G;
  const std::int64_t n_steps = (nb + G - 1) / G;
  auto* steps = reinterpret_cast<ActStep*>(legacy_scratch(0, sizeof(ActStep) * static_cast<std::size_t>(M * n_steps)));
  std::memset(static_cast<void*>(steps), 0, sizeof(ActStep) * static_cast<std::size_t>(M * n_steps));
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  for (std::int64_t m = 0; m < M; ++m) {
    const std::uint8_t* row = static_cast<const std::uint8_t*>(a) + m * a_stride;
    for (std::int64_t b = 0; b < nb; ++b) {
      const std::uint8_t* block = row + b * sizeof(A);
      ActStep& st = steps[m * n_steps + b / G];
      const int j = static_cast<int>(b % G);
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + offsetof(A, qs)));
      if constexpr (F::kNibbles) {
        _mm_store_si128(reinterpret_cast<__m128i*>(st.lo + 16 * j), _mm256_castsi256_si128(q));
        _mm_store_si128(reinterpret_cast<__m128i*>(st.hi + 16 * j), _mm256_extracti128_si256(q, 1));
      } else {
        _mm256_store_si256(reinterpret_cast<__m256i*>(st.lo + 32 * j), q);
      }
      // sum(q) = sum(q ^ 0x80 read as unsigned) - 32 * 128, and psadbw sums unsigned bytes.
      const __m256i sad = _mm256_sad_epu8(_mm256_xor_si256(q, flip), _mm256_setzero_si256());
      const __m128i sad2 = _mm_add_epi64(_mm256_castsi256_si128(sad), _mm256_extracti128_si256(sad, 1));
      const int sum = static_cast<int>(_mm_cvtsi128_si64(sad2) + _mm_extract_epi64(sad2, 1)) - 32 * 128;
      st.bias[lanes * j] = -F::kOffset * sum;
      const float d = half_to_float(load_u16(block));
      for (int l = 0; l < lanes; ++l) st.d[lanes * j + l] = d;
      if constexpr (F::kHasMin) st.s[lanes * j] = half_to_float(load_u16(block + offsetof(block_q8_1, s)));
    }
  }
  return RowPanel{steps, n_steps, nb};
}

// ---- the kernel -------------------------------------------------------------------------------

// One step of R weight rows against MR activation rows.
template <typename F, int MR, int R>
KILN_INLINE void step(const std::uint8_t* const rows[R], std::size_t off, const ActStep* act, std::int64_t act_stride,
                      const Indices& ix, __m512 acc[MR][R], bool partial, std::size_t partial_bytes) {
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    const std::uint8_t* p = rows[r] + off;
    __m512i a, b;
    if (partial) {
      // The last blocks of the row, fewer than a step: read exactly those bytes.
      const std::size_t first = partial_bytes < 64 ? partial_bytes : 64;
      a = _mm512_maskz_loadu_epi8(first == 64 ? ~0ull : (1ull << first) - 1, p);
      b = partial_bytes > 64 ? _mm512_maskz_loadu_epi8((1ull << (partial_bytes - 64)) - 1, p + 64)
                             : _mm512_setzero_si512();
    } else {
      a = _mm512_loadu_si512(p);
      b = F::load_rest(p + 64);
    }
    WeightStep w;
    F::decode(a, b, ix, w);
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      const ActStep& s = act[i * act_stride];
      __m512i sum = _mm512_dpbusd_epi32(_mm512_load_si512(s.bias), w.lo, _mm512_load_si512(s.lo));
      if constexpr (F::kNibbles) sum = _mm512_dpbusd_epi32(sum, w.hi, _mm512_load_si512(s.hi));
      acc[i][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(w.d, _mm512_load_ps(s.d)), acc[i][r]);
      if constexpr (F::kHasMin) acc[i][r] = _mm512_fmadd_ps(w.m, _mm512_load_ps(s.s), acc[i][r]);
    }
  }
}

// How far ahead of the current step each row is prefetched (into L1). On the 1.1B model with
// 2 threads, q4_0 decode measured 34.2 tok/s without these prefetches, 37-40 at 512 to 640
// bytes ahead and 32 at 1024 (q8_0: 24.3 at 640, 20.6 at 1024); prefetching into L2 only (T1)
// measured 3% slower.
constexpr std::size_t kPrefetchBytes = 640;

// Weight rows n0 + r * span (r < R) against all MR activation rows.
template <typename F, int MR, int R>
KILN_INLINE void row_group(const std::uint8_t* w, std::size_t w_stride, const RowPanel& act, const Indices& ix,
                           std::int64_t n0, std::int64_t span, float* y, std::int64_t ldy) {
  const std::uint8_t* rows[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) rows[r] = w + (n0 + r * span) * w_stride;
  __m512 acc[MR][R];
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) acc[i][r] = _mm512_setzero_ps();
  const std::int64_t full = act.nb / F::kG;
  for (std::int64_t g = 0; g < full; ++g) {
    // The L2 streamer alone leaves these streams short of bandwidth; a software prefetch a
    // fixed distance ahead in each row measured best at 640 bytes (see kPrefetchBytes).
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
      _mm_prefetch(reinterpret_cast<const char*>(rows[r] + g * F::kStepBytes + kPrefetchBytes), _MM_HINT_T0);
    step<F, MR, R>(rows, g * F::kStepBytes, act.steps + g, act.n_steps, ix, acc, false, 0);
  }
  if (full < act.n_steps) {
    const std::size_t bytes = (act.nb - full * F::kG) * F::kBlockBytes;
    step<F, MR, R>(rows, full * F::kStepBytes, act.steps + full, act.n_steps, ix, acc, true, bytes);
  }
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) y[i * ldy + n0 + r * span] = _mm512_reduce_add_ps(acc[i][r]);
}

// R rows far apart at a time (rows n, n + span, ...): each weight row is its own sequential
// stream in its own pages, and one core reads several such streams much faster than one. From
// memory, one thread read q4_0 at 8-10 GB/s through a single stream (one row after another),
// at 6 GB/s through 4 neighbouring rows at once (their interleaved accesses within the same
// pages defeat the L2 streamer) and at 14 GB/s through 8 far-apart rows.
template <typename F, int MR>
void rowwise(const std::uint8_t* w, std::size_t w_stride, const RowPanel& act, std::int64_t n_begin,
             std::int64_t n_end, float* y, std::int64_t ldy) {
  constexpr int R = MR <= 2 ? 8 : 4;
  const Indices ix = F::indices();
  const std::int64_t span = (n_end - n_begin) / R;
  for (std::int64_t n = n_begin; n < n_begin + span; ++n) row_group<F, MR, R>(w, w_stride, act, ix, n, span, y, ldy);
  for (std::int64_t n = n_begin + R * span; n < n_end; ++n) row_group<F, MR, 1>(w, w_stride, act, ix, n, 0, y, ldy);
}

template <typename F>
void gemm(std::int64_t k, const void* w, std::size_t w_stride, const void* a, std::size_t a_stride, std::int64_t M,
          std::int64_t n_begin, std::int64_t n_end, float* y, std::int64_t ldy) {
  if (M <= 0 || n_end <= n_begin) return;
  const RowPanel act = repack_rows<F>(a, a_stride, M, k / 32);
  const auto* wb = static_cast<const std::uint8_t*>(w);
  switch (M) {
    case 1:
      return rowwise<F, 1>(wb, w_stride, act, n_begin, n_end, y, ldy);
    case 2:
      return rowwise<F, 2>(wb, w_stride, act, n_begin, n_end, y, ldy);
    case 3:
      return rowwise<F, 3>(wb, w_stride, act, n_begin, n_end, y, ldy);
    default:
      return rowwise<F, 4>(wb, w_stride, act, n_begin, n_end, y, ldy);
  }
}

}  // namespace

void rowwise_gemm(DType w_type, std::int64_t k, const void* w, std::size_t w_stride, const void* a,
                  std::size_t a_stride, std::int64_t M, std::int64_t n_begin, std::int64_t n_end, float* y,
                  std::int64_t ldy) {
  switch (w_type) {
    case DType::Q4_0:
      return gemm<RowQ4_0>(k, w, w_stride, a, a_stride, M, n_begin, n_end, y, ldy);
    case DType::Q4_1:
      return gemm<RowQ4_1>(k, w, w_stride, a, a_stride, M, n_begin, n_end, y, ldy);
    case DType::Q5_0:
      return gemm<RowQ5_0>(k, w, w_stride, a, a_stride, M, n_begin, n_end, y, ldy);
    case DType::Q5_1:
      return gemm<RowQ5_1>(k, w, w_stride, a, a_stride, M, n_begin, n_end, y, ldy);
    case DType::Q8_0:
      return gemm<RowQ8_0>(k, w, w_stride, a, a_stride, M, n_begin, n_end, y, ldy);
    default:
      return;
  }
}

}  // namespace kiln::kernels::legacy
