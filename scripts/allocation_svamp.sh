#!/usr/bin/env bash
# Budget allocation across a batch on the first N problems of SVAMP (default 100): one run budget
# (--max-run-tokens = N x PER tokens, default 200 per problem) spent by the router first come,
# evenly, or by triage (every short answer first, then thinking for the least sure first); and
# the router with min_confidence = 1 under triage (it would think about everything: the budget
# alone decides how many). Always short and always think, unlimited, for reference; from those
# two, a simulation of triage and of first come at other budgets (greedy decoding: the router's
# short answer is the short run's, its thinking the think run's). Resumable.
#
#   scripts/allocation_svamp.sh [MODEL] [PROBLEMS] [N] [PER] [OUT_DIR]
set -euo pipefail
model=${1:-qwen2.5-coder-0.5b}
problems=${2:-../shared/datasets/svamp/test.jsonl}
n=${3:-100}
per=${4:-200}
out=${5:-target/scaling/allocation}
ponder=${PONDER:-target/release/ponder}
budget=$((n * per))
mkdir -p "$out"
. "$(dirname "$0")/model_table.sh"
think='{ kind = "direct", style = "step_by_step", max_tokens = 512 }'
write() { printf '%s\n\n[strategy]\n%s\n' "$(model_table)" "$2" > "$out/$1.toml"; }
write short 'kind = "direct"
style = "direct"
max_tokens = 64'
write think "kind = \"direct\"
style = \"step_by_step\"
max_tokens = 512"
write router-0.2 "kind = \"router\"
min_confidence = 0.2
think = $think"
write router-all "kind = \"router\"
min_confidence = 1.0
think = $think"
run() { # NAME CONFIG [FLAGS...]
  local name=$1 config=$2; shift 2
  ponder_run "$out/$name.log" --config "$out/$config.toml" --problems "$problems" --limit "$n" --concurrency 4 \
    --out "$out/$name.jsonl" "$@"
}
run short short
run think think
for allocate in first-come even triage; do
  run "router-0.2-$allocate" router-0.2 --max-run-tokens "$budget" --allocate "$allocate"
done
run router-all-triage router-all --max-run-tokens "$budget" --allocate triage
runs="short think router-0.2-first-come router-0.2-even router-0.2-triage router-all-triage"
"$ponder" report $(for r in $runs; do printf '%s/%s.jsonl ' "$out" "$r"; done) \
  --labels "$(echo $runs | tr ' ' ,)"
PONDER="$ponder" PONDER_SCRIPTS="$(dirname "$0")" python3 - "$out" "$n" "$budget" "$problems" $runs <<'PY'
import json, os, sys
out, n, budget, problems, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5:]
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
print("| run | right | accuracy | tokens | thought | short answer kept for want of budget |\n|---|---|---|---|---|---|")
for run in runs:
    rows = load(run)
    right = sum(bool(r.get("correct")) for r in rows.values())
    thought = sum(1 for r in rows.values() if (r.get("details") or {}).get("route") == "think")
    # Triage's note, or (any allocation) the router's route when its budget refused thinking.
    kept = sum(1 for r in rows.values()
               if (r.get("triage") and not r["triage"]["second_stage"])
               or (r.get("details") or {}).get("route") == "short (no budget to think)")
    print(f"| {run} | {right}/{n} ({len(rows)} recorded) | {right / n:.1%} | {spent(run)} | {thought} | {kept} |")

# Simulation from the unlimited short and think runs, with each short answer's confidence from
# the router runs' signals.
short, think = load("short"), load("think")
conf = {}
for run in runs:
    for i, r in load(run).items():
        s = (r.get("details") or {}).get("short")
        if s is not None and i not in conf:
            conf[i] = s.get("confidence") if s.get("answer") is not None and not s.get("cut") else 0.0
# In the problem file's order, as a first-come run takes them.
ids = [json.loads(l)["id"] for l in open(problems) if l.strip()][:n]
ids = [i for i in ids if i in short and i in think and i in conf]
ok = lambda r: bool(r["correct"])
def triage(total):
    spent = sum(tok(short[i]) for i in ids)
    thinks = set()
    for i in sorted(ids, key=lambda i: (conf[i] or 0.0)):
        if spent + tok(think[i]) > total:
            break
        spent += tok(think[i]); thinks.add(i)
    return sum(ok(think[i]) if i in thinks else ok(short[i]) for i in ids), len(thinks), spent
def first_come(total, threshold=0.2):
    spent, right, thinks = 0, 0, 0
    for i in ids:
        cost = tok(short[i]) + (tok(think[i]) if (conf[i] or 0.0) < threshold else 0)
        if spent + cost > total:
            break
        spent += cost
        if (conf[i] or 0.0) < threshold:
            thinks += 1; right += ok(think[i])
        else:
            right += ok(short[i])
    return right, thinks, spent
m = len(ids)
print(f"\nSimulated over {m} problems from the short and think runs (tokens per problem -> right / think count)")
print("| tokens / problem | triage | first come, router 0.2 |\n|---|---|---|")
base = sum(tok(short[i]) for i in ids) / m
for per in (base, 125, 150, 200, 250, 300, 350, 400):
    t = triage(per * m); f = first_come(per * m)
    print(f"| {per:.0f} | {t[0] / m:.1%} ({t[1]} thought) | {f[0] / m:.1%} ({f[1]} thought) |")
PY
