#!/usr/bin/env bash
# Soak test of acap-server (not in CI): 10,000 mixed requests against a deterministic -np 4
# server; see crates/acap-server/examples/soak.rs for what it sends and checks.
#   scripts/soak.sh [-m MODEL|tiny] [--requests 10000] [--clients 8] [--np 4] [--seed 1] [-t 2]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins --examples --quiet
exec ./target/release/examples/soak "$@"
