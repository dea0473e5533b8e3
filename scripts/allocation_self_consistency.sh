#!/usr/bin/env bash
# Budget allocation across a batch for adaptive self-consistency (best-of-N, majority vote,
# rounds of 2 up to 8 samples, stopping once a round's vote agrees at 75% or cannot be
# overturned) on the first N problems of SVAMP (default 60): one run budget (--max-run-tokens =
# N x PER, default 700 per problem) spent first come, evenly, or by triage (every problem's first
# round first, then more rounds for the least settled votes first). Unlimited, for reference.
# Resumable. RUNS picks the runs (default "unlimited first-come even triage").
#
#   scripts/allocation_self_consistency.sh [MODEL] [PROBLEMS] [N] [PER] [OUT_DIR]
set -euo pipefail
model=${1:-qwen2.5-coder-0.5b}
problems=${2:-../shared/datasets/svamp/test.jsonl}
n=${3:-60}
per=${4:-700}
out=${5:-target/scaling/allocation-sc}
ponder=${PONDER:-target/release/ponder}
budget=$((n * per))
mkdir -p "$out"
. "$(dirname "$0")/model_table.sh"
printf '%s\n\n[strategy]\n%s\n' "$(model_table)" 'kind = "self_consistency"
n = 8
adaptive = { round = 2, agreement = 0.75 }
inner = { kind = "direct", style = "step_by_step", temperature = 0.7, max_tokens = 256 }' \
  > "$out/sc.toml"
run() { # NAME [FLAGS...]
  local name=$1; shift
  ponder_run "$out/$name.log" --config "$out/sc.toml" --problems "$problems" --limit "$n" --concurrency 4 \
    --out "$out/$name.jsonl" --events "$out/$name.events.jsonl" "$@"
}
runs=${RUNS:-unlimited first-come even triage}
for name in $runs; do
  case "$name" in
    unlimited) run unlimited ;;
    *) run "$name" --max-run-tokens "$budget" --allocate "$name" ;;
  esac
done
"$ponder" report $(for r in $runs; do printf '%s/%s.jsonl ' "$out" "$r"; done) \
  --labels "$(echo $runs | tr ' ' ,)"
PONDER="$ponder" PONDER_SCRIPTS="$(dirname "$0")" python3 - "$out" "$n" "$budget" $runs <<'PY'
import json, os, sys
out, n, budget, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
tok = lambda r: r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"]
def load(run):
    rows = {}
    for line in open(os.path.join(out, run + ".jsonl")):
        r = json.loads(line)
        if not r.get("error"):
            rows[r["id"]] = r
    return rows
sys.path.insert(0, os.environ["PONDER_SCRIPTS"])
from results_spend import spent as spent_in
spent = lambda run: spent_in(os.path.join(out, run + ".jsonl"))
print(f"\nEvery run over all {n} problems (a problem without a line counts as wrong); run budget {budget} tokens")
print("| run | right | accuracy | recorded | tokens | samples drawn | went on | later stages | kept first round |\n|---|---|---|---|---|---|---|---|---|")
loaded = {run: load(run) for run in runs}
for run, rows in loaded.items():
    right = sum(bool(r.get("correct")) for r in rows.values())
    samples = sum((r.get("details") or {}).get("samples", 0) for r in rows.values())
    second = sum(1 for r in rows.values() if r.get("triage") and r["triage"]["second_stage"])
    later = sum(max(r["triage"].get("stages", 2) - 1, 0) for r in rows.values() if r.get("triage") and r["triage"]["second_stage"])
    kept = sum(1 for r in rows.values() if r.get("triage") and not r["triage"]["second_stage"])
    print(f"| {run} | {right}/{n} | {right / n:.1%} | {len(rows)} | {spent(run)} | {samples} | {second} | {later} | {kept} |")
print("\nSamples drawn per recorded problem (samples: problems)")
for run, rows in loaded.items():
    hist = {}
    for r in rows.values():
        k = (r.get("details") or {}).get("samples", 0)
        hist[k] = hist.get(k, 0) + 1
    print(f"- {run}: " + ", ".join(f"{k}: {v}" for k, v in sorted(hist.items())))
ok = lambda run, i: bool(loaded[run].get(i, {}).get("correct"))
ids = set().union(*(set(rows) for rows in loaded.values()))
print("\nPaired (every problem; unrecorded = wrong): only the first run right : only the second")
for a, b in (("triage", "first-come"), ("triage", "even"), ("even", "first-come")):
    if a not in loaded or b not in loaded:
        continue
    only_a = sum(ok(a, i) and not ok(b, i) for i in ids)
    only_b = sum(ok(b, i) and not ok(a, i) for i in ids)
    print(f"- {a} vs {b}: {only_a} : {only_b}")
PY
