//! The run's budget accounting: what the files of a run record as spent ([`recorded_spend`]),
//! what is left of the budget, whether it has run out, and the even shares of [`Pool`].

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::{ledger, triage, Allocation, ResultLine};
use crate::budget::Budget;
use crate::error::Result;
use crate::metered::Meter;
use crate::usage::Usage;

/// The run's budget not yet handed out, under [`Allocation::Even`].
#[derive(Debug)]
pub(super) struct Pool {
    tokens: Option<u64>,
    completion_tokens: Option<u64>,
    calls: Option<u64>,
    unstarted: u64,
}

impl Pool {
    pub(super) fn new(budget: Budget, problems: usize) -> Self {
        Self {
            tokens: budget.max_tokens,
            completion_tokens: budget.max_completion_tokens,
            calls: budget.max_calls,
            unstarted: problems as u64,
        }
    }

    /// The share of the next problem to start (wall time is not shared).
    pub(super) fn take(&mut self) -> Budget {
        let n = self.unstarted.max(1);
        self.unstarted = self.unstarted.saturating_sub(1);
        let share = |left: &mut Option<u64>| {
            left.as_mut().map(|l| {
                let s = *l / n;
                *l -= s;
                s
            })
        };
        Budget {
            max_tokens: share(&mut self.tokens),
            max_completion_tokens: share(&mut self.completion_tokens),
            max_calls: share(&mut self.calls),
            max_wall_ms: None,
        }
    }

    /// Returns what a finished problem left of its `share`, or takes what it spent beyond it
    /// (a backend's own token count can exceed the estimate a call was reserved with).
    pub(super) fn give_back(&mut self, share: &Budget, used: &Usage) {
        let back = |left: &mut Option<u64>, given: Option<u64>, spent: u64| {
            if let (Some(l), Some(g)) = (left.as_mut(), given) {
                *l = if spent <= g {
                    *l + (g - spent)
                } else {
                    l.saturating_sub(spent - g)
                };
            }
        };
        back(&mut self.tokens, share.max_tokens, used.total_tokens());
        back(
            &mut self.completion_tokens,
            share.max_completion_tokens,
            used.completion_tokens,
        );
        back(&mut self.calls, share.max_calls, used.calls);
    }
}

/// `budget` less what earlier invocations of the run recorded: tokens and calls (not wall time).
pub(super) fn less_spent(mut budget: Budget, spent: &Usage) -> Budget {
    let less = |max: Option<u64>, used: u64| max.map(|m| m.saturating_sub(used));
    budget.max_tokens = less(budget.max_tokens, spent.total_tokens());
    budget.max_completion_tokens = less(budget.max_completion_tokens, spent.completion_tokens);
    budget.max_calls = less(budget.max_calls, spent.calls);
    budget
}

/// Whether the run's budget is spent: what calls in flight have reserved does not count (they
/// give back what they do not use, and a call that needs it waits for them).
pub(super) fn run_exhausted(meter: &Meter) -> bool {
    spent_out(meter, meter.unspent_completion_tokens()).is_some()
}

/// What the run's budget has run out of, if anything (reserved tokens count as spent).
pub(super) fn exhausted(meter: &Meter) -> Option<crate::budget::Resource> {
    spent_out(meter, meter.remaining_completion_tokens())
}

/// What the budget has run out of, with `left` completion tokens (as the caller counts them).
fn spent_out(meter: &Meter, left: Option<u64>) -> Option<crate::budget::Resource> {
    use crate::budget::Resource;
    let budget = meter.budget();
    let usage = meter.usage();
    if budget.max_calls.is_some_and(|m| usage.calls >= m) {
        Some(Resource::Calls)
    } else if budget.max_wall_ms.is_some_and(|m| usage.elapsed_ms >= m) {
        Some(Resource::WallTime)
    } else if left == Some(0) {
        let by_total = budget.max_completion_tokens.is_none()
            || budget.max_tokens.is_some_and(|m| usage.total_tokens() >= m);
        Some(if by_total {
            Resource::Tokens
        } else {
            Resource::CompletionTokens
        })
    } else {
        None
    }
}

/// What a run on `out` whose results file holds `lines` records as spent, as a resumed run
/// counts it against its budget (see
/// [`Runner::with_run_budget`](super::Runner::with_run_budget)): every results line, whatever
/// its problem (failed and cut attempts included); under [`Allocation::Triage`], the last kept
/// stage of each problem not yet answered; and the calls in the spend ledger of every attempt
/// that wrote no line (killed or failed in flight). The side files are read, not changed.
///
/// The budget is the whole file's, over every invocation that wrote it (a `--limit 50` run
/// after a `--limit 100` one counts all 100).
pub fn recorded_spend(out: &Path, lines: &[ResultLine], allocation: Allocation) -> Result<Usage> {
    let (kept, side_attempts) = match allocation {
        Allocation::Triage => triage::peek(out)?,
        _ => (Vec::new(), HashSet::new()),
    };
    let (calls, _) = ledger::scan(out)?;
    Ok(spent_on(lines, &kept, &side_attempts, &calls))
}

/// What `lines` (a results file's), `kept` (the last kept stage of each problem) and `calls`
/// (the spend ledger's) record as spent, whatever the problem: every line, the kept stage of
/// each problem whose last line is not an answer (an answer's line counts its stages already),
/// and the calls of every attempt named by no line nor kept stage (`side_attempts`: those of
/// every stage kept, superseded or not, whose spend the later stages and lines carry on).
pub(super) fn spent_on(
    lines: &[ResultLine],
    kept: &[triage::SideLine],
    side_attempts: &HashSet<u64>,
    calls: &[ledger::Entry],
) -> Usage {
    let mut spent = Usage::default();
    let mut answered: HashMap<&str, bool> = HashMap::new();
    for line in lines {
        // A solution graded again was paid for by the line that recorded it first, and by
        // the stage kept beside it (under triage) that line left counting.
        if line.grade_retried {
            continue;
        }
        spent += line.usage;
        answered.insert(line.id.as_str(), line.error.is_none());
    }
    for stage in kept {
        if answered.get(stage.id.as_str()) != Some(&true) {
            spent += stage.spent();
        }
    }
    let mut covered = side_attempts.clone();
    covered.extend(lines.iter().filter_map(|l| l.attempt));
    spent + ledger::unsettled(calls, &covered)
}
