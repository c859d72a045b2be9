#include "monitor/build_info.h"

#include <kiln_build_id.h>  // generated at every build: KILN_VERSION, KILN_GIT_SHA

#include "core/cpu_features.h"

namespace kiln::monitor {

std::string build_version() { return KILN_VERSION; }
std::string build_git_sha() { return KILN_GIT_SHA; }

ScopedCollector add_build_info(Registry& registry) {
  return registry.add_collector([](Collection& c) {
    c.gauge("kiln_build_info", "Always 1; the labels say which kiln runs: version, git commit, SIMD level in use.", 1,
            {{"version", build_version()},
             {"git_sha", build_git_sha()},
             {"simd", std::string(simd_level_name(simd_level()))}});
  });
}

}  // namespace kiln::monitor
