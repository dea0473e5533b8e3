#!/usr/bin/env python3
"""Cross-checks ponder's grading against Hugging Face's math-verify.

ponder grades with its own answer extraction and equivalence (engine/src/answer). math-verify
is an independent, sympy-based grader. Two audits:

`results FILE...` grades the completions of `ponder run` results files again with math-verify
and prints where the two disagree, split into the two halves of grading:

* equivalence: ponder's extracted answer against the reference, both parsed by math-verify
  (does math-verify agree that ponder's answer is, or is not, the reference?);
* extraction: the whole completion parsed by math-verify (its own extraction) against the
  reference (does math-verify find a different final answer?).

Every disagreement is listed with both sides, so a grading bug shows as a line to read. A
results line needs `answer`, `reference`, `correct` and `completion` (what `ponder run`
writes); code problems (no reference) and failed lines are skipped.

`pairs PROBLEMS.jsonl` needs no model: it writes each reference answer of a problem set again
in the forms math-verify's sympy gives it (its LaTeX, its plain text, a decimal, the original
with `\\dfrac`, `\\left`/`\\right` and spaces dropped), which should all match, and as other
values (the next problem's reference; the value plus one, doubled, negated), which should not,
then grades every pair with ponder (examples/grade_answers.rs) and with math-verify and lists
where they disagree.

    python3 -m venv /tmp/mv && /tmp/mv/bin/pip install math-verify
    cargo build --release --example grade_answers
    /tmp/mv/bin/python scripts/grade_audit.py results results.jsonl [more.jsonl ...] [--show 40] \\
        [--grader target/release/examples/grade_answers]
    /tmp/mv/bin/python scripts/grade_audit.py pairs ../shared/datasets/math500/test.jsonl \\
        --grader target/release/examples/grade_answers

math-verify has its own mistakes: a disagreement is a line to read, not a verdict.
"""

import argparse
import json
import re
import signal
import subprocess
import sys
from collections import Counter

try:
    from math_verify import parse, verify
except ImportError:
    sys.exit("needs math-verify: pip install math-verify (see this script's docstring)")


class Timeout(Exception):
    pass


def _alarm(_signum, _frame):
    raise Timeout


def guarded(f, *args, seconds=5):
    """f(*args), or None when it raises or takes over `seconds` (sympy can hang)."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(seconds)
    try:
        return f(*args)
    except Exception:  # math-verify raises on input it cannot read
        return None
    finally:
        signal.alarm(0)


def math(text):
    """A bare answer as math-verify wants it: inside `$...$` unless already delimited."""
    text = text.strip()
    if text.startswith("$") or text.startswith("\\(") or text.startswith("\\["):
        return text
    return f"${text}$"


def shown(parsed):
    return "" if not parsed else str(parsed[-1])


def regrade(grader, rows):
    """ponder's verdicts on (answer, reference) rows from the grader binary, in order."""
    lines = "".join(json.dumps({"answer": a or "", "reference": ref}) + "\n" for a, ref in rows)
    out = subprocess.run([grader], input=lines, capture_output=True, text=True, check=True)
    return [json.loads(l)["correct"] for l in out.stdout.splitlines()]


def audit_results(args):
    lines = []
    for path in args.results:
        for n, line in enumerate(open(path), 1):
            lines.append((path, n, json.loads(line)))
    regraded = None
    if args.grader:
        gradable = [(r.get("answer"), r["reference"]) for _, _, r in lines if r.get("reference")]
        regraded = iter(regrade(args.grader, gradable))
    counts = Counter()
    rows = {"equivalence": [], "extraction": [], "different answers": []}
    for path, n, r in lines:
        ref, completion = r.get("reference"), r.get("completion")
        now = next(regraded) if regraded is not None and ref else None
        if not ref or completion is None or r.get("error"):
            counts["skipped"] += 1
            continue
        counts["graded"] += 1
        ponder = bool(r.get("correct")) if now is None else now
        answer = r.get("answer") or ""
        gold = guarded(parse, math(ref))
        if not gold:
            counts["reference unreadable by math-verify"] += 1
            continue
        said = guarded(parse, math(answer)) if answer else []
        same = bool(said) and bool(guarded(verify, gold, said))
        whole = guarded(parse, completion) or []
        found = bool(whole) and bool(guarded(verify, gold, whole))
        # Right or wrong, do the two extractions find the same answer?
        counts["extractions compared"] += 1
        if said and whole and guarded(verify, whole, said):
            counts["extractions agree"] += 1
        elif len(rows["different answers"]) < args.show:
            rows["different answers"].append((r.get("id"), answer, shown(whole)))
        counts[("ponder", ponder, "mv on ponder's answer", same, "mv on completion", found)] += 1
        where = f"{path}:{n} {r.get('id')}"
        if ponder != same:
            rows["equivalence"].append((where, ponder, ref, answer, shown(gold), shown(said)))
        if same != found:
            rows["extraction"].append((where, same, ref, answer, shown(whole), completion[-160:]))

    compared = counts.pop("extractions compared", 0)
    agreeing = counts.pop("extractions agree", 0)
    graded = counts.pop("graded", 0)
    print(f"{graded} graded lines ({counts.pop('skipped', 0)} skipped)")
    unreadable = counts.pop("reference unreadable by math-verify", 0)
    if unreadable:
        print(f"{unreadable} references math-verify could not parse (left out)")
    print()
    print("| ponder | math-verify, ponder's answer | math-verify, whole completion | lines |")
    print("|---|---|---|---|")
    for key, c in sorted(counts.items(), key=lambda kv: -kv[1]):
        _, p, _, s, _, f = key
        word = lambda b: "right" if b else "wrong"
        print(f"| {word(p)} | {word(s)} | {word(f)} | {c} |")
    agree = sum(c for k, c in counts.items() if k[1] == k[3])
    total = sum(counts.values())
    if total:
        print(f"\nponder and math-verify agree on ponder's answers for {agree}/{total} "
              f"({100 * agree / total:.1f}%)")

    if compared:
        print(f"ponder's answer and math-verify's own extraction are the same answer on "
              f"{agreeing}/{compared} lines, right or wrong")
        for pid, answer, whole in rows["different answers"]:
            print(f"  - {pid}: ponder {answer!r}, math-verify {whole!r}")
    print(f"\n## equivalence: ponder's verdict differs from math-verify's on ponder's answer "
          f"({len(rows['equivalence'])})")
    for where, ponder, ref, answer, gold, said in rows["equivalence"][: args.show]:
        print(f"- {where}: ponder says {'right' if ponder else 'wrong'}; reference {ref!r} "
              f"(mv {gold!r}), answer {answer!r} (mv {said!r})")
    print(f"\n## extraction: math-verify's own extraction gives another verdict "
          f"({len(rows['extraction'])})")
    for where, same, ref, answer, whole, tail in rows["extraction"][: args.show]:
        print(f"- {where}: reference {ref!r}; ponder's answer {answer!r} is "
              f"{'right' if same else 'wrong'} by mv; mv extracted {whole!r}; ends {tail!r}")


