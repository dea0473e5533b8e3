#!/usr/bin/env bash
# Builds ponder with the `cuda` feature on a machine without a GPU (or with one) and packs what a
# CUDA 13 machine needs to run the GPU tests and the throughput table into dist/gpu/, as two
# archives split into parts of PONDER_GPU_PART_MIB (default 20 MiB), so that a copy with a size
# limit can take them a few at a time: ponder-gpu-bin (the CUDA binaries and the Qwen2.5
# tokenizer: all the throughput table needs) and ponder-gpu-models (SmolLM2-135M, for the
# end-to-end tests and the budget forcing rows). Then copy dist/gpu/ (at once or in pieces) and
# scripts/gpu/ to the GPU machine and run scripts/gpu/run.sh there (see README, "On a GPU").
#
#   scripts/gpu/build.sh              # CUDA_COMPUTE_CAP=90 (H100/H200); set it for other GPUs
#
# Needs: a Rust toolchain, gcc, python3 with pip and venv, xz, and 12 GiB of memory for xz's
# 1 GiB window (the binaries share most of their bytes, the CUDA kernels, and the window finds
# them). Fetches CUDA 13.0's build tools from the Python package index (13.0 exactly: PTX from
# a newer nvcc does not load on the 580 driver that CUDA 13.0 machines carry).
#
# Environment: PONDER_CUDA_VENV (default ~/.cache/ponder/cuda-venv), PONDER_CUDA_TARGET (the
# cargo target directory, default ~/.cache/ponder/target-cuda, kept apart from the CPU build),
# CUDA_COMPUTE_CAP (default 90).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/ponder
venv=${PONDER_CUDA_VENV:-$cache/cuda-venv}
target=${PONDER_CUDA_TARGET:-$cache/target-cuda}
links=$cache/cuda-link
dist=$root/dist/gpu
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}

# The end-to-end tests that run on the GPU, every one on SmolLM2-135M, which travels with them:
# gpu_e2e (mistralrs_backend, budget_forcing, best_of_n, beam_search and router in one binary)
# and cli. (s_star needs the 491 MB Qwen model; openai_backend tests llama-server, a CPU program.)
gpu_tests=(gpu_e2e cli)

say() { printf '\n== %s\n' "$*" >&2; }

say "CUDA 13.0 build tools in $venv"
if [ ! -x "$venv/bin/nvcc-ok" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet \
        "nvidia-cuda-nvcc==13.0.88" "nvidia-cuda-runtime==13.0.96" "nvidia-cublas==13.0.2.14" \
        "nvidia-curand" "nvidia-cuda-cccl==13.0.*" "nvidia-cuda-nvrtc==13.0.88" \
        "nvidia-nvvm==13.0.*" "nvidia-cuda-crt==13.0.*" \
        "gguf" "tokenizers"
    touch "$venv/bin/nvcc-ok"
fi
cuda=$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')
[ -x "$cuda/bin/nvcc" ] || { echo "no nvcc under $cuda" >&2; exit 1; }
"$cuda/bin/nvcc" --version | tail -2 >&2

say "link-time libraries in $links"
# cudarc links the CUDA libraries by their versionless names, which the wheels do not ship, and
# links libcuda (the driver), which no wheel ships: a stub with the driver's symbols and soname
# is enough to link; the GPU machine's real driver is loaded at run time.
mkdir -p "$links"
for lib in cudart cublas cublasLt nvrtc curand; do
    found=$(ls "$cuda/lib/lib$lib.so."* 2>/dev/null | sort | head -1)
    [ -n "$found" ] || { echo "lib$lib.so.* missing under $cuda/lib" >&2; exit 1; }
    ln -sf "$found" "$links/lib$lib.so"
done
# (On a fresh machine the crate is not downloaded yet: `ls` finds nothing, which pipefail would
# turn into an exit.)
cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$cudarc" ]; then
    (cd "$root" && cargo fetch --quiet)
    cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* | sort -V | tail -1)
