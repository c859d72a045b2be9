#pragma once
// The AMX tile configuration, for the *_amx.cpp translation units only (AMX code). Internal
// linkage, like simd_scalars.h.
#include <cstdint>

namespace kiln::kernels {
namespace {

// LDTILECFG's 64-byte operand: palette 1, then the bytes per row and the rows of tiles 0..15.
struct alignas(64) TileConfig {
  std::uint8_t palette_id;
  std::uint8_t start_row;
  std::uint8_t reserved[14];
  std::uint16_t colsb[16];
  std::uint8_t rows[16];
};
static_assert(sizeof(TileConfig) == 64, "LDTILECFG reads 64 bytes");

// GCC 12's _tile_loadconfig tells the compiler it reads only 8 bytes of the config, which then
// drops the stores of rows and colsb as dead; this asm names the whole struct instead.
inline __attribute__((always_inline)) void load_tile_config(const TileConfig& config) {
  __asm__ volatile("ldtilecfg %0" : : "m"(config));
}

// The tiles of the legacy and affine AMX kernels, which keep two blocks of 32 in flight so that
// the tile unit works on one while AVX-512 scales the other: tiles 0, 1 = C of blocks b, b + 1
// (16 x 16 int32); 2, 3 = their A (16 rows x 32 activation bytes); 4, 5 = their B (8 rows x
// 64 weight bytes).
inline void configure_paired_block_tiles() {
  TileConfig config = {};
  config.palette_id = 1;
  for (int t = 0; t < 2; ++t) {
    config.rows[t] = 16, config.colsb[t] = 64;
    config.rows[2 + t] = 16, config.colsb[2 + t] = 32;
    config.rows[4 + t] = 8, config.colsb[4 + t] = 64;
  }
  load_tile_config(config);
}

}  // namespace
}  // namespace kiln::kernels
