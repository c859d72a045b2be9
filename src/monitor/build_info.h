#pragma once
// kiln_build_info: a gauge of 1 whose labels say which kiln this is (version, git commit) and
// which SIMD level its kernels use on this machine, so a dashboard can tell a slow replica's
// build and CPU path apart from the others'.
#include <string>

#include "monitor/registry.h"

namespace kiln::monitor {

std::string build_version();  // "0.1.0"
std::string build_git_sha();  // the commit built (12 hex digits, "-dirty" when the tree had changes), or "unknown"

// The SIMD level is read at each collection: tests and KILN_SIMD may lower it after start.
[[nodiscard]] ScopedCollector add_build_info(Registry& registry);

}  // namespace kiln::monitor
