#!/usr/bin/env bash
# Prompt and decode speed, and memory, of GGUF models in process on the CPU, as stored and
# dequantized at load (`dequantize = "f16"` / `"f32"` in [model]). Each setting is a fresh
# `ponder solve` process (the switch is process-wide); settings alternate within each repeat.
#   prompt: a chain-of-draft prompt (three worked examples, ~480 tokens) answered in 1 token;
#   decode: a short prompt answered in 128 tokens (greedy), less the prompt's own time.
# usage: scripts/dequantize_cpu.sh [MODEL...]   (default: smollm2-135m qwen2.5-coder-0.5b)
set -euo pipefail
cd "$(dirname "$0")/.."
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(smollm2-135m qwen2.5-coder-0.5b)
repeats=${REPEATS:-3}
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-target}/release/ponder
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
question="Janet has 16 eggs. She eats 3 and bakes with 4. She sells the rest at \$2 each. How many dollars does she make?"
config() { # model way style max_tokens
  { echo "[model]"; echo "source = \"$1\""; [ "$2" = stored ] || echo "dequantize = \"$2\"";
    echo "[strategy]"; echo "kind = \"direct\""; echo "style = \"$3\""; echo "max_tokens = $4";
    echo "temperature = 0.0"; } > "$work/c.toml"
}
# ms of the one call, prompt tokens, completion tokens, peak RSS in MB
measure() {
  /usr/bin/time -f "%M" -o "$work/rss" "$bin" solve "$1" --config "$work/c.toml" --json \
    > "$work/out.json" 2> "$work/err" || { cat "$work/err" >&2; exit 1; }
  python3 -c 'import json,sys; u=json.load(open(sys.argv[1]))["usage"]; print(u["elapsed_ms"], u["prompt_tokens"], u["completion_tokens"], int(open(sys.argv[2]).read().split()[-1])//1024)' "$work/out.json" "$work/rss"
}
echo "| model | weights | prompt tok/s | decode tok/s | peak RSS MB |"
echo "|---|---|---|---|---|"
for model in "${models[@]}"; do
  declare -A pre dec rss
  for ((r = 0; r < repeats; r++)); do
    for way in stored f16 f32; do
      config "$model" "$way" chain_of_draft 1
      read -r ms p _ mb < <(measure "$question")
      pre[$way]+="$(python3 -c "print($p / ($ms / 1000))") "
      rss[$way]=$mb
      config "$model" "$way" direct 1
      read -r ms1 _ _ _ < <(measure "Write the numbers from 1 to 200, separated by commas.")
      config "$model" "$way" direct 128
      read -r ms _ c _ < <(measure "Write the numbers from 1 to 200, separated by commas.")
      dec[$way]+="$(python3 -c "print(($c - 1) / (($ms - $ms1) / 1000))") "
    done
  done
  for way in stored f16 f32; do
    median() { python3 -c 'import statistics,sys; print(f"{statistics.median(map(float, sys.argv[1:])):.0f}")' $1; }
    echo "| $model | $way | $(median "${pre[$way]}") | $(median "${dec[$way]}") | ${rss[$way]} |"
  done
  unset pre dec rss
done
