#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds kiln, and runs its main job on the default models:
#   - stories260K.bin, a real trained 260K-parameter Llama (llama2.c checkpoint; it has no
#     tokenizer here, so it is driven by token ids: BOS = 1), and
#   - llama-2-tiny-random.gguf, a GGUF Llama with the real Llama-2 tokenizer but RANDOM weights:
#     the pipeline is real (tokenize, prefill, sample, stream), the text it prints is noise.
# Until kiln trains a small real model of its own, these are the defaults. Any GGUF works:
#   build/kiln run MODEL.gguf -p "your prompt"
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh   # what building and running kiln needs; the tests' peers come with test.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_BUILD_TESTS=OFF -DKILN_BUILD_BENCH=OFF >/dev/null
cmake --build build -j "$(nproc)" --target kiln

DATA=${KILN_DATA_DIR:-../shared/data}
if [ ! -d "$DATA" ]; then
  echo "quickstart: no model folder at $DATA (set KILN_DATA_DIR to a folder holding stories260K.bin)" >&2
  exit 1
fi
set -x
build/kiln inspect "$DATA/stories260K.bin" | head -n 12
build/kiln run "$DATA/stories260K.bin" --tokens 1 -n 64 --temp 0 --print-ids
build/kiln run "$DATA/llama-2-tiny-random.gguf" -p "Once upon a time" -n 24 --seed 42
build/kiln bench "$DATA/stories260K.bin" -p 128 -n 64 -r 3
