// AVX-512 VNNI kernels of the legacy block formats.
//
// The gemm works on groups of 16 weight rows with one row per 32-bit lane: for each block,
// eight registers hold 4 consecutive quants of each of the 16 rows, as unsigned bytes, and
// `vpdpbusd` multiplies them with 4 activation bytes broadcast to every lane. One block of 16
// rows x 1 activation row thus costs 8 vpdpbusd, a conversion and two float ops, and the
// result lanes are 16 consecutive outputs y[m][n0..n0+15]. Getting there needs a 16x4 dword
// transpose per block (the `load_dwords_16x4` below); for a single activation row (decode)
// the transpose is done in registers right before use, for many rows (prefill) each group of
// weight rows is unpacked once into an L2-resident buffer and then reused by all M rows; where
// the CPU and OS allow AMX, whole tiles of 16 activation rows then go through TDPBSUD instead
// (legacy_quants_amx.cpp), since the unpacked blocks are already in AMX's VNNI layout.
//
// vpdpbusd multiplies unsigned by signed bytes, so every weight quant is made unsigned by a
// per-format offset (q4_0: q in [0,16) stands for q - 8; q5_0: q - 16; q8_0: q ^ 0x80 stands
// for q - 128), and each block's integer sum starts from -offset * sum(activations of the
// block), which the activation repack computes once per call. The integer part is exact, so
// results differ from the scalar reference only by float rounding order.
// GCC 12 reports its own _mm512_undefined_* placeholders inside the conversion intrinsics as
// "maybe uninitialized"; the warning is about the header, not this code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <cstddef>
#include <cstring>

#include "kernels/blocks.h"
#include "kernels/kernel_families.h"
#include "kernels/legacy_quants_internal.h"
#include "kernels/legacy_quants_panel.h"
#include "kernels/row_count.h"
#include "kernels/row_group_avx512.h"

namespace kiln::kernels::legacy {
namespace {

// Lets the compiler fold a 4-byte load into vpdpbusd's broadcast memory operand.
using unaligned_i32 = std::int32_t __attribute__((may_alias, aligned(1)));

// ---- activation quantizers (same bytes as quantize_act_*_scalar) ------------------------------

// Quantizes the 32 floats at x with scale amax / 127, rounding half to even; returns d.
KILN_INLINE float quantize_block_q8(const float* x, std::int8_t* qs, __m512i* sum) {
  const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
  const float d = amax / 127;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, _mm512_set1_ps(id)));
  const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, _mm512_set1_ps(id)));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs), _mm512_cvtsepi32_epi8(q0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + 16), _mm512_cvtsepi32_epi8(q1));
  if (sum != nullptr) *sum = _mm512_add_epi32(q0, q1);
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
    __m512i sum;
    std::uint8_t* block = static_cast<std::uint8_t*>(dst) + i * sizeof(block_q8_1);
    const float d =
        quantize_block_q8(x + i * QK8_1, reinterpret_cast<std::int8_t*>(block + offsetof(block_q8_1, qs)), &sum);
    store_u16(block + offsetof(block_q8_1, d), float_to_half(d));
    store_u16(block + offsetof(block_q8_1, s), float_to_half(static_cast<float>(_mm512_reduce_add_epi32(sum)) * d));
  }
}

// ---- weight unpacking: one block of 16 rows into row-per-lane registers -----------------------

KILN_INLINE __m512 low_half_to_float(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)); }
KILN_INLINE __m512 high_half_to_float(__m512i v) {
  return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(v, 16)));
}

// One block of 16 rows: w[v] lane r = quants 4v..4v+3 of row r as unsigned bytes.
struct UnpackedBlock {
  __m512i w[8];
  __m512 d;
  __m512 m;  // zero points (q4_1, q5_1 only)
};

KILN_INLINE void unpack_nibbles(const RowGroup& g, std::size_t qs_off, UnpackedBlock& out) {
  __m512i u[4];
  load_dwords_16x4(g, qs_off, u);
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (int t = 0; t < 4; ++t) {
    out.w[t] = _mm512_and_si512(u[t], low4);                            // quants 4t..4t+3
    out.w[t + 4] = _mm512_and_si512(_mm512_srli_epi16(u[t], 4), low4);  // quants 16+4t..16+4t+3
  }
}

