#!/usr/bin/env bash
# kiln against llama.cpp on TinyLlama-1.1B-shaped GGUFs with synthetic weights: prefill and decode
# tokens/s (mean ± stdev over repetitions) per weight type, and the ratio kiln / llama.cpp.
#
# usage: scripts/bench_vs_llamacpp.sh [-p N_PROMPT] [-n N_GEN] [-t THREADS] [-r REPS]
#                                     [--types "q4_0 q8_0 f16 q4_k_m"] [--models DIR] [--kiln PATH] [--llamacpp-only]
#   defaults: -p 128 -n 64 -t 2 -r 3, all four types, models in build/bench-models/,
#   kiln from $KILN_BIN or build/kiln.
#
# The models are made once by ../shared/tools/synth_gguf.py (about 1.5 s, 4 s and 7 s for q4_0,
# q8_0 and f16; 0.6, 1.2 and 2.2 GB), q4_k_m by `kiln quantize` from the f16 one (about 40 s,
# 0.67 GB), and reused while present. For each type the two engines run
# back to back, and the one that goes first alternates from type to type so that neither always
# meets a cooler or warmer machine. llama.cpp is the npm package node-llama-cpp@3.21.1 driven by
# scripts/llamacpp_bench.mjs (prebuilt CPU binaries). Both run one warm-up and REPS timed runs.
# The raw JSON lines go to DIR/results-<time>.jsonl; the table goes to stdout.
# The machine should be otherwise idle: the 1-minute load average is printed with the table.
# Before each engine's run the model file is dropped from the page cache (posix_fadvise
# DONTNEED), so each starts cold and neither inherits the page layout the other left: kiln maps
# weights with MADV_HUGEPAGE and gets 2 MiB page-cache folios only for pages it reads in itself
# (see docs/architecture.md), so a file left cached in 4 KiB folios by another reader decodes
# slower. The warm-up run absorbs the cold read for both.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
n_prompt=128 n_gen=64 threads=2 reps=3
types="q4_0 q8_0 f16 q4_k_m"
models="$repo/build/bench-models"
kiln="${KILN_BIN:-$repo/build/kiln}"
llamacpp_only=0
donor="$repo/../shared/data/llama-2-tiny-random.gguf"
synth="$repo/../shared/tools/synth_gguf.py"

die() {
  echo "bench_vs_llamacpp: $*" >&2
  exit 2
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    -p) n_prompt="$2"; shift 2 ;;
    -n) n_gen="$2"; shift 2 ;;
    -t) threads="$2"; shift 2 ;;
    -r) reps="$2"; shift 2 ;;
    --types) types="$2"; shift 2 ;;
    --models) models="$2"; shift 2 ;;
    --kiln) kiln="$2"; shift 2 ;;
    --llamacpp-only) llamacpp_only=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
for v in "$n_prompt" "$n_gen" "$threads" "$reps"; do
  [[ "$v" =~ ^[0-9]+$ ]] || die "-p, -n, -t and -r take non-negative integers, got '$v'"
done
for t in $types; do
  [[ "$t" =~ ^(q4_0|q8_0|f16|f32|q4_k_m)$ ]] || die "type '$t' is not one of q4_0 q8_0 f16 f32 q4_k_m"
done

command -v node >/dev/null || die "node is not installed (needed to run llama.cpp through node-llama-cpp)"
[[ -d "$repo/node_modules/node-llama-cpp" ]] || die "node-llama-cpp is missing: run scripts/install-deps.sh --test (npm ci of the pinned peers) at $repo"
[[ -f "$donor" ]] || die "donor model $donor is missing (the shared data folder)"
[[ -f "$synth" ]] || die "$synth is missing (the shared tools folder)"
if [[ $llamacpp_only -eq 0 ]]; then
  [[ -x "$kiln" ]] || die "kiln binary not found at $kiln (build it, set KILN_BIN or pass --kiln; --llamacpp-only skips kiln)"
  "$kiln" bench --help >/dev/null 2>&1 ||
    die "$kiln has no working 'bench' subcommand yet ('kiln bench --help' failed); --llamacpp-only skips kiln"
fi

