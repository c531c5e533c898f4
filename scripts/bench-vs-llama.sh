#!/usr/bin/env bash
# acap against llama.cpp itself, same version, same machine, interleaved:
#
#   bash scripts/bench-vs-llama.sh [MODEL|PRESET]... [-r REPS] [-t THREADS] [-p 512] [-n 128]
#
# MODEL is a GGUF file or an `acap bench` preset (tiny, small:q8_0, small:q4_k_m, ...; default
# tiny, small:q8_0 and small:q4_k_m). The reference is benches/llama-reference: the llama.cpp
# tree llama-cpp-sys-2 vendors, configured as llama.cpp configures itself by default (Release,
# OpenMP, native CPU; AMX off as acap, see .cargo/config.toml), with a loop that measures as
# `acap bench` does. Each repetition runs the reference once and `acap bench` once (uncapped,
# no-op callback and capped at 7 blocks at the depth of 22..28 of 32), alternating which goes
# first; the line per model and test is the median of the per-repetition ratios:
#
#   MODEL: acap/llama.cpp pp512 RATIO tg128 RATIO   (uncapped)
#   MODEL: acap capped/llama.cpp pp512 RATIO tg128 RATIO
#   MODEL: acap capped/uncapped pp512 RATIO tg128 RATIO   (within each acap bench run)
set -euo pipefail
cd "$(dirname "$0")/.."

models=() reps=5 threads=0 n_prompt=512 n_gen=128
while (($#)); do
    case "$1" in
        -r) reps=$2; shift 2 ;;
        -t) threads=$2; shift 2 ;;
        -p) n_prompt=$2; shift 2 ;;
        -n) n_gen=$2; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) models+=("$1"); shift ;;
    esac
done
((${#models[@]})) || models=(tiny small:q8_0 small:q4_k_m)

amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
sys_dir=$(cargo metadata --format-version 1 --locked 2>/dev/null | python3 -c '
import json, sys, os
m = json.load(sys.stdin)
p = next(p for p in m["packages"] if p["name"] == "llama-cpp-sys-2")
print(os.path.dirname(p["manifest_path"]))')
ref_dir=target/llama-reference
if [ ! -x "$ref_dir/llama-reference" ]; then
    echo "bench-vs-llama: building the reference from $sys_dir/llama.cpp (a few minutes, once)" >&2
    CFLAGS="$amx" CXXFLAGS="$amx" cmake -S benches/llama-reference -B "$ref_dir" \
        -DLLAMA_SRC="$sys_dir/llama.cpp" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$ref_dir" -j "$(nproc)" >/dev/null
fi
cargo build --release --locked -p acap-cli --bin acap >&2
acap=target/release/acap
ref="$ref_dir/llama-reference"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

for m in "${models[@]}"; do
    # A preset becomes a file (generated once); the reference needs the path.
    path=$m
    if [ ! -f "$m" ]; then
        path=$("$acap" bench -m "$m" -p 8 -n 1 -r 1 -o json --bandwidth-mib 1 2>/dev/null \
            | python3 -c 'import json,sys; print(json.load(sys.stdin)["models"][0]["path"])')
    fi
    t=$threads
    [ "$t" -gt 0 ] || t=$(nproc)
    for ((r = 0; r < reps; r++)); do
        run_ref() { "$ref" -m "$path" -p "$n_prompt" -n "$n_gen" -r 1 -t "$t" > "$out/ref.$r.json"; }
        run_acap() { "$acap" bench -m "$path" -p "$n_prompt" -n "$n_gen" -r 1 -t "$t" -o json \
            --bandwidth-mib 1 2>/dev/null > "$out/acap.$r.json"; }
        if ((r % 2)); then run_acap; run_ref; else run_ref; run_acap; fi
    done
    python3 - "$out" "$reps" "$m" "$n_prompt" "$n_gen" <<'PY'
import json, sys, statistics
out, reps, name, n_prompt, n_gen = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ratios = {("uncapped", "pp"): [], ("uncapped", "tg"): [], ("capped", "pp"): [], ("capped", "tg"): []}
# acap's own capped/uncapped, pair by pair inside each acap bench run.
own = {"pp": [], "tg": []}
rss = []
for r in range(reps):
    ref = json.load(open(f"{out}/ref.{r}.json"))
    acap = json.load(open(f"{out}/acap.{r}.json"))
    rss.append((acap["models"][0]["peak_rss_bytes"] / 1024, ref["peak_rss_kib"]))
    for t in acap["models"][0]["tests"]:
        kind = "pp" if t["test"].startswith("pp") else "tg"
        base = ref[kind][0]
        for c in ("uncapped", "capped"):
            ratios[(c, kind)].append(t[c]["median"] / base)
        own[kind].append(t["ratio"]["median"])
med = {k: statistics.median(v) if v else float("nan") for k, v in ratios.items()}
print(f"{name}: acap/llama.cpp pp{n_prompt} {med[('uncapped','pp')]:.3f} tg{n_gen} {med[('uncapped','tg')]:.3f}")
print(f"{name}: acap capped/llama.cpp pp{n_prompt} {med[('capped','pp')]:.3f} tg{n_gen} {med[('capped','tg')]:.3f}")
o = {k: statistics.median(v) if v else float("nan") for k, v in own.items()}
print(f"{name}: acap capped/uncapped pp{n_prompt} {o['pp']:.3f} tg{n_gen} {o['tg']:.3f}")
a, b = statistics.median(x for x, _ in rss), statistics.median(y for _, y in rss)
if a and b:
    # acap bench holds three contexts (uncapped, no-op, capped) where the reference holds one.
    print(f"{name}: peak RSS acap bench (3 contexts)/llama.cpp (1) {a / b:.3f} ({a / 1024:.0f} / {b / 1024:.0f} MiB)")
PY
done
