// The K-quants' scalar level: reference dot products against q8_K activations (what every SIMD
// path is tested against, and the fallback on CPUs without AVX2) and the gemm built on them;
// the reference quantizers are in kquants_quantize_ref.cpp. Each dot product follows ggml's
// generic (non-SIMD) vec_dot: exact integer sums per super-block, the same float accumulation
// (eight partial sums for q3_K .. q6_K), so results match llama.cpp's scalar build.
#include <cstring>

#include "core/half.h"
#include "kernels/kernel_families.h"
#include "kernels/kquants_internal.h"

namespace kiln::kernels::kquant {
namespace {

// Accumulates d * aux32[l] into sums[l], as ggml's generic kernels do.
inline void add_scaled(float* sums, const std::int32_t* aux32, float d) {
  for (int l = 0; l < 8; ++l) sums[l] += d * aux32[l];
}

// aux32[l] += scale * (q8[l] * a[l]) over 16 quants, in two passes of 8 lanes.
inline void accumulate_16(std::int32_t* aux32, int scale, const std::int8_t* q8, const std::int8_t* a) {
  for (int half = 0; half < 2; ++half) {
    for (int l = 0; l < 8; ++l) aux32[l] += scale * static_cast<std::int16_t>(q8[8 * half + l] * a[8 * half + l]);
  }
}

// The eight 6-bit scales (bytes 0..7) and mins (bytes 8..15) of q4_K / q5_K.
void unpack_scales_mins_k4(const std::uint8_t* packed, std::uint8_t* scales, std::uint8_t* mins) {
  for (int j = 0; j < 8; ++j) get_scale_min_k4(j, packed, &scales[j], &mins[j]);
}

float vec_dot_q2_K(std::int64_t k, const void* w_row, const void* a_row) {
  const auto* x = static_cast<const block_q2_K*>(w_row);
  const auto* y = static_cast<const block_q8_K*>(a_row);
  const std::int64_t nb = k / QK_K;
  float sumf = 0;
  for (std::int64_t i = 0; i < nb; ++i) {
    const std::uint8_t* q2 = x[i].qs;
    const std::int8_t* q8 = y[i].qs;
    const std::uint8_t* sc = x[i].scales;
    int summs = 0;
    for (int j = 0; j < 16; ++j) summs += y[i].bsums[j] * (sc[j] >> 4);
    const float dall = y[i].d * f16_to_f32(x[i].d);
    const float dmin = y[i].d * f16_to_f32(x[i].dmin);
    int isum = 0;
    int is = 0;
    for (int n = 0; n < QK_K / 128; ++n, q2 += 32) {
      for (int shift = 0; shift < 8; shift += 2, q8 += 32) {
        for (int half = 0; half < 2; ++half) {
          const int d = sc[is++] & 0xF;
          int isuml = 0;
          for (int l = 16 * half; l < 16 * half + 16; ++l) isuml += q8[l] * ((q2[l] >> shift) & 3);
          isum += d * isuml;
        }
      }
    }
    sumf += dall * isum - dmin * summs;
  }
  return sumf;
}

float vec_dot_q3_K(std::int64_t k, const void* w_row, const void* a_row) {
  const auto* x = static_cast<const block_q3_K*>(w_row);
  const auto* y = static_cast<const block_q8_K*>(a_row);
  const std::int64_t nb = k / QK_K;
  std::int8_t aux8[QK_K];
  float sums[8] = {};
  std::int32_t aux32[8];
  for (std::int64_t i = 0; i < nb; ++i) {
    const std::uint8_t* q3 = x[i].qs;
    const std::uint8_t* hm = x[i].hmask;
    const std::int8_t* q8 = y[i].qs;
    std::memset(aux32, 0, sizeof(aux32));
    std::int8_t* a = aux8;
    std::uint8_t m = 1;
    for (int j = 0; j < QK_K; j += 128, q3 += 32) {
      for (int shift = 0; shift < 8; shift += 2, a += 32, m = static_cast<std::uint8_t>(m << 1)) {
        for (int l = 0; l < 32; ++l) a[l] = static_cast<std::int8_t>(((q3[l] >> shift) & 3) - (hm[l] & m ? 0 : 4));
      }
    }
    std::uint8_t scales[16];
    unpack_q3_K_scales(x[i].scales, scales);
    a = aux8;
    for (int j = 0; j < QK_K / 16; ++j, q8 += 16, a += 16) accumulate_16(aux32, scales[j] - 32, q8, a);
    add_scaled(sums, aux32, f16_to_f32(x[i].d) * y[i].d);
  }
  float sumf = 0;
  for (int l = 0; l < 8; ++l) sumf += sums[l];
  return sumf;
}

// q4_K and q5_K share everything but the fifth bit; hm is nullptr for q4_K.
template <typename Block>
float vec_dot_q45_K(std::int64_t k, const Block* x, const block_q8_K* y, bool has_high_bit) {
  const std::int64_t nb = k / QK_K;
  std::int8_t aux8[QK_K];
  float sums[8] = {};
  std::int32_t aux32[8];
  float sumf = 0;
  for (std::int64_t i = 0; i < nb; ++i) {
    const std::uint8_t* q4 = x[i].qs;
    const std::int8_t* q8 = y[i].qs;
    std::memset(aux32, 0, sizeof(aux32));
    std::int8_t* a = aux8;
    for (int j = 0; j < QK_K / 64; ++j, q4 += 32) {
      for (int l = 0; l < 32; ++l) a[l] = static_cast<std::int8_t>(q4[l] & 0xF);
      for (int l = 0; l < 32; ++l) a[l + 32] = static_cast<std::int8_t>(q4[l] >> 4);
      if (has_high_bit) {
        const std::uint8_t* hm = reinterpret_cast<const block_q5_K*>(&x[i])->qh;
        for (int l = 0; l < 32; ++l) a[l] = static_cast<std::int8_t>(a[l] + (hm[l] & (1 << (2 * j)) ? 16 : 0));
        for (int l = 0; l < 32; ++l) {
          a[l + 32] = static_cast<std::int8_t>(a[l + 32] + (hm[l] & (2 << (2 * j)) ? 16 : 0));
        }
      }
      a += 64;
    }
    std::uint8_t scales[8], mins[8];
    unpack_scales_mins_k4(x[i].scales, scales, mins);
    int sumi = 0;
    for (int j = 0; j < QK_K / 16; ++j) sumi += y[i].bsums[j] * mins[j / 2];
    a = aux8;
    for (int j = 0; j < QK_K / 32; ++j) {
      accumulate_16(aux32, scales[j], q8, a);
      accumulate_16(aux32, scales[j], q8 + 16, a + 16);
      q8 += 32;
      a += 32;
    }
    add_scaled(sums, aux32, f16_to_f32(x[i].d) * y[i].d);
    const float dmin = f16_to_f32(x[i].dmin) * y[i].d;
    sumf -= dmin * sumi;
  }
  for (int l = 0; l < 8; ++l) sumf += sums[l];
  return sumf;
}

float vec_dot_q4_K(std::int64_t k, const void* w_row, const void* a_row) {
  return vec_dot_q45_K(k, static_cast<const block_q4_K*>(w_row), static_cast<const block_q8_K*>(a_row), false);
}

float vec_dot_q5_K(std::int64_t k, const void* w_row, const void* a_row) {
  return vec_dot_q45_K(k, static_cast<const block_q5_K*>(w_row), static_cast<const block_q8_K*>(a_row), true);
}

float vec_dot_q6_K(std::int64_t k, const void* w_row, const void* a_row) {
  const auto* x = static_cast<const block_q6_K*>(w_row);
  const auto* y = static_cast<const block_q8_K*>(a_row);
  const std::int64_t nb = k / QK_K;
  std::int8_t aux8[QK_K];
  float sums[8] = {};
  std::int32_t aux32[8];
  for (std::int64_t i = 0; i < nb; ++i) {
    const std::uint8_t* q4 = x[i].ql;
    const std::uint8_t* qh = x[i].qh;
    const std::int8_t* q8 = y[i].qs;
    std::memset(aux32, 0, sizeof(aux32));
    std::int8_t* a = aux8;
    for (int j = 0; j < QK_K; j += 128, a += 128, q4 += 64, qh += 32) {
      for (int l = 0; l < 32; ++l) {
        a[l + 0] = static_cast<std::int8_t>(((q4[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
        a[l + 32] = static_cast<std::int8_t>(((q4[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
        a[l + 64] = static_cast<std::int8_t>(((q4[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        a[l + 96] = static_cast<std::int8_t>(((q4[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
      }
    }
    a = aux8;
    for (int j = 0; j < QK_K / 16; ++j, q8 += 16, a += 16) accumulate_16(aux32, x[i].scales[j], q8, a);
    add_scaled(sums, aux32, f16_to_f32(x[i].d) * y[i].d);
  }
  float sumf = 0;
  for (int l = 0; l < 8; ++l) sumf += sums[l];
  return sumf;
}

void quantize_act_q8_K(const float* x, void* dst, std::int64_t k) {
  quantize_row_q8_K_ref(x, static_cast<block_q8_K*>(dst), k);
}

constexpr WeightKernels kScalarKernels[] = {
    {DType::Q2_K, DType::Q8_K, quantize_act_q8_K, vec_dot_q2_K, gemm_by_vec_dot<vec_dot_q2_K>, SimdLevel::Scalar},
    {DType::Q3_K, DType::Q8_K, quantize_act_q8_K, vec_dot_q3_K, gemm_by_vec_dot<vec_dot_q3_K>, SimdLevel::Scalar},
    {DType::Q4_K, DType::Q8_K, quantize_act_q8_K, vec_dot_q4_K, gemm_by_vec_dot<vec_dot_q4_K>, SimdLevel::Scalar},
    {DType::Q5_K, DType::Q8_K, quantize_act_q8_K, vec_dot_q5_K, gemm_by_vec_dot<vec_dot_q5_K>, SimdLevel::Scalar},
    {DType::Q6_K, DType::Q8_K, quantize_act_q8_K, vec_dot_q6_K, gemm_by_vec_dot<vec_dot_q6_K>, SimdLevel::Scalar},
};

}  // namespace

const WeightKernels* scalar_weight_kernels(DType w) { return find_kernels(kScalarKernels, w); }

}  // namespace kiln::kernels::kquant
