#!/usr/bin/env bash
# Builds kiln and runs every test tier that belongs in CI: unit, integration and interop in a
# Release build, then the unit tier and the serve shutdown test again under AddressSanitizer +
# UBSan.
# The slow tier (fuzzing, long peer comparisons) runs with:  scripts/test.sh --slow
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test

JOBS=${JOBS:-$(nproc)}
LABELS="unit|integration|interop"
[ "${1:-}" = "--slow" ] && LABELS="slow"

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_BUILD_TESTS=ON -DKILN_BUILD_BENCH=ON >/dev/null
cmake --build build -j "$JOBS"
(cd build && ctest -L "$LABELS" -j "$JOBS" --output-on-failure)

if [ "${1:-}" != "--slow" ] && [ "${KILN_SKIP_SANITIZE:-0}" != "1" ]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_SANITIZE=ON -DKILN_BUILD_BENCH=OFF >/dev/null
  cmake --build build-asan -j "$JOBS"
  # The unit tier, and kiln serve's shutdown with requests still on its API threads (the sanitized
  # server must exit 0: a use of a model after it was unloaded, or a leak, is a report).
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
     ctest -L unit -j "$JOBS" --output-on-failure && \
   ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
     ctest -R 'integration/serve_shutdown_test' --output-on-failure)
fi
