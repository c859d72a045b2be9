#!/usr/bin/env bash
# What the metrics cost the serving engine: `kiln bench --parallel` with the engine recording its
# metrics (and the registry written out every second, as a 1 s Prometheus scrape would) against
# the same run with --no-metrics, for each stream count, in alternating order round after round
# (on-off, then off-on, ...) so that neither side always meets a cooler or warmer machine.
# Prints, per stream count, the generated tokens/s of every run and the ratio on / off of each
# round, with their mean and median, and the same ratio of the median inter-token latency (off /
# on, so that above 1 means faster with metrics too): the median of a run's token gaps shrugs off
# a moment of load from elsewhere on the machine that the mean tokens/s takes in full. The raw
# JSON lines go to stderr.
#
# usage: scripts/metrics_overhead.sh MODEL.gguf [-p N_PROMPT] [-n N_GEN] [-t THREADS]
#                                   [--streams "1 16"] [--rounds R] [--kiln PATH]
#   defaults: -p 128 -n 128 -t 2, streams 1 and 16, 4 rounds, kiln from $KILN_BIN or build/kiln.
# The machine should be otherwise idle: the 1-minute load average is printed before and after.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
n_prompt=128 n_gen=128 threads=2 rounds=4 streams="1 16"
kiln="${KILN_BIN:-$repo/build/kiln}"
model="${1:-}"
[ -n "$model" ] && [ -f "$model" ] || { echo "usage: scripts/metrics_overhead.sh MODEL.gguf [options]" >&2; exit 2; }
shift
while [[ $# -gt 0 ]]; do
  case "$1" in
    -p) n_prompt="$2"; shift 2 ;;
    -n) n_gen="$2"; shift 2 ;;
    -t) threads="$2"; shift 2 ;;
    --streams) streams="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --kiln) kiln="$2"; shift 2 ;;
    *) echo "metrics_overhead: unknown option $1" >&2; exit 2 ;;
  esac
done

# "tok/s itl_p50_ms" of one run; the JSON line goes to stderr.
run() {
  local n="$1" switch="$2" line
  line=$("$kiln" bench "$model" --parallel "$n" -p "$n_prompt" -n "$n_gen" -t "$threads" --json $switch)
  echo "$line" >&2
  jq -r '.results[0] | "\(.gen_tok_s) \(.itl_p50_ms)"' <<<"$line"
}

echo "load average before: $(cut -d' ' -f1 /proc/loadavg)"
for n in $streams; do
  on=() off=() on_itl=() off_itl=()
  for ((r = 0; r < rounds; r++)); do
    if ((r % 2 == 0)); then
      a=$(run "$n" "") b=$(run "$n" "--no-metrics")
    else
      b=$(run "$n" "--no-metrics") a=$(run "$n" "")
    fi
    on+=("${a% *}") off+=("${b% *}") on_itl+=("${a#* }") off_itl+=("${b#* }")
  done
  jq -n -r --arg n "$n" --argjson on "[$(IFS=,; echo "${on[*]}")]" --argjson off "[$(IFS=,; echo "${off[*]}")]" \
    --argjson on_itl "[$(IFS=,; echo "${on_itl[*]}")]" --argjson off_itl "[$(IFS=,; echo "${off_itl[*]}")]" '
    def r(d): . * d | round / d;
    def median: sort as $s | length as $k | if $k % 2 == 1 then $s[($k - 1) / 2] else ($s[$k / 2 - 1] + $s[$k / 2]) / 2 end;
    def summary: "\(map(r(1000)) | join(" ")); mean \(add / length | r(1000)); median \(median | r(1000))";
    "streams \($n): tok/s with metrics \($on | map(r(10)) | join(" ")); without \($off | map(r(10)) | join(" "))\n" +
    "  tok/s on/off per round \([range(0; $on | length) as $i | $on[$i] / $off[$i]] | summary)\n" +
    "  inter-token p50 ms with metrics \($on_itl | map(r(100)) | join(" ")); without \($off_itl | map(r(100)) | join(" "))\n" +
    "  inter-token p50 off/on per round \([range(0; $on | length) as $i | $off_itl[$i] / $on_itl[$i]] | summary)"'
done
echo "load average after: $(cut -d' ' -f1 /proc/loadavg)"
