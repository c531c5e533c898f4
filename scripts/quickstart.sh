#!/usr/bin/env bash
# Sets up the machine and runs acap's main job on built-in data.
#
# Until the llama.cpp integration lands, the main job is the axis pipeline: write an axis file
# in the published layout (Llama-3.1-8B shape, layers 22..28), then inspect it as `--acap`
# would load it. Pass your own axis files to inspect those instead:
#   bash scripts/quickstart.sh [--acap-threshold T] AXIS.gguf ...
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build -q --examples
if (($#)); then
    exec target/debug/examples/axis_inspect "$@"
fi
demo=target/demo-axis.gguf
target/debug/examples/axis_write "$demo"
target/debug/examples/axis_inspect "$demo"
