#!/usr/bin/env bash
# Loads a deterministic corpus of the tiny model with hostile header values (see
# examples/header_mutations.rs), each in its own acap-cli process (load, then a two-token
# greedy completion), and counts what happened: ran, refused (exit 1, with the message), or
# died (abort, segfault, timeout). Not in CI: a survey for issue 20.
#
# Usage: [PROFILE=release] bash scripts/header-mutations.sh [N] [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
out=${2:-target/header-mutations}
rm -rf "$out" && mkdir -p "$out"
# Built as part of the workspace, so features unify as in `cargo test --workspace` and
# llama.cpp is not built a second time.
cargo build -q --workspace ${PROFILE:+--profile "$PROFILE"} --bin acap-cli --example header_mutations || exit 1
dir=target/${PROFILE:-debug}
"$dir/examples/header_mutations" "$out" "$n" || exit 1
bin=$dir/acap-cli
ok=0 refused=0 died=0
: > "$out/died.txt"
: > "$out/refused.txt"
for v in "$out"/v*.gguf; do
    id=$(basename "$v" .gguf)
    err=$(timeout 60 "$bin" -m "$v" -no-cnv -p "Hello there" -n 2 -t 1 \
        --temp 0 -c 128 2>&1 >/dev/null)
    rc=$?
    case $rc in
        0) ok=$((ok + 1)) ;;
        1) refused=$((refused + 1))
           echo "$id $(grep -m1 '^error' <<< "$err")" >> "$out/refused.txt" ;;
        *) died=$((died + 1))
           echo "$id rc=$rc $(grep "^$id " "$out/variants.txt" | cut -d' ' -f2-) :: $(tail -n 2 <<< "$err" | tr '\n' ' ')" >> "$out/died.txt" ;;
    esac
    rm -f "$v"
done
echo "variants $n: ran $ok, refused $refused, died $died" | tee "$out/summary.txt"
