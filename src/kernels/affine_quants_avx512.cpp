// AVX-512 VNNI kernels of kiln's affine formats.
//
// The shape of the legacy family's AVX-512 path (legacy_quants_avx512.cpp): 16 weight rows per
// group, one row per 32-bit lane; per run of 32 weights, eight registers hold 4 consecutive
// quants of each row and `vpdpbusd` multiplies them with 4 activation bytes broadcast to every
// lane. The quants are unsigned already (x = d * q + m), so no offset is needed: the integer
// sums are exact, the minimum enters once per group as m * sum(s) of the group's activation
// blocks, and the weight scale once per group too:
//   acc += d * sum_b(da[b] * isum[b]) + m * sum_b(s[b]).
// One activation row (decode) unpacks each block in registers and uses it at once, reading
// two far-apart groups of 16 rows in turn; many rows (prefill) unpack each group of 16 weight
// rows once into an L2-resident buffer in AMX's VNNI layout and reuse it for every activation
// row, whole tiles of 16 rows going to AMX-INT8 where the CPU and OS allow it
// (affine_quants_amx.cpp). Activations are read in place from their q8_1 blocks.
// GCC 12 reports its own _mm512_undefined_* placeholders inside the conversion intrinsics as
// "maybe uninitialized"; the warning is about the header, not this code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <cstddef>
#include <cstring>

#include "kernels/affine_quants_internal.h"
#include "kernels/affine_quants_simd.h"
#include "kernels/row_count.h"
#include "kernels/row_group_avx512.h"

namespace kiln::kernels::affine {
namespace {

// Lets the compiler fold a 4-byte load into vpdpbusd's broadcast memory operand.
using unaligned_i32 = std::int32_t __attribute__((may_alias, aligned(1)));

// ---- weight unpacking: one run of 32 weights of 16 rows into row-per-lane registers -----------

// Lane r = the f16 scale and minimum of row r's block at off, as floats.
KILN_INLINE void load_scales(const RowGroup& g, std::size_t off, __m512* d, __m512* m) {
  const __m512i dm = gather_dword(g, off);
  *d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
  *m = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16)));
}

// w[v] lane r = quants 4v..4v+3 of the run of 32 at row r + off.
template <typename F>
KILN_INLINE void unpack_run(const RowGroup& g, std::size_t off, __m512i w[8]) {
  __m512i u[4];
  load_dwords_16x4(g, off, u);
  if constexpr (F::kBits == 4) {
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    for (int t = 0; t < 4; ++t) {
      w[t] = _mm512_and_si512(u[t], low4);                            // quants 4t..4t+3
      w[t + 4] = _mm512_and_si512(_mm512_srli_epi16(u[t], 4), low4);  // quants 16+4t..16+4t+3
    }
  } else {
    for (int t = 0; t < 4; ++t) w[t] = u[t];
    load_dwords_16x4(g, off + 16, u);
    for (int t = 0; t < 4; ++t) w[t + 4] = u[t];
  }
}

template <typename F>
constexpr std::size_t run_offset(std::int64_t group, int sub) {
  return static_cast<std::size_t>(group) * F::kBlockBytes + 4 + static_cast<std::size_t>(sub) * F::kSubBytes;
}

// ---- the tile: one run of 16 rows against MR activation rows ----------------------------------

// t[i] += da[m0 + i][b] * sum(w * a[m0 + i]) over the run b.
template <int MR>
KILN_INLINE void accumulate_run(const __m512i w[8], const ActView& act, std::int64_t m0, std::int64_t b,
                                __m512 t[MR]) {
  for (int i = 0; i < MR; ++i) {
    const std::uint8_t* q = act_quants(act, m0 + i, b);
    __m512i sum = _mm512_setzero_si512();
    for (int v = 0; v < 8; ++v)
      sum = _mm512_dpbusd_epi32(sum, w[v], _mm512_set1_epi32(*reinterpret_cast<const unaligned_i32*>(q + 4 * v)));
    t[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(act.d[(m0 + i) * act.nb + b]), t[i]);
  }
}

// acc[i] += d * t[i] + m * gs[m0 + i][group].
template <int MR>
KILN_INLINE void finish_group(const __m512 t[MR], __m512 d, __m512 m, const ActView& act, std::int64_t m0,
                              std::int64_t group, __m512 acc[MR]) {
  for (int i = 0; i < MR; ++i) {
    acc[i] = _mm512_fmadd_ps(t[i], d, acc[i]);
    acc[i] = _mm512_fmadd_ps(m, _mm512_set1_ps(act.gs[(m0 + i) * act.n_groups + group]), acc[i]);
  }
}

