#!/usr/bin/env bash
# Adaptive thinking on the first N problems of SVAMP (default 40): always short (direct, 64
# tokens), always think (chain of thought, 512 tokens), and the router between them, on
# confidence alone (min_confidence 0.2 and 0.5) and on confidence plus three agreeing probes.
# One run each; then `ponder report`, the routers' think rates, and a sweep of min_confidence
# computed from the short and think runs alone (greedy: the router's short answer is the short
# run's, its thinking the think run's), which calibrates the threshold for a model without
# running the router. Resumable.
#
#   scripts/router_svamp.sh [MODEL] [PROBLEMS] [N] [OUT_DIR]
set -euo pipefail
model=${1:-qwen2.5-coder-0.5b}
problems=${2:-../shared/datasets/svamp/test.jsonl}
n=${3:-40}
out=${4:-target/scaling/router}
ponder=${PONDER:-target/release/ponder}
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
write router-0.5 "kind = \"router\"
min_confidence = 0.5
think = $think"
write router-probes "kind = \"router\"
probes = 3
min_agreement = 1.0
min_confidence = 0.5
think = $think"
for run in short think router-0.2 router-0.5 router-probes; do
  ponder_run "$out/$run.log" --config "$out/$run.toml" --problems "$problems" --limit "$n" --concurrency 4 \
    --out "$out/$run.jsonl"
done
"$ponder" report "$out"/{short,think,router-0.2,router-0.5,router-probes}.jsonl \
  --labels short,think,router-0.2,router-0.5,router-probes
python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
for run in ("router-0.2", "router-0.5", "router-probes"):
    rows = [json.loads(l) for l in open(os.path.join(out, run + ".jsonl"))]
    rows = {r["id"]: r for r in rows if not r.get("error")}.values()
    routed = [r for r in rows if r.get("details")]
    think = [r for r in routed if r["details"]["route"] == "think"]
    short = [r for r in routed if r["details"]["route"] == "short"]
    acc = lambda rs: f"{sum(bool(r['correct']) for r in rs)}/{len(rs)}" if rs else "-"
    print(f"{run}: thought on {len(think)}/{len(routed)}; right when kept short {acc(short)}, when thinking {acc(think)}")

# The sweep: the confidence of each short answer is recorded by the router runs.
def load(run):
    return {r["id"]: r for r in map(json.loads, open(os.path.join(out, run + ".jsonl"))) if not r.get("error")}
short, think, router = load("short"), load("think"), load("router-0.5")
ids = [i for i in router if i in short and i in think]
tok = lambda r: r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"]
signals = {i: router[i]["details"]["short"] for i in ids}
conf = {i: signals[i].get("confidence") for i in ids}
ok = lambda r: bool(r["correct"])
# As the router decides: think on no short answer or a cut one, on an unknown confidence, or
# below the threshold (min_confidence 0: the signal off).
def thinks_at(i, t):
    s = signals[i]
    if s.get("answer") is None or s.get("cut"):
        return True
    return t > 0 and (conf[i] is None or conf[i] < t)
pos = [conf[i] or 0.0 for i in ids if ok(short[i])]
neg = [conf[i] or 0.0 for i in ids if not ok(short[i])]
if pos and neg:
    auc = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg) / (len(pos) * len(neg))
    print(f"\nconfidence as a predictor of the short answer being right: AUROC {auc:.2f} ({len(pos)} right, {len(neg)} wrong)")
print("\n| min_confidence | think rate | accuracy | tokens / problem |\n|---|---|---|---|")
for t in (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0):
    thinks = [i for i in ids if thinks_at(i, t)]
    right = sum(ok(think[i]) if i in thinks else ok(short[i]) for i in ids)
    tokens = sum(tok(short[i]) + (tok(think[i]) if i in thinks else 0) for i in ids)
    print(f"| {t} | {len(thinks)}/{len(ids)} | {right / len(ids):.1%} | {tokens / len(ids):.0f} |")
PY
