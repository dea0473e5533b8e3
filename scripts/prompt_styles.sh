#!/usr/bin/env bash
# Prompt styles on the first N problems of a set (default GSM8K, 40): one greedy `direct` run per
# style -- `direct` (answer at once), `step_by_step` (chain of thought), `chain_of_draft` (Chain
# of Draft, arXiv 2502.18600: drafts of five words at most per step, after three worked examples)
# and `chain_of_draft_zero_shot` (its instruction alone) -- with the same max_tokens for the
# reasoning styles, then `ponder report` and, per style, the completion
# tokens of the problems it answered and how many were cut at max_tokens. Resumable.
#
#   scripts/prompt_styles.sh [MODEL] [PROBLEMS] [N] [OUT_DIR]
set -euo pipefail
model=${1:-qwen2.5-coder-0.5b}
problems=${2:-../shared/datasets/gsm8k/test.jsonl}
n=${3:-40}
out=${4:-target/scaling/prompt_styles}
max_tokens=${MAX_TOKENS:-512}
ponder=${PONDER:-target/release/ponder}
mkdir -p "$out"
. "$(dirname "$0")/model_table.sh"
write() { printf '%s\n\n[strategy]\nkind = "direct"\nstyle = "%s"\nmax_tokens = %s\n' "$(model_table)" "$1" "$2" > "$out/$1.toml"; }
write direct 64
write step_by_step "$max_tokens"
write chain_of_draft "$max_tokens"
write chain_of_draft_zero_shot "$max_tokens"
styles=(direct step_by_step chain_of_draft chain_of_draft_zero_shot)
for style in "${styles[@]}"; do
  ponder_run "$out/$style.log" --config "$out/$style.toml" --problems "$problems" --limit "$n" --concurrency 4 \
    --out "$out/$style.jsonl"
done
files=()
for style in "${styles[@]}"; do files+=("$out/$style.jsonl"); done
"$ponder" report "${files[@]}" --labels "$(IFS=,; echo "${styles[*]}")"
python3 - "$out" "${styles[@]}" <<'PY'
import json, os, statistics, sys
out, styles = sys.argv[1], sys.argv[2:]
print("\n| style | right | completion tokens: median | mean | cut at max_tokens |\n|---|---|---|---|---|")
for s in styles:
    rows = {}
    for line in open(os.path.join(out, s + ".jsonl")):
        r = json.loads(line)
        rows[r["id"]] = r
    rows = [r for r in rows.values() if not r.get("error")]
    if not rows:
        print(f"| {s} | no answered problems | | | |")
        continue
    toks = [r["usage"]["completion_tokens"] for r in rows]
    cut = sum(r.get("stop_reason") == "max_tokens" for r in rows)
    right = sum(bool(r.get("correct")) for r in rows)
    print(f"| {s} | {right}/{len(rows)} | {statistics.median(toks):.0f} | {statistics.mean(toks):.0f} | {cut} |")
PY
