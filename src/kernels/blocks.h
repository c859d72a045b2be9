#pragma once
// ggml's block formats, byte for byte (ggml-common.h). Each block stores `QK` weights with
// per-block scale(s); the static_asserts pin the sizes so the bits per weight are checked.
// Scales are IEEE half stored as raw bits (see core/half.h), except block_q8_K's float.
#include <cstdint>

namespace kiln::kernels {

constexpr int QK4_0 = 32, QK4_1 = 32, QK5_0 = 32, QK5_1 = 32, QK8_0 = 32, QK8_1 = 32;
constexpr int QK_K = 256;         // super-block size of the K-quants
constexpr int K_SCALE_SIZE = 12;  // packed 6-bit scales and mins of Q4_K / Q5_K

// x = d * (q - 8), q in [0, 16). Byte j holds q[j] (low nibble) and q[j + 16] (high nibble).
struct block_q4_0 {
  std::uint16_t d;
  std::uint8_t qs[QK4_0 / 2];
};
static_assert(sizeof(block_q4_0) == 2 + QK4_0 / 2, "q4_0: 4.5 bits per weight");

// x = d * q + m: the affine (scale, zero point) form.
struct block_q4_1 {
  std::uint16_t d;
  std::uint16_t m;
  std::uint8_t qs[QK4_1 / 2];
};
static_assert(sizeof(block_q4_1) == 4 + QK4_1 / 2, "q4_1: 5 bits per weight");

// x = d * (q - 16), q in [0, 32); the fifth bits of the 32 weights are packed in qh.
struct block_q5_0 {
  std::uint16_t d;
  std::uint8_t qh[4];
  std::uint8_t qs[QK5_0 / 2];
};
static_assert(sizeof(block_q5_0) == 2 + 4 + QK5_0 / 2, "q5_0: 5.5 bits per weight");

struct block_q5_1 {
  std::uint16_t d;
  std::uint16_t m;
  std::uint8_t qh[4];
  std::uint8_t qs[QK5_1 / 2];
};
static_assert(sizeof(block_q5_1) == 4 + 4 + QK5_1 / 2, "q5_1: 6 bits per weight");

// x = d * q, q in [-127, 127].
struct block_q8_0 {
  std::uint16_t d;
  std::int8_t qs[QK8_0];
};
static_assert(sizeof(block_q8_0) == 2 + QK8_0, "q8_0: 8.5 bits per weight");

// Activations for the affine types: s = d * sum(qs) lets the dot product add the weights'
// zero point (m) without touching the quants again.
struct block_q8_1 {
  std::uint16_t d;
  std::uint16_t s;
  std::int8_t qs[QK8_1];
};
static_assert(sizeof(block_q8_1) == 4 + QK8_1, "q8_1: 9 bits per weight");

// 16 sub-blocks of 16; 4-bit scale and min per sub-block; x = d*sc*q - dmin*m.
struct block_q2_K {
  std::uint8_t scales[QK_K / 16];
  std::uint8_t qs[QK_K / 4];
  std::uint16_t d;
  std::uint16_t dmin;
};
static_assert(sizeof(block_q2_K) == 2 * 2 + QK_K / 16 + QK_K / 4, "q2_K: 2.625 bits per weight");

// 16 sub-blocks of 16; 6-bit scales; the third bit of each quant in hmask.
struct block_q3_K {
  std::uint8_t hmask[QK_K / 8];
  std::uint8_t qs[QK_K / 4];
  std::uint8_t scales[12];
  std::uint16_t d;
};
static_assert(sizeof(block_q3_K) == 2 + QK_K / 4 + QK_K / 8 + 12, "q3_K: 3.4375 bits per weight");

// 8 sub-blocks of 32; 6-bit scale and min per sub-block packed in 12 bytes.
struct block_q4_K {
  std::uint16_t d;
  std::uint16_t dmin;
  std::uint8_t scales[K_SCALE_SIZE];
  std::uint8_t qs[QK_K / 2];
};
static_assert(sizeof(block_q4_K) == 2 * 2 + K_SCALE_SIZE + QK_K / 2, "q4_K: 4.5 bits per weight");

struct block_q5_K {
  std::uint16_t d;
  std::uint16_t dmin;
  std::uint8_t scales[K_SCALE_SIZE];
  std::uint8_t qh[QK_K / 8];
  std::uint8_t qs[QK_K / 2];
};
static_assert(sizeof(block_q5_K) == 2 * 2 + K_SCALE_SIZE + QK_K / 2 + QK_K / 8, "q5_K: 5.5 bits per weight");

// 16 sub-blocks of 16; 8-bit signed scales; x = d * sc * (q - 32), q in [0, 64).
struct block_q6_K {
  std::uint8_t ql[QK_K / 2];
  std::uint8_t qh[QK_K / 4];
  std::int8_t scales[QK_K / 16];
  std::uint16_t d;
};
static_assert(sizeof(block_q6_K) == 2 + QK_K / 16 + 3 * QK_K / 4, "q6_K: 6.5625 bits per weight");

// Activations for the K-quants: float scale, and sums of each group of 16 quants.
struct block_q8_K {
  float d;
  std::int8_t qs[QK_K];
  std::int16_t bsums[QK_K / 16];
};
static_assert(sizeof(block_q8_K) == 4 + QK_K + QK_K / 16 * 2, "q8_K: 9.125 bits per weight");

// ---- kiln's affine types (not ggml's: llama.cpp cannot read them; see docs/formats.md) -------
// x = d * q + m with q = clamp(round((x - m) / d)) unsigned, one f16 scale d and f16 minimum m
// per group of G weights. The 4-bit quants are packed per 32 weights as in q4_1 (byte i of
// each 16-byte run holds q[i] in its low and q[i + 16] in its high nibble), so a group of 32
// would be exactly block_q4_1: kiln writes that group size as q4_1. The 8-bit quants are bytes.
template <int G>
struct block_a4 {
  std::uint16_t d;
  std::uint16_t m;
  std::uint8_t qs[G / 2];
};
template <int G>
struct block_a8 {
  std::uint16_t d;
  std::uint16_t m;
  std::uint8_t qs[G];
};
using block_a4g64 = block_a4<64>;
using block_a4g128 = block_a4<128>;
using block_a8g32 = block_a8<32>;
using block_a8g64 = block_a8<64>;
using block_a8g128 = block_a8<128>;
static_assert(sizeof(block_a4<32>) == sizeof(block_q4_1), "a4 with groups of 32 is q4_1");
static_assert(sizeof(block_a4g64) == 4 + 64 / 2, "a4g64: 4.5 bits per weight");
static_assert(sizeof(block_a4g128) == 4 + 128 / 2, "a4g128: 4.25 bits per weight");
static_assert(sizeof(block_a8g32) == 4 + 32, "a8g32: 9 bits per weight");
static_assert(sizeof(block_a8g64) == 4 + 64, "a8g64: 8.5 bits per weight");
static_assert(sizeof(block_a8g128) == 4 + 128, "a8g128: 8.25 bits per weight");

}  // namespace kiln::kernels