// Adds 16 to each quant whose bit is set in qh (lane r = row r's 32 high bits).
KILN_INLINE void add_high_bits(__m512i qh, UnpackedBlock& out) {
  // Each lane's byte v/2 of qh holds the high bits of quants 4v..4v+3 (in its low or high
  // nibble); vpshufb copies that byte to all 4 bytes of the lane, and a per-byte bit test
  // selects the bytes that get +16.
  const __m512i lane_base =
      _mm512_set_epi32(0x0C0C0C0C, 0x08080808, 0x04040404, 0, 0x0C0C0C0C, 0x08080808, 0x04040404, 0, 0x0C0C0C0C,
                       0x08080808, 0x04040404, 0, 0x0C0C0C0C, 0x08080808, 0x04040404, 0);
  const __m512i bit_low = _mm512_set1_epi32(0x08040201), bit_high = _mm512_set1_epi32(static_cast<int>(0x80402010u));
  const __m512i sixteen = _mm512_set1_epi8(0x10);
  for (int v = 0; v < 8; ++v) {
    const __m512i pick = _mm512_add_epi8(lane_base, _mm512_set1_epi8(static_cast<char>(v / 2)));
    const __m512i bytes = _mm512_shuffle_epi8(qh, pick);
    const __mmask64 set = _mm512_test_epi8_mask(bytes, v % 2 == 0 ? bit_low : bit_high);
    out.w[v] = _mm512_mask_add_epi8(out.w[v], set, out.w[v], sixteen);
  }
}

struct FormatQ4_0 {
  static constexpr DType kType = DType::Q4_0;
  using ActBlock = block_q8_0;
  static constexpr std::size_t kBlockBytes = sizeof(block_q4_0);
  static constexpr bool kHasMin = false;
  static constexpr int kOffset = 8;
  static KILN_INLINE void unpack(const RowGroup& g, std::int64_t b, UnpackedBlock& out) {
    const std::size_t off = b * kBlockBytes;
    unpack_nibbles(g, off + 2, out);
    out.d = low_half_to_float(gather_dword(g, off));
  }
};

struct FormatQ4_1 {
  static constexpr DType kType = DType::Q4_1;
  using ActBlock = block_q8_1;
  static constexpr std::size_t kBlockBytes = sizeof(block_q4_1);
  static constexpr bool kHasMin = true;
  static constexpr int kOffset = 0;
  static KILN_INLINE void unpack(const RowGroup& g, std::int64_t b, UnpackedBlock& out) {
    const std::size_t off = b * kBlockBytes;
    unpack_nibbles(g, off + 4, out);
    const __m512i dm = gather_dword(g, off);
    out.d = low_half_to_float(dm);
    out.m = high_half_to_float(dm);
  }
};

struct FormatQ5_0 {
  static constexpr DType kType = DType::Q5_0;
  using ActBlock = block_q8_0;
  static constexpr std::size_t kBlockBytes = sizeof(block_q5_0);
  static constexpr bool kHasMin = false;
  static constexpr int kOffset = 16;
  static KILN_INLINE void unpack(const RowGroup& g, std::int64_t b, UnpackedBlock& out) {
    const std::size_t off = b * kBlockBytes;
    unpack_nibbles(g, off + 6, out);
    add_high_bits(gather_dword(g, off + 2), out);
    out.d = low_half_to_float(gather_dword(g, off));
  }
};

struct FormatQ5_1 {
  static constexpr DType kType = DType::Q5_1;
  using ActBlock = block_q8_1;
  static constexpr std::size_t kBlockBytes = sizeof(block_q5_1);
  static constexpr bool kHasMin = true;
  static constexpr int kOffset = 0;
  static KILN_INLINE void unpack(const RowGroup& g, std::int64_t b, UnpackedBlock& out) {
    const std::size_t off = b * kBlockBytes;
    unpack_nibbles(g, off + 8, out);
    add_high_bits(gather_dword(g, off + 4), out);
    const __m512i dm = gather_dword(g, off);
    out.d = low_half_to_float(dm);
    out.m = high_half_to_float(dm);
  }
};

