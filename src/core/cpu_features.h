#pragma once
// Which SIMD paths this CPU can run, read once with CPUID (and XGETBV for OS support of the
// wide registers). Kernels pick their path from `simd_level()`, once per call.
#include <string_view>

namespace kiln {

enum class SimdLevel { Scalar = 0, Avx2 = 1, Avx512 = 2 };

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512vnni = false, avx512bf16 = false, avx512vbmi = false;
  bool amx_tile = false, amx_int8 = false, amx_bf16 = false;
};

const CpuFeatures& cpu_features();

// The best level this CPU supports, lowered by the environment variable KILN_SIMD
// (scalar | avx2 | avx512) or by set_simd_level(); never raised above what the CPU has.
SimdLevel simd_level();
SimdLevel max_supported_simd_level();
// Forces a level (clamped to what the CPU supports); used by tests to compare paths.
void set_simd_level(SimdLevel level);
std::string_view simd_level_name(SimdLevel level);

}  // namespace kiln
