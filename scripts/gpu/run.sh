#!/usr/bin/env bash
# Runs what scripts/gpu/build.sh packed, on a machine with a CUDA 13 GPU (driver 580 or newer):
# the end-to-end tests on the GPU, and the throughput table on a random-weight Qwen2.5 model
# generated there. No Rust toolchain or registry needed: the CUDA libraries come from the
# machine's Python environment (PyTorch's CUDA 13 wheels) or from LD_LIBRARY_PATH.
#
#   scripts/gpu/run.sh collect        # keep the parts that came (seconds): for a copy of a few
#   scripts/gpu/run.sh check          # unpack the binaries, find the CUDA libraries, show the GPU
#   scripts/gpu/run.sh tests          # the end-to-end tests with PONDER_TEST_DEVICE=cuda:0
#   scripts/gpu/run.sh bench [SIZE]   # the throughput table (random Qwen2.5 weights, SIZE 1.5b)
#   scripts/gpu/run.sh forcing        # budget forcing's rows on SmolLM2-135M (real weights)
#   scripts/gpu/run.sh all            # check, bench, forcing, tests
#
# Reads the parts build.sh wrote from dist/gpu/. They may come a few at a time (a copy with a
# size limit): each run keeps what it finds in dist/gpu-run/parts, and an archive is unpacked
# once all its parts are there (check and bench need ponder-gpu-bin; tests and forcing need
# ponder-gpu-models too). Writes logs and tables to $OUT (default dist/gpu-out). Environment:
# PONDER_GPU_DEVICE (default cuda:0), PONDER_GPU_PYTHON (default python3), PONDER_GPU_E2E_TIMEOUT
# and PONDER_GPU_CLI_TIMEOUT (seconds for each test binary, default 240 and 120; 0 skips it);
# PONDER_BENCH_* pass through to the bench (see benches/throughput.rs).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
dist=$root/dist/gpu
work=$root/dist/gpu-run
parts=$work/parts
out=${OUT:-$root/dist/gpu-out}
device=${PONDER_GPU_DEVICE:-cuda:0}
python=${PONDER_GPU_PYTHON:-python3}   # the Python environment with the CUDA 13 libraries
mkdir -p "$work" "$parts" "$out"
out=$(cd "$out" && pwd)   # the tests run from the repository root

say() { printf '\n== %s\n' "$*" | tee -a "$out/run.log" >&2; }
die() { echo "$*" >&2; exit 1; }

# Whatever this run started is gone when it ends, stopped or not: a test binary or a ponder
# process left running would hold the GPU's memory into the next call. Only command lines that
# start with the binaries' path (as each is started): a caller's that names it (`run.sh forcing;
# ls dist/gpu-run/bin/; run.sh tests`) would be killed with them, and pkill's own too.
work_pattern=$(printf '%s' "$work" | sed 's/[][\.*^$+?(){}|]/\\&/g')   # as a regex
trap 'pkill -f "^$work_pattern/bin/" 2> /dev/null || true' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

sum_of() { sha256sum < "$1" | cut -d' ' -f1; }

