#!/usr/bin/env bash
# kiln convert's speed against the disk: a 1.1B-parameter F16 model (synthesized by
# ../shared/tools/synth_gguf.py, Llama-2 vocabulary) is converted GGUF -> Hugging Face folder and
# back, and each conversion is timed beside `cp` of the same bytes in the same run; the ratio
# (kiln's time / cp's) is the number that matters on a shared machine. Page caches are dropped
# where the user may (root), else the input is read once first so that every run reads from the
# page cache alike. Peak resident memory is reported from /usr/bin/time.
#
#   scripts/bench_convert.sh [--models DIR] [--kiln PATH] [-r REPS]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="$repo/build/bench-models"
kiln="${KILN_BIN:-$repo/build/kiln}"
reps=3
while [[ $# -gt 0 ]]; do
  case "$1" in
    --models) models="$2"; shift 2 ;;
    --kiln) kiln="$2"; shift 2 ;;
    -r) reps="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "bench_convert: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[[ -x "$kiln" ]] || { echo "bench_convert: $kiln is not built" >&2; exit 2; }
mkdir -p "$models"
src="$models/synth-1.1b-f16.gguf"
if [[ ! -f "$src" ]]; then
  /usr/bin/python3 "$repo/../shared/tools/synth_gguf.py" "$repo/../shared/data/llama-2-tiny-random.gguf" "$src" f16
fi
work="$(mktemp -d "$models/convert-bench-XXXXXX")"
trap 'rm -rf "$work"' EXIT
bytes=$(stat -c %s "$src")

# Seconds and peak RSS (MiB) of a command, as "secs rss".
timed() {
  /usr/bin/time -o "$work/time.txt" -f "%e %M" "$@" >/dev/null 2>"$work/stderr.txt" ||
    { cat "$work/stderr.txt" >&2; exit 1; }
  awk '{printf "%.3f %.0f\n", $1, $2 / 1024}' "$work/time.txt"
}
best() { sort -n | head -1; }

cat "$src" >/dev/null
echo "model: $src ($((bytes / 1000000)) MB), $reps runs each, best time"
printf "%-28s %9s %9s %9s %8s\n" "step" "kiln s" "cp s" "kiln/cp" "RSS MiB"
for step in to_hf to_gguf; do
  kiln_times=() cp_times=() rss=0
  for ((i = 0; i < reps; i++)); do
    rm -rf "$work/hf" "$work/back.gguf" "$work/copy"
    if [[ $step == to_hf ]]; then
      read -r t r < <(timed "$kiln" convert "$src" "$work/hf" --to hf --progress none)
    else
      [[ -d "$work/hf_keep" ]] || "$kiln" convert "$src" "$work/hf_keep" --to hf --progress none >/dev/null
      cat "$work/hf_keep"/*.safetensors >/dev/null
      read -r t r < <(timed "$kiln" convert "$work/hf_keep" "$work/back.gguf" --progress none)
    fi
    kiln_times+=("$t")
    (( r > rss )) && rss=$r
    read -r c _ < <(timed sh -c "cp '$src' '$work/copy' && sync '$work/copy'")
    cp_times+=("$c")
  done
  k=$(printf "%s\n" "${kiln_times[@]}" | best)
  c=$(printf "%s\n" "${cp_times[@]}" | best)
  printf "%-28s %9s %9s %9.2f %8s\n" "$step ($((bytes / 1000000)) MB)" "$k" "$c" "$(echo "$k / $c" | bc -l)" "$rss"
  echo "  kiln MB/s: $(echo "$bytes / $k / 1000000" | bc -l | xargs printf '%.0f'), cp MB/s: $(echo "$bytes / $c / 1000000" | bc -l | xargs printf '%.0f')"
done
