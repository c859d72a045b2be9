#!/usr/bin/env bash
# Installs what kiln needs on Debian 12, in two tiers:
#   scripts/install-deps.sh          to build and run kiln: compiler, CMake, Ninja and the libraries
#                                    kiln links (CLI11, nlohmann-json, fmt, PCRE2, Boost headers,
#                                    prometheus-cpp, Open MPI, ONNX's protobuf messages) and mpirun
#   scripts/install-deps.sh --test   also what the tests and benchmarks use: GoogleTest, Google
#                                    Benchmark, clang with libFuzzer, Python references
#                                    (sentencepiece, Jinja2, PyYAML, PyTorch, the ONNX checker), Prometheus and
#                                    promtool, Chromium, and the pinned npm peers (llama.cpp via
#                                    node-llama-cpp, the openai client, playwright-core, ONNX Runtime via
#                                    onnxruntime-node) from package-lock.json
# scripts/quickstart.sh runs the first, scripts/test.sh the second. Idempotent and
# non-interactive; safe to run on every CI start.
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1

DEBIAN_PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libcli11-dev nlohmann-json3-dev libfmt-dev
  libpcre2-dev                            # byte-level BPE pre-tokenizer regexes
  libboost-dev                            # Boost.Asio + Boost.Beast (header-only) for kiln serve
  prometheus-cpp-dev                      # the metrics registry and its text format (src/monitor/)
  libopenmpi-dev openmpi-bin              # data-parallel training: kiln links Open MPI, mpirun launches the ranks
  libonnx-dev libprotobuf-dev             # kiln export onnx: the ONNX ModelProto messages (protobuf)
  curl                                    # the quickstart asks kiln serve for a completion; the serve tests send raw bad input
)
if [ "$with_tests" -eq 1 ]; then
  DEBIAN_PACKAGES+=(
    git
    clang lld libclang-rt-14-dev          # libFuzzer + sanitizers for the fuzz tier
    libgtest-dev libgmock-dev libbenchmark-dev
    python3 python3-sentencepiece sentencepiece python3-jinja2
    python3-torch libopenblas0-pthread    # the training parity test and the training speed peer (PyTorch 1.13 on OpenBLAS)
    python3-yaml                          # tests/deploy/ read the Kubernetes manifests and Prometheus rules
    python3-onnx                          # the ONNX checker over kiln export onnx's graphs
    python3-jsonschema                    # structured outputs: every constrained answer validated against its JSON Schema
    prometheus                            # promtool checks /metrics; the metrics test starts its own Prometheus on a free port
    chromium                              # the dashboard test's headless browser (driven by npm playwright-core)
  )
  # Node.js may come from Debian (nodejs + npm) or from a vendor build that bundles npm: ask for
  # the commands, not the packages.
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    DEBIAN_PACKAGES+=(nodejs npm)
  fi
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "install-deps: Debian packages present"
fi

# npm peers for the tests, pinned by package-lock.json. Skipped with KILN_NO_NPM=1 (e.g. offline
# builds); the tests that need them then skip visibly.
if [ "$with_tests" -eq 1 ] && [ "${KILN_NO_NPM:-0}" != "1" ] && [ -f package.json ]; then
  if [ ! -d node_modules/node-llama-cpp ] || [ ! -d node_modules/onnxruntime-node ] ||
     [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "install-deps: npm ci (pinned peers)"
    # onnxruntime-node bundles its CPU binaries; its install script would also fetch the CUDA
    # providers from NuGet, which the tests do not use.
    ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error
  else
    echo "install-deps: npm peers present"
  fi
fi