constexpr std::int64_t kPrefetchBytes = 320;

KILN_INLINE void prefetch_rows(const RowGroup& g, std::size_t off) {
  for (int r = 0; r < 16; ++r) _mm_prefetch(reinterpret_cast<const char*>(g.base + off + r * g.stride), _MM_HINT_T0);
}

// All blocks of one group of 16 rows against MR activation rows, unpacked in registers.
template <typename F, int MR>
KILN_INLINE void direct_group(const RowGroup& g, const ActView& act, __m512 acc[MR]) {
  for (std::int64_t gi = 0; gi < act.n_groups; ++gi) {
    __m512 t[MR];
    for (int i = 0; i < MR; ++i) t[i] = _mm512_setzero_ps();
    for (int s = 0; s < F::kSubBlocks; ++s) {
      // The 16 rows are 16 streams; the hardware prefetcher alone lets them stall.
      prefetch_rows(g, run_offset<F>(gi, s) + kPrefetchBytes);
      __m512i w[8];
      unpack_run<F>(g, run_offset<F>(gi, s), w);
      accumulate_run<MR>(w, act, 0, gi * F::kSubBlocks + s, t);
    }
    __m512 d, m;
    load_scales(g, static_cast<std::size_t>(gi) * F::kBlockBytes, &d, &m);
    finish_group<MR>(t, d, m, act, 0, gi, acc);
  }
}

// Few activation rows: unpack each block in registers and use it at once, streaming the weights.
template <typename F, int MR>
void gemm_direct(const std::uint8_t* w, std::size_t w_stride, const ActView& act, std::int64_t n_begin,
                 std::int64_t n_end, float* y, std::int64_t ldy) {
  for (std::int64_t n0 = n_begin; n0 < n_end; n0 += 16) {
    const int valid = static_cast<int>(n_end - n0 < 16 ? n_end - n0 : 16);
    const RowGroup g =
        valid == 16 ? make_row_group(w + n0 * w_stride, w_stride)
                    : tail_row_group(affine_scratch, w + n0 * w_stride, w_stride, valid, act.n_groups * F::kBlockBytes);
    __m512 acc[MR];
    for (int i = 0; i < MR; ++i) acc[i] = _mm512_setzero_ps();
    direct_group<F, MR>(g, act, acc);
    store_tile<MR>(acc, y, ldy, 0, n0, static_cast<__mmask16>((1u << valid) - 1));
  }
}

// Two groups of 16 rows each, rows n0 + r * row_step and n0 + spacing + r * row_step, block by
// block. Reading two far-apart regions in turn keeps more DRAM pages busy than one region (the
// legacy family measured this: q4_0 decode 29.3 -> 31.2 tok/s, then 33.4 with strided groups).
template <typename F, int MR>
void gemm_direct_pair(const std::uint8_t* w, std::size_t w_stride, const ActView& act, std::int64_t n0,
                      std::int64_t spacing, float* y, std::int64_t ldy, std::int64_t row_step) {
  const std::int64_t n1 = n0 + spacing;
  const RowGroup g0 = make_row_group(w + n0 * w_stride, row_step * w_stride);
  const RowGroup g1 = make_row_group(w + n1 * w_stride, row_step * w_stride);
  __m512 acc0[MR], acc1[MR];
  for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
  for (std::int64_t gi = 0; gi < act.n_groups; ++gi) {
    __m512 t0[MR], t1[MR];
    for (int i = 0; i < MR; ++i) t0[i] = t1[i] = _mm512_setzero_ps();
    for (int s = 0; s < F::kSubBlocks; ++s) {
      const std::size_t off = run_offset<F>(gi, s);
      prefetch_rows(g0, off + kPrefetchBytes);
      prefetch_rows(g1, off + kPrefetchBytes);
      __m512i wv[8];
      unpack_run<F>(g0, off, wv);
      accumulate_run<MR>(wv, act, 0, gi * F::kSubBlocks + s, t0);
      unpack_run<F>(g1, off, wv);
      accumulate_run<MR>(wv, act, 0, gi * F::kSubBlocks + s, t1);
    }
    __m512 d, m;
    load_scales(g0, static_cast<std::size_t>(gi) * F::kBlockBytes, &d, &m);
    finish_group<MR>(t0, d, m, act, 0, gi, acc0);
    load_scales(g1, static_cast<std::size_t>(gi) * F::kBlockBytes, &d, &m);
    finish_group<MR>(t1, d, m, act, 0, gi, acc1);
  }
  store_tile_pair<MR>(acc0, acc1, y, ldy, n0, n1, row_step);
}

