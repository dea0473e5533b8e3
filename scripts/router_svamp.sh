#!/usr/bin/env bash
# Adaptive thinking on the first N problems of SVAMP (default 40): always short (direct, 64
# tokens), always think (chain of thought, 512 tokens), and the router between them, on
# confidence alone and on confidence plus three agreeing probes. One run each; then
# `ponder report` and the think rate of the routers. Resumable.
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
write router "kind = \"router\"
min_confidence = 0.5
think = $think"
write router-probes "kind = \"router\"
probes = 3
min_agreement = 1.0
min_confidence = 0.5
think = $think"
for run in short think router router-probes; do
  "$ponder" run --config "$out/$run.toml" --problems "$problems" --limit "$n" --concurrency 4 \
    --out "$out/$run.jsonl" > "$out/$run.log" 2>&1
done
"$ponder" report "$out"/{short,think,router,router-probes}.jsonl --labels short,think,router,router-probes
python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
for run in ("router", "router-probes"):
    rows = [json.loads(l) for l in open(os.path.join(out, run + ".jsonl"))]
    rows = {r["id"]: r for r in rows if not r.get("error")}.values()
    routed = [r for r in rows if r.get("details")]
    think = [r for r in routed if r["details"]["route"] == "think"]
    short = [r for r in routed if r["details"]["route"] == "short"]
    acc = lambda rs: f"{sum(bool(r['correct']) for r in rs)}/{len(rs)}" if rs else "-"
    print(f"{run}: thought on {len(think)}/{len(routed)}; right when kept short {acc(short)}, when thinking {acc(think)}")
PY
