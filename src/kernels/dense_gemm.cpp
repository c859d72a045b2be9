// The blocked driver of dense_gemm (packing, threads, edges), its scalar kernels and the
// reference. The AVX-512 packers and micro-kernels are in dense_gemm_avx512.cpp.
#include "kernels/dense_gemm.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "kernels/dense_gemm_internal.h"
#include "kernels/thread_scratch.h"

namespace kiln::kernels {
namespace dense_gemm_detail {
namespace {

// ---- scalar kernels ---------------------------------------------------------------------------

float element(const LineSource& s, std::int64_t line, std::int64_t k) {
  return s.k_contiguous ? s.data[line * s.stride + k] : s.data[k * s.stride + line];
}

void pack_scalar(const LineSource& src, std::int64_t line0, int count, std::int64_t k0, std::int64_t klen, int width,
                 GemmPrecision precision, std::uint32_t* dst) {
  const std::int64_t units = units_for(klen, precision);
  for (std::int64_t u = 0; u < units; ++u) {
    std::uint32_t* out = dst + u * width;
    for (int l = 0; l < width; ++l) {
      if (l >= count) {
        out[l] = 0;
        continue;
      }
      if (precision == GemmPrecision::F32) {
        out[l] = std::bit_cast<std::uint32_t>(element(src, line0 + l, k0 + u));
      } else {
        const std::uint32_t lo = f32_to_bf16(element(src, line0 + l, k0 + 2 * u));
        const std::uint32_t hi = 2 * u + 1 < klen ? f32_to_bf16(element(src, line0 + l, k0 + 2 * u + 1)) : 0u;
        out[l] = lo | hi << 16;
      }
    }
  }
}

constexpr int kScalarMr = 4;
constexpr int kScalarNr = 8;

template <GemmPrecision P>
void micro_scalar(std::int64_t units, const std::uint32_t* a, const std::uint32_t* b, float* c, std::int64_t ldc,
                  bool accumulate) {
  float acc[kScalarMr][kScalarNr] = {};
  for (std::int64_t u = 0; u < units; ++u) {
    const std::uint32_t* au = a + u * kScalarMr;
    const std::uint32_t* bu = b + u * kScalarNr;
    for (int i = 0; i < kScalarMr; ++i) {
      if constexpr (P == GemmPrecision::F32) {
        const float ai = std::bit_cast<float>(au[i]);
        for (int j = 0; j < kScalarNr; ++j) acc[i][j] += ai * std::bit_cast<float>(bu[j]);
      } else {
        const float a0 = bf16_to_f32(static_cast<bf16_bits>(au[i] & 0xffffu));
        const float a1 = bf16_to_f32(static_cast<bf16_bits>(au[i] >> 16));
        for (int j = 0; j < kScalarNr; ++j)
          acc[i][j] += a0 * bf16_to_f32(static_cast<bf16_bits>(bu[j] & 0xffffu)) +
                       a1 * bf16_to_f32(static_cast<bf16_bits>(bu[j] >> 16));
      }
    }
  }
  for (int i = 0; i < kScalarMr; ++i)
    for (int j = 0; j < kScalarNr; ++j) c[i * ldc + j] = accumulate ? c[i * ldc + j] + acc[i][j] : acc[i][j];
}

const Kernels kScalarF32{kScalarMr, kScalarNr, 256, 64, 256, pack_scalar, micro_scalar<GemmPrecision::F32>,
                         SimdLevel::Scalar};
const Kernels kScalarBf16{kScalarMr, kScalarNr, 128, 64, 256, pack_scalar, micro_scalar<GemmPrecision::BF16>,
                          SimdLevel::Scalar};

}  // namespace

const Kernels& scalar_kernels(GemmPrecision precision) {
  return precision == GemmPrecision::F32 ? kScalarF32 : kScalarBf16;
}

}  // namespace dense_gemm_detail

namespace {

using namespace dense_gemm_detail;

const Kernels& choose(GemmPrecision precision, SimdLevel level) {
  if (level >= SimdLevel::Avx512)
    if (const Kernels* k = avx512_kernels(precision)) return *k;
  return scalar_kernels(precision);
}

// Per-thread packed blocks of A, kept between calls (slot 0); B's block is the caller's (slot 1).
ScratchSlots& scratch() {
  thread_local ScratchSlots slots;
  return slots;
}

}  // namespace

SimdLevel dense_gemm_path(GemmPrecision precision, SimdLevel level) { return choose(precision, level).level; }

void dense_gemm(std::int64_t M, std::int64_t N, std::int64_t K, MatrixArg A, MatrixArg B, float* C, std::int64_t ldc,
                bool accumulate, GemmPrecision precision, ThreadPool& pool, SimdLevel level) {
  if (M < 0 || N < 0 || K < 0) fail("dense_gemm: negative shape {}x{}x{}", M, N, K);
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (!accumulate)
      for (std::int64_t i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + N, 0.0f);
    return;
  }
  const Kernels& kern = choose(precision, level);
  const int mr = kern.mr, nr = kern.nr;
  // Lines of A are its rows; lines of B are its columns.
  const LineSource a_src{A.data, A.stride, !A.transposed};
  const LineSource b_src{B.data, B.stride, B.transposed};
  const std::int64_t k_per_unit = precision == GemmPrecision::BF16 ? 2 : 1;
  const std::int64_t kc_elems = kern.kc * k_per_unit;
  const std::int64_t nc = std::min<std::int64_t>(kern.nc, (N + nr - 1) / nr * nr);
  const std::int64_t m_blocks = (M + kern.mc - 1) / kern.mc;
  const int n_threads = pool.size();