mkdir -p "$models"
make_model() {  # type, path
  local t="$1" model="$2"
  echo "bench_vs_llamacpp: writing $model ..." >&2
  start=$(date +%s.%N)
  if [[ "$t" == q4_k_m ]]; then
    # llama.cpp's most used mix, quantized by kiln from the f16 model (byte-identical to what
    # llama-quantize writes; see tests/interop/quantize_vs_llamacpp_test.cpp).
    local f16="$models/synth-1.1b-f16.gguf"
    [[ -f "$f16" ]] || make_model f16 "$f16"
    [[ -x "$kiln" ]] || die "q4_k_m is quantized by kiln, and no kiln binary was found at $kiln"
    "$kiln" quantize "$f16" "$model" Q4_K_M >&2
  else
    # Written under a temporary name so that an interrupted run never leaves a truncated model.
    python3 "$synth" "$donor" "$model.tmp" "$t" >&2
    mv "$model.tmp" "$model"
  fi
  echo "bench_vs_llamacpp: $t written in $(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $start }") s" >&2
}
for t in $types; do
  model="$models/synth-1.1b-$t.gguf"
  [[ -f "$model" ]] || make_model "$t" "$model"
done

results="$models/results-$(date +%Y%m%d-%H%M%S).jsonl"
load_before=$(cut -d' ' -f1 /proc/loadavg)

drop_page_cache() {
  python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$1"
}

run_kiln() {
  "$kiln" bench "$1" -p "$n_prompt" -n "$n_gen" -t "$threads" -r "$reps" --json |
    node -e 'const j = JSON.parse(require("fs").readFileSync(0, "utf8").trim().split("\n").pop());
             for (const k of ["prefill_tok_s_mean", "prefill_tok_s_std", "decode_tok_s_mean", "decode_tok_s_std"])
               if (typeof j[k] !== "number") { console.error(`kiln bench --json lacks the number ${k}`); process.exit(1); }
             // kiln names its main weight dtype "type"; the row is keyed by the requested type.
             console.log(JSON.stringify({engine: "kiln", ...j, weight_type: j.type, type: process.argv[1]}));' "$2"
}
run_llamacpp() {
  (cd "$repo" && node scripts/llamacpp_bench.mjs "$1" -p "$n_prompt" -n "$n_gen" -t "$threads" -r "$reps") |
    node -e 'const j = JSON.parse(require("fs").readFileSync(0, "utf8"));
             console.log(JSON.stringify({...j, type: process.argv[1]}));' "$2"
}

first=kiln
for t in $types; do
  model="$models/synth-1.1b-$t.gguf"
  if [[ $llamacpp_only -eq 1 ]]; then
    order="llamacpp"
  elif [[ $first == kiln ]]; then
    order="kiln llamacpp"
    first=llamacpp
  else
    order="llamacpp kiln"
    first=kiln
  fi
  for engine in $order; do
    echo "bench_vs_llamacpp: $engine on $t ..." >&2
    drop_page_cache "$model"
    "run_$engine" "$model" "$t" >>"$results"
  done
done
load_after=$(cut -d' ' -f1 /proc/loadavg)

node - "$results" "$n_prompt" "$n_gen" "$threads" "$reps" "$load_before" "$load_after" <<'EOF'
const [file, nPrompt, nGen, threads, reps, loadBefore, loadAfter] = process.argv.slice(2);
const rows = require("fs").readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l));
const types = [...new Set(rows.map((r) => r.type))];
const cell = (r, what) => r ? `${r[what + "_tok_s_mean"].toFixed(1)} ± ${r[what + "_tok_s_std"].toFixed(1)}` : "—";
const ratio = (k, l, what) => k && l ? `${(k[what + "_tok_s_mean"] / l[what + "_tok_s_mean"]).toFixed(2)}` : "—";
console.log(`TinyLlama-1.1B shape, synthetic weights; prompt ${nPrompt}, generate ${nGen}, ${threads} threads, ` +
            `${reps} timed runs each (tokens/s, mean ± stdev); load average ${loadBefore} before, ${loadAfter} after\n`);
console.log("| type | kiln prefill | llama.cpp prefill | prefill kiln/llama.cpp | kiln decode | llama.cpp decode | decode kiln/llama.cpp |");
console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const t of types) {
  const k = rows.find((r) => r.type === t && r.engine === "kiln");
  const l = rows.find((r) => r.type === t && r.engine === "llama.cpp");
  console.log(`| ${t} | ${cell(k, "prefill")} | ${cell(l, "prefill")} | ${ratio(k, l, "prefill")} | ` +
              `${cell(k, "decode")} | ${cell(l, "decode")} | ${ratio(k, l, "decode")} |`);
}
const huge = types.map((t) => rows.find((r) => r.type === t && r.engine === "kiln"))
  .filter((k) => k && typeof k.huge_page_mapped_bytes === "number")
  .map((k) => `${k.type} ${(100 * k.huge_page_mapped_bytes / k.file_bytes).toFixed(0)}%`);
if (huge.length) console.log(`\nkiln's weights in 2 MiB pages: ${huge.join(", ")}`);
console.log(`\nraw results: ${file}`);
EOF
