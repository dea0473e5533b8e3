#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` (the OpenAI-compatible server the HTTP backend is tested and
# benchmarked against) and prints its path. The llama.cpp tree comes from the llama-cpp-python
# source distribution on the Python package index (sha256 pinned); the binary is static and is
# cached in $PONDER_LLAMA_DIR (default ~/.cache/ponder/llama/<version>), so later calls return at
# once. Needs python3 with pip, a C++ compiler, and cmake (installed from the package index when
# missing). About 5 minutes on 2 cores.
#
#   scripts/build_llama_server.sh            # prints e.g. /root/.cache/ponder/llama/0.3.36-x86-64-v3/llama-server
set -euo pipefail
. "$(dirname "$0")/llama_cpp_sdist.sh"
version=$llama_cpp_version
# Built for x86-64-v3 (AVX2, FMA, F16C, BMI2), as ponder's Rust is, not for the build machine:
# a native build on a CPU with AMX (Sapphire Rapids) takes llama.cpp's AMX matmul path, which
# segfaults at the first decode where the kernel has not granted AMX state (seen here).
flavour=x86-64-v3
dest=${PONDER_LLAMA_DIR:-$HOME/.cache/ponder/llama/$version-$flavour}
bin=$dest/llama-server
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi
mkdir -p "$dest"
# One build at a time (test binaries may ask at once).
exec 9>"$dest/.lock"
flock 9
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "building llama-server $version in $work (about 5 minutes)" >&2
sdist=$(llama_cpp_sdist "$work")
tar xzf "$sdist" -C "$work"
if command -v cmake >/dev/null 2>&1; then
  cmake=cmake
else
  python3 -m pip install --quiet --target "$work/cmake-py" cmake >&2
  cmake=$(ls "$work"/cmake-py/cmake/data/bin/cmake)
fi
src=$work/llama_cpp_python-$version/vendor/llama.cpp
"$cmake" -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
  -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >&2
"$cmake" --build "$work/build" --target llama-server -j "$(nproc)" >&2
install -m 755 "$work/build/bin/llama-server" "$bin.tmp"
mv "$bin.tmp" "$bin"
echo "$bin"