  std::uint32_t* b_pack = reinterpret_cast<std::uint32_t*>(
      scratch().get(1, static_cast<std::size_t>(kern.kc * nc) * sizeof(std::uint32_t)));
  // What each worker's A buffer holds: the m block of this (jc, pc) step, or -1.
  std::vector<std::int64_t> packed_block(static_cast<std::size_t>(n_threads), -1);

  for (std::int64_t jc = 0; jc < N; jc += nc) {
    const std::int64_t nb = std::min(nc, N - jc);
    const std::int64_t n_panels = (nb + nr - 1) / nr;
    for (std::int64_t pc = 0; pc < K; pc += kc_elems) {
      const std::int64_t kb = std::min(kc_elems, K - pc);
      const std::int64_t units = units_for(kb, precision);
      const bool add = accumulate || pc > 0;
      pool.parallel_for(n_panels, [&](std::int64_t p, int) {
        const std::int64_t line0 = jc + p * nr;
        kern.pack(b_src, line0, static_cast<int>(std::min<std::int64_t>(nr, N - line0)), pc, kb, nr, precision,
                  b_pack + p * units * nr);
      });
      // Tasks are (m block, slice of B's panels); when A has few blocks, B's panels are split
      // too, so that every thread has work.
      const std::int64_t j_chunks =
          std::min(n_panels, std::max<std::int64_t>(1, (2 * n_threads + m_blocks - 1) / m_blocks));
      std::fill(packed_block.begin(), packed_block.end(), -1);
      pool.parallel_for(m_blocks * j_chunks, [&](std::int64_t task, int worker) {
        const std::int64_t ib = task / j_chunks, jch = task % j_chunks;
        const std::int64_t i0 = ib * kern.mc;
        const std::int64_t mb = std::min(kern.mc, M - i0);
        const std::int64_t m_panels = (mb + mr - 1) / mr;
        auto* a_pack = reinterpret_cast<std::uint32_t*>(
            scratch().get(0, static_cast<std::size_t>(kern.mc * kern.kc) * sizeof(std::uint32_t)));
        if (packed_block[static_cast<std::size_t>(worker)] != ib) {
          for (std::int64_t p = 0; p < m_panels; ++p) {
            const std::int64_t line0 = i0 + p * mr;
            kern.pack(a_src, line0, static_cast<int>(std::min<std::int64_t>(mr, M - line0)), pc, kb, mr, precision,
                      a_pack + p * units * mr);
          }
          packed_block[static_cast<std::size_t>(worker)] = ib;
        }
        const std::int64_t jp0 = n_panels * jch / j_chunks, jp1 = n_panels * (jch + 1) / j_chunks;
        alignas(64) float edge[16 * 64];  // one tile, for tiles that cross C's edges
        for (std::int64_t jp = jp0; jp < jp1; ++jp) {
          const std::int64_t j = jc + jp * nr;
          const std::int64_t cols = std::min<std::int64_t>(nr, N - j);
          for (std::int64_t ip = 0; ip < m_panels; ++ip) {
            const std::int64_t i = i0 + ip * mr;
            const std::int64_t rows = std::min<std::int64_t>(mr, M - i);
            const std::uint32_t* ap = a_pack + ip * units * mr;
            const std::uint32_t* bp = b_pack + jp * units * nr;
            float* c = C + i * ldc + j;
            if (rows == mr && cols == nr) {
              kern.micro(units, ap, bp, c, ldc, add);
              continue;
            }
            kern.micro(units, ap, bp, edge, nr, false);
            for (std::int64_t r = 0; r < rows; ++r)
              for (std::int64_t q = 0; q < cols; ++q)
                c[r * ldc + q] = add ? c[r * ldc + q] + edge[r * nr + q] : edge[r * nr + q];
          }
        }
      });
    }
  }
}

void dense_gemm_ref(std::int64_t M, std::int64_t N, std::int64_t K, MatrixArg A, MatrixArg B, float* C,
                    std::int64_t ldc, bool accumulate, GemmPrecision precision) {
  auto in = [&](float v) {
    return precision == GemmPrecision::BF16 ? static_cast<double>(bf16_to_f32(f32_to_bf16(v))) : static_cast<double>(v);
  };
  auto a = [&](std::int64_t i, std::int64_t k) {
    return in(A.transposed ? A.data[k * A.stride + i] : A.data[i * A.stride + k]);
  };
  auto b = [&](std::int64_t k, std::int64_t j) {
    return in(B.transposed ? B.data[j * B.stride + k] : B.data[k * B.stride + j]);
  };
  for (std::int64_t i = 0; i < M; ++i)
    for (std::int64_t j = 0; j < N; ++j) {
      double sum = 0;
      for (std::int64_t k = 0; k < K; ++k) sum += a(i, k) * b(k, j);
      float& c = C[i * ldc + j];
      c = accumulate ? static_cast<float>(c + sum) : static_cast<float>(sum);
    }
}

}  // namespace kiln::kernels
