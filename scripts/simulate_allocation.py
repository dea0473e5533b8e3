#!/usr/bin/env python3
"""Replays budget allocation for adaptive self-consistency offline, from samples already drawn.

Takes a results file of a plain (non-adaptive) self-consistency run that drew more samples per
problem than N (`details.candidates` in draw order; e.g. n = 12 in one request), and the
problem set with gold answers. For each of many random orders of each problem's samples, it
replays what a run budget of PER tokens a problem buys: rounds of ROUND samples up to N, each
round a request paying the prompt once, stopping once a round's vote agrees at AGREE (the
leader's share of all samples drawn, unanswered ones counting against it, as ponder's
`majority` share does) or cannot be overturned (as `adaptive` does), or once the budget
shortens a round (a sample longer than its share of what is left is cut and has no answer, as
ponder's meter would cut it; under triage a first round the budget shortened is recorded cut
short, with no answer at all, as ponder records it). Policies:
`even` shares (what a problem leaves goes on to the rest), and triage (every first round, then
the next round for the pending vote a need measure ranks first, fewer rounds first among
equals) with several need measures; `least share` is ponder's. Accuracy per policy, averaged
over the orders, with a 95% bootstrap interval over problems for the difference from ponder's.
Approximations: one request at a time (no reservations held by others), and a gold answer is
compared as a number.

  scripts/simulate_allocation.py RESULTS PROBLEMS [--per 700 ...] [--n 8] [--round 2] [--orders 200]

For example, samples from llama-server (see scripts/allocation_self_consistency.sh):
  ponder run --config sc12.toml --problems ../shared/datasets/svamp/test.jsonl --limit 60 \
    --out svamp60.jsonl   # kind = "self_consistency", n = 12, the same inner strategy
  scripts/simulate_allocation.py svamp60.jsonl ../shared/datasets/svamp/test.jsonl --per 500 700 1000
"""
import argparse
import json
import random
from collections import Counter


def numeric(s):
    try:
        return float(str(s).replace(",", "").strip())
    except ValueError:
        return None


def same(a, gold):
    if a is None:
        return False
    x, y = numeric(a), numeric(gold)
    if x is not None and y is not None:
        return abs(x - y) <= 1e-6 * max(1.0, abs(y))
    return str(a).strip() == str(gold).strip()


def load(results, problems):
    gold = {}
    for line in open(problems):
        p = json.loads(line)
        gold[p["id"]] = p["answer"]
    out = []
    for line in open(results):
        r = json.loads(line)
        if r.get("error"):
            continue
        cands = (r.get("details") or {}).get("candidates") or []
        if not cands:
            continue
        # One request drew them all: its prompt was counted once, as a round's is.
        prompt = r["usage"]["prompt_tokens"]
        samples = [(c.get("answer"), c["tokens"]) for c in cands]
        out.append((r["id"], gold[r["id"]], (prompt, samples)))
    return out


