#!/usr/bin/env bash
# The GPU check of the graph path, prepared to run in ONE call on a machine with an NVIDIA GPU
# and no Rust toolchain (see docs/GPU.md). It expects the binaries from scripts/build-cuda.sh,
# carried as target/cuda/dist/{acap,acap-cli}.xz, and writes everything under $OUT (default
# ./gpu-check-out):
#
#   env.txt          GPU, driver, where cuBLAS 13 was found, acap version
#   greedy.txt       greedy capped text per model: CPU host loop, GPU graph path, GPU host copies
#   verdict.txt      "greedy: same" or the differing pairs (capping, and capping plus H-neuron
#                    suppression with tests/fixtures/h_suppress_tiny.gguf)
#   bench.json/.md   acap bench of the 8B-shaped testkit model, all layers offloaded, capped
#                    (host copies) vs graph path side by side
#
# Usage: bash scripts/gpu-check.sh [--no-bench]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
DIST=${DIST:-target/cuda/dist}
bin=$(mktemp -d)
for b in acap acap-cli; do
    xz -dc "$DIST/$b.xz" > "$bin/$b" && chmod +x "$bin/$b" || { echo "no $DIST/$b.xz" >&2; exit 1; }
done

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || echo "nvidia-smi failed"
    # cuBLAS 13 (not carried: 540 MB): the CUDA toolkit, or a CUDA 13 PyTorch's wheels.
    cublas=$(find /usr/local/cuda*/lib64 /usr/local/cuda*/targets/*/lib /usr/lib/x86_64-linux-gnu \
        / -maxdepth 6 -name 'libcublas.so.13*' 2>/dev/null | head -n 1)
    echo "libcublas: ${cublas:-NOT FOUND}"
    if [ -n "$cublas" ]; then
        export LD_LIBRARY_PATH="$(dirname "$cublas")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
    "$bin/acap" version
} > "$OUT/env.txt" 2>&1
cublas_dir=$(sed -n 's/^libcublas: \(.*\)\/[^/]*$/\1/p' "$OUT/env.txt")
[ -n "$cublas_dir" ] && export LD_LIBRARY_PATH="$cublas_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export ACAP_TESTKIT_CACHE="$OUT/models"

# The tiny test models (generated here, deterministic) and the demo's axis for them (blocks
# 3..6, thresholds that pull back part of the rows).
"$bin/acap" demo -n 4 > /dev/null 2>&1
"$bin/acap" bench -m tiny-qwen2:q8_0 -p 8 -n 4 -r 1 > /dev/null 2>&1
axis="$ACAP_TESTKIT_CACHE/demo-axis.gguf"
prompt="You are a helpful assistant. Tell me a story about a cat and a dog."
: > "$OUT/greedy.txt"
verdict=same
for model in "$ACAP_TESTKIT_CACHE"/tiny-*-Q8_0.gguf; do
    run() { "$bin/acap-cli" -m "$model" --acap "$axis" -no-cnv -p "$prompt" -n 48 --temp 0 -t 4 "$@" 2>>"$OUT/greedy.log"; }
    cpu=$(ACAP_CAP_PATH=host run -ngl 0)
    graph=$(ACAP_CAP_PATH=auto run -ngl 99)
    copies=$(ACAP_CAP_PATH=host run -ngl 99)
    printf '== %s\n-- cpu host loop\n%s\n-- gpu graph path\n%s\n-- gpu host copies\n%s\n' \
        "$(basename "$model")" "$cpu" "$graph" "$copies" >> "$OUT/greedy.txt"
    [ "$graph" = "$cpu" ] || verdict="differs ($(basename "$model"): graph vs cpu)"
    [ "$copies" = "$cpu" ] || verdict="differs ($(basename "$model"): host copies vs cpu)"
    # Both edits: the cap on l_out and the suppression inside the FFN.
    hs=tests/fixtures/h_suppress_tiny.gguf
    hcpu=$(ACAP_CAP_PATH=host run -ngl 0 --h-suppress "$hs")
    hgraph=$(ACAP_CAP_PATH=auto run -ngl 99 --h-suppress "$hs")
    printf -- '-- h-suppress cpu host loop\n%s\n-- h-suppress gpu graph path\n%s\n' \
        "$hcpu" "$hgraph" >> "$OUT/greedy.txt"
    [ "$hgraph" = "$hcpu" ] || verdict="differs ($(basename "$model"): h-suppress graph vs cpu)"
    [ "$hcpu" != "$cpu" ] || verdict="h-suppress changed nothing ($(basename "$model"))"
done
echo "greedy: $verdict" > "$OUT/verdict.txt"

if [ "${1:-}" != "--no-bench" ]; then
    "$bin/acap" bench -m llama8b:q8_0 -ngl 99 -p 512 -n 64 -r 5 --compare-cap-paths -o json \
        > "$OUT/bench.json" 2> "$OUT/bench.log"
    "$bin/acap" bench -m llama8b:q8_0 -ngl 99 -p 512 -n 64 -r 3 --compare-cap-paths \
        > "$OUT/bench.md" 2>> "$OUT/bench.log"
    rm -f "$ACAP_TESTKIT_CACHE"/llama8b-*   # 8 GB: not to come back under $OUT
fi
cat "$OUT/verdict.txt"
