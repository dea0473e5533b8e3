#!/usr/bin/env bash
# The S* table on the first N problems of HumanEval (default 40): greedy pass@1; N=4 samples
# filtered by the public tests (the docstring examples); S* with debugging (2 rounds); S* with
# debugging and a knockout on synthesised inputs; S* with debugging and adaptive input synthesis
# (clusters, round robin). Graded by the hidden tests in the sandbox. Resumable:
# rerun to finish an interrupted run. Prints pass@1, mean tokens and mean sandbox time per problem.
#
#   scripts/s_star_humaneval.sh [MODEL] [PROBLEMS] [N] [OUT_DIR]
#
# SETTINGS picks which settings run (default: all five, "greedy filter4 debug4 knockout4
# s_star4"); the table shows every setting with a results file in OUT_DIR.
# MODEL is a built-in name or GGUF path (mistral.rs in process), or an http:// URL of an
# OpenAI-compatible server (e.g. llama-server, see scripts/build_llama_server.sh).
set -euo pipefail
model=${1:-qwen2.5-coder-0.5b}
problems=${2:-../shared/datasets/humaneval/HumanEval.jsonl}
n=${3:-40}
out=${4:-target/scaling/s_star}
ponder=${PONDER:-target/release/ponder}
concurrency=${CONCURRENCY:-4}
mkdir -p "$out"
. "$(dirname "$0")/model_table.sh"
{ model_table; cat <<'TOML'
[strategy]
kind = "direct"
temperature = 0.0
max_tokens = 768
TOML
} > "$out/greedy.toml"
{ model_table; cat <<'TOML'
[strategy]
kind = "s_star"
n = 4
debug_rounds = 0
selection = "public_tests"
TOML
} > "$out/filter4.toml"
{ model_table; cat <<'TOML'
[strategy]
kind = "s_star"
n = 4
debug_rounds = 2
selection = "public_tests"
TOML
} > "$out/debug4.toml"
{ model_table; cat <<'TOML'
[strategy]
kind = "s_star"
n = 4
debug_rounds = 2
selection = "knockout"
TOML
} > "$out/knockout4.toml"
{ model_table; cat <<'TOML'
[strategy]
kind = "s_star"
n = 4
debug_rounds = 2
selection = "adaptive_input_synthesis"
TOML
} > "$out/s_star4.toml"
for run in ${SETTINGS:-greedy filter4 debug4 knockout4 s_star4}; do
  if [ ! -f "$out/$run.toml" ]; then
    echo "no setting named $run (SETTINGS takes greedy, filter4, debug4, knockout4, s_star4)" >&2
    exit 2
  fi
  ponder_run "$out/$run.log" --config "$out/$run.toml" --problems "$problems" --limit "$n" \
    --concurrency "$concurrency" --out "$out/$run.jsonl"
done
python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
names = [("greedy", "greedy (direct, temperature 0)"),
         ("filter4", "N=4, filtered by public tests"),
         ("debug4", "S*: N=4 + debugging (2 rounds)"),
         ("knockout4", "S*: N=4 + debugging + knockout on synthesised inputs"),
         ("s_star4", "S*: N=4 + debugging + adaptive input synthesis")]
print("| setting | problems | pass@1 | mean tokens / problem (prompt + completion) | mean completion tokens | mean sandbox s / problem | debugged samples | comparisons |")
print("|---|---|---|---|---|---|---|---|")
for key, label in names:
    path = os.path.join(out, key + ".jsonl")
    if not os.path.exists(path):
        continue
    rows = [json.loads(l) for l in open(path)]
    rows = [r for r in rows if not r.get("error")]
    k = len(rows)
    passed = sum(1 for r in rows if r.get("correct"))
    tokens = sum(r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"] for r in rows) / k
    completion = sum(r["usage"]["completion_tokens"] for r in rows) / k
    sandbox = sum((r.get("details") or {}).get("sandbox_ms", 0) for r in rows) / k / 1000
    debugged = sum(sum(1 for s in (r.get("details") or {}).get("samples", []) if len(s["rounds"]) > 1) for r in rows)
    comparisons = sum(len((r.get("details") or {}).get("comparisons", [])) for r in rows)
    print(f"| {label} | {k} | {passed}/{k} = {100*passed/k:.1f}% | {tokens:.0f} | {completion:.0f} | {sandbox:.2f} | {debugged} | {comparisons} |")
PY