// Ranges of at least 4 full groups (64 rows) go through gemm_direct_pair with strided groups:
// group j holds rows n_begin + j + r * 2 * half (r = 0..15) and pairs with group j + half.
// Smaller ranges and the leftover rows go through gemm_direct.
template <typename F, int MR>
void gemm_direct_paired(const std::uint8_t* w, std::size_t w_stride, const ActView& act, std::int64_t n_begin,
                        std::int64_t n_end, float* y, std::int64_t ldy) {
  const std::int64_t groups = (n_end - n_begin) / 16;
  if (groups < 4) return gemm_direct<F, MR>(w, w_stride, act, n_begin, n_end, y, ldy);
  const std::int64_t half = groups / 2;
  for (std::int64_t j = 0; j < half; ++j)
    gemm_direct_pair<F, MR>(w, w_stride, act, n_begin + j, half, y, ldy, 2 * half);
  gemm_direct<F, MR>(w, w_stride, act, n_begin + 32 * half, n_end, y, ldy);
}

// ---- many activation rows: unpack once, reuse for every row ------------------------------------

// A run of 32 weights of 16 rows as stored in the unpacked buffer (AMX's B layout).
struct alignas(64) PackedRun {
  __m512i w[8];
};
// The scales of one group of 16 rows: d then m, 16 floats each.
struct alignas(64) PackedScales {
  __m512 d, m;
};

template <typename F, int MR>
void tile_from_packed(const PackedRun* runs, const PackedScales* scales, const ActView& act, std::int64_t m0,
                      float* y, std::int64_t ldy, std::int64_t n0, __mmask16 mask) {
  __m512 acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm512_setzero_ps();
  for (std::int64_t gi = 0; gi < act.n_groups; ++gi) {
    __m512 t[MR];
    for (int i = 0; i < MR; ++i) t[i] = _mm512_setzero_ps();
    for (int s = 0; s < F::kSubBlocks; ++s) {
      const std::int64_t b = gi * F::kSubBlocks + s;
      __m512i w[8];
      for (int v = 0; v < 8; ++v) w[v] = _mm512_load_si512(&runs[b].w[v]);
      accumulate_run<MR>(w, act, m0, b, t);
    }
    finish_group<MR>(t, _mm512_load_ps(&scales[gi].d), _mm512_load_ps(&scales[gi].m), act, m0, gi, acc);
  }
  store_tile<MR>(acc, y, ldy, m0, n0, mask);
}

constexpr int kTileRows = 8;
constexpr std::int64_t kAmxMinRows = 16;

template <typename F>
void gemm_packed(const std::uint8_t* w, std::size_t w_stride, const ActView& act, std::int64_t M, std::int64_t n_begin,
                 std::int64_t n_end, float* y, std::int64_t ldy) {
  const std::size_t runs_bytes = sizeof(PackedRun) * static_cast<std::size_t>(act.nb);
  std::uint8_t* mem = affine_scratch(1, runs_bytes + sizeof(PackedScales) * static_cast<std::size_t>(act.n_groups));
  auto* runs = reinterpret_cast<PackedRun*>(mem);
  auto* scales = reinterpret_cast<PackedScales*>(mem + runs_bytes);
  const bool use_amx = M >= kAmxMinRows && amx_usable();
  for (std::int64_t n0 = n_begin; n0 < n_end; n0 += 16) {
    const int valid = static_cast<int>(n_end - n0 < 16 ? n_end - n0 : 16);
    const RowGroup g =
        valid == 16 ? make_row_group(w + n0 * w_stride, w_stride)
                    : tail_row_group(affine_scratch, w + n0 * w_stride, w_stride, valid, act.n_groups * F::kBlockBytes);
    for (std::int64_t gi = 0; gi < act.n_groups; ++gi) {
      for (int s = 0; s < F::kSubBlocks; ++s) {
        __m512i wv[8];
        unpack_run<F>(g, run_offset<F>(gi, s), wv);
        for (int v = 0; v < 8; ++v) _mm512_store_si512(&runs[gi * F::kSubBlocks + s].w[v], wv[v]);
      }
      __m512 d, m;
      load_scales(g, static_cast<std::size_t>(gi) * F::kBlockBytes, &d, &m);
      _mm512_store_ps(&scales[gi].d, d);
      _mm512_store_ps(&scales[gi].m, m);
    }
    const auto mask = static_cast<__mmask16>((1u << valid) - 1);
    std::int64_t m0 = 0;
    if (use_amx) {
      m0 = M / 16 * 16;
      amx_gemm_rows(PackedRows{mem, sizeof(PackedRun), reinterpret_cast<const float*>(scales), F::kSubBlocks}, act, 0,
                    m0, y, ldy, n0, mask);
    }
    for (; m0 + kTileRows <= M; m0 += kTileRows) tile_from_packed<F, kTileRows>(runs, scales, act, m0, y, ldy, n0, mask);
    with_row_count<kTileRows - 1>(M - m0, [&](auto rows) {
      tile_from_packed<F, decltype(rows)::value>(runs, scales, act, m0, y, ldy, n0, mask);
    });
  }
}

