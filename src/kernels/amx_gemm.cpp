// Dispatch for the AMX prefill path: CPU and OS checks, argument checks. The AMX code itself
// lives in amx_gemm_amx.cpp, which is compiled with the AMX flags and entered only from here.
#include "kernels/amx_gemm.h"

#include <algorithm>
#include <cstdlib>
#include <string_view>

#include "core/cpu_features.h"
#include "core/error.h"

#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace kiln::kernels {
namespace {

// Linux keeps the 8 KB of tile data out of a thread's signal frame and XSAVE area until the
// process asks for it; without this grant the first tile instruction raises SIGILL.
bool request_tile_data_permission() {
#if defined(__linux__) && defined(__x86_64__)
  constexpr long kArchGetXcompPerm = 0x1022;
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) return false;
  unsigned long granted = 0;
  if (syscall(SYS_arch_prctl, kArchGetXcompPerm, &granted) != 0) return false;
  return (granted >> kXfeatureXtiledata) & 1;
#else
  return false;
#endif
}

bool disabled_by_environment() {
  const char* env = std::getenv("KILN_AMX");
  if (env == nullptr) return false;
  const std::string_view v(env);
  return v == "0" || v == "off" || v == "false" || v == "no";
}

bool detect_amx() {
  const CpuFeatures& f = cpu_features();
  // The decoders use AVX-512 BW/VL/DQ/BF16 besides the tiles.
  if (!f.amx_tile || !f.amx_bf16 || max_supported_simd_level() < SimdLevel::Avx512) return false;
  if (disabled_by_environment()) return false;
  return request_tile_data_permission();
}

bool is_k_quant(DType t) { return t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K; }

}  // namespace

bool amx_available() {
  static const bool granted = detect_amx();
  return granted && simd_level() == SimdLevel::Avx512;
}

bool amx_supports(DType weight_type) { return amx_available() && amx_detail::has_fast_decoder(weight_type); }

void amx_convert_activations(const float* x, std::int64_t M, std::int64_t K, std::uint16_t* a_bf16) {
  KILN_CHECK(amx_available(), "amx_convert_activations: AMX is not available on this CPU/OS");
  KILN_CHECK(M >= 0 && K >= 0, "amx_convert_activations: negative shape ({}, {})", M, K);
  amx_detail::convert_activations(x, M, K, a_bf16);
}

void amx_gemm(DType weight_type, std::int64_t K, const void* w, std::size_t w_stride, const std::uint16_t* a_bf16,
              std::size_t lda, std::int64_t M, std::int64_t n_begin, std::int64_t n_end, float* y, std::int64_t ldy) {
  KILN_CHECK(amx_supports(weight_type), "amx_gemm: no AMX path for weight type {}", dtype_name(weight_type));
  // Whole blocks: 256 for the K-quants, the group for kiln's affine types, else 32.
  const std::int64_t k_multiple =
      is_k_quant(weight_type) ? 256 : std::max<std::int64_t>(32, traits(weight_type).block_size);
  KILN_CHECK(K > 0 && K % k_multiple == 0, "amx_gemm: K = {} is not a positive multiple of {} for {}", K, k_multiple,
             dtype_name(weight_type));
  KILN_CHECK(lda >= static_cast<std::size_t>(K), "amx_gemm: lda {} is smaller than K {}", lda, K);
  KILN_CHECK(0 <= n_begin && n_begin <= n_end, "amx_gemm: bad weight row range [{}, {})", n_begin, n_end);
  if (M <= 0 || n_begin == n_end) return;
  amx_detail::gemm(weight_type, K, w, w_stride, a_bf16, lda, M, n_begin, n_end, y, ldy);
}

}  // namespace kiln::kernels