struct FormatQ8_0 {
  static constexpr DType kType = DType::Q8_0;
  using ActBlock = block_q8_0;
  static constexpr std::size_t kBlockBytes = sizeof(block_q8_0);
  static constexpr bool kHasMin = false;
  static constexpr int kOffset = 128;
  static KILN_INLINE void unpack(const RowGroup& g, std::int64_t b, UnpackedBlock& out) {
    const std::size_t off = b * kBlockBytes;
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    __m512i u[4];
    load_dwords_16x4(g, off + 2, u);
    for (int t = 0; t < 4; ++t) out.w[t] = _mm512_xor_si512(u[t], flip);
    load_dwords_16x4(g, off + 18, u);
    for (int t = 0; t < 4; ++t) out.w[t + 4] = _mm512_xor_si512(u[t], flip);
    out.d = low_half_to_float(gather_dword(g, off));
  }
};

// ---- the tile: one unpacked block of 16 rows against MR activation rows ----------------------

template <typename F, int MR>
KILN_INLINE void accumulate_block(const __m512i w[8], __m512 wd, __m512 wm, const ActPanel& act, std::int64_t m0,
                                  std::int64_t b, __m512 acc[MR]) {
  for (int i = 0; i < MR; ++i) {
    const std::int64_t m = m0 + i;
    const std::int8_t* q = act.qs + m * act.qs_stride + b * 32;
    __m512i sum = _mm512_set1_epi32(act.bias[m * act.nb + b]);
    for (int v = 0; v < 8; ++v)
      sum = _mm512_dpbusd_epi32(sum, w[v], _mm512_set1_epi32(*reinterpret_cast<const unaligned_i32*>(q + 4 * v)));
    const __m512 scale = _mm512_mul_ps(wd, _mm512_set1_ps(act.d[m * act.nb + b]));
    acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, acc[i]);
    if constexpr (F::kHasMin) acc[i] = _mm512_fmadd_ps(wm, _mm512_set1_ps(act.s[m * act.nb + b]), acc[i]);
  }
}

constexpr std::int64_t kPrefetchBytes = 320;

// Whether gemm_direct prefetches the next group of 16 rows linearly while working on the
// current one. The 16 rows of a group are one contiguous region, so the prefetches walk it as
// a single sequential stream, which the memory system serves faster than 16 short row streams:
// q4_0 decode went from 27.9 to 29.1 tok/s (1.1B model, 2 threads). For q8_0 the same scheme
// measured slower (19.1 -> 18.0 tok/s), so it keeps the per-row prefetch only; the other
// formats were not measured and keep it too.
template <typename F>
constexpr bool kPrefetchNextGroup = F::kBlockBytes == sizeof(block_q4_0) && !F::kHasMin;

// Few activation rows: unpack each block in registers and use it at once, streaming the weights.
template <typename F, int MR>
void gemm_direct(const std::uint8_t* w, std::size_t w_stride, const ActPanel& act, std::int64_t n_begin,
                 std::int64_t n_end, float* y, std::int64_t ldy) {
  // Bytes of the next group to prefetch per block step, so that the whole group is fetched
  // by the time the current one is done.
  const std::size_t next_group_step = (16 * w_stride + act.nb - 1) / act.nb;
  for (std::int64_t n0 = n_begin; n0 < n_end; n0 += 16) {
    const int valid = static_cast<int>(n_end - n0 < 16 ? n_end - n0 : 16);
    const RowGroup g =
        valid == 16 ? make_row_group(w + n0 * w_stride, w_stride)
                    : tail_row_group(legacy_scratch, w + n0 * w_stride, w_stride, valid, act.nb * F::kBlockBytes);
    // Only the first group of the range has not been prefetched by its predecessor; a last
    // partial group is read through the scratch copy, so it is not prefetched.
    const bool prefetch_rows = !kPrefetchNextGroup<F> || n0 == n_begin;
    const bool prefetch_next = kPrefetchNextGroup<F> && n0 + 32 <= n_end;
    const std::uint8_t* next = w + (n0 + 16) * w_stride;
    const std::uint8_t* next_target = next;
    __m512 acc[MR];
    for (int i = 0; i < MR; ++i) acc[i] = _mm512_setzero_ps();
    for (std::int64_t b = 0; b < act.nb; ++b) {
      // The 16 rows are 16 streams; the hardware prefetcher alone lets them stall.
      if (prefetch_rows) {
        const std::uint8_t* ahead = g.base + b * F::kBlockBytes + kPrefetchBytes;
        for (int r = 0; r < 16; ++r) _mm_prefetch(reinterpret_cast<const char*>(ahead + r * g.stride), _MM_HINT_T0);
      }
      if (prefetch_next) {
        next_target += next_group_step;
        for (; next < next_target; next += 64) _mm_prefetch(reinterpret_cast<const char*>(next), _MM_HINT_T1);
      }
      UnpackedBlock u;
      F::unpack(g, b, u);
      accumulate_block<F, MR>(u.w, u.d, u.m, act, 0, b, acc);
    }
    store_tile<MR>(acc, y, ldy, 0, n0, static_cast<__mmask16>((1u << valid) - 1));
  }
}

