#!/usr/bin/env bash
# A tiny Qwen2 model directory in the safetensors layout (config.json, generation_config.json,
# model.safetensors in f32 with random weights: 2 layers, width 64; Qwen2.5's real tokenizer
# read out of the built-in Qwen2.5-Coder GGUF), for end-to-end tests of the in-process backend's
# safetensors path on the CPU: what the GPU runs use, with real weights too big to travel.
# Written by scripts/gpu/qwen_tokenizer.py and scripts/gpu/random_model.py (numpy) with the
# `gguf` and `tokenizers` packages from the Python package index. Cached in $PONDER_FIXTURE_DIR
# (default ~/.cache/ponder/fixtures); prints the directory. 40 MB.
#
#   scripts/tiny_qwen_dir.sh QWEN_GGUF
set -euo pipefail
gguf=${1:?usage: tiny_qwen_dir.sh QWEN2.5_GGUF}
scripts=$(cd "$(dirname "$0")" && pwd)
dest=${PONDER_FIXTURE_DIR:-$HOME/.cache/ponder/fixtures}
out=$dest/tiny-qwen
if [ -f "$out/model.safetensors" ]; then echo "$out"; exit 0; fi
mkdir -p "$dest"
# One writer at a time (test binaries may ask at once).
exec 9>"$dest/.lock-qwen"
flock 9
if [ -f "$out/model.safetensors" ]; then echo "$out"; exit 0; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip install --quiet --target "$work/py" gguf==0.19.0 tokenizers==0.21.4 >&2
export PYTHONPATH=$work/py
python3 "$scripts/gpu/qwen_tokenizer.py" "$gguf" "$work/tokenizer" >&2
rm -rf "$out.tmp"
python3 "$scripts/gpu/random_model.py" "$out.tmp" "$work/tokenizer" --size tiny --f32 >&2
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
