// Scalar reference of the legacy block formats: ggml-exact quantizers for stored weights,
// dequantizers, the activation quantizers, and dot products that sum integers per block and
// then apply the block scales, as ggml's scalar vec_dot does.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "core/half.h"
#include "kernels/blocks.h"
#include "kernels/kernel_families.h"
#include "kernels/legacy_quants_internal.h"

namespace kiln::kernels {
namespace legacy {
namespace {

// Rows may start at any byte address (the tests offset them by 1..63 bytes), so blocks are
// copied in and out with memcpy instead of being accessed through a misaligned struct pointer.
template <typename Block>
Block load_block(const void* row, std::int64_t i) {
  Block block;
  std::memcpy(&block, static_cast<const std::uint8_t*>(row) + i * sizeof(Block), sizeof(Block));
  return block;
}

template <typename Block>
void store_block(void* row, std::int64_t i, const Block& block) {
  std::memcpy(static_cast<std::uint8_t*>(row) + i * sizeof(Block), &block, sizeof(Block));
}

// ---- stored-weight quantizers, bit-exact with ggml's quantize_row_*_ref ------------------------

// The value of largest magnitude (the first one if several tie), keeping its sign.
float signed_absmax(const float* x, int n) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < n; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

float absmax(const float* x, int n) {
  float amax = 0.0f;
  for (int j = 0; j < n; ++j) amax = std::max(amax, std::fabs(x[j]));
  return amax;
}

void min_max(const float* x, int n, float* min, float* max) {
  *min = FLT_MAX;
  *max = -FLT_MAX;
  for (int j = 0; j < n; ++j) {
    if (x[j] < *min) *min = x[j];
    if (x[j] > *max) *max = x[j];
  }
}

void quantize_q4_0_block(const float* x, block_q4_0* y) {
  // The scale maps the extreme value to -8, so its sign follows that value and -8 (not +7) is
  // the end of the range that is used in full.
  const float d = signed_absmax(x, QK4_0) / -8;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y->d = f32_to_f16(d);
  for (int j = 0; j < QK4_0 / 2; ++j) {
    // Adding 8.5 then truncating rounds half up on the shifted value, as ggml does.
    const int q0 = std::min(15, static_cast<int>(x[j] * id + 8.5f));
    const int q1 = std::min(15, static_cast<int>(x[j + QK4_0 / 2] * id + 8.5f));
    y->qs[j] = static_cast<std::uint8_t>(q0 | (q1 << 4));
  }
}

void quantize_q4_1_block(const float* x, block_q4_1* y) {
  float min, max;
  min_max(x, QK4_1, &min, &max);
  const float d = (max - min) / 15;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y->d = f32_to_f16(d);
  y->m = f32_to_f16(min);
  for (int j = 0; j < QK4_1 / 2; ++j) {
    const int q0 = std::min(15, static_cast<int>((x[j] - min) * id + 0.5f));
    const int q1 = std::min(15, static_cast<int>((x[j + QK4_1 / 2] - min) * id + 0.5f));
    y->qs[j] = static_cast<std::uint8_t>(q0 | (q1 << 4));
  }
}

void quantize_q5_0_block(const float* x, block_q5_0* y) {
  const float d = signed_absmax(x, QK5_0) / -16;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y->d = f32_to_f16(d);
  std::uint32_t qh = 0;
  for (int j = 0; j < QK5_0 / 2; ++j) {
    const int q0 = std::min(31, static_cast<int>(x[j] * id + 16.5f));
    const int q1 = std::min(31, static_cast<int>(x[j + QK5_0 / 2] * id + 16.5f));
    y->qs[j] = static_cast<std::uint8_t>((q0 & 0x0F) | ((q1 & 0x0F) << 4));
    qh |= static_cast<std::uint32_t>((q0 >> 4) & 1) << j;
    qh |= static_cast<std::uint32_t>((q1 >> 4) & 1) << (j + QK5_0 / 2);
  }
  std::memcpy(y->qh, &qh, sizeof(qh));
}

void quantize_q5_1_block(const float* x, block_q5_1* y) {
  float min, max;
  min_max(x, QK5_1, &min, &max);
  const float d = (max - min) / 31;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y->d = f32_to_f16(d);
  y->m = f32_to_f16(min);
  std::uint32_t qh = 0;
  for (int j = 0; j < QK5_1 / 2; ++j) {
    // ggml does not clamp here: (x - min) / d stays within [0, 31] up to rounding.
    const int q0 = static_cast<std::uint8_t>(static_cast<int>((x[j] - min) * id + 0.5f));
    const int q1 = static_cast<std::uint8_t>(static_cast<int>((x[j + QK5_1 / 2] - min) * id + 0.5f));
    y->qs[j] = static_cast<std::uint8_t>((q0 & 0x0F) | ((q1 & 0x0F) << 4));
    qh |= static_cast<std::uint32_t>((q0 >> 4) & 1) << j;
    qh |= static_cast<std::uint32_t>((q1 >> 4) & 1) << (j + QK5_1 / 2);
  }
  std::memcpy(y->qh, &qh, sizeof(qh));
}

void quantize_q8_0_block(const float* x, block_q8_0* y) {
  const float d = absmax(x, QK8_0) / 127;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y->d = f32_to_f16(d);
  for (int j = 0; j < QK8_0; ++j) y->qs[j] = static_cast<std::int8_t>(std::round(x[j] * id));
}

void quantize_q8_1_block(const float* x, block_q8_1* y) {
  const float d = absmax(x, QK8_1) / 127;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y->d = f32_to_f16(d);
  int sum = 0;
  for (int j = 0; j < QK8_1; ++j) {
    y->qs[j] = static_cast<std::int8_t>(std::round(x[j] * id));
    sum += y->qs[j];
  }
  y->s = f32_to_f16(static_cast<float>(sum) * d);
}

template <typename Block, void (*quantize_block)(const float*, Block*)>
void quantize_blocks(const float* x, void* dst, std::int64_t k) {
  for (std::int64_t i = 0; i < k / 32; ++i) {
    Block block;
    quantize_block(x + i * 32, &block);
    store_block(dst, i, block);
  }
}

// ---- dequantizers ---------------------------------------------------------------------------

std::uint32_t load_qh(const std::uint8_t* qh) {
  std::uint32_t v;
  std::memcpy(&v, qh, sizeof(v));
  return v;
}

void dequantize_q4_0(const void* src, float* y, std::int64_t k) {
  for (std::int64_t i = 0; i < k / QK4_0; ++i, y += QK4_0) {
    const block_q4_0 x = load_block<block_q4_0>(src, i);
    const float d = f16_to_f32(x.d);
    for (int j = 0; j < QK4_0 / 2; ++j) {
      y[j] = static_cast<float>((x.qs[j] & 0x0F) - 8) * d;
      y[j + QK4_0 / 2] = static_cast<float>((x.qs[j] >> 4) - 8) * d;
    }
  }
}

void dequantize_q4_1(const void* src, float* y, std::int64_t k) {
  for (std::int64_t i = 0; i < k / QK4_1; ++i, y += QK4_1) {
    const block_q4_1 x = load_block<block_q4_1>(src, i);
    const float d = f16_to_f32(x.d), m = f16_to_f32(x.m);
    for (int j = 0; j < QK4_1 / 2; ++j) {
      y[j] = static_cast<float>(x.qs[j] & 0x0F) * d + m;
      y[j + QK4_1 / 2] = static_cast<float>(x.qs[j] >> 4) * d + m;
    }
  }
}

// The 5-bit quant j of a q5 block: 4 bits from qs, the fifth from bit j of qh.
int q5_value(const std::uint8_t* qs, std::uint32_t qh, int j) {
  const int low = j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
  return low | static_cast<int>(((qh >> j) & 1) << 4);
}

void dequantize_q5_0(const void* src, float* y, std::int64_t k) {
  for (std::int64_t i = 0; i < k / QK5_0; ++i, y += QK5_0) {
    const block_q5_0 x = load_block<block_q5_0>(src, i);
    const float d = f16_to_f32(x.d);
    const std::uint32_t qh = load_qh(x.qh);
    for (int j = 0; j < QK5_0; ++j) y[j] = static_cast<float>(q5_value(x.qs, qh, j) - 16) * d;
  }
}

void dequantize_q5_1(const void* src, float* y, std::int64_t k) {
  for (std::int64_t i = 0; i < k / QK5_1; ++i, y += QK5_1) {
    const block_q5_1 x = load_block<block_q5_1>(src, i);
    const float d = f16_to_f32(x.d), m = f16_to_f32(x.m);
    const std::uint32_t qh = load_qh(x.qh);
    for (int j = 0; j < QK5_1; ++j) y[j] = static_cast<float>(q5_value(x.qs, qh, j)) * d + m;
  }
}

void dequantize_q8_0(const void* src, float* y, std::int64_t k) {
  for (std::int64_t i = 0; i < k / QK8_0; ++i, y += QK8_0) {
    const block_q8_0 x = load_block<block_q8_0>(src, i);
    const float d = f16_to_f32(x.d);
    for (int j = 0; j < QK8_0; ++j) y[j] = static_cast<float>(x.qs[j]) * d;
  }
}

void dequantize_q8_1(const void* src, float* y, std::int64_t k) {
  for (std::int64_t i = 0; i < k / QK8_1; ++i, y += QK8_1) {
    const block_q8_1 x = load_block<block_q8_1>(src, i);
    const float d = f16_to_f32(x.d);
    for (int j = 0; j < QK8_1; ++j) y[j] = static_cast<float>(x.qs[j]) * d;
  }
}

// ---- dot products: exact integer sums per block, then the scales ------------------------------

float vec_dot_q4_0_q8_0(std::int64_t k, const void* w_row, const void* a_row) {
  float sum = 0.0f;
  for (std::int64_t i = 0; i < k / QK4_0; ++i) {
    const block_q4_0 x = load_block<block_q4_0>(w_row, i);
    const block_q8_0 a = load_block<block_q8_0>(a_row, i);
    int sumi = 0;
    for (int j = 0; j < QK4_0 / 2; ++j) {
      sumi += ((x.qs[j] & 0x0F) - 8) * a.qs[j];
      sumi += ((x.qs[j] >> 4) - 8) * a.qs[j + QK4_0 / 2];
    }
    sum += static_cast<float>(sumi) * f16_to_f32(x.d) * f16_to_f32(a.d);
  }
  return sum;
}

float vec_dot_q4_1_q8_1(std::int64_t k, const void* w_row, const void* a_row) {
  float sum = 0.0f;
  for (std::int64_t i = 0; i < k / QK4_1; ++i) {
    const block_q4_1 x = load_block<block_q4_1>(w_row, i);
    const block_q8_1 a = load_block<block_q8_1>(a_row, i);
    int sumi = 0;
    for (int j = 0; j < QK4_1 / 2; ++j) {
      sumi += (x.qs[j] & 0x0F) * a.qs[j];
      sumi += (x.qs[j] >> 4) * a.qs[j + QK4_1 / 2];
    }
    // The zero point m multiplies the activations' sum, which q8_1 carries as s = d * sum(q).
    sum += f16_to_f32(x.d) * f16_to_f32(a.d) * static_cast<float>(sumi) + f16_to_f32(x.m) * f16_to_f32(a.s);
  }
  return sum;
}

float vec_dot_q5_0_q8_0(std::int64_t k, const void* w_row, const void* a_row) {
  float sum = 0.0f;
  for (std::int64_t i = 0; i < k / QK5_0; ++i) {
    const block_q5_0 x = load_block<block_q5_0>(w_row, i);
    const block_q8_0 a = load_block<block_q8_0>(a_row, i);
    const std::uint32_t qh = load_qh(x.qh);
    int sumi = 0;
    for (int j = 0; j < QK5_0; ++j) sumi += (q5_value(x.qs, qh, j) - 16) * a.qs[j];
    sum += static_cast<float>(sumi) * f16_to_f32(x.d) * f16_to_f32(a.d);
  }
  return sum;
}

float vec_dot_q5_1_q8_1(std::int64_t k, const void* w_row, const void* a_row) {
  float sum = 0.0f;
  for (std::int64_t i = 0; i < k / QK5_1; ++i) {
    const block_q5_1 x = load_block<block_q5_1>(w_row, i);
    const block_q8_1 a = load_block<block_q8_1>(a_row, i);
    const std::uint32_t qh = load_qh(x.qh);
    int sumi = 0;
    for (int j = 0; j < QK5_1; ++j) sumi += q5_value(x.qs, qh, j) * a.qs[j];
    sum += f16_to_f32(x.d) * f16_to_f32(a.d) * static_cast<float>(sumi) + f16_to_f32(x.m) * f16_to_f32(a.s);
  }
  return sum;
}

float vec_dot_q8_0_q8_0(std::int64_t k, const void* w_row, const void* a_row) {
  float sum = 0.0f;
  for (std::int64_t i = 0; i < k / QK8_0; ++i) {
    const block_q8_0 x = load_block<block_q8_0>(w_row, i);
    const block_q8_0 a = load_block<block_q8_0>(a_row, i);
    int sumi = 0;
    for (int j = 0; j < QK8_0; ++j) sumi += x.qs[j] * a.qs[j];
    sum += static_cast<float>(sumi) * (f16_to_f32(x.d) * f16_to_f32(a.d));
  }
  return sum;
}

// ---- the scalar table ---------------------------------------------------------------------

template <VecDotFn vec_dot>
constexpr WeightKernels scalar_entry(DType w, DType act) {
  return WeightKernels{w,
                       act,
                       act == DType::Q8_1 ? quantize_act_q8_1_scalar : quantize_act_q8_0_scalar,
                       vec_dot,
                       gemm_by_vec_dot<vec_dot>,
                       SimdLevel::Scalar};
}

const WeightKernels kScalarKernels[] = {
    scalar_entry<vec_dot_q4_0_q8_0>(DType::Q4_0, DType::Q8_0),
    scalar_entry<vec_dot_q4_1_q8_1>(DType::Q4_1, DType::Q8_1),
    scalar_entry<vec_dot_q5_0_q8_0>(DType::Q5_0, DType::Q8_0),
    scalar_entry<vec_dot_q5_1_q8_1>(DType::Q5_1, DType::Q8_1),
    scalar_entry<vec_dot_q8_0_q8_0>(DType::Q8_0, DType::Q8_0),
};

}  // namespace

// ---- activation quantizers (round half to even, see legacy_quants_internal.h) ----------------

void quantize_act_q8_0_scalar(const float* x, void* dst, std::int64_t k) {
  for (std::int64_t i = 0; i < k / QK8_0; ++i, x += QK8_0) {
    block_q8_0 y;
    const float d = absmax(x, QK8_0) / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y.d = f32_to_f16(d);
    for (int j = 0; j < QK8_0; ++j) y.qs[j] = static_cast<std::int8_t>(std::nearbyint(x[j] * id));
    store_block(dst, i, y);
  }
}

void quantize_act_q8_1_scalar(const float* x, void* dst, std::int64_t k) {
  for (std::int64_t i = 0; i < k / QK8_1; ++i, x += QK8_1) {
    block_q8_1 y;
    const float d = absmax(x, QK8_1) / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y.d = f32_to_f16(d);
    int sum = 0;
    for (int j = 0; j < QK8_1; ++j) {
      y.qs[j] = static_cast<std::int8_t>(std::nearbyint(x[j] * id));
      sum += y.qs[j];
    }
    y.s = f32_to_f16(static_cast<float>(sum) * d);
    store_block(dst, i, y);
  }
}

const WeightKernels* scalar_kernels(DType w) { return find_kernels(kScalarKernels, w); }

}  // namespace legacy

bool legacy_quantize_row_ref(DType t, const float* x, void* dst, std::int64_t k) {
  using namespace legacy;
  switch (t) {
    case DType::Q4_0:
      quantize_blocks<block_q4_0, quantize_q4_0_block>(x, dst, k);
      return true;
    case DType::Q4_1:
      quantize_blocks<block_q4_1, quantize_q4_1_block>(x, dst, k);
      return true;
    case DType::Q5_0:
      quantize_blocks<block_q5_0, quantize_q5_0_block>(x, dst, k);
      return true;
    case DType::Q5_1:
      quantize_blocks<block_q5_1, quantize_q5_1_block>(x, dst, k);
      return true;
    case DType::Q8_0:
      quantize_blocks<block_q8_0, quantize_q8_0_block>(x, dst, k);
      return true;
    case DType::Q8_1:
      quantize_blocks<block_q8_1, quantize_q8_1_block>(x, dst, k);
      return true;
    default:
      return false;
  }
}

bool legacy_dequantize_row(DType t, const void* src, float* y, std::int64_t k) {
  using namespace legacy;
  switch (t) {
    case DType::Q4_0:
      dequantize_q4_0(src, y, k);
      return true;
    case DType::Q4_1:
      dequantize_q4_1(src, y, k);
      return true;
    case DType::Q5_0:
      dequantize_q5_0(src, y, k);
      return true;
    case DType::Q5_1:
      dequantize_q5_1(src, y, k);
      return true;
    case DType::Q8_0:
      dequantize_q8_0(src, y, k);
      return true;
    case DType::Q8_1:
      dequantize_q8_1(src, y, k);
      return true;
    default:
      return false;
  }
}

}  // namespace kiln::kernels
