#!/usr/bin/env bash
# Builds kiln and runs every test tier that belongs in CI: unit, integration and interop in a
# Release build, then the unit tier and the serve shutdown test again under AddressSanitizer +
# UBSan.
# The slow tier (fuzzing, long peer comparisons) runs with:  scripts/test.sh --slow
# The soak tier (kiln serve for ten minutes of mixed traffic and abuse, then SIGTERM; about 11
# minutes in all; KILN_SOAK_SECONDS=60 for a short one) runs with:  scripts/test.sh --soak
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test

JOBS=${JOBS:-$(nproc)}
LABELS="unit|integration|interop"
[ "${1:-}" = "--slow" ] && LABELS="slow"
[ "${1:-}" = "--soak" ] && LABELS="soak"

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_BUILD_TESTS=ON -DKILN_BUILD_BENCH=ON >/dev/null
cmake --build build -j "$JOBS"
(cd build && ctest -L "$LABELS" -j "$JOBS" --output-on-failure)
# The soak's figures (requests, tokens, peak RSS, latency), as docs/operations.md records them.
if [ "$LABELS" = "soak" ] && [ -f build/serve_soak_summary.json ]; then cat build/serve_soak_summary.json; fi

if [ "$LABELS" = "unit|integration|interop" ] && [ "${KILN_SKIP_SANITIZE:-0}" != "1" ]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_SANITIZE=ON -DKILN_BUILD_BENCH=OFF >/dev/null
  # Only what runs sanitized: the unit tier and the shutdown test (and the kiln binary they use).
  cmake --build build-asan -j "$JOBS" --target unit_tests serve_shutdown_test kiln
  # The unit tier, and kiln serve's shutdown with requests still on its API threads (the sanitized
  # server must exit 0: a use of a model after it was unloaded, or a leak, is a report).
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
     ctest -L unit -j "$JOBS" --output-on-failure && \
   ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
     ctest -R 'integration/serve_shutdown_test' --output-on-failure)
fi
