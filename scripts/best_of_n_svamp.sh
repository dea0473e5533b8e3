#!/usr/bin/env bash
# Accuracy versus N on the first N problems of SVAMP (default 40): one best-of-8 run whose
# candidates (temperature 0.8, each scored by an LLM judge) give pass@1, majority@k and
# weighted@k for k = 1, 2, 4, 8 by taking the first k candidates of each problem; plus one
# adaptive self-consistency run (n = 8, rounds of 2). Resumable.
#
#   scripts/best_of_n_svamp.sh [MODEL] [PROBLEMS] [N] [OUT_DIR]
set -euo pipefail
model=${1:-qwen2.5-coder-0.5b}
problems=${2:-../shared/datasets/svamp/test.jsonl}
n=${3:-40}
out=${4:-target/scaling/best_of_n}
ponder=${PONDER:-target/release/ponder}
mkdir -p "$out"
. "$(dirname "$0")/model_table.sh"
cat > "$out/bo8.toml" <<TOML
$(model_table)

[strategy]
kind = "best_of_n"
n = 8
select = "weighted"
scorer = { kind = "llm_judge" }
inner = { kind = "direct", style = "step_by_step", temperature = 0.8, max_tokens = 256 }
TOML
cat > "$out/adaptive.toml" <<TOML
$(model_table)

[strategy]
kind = "self_consistency"
n = 8
adaptive = { round = 2 }
inner = { kind = "direct", style = "step_by_step", temperature = 0.8, max_tokens = 256 }
TOML
ponder_run "$out/bo8.log" --config "$out/bo8.toml" --problems "$problems" --limit "$n" --concurrency 2 --out "$out/bo8.jsonl"
ponder_run "$out/adaptive.log" --config "$out/adaptive.toml" --problems "$problems" --limit "$n" --concurrency 2 --out "$out/adaptive.jsonl"
python3 - "$out" <<'PY'
import json, sys, os
from collections import defaultdict
out = sys.argv[1]
def num(a):
    try: return round(float(str(a).replace(",", "").rstrip(".")), 6)
    except (TypeError, ValueError): return None
rows = [json.loads(l) for l in open(os.path.join(out, "bo8.jsonl"))]
rows = [r for r in rows if not r.get("error")]
def vote(cands, weighted):
    w = defaultdict(float); first = {}
    for i, c in enumerate(cands):
        k = num(c["answer"])
        if k is None: continue
        w[k] += (c["score"] or 0.0) if weighted else 1.0
        first.setdefault(k, i)
    if not w: return None
    return max(w, key=lambda k: (w[k], -first[k]))
print(f"{len(rows)} problems; candidates at temperature 0.8, max 256 tokens; answers grouped numerically")
print()
print("| N | pass@1 (mean over samples) | majority@N | weighted@N (LLM judge) | mean sample tokens / problem | mean total tokens / problem (weighted, incl. judge) |")
print("|---|---|---|---|---|---|")
judge_total = sum(r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"] for r in rows) / len(rows)
for k in (1, 2, 4, 8):
    p1 = sum(num(c["answer"]) == num(r["reference"]) for r in rows for c in r["details"]["candidates"][:k]) / (len(rows) * k)
    maj = sum(vote(r["details"]["candidates"][:k], False) == num(r["reference"]) for r in rows) / len(rows)
    wei = sum(vote(r["details"]["candidates"][:k], True) == num(r["reference"]) for r in rows) / len(rows)
    toks = sum(sum(c["tokens"] for c in r["details"]["candidates"][:k]) for r in rows) / len(rows)
    tot = f"{judge_total:.0f}" if k == 8 else ""
    print(f"| {k} | {p1:.1%} | {maj:.1%} | {wei:.1%} | {toks:.0f} | {tot} |")
ad = [json.loads(l) for l in open(os.path.join(out, "adaptive.jsonl"))]
ad = [r for r in ad if not r.get("error")]
acc = sum(1 for r in ad if r["correct"]) / len(ad)
saved = sum(r["details"]["samples_saved"] for r in ad) / len(ad)
toks = sum(sum(c["tokens"] for c in r["details"]["candidates"]) for r in ad) / len(ad)
print(f"| adaptive (≤8, rounds of 2, majority) | | {acc:.1%} | | {toks:.0f} | mean samples saved {saved:.2f} of 8 |")
PY
