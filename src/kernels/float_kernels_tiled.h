#pragma once
// Internal: the register-tiled float GEMM driver shared by the AVX2 and AVX-512 paths of the
// f32 / f16 / bf16 weight kernels. It is ISA-agnostic: each translation unit instantiates it
// with an `Ops` type that knows how to load and multiply one register's worth of elements, so
// one loop nest serves all three weight types (a vector of weights is converted to the
// compute format inside the loop, never in memory).
//
// y[m * ldy + n] = dot(W row n, A row m) is computed in tiles of RW weight rows × RA activation
// rows: each k step loads RW weight vectors and reuses each against RA activation vectors, so
// a tile holds RW·RA accumulators in registers and reduces them horizontally at the end.
// The loops around the tile block k (so that RA activation rows stay in L1) and n (so that
// the weight rows of a k block stay in L2 while every activation tile passes over them).
//
// Ops provides:
//   WReg, AReg, Acc                         register types (weights, activations, accumulator)
//   kStep                                   elements per register
//   kRowsW, kRowsA                          the largest tile
//   kBlockK                                 k block length (a multiple of kStep)
//   kWeightBytes                            bytes per weight element
//   Acc zero()
//   WReg load_w(const char* row, i)         elements [i, i + kStep) of a weight row
//   WReg load_w_tail(const char* row, i, count)   count < kStep elements, the rest zero
//   AReg load_a(const char* row, i), AReg load_a_tail(const char* row, i, count)
//   Acc madd(Acc acc, WReg w, AReg a)       acc + w·a lane-wise
//   reduce<N>(const Acc (&acc)[N], float* sums)   sums[j] = the sum of the lanes of acc[j]
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <utility>

