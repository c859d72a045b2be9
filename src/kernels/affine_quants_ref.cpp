// Scalar reference of kiln's affine block formats: the min/max round-to-nearest quantizer,
// the dequantizer, and dot products that sum integers per block of 32 and then apply the
// scales, in the order every fast path is checked against.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "core/half.h"
#include "kernels/affine_quants_internal.h"
#include "kernels/blocks.h"
#include "kernels/kernel_families.h"

namespace kiln::kernels {
namespace affine {
namespace {

constexpr Layout kA4G64{4, 64, sizeof(block_a4g64)};
constexpr Layout kA4G128{4, 128, sizeof(block_a4g128)};
constexpr Layout kA8G32{8, 32, sizeof(block_a8g32)};
constexpr Layout kA8G64{8, 64, sizeof(block_a8g64)};
constexpr Layout kA8G128{8, 128, sizeof(block_a8g128)};

std::uint16_t load_u16(const std::uint8_t* p) {
  std::uint16_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

void store_u16(std::uint8_t* p, std::uint16_t v) { std::memcpy(p, &v, sizeof(v)); }

// Quant j (0..31) of the 32-weight run at qs.
int quant_at(const std::uint8_t* qs, int bits, int j) {
  if (bits == 8) return qs[j];
  return j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
}

// ---- the quantizer: q = clamp(round((x - m) / d), 0, 2^b - 1) --------------------------------

// d = (max - min) / (2^b - 1) and m = min are rounded to f16 first, and the quants are
// computed from the rounded values, so that every stored q is the nearest level of the grid
// the dequantizer actually uses (ggml's q4_1 divides by the unrounded ones). Rounding is half
// away from zero; the clamp catches the ends, where m rounded up or d rounded down.
void quantize_block(const Layout& l, const float* x, std::uint8_t* block) {
  float min = FLT_MAX, max = -FLT_MAX;
  for (int j = 0; j < l.group; ++j) {
    min = std::min(min, x[j]);
    max = std::max(max, x[j]);
  }
  const int q_max = (1 << l.bits) - 1;
  const std::uint16_t d16 = f32_to_f16((max - min) / static_cast<float>(q_max));
  const std::uint16_t m16 = f32_to_f16(min);
  const float d = f16_to_f32(d16), m = f16_to_f32(m16);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  store_u16(block, d16);
  store_u16(block + 2, m16);
  std::uint8_t* qs = block + 4;
  for (int s = 0; s < l.group / 32; ++s, x += 32, qs += sub_block_bytes(l.bits)) {
    int q[32];
    for (int j = 0; j < 32; ++j) q[j] = std::clamp(static_cast<int>(std::round((x[j] - m) * id)), 0, q_max);
    if (l.bits == 8) {
      for (int j = 0; j < 32; ++j) qs[j] = static_cast<std::uint8_t>(q[j]);
    } else {
      for (int j = 0; j < 16; ++j) qs[j] = static_cast<std::uint8_t>(q[j] | (q[j + 16] << 4));
    }
  }
}

void quantize_row(const Layout& l, const float* x, void* dst, std::int64_t k) {
  auto* out = static_cast<std::uint8_t*>(dst);
  for (std::int64_t i = 0; i < k / l.group; ++i) quantize_block(l, x + i * l.group, out + i * l.block_bytes);
}

void dequantize_row(const Layout& l, const void* src, float* y, std::int64_t k) {
  const auto* in = static_cast<const std::uint8_t*>(src);
  for (std::int64_t i = 0; i < k / l.group; ++i) {
    const std::uint8_t* block = in + i * l.block_bytes;
    const float d = f16_to_f32(load_u16(block)), m = f16_to_f32(load_u16(block + 2));
    for (int s = 0; s < l.group / 32; ++s) {
      const std::uint8_t* qs = block + 4 + s * sub_block_bytes(l.bits);
      for (int j = 0; j < 32; ++j) *y++ = static_cast<float>(quant_at(qs, l.bits, j)) * d + m;
    }
  }
}

// ---- the dot product with q8_1 activations ---------------------------------------------------

template <const Layout& L>
float vec_dot(std::int64_t k, const void* w_row, const void* a_row) {
  const auto* w = static_cast<const std::uint8_t*>(w_row);
  const auto* a = static_cast<const std::uint8_t*>(a_row);
  float sum = 0.0f;
  for (std::int64_t g = 0; g < k / L.group; ++g) {
    const std::uint8_t* block = w + g * L.block_bytes;
    const float d = f16_to_f32(load_u16(block)), m = f16_to_f32(load_u16(block + 2));
    float scaled = 0.0f, act_sum = 0.0f;
    for (int s = 0; s < L.group / 32; ++s) {
      const std::uint8_t* qs = block + 4 + s * sub_block_bytes(L.bits);
      block_q8_1 act;
      std::memcpy(&act, a + (g * (L.group / 32) + s) * sizeof(block_q8_1), sizeof(act));
      int sumi = 0;
      for (int j = 0; j < 32; ++j) sumi += quant_at(qs, L.bits, j) * act.qs[j];
      scaled += static_cast<float>(sumi) * f16_to_f32(act.d);
      act_sum += f16_to_f32(act.s);
    }
    // The minimum multiplies the activations' sum, which q8_1 carries as s = d * sum(q).
    sum += d * scaled + m * act_sum;
  }
  return sum;
}

template <const Layout& L>
constexpr Fns scalar_entry() {
  return Fns{vec_dot<L>, gemm_by_vec_dot<vec_dot<L>>};
}

// In the order of kAffineTypes.
constexpr Fns kScalarFns[] = {scalar_entry<kA4G64>(), scalar_entry<kA4G128>(), scalar_entry<kA8G32>(),
                              scalar_entry<kA8G64>(), scalar_entry<kA8G128>()};

}  // namespace

const Layout* layout_of(DType t) {
  switch (t) {
    case DType::A4G64:
      return &kA4G64;
    case DType::A4G128:
      return &kA4G128;
    case DType::A8G32:
      return &kA8G32;
    case DType::A8G64:
      return &kA8G64;
    case DType::A8G128:
      return &kA8G128;
    default:
      return nullptr;
  }
}

const Fns* scalar_fns(DType w) { return fns_of(kScalarFns, w); }

}  // namespace affine

bool affine_quantize_row_ref(DType t, const float* x, void* dst, std::int64_t k) {
  const affine::Layout* l = affine::layout_of(t);
  if (l == nullptr) return false;
  affine::quantize_row(*l, x, dst, k);
  return true;
}

bool affine_dequantize_row(DType t, const void* src, float* y, std::int64_t k) {
  const affine::Layout* l = affine::layout_of(t);
  if (l == nullptr) return false;
  affine::dequantize_row(*l, src, y, k);
  return true;
}

}  // namespace kiln::kernels