collect() {
    # Keep every part that came. Sums from a newer build replace the old ones, and the parts
    # they no longer list go (those of an archive the new build left as it was stay).
    local p
    if [ -f "$dist/SHA256SUMS" ] && ! cmp -s "$dist/SHA256SUMS" "$parts/SHA256SUMS"; then
        cp "$dist/SHA256SUMS" "$parts/SHA256SUMS"
        for p in "$parts"/*.part??; do
            [ -e "$p" ] || continue
            grep -qx "$(sum_of "$p")  $(basename "$p")" "$parts/SHA256SUMS" || rm -f "$p"
        done
    fi
    for p in "$dist"/*.part??; do
        [ -e "$p" ] && cp "$p" "$parts/"
    done
    [ -f "$parts/SHA256SUMS" ] || die "$dist/SHA256SUMS missing: copy dist/gpu/ from build.sh"
}

unxz() {
    if command -v xz > /dev/null; then
        xz -dc "$1"
    else
        "$python" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"
    fi
}

unpack() { # NAME (ponder-gpu-bin or ponder-gpu-models): checks, joins and unpacks it once
    local name=$1 sum part expected=() missing=() damaged=()
    collect
    sum=$(grep -x "[0-9a-f]*  $name.tar.xz" "$parts/SHA256SUMS" || true)
    [ -n "$sum" ] || die "$name is not in $parts/SHA256SUMS"
    if [ -f "$work/.$name" ] && [ "$(cat "$work/.$name")" = "$sum" ]; then
        return
    fi
    while read -r _ part; do expected+=("$part"); done \
        < <(grep -x "[0-9a-f]*  $name.tar.xz.part[0-9][0-9]" "$parts/SHA256SUMS" || true)
    [ ${#expected[@]} -gt 0 ] || die "$parts/SHA256SUMS lists no parts of $name: rebuild with this build.sh"
    for part in "${expected[@]}"; do
        if [ ! -e "$parts/$part" ]; then
            missing+=("$part")
        elif ! grep -qx "$(sum_of "$parts/$part")  $part" "$parts/SHA256SUMS"; then
            damaged+=("$part")
            rm -f "$parts/$part"
        fi
    done
    if [ ${#missing[@]} -gt 0 ] || [ ${#damaged[@]} -gt 0 ]; then
        local told="$name: $((${#expected[@]} - ${#missing[@]} - ${#damaged[@]})) of ${#expected[@]} parts here"
        [ ${#missing[@]} -eq 0 ] || told+="; missing: ${missing[*]}"
        [ ${#damaged[@]} -eq 0 ] || told+="; damaged (removed, copy it again): ${damaged[*]}"
        die "$told"
    fi
    say "joining and unpacking $name (${#expected[@]} parts)"
    (cd "$parts" && cat "${expected[@]}") > "$work/$name.tar.xz"
    (cd "$work" && echo "$sum" | sha256sum -c --quiet -) >&2 || die "$name: the parts do not make the archive"
    rm -f "$work/.$name"
    case $name in
        ponder-gpu-bin) rm -rf "$work/bin" "$work/qwen-tokenizer" ;;
        ponder-gpu-models) rm -rf "$work/models" ;;
    esac
    unxz "$work/$name.tar.xz" | tar -x -C "$work" || die "$name: unpacking failed"
    rm "$work/$name.tar.xz"
    echo "$sum" > "$work/.$name"
}

cuda_libraries() {
    # The folders holding CUDA 13's runtime, cuBLAS and cuRAND in the Python environment (one
    # cu13/lib folder, or one lib folder per package), ahead of whatever LD_LIBRARY_PATH has.
    local dirs
    dirs=$("$python" - <<'EOF' || true
import glob, os
try:
    import nvidia
    roots = list(nvidia.__path__)
except ImportError:
    roots = []
found = []
for root in roots:
    for name in ("libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10", "libnvrtc.so.13"):
        for path in glob.glob(os.path.join(root, "**", name), recursive=True):
            d = os.path.dirname(path)
            if d not in found:
                found.append(d)
print(":".join(found))
EOF
)
    if [ -n "$dirs" ]; then
        export LD_LIBRARY_PATH=${dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    fi
    # The driver's libcuda.so.1, where the loader's cache may not list it (containers mount it).
    if ldd "$work/bin/ponder" | grep -q 'libcuda.so.1 => not found'; then
        local d
        for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib/wsl/lib; do
            [ -e "$d/libcuda.so.1" ] && export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d && break
        done
    fi
    local missing
    missing=$(ldd "$work/bin/ponder" | awk '/not found/ {print $1}')
    if [ -n "$missing" ]; then
        echo "not found: $missing (searched the Python environment's nvidia packages and LD_LIBRARY_PATH)" >&2
        exit 1
    fi
}

check() {
    unpack ponder-gpu-bin
    cuda_libraries
    say "GPU"
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv | tee -a "$out/run.log"
    ldd "$work/bin/ponder" | grep -E 'libcuda|cudart|cublas|curand' | tee -a "$out/run.log"
    "$work/bin/ponder" --version | tee -a "$out/run.log"
}

tests() {
    unpack ponder-gpu-models
    say "end-to-end tests on $device"
    local failed=0 name limit status
    : > "$out/tests.log"
    # gpu_e2e first (the engine, the strategies and the scorers on the GPU), then cli (a ponder
    # process per test), each under a time limit of its own, so that one running long leaves
    # the other its turn. Each one's output is in $OUT/tests-NAME.log.
    for name in gpu_e2e cli; do
        case $name in
            gpu_e2e) limit=${PONDER_GPU_E2E_TIMEOUT:-240} ;;
            cli) limit=${PONDER_GPU_CLI_TIMEOUT:-120} ;;
        esac
        if [ "$limit" = 0 ]; then
            say "$name: skipped (its time limit is 0)"
            continue
        fi
        [ -x "$work/bin/$name" ] || { say "$name: not in ponder-gpu-bin"; failed=1; continue; }
        say "$name (at most ${limit} s)"
        # cli's tests each start ponder processes, and each process's KV pool takes what is
        # left of 90% of the GPU: run them one at a time, or the second finds no memory.
        local args=()
        [ "$name" = cli ] && args=(--test-threads=1)
        # From the repository root: the tests read examples/ relative to it.
        status=0
        (cd "$root" && PONDER_TEST_DEVICE=$device PONDER_TEST_BIN=$work/bin/ponder \
            PONDER_CACHE_DIR=$work/models timeout -k 5 "$limit" "$work/bin/$name" \
            ${args[@]+"${args[@]}"}) > "$out/tests-$name.log" 2>&1 || status=$?
        cat "$out/tests-$name.log" >> "$out/tests.log"
        case $status in
            0) ;;
            124 | 137) say "$name: stopped at its time limit, ${limit} s"; failed=1 ;;
            *) failed=1 ;;
        esac
        grep -E '^test result|^test .* FAILED$|panicked at' "$out/tests-$name.log" | head -20 | tee -a "$out/run.log" || true
    done
    return $failed
}

throughput() { # TABLE: the bench (PONDER_BENCH_* from the caller) into $out/TABLE
    if ! "$work/bin/throughput" 2>> "$out/bench.stderr" | tee "$out/$1"; then
        tail -20 "$out/bench.stderr" >&2
        die "the bench failed (all its output: $out/bench.stderr)"
    fi
}

bench() {
    local size=${1:-1.5b}
    local model=$work/random-qwen2.5-$size
    if [ ! -f "$model/model.safetensors" ]; then
        say "random-weight Qwen2.5-$size in $model"
        "$python" "$root/scripts/gpu/random_model.py" "$model" "$work/qwen-tokenizer" --size "$size" 2>&1 | tee -a "$out/run.log"
    fi
    say "throughput table on $device: $model (random weights)"
    PONDER_BENCH_DEVICE=$device PONDER_BENCH_MODEL=$model \
        PONDER_BENCH_SECTIONS=${PONDER_BENCH_SECTIONS:-decode,best_of_n} \
        throughput "throughput-$size.md"
}

forcing() {
    # A random model never ends its thinking, so it is never made to wait: budget forcing's
    # rows are measured on the real SmolLM2.
    unpack ponder-gpu-models
    say "budget forcing with waits on $device: SmolLM2-135M (real weights)"
    PONDER_BENCH_DEVICE=$device PONDER_BENCH_MODEL=smollm2-135m PONDER_CACHE_DIR=$work/models \
        PONDER_BENCH_SECTIONS=forcing throughput forcing-smollm2.md
}

# One step after another, not `a && b`: bash does not stop at a failure inside a function
# called on the left of `&&`, whatever `set -e` says.
have() { # what has come of each archive, without unpacking
    collect
    local name
    for name in ponder-gpu-bin ponder-gpu-models; do
        local expected=0 here=0 part
        while read -r _ part; do
            expected=$((expected + 1))
            [ -e "$parts/$part" ] && here=$((here + 1))
        done < <(grep -x "[0-9a-f]*  $name.tar.xz.part[0-9][0-9]" "$parts/SHA256SUMS" || true)
        say "$name: $here of $expected parts here"
    done
}

# What ran, for the tables' record: the command and the settings from the environment.
{
    printf '\n== %s: %s %s\n' "$(date -u +%FT%TZ)" "$0" "$*"
    env | grep -E '^(PONDER_|CUDA_VISIBLE_DEVICES=)' | sort || true
} >> "$out/run.log"

case ${1:-all} in
    collect) have ;;
    check) check ;;
    tests) check; tests ;;
    bench) check; bench "${2:-1.5b}" ;;
    forcing) check; forcing ;;
    all) check; bench "${2:-1.5b}"; forcing; tests ;;
    *) echo "usage: $0 collect|check|tests|bench [1.5b|0.5b|tiny]|forcing|all" >&2; exit 2 ;;
esac