namespace kiln::kernels::float_tiled {

// One tile's inputs: RW weight rows from `w`, RA activation rows from `a`, k range [k0, k1).
struct TileArgs {
  const char* w;
  std::size_t w_stride;
  const char* a;
  std::size_t a_stride;
  std::int64_t k0, k1;
  float* y;  // y[c * ldy + r] receives the dot of weight row r and activation row c
  std::int64_t ldy;
  bool accumulate;  // add to y (a later k block) instead of storing
};
using TileFn = void (*)(const TileArgs&);

template <class Ops, int RW, int RA>
void tile(const TileArgs& t) {
  typename Ops::Acc acc[RW][RA];
#pragma GCC unroll 8
  for (int r = 0; r < RW; ++r)
#pragma GCC unroll 8
    for (int c = 0; c < RA; ++c) acc[r][c] = Ops::zero();
  const char* w_rows[RW];
  const char* a_rows[RA];
  for (int r = 0; r < RW; ++r) w_rows[r] = t.w + static_cast<std::size_t>(r) * t.w_stride;
  for (int c = 0; c < RA; ++c) a_rows[c] = t.a + static_cast<std::size_t>(c) * t.a_stride;

  std::int64_t i = t.k0;
  for (; i + Ops::kStep <= t.k1; i += Ops::kStep) {
    typename Ops::WReg wv[RW];
#pragma GCC unroll 8
    for (int r = 0; r < RW; ++r) wv[r] = Ops::load_w(w_rows[r], i);
#pragma GCC unroll 8
    for (int c = 0; c < RA; ++c) {
      const typename Ops::AReg av = Ops::load_a(a_rows[c], i);
#pragma GCC unroll 8
      for (int r = 0; r < RW; ++r) acc[r][c] = Ops::madd(acc[r][c], wv[r], av);
    }
  }
  if (i < t.k1) {
    const std::int64_t count = t.k1 - i;
    typename Ops::WReg wv[RW];
#pragma GCC unroll 8
    for (int r = 0; r < RW; ++r) wv[r] = Ops::load_w_tail(w_rows[r], i, count);
#pragma GCC unroll 8
    for (int c = 0; c < RA; ++c) {
      const typename Ops::AReg av = Ops::load_a_tail(a_rows[c], i, count);
#pragma GCC unroll 8
      for (int r = 0; r < RW; ++r) acc[r][c] = Ops::madd(acc[r][c], wv[r], av);
    }
  }
  for (int c = 0; c < RA; ++c) {
    typename Ops::Acc column[RW];
    for (int r = 0; r < RW; ++r) column[r] = acc[r][c];
    float sums[RW];
    Ops::template reduce<RW>(column, sums);
    float* y_row = t.y + c * t.ldy;
    for (int r = 0; r < RW; ++r) y_row[r] = t.accumulate ? y_row[r] + sums[r] : sums[r];
  }
}

// One activation row against NG groups of RW weight rows, whole k: group g starts at
// w0 + g * spacing_bytes, its sums go to y0[g * spacing ...]. The groups are far apart in the
// weights, and reading several regions in turn streams faster than one region; each row is
// also prefetched Ops::kDecodePrefetchBytes ahead.
template <class Ops, int RW, int NG>
void tile_spread_1(const char* w0, std::size_t spacing_bytes, std::size_t w_stride, const char* a, std::int64_t k,
                   float* y0, std::int64_t spacing) {
  typename Ops::Acc acc[NG * RW];
#pragma GCC unroll 16
  for (int r = 0; r < NG * RW; ++r) acc[r] = Ops::zero();
  const char* w_rows[NG * RW];
  for (int g = 0; g < NG; ++g)
    for (int r = 0; r < RW; ++r) w_rows[g * RW + r] = w0 + g * spacing_bytes + static_cast<std::size_t>(r) * w_stride;
  std::int64_t i = 0;
  for (; i + Ops::kStep <= k; i += Ops::kStep) {
    const typename Ops::AReg av = Ops::load_a(a, i);
    // Each row is prefetched a fixed distance ahead, once per cache line of it.
    if (((i * Ops::kWeightBytes) & 63) == 0) {
#pragma GCC unroll 16
      for (int r = 0; r < NG * RW; ++r)
        __builtin_prefetch(w_rows[r] + i * Ops::kWeightBytes + Ops::kDecodePrefetchBytes, 0, 3);
    }
#pragma GCC unroll 16
    for (int r = 0; r < NG * RW; ++r) acc[r] = Ops::madd(acc[r], Ops::load_w(w_rows[r], i), av);
  }
  if (i < k) {
    const typename Ops::AReg av = Ops::load_a_tail(a, i, k - i);
#pragma GCC unroll 16
    for (int r = 0; r < NG * RW; ++r) acc[r] = Ops::madd(acc[r], Ops::load_w_tail(w_rows[r], i, k - i), av);
  }
  float sums[NG * RW];
  Ops::template reduce<NG * RW>(acc, sums);
  for (int g = 0; g < NG; ++g)
    for (int r = 0; r < RW; ++r) y0[g * spacing + r] = sums[g * RW + r];
}

// tiles[rw - 1][ra - 1] is the tile of rw weight rows × ra activation rows.
template <class Ops, int RW, int... RA>
constexpr std::array<TileFn, sizeof...(RA)> tiles_for_rows(std::integer_sequence<int, RA...>) {
  return {&tile<Ops, RW, RA + 1>...};
}
template <class Ops, int... RW>
constexpr auto tile_table(std::integer_sequence<int, RW...>) {
  return std::array<std::array<TileFn, Ops::kRowsA>, sizeof...(RW)>{
      tiles_for_rows<Ops, RW + 1>(std::make_integer_sequence<int, Ops::kRowsA>{})...};
}

// The GemmFn contract of kernels/matmul.h.
template <class Ops>
void gemm(std::int64_t k, const void* w, std::size_t w_stride, const void* a, std::size_t a_stride, std::int64_t M,
          std::int64_t n_begin, std::int64_t n_end, float* y, std::int64_t ldy) {
  static constexpr auto kTiles = tile_table<Ops>(std::make_integer_sequence<int, Ops::kRowsW>{});
  if (k <= 0) {
    for (std::int64_t m = 0; m < M; ++m) std::fill(y + m * ldy + n_begin, y + m * ldy + n_end, 0.0f);
    return;
  }
  // A single activation tile gains nothing from k blocks: each weight row is then read once,
  // whole, which is what the memory-bound matrix-vector case wants.
  const std::int64_t block_k = M <= Ops::kRowsA ? k : std::min<std::int64_t>(k, Ops::kBlockK);
  // Weight rows per n block: about 256 KiB of one k block, so they stay in L2.
  const std::int64_t block_n =
      std::max<std::int64_t>(Ops::kRowsW, (256 * 1024) / (block_k * Ops::kWeightBytes) / Ops::kRowsW * Ops::kRowsW);
  const char* w_bytes = static_cast<const char*>(w);
  const char* a_bytes = static_cast<const char*>(a);
  if constexpr (requires { Ops::kSpreadDecode; }) {
    // Decode: the range is cut into kNG equal parts, and part g's rows n + g * part go through
    // one tile together for every n of the first part; leftover rows take the tiles below.
    constexpr std::int64_t kDecodeGroupRows = Ops::kDecodeGroupRows;
    if (M == 1 && n_end - n_begin >= 64) {
      constexpr int kNG = Ops::kDecodeGroups;
      const std::int64_t part = (n_end - n_begin) / (kNG * kDecodeGroupRows) * kDecodeGroupRows;
      for (std::int64_t n = n_begin; n < n_begin + part; n += kDecodeGroupRows)
        tile_spread_1<Ops, kDecodeGroupRows, kNG>(w_bytes + static_cast<std::size_t>(n) * w_stride, part * w_stride,
                                                  w_stride, a_bytes, k, y + n, part);
      n_begin += kNG * part;
      if (n_begin == n_end) return;
    }
  }
  for (std::int64_t n0 = n_begin; n0 < n_end; n0 += block_n) {
    const std::int64_t n1 = std::min(n_end, n0 + block_n);
    for (std::int64_t k0 = 0; k0 < k; k0 += block_k) {
      const std::int64_t k1 = std::min(k, k0 + block_k);
      for (std::int64_t m0 = 0; m0 < M; m0 += Ops::kRowsA) {
        const int rows_a = static_cast<int>(std::min<std::int64_t>(Ops::kRowsA, M - m0));
        for (std::int64_t n = n0; n < n1; n += Ops::kRowsW) {
          const int rows_w = static_cast<int>(std::min<std::int64_t>(Ops::kRowsW, n1 - n));
          const TileArgs args{w_bytes + static_cast<std::size_t>(n) * w_stride,
                              w_stride,
                              a_bytes + static_cast<std::size_t>(m0) * a_stride,
                              a_stride,
                              k0,
                              k1,
                              y + m0 * ldy + n,
                              ldy,
                              k0 > 0};
          kTiles[rows_w - 1][rows_a - 1](args);
        }
      }
    }
  }
}

// The VecDotFn contract: one weight row against one activation row.
template <class Ops>
float vec_dot(std::int64_t k, const void* w_row, const void* a_row) {
  float y = 0.0f;
  gemm<Ops>(k, w_row, 0, a_row, 0, 1, 0, 1, &y, 1);
  return y;
}

}  // namespace kiln::kernels::float_tiled
