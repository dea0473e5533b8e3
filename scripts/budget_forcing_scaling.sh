#!/usr/bin/env bash
# Budget forcing scaling table: accuracy and mean tokens at max_thinking_tokens 0/64/256 and
# max_waits 0/2 on the first N problems of a problem set (default: 30 of MAWPS MultiArith) with
# a given model (default qwen2.5-coder-0.5b). Resumable: rerun to finish an interrupted sweep.
#
#   scripts/budget_forcing_scaling.sh [PROBLEMS] [N] [MODEL] [OUT_DIR]
set -euo pipefail
problems=${1:-../shared/datasets/mawps/multiarith.jsonl}
n=${2:-30}
model=${3:-qwen2.5-coder-0.5b}
out=${4:-target/scaling/budget_forcing}
ponder=${PONDER:-target/release/ponder}
. "$(dirname "$0")/model_table.sh"   # ponder_run
mkdir -p "$out"
for cap in 0 64 256; do
  for waits in 0 2; do
    config="$out/cap${cap}-waits${waits}.toml"
    cat > "$config" <<TOML
[model]
source = "$model"

[strategy]
kind = "budget_forcing"
max_thinking_tokens = $cap
max_waits = $waits
max_answer_tokens = 48
TOML
    ponder_run "$out/cap${cap}-waits${waits}.log" --config "$config" --problems "$problems" --limit "$n" --concurrency 2 \
      --out "$out/cap${cap}-waits${waits}.jsonl"
  done
done
python3 - "$out" <<'PY'
import json, sys, glob, os
out = sys.argv[1]
print("| max_thinking_tokens | max_waits | accuracy | mean tokens (prompt+completion) | mean completion | mean thinking | mean waits | forced end |")
print("|---|---|---|---|---|---|---|---|")
for cap in (0, 64, 256):
    for waits in (0, 2):
        rows = [json.loads(l) for l in open(os.path.join(out, f"cap{cap}-waits{waits}.jsonl"))]
        rows = [r for r in rows if not r.get("error")]
        n = len(rows)
        acc = sum(1 for r in rows if r["correct"]) / n
        tot = sum(r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"] for r in rows) / n
        comp = sum(r["usage"]["completion_tokens"] for r in rows) / n
        think = sum(r["details"]["thinking_tokens"] for r in rows) / n
        w = sum(r["details"]["waits"] for r in rows) / n
        forced = sum(1 for r in rows if r["details"]["forced_end"])
        print(f"| {cap} | {waits} | {acc:.1%} ({sum(1 for r in rows if r['correct'])}/{n}) | {tot:.0f} | {comp:.0f} | {think:.0f} | {w:.2f} | {forced}/{n} |")
PY
# The same runs side by side (accuracy with 95% intervals), and the scaling curve as SVG.
"$ponder" report "$out"/cap0-waits0.jsonl "$out"/cap0-waits2.jsonl "$out"/cap64-waits0.jsonl \
  "$out"/cap64-waits2.jsonl "$out"/cap256-waits0.jsonl "$out"/cap256-waits2.jsonl \
  --plot "$out/scaling.svg"