// Two groups of 16 rows each, rows n0 + r * row_step and n0 + spacing + r * row_step,
// block by block; the results go to y[n0 + r * row_step] and y[n0 + spacing + r * row_step]. Reading two
// far-apart regions in turn keeps more DRAM pages busy than one region: decode on a 1.1B model
// with 2 threads went from 29.3 to 31.2 tok/s for q4_0 and from 19.1 to 20.2 for q8_0 (two
// groups with 16 row streams each; three or four groups at once measured slower, and so did
// the per-row prefetches issued group after group instead of alternating).
template <typename F, int MR>
void gemm_direct_pair(const std::uint8_t* w, std::size_t w_stride, const ActPanel& act, std::int64_t n0,
                      std::int64_t spacing, float* y, std::int64_t ldy, std::int64_t row_step) {
  const std::int64_t n1 = n0 + spacing;
  const RowGroup g0 = make_row_group(w + n0 * w_stride, row_step * w_stride);
  const RowGroup g1 = make_row_group(w + n1 * w_stride, row_step * w_stride);
  __m512 acc0[MR], acc1[MR];
  for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
  for (std::int64_t b = 0; b < act.nb; ++b) {
    {
      const std::uint8_t* a0 = g0.base + b * F::kBlockBytes + kPrefetchBytes;
      const std::uint8_t* a1 = g1.base + b * F::kBlockBytes + kPrefetchBytes;
      for (int r = 0; r < 16; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(a0 + r * g0.stride), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(a1 + r * g0.stride), _MM_HINT_T0);
      }
    }
    UnpackedBlock u;
    F::unpack(g0, b, u);
    accumulate_block<F, MR>(u.w, u.d, u.m, act, 0, b, acc0);
    F::unpack(g1, b, u);
    accumulate_block<F, MR>(u.w, u.d, u.m, act, 0, b, acc1);
  }
  store_tile_pair<MR>(acc0, acc1, y, ldy, n0, n1, row_step);
}

// Ranges of at least 4 full groups (64 rows) go through gemm_direct_pair with strided groups;
// smaller ranges and the leftover rows go through gemm_direct.
template <typename F, int MR>
void gemm_direct_paired(const std::uint8_t* w, std::size_t w_stride, const ActPanel& act, std::int64_t n_begin,
                        std::int64_t n_end, float* y, std::int64_t ldy) {
  const std::int64_t groups = (n_end - n_begin) / 16;
  if (groups < 4) return gemm_direct<F, MR>(w, w_stride, act, n_begin, n_end, y, ldy);
  const std::int64_t half = groups / 2;
  // Group j holds rows n_begin + j + r * 2 * half (r = 0..15), so each group's 16 rows are
  // spread over the whole range; j pairs with j + half. This measured clearly faster than
  // groups of 16 consecutive rows (q4_0 31.2 -> 33.4 tok/s, q8_0 20.2 -> 23.4).
  for (std::int64_t j = 0; j < half; ++j)
    gemm_direct_pair<F, MR>(w, w_stride, act, n_begin + j, half, y, ldy, 2 * half);
  gemm_direct<F, MR>(w, w_stride, act, n_begin + 32 * half, n_end, y, ldy);
}

// A block of 16 rows as stored in the unpacked buffer.
struct alignas(64) PackedBlock {
  __m512i w[8];
  __m512 d;
  __m512 m;
};

template <typename F, int MR>
void tile_from_packed(const PackedBlock* packed, const ActPanel& act, std::int64_t m0, float* y, std::int64_t ldy,
                      std::int64_t n0, __mmask16 mask) {
  __m512 acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm512_setzero_ps();
  for (std::int64_t b = 0; b < act.nb; ++b) {
    const PackedBlock& p = packed[b];
    __m512i w[8];
    for (int v = 0; v < 8; ++v) w[v] = _mm512_load_si512(&p.w[v]);
    accumulate_block<F, MR>(w, _mm512_load_ps(&p.d), F::kHasMin ? _mm512_load_ps(&p.m) : _mm512_setzero_ps(), act, m0,
                            b, acc);
  }
  store_tile<MR>(acc, y, ldy, m0, n0, mask);
}

