#include "core/cpu_features.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace kiln {
namespace {

#if defined(__x86_64__) || defined(__i386__)
std::uint64_t read_xcr0() {
  std::uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<std::uint64_t>(edx) << 32) | eax;
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = (c >> 27) & 1;
  if (!osxsave) return f;
  const std::uint64_t xcr0 = read_xcr0();
  const bool ymm_ok = (xcr0 & 0x6) == 0x6;
  const bool zmm_ok = ymm_ok && (xcr0 & 0xe0) == 0xe0;
  f.fma = ((c >> 12) & 1) && ymm_ok;
  f.f16c = ((c >> 29) & 1) && ymm_ok;
  __cpuid_count(7, 0, a, b, c, d);
  f.avx2 = ((b >> 5) & 1) && ymm_ok;
  f.avx512f = ((b >> 16) & 1) && zmm_ok;
  f.avx512dq = ((b >> 17) & 1) && zmm_ok;
  f.avx512bw = ((b >> 30) & 1) && zmm_ok;
  f.avx512vl = ((b >> 31) & 1) && zmm_ok;
  f.avx512vnni = ((c >> 11) & 1) && zmm_ok;
  f.avx512vbmi = ((c >> 1) & 1) && zmm_ok;
  f.amx_bf16 = (d >> 22) & 1;
  f.amx_tile = (d >> 24) & 1;
  f.amx_int8 = (d >> 25) & 1;
  unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
  __cpuid_count(7, 1, a1, b1, c1, d1);
  f.avx512bf16 = ((a1 >> 5) & 1) && zmm_ok;
#endif
  return f;
}

SimdLevel detect_max_level() {
  const CpuFeatures& f = cpu_features();
  if (f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512vnni && f.avx512bf16 && f.fma && f.f16c)
    return SimdLevel::Avx512;
  if (f.avx2 && f.fma && f.f16c) return SimdLevel::Avx2;
  return SimdLevel::Scalar;
}

SimdLevel initial_level() {
  SimdLevel level = detect_max_level();
  if (const char* env = std::getenv("KILN_SIMD")) {
    std::string v(env);
    SimdLevel want = level;
    if (v == "scalar") want = SimdLevel::Scalar;
    else if (v == "avx2") want = SimdLevel::Avx2;
    else if (v == "avx512") want = SimdLevel::Avx512;
    if (want < level) level = want;
  }
  return level;
}

std::atomic<int> g_level{-1};

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

SimdLevel max_supported_simd_level() {
  static const SimdLevel level = detect_max_level();
  return level;
}

SimdLevel simd_level() {
  int v = g_level.load(std::memory_order_relaxed);
  if (v < 0) {
    v = static_cast<int>(initial_level());
    g_level.store(v, std::memory_order_relaxed);
  }
  return static_cast<SimdLevel>(v);
}

void set_simd_level(SimdLevel level) {
  if (level > max_supported_simd_level()) level = max_supported_simd_level();
  g_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

std::string_view simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::Scalar: return "scalar";
    case SimdLevel::Avx2: return "avx2";
    case SimdLevel::Avx512: return "avx512";
  }
  return "?";
}

}  // namespace kiln
