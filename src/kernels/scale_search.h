#pragma once
// The scale searches of ggml's block quantizers (ggml-quants.c), shared by the reference
// quantizers (kquants_quantize_ref.cpp) and the importance-weighted ones (weighted_quants.cpp):
// given a group of n values and a weight per value, each chooses the scale (and for the affine
// ones the min) of the group and the integer level of every value. The float expressions keep
// ggml's order of operations and its rounding, so that the bytes built on them are ggml's.
#include <bit>
#include <cmath>
#include <cstdint>

namespace kiln::kernels {

// Groups whose largest magnitude is below this are stored as zeros (ggml's GROUP_MAX_EPS).
inline constexpr float kGroupMaxEps = 1e-15f;

// ggml's nearest_int: adding 1.5 * 2^23 makes the FPU round to an integer in round-to-nearest-
// even mode, which the low mantissa bits then hold. Valid for |x| <= 2^22 - 1.
// static: each translation unit keeps its own copy, so that one compiled with AVX-512 can never
// become the copy that a translation unit for an older CPU calls.
static inline __attribute__((always_inline)) int nearest_int(float x) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(x + 12582912.f);
  return static_cast<int>(bits & 0x007fffffu) - 0x00400000;
}

// The value of x[0..n) with the largest magnitude (the first of several), sign kept; *amax gets
// that magnitude. The start of every symmetric scale search.
static inline __attribute__((always_inline)) float signed_absmax(int n, const float* x, float* amax) {
  float max = 0;
  *amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > *amax) {
      *amax = ax;
      max = x[i];
    }
  }
  return max;
}

// Symmetric quantization of x[0..n) to levels in [-nmax, nmax) (ggml's make_qx_quants with
// rmse_type 1): tries 19 scales around nmax / max and keeps the best weighted least-squares fit.
// weights[i] weighs the error of x[i] (ggml uses x[i]² when it has no importance). L[i] gets the
// level + nmax. Returns the scale.
float make_qx_quants(int n, int nmax, const float* x, std::int8_t* L, const float* weights);

// Symmetric quantization with a few rounds of coordinate descent on the x²-weighted error
// (ggml's make_q3_quants with do_rmse, no importance). L[i] gets the level + nmax.
float make_q3_quants(int n, int nmax, const float* x, std::int8_t* L);

// Affine quantization x ≈ scale · L - the_min, L in [0, nmax] (ggml's make_qkx2_quants): from the
// min/max fit, tries nstep + 1 ranges (rmin + rdelta · is + nmax) / (max - min), solving the
// weighted least-squares scale and min for each rounding; use_mad weighs |error| instead of its
// square. Laux (n bytes) is scratch. Returns the scale.
// ggml's make_qkx3_quants, the search of its importance-weighted quantizers, is this function
// with use_mad false: it clamps each candidate level before rounding instead of after, which
// gives the same level for every finite input (the candidates stay within [0, nmax + 2]).
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, std::uint8_t* L, float* the_min,
                       std::uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad);

// Quantizes non-negative values (sub-block scales or mins) to [0, nmax] with a weighted search
// of the scale and a few rounds of coordinate descent (ggml's make_qp_quants). Returns the scale.
float make_qp_quants(int n, int nmax, const float* x, std::uint8_t* L, const float* weights);

}  // namespace kiln::kernels
