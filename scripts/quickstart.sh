#!/usr/bin/env bash
# Sets up the machine and runs acap's main job.
#
#   bash scripts/quickstart.sh                      # built-in tiny model, built-in prompt
#   bash scripts/quickstart.sh -m MODEL.gguf -p "Your prompt" [-n 128] [--temp 0.7]
#
# Today the main job is streaming generation through acap's safe llama.cpp layer (capped chat
# arrives with the capping engine and acap-cli). Without -m it uses the built-in tiny test
# model, generated deterministically on first use (random weights: the text is gibberish, but
# every step is the real path: GGUF, BPE tokenizer, Q8_0 weights, sampling, streaming).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build -q --examples
if (($#)); then
    exec target/debug/examples/generate "$@"
fi
exec target/debug/examples/generate -p "Hello, how are you today?" -n 48 --temp 0
