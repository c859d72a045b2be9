#!/usr/bin/env bash
# The recipe of kiln's default model, models/kiln-default.gguf: a 5.8M-parameter Llama that kiln
# trained itself on public-domain text, with a tokenizer kiln trained on the same text.
#
#   1. kiln tokenizer train: a 4096-token byte-level BPE vocabulary (Llama 3 pre-tokenizer) from
#      War and Peace and tiny-shakespeare;
#   2. kiln data prepare: both texts as paragraphs, each ended by the end-of-sequence token (so
#      the model learns where a paragraph ends), exact duplicates removed, 2% held out for
#      validation (seeded);
#   3. kiln train: dim 256, 6 layers, 8 query / 4 key-value heads, FFN 768 (widths that are
#      multiples of 256, so every GGUF K-quant applies), context 256, tied output; 2000 steps of
#      16 x 256 tokens (8.2M tokens, about 7 epochs), AdamW at 2e-3 with 100 warmup steps and a
#      cosine to 2e-4, weight decay 0.1, gradients clipped at 1; bf16 products where the CPU has
#      them (f32 master weights);
#   4. the model exported as F16 GGUF with its tokenizer (the validation loss on the held-out
#      paragraphs is printed by step 3), and a greedy sample.
#
# About 30 minutes on 2 cores of an AVX-512 machine. Every step is seeded (the vocabulary, the
# split, the initial weights, the data order) and training does not depend on the thread count,
# so a rerun on a machine that makes the same precision choice (bf16 or f32) is expected to
# write the same model byte for byte.
#
#   scripts/train-default-model.sh [WORK_DIR]     (default build/default-model)
# Then: cp WORK_DIR/run/model.gguf models/kiln-default.gguf
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${KILN_DATA_DIR:-../shared/data}
WORK=${1:-build/default-model}
THREADS=${THREADS:-$(nproc)}
KILN=build/kiln
if [ ! -x "$KILN" ]; then
  scripts/install-deps.sh
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j "$(nproc)" --target kiln
fi
TEXTS=("$DATA/war-and-peace.txt" "$DATA/tinyshakespeare.txt")
for t in "${TEXTS[@]}"; do
  [ -f "$t" ] || { echo "train-default-model: $t is missing (set KILN_DATA_DIR)" >&2; exit 1; }
done
rm -rf "$WORK"
mkdir -p "$WORK"
set -x
"$KILN" tokenizer train -q --vocab-size 4096 --out "$WORK/tok" "${TEXTS[@]}"
"$KILN" data prepare -q --tokenizer "$WORK/tok/tokenizer.gguf" --paragraphs --eos --val-fraction 0.02 \
  --out "$WORK/data" "${TEXTS[@]}"
"$KILN" train --data "$WORK/data" --out "$WORK/run" --name kiln-default \
  --dim 256 --layers 6 --heads 8 --kv-heads 4 --ffn 768 -c 256 \
  -b 16 --steps 2000 --lr 2e-3 --warmup 100 --eval-every 200 --eval-windows 0 --save-every 200 \
  --seed 1 --export-type f16 -t "$THREADS"
"$KILN" run "$WORK/run/model.gguf" -p "The prince" -n 64 --temp 0
