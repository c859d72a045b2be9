#pragma once
// Internal to the SIMD translation units (*_avx2.cpp, *_avx512.cpp, *_vbmi.cpp, *_amx.cpp; needs
// F16C at compile time): the scalar reads and writes of block fields at any byte address, and
// the f16 conversions of block scales. Everything here has internal linkage and is always
// inlined, so each translation unit keeps its own copy compiled with its own flags and no
// AVX-512 encoding can be linked into a path that runs on an AVX2-only CPU.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#define KILN_INLINE inline __attribute__((always_inline))

namespace kiln::kernels {
namespace {

KILN_INLINE float half_to_float(std::uint16_t h) { return _cvtsh_ss(h); }
KILN_INLINE std::uint16_t float_to_half(float f) { return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }

// Blocks are read and written through byte offsets: rows may start at any address.
KILN_INLINE std::int32_t load_i32(const void* p) {
  std::int32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
KILN_INLINE std::uint16_t load_u16(const void* p) {
  std::uint16_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
KILN_INLINE void store_u16(void* p, std::uint16_t v) { std::memcpy(p, &v, sizeof(v)); }

}  // namespace
}  // namespace kiln::kernels