constexpr int kTileRows = 8;
constexpr std::int64_t kAmxMinRows = 16;  // activation rows per tile of the packed path

template <typename F>
void gemm_packed(const std::uint8_t* w, std::size_t w_stride, const ActPanel& act, std::int64_t M, std::int64_t n_begin,
                 std::int64_t n_end, float* y, std::int64_t ldy) {
  auto* packed = reinterpret_cast<PackedBlock*>(legacy_scratch(1, sizeof(PackedBlock) * act.nb));
  // Whole tiles of 16 activation rows go to AMX where it exists.
  const bool use_amx = M >= kAmxMinRows && amx_usable();
  for (std::int64_t n0 = n_begin; n0 < n_end; n0 += 16) {
    const int valid = static_cast<int>(n_end - n0 < 16 ? n_end - n0 : 16);
    const RowGroup g =
        valid == 16 ? make_row_group(w + n0 * w_stride, w_stride)
                    : tail_row_group(legacy_scratch, w + n0 * w_stride, w_stride, valid, act.nb * F::kBlockBytes);
    for (std::int64_t b = 0; b < act.nb; ++b) {
      UnpackedBlock u;
      F::unpack(g, b, u);
      for (int v = 0; v < 8; ++v) _mm512_store_si512(&packed[b].w[v], u.w[v]);
      _mm512_store_ps(&packed[b].d, u.d);
      if constexpr (F::kHasMin) _mm512_store_ps(&packed[b].m, u.m);
    }
    const auto mask = static_cast<__mmask16>((1u << valid) - 1);
    std::int64_t m0 = 0;
    if (use_amx) {
      m0 = M / 16 * 16;
      amx_gemm_rows(PackedWeights{reinterpret_cast<const std::uint8_t*>(packed), act.nb, sizeof(PackedBlock),
                                  offsetof(PackedBlock, d), offsetof(PackedBlock, m), F::kHasMin},
                    ActRows{act.qs, act.qs_stride, act.d, act.bias, act.s, act.nb}, 0, m0, y, ldy, n0, mask);
    }
    for (; m0 + kTileRows <= M; m0 += kTileRows) tile_from_packed<F, kTileRows>(packed, act, m0, y, ldy, n0, mask);
    with_row_count<kTileRows - 1>(
        M - m0, [&](auto rows) { tile_from_packed<F, decltype(rows)::value>(packed, act, m0, y, ldy, n0, mask); });
  }
}

template <typename F, int MR = 5>
void gemm_direct_dispatch(std::int64_t M, const std::uint8_t* w, std::size_t w_stride, const ActPanel& act,
                          std::int64_t n_begin, std::int64_t n_end, float* y, std::int64_t ldy) {
  if constexpr (MR <= 16) {
    if (M == MR) return gemm_direct<F, MR>(w, w_stride, act, n_begin, n_end, y, ldy);
    return gemm_direct_dispatch<F, MR + 1>(M, w, w_stride, act, n_begin, n_end, y, ldy);
  }
}

constexpr std::int64_t kDirectMaxRows = 16;  // up to this many activation rows skip the unpacked buffer

