"""What a `ponder run` results file records as spent, for the measurement scripts: every line
(cut attempts' `cut_short` lines and failures included) and, under `--allocate triage`, the kept
stage of each problem without an answer (in the side file `<results>.triage.jsonl`), as a
resumed run counts it against `--max-run-tokens`."""
import json
import os


def tokens(record):
    return record["usage"]["prompt_tokens"] + record["usage"]["completion_tokens"]


def spent(path):
    lines = [json.loads(l) for l in open(path)]
    last = {r["id"]: r for r in lines}
    total = sum(map(tokens, lines))
    side = path + ".triage.jsonl"
    if os.path.exists(side):
        kept = {s["id"]: s for s in map(json.loads, open(side))}
        total += sum(tokens(s["first"]) for i, s in kept.items() if i not in last or last[i].get("error"))
    return total