fi
grep -o 'pub unsafe fn cu[A-Za-z0-9_]*' "$cudarc/src/driver/sys/mod.rs" | awk '{print "void " $4 "(void) {}"}' \
    | sort -u > "$links/cuda_stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$links/libcuda.so" "$links/cuda_stub.c"
echo "stub libcuda.so: $(wc -l < "$links/cuda_stub.c") symbols from $(basename "$cudarc")" >&2

say "cargo build (features cuda, compute capability $CUDA_COMPUTE_CAP) into $target"
export PATH=$cuda/bin:$PATH CUDA_ROOT=$cuda CUDA_PATH=$cuda CUDA_HOME=$cuda
export LIBRARY_PATH=$links${LIBRARY_PATH:+:$LIBRARY_PATH}
export CARGO_TARGET_DIR=$target
export RUSTFLAGS="-C target-cpu=x86-64-v3 -L $links"
tests=()
for t in "${gpu_tests[@]}"; do tests+=(--test "$t"); done
mkdir -p "$target"
cd "$root"
cargo test --release --features cuda --no-run "${tests[@]}" --bench throughput \
    --message-format=json-render-diagnostics > "$target/gpu-build.json"

say "packing into $dist"
rm -rf "$dist" && mkdir -p "$dist"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin"
cp "$target/release/ponder" "$stage/bin/ponder"
python3 - "$target/gpu-build.json" "$stage/bin" "${gpu_tests[@]}" <<'EOF'
import json, shutil, sys
build, out, wanted = sys.argv[1], sys.argv[2], set(sys.argv[3:]) | {"throughput"}
for line in open(build):
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
        name = msg["target"]["name"]
        if name in wanted and msg["target"]["kind"][0] in ("test", "bench"):
            shutil.copy(msg["executable"], f"{out}/{name}")
            wanted.discard(name)
if wanted:
    sys.exit(f"no executable built for: {sorted(wanted)}")
EOF
strip "$stage"/bin/*
ldd "$stage/bin/ponder" | grep -E 'cuda|cublas|curand|nvrtc' >&2 || true

# The Qwen2.5 tokenizer (for random-weight models of Qwen2.5's architecture), read out of the
# built-in Qwen2.5-Coder GGUF, which carries Qwen2.5's vocabulary and chat template.
# (The cuda binary runs here too for `models fetch`, on the stub driver, which it never calls.)
ln -sf libcuda.so "$links/libcuda.so.1"
fetch() {
    LD_LIBRARY_PATH=$links:$cuda/lib "$target/release/ponder" models fetch "$1" | sed -n 's/^[^:]*: //p'
}
qwen=$(fetch qwen2.5-coder-0.5b)
"$venv/bin/python" "$root/scripts/gpu/qwen_tokenizer.py" "$qwen" "$stage/qwen-tokenizer"

mkdir -p "$stage/models"
cp "$(fetch smollm2-135m)" "$stage/models/"
# Each archive split into parts small enough to carry; run.sh joins and checks them.
part_mib=${PONDER_GPU_PART_MIB:-20}
pack() { # NAME XZ-FILTERS PATH...: $stage/PATH... into dist/gpu/NAME.tar.xz.partNN
    local name=$1 filters=$2
    shift 2
    tar -C "$stage" -cf - "$@" | xz -T1 $filters > "$dist/$name.tar.xz"
    (cd "$dist" && sha256sum "$name.tar.xz" >> SHA256SUMS)
    split -b "${part_mib}M" -d -a 2 "$dist/$name.tar.xz" "$dist/$name.tar.xz.part"
    rm "$dist/$name.tar.xz"
    # Each part's sum too: run.sh names the parts missing or damaged.
    (cd "$dist" && sha256sum "$name".tar.xz.part?? >> SHA256SUMS)
}
# Single-threaded with a 1 GiB window: the binaries are mostly the same CUDA kernels, found
# again only within the window (threads would each see a block of their own). x86 filter for
# the machine code.
pack ponder-gpu-bin "--x86 --lzma2=preset=9,dict=1GiB" bin qwen-tokenizer
pack ponder-gpu-models "-6" models
ls -l "$dist" >&2
echo "$dist"
