"""What a `ponder run` results file records as spent, for the measurement scripts, as `ponder
report --json` reads it (`runs[].spent`): every line (cut attempts' `cut_short` lines and
failures included), under `--allocate triage` the kept stage of each problem without an answer,
and the calls in the spend ledger of attempts that wrote no line; as a resumed run counts it
against `--max-run-tokens`. `PONDER` names the binary (default `target/release/ponder`)."""
import json
import os
import subprocess


def spent(path):
    ponder = os.environ.get("PONDER", "target/release/ponder")
    out = subprocess.run([ponder, "report", "--json", path], check=True, capture_output=True, text=True).stdout
    usage = json.loads(out)["runs"][0]["spent"]
    if usage is None:
        raise SystemExit(f"{path}: ponder report could not read what the run spent")
    return usage["prompt_tokens"] + usage["completion_tokens"]
