#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test acap. Idempotent: apt runs only when a
# package is missing, so a machine that has everything is left untouched.
set -euo pipefail

# Debian packages the build needs: llama-cpp-sys-2 builds llama.cpp with CMake and generates
# its bindings with bindgen (libclang). The C API tests compile C and C++ programs (gcc, g++,
# AddressSanitizer's runtime libasan) and use pkg-config. acap-server's chat page is tested in
# a real browser (headless Chromium).
APT_PACKAGES=(cmake clang libclang-dev gcc g++ pkg-config chromium)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"
fi

# The Rust toolchain cannot be fetched by this script; say exactly what is missing.
for tool in cargo rustc; do
    command -v "$tool" >/dev/null || { echo "setup: '$tool' not found: install Rust (https://rustup.rs)" >&2; exit 1; }
done
for sub in fmt clippy; do
    cargo "$sub" --version >/dev/null 2>&1 \
        || { echo "setup: 'cargo $sub' missing: run 'rustup component add ${sub/fmt/rustfmt}'" >&2; exit 1; }
done
echo "setup: ok ($(rustc --version))" >&2

# The acap-server tests drive the server with the official openai Python client, installed
# (once) into a virtual environment under target/.
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/target/openai-venv"
if ! "$venv/bin/python" -c "import openai" >/dev/null 2>&1; then
    echo "setup: installing the openai Python client into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "openai==$(cat "$root/scripts/openai-version")"
fi
# scripts/check-deploy.py reads the deployment files (deploy/) with PyYAML.
if ! "$venv/bin/python" -c "import yaml" >/dev/null 2>&1; then
    echo "setup: installing PyYAML into $venv" >&2
    "$venv/bin/pip" install -q "pyyaml==6.0.3"
fi
# The chat page's browser test drives the Debian Chromium with Playwright (its own browser
# downloads are not used).
if ! "$venv/bin/python" -c "import playwright" >/dev/null 2>&1; then
    echo "setup: installing Playwright into $venv" >&2
    "$venv/bin/pip" install -q "playwright==$(cat "$root/scripts/playwright-version")"
fi
