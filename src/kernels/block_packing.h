#pragma once
// How the integer levels of one block are laid out in the bytes of each block format
// (blocks.h): shared by the reference quantizers, the importance-weighted ones and the GPTQ
// block step, which choose the levels differently but store them the same way. Level is any
// integer type holding the non-negative level (the stored value, offset included).
#include <cstdint>
#include <cstring>

#include "kernels/blocks.h"

namespace kiln::kernels {

// q4_0 / q4_1: byte j holds level j (low nibble) and level j + 16 (high nibble); L (32) in [0, 15].
template <typename Level>
inline void pack_4bit_32(const Level* L, std::uint8_t* qs) {
  for (int j = 0; j < 16; ++j) qs[j] = static_cast<std::uint8_t>(L[j] | (L[j + 16] << 4));
}

// q5_0 / q5_1: low nibbles as pack_4bit_32, the fifth bit of level j in bit j of the 32-bit qh.
// L (32) in [0, 31].
template <typename Level>
inline void pack_5bit_32(const Level* L, std::uint8_t* qs, std::uint8_t* qh_bytes) {
  std::uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    qs[j] = static_cast<std::uint8_t>((L[j] & 0x0F) | ((L[j + 16] & 0x0F) << 4));
    qh |= static_cast<std::uint32_t>((L[j] >> 4) & 1) << j;
    qh |= static_cast<std::uint32_t>((L[j + 16] >> 4) & 1) << (j + 16);
  }
  std::memcpy(qh_bytes, &qh, 4);
}

// q2_K / q3_K low bits: byte l of each 32-byte group holds the levels l, l + 32, l + 64, l + 96
// of its 128-level half in bits 0-1, 2-3, 4-5, 6-7. L (QK_K) in [0, 3].
template <typename Level>
inline void pack_2bit_quants(const Level* L, std::uint8_t* qs) {
  for (int j = 0; j < QK_K; j += 128) {
    for (int l = 0; l < 32; ++l) {
      qs[j / 4 + l] =
          static_cast<std::uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
    }
  }
}

// q3_K: the third bit of level j in bit j / 32 of hmask[j % 32], the low two bits as
// pack_2bit_quants. L (QK_K) in [0, 7].
template <typename Level>
inline void pack_q3_K_levels(const Level* L, std::uint8_t* hmask, std::uint8_t* qs) {
  std::uint8_t low[QK_K];
  std::memset(hmask, 0, QK_K / 8);
  for (int j = 0; j < QK_K; ++j) {
    if (L[j] > 3) hmask[j % 32] |= static_cast<std::uint8_t>(1 << (j / 32));
    low[j] = static_cast<std::uint8_t>(L[j] & 3);
  }
  pack_2bit_quants(low, qs);
}

// q3_K: the 16 6-bit sub-block scales (stored with an offset of 32, so in [0, 63]) in 12 bytes:
// low nibbles of scales 0-7 and 8-15 in bytes 0-7, the top two bits of scale j at bit 2 (j / 4)
// of byte 8 + j % 4 (unpack_q3_K_scales reverses it).
template <typename Level>
inline void pack_q3_K_scales(const Level* ls, std::uint8_t* packed) {
  std::memset(packed, 0, 12);
  for (int j = 0; j < QK_K / 16; ++j) {
    const int l = ls[j];
    if (j < 8) {
      packed[j] = static_cast<std::uint8_t>(l & 0xF);
    } else {
      packed[j - 8] |= static_cast<std::uint8_t>((l & 0xF) << 4);
    }
    packed[j % 4 + 8] |= static_cast<std::uint8_t>((l >> 4) << (2 * (j / 4)));
  }
}

// q4_K / q5_K: the eight 6-bit scales and mins (each in [0, 63]) in 12 bytes (get_scale_min_k4
// reverses it).
inline void pack_scale_min_k4(const std::uint8_t* ls, const std::uint8_t* lm, std::uint8_t* packed) {
  for (int j = 0; j < QK_K / 32; ++j) {
    if (j < 4) {
      packed[j] = ls[j];
      packed[j + 4] = lm[j];
    } else {
      packed[j + 4] = static_cast<std::uint8_t>((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
      packed[j - 4] |= static_cast<std::uint8_t>((ls[j] >> 4) << 6);
      packed[j - 0] |= static_cast<std::uint8_t>((lm[j] >> 4) << 6);
    }
  }
}

// q4_K: 32-byte group g holds levels 64g .. 64g + 31 in low nibbles, the next 32 in high ones.
// L (QK_K) in [0, 15].
template <typename Level>
inline void pack_q4_K_levels(const Level* L, std::uint8_t* qs) {
  for (int j = 0; j < QK_K; j += 64, qs += 32) {
    for (int l = 0; l < 32; ++l) qs[l] = static_cast<std::uint8_t>(L[j + l] | (L[j + l + 32] << 4));
  }
}

// q5_K: low nibbles as q4_K; the fifth bit of level 32s + l goes to bit s of qh[l].
// L (QK_K) in [0, 31].
template <typename Level>
inline void pack_q5_K_levels(const Level* L, std::uint8_t* qh, std::uint8_t* qs) {
  std::memset(qh, 0, QK_K / 8);
  std::uint8_t m1 = 1, m2 = 2;
  for (int n = 0; n < QK_K; n += 64, qs += 32) {
    for (int j = 0; j < 32; ++j) {
      const int l1 = L[n + j], l2 = L[n + j + 32];
      if (l1 > 15) qh[j] |= m1;
      if (l2 > 15) qh[j] |= m2;
      qs[j] = static_cast<std::uint8_t>((l1 & 15) | ((l2 & 15) << 4));
    }
    m1 = static_cast<std::uint8_t>(m1 << 2);
    m2 = static_cast<std::uint8_t>(m2 << 2);
  }
}

// q6_K, per 128-level half: ql[l] holds levels l (low) and l + 64 (high nibble), ql[l + 32]
// levels l + 32 and l + 96; qh[l] holds the top two bits of l, l + 32, l + 64, l + 96.
// L (QK_K) in [0, 63].
template <typename Level>
inline void pack_q6_K_levels(const Level* L, std::uint8_t* ql, std::uint8_t* qh) {
  for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
    for (int l = 0; l < 32; ++l) {
      ql[l] = static_cast<std::uint8_t>((L[j + l] & 0xF) | ((L[j + l + 64] & 0xF) << 4));
      ql[l + 32] = static_cast<std::uint8_t>((L[j + l + 32] & 0xF) | ((L[j + l + 96] & 0xF) << 4));
      qh[l] = static_cast<std::uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                        ((L[j + l + 96] >> 4) << 6));
    }
  }
}

}  // namespace kiln::kernels
