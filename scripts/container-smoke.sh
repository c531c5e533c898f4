#!/usr/bin/env bash
# Builds the CPU image (deploy/Containerfile) and smoke-tests it (not in CI: a cold image build
# compiles llama.cpp and takes about 20 minutes on 2 cores). The container serves the tiny test
# model with an axis file; /health must go 503 -> 200, and a capped and an uncapped greedy chat
# must both answer, differently.
#
#   bash scripts/container-smoke.sh
#
# Environment:
#   ENGINE=podman|docker           the container tool (default: podman)
#   ENGINE_FLAGS="..."             global flags for it, e.g. "--runtime runc --cgroup-manager cgroupfs"
#   BUILD_FLAGS="..."              extra build flags, e.g. "--isolation chroot --network host
#                                  --build-arg RUST_IMAGE=localhost/rust:1.95-bookworm
#                                  --build-arg RUNTIME_IMAGE=localhost/debian:bookworm-slim"
#                                  where the default base images cannot be pulled
#   IMAGE=acap-server:cpu          the tag to build and run
set -euo pipefail
cd "$(dirname "$0")/.."
engine=${ENGINE:-podman}
image=${IMAGE:-acap-server:cpu}
# shellcheck disable=SC2206
eflags=(${ENGINE_FLAGS:-})
# shellcheck disable=SC2206
bflags=(${BUILD_FLAGS:-})

"$engine" "${eflags[@]}" build "${bflags[@]}" -f deploy/Containerfile -t "$image" .

# The tiny model and an axis file for it, from the workspace's fixture example.
cargo build --quiet --workspace --examples
dir=target/container-smoke
mkdir -p "$dir"
fx=$(target/debug/examples/fixture "$dir")
model=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["model"])' "$fx")
cp "$model" "$dir/model.gguf"
chmod a+r "$dir"/*.gguf

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
name=acap-smoke-$$
"$engine" "${eflags[@]}" run -d --rm --name "$name" --network host \
    -v "$PWD/$dir:/models:ro" "$image" \
    acap-server --host 127.0.0.1 --port "$port" -m /models/model.gguf --acap /models/axis.gguf \
    -np 2 -c 1024 -t 1 >/dev/null
trap '"$engine" "${eflags[@]}" rm -f "$name" >/dev/null 2>&1 || true' EXIT

status=000
for _ in $(seq 1 120); do
    status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health" || true)
    [ "$status" = 200 ] && break
    sleep 0.5
done
[ "$status" = 200 ] || { "$engine" "${eflags[@]}" logs "$name" >&2; echo "container-smoke: /health never 200 (last $status)" >&2; exit 1; }

reply() {
    curl -sf "http://127.0.0.1:$port/v1/chat/completions" -H 'Content-Type: application/json' \
        -d "{\"messages\": [{\"role\": \"user\", \"content\": \"Tell me a story about a cat who\"}],
             \"max_tokens\": 16, \"temperature\": 0, \"acap\": {\"enabled\": $1}}" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"])'
}
capped=$(reply true)
uncapped=$(reply false)
user=$("$engine" "${eflags[@]}" exec "$name" id -u)
echo "container-smoke: image $image, user $user"
echo "  capped:   $capped"
echo "  uncapped: $uncapped"
[ "$user" = 65532 ] || { echo "container-smoke: runs as uid $user, not 65532" >&2; exit 1; }
[ -n "$capped" ] && [ "$capped" != "$uncapped" ] \
    || { echo "container-smoke: capped and uncapped replies do not differ" >&2; exit 1; }
echo "container-smoke: ok"
