#!/usr/bin/env bash
# Runs every check CI runs: formatting, lints (warnings are errors) and all tests, then one
# summary line with the totals over all test binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The API docs build without a warning (broken links, missing docs).
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
# The tables of llama.cpp assertions acap checks natively (src/hparams/head_asserts.rs,
# arch_asserts.rs, the BPE lists of vocab.rs) match the vendored llama.cpp.
python3 scripts/hparam-asserts.py --check
# The test-model generator ships in nothing: not in the server or the C library, and in the
# CLI crate only behind its default `builtin-models` feature (acap demo, bench presets).
for args in "-p acap-server" "-p acap-ffi" "-p acap-cli --no-default-features"; do
    # shellcheck disable=SC2086
    if cargo tree $args -e normal --locked --prefix none | grep -q '^acap-testkit'; then
        echo "test.sh: acap-testkit is linked into: $args" >&2
        exit 1
    fi
done
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# The capping, batch-engine and C tests again with the cap computed as a ggml graph (the path
# GPU tensors take, here on the CPU backend). `--workspace` keeps the feature set of the run
# above, so nothing is rebuilt.
ACAP_CAP_PATH=graph cargo test --workspace --locked --test integration \
    -- capping batch cap_path alloc_free 2>&1 | tee -a "$log"
ACAP_CAP_PATH=graph cargo test --workspace --locked --test c_api 2>&1 | tee -a "$log"
# The deployment files (containers, Kubernetes, GPUStack) run command lines this acap-server
# accepts, on the port they all agree on.
target/openai-venv/bin/python scripts/check-deploy.py target/debug/acap-server
awk '/^test result:/ { p += $4; f += $6 } END { printf "total: %d passed, %d failed\n", p, f }' "$log"
