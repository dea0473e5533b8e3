#!/usr/bin/env bash
# Best-of-N (weighted), beam search and DVTS at the same N (4 and 8) on the first N problems of
# GSM8K (default 20) with a given model; LLM judge of steps as the process reward (the policy
# model). Resumable. Prints accuracy, mean tokens, wall time per problem (two solved at a time), the share of prompt
# tokens a prefix cache could reuse (search strategies: prefixes seen earlier in the same search)
# and, over an inference server that reports it (llama-server does), the share its prefix cache
# actually served.
#
#   scripts/search_gsm8k.sh [MODEL] [PROBLEMS] [N] [OUT_DIR]
set -euo pipefail
model=${1:-qwen2.5-coder-0.5b}
problems=${2:-../shared/datasets/gsm8k/test.jsonl}
n=${3:-20}
out=${4:-target/scaling/search}
ponder=${PONDER:-target/release/ponder}
mkdir -p "$out"
. "$(dirname "$0")/model_table.sh"
for N in 4 8; do
  cat > "$out/bon$N.toml" <<TOML
$(model_table)
[strategy]
kind = "best_of_n"
n = $N
select = "weighted"
scorer = { kind = "llm_judge", mode = "steps" }
inner = { kind = "direct", temperature = 0.8, max_tokens = 384 }
TOML
  for kind in beam_search dvts; do
    cat > "$out/$kind$N.toml" <<TOML
$(model_table)
[strategy]
kind = "$kind"
n = $N
beam_width = 2
max_steps = 12
max_step_tokens = 128
select = "weighted"
scorer = { kind = "llm_judge", mode = "steps" }
TOML
  done
  for s in bon beam_search dvts; do
    ponder_run "$out/$s$N.log" --config "$out/$s$N.toml" --problems "$problems" --limit "$n" --concurrency 2 \
      --out "$out/$s$N.jsonl" --trace-dir "$out/traces-$s$N"
  done
done
python3 - "$out" <<'PY'
import json, sys, os, re
out = sys.argv[1]
def number(text):
    # Rough stand-in for ponder's own grader: commas, dollars, \boxed{} and \text{units} go.
    text = re.sub(r"\\text\{[^}]*\}", "", (text or "").replace(",", "").replace("$", "")).strip()
    boxed = re.fullmatch(r"\\boxed\{(.*)\}", text)
    try:
        return float(boxed.group(1) if boxed else text)
    except ValueError:
        return None
print("| strategy | N | accuracy | reference among candidates | mean tokens | reusable prompt share | prefix-cache hits (server) | wall s / problem (2 at a time) |")
print("|---|---|---|---|---|---|---|---|")
for N in (4, 8):
    for s in ("bon", "beam_search", "dvts"):
        rows = [json.loads(l) for l in open(os.path.join(out, f"{s}{N}.jsonl"))]
        rows = [r for r in rows if not r.get("error")]
        acc = sum(1 for r in rows if r["correct"]) / len(rows)
        tok = sum(r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"] for r in rows) / len(rows)
        d = [r["details"] for r in rows if "reusable_prompt_tokens" in r["details"]]
        reuse = (sum(x["reusable_prompt_tokens"] for x in d) / max(1, sum(x["prompt_tokens"] for x in d))) if d else None
        prompt = sum(r["usage"]["prompt_tokens"] for r in rows)
        cached = sum(r["usage"].get("cached_prompt_tokens", 0) for r in rows)
        hits = f"{cached / prompt:.0%}" if cached else "-"
        # Problems where some final candidate's answer equals the reference (numerically).
        covered = sum(1 for r in rows if number(r["reference"]) is not None and any(
            number(c.get("answer")) == number(r["reference"])
            for c in r["details"].get("candidates", [])))
        # Each solve's own wall time (kept in its record, so a resumed run keeps it too).
        secs = sum(r["usage"]["elapsed_ms"] for r in rows) / 1000 / max(1, len(rows))
        print(f"| {s} | {N} | {acc:.1%} | {covered} | {tok:.0f} | {'-' if reuse is None else f'{reuse:.0%}'} | {hits} | {secs:.1f} |")
PY
