#!/usr/bin/env bash
# A local fleet on loopback (not in CI: it installs LiteLLM and takes a few minutes): acap-server
# replicas behind the LiteLLM proxy, 200 mixed capped/uncapped, streaming/plain requests, one
# replica killed mid-run; or, with `scaling`, aggregate throughput of 1, 2, 3 replicas.
#
#   bash scripts/fleet-test.sh                 # routing test (tiny model, 3 replicas)
#   bash scripts/fleet-test.sh scaling         # throughput, 1 -> 3 replicas, -t 1 each
#   bash scripts/fleet-test.sh routing --replicas 2 --requests 400
#
# LiteLLM (the version in scripts/litellm-version, with the proxy's dependencies from
# scripts/litellm-requirements.txt) is
# installed once into target/litellm-venv from PyPI; at run time nothing is fetched
# (LITELLM_LOCAL_MODEL_COST_MAP keeps the proxy off the network). See docs/SCALING.md.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/litellm-venv
version=$(cat scripts/litellm-version)
if ! "$venv/bin/python" -c "import litellm, fastapi, websockets, orjson, yaml, openai" 2>/dev/null \
    || [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))')" != "$version" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "litellm==$version" -r scripts/litellm-requirements.txt
fi
# The whole workspace, as the tests build it: one feature set, so llama.cpp is not rebuilt.
cargo build --quiet --workspace --bins --examples
mode=${1:-routing}
(($#)) && shift
exec "$venv/bin/python" scripts/fleet-test.py "$mode" --litellm "$venv/bin/litellm" "$@"
