#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds kiln, and runs its main job on kiln's default model,
# models/kiln-default.gguf: a 5.8M-parameter Llama that kiln trained itself on War and Peace and
# tiny-shakespeare, with a tokenizer kiln trained on the same text
# (scripts/train-default-model.sh is its recipe). It runs the model, chats with it, serves it
# behind the OpenAI-compatible API and answers one request, and benchmarks it.
# Any GGUF of the Llama family works the same way:  build/kiln run MODEL.gguf -p "your prompt"
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh   # what building and running kiln needs; the tests' peers come with test.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_BUILD_TESTS=OFF -DKILN_BUILD_BENCH=OFF >/dev/null
cmake --build build -j "$(nproc)" --target kiln

MODEL=models/kiln-default.gguf
set -x
build/kiln inspect "$MODEL" | sed -n 1,16p
build/kiln run "$MODEL" -p "The prince" -n 96 --temp 0.8 --seed 7
printf 'Tell me about the war.\n' | build/kiln chat "$MODEL" -n 64 --temp 0.8 --seed 7

# kiln serve on a free port, one chat completion through the OpenAI-compatible API, then SIGTERM.
{ set +x; } 2>/dev/null
LOG=$(mktemp)
build/kiln serve "$MODEL" --port 0 --log-format text >"$LOG" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; rm -f "$LOG"' EXIT
URL=""
for _ in $(seq 1 100); do
  URL=$(grep -o 'http://127.0.0.1:[0-9]*' "$LOG" | head -n 1 || true)
  [ -n "$URL" ] && break
  sleep 0.1
done
[ -n "$URL" ] || { cat "$LOG" >&2; echo "quickstart: kiln serve did not start" >&2; exit 1; }
set -x
curl -s "$URL/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"model":"kiln-default","messages":[{"role":"user","content":"Who was Napoleon?"}],"max_tokens":48,"temperature":0.8,"seed":7}'
echo
kill -TERM $SERVER
wait $SERVER

build/kiln bench "$MODEL" -p 128 -n 64 -r 3
