#!/usr/bin/env bash
# A tiny Llama GGUF with random weights and Llama-2's real SentencePiece vocabulary, for tests
# of what differs between tokenizers (SentencePiece decodes a token alone without its leading
# space; byte-level BPE keeps it). The vocabulary is llama.cpp's tokenizer test file in the
# llama-cpp-python source distribution on the Python package index (llama_cpp_sdist.sh, as
# build_llama_server.sh fetches it); the weights are written by tiny_spm_model.py with the `gguf` package.
# Cached in $PONDER_FIXTURE_DIR (default ~/.cache/ponder/fixtures); prints the path. 17 MB.
#
#   scripts/tiny_spm_model.sh
set -euo pipefail
. "$(dirname "$0")/llama_cpp_sdist.sh"
dest=${PONDER_FIXTURE_DIR:-$HOME/.cache/ponder/fixtures}
out=$dest/tiny-llama-spm.gguf
if [ -f "$out" ]; then echo "$out"; exit 0; fi
mkdir -p "$dest"
# One writer at a time (test binaries may ask at once).
exec 9>"$dest/.lock"
flock 9
if [ -f "$out" ]; then echo "$out"; exit 0; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sdist=$(llama_cpp_sdist "$work")
vocab=llama_cpp_python-$llama_cpp_version/vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf
tar xzf "$sdist" -C "$work" "$vocab"
python3 -m pip install --quiet --target "$work/py" gguf==0.19.0 >&2
PYTHONPATH=$work/py python3 "$(dirname "$0")/tiny_spm_model.py" "$work/$vocab" "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