def variants(reference, next_reference):
    """(form, should match) pairs for one reference: other spellings and other values."""
    import sympy

    out = []
    same = [
        reference.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac"),
        re.sub(r"\\(left|right)(?![a-zA-Z])", "", reference),
        re.sub(r"\s+", "", reference),
        f"${reference}$",
    ]
    parsed = guarded(parse, math(reference)) or []
    value = parsed[0] if parsed and not isinstance(parsed[0], str) else None
    if value is not None:
        for form in (lambda: sympy.latex(value), lambda: str(value)):
            text = guarded(form)
            if text:
                same.append(text)
        if isinstance(value, sympy.Expr) and value.is_number and not value.is_Integer:
            text = guarded(lambda: str(sympy.N(value, 10)))
            if text:
                same.append(text)
    for text in dict.fromkeys(same):
        if text and text != reference:
            out.append((text, True))
    other = []
    if isinstance(value, sympy.Expr) and value.is_number and value != 0:
        for form in (lambda: value + 1, lambda: 2 * value, lambda: -value):
            changed = guarded(form)
            if changed is not None:
                other.append(guarded(lambda: sympy.latex(changed)))
    if next_reference:
        other.append(next_reference)
    for text in dict.fromkeys(t for t in other if t):
        out.append((text, False))
    return out


def audit_pairs(args):
    rows = [json.loads(l) for l in open(args.problems) if l.strip()]
    refs = [r.get("answer") for r in rows]
    pairs = []
    for i, ref in enumerate(refs):
        if not isinstance(ref, str) or not ref.strip():
            continue
        following = next((r for r in refs[i + 1:] + refs[:i] if isinstance(r, str) and r != ref), None)
        for form, should in variants(ref, following):
            pairs.append({"id": rows[i].get("id", i), "reference": ref, "answer": form, "should": should})
    graded = subprocess.run(
        [args.grader],
        input="".join(json.dumps(p) + "\n" for p in pairs),
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    counts = Counter()
    disagree = []
    for line in graded:
        p = json.loads(line)
        gold = guarded(parse, math(p["reference"]))
        said = guarded(parse, math(p["answer"]))
        mv = bool(gold) and bool(said) and bool(guarded(verify, gold, said))
        counts[(p["should"], p["correct"], mv)] += 1
        if p["correct"] != mv:
            disagree.append(p | {"mv": mv, "mv_gold": shown(gold), "mv_answer": shown(said)})
    print(f"{len(pairs)} pairs from {len(refs)} references in {args.problems}\n")
    print("| pair | ponder | math-verify | pairs |")
    print("|---|---|---|---|")
    word = lambda b: "match" if b else "no match"
    for (should, ponder, mv), c in sorted(counts.items(), key=lambda kv: (not kv[0][0], -kv[1])):
        kind = "same value, another form" if should else "another value"
        print(f"| {kind} | {word(ponder)} | {word(mv)} | {c} |")
    print(f"\n## ponder and math-verify disagree ({len(disagree)})")
    for p in disagree[: args.show]:
        print(f"- {p['id']}: reference {p['reference']!r} vs {p['answer']!r} "
              f"({'same value' if p['should'] else 'another value'}): ponder "
              f"{word(p['correct'])} (keys {p['reference_key']!r} / {p['answer_key']!r}), "
              f"math-verify {word(p['mv'])} ({p['mv_gold']!r} / {p['mv_answer']!r})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="audit", required=True)
    results = sub.add_parser("results", help="regrade results files with math-verify")
    results.add_argument("results", nargs="+")
    results.add_argument("--grader", help="regrade ponder's answers with this grade_answers "
                         "binary (the current grader) instead of the files' `correct`")
    pairs = sub.add_parser("pairs", help="reference answers in other forms, both graders")
    pairs.add_argument("problems")
    pairs.add_argument("--grader", default="target/release/examples/grade_answers")
    for p in (results, pairs):
        p.add_argument("--show", type=int, default=40, help="disagreements listed per kind")
    args = ap.parse_args()
    if args.audit == "results":
        audit_results(args)
    else:
        audit_pairs(args)


if __name__ == "__main__":
    main()