class Vote:
    """One problem's vote, drawn a round at a time from its samples in a given order."""

    def __init__(self, drawn, args):
        self.prompt, self.samples = drawn
        self.args = args
        self.drawn = 0
        self.spent = 0
        self.stages = 0
        self.stopped = False  # by the budget, as ponder stops a vote whose round it shortened
        self.got = []

    def answers(self):
        return self.got

    def counts(self):
        return Counter(a for a in self.got if a is not None)

    def round_cost(self):
        """What the next round costs if nothing shortens it."""
        k = min(self.args.round, self.args.n - self.drawn)
        return self.prompt + sum(t for _, t in self.samples[self.drawn : self.drawn + k])

    def draw_round(self, left=None):
        """Draws the next round within `left` tokens, as ponder's meter would: the prompt once,
        each sample's max_tokens cut to an even part of what is left. A sample longer than its
        part is cut (no answer), and the budget stops the vote. Returns the tokens spent."""
        k = min(self.args.round, self.args.n - self.drawn)
        fit = self.args.max_tokens
        if left is not None:
            part = (left - self.prompt) // k if left >= self.prompt else 0
            if part <= 0:
                self.stopped = True
                return 0
            fit = min(fit, part)
        cost = self.prompt
        for answer, tokens in self.samples[self.drawn : self.drawn + k]:
            cost += min(tokens, fit)
            self.got.append(answer if tokens <= fit else None)
        if fit < self.args.max_tokens:
            self.stopped = True
        self.drawn += k
        self.spent += cost
        self.stages += 1
        return cost

    def decided(self):
        c = sorted(self.counts().values(), reverse=True)
        leader = c[0] if c else 0
        second = c[1] if len(c) > 1 else 0
        left = self.args.n - self.drawn
        if leader > second + left:
            return True
        # Of all samples drawn, as ponder's vote share for `majority` (best_of_n's `vote_share`):
        # an unanswered sample counts against the leader.
        return (
            leader > 0
            and leader / self.drawn >= self.args.agree
            and self.drawn >= self.args.round
        )

    def done(self):
        return self.stopped or self.drawn >= self.args.n or self.decided()

    def share(self):
        c = self.counts()
        return max(c.values()) / self.drawn if c else 0.0

    def answer(self):
        # Majority; ties to the answer reached first.
        c = self.counts()
        if not c:
            return None
        best = max(c.values())
        for a in self.answers():
            if a is not None and c[a] == best:
                return a


def flip_probability(vote, rng, sims=64, alpha=1.0):
    """Chance that drawing to N moves the lead off today's leader, under a Dirichlet posterior
    over the answers seen plus one bucket for answers not yet seen (and none)."""
    counts = vote.counts()
    leader = vote.answer()
    keys = list(counts)
    base = [counts[k] + alpha for k in keys] + [alpha + sum(1 for a in vote.answers() if a is None)]
    left = vote.args.n - vote.drawn
    flips = 0
    for _ in range(sims):
        g = [rng.gammavariate(b, 1.0) for b in base]
        z = sum(g)
        p = [x / z for x in g]
        final = Counter(counts)
        for _ in range(left):
            i = rng.choices(range(len(p)), p)[0]
            if i < len(keys):
                final[keys[i]] += 1
            else:
                final[("new", rng.random())] += 1  # a fresh answer: never adds up
        best = max(final.values())
        if final[leader] < best:
            flips += 1
    return flips / sims


def expected_gain(vote, rng, sims=64, alpha=1.0):
    """What one more round is worth: the expected rise in the chance that the vote's answer is
    right, under a Dirichlet posterior over the answers seen plus one bucket for the rest,
    taking the answer the model gives most as right with the chance it is given (so a flat vote,
    whose best answer is often wrong, is worth less than a close two-way split)."""
    counts = vote.counts()
    keys = list(counts)
    answers = vote.answers()
    base = [counts[k] + alpha for k in keys] + [alpha + sum(1 for a in answers if a is None)]
    k = min(vote.args.round, vote.args.n - vote.drawn)
    gain = 0.0
    for _ in range(sims):
        g = [rng.gammavariate(b, 1.0) for b in base]
        z = sum(g)
        p = [x / z for x in g]
        mode = max(range(len(p)), key=lambda i: p[i])
        if mode == len(keys):
            continue  # the model's favourite is not among the answers seen: worth nothing here
        right = keys[mode]
        now = vote.answer() == right
        more = list(answers)
        for _ in range(k):
            i = rng.choices(range(len(p)), p)[0]
            more.append(keys[i] if i < len(keys) else ("new", rng.random()))
        c = Counter(a for a in more if a is not None)
        best = max(c.values())
        later = next(a for a in more if a is not None and c[a] == best) == right
        gain += p[mode] * (later - now)
    return gain / sims


