#!/usr/bin/env bash
# Fuzzes the model file readers: builds the libFuzzer targets in build-fuzz/ with clang
# (-fsanitize=fuzzer,address,undefined), then runs each for SECONDS (default 60) over a scratch
# copy of its seed corpus in fuzz/corpus/<target>/. Exits non-zero if any target finds a crash,
# a sanitizer report, a leak, an uncaught exception, a timeout or an out-of-memory input; the
# reproducer is kept in build-fuzz/fuzz-artifacts/<target>/.
# Usage: scripts/fuzz.sh [SECONDS]
#        scripts/fuzz.sh --replay   # only run every committed corpus input once (the CI check
#                                   # that the fuzz targets still build and the seeds stay clean)
set -euo pipefail
replay=0
if [ "${1:-}" = "--replay" ]; then replay=1; shift; fi
seconds=${1:-60}
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "usage: $0 [SECONDS] | --replay" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build-fuzz"
targets=(gguf_fuzz llama2c_fuzz safetensors_fuzz pickle_fuzz pytorch_checkpoint_fuzz hf_config_fuzz jinja_fuzz tokenizer_fuzz data_shard_fuzz
         checkpoint_fuzz grammar_fuzz teacher_cache_fuzz)

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DKILN_BUILD_FUZZ=ON -DKILN_BUILD_TESTS=OFF -DKILN_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" --target "${targets[@]}"

status=0
if [ "$replay" -eq 1 ]; then
  for target in "${targets[@]}"; do
    log="$build/fuzz-artifacts/$target.replay.log"
    mkdir -p "$build/fuzz-artifacts"
    rc=0
    # -runs=0: execute the corpus inputs and stop; nothing is written to the corpus.
    ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      "$build/fuzz/$target" "$root/fuzz/corpus/$target" -runs=0 -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
      echo "fuzz.sh: $target replay FAILED (exit $rc); last lines of its log:" >&2
      tail -n 40 "$log" >&2
      status=1
    else
      echo "fuzz.sh: $target replayed $(find "$root/fuzz/corpus/$target" -type f | wc -l) corpus files cleanly"
    fi
  done
  exit "$status"
fi
for target in "${targets[@]}"; do
  # The fuzzer adds what it finds to the corpus directory; keep the committed seeds unchanged.
  work=$(mktemp -d "/tmp/kiln_fuzz_${target}_XXXXXX")
  cp -r "$root/fuzz/corpus/$target/." "$work/"
  artifacts="$build/fuzz-artifacts/$target"
  mkdir -p "$artifacts"
  dict=()
  [ -f "$root/fuzz/${target%_fuzz}.dict" ] && dict=("-dict=$root/fuzz/${target%_fuzz}.dict")
  log="$build/fuzz-artifacts/$target.log"
  echo "fuzz.sh: $target for ${seconds}s (log: $log)"
  rc=0
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$build/fuzz/$target" "$work" "${dict[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=8192 -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1 || rc=$?
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)|^#[0-9]+ +DONE' "$log" | sed "s/^/  /" || true
  if [ "$rc" -ne 0 ]; then
    echo "fuzz.sh: $target FAILED (exit $rc); last lines of its log:" >&2
    tail -n 40 "$log" >&2
    status=1
  else
    echo "fuzz.sh: $target clean ($(find "$work" -type f | wc -l) corpus files)"
  fi
  rm -rf "$work"
done
exit "$status"
