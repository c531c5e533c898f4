#!/usr/bin/env bash
# Builds acap-cli, acap and acap-server with the `cuda` feature on a machine WITHOUT a GPU or a
# CUDA toolkit, to carry to a GPU machine (see docs/GPU.md). Not part of CI: a cold build takes
# about 26 minutes on 2 cores.
#
#   bash scripts/build-cuda.sh            # -> target/cuda/dist/{acap-cli,acap,acap-server}.xz
#
# The CUDA 13.0 compiler, headers and libraries come from NVIDIA's PyPI wheels (installed once
# into target/cuda/venv); the driver library is a link-time stand-in, the real one is used at run
# time. On the GPU machine the binaries need the driver's libcuda.so.1 and libcublas.so.13 /
# libcublasLt.so.13 (CUDA 13), found through LD_LIBRARY_PATH or the rpath set below.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${ACAP_CUDA_OUT:-target/cuda}   # absolute, to build from a git worktree into this one
venv=$out/venv
arch=${CMAKE_CUDA_ARCHITECTURES:-90-real}   # H100/H200 machine code only: the smallest binary

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
root=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia/cu13
if [ ! -x "$root/bin/nvcc" ]; then
    "$venv/bin/pip" install --quiet --no-deps \
        nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
        nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cuda-culibos==13.0.85 \
        nvidia-cublas==13.0.2.14
fi
[ -x "$root/bin/nvcc" ] || { echo "build-cuda.sh: no nvcc under $root" >&2; exit 1; }

# The layout CMake and the sys crate expect: lib64, unversioned .so links, static cuBLAS names.
[ -e "$root/lib64" ] || ln -s lib "$root/lib64"
for l in cudart cublas cublasLt; do
    so=$(find "$root/lib" -maxdepth 1 -name "lib$l.so.1[0-9]*" | sort | head -n 1)
    [ -n "$so" ] || { echo "build-cuda.sh: lib$l.so.* missing in $root/lib" >&2; exit 1; }
    [ -e "$root/lib/lib$l.so" ] || ln -s "$(basename "$so")" "$root/lib/lib$l.so"
done
# The wheels have no static cuBLAS; the sys crate asks for it, so empty archives stand in and
# the shared cuBLAS is linked (RUSTFLAGS below).
for l in cublas_static cublasLt_static; do
    [ -e "$root/lib/lib$l.a" ] || ar rcs "$root/lib/lib$l.a"
done
# A stand-in driver library with the entry points ggml references, so the binaries link here.
mkdir -p "$root/lib/stubs"
if [ ! -e "$root/lib/stubs/libcuda.so" ]; then
    stub=$out/libcuda-stub.c
    : > "$stub"
    for f in cuDeviceGet cuDeviceGetAttribute cuGetErrorString cuMemAddressFree \
        cuMemAddressReserve cuMemCreate cuMemGetAllocationGranularity cuMemMap cuMemRelease \
        cuMemSetAccess cuMemUnmap cuGetProcAddress cuDriverGetVersion cuInit; do
        echo "int $f(void) { return 999; /* CUDA_ERROR_UNKNOWN: never used at run time */ }" >> "$stub"
    done
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root/lib/stubs/libcuda.so" "$stub"
fi

amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
rpath='$ORIGIN:/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib'
export CUDA_LIBRARY_PATH="$root" CUDAToolkit_ROOT="$root" CUDA_PATH="$root"
export CUDACXX="$root/bin/nvcc" CMAKE_CUDA_COMPILER="$root/bin/nvcc"
export CMAKE_CUDA_ARCHITECTURES="$arch"
export LIBRARY_PATH="$root/lib64:$root/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
export PATH="$root/bin:$PATH"
export CFLAGS="$amx" CXXFLAGS="$amx"
export RUSTFLAGS="-C link-arg=-Wl,-rpath,$rpath -C link-arg=-L$root/lib -C link-arg=-L$root/lib/stubs -C link-arg=-lcublas -C link-arg=-lcublasLt -C link-arg=-lcuda"

cargo build --release --locked --target-dir "$out" \
    -p acap-cli -p acap-server --features acap/cuda

mkdir -p "$out/dist"
for b in acap-cli acap acap-server; do
    strip -o "$out/dist/$b" "$out/release/$b"
    xz -9 -T0 -f -k "$out/dist/$b"
done
ls -l "$out/dist"
echo "build-cuda.sh: carry $out/dist/*.xz (unpack with xz -d) to the GPU machine"