def policies(rng):
    c2 = lambda v: sorted(v.counts().values(), reverse=True) + [0, 0]
    return {
        "least share": lambda v: v.share(),
        "most share": lambda v: -v.share(),
        "random": lambda v: rng.random(),
        # A split between two answers: the top two hold most of the votes and are close.
        "two-way split": lambda v: -((c2(v)[0] + c2(v)[1]) / v.drawn) * (c2(v)[1] / max(1, c2(v)[0])),
        "flip chance": lambda v: -flip_probability(v, rng),
        "expected gain": lambda v: -expected_gain(v, rng),
        "answered share": lambda v: -(sum(v.counts().values()) / v.drawn) * (c2(v)[1] / max(1, c2(v)[0])),
    }


def triage(problems, budget, key, args):
    votes = [Vote(s, args) for _, _, s in problems]
    pool = budget
    for v in votes:
        if pool > 0:
            pool -= v.draw_round(pool)
            if v.stopped:
                # A first round the run budget shortened: ponder records the problem cut short,
                # with no answer (engine/src/runner/triage.rs), not the samples that fitted.
                v.got = [None] * len(v.got)
    while True:
        pending = [i for i, v in enumerate(votes) if v.drawn and not v.done()]
        if not pending or pool <= 0:
            break
        i = min(pending, key=lambda i: (key(votes[i]), votes[i].stages))
        pool -= votes[i].draw_round(pool)
    return votes


def even(problems, budget, args):
    votes = [Vote(s, args) for _, _, s in problems]
    pool = budget
    for k, v in enumerate(votes):
        share = pool // (len(votes) - k)
        while not v.done():
            v.draw_round(share - v.spent)
        pool -= v.spent
    return votes


def unlimited(problems, args):
    votes = [Vote(s, args) for _, _, s in problems]
    for v in votes:
        while not v.done():
            v.draw_round()
    return votes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("problems")
    ap.add_argument("--per", type=float, nargs="+", default=[700])
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--round", type=int, default=2)
    ap.add_argument("--agree", type=float, default=0.75)
    ap.add_argument("--max-tokens", type=int, default=256, help="each sample's max_tokens")
    ap.add_argument("--orders", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    data = load(args.results, args.problems)
    data = [d for d in data if len(d[2][1]) >= args.n]
    rng = random.Random(args.seed)
    print(f"{len(data)} problems, {args.orders} orders of each one's samples; n={args.n}, round={args.round}, agree={args.agree}")
    base = "triage: least share"
    for per in args.per:
        # Per policy, per problem: how often (over the orders) its answer was right.
        hits, spent = {}, Counter()
        for _ in range(args.orders):
            order = [(i, g, (prompt, rng.sample(s, len(s)))) for i, g, (prompt, s) in data]
            budget = per * len(order)
            runs = {"unlimited": unlimited(order, args), "even": even(order, budget, args)}
            for name, key in policies(rng).items():
                runs["triage: " + name] = triage(order, budget, key, args)
            for name, votes in runs.items():
                row = hits.setdefault(name, [0] * len(data))
                for j, (v, (_, g, _)) in enumerate(zip(votes, order)):
                    row[j] += same(v.answer(), g)
                spent[name] += sum(v.spent for v in votes)
        print(f"\nrun budget {per:g} tokens a problem")
        print(f"| policy | accuracy | vs {base}, 95% interval over problems | tokens a problem |")
        print("|---|---|---|---|")
        for name, row in hits.items():
            acc = sum(row) / (args.orders * len(data))
            # The problems are the sample that varies: resample them, orders averaged within.
            diffs = [(a - b) / args.orders for a, b in zip(row, hits[base])]
            boot = sorted(
                sum(rng.choice(diffs) for _ in diffs) / len(diffs) for _ in range(2000)
            )
            mean = sum(diffs) / len(diffs)
            interval = f"{mean:+.1%} [{boot[50]:+.1%}, {boot[1949]:+.1%}]"
            print(f"| {name} | {acc:.1%} | {interval} | {spent[name] / (args.orders * len(data)):.0f} |")


if __name__ == "__main__":
    main()
