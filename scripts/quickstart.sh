#!/usr/bin/env bash
# Sets up the machine and runs acap's main job: `acap demo`, fully offline. It generates the
# built-in tiny test model and a matching axis file, calibrates the thresholds, runs one chat
# turn uncapped and capped, and prints the capping telemetry.
#
#   bash scripts/quickstart.sh                     # the demo
#   bash scripts/quickstart.sh -m MODEL.gguf ...   # any acap-cli command line instead
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build -q --release -p acap-cli
if (($#)); then
    exec target/release/acap-cli "$@"
fi
exec target/release/acap demo