template <typename F>
void gemm(std::int64_t k, const void* w, std::size_t w_stride, const void* a, std::size_t a_stride, std::int64_t M,
          std::int64_t n_begin, std::int64_t n_end, float* y, std::int64_t ldy) {
  if (M <= 0 || n_end <= n_begin) return;
  const ActView act = view_activations(a, a_stride, M, k / 32, F::kSubBlocks, false, nullptr);
  const auto* wb = static_cast<const std::uint8_t*>(w);
  // Up to 4 activation rows skip the unpacked buffer.
  switch (M) {
    case 1:
      return gemm_direct_paired<F, 1>(wb, w_stride, act, n_begin, n_end, y, ldy);
    case 2:
      return gemm_direct_paired<F, 2>(wb, w_stride, act, n_begin, n_end, y, ldy);
    case 3:
      return gemm_direct_paired<F, 3>(wb, w_stride, act, n_begin, n_end, y, ldy);
    case 4:
      return gemm_direct_paired<F, 4>(wb, w_stride, act, n_begin, n_end, y, ldy);
    default:
      return gemm_packed<F>(wb, w_stride, act, M, n_begin, n_end, y, ldy);
  }
}

// ---- vec_dot: one row, one run of 32 at a time in 256-bit registers ----------------------------

template <typename F>
KILN_INLINE __m256i run_in_order(const std::uint8_t* qs) {
  if constexpr (F::kBits == 4) {
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(packed), _mm_srli_epi16(packed, 4), 1);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
  } else {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs));
  }
}

template <typename F>
float vec_dot(std::int64_t k, const void* w_row, const void* a_row) {
  const auto* w = static_cast<const std::uint8_t*>(w_row);
  const auto* a = static_cast<const std::uint8_t*>(a_row);
  __m256 acc = _mm256_setzero_ps();
  float min_sum = 0.0f;
  for (std::int64_t gi = 0; gi < k / F::kGroup; ++gi, w += F::kBlockBytes) {
    __m256 t = _mm256_setzero_ps();
    float s = 0.0f;
    for (int j = 0; j < F::kSubBlocks; ++j) {
      const std::uint8_t* ab = a + (gi * F::kSubBlocks + j) * kActBlockBytes;
      const __m256i q = run_in_order<F>(w + 4 + j * F::kSubBytes);
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ab + kActQs));
      const __m256i sum = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, x);
      t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(half_to_float(load_u16(ab))), t);
      s += half_to_float(load_u16(ab + 2));
    }
    acc = _mm256_fmadd_ps(t, _mm256_set1_ps(half_to_float(load_u16(w))), acc);
    min_sum += half_to_float(load_u16(w + 2)) * s;
  }
  return reduce_add(acc) + min_sum;
}

template <typename F>
constexpr Fns avx512_entry() {
  return Fns{vec_dot<F>, gemm<F>};
}

// In the order of kAffineTypes.
constexpr Fns kAvx512Fns[] = {avx512_entry<Format<4, 64>>(), avx512_entry<Format<4, 128>>(),
                              avx512_entry<Format<8, 32>>(), avx512_entry<Format<8, 64>>(),
                              avx512_entry<Format<8, 128>>()};

}  // namespace

const Fns* avx512_fns(DType w) { return fns_of(kAvx512Fns, w); }

}  // namespace kiln::kernels::affine
