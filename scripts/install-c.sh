#!/usr/bin/env bash
# Installs acap's C API:
#   PREFIX/include/acap.h
#   PREFIX/lib/libacap.so, PREFIX/lib/libacap.a
#   PREFIX/lib/pkgconfig/acap.pc
#
# usage: scripts/install-c.sh [--prefix DIR] [--from DIR] [--features LIST]
#   --prefix DIR     where to install (default /usr/local)
#   --from DIR       take already built libraries from DIR (e.g. target/debug) instead of
#                    building a release with cargo
#   --features LIST  cargo features for the build (e.g. cuda)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
prefix=/usr/local
from=""
features=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --from) from="$2"; shift 2 ;;
    --features) features="$2"; shift 2 ;;
    *) echo "install-c.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done

if [ -z "$from" ]; then
  (cd "$root" && cargo build --release --locked -p acap-ffi ${features:+--features "$features"})
  from="$root/target/release"
fi
for f in libacap.so libacap.a; do
  [ -f "$from/$f" ] || { echo "install-c.sh: $from/$f not found" >&2; exit 1; }
done

version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)"
# What a static link needs besides libacap.a (rustc --print native-static-libs, Linux).
native_libs="-lstdc++ -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"
# OpenMP (acap's default feature): ggml's objects then call libgomp. Asked of the archive
# itself, so it holds for any feature set.
symbols="$(nm "$from/libacap.a" 2>/dev/null || true)"
if grep -q ' U GOMP_' <<<"$symbols"; then
  native_libs="-lgomp $native_libs"
fi

mkdir -p "$prefix/include" "$prefix/lib/pkgconfig"
install -m 644 "$root/include/acap.h" "$prefix/include/acap.h"
install -m 755 "$from/libacap.so" "$prefix/lib/libacap.so"
install -m 644 "$from/libacap.a" "$prefix/lib/libacap.a"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" -e "s|@NATIVE_LIBS@|$native_libs|" \
  "$root/ffi/acap.pc.in" > "$prefix/lib/pkgconfig/acap.pc"
echo "installed acap $version C API into $prefix"
echo "compile with: cc prog.c \$(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs acap)"