template <typename F>
void gemm(std::int64_t k, const void* w, std::size_t w_stride, const void* a, std::size_t a_stride, std::int64_t M,
          std::int64_t n_begin, std::int64_t n_end, float* y, std::int64_t ldy) {
  if (M <= 0 || n_end <= n_begin) return;
  if (M >= kColumnsMinRows && M <= kColumnsMaxRows) return columns_gemm(F::kType, k, w, w_stride, a, a_stride, M, n_begin, n_end, y, ldy);
  const ActPanel act = repack_activations<typename F::ActBlock>(a, a_stride, M, k / 32, F::kOffset);
  const auto* wb = static_cast<const std::uint8_t*>(w);
  switch (M) {
    case 1:
      gemm_direct_paired<F, 1>(wb, w_stride, act, n_begin, n_end, y, ldy);
      return;
    case 2:
      gemm_direct_paired<F, 2>(wb, w_stride, act, n_begin, n_end, y, ldy);
      return;
    case 3:
      gemm_direct_paired<F, 3>(wb, w_stride, act, n_begin, n_end, y, ldy);
      return;
    case 4:
      gemm_direct_paired<F, 4>(wb, w_stride, act, n_begin, n_end, y, ldy);
      return;
    default:
      break;
  }
  // Up to 16 rows (a decode step of up to 16 sequences) the direct kernel with every row's
  // accumulator in registers beats unpacking into the buffer (and AMX-INT8, whose per-block
  // tile store and rescale cost as much as the VNNI products): one decode step of 8 / 12 / 16
  // sequences on the 1.1B q4_0 model took 55 / 71 / 87 ms against 72 / 86 / 93 ms.
  if (M <= kDirectMaxRows) {
    gemm_direct_dispatch<F>(M, wb, w_stride, act, n_begin, n_end, y, ldy);
    return;
  }
  gemm_packed<F>(wb, w_stride, act, M, n_begin, n_end, y, ldy);
}

// ---- vec_dot: one row, one block at a time in 256-bit registers --------------------------------

// The 32 quants of one block in order, as unsigned bytes (the same offsets as above).
KILN_INLINE __m256i nibbles_in_order(const std::uint8_t* qs) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(packed), _mm_srli_epi16(packed, 4), 1);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

KILN_INLINE __m256i add_high_bits_in_order(__m256i q, const std::uint8_t* qh_bytes) {
  const __mmask32 qh = static_cast<__mmask32>(static_cast<std::uint32_t>(load_i32(qh_bytes)));
  return _mm256_mask_add_epi8(q, qh, q, _mm256_set1_epi8(0x10));
}

template <typename F>
KILN_INLINE __m256i block_quants(const std::uint8_t* blk) {
  if constexpr (F::kOffset == 128) {
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2)),
                            _mm256_set1_epi8(static_cast<char>(0x80)));
  } else if constexpr (F::kBlockBytes == sizeof(block_q4_0)) {
    return nibbles_in_order(blk + 2);
  } else if constexpr (F::kBlockBytes == sizeof(block_q4_1)) {
    return nibbles_in_order(blk + 4);
  } else if constexpr (F::kBlockBytes == sizeof(block_q5_0)) {
    return add_high_bits_in_order(nibbles_in_order(blk + 6), blk + 2);
  } else {
    return add_high_bits_in_order(nibbles_in_order(blk + 8), blk + 4);
  }
}

template <typename F>
float vec_dot(std::int64_t k, const void* w_row, const void* a_row) {
  using A = typename F::ActBlock;
  const auto* w = static_cast<const std::uint8_t*>(w_row);
  const auto* a = static_cast<const std::uint8_t*>(a_row);
  const __m256i offset = _mm256_set1_epi8(static_cast<char>(F::kOffset));
  __m256 acc = _mm256_setzero_ps();
  float min_sum = 0.0f;
  for (std::int64_t b = 0; b < k / 32; ++b, w += F::kBlockBytes) {
    const __m256i q = block_quants<F>(w);
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + b * sizeof(A) + offsetof(A, qs)));
    __m256i sum = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, x);
    if constexpr (F::kOffset != 0) sum = _mm256_sub_epi32(sum, _mm256_dpbusd_epi32(_mm256_setzero_si256(), offset, x));
    scale_block_dot<F>(sum, w, a, b, acc, min_sum);
  }
  return reduce_add(acc) + min_sum;
}

template <typename F>
constexpr WeightKernels avx512_entry(DType w) {
  return table_entry<F>(w, quantize_act_q8_0, quantize_act_q8_1, vec_dot<F>, gemm<F>, SimdLevel::Avx512);
}

constexpr WeightKernels kAvx512Kernels[] = {
    avx512_entry<FormatQ4_0>(DType::Q4_0), avx512_entry<FormatQ4_1>(DType::Q4_1), avx512_entry<FormatQ5_0>(DType::Q5_0),
    avx512_entry<FormatQ5_1>(DType::Q5_1), avx512_entry<FormatQ8_0>(DType::Q8_0),
};

}  // namespace

const WeightKernels* avx512_kernels(DType w) { return find_kernels(kAvx512Kernels, w); }

}  // namespace kiln::kernels::legacy
