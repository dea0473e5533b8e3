//! The batch [`Runner`]: a strategy over a problem set, concurrent, graded, resumable.
//!
//! Results go to a JSON Lines file, one line per finished problem, each written whole with a
//! single `write` and flushed before the next: a run killed at any moment loses no finished
//! problem. Starting again with the same output file resumes: ids with a result line are
//! skipped, a last line cut short by the kill is cut off and its problem redone (a whole last
//! line that only lacks its newline, as a hand edit or `jq` leaves it, is kept), and problems
//! whose line records an error are retried. A resume refused (another configuration, another
//! question under a recorded id) leaves the files as they were. A problem the run's budget cut
//! short (refused or shortened one of its calls) gets a line of what it spent, marked
//! `cut_short`, without its answer (what the budget left room for, not the strategy's): a
//! resumed run with more budget redoes it, and every token the job spent counts against its
//! budget.
//!
//! A line records its problem's spend only once it is written, so each call is also appended,
//! as it comes back, to `<out>.spend.jsonl` ([`spend_path`]) under the attempt that made it: a
//! resumed run counts the calls of attempts that wrote no line (killed, or the run failed, while
//! they were in flight), and a line names its attempt (`attempt`) so that its calls count once.
//!
//! Concurrency: up to `concurrency` problems are solved at once, all within the caller's task
//! (`buffer_unordered`), so dropping the run future cancels everything; results are written by
//! that same task as they complete.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::budget::Budget;
use crate::error::{Error, Result};
use crate::events::{EventKind, EventSink, Events};
use crate::grader::{grade_candidates, CandidateGrades, Grader};
use crate::metered::{Meter, Metered};
use crate::problem::Problem;
use crate::solution::{Solution, StopReason};
use crate::strategy::{Context, Strategy};
use crate::usage::Usage;

mod identity;
mod ledger;
mod triage;

/// One line of a results file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultLine {
    /// The problem id.
    pub id: String,
    /// The strategy's config `kind`.
    pub strategy: String,
    /// The final answer.
    pub answer: Option<String>,
    /// The reference answer.
    pub reference: Option<String>,
    /// Whether the answer was right (`None`: ungraded).
    pub correct: Option<bool>,
    /// What solving cost.
    pub usage: Usage,
    /// Why the strategy stopped (absent when it failed).
    pub stop_reason: Option<StopReason>,
    /// Strategy details.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
    /// The final completion text.
    #[serde(default)]
    pub completion: String,
    /// The error, when solving failed; such problems are retried on resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The budget this problem was given from the run's (under [`Allocation::Even`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allotted: Option<Budget>,
    /// Under [`Allocation::Triage`], for a problem whose first stage asked for the second: how
    /// sure the first stage was, why it asked, and whether the second stage ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triage: Option<TriageNote>,
    /// A fingerprint of the question answered ([`question_fingerprint`]): a resumed run checks
    /// that each recorded id still asks it. (Absent in lines written before it was recorded.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question_sha: Option<String>,
    /// The run's budget cut this attempt short. Its answer is what the budget left room for, not
    /// the strategy's, so the line carries none (and an `error` saying so: a resumed run redoes
    /// the problem), but what it spent is recorded and counts against the run's budget on
    /// resume.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cut_short: bool,
    /// How the solution's candidates grade, each as if it were the answer (absent where it
    /// had none, the grader grades none, or the line predates it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<CandidateGrades>,
    /// The attempt that wrote this line, as the spend ledger (`<out>.spend.jsonl`, see
    /// [`spend_path`]) names the calls it made: a resumed run counts those calls by this line.
    /// (Absent in lines of no calls of their own, and in lines written before it was recorded.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u64>,
}

/// The first 16 hex digits of the SHA-256 of a problem's question (its code task's prompt and
/// tests included).
pub fn question_fingerprint(problem: &Problem) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(problem.question.as_bytes());
    if let Some(code) = &problem.code {
        for part in [&code.prompt, &code.entry_point, &code.test] {
            hasher.update([0u8]);
            hasher.update(part.as_bytes());
        }
    }
    hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What [`ResultLine::triage`] records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriageNote {
    /// How sure the first stage was of its answer.
    pub confidence: f64,
    /// Why it asked for the second stage.
    pub why: String,
    /// Whether a later stage ran (else the run's budget ran out first and the first stage's
    /// answer stands).
    pub second_stage: bool,
    /// The stages that ran, the first included: 2 for the router's thinking, one more per
    /// round for adaptive best-of-N. (0 in lines written before it was recorded.)
    #[serde(default)]
    pub stages: usize,
}

/// How a run's budget is shared among its problems.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Allocation {
    /// First come, first served: a problem may spend whatever the run has left; a problem the
    /// run's budget cuts short records only its spend (a resumed run with more budget redoes
    /// it).
    #[default]
    FirstCome,
    /// An even share of what is left: as each problem starts it is given the run's unallotted
    /// tokens (and calls) divided by the problems not yet started, itself included, as its own
    /// budget; what it leaves unspent goes back for the problems after it. Cheap problems (a
    /// router's short answers, an adaptive vote decided early) pay for hard ones, and no problem
    /// is starved by those before it. A problem that runs out of its share is recorded with a
    /// budget stop reason, like a per-problem budget.
    Even,
    /// For strategies in stages ([`crate::Staged`]: the router's short answer then thinking;
    /// adaptive best-of-N a round at a time). The first stage of every problem runs first; the
    /// problems it settles are recorded. Then later stages run in order of need, always the
    /// least sure problem next (fewest stages first among equals, then file order), on what the
    /// run's budget has left; a stage that asks for yet another goes back in line with its new
    /// confidence. Once the budget is spent, the rest keep their last stage's answer, recorded
    /// with a budget stop reason. So thinking (more samples) goes to the problems that need it
    /// most, whatever their order in the file. Stages that asked for more are kept in
    /// `<out>.triage.jsonl` so a resumed run goes on from the last of them.
    Triage,
}

/// The run's budget not yet handed out, under [`Allocation::Even`].
#[derive(Debug)]
struct Pool {
    tokens: Option<u64>,
    completion_tokens: Option<u64>,
    calls: Option<u64>,
    unstarted: u64,
}

impl Pool {
    fn new(budget: Budget, problems: usize) -> Self {
        Self {
            tokens: budget.max_tokens,
            completion_tokens: budget.max_completion_tokens,
            calls: budget.max_calls,
            unstarted: problems as u64,
        }
    }

    /// The share of the next problem to start (wall time is not shared).
    fn take(&mut self) -> Budget {
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
    fn give_back(&mut self, share: &Budget, used: &Usage) {
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

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunSummary {
    /// Problems in the set (after `limit`).
    pub total: usize,
    /// Problems already finished in the output file, skipped.
    pub resumed: usize,
    /// Problems solved by this run.
    pub solved: usize,
    /// Of all finished problems (resumed and new): how many were graded, and how many right.
    pub graded: usize,
    /// Right answers among the graded.
    pub correct: usize,
    /// Problems that failed with an error in this run.
    pub errors: usize,
    /// Problems not started because the run's budget ran out.
    pub not_started: usize,
    /// Problems started but cut short by the run's budget (a call refused or shortened); not
    /// recorded, so a resumed run redoes them. Their usage is in `usage`.
    pub cut_short: usize,
    /// Usage of this run's problems, summed (elapsed is the sum of per-problem times). Under
    /// [`Allocation::Triage`] a first stage counts with its problem's line, so one that is still
    /// waiting for its second stage when the run stops is not in here yet.
    pub usage: Usage,
    /// Wall time of this run.
    pub wall_ms: u64,
    /// How this run's problems stopped.
    pub stop_reasons: BTreeMap<String, usize>,
    /// Under [`Allocation::Triage`]: problems of this run with a later stage than their first.
    pub second_stage: usize,
    /// Under [`Allocation::Triage`]: the later stages those problems ran, in all.
    pub later_stages: usize,
    /// Under [`Allocation::Triage`]: problems of this run whose first stage asked for the second
    /// but the run's budget ran out first; their first stage's answer is recorded.
    pub first_only: usize,
}

impl RunSummary {
    /// Accuracy over graded problems, if any were graded.
    pub fn accuracy(&self) -> Option<f64> {
        (self.graded > 0).then(|| self.correct as f64 / self.graded as f64)
    }
}

/// Runs a strategy over problem sets.
pub struct Runner {
    strategy: Arc<dyn Strategy>,
    backend: Arc<dyn Backend>,
    grader: Arc<dyn Grader>,
    concurrency: usize,
    problem_budget: Budget,
    run_budget: Budget,
    allocation: Allocation,
    trace_dir: Option<PathBuf>,
    identity: Option<serde_json::Value>,
    events: Option<Arc<dyn EventSink>>,
    seed: Option<u64>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("strategy", &self.strategy.name())
            .field("concurrency", &self.concurrency)
            .field("problem_budget", &self.problem_budget)
            .field("run_budget", &self.run_budget)
            .field("allocation", &self.allocation)
            .field("seed", &self.seed)
            .finish()
    }
}

impl Runner {
    /// A runner solving one problem at a time, unlimited budgets, math grading.
    pub fn new(strategy: Arc<dyn Strategy>, backend: Arc<dyn Backend>) -> Self {
        Self {
            strategy,
            backend,
            grader: Arc::new(crate::grader::MathGrader),
            concurrency: 1,
            problem_budget: Budget::unlimited(),
            run_budget: Budget::unlimited(),
            allocation: Allocation::FirstCome,
            trace_dir: None,
            identity: None,
            events: None,
            seed: None,
        }
    }

    /// Seeds the sampler of each problem's sampled requests from `seed` and the problem's id
    /// (and its stage, under [`Allocation::Triage`]), whatever the concurrency: a run repeats
    /// its random draws where the backend takes a per-request seed ([`crate::Seeded`]).
    /// Default: none (the backend's own randomness).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// What produces this run's results (strategy, model, budget: whatever changes them),
    /// recorded beside the results file as `<out>.config.json`. Resuming into a file recorded
    /// with a different identity is an error naming the changed keys. Default: not recorded.
    pub fn with_identity(mut self, identity: serde_json::Value) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Writes each search tree to `<dir>/<problem id>.{json,dot,svg}`. Default: not written.
    pub fn with_trace_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.trace_dir = Some(dir.into());
        self
    }

    /// Sends every problem's events to `sink` (see [`crate::events`]): its start, each call,
    /// its strategy's decisions, and its end (recorded, failed or cut short), timed from the
    /// start of the run. Default: none.
    pub fn with_events(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.events = Some(sink);
        self
    }

    /// Problems solved at once. Default 1.
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// The budget of each problem. Default unlimited.
    pub fn with_problem_budget(mut self, budget: Budget) -> Self {
        self.problem_budget = budget;
        self
    }

    /// The budget of the whole run, over every invocation that writes the same results file: the
    /// tokens and calls of every line recorded there, whatever its problem (an invocation over
    /// another part of the set included), and under [`Allocation::Triage`] of every kept stage
    /// not yet answered, count against it when a run resumes (the wall time is this
    /// invocation's). Default unlimited.
    pub fn with_run_budget(mut self, budget: Budget) -> Self {
        self.run_budget = budget;
        self
    }

    /// How the run's budget is shared among problems. Default [`Allocation::FirstCome`].
    pub fn with_allocation(mut self, allocation: Allocation) -> Self {
        self.allocation = allocation;
        self
    }

    /// The grader. Default [`crate::grader::MathGrader`].
    pub fn with_grader(mut self, grader: Arc<dyn Grader>) -> Self {
        self.grader = grader;
        self
    }

    /// Solves every problem of `problems` that `out` does not already hold, appending a line to
    /// `out` for each; `on_line` sees every line written (for progress display).
    pub async fn run(
        &self,
        problems: &[Problem],
        out: &Path,
        on_line: impl FnMut(&ResultLine),
    ) -> Result<RunSummary> {
        let started = Instant::now();
        let staged = match self.allocation {
            Allocation::Triage => Some(self.strategy.staged().ok_or_else(|| {
                Error::StrategyConfig {
                    strategy: self.strategy.name(),
                    reason: "a triage allocation needs a strategy with a cheap first stage \
                             (`router`, or `best_of_n` with `adaptive`); use `even` or \
                             `first_come` with this one"
                        .into(),
                }
            })?),
            _ => None,
        };
        // One run at a time writes to a results file: a second would solve the same problems
        // again and append them twice.
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .map_err(|e| Error::io(out, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Config {
                    path: out.to_path_buf(),
                    message: "another run is writing to it (wait for it, or write to another \
                              --out)"
                        .into(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(out, e)),
        }
        // Only read until the files are found to belong to this run: one refused leaves them
        // as they were.
        let (previous, results_tail) = scan_results(out)?;
        let (firsts, side_attempts, side_tail) = match staged {
            Some(_) => triage::scan(out)?,
            None => (Vec::new(), HashSet::new(), None),
        };
        let (calls, ledger_tail) = ledger::scan(out)?;
        let wanted: HashMap<&str, &Problem> = problems.iter().map(|p| (p.id.as_str(), p)).collect();
        for line in &previous {
            if let Some(problem) = wanted.get(line.id.as_str()) {
                check_question(out, "an answer", line.question_sha.as_deref(), problem)?;
            }
        }
        // A results file none of whose problems is in this set: another slice of one set (a
        // job run in parts, whose budget is the whole file's), or another set altogether
        // (GSM8K's results, SVAMP asked now), which would mix two experiments in one report.
        // Which, only the user knows: said, not refused.
        if !previous.is_empty() && !previous.iter().any(|l| wanted.contains_key(l.id.as_str())) {
            let ids: HashSet<&str> = previous.iter().map(|l| l.id.as_str()).collect();
            tracing::warn!(
                out = %out.display(),
                "none of the {} problems it holds (`{}`, ...) is among the {} asked now: this \
                 run adds to them (fine for another part of one set; another set would mix two \
                 experiments in one file)",
                ids.len(),
                previous[0].id,
                problems.len()
            );
        }
        triage::check_questions(out, &firsts, &wanted)?;
        if let Some(identity) = &self.identity {
            check_identity(out, identity, !previous.is_empty(), !firsts.is_empty())?;
            identity::record_set(out, problems.len())?;
        }
        repair(out, results_tail)?;
        repair(&triage::path_of(out), side_tail)?;
        repair(&ledger::path_of(out), ledger_tail)?;
        let mut summary = RunSummary {
            total: problems.len(),
            ..RunSummary::default()
        };
        let mut finished: HashSet<String> = HashSet::new();
        let mut last: HashMap<String, (bool, Option<bool>)> = HashMap::new();
        for line in previous
            .iter()
            .filter(|l| wanted.contains_key(l.id.as_str()))
        {
            // A problem's last line counts: a failure after an answer is retried.
            last.insert(line.id.clone(), (line.error.is_none(), line.correct));
        }
        // The run's budget is the file's: every line counts, whatever problem it is for, and
        // every call of an attempt that wrote none.
        let spent = spent_on(&previous, &firsts, &side_attempts, &calls);
        drop(calls);
        for (id, (answered, correct)) in last {
            if answered {
                summary.resumed += 1;
                if let Some(correct) = correct {
                    summary.graded += 1;
                    summary.correct += usize::from(correct);
                }
                finished.insert(id);
            }
        }
        let todo: Vec<&Problem> = problems
            .iter()
            .filter(|p| !finished.contains(&p.id))
            .collect();
        // First stages recorded for problems not finished yet: not done again.
        let firsts: Vec<triage::SideLine> = firsts
            .into_iter()
            .filter(|f| wanted.contains_key(f.id.as_str()) && !finished.contains(&f.id))
            .collect();
        let run_budget = less_spent(self.run_budget, &spent);
        let mut sink = Sink {
            file: lock,
            path: out,
            summary,
            on_line,
            started,
            events: self.events.clone(),
            ledger: Arc::new(ledger::Ledger::open(out)?),
        };
        let run_meter = Meter::new(run_budget);
        match staged {
            Some(staged) => {
                self.run_triage(staged, &todo, firsts, &run_meter, &mut sink)
                    .await?;
            }
            None => self.run_shared(&todo, &run_meter, &mut sink).await?,
        }
        sink.file.sync_data().map_err(|e| Error::io(out, e))?;
        sink.ledger.check()?;
        sink.ledger.sync()?;
        let mut summary = sink.summary;
        summary.wall_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(summary)
    }

    /// The problems of `todo` solved whole, sharing the run's budget first come or evenly.
    async fn run_shared<F: FnMut(&ResultLine)>(
        &self,
        todo: &[&Problem],
        run_meter: &Arc<Meter>,
        sink: &mut Sink<'_, F>,
    ) -> Result<()> {
        let pool = (self.allocation == Allocation::Even)
            .then(|| std::sync::Mutex::new(Pool::new(run_meter.budget(), todo.len())));
        let pool = &pool;
        let started = sink.started;
        let ledger = &Arc::clone(&sink.ledger);
        let mut results = futures::stream::iter(todo.iter().copied())
            .map(|problem| {
                let meter = Arc::clone(run_meter);
                async move {
                    if run_exhausted(&meter) {
                        return Outcome::NotStarted;
                    }
                    // Under `Even`, its share of what the run has not handed out.
                    let share = match pool {
                        Some(pool) => match pool.lock() {
                            Ok(mut pool) => Some(pool.take()),
                            Err(_) => return Outcome::NotStarted,
                        },
                        None => None,
                    };
                    if share.is_some_and(|s| {
                        s.max_tokens == Some(0)
                            || s.max_completion_tokens == Some(0)
                            || s.max_calls == Some(0)
                    }) {
                        return Outcome::NotStarted;
                    }
                    let budget =
                        share.map_or(self.problem_budget, |s| self.problem_budget.tighter(s));
                    // Each problem reaches the backend through the run's shared meter, with a
                    // flag of its own that says whether the run's budget limited one of its calls.
                    let events = self.events_of(problem, started);
                    events.emit("", EventKind::Started);
                    let (cx, cut, attempt) =
                        self.problem_context(meter, ledger, budget, &events, problem, 0);
                    let outcome = self.strategy.solve(problem, &cx).await;
                    let usage = cx.meter().usage();
                    let mut line = match outcome {
                        // Cut short: its answer is not recorded, so neither graded (code runs
                        // its tests) nor traced.
                        Ok(mut solution) if cut.load(Ordering::Relaxed) => {
                            solution.usage = usage;
                            line_for(problem, solution, None)
                        }
                        outcome => self.line_of(problem, outcome, usage).await,
                    };
                    line.attempt = Some(attempt);
                    if let (Some(pool), Some(share)) = (pool, share) {
                        if let Ok(mut pool) = pool.lock() {
                            pool.give_back(&share, &line.usage);
                        }
                        line.allotted = Some(share);
                    }
                    // Under `Even` the shares never add up to more than the run has, so only
                    // the run's wall time can cut a problem short.
                    if cut.load(Ordering::Relaxed) && line.usage.calls == 0 {
                        // Refused at its first call: the run had less left than it needed.
                        Outcome::NotStarted
                    } else if cut.load(Ordering::Relaxed) {
                        Outcome::Cut(line)
                    } else {
                        Outcome::Done(line)
                    }
                }
            })
            .buffer_unordered(self.concurrency);
        while let Some(outcome) = results.next().await {
            sink.take(outcome)?;
        }
        Ok(())
    }

    /// Where `problem`'s events go (nowhere without [`Runner::with_events`]), timed from the
    /// run's start.
    fn events_of(&self, problem: &Problem, started: Instant) -> Events {
        problem_events(self.events.as_ref(), &problem.id, started)
    }

    /// The context of one attempt at one problem under `budget`: the run's backend through the
    /// run's shared `meter` (as is any other model a strategy calls), each call that comes back
    /// recorded in `ledger` under a fresh attempt id, with a flag of its own set when the run's
    /// budget refuses or shortens one of its calls; calls and limits reported to `events`;
    /// sampled calls seeded for `problem`'s `stage` when the run has a seed. Returns the
    /// context, the flag and the attempt id (for the line the attempt writes).
    fn problem_context(
        &self,
        meter: Arc<Meter>,
        ledger: &Arc<ledger::Ledger>,
        budget: Budget,
        events: &Events,
        problem: &Problem,
        stage: usize,
    ) -> (Context, Arc<AtomicBool>, u64) {
        let cut = Arc::new(AtomicBool::new(false));
        let attempt = ledger::new_attempt();
        let seed = self.seed.map(|seed| match stage {
            0 => crate::seed_for(seed, &problem.id),
            _ => crate::seed_for(seed, &format!("{}\u{0}{stage}", problem.id)),
        });
        let run: crate::strategy::Metering = {
            let (cut, events, ledger) = (Arc::clone(&cut), events.clone(), Arc::clone(ledger));
            let id = problem.id.clone();
            Arc::new(move |backend| {
                let metered: Arc<dyn Backend> = Arc::new(
                    Metered::with_meter(backend, Arc::clone(&meter))
                        .noting_limits(Arc::clone(&cut))
                        .with_limit_events(events.clone()),
                );
                let ledgered: Arc<dyn Backend> = Arc::new(ledger::Ledgered::new(
                    metered,
                    Arc::clone(&ledger),
                    &id,
                    attempt,
                ));
                match seed {
                    Some(base) => Arc::new(crate::Seeded::new(ledgered, base)),
                    None => ledgered,
                }
            })
        };
        let cx = Context::with_events(run(Arc::clone(&self.backend)), budget, events.clone())
            .metered_below(run);
        (cx, cut, attempt)
    }

    /// The result line of a solve that cost `usage`: written trace, graded.
    async fn line_of(
        &self,
        problem: &Problem,
        outcome: Result<Solution>,
        usage: Usage,
    ) -> ResultLine {
        match outcome {
            Ok(mut solution) => {
                solution.usage = usage;
                self.finish(problem, solution).await
            }
            Err(error) => ResultLine {
                id: problem.id.clone(),
                strategy: self.strategy.name().to_string(),
                answer: None,
                reference: problem.reference.clone(),
                correct: None,
                usage,
                stop_reason: None,
                details: serde_json::Value::Null,
                completion: String::new(),
                error: Some(error_chain(&error)),
                allotted: None,
                triage: None,
                question_sha: Some(question_fingerprint(problem)),
                cut_short: false,
                candidates: None,
                attempt: None,
            },
        }
    }

    /// The result line of a solution (its usage filled in): its trace written, graded.
    async fn finish(&self, problem: &Problem, mut solution: Solution) -> ResultLine {
        if let (Some(dir), Some(trace)) = (&self.trace_dir, solution.trace.take()) {
            // Off the run's task: rendering with `dot` can take a while on a big tree.
            let (dir, id) = (dir.clone(), problem.id.clone());
            let written = tokio::task::spawn_blocking(move || trace.write(&dir, &id))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            if let Err(e) = written {
                tracing::warn!(problem = %problem.id, "writing the trace failed: {e}");
            }
        }
        match self.grader.grade(problem, &solution).await {
            Ok(correct) => {
                // The chosen answer's grade stands whatever becomes of the others'.
                let candidates =
                    match grade_candidates(self.grader.as_ref(), problem, &solution, correct).await
                    {
                        Ok(grades) => grades,
                        Err(e) => {
                            tracing::warn!(
                                problem = %problem.id,
                                "grading the candidates failed: {}", error_chain(&e)
                            );
                            None
                        }
                    };
                ResultLine {
                    candidates,
                    ..line_for(problem, solution, correct)
                }
            }
            // Recorded as failed, with what it found, so a resumed run does it again.
            Err(error) => ResultLine {
                error: Some(format!("grading: {}", error_chain(&error))),
                ..line_for(problem, solution, None)
            },
        }
    }
}

/// Where a run's lines go: the results file (each line whole, flushed), the summary, and the
/// caller's callback.
struct Sink<'a, F> {
    file: std::fs::File,
    path: &'a Path,
    summary: RunSummary,
    on_line: F,
    /// When the run started: its events are timed from here.
    started: Instant,
    /// Where the problems' events go: each one's end is reported once its line is written.
    events: Option<Arc<dyn EventSink>>,
    /// The run's spend ledger: a write to it that failed ends the run once the line at hand is
    /// recorded.
    ledger: Arc<ledger::Ledger>,
}

impl<F: FnMut(&ResultLine)> Sink<'_, F> {
    /// Records how a problem ended, then reports it to its events: a `finished` event means its
    /// line is in the file. Fails if the spend ledger could not be written.
    fn take(&mut self, outcome: Outcome) -> Result<()> {
        self.take_outcome(outcome)?;
        self.ledger.check()
    }

    fn take_outcome(&mut self, outcome: Outcome) -> Result<()> {
        let (id, kind) = match outcome {
            Outcome::Done(line) => {
                let kind = match &line.error {
                    Some(error) => EventKind::Failed {
                        error: error.clone(),
                    },
                    None => EventKind::Finished {
                        answer: line.answer.clone(),
                        correct: line.correct,
                        stop_reason: line.stop_reason.unwrap_or(StopReason::Completed),
                        tokens: line.usage.total_tokens(),
                    },
                };
                let id = line.id.clone();
                self.record(line)?;
                (id, kind)
            }
            Outcome::NotStarted => {
                self.summary.not_started += 1;
                return Ok(());
            }
            Outcome::Cut(line) => {
                // Its answer is what the run's budget left room for, not what the strategy
                // would give: only what it spent is recorded, so a resumed run (with more
                // budget) redoes it and counts those tokens against the job's budget.
                tracing::info!(problem = %line.id, "cut short by the run's budget; redone on resume");
                let line = ResultLine {
                    answer: None,
                    correct: None,
                    stop_reason: None,
                    details: serde_json::Value::Null,
                    completion: String::new(),
                    error: Some(
                        "cut short by the run's budget: a rerun with more budget redoes it".into(),
                    ),
                    cut_short: true,
                    ..line
                };
                append_line(&mut self.file, self.path, &line, "a result line")?;
                self.summary.cut_short += 1;
                self.summary.usage += line.usage;
                (line.id, EventKind::Cut)
            }
        };
        problem_events(self.events.as_ref(), &id, self.started).emit("", kind);
        Ok(())
    }

    fn record(&mut self, line: ResultLine) -> Result<()> {
        append_line(&mut self.file, self.path, &line, "a result line")?;
        let summary = &mut self.summary;
        summary.usage += line.usage;
        if line.error.is_some() {
            summary.errors += 1;
        } else {
            summary.solved += 1;
            if let Some(correct) = line.correct {
                summary.graded += 1;
                summary.correct += usize::from(correct);
            }
        }
        let reason = line
            .stop_reason
            .map_or("error".to_string(), |r| stop_reason_name(r).to_string());
        *summary.stop_reasons.entry(reason).or_default() += 1;
        (self.on_line)(&line);
        Ok(())
    }
}

/// The events of problem `id` for `sink` (off without one), timed from `started`.
fn problem_events(sink: Option<&Arc<dyn EventSink>>, id: &str, started: Instant) -> Events {
    match sink {
        Some(sink) => Events::since(Arc::clone(sink), id.to_owned(), started),
        None => Events::off(),
    }
}

/// Appends `value` to `file` (at `path`) as one JSON line, written whole and flushed.
fn append_line(
    file: &mut std::fs::File,
    path: &Path,
    value: &impl Serialize,
    what: &'static str,
) -> Result<()> {
    let mut text =
        serde_json::to_string(value).map_err(|source| Error::Serialize { what, source })?;
    text.push('\n');
    file.write_all(text.as_bytes())
        .and_then(|()| file.flush())
        .map_err(|e| Error::io(path, e))
}

/// How one problem of a run went.
enum Outcome {
    /// Solved (or failed) within the run's budget: recorded.
    Done(ResultLine),
    /// The run's budget refused or shortened one of its calls.
    Cut(ResultLine),
    /// The run's budget was spent before it started.
    NotStarted,
}

/// `budget` less what earlier invocations of the run recorded: tokens and calls (not wall time).
fn less_spent(mut budget: Budget, spent: &Usage) -> Budget {
    let less = |max: Option<u64>, used: u64| max.map(|m| m.saturating_sub(used));
    budget.max_tokens = less(budget.max_tokens, spent.total_tokens());
    budget.max_completion_tokens = less(budget.max_completion_tokens, spent.completion_tokens);
    budget.max_calls = less(budget.max_calls, spent.calls);
    budget
}

/// Whether the run's budget is spent: what calls in flight have reserved does not count (they
/// give back what they do not use, and a call that needs it waits for them).
fn run_exhausted(meter: &Meter) -> bool {
    spent_out(meter, meter.unspent_completion_tokens()).is_some()
}

/// What the run's budget has run out of, if anything (reserved tokens count as spent).
fn exhausted(meter: &Meter) -> Option<crate::budget::Resource> {
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

fn line_for(problem: &Problem, solution: Solution, correct: Option<bool>) -> ResultLine {
    ResultLine {
        id: problem.id.clone(),
        strategy: solution.strategy,
        answer: solution.answer,
        reference: problem.reference.clone(),
        correct,
        usage: solution.usage,
        stop_reason: Some(solution.stop_reason),
        details: solution.details,
        completion: solution.completion,
        error: None,
        allotted: None,
        triage: None,
        question_sha: Some(question_fingerprint(problem)),
        cut_short: false,
        candidates: None,
        attempt: None,
    }
}

/// An error and its sources, joined with `: `.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The snake_case name of a stop reason, as results files spell it.
pub fn stop_reason_name(reason: StopReason) -> &'static str {
    match reason {
        StopReason::Completed => "completed",
        StopReason::MaxTokens => "max_tokens",
        StopReason::TokenBudget => "token_budget",
        StopReason::CompletionBudget => "completion_budget",
        StopReason::CallBudget => "call_budget",
        StopReason::TimeBudget => "time_budget",
    }
}

/// What [`Runner::run`] checks first, for callers that want to fail before loading a model: the
/// results file `out` reads, and was written with `identity` (see [`Runner::with_identity`]);
/// under [`Allocation::Triage`], the first stages kept beside it read too, and belong to it.
/// Returns its finished lines (a half-written last line left out, and left in place).
pub fn check_resumable(
    out: &Path,
    identity: &serde_json::Value,
    allocation: Allocation,
) -> Result<Vec<ResultLine>> {
    let (previous, _) = peek_results(out)?;
    let has_firsts = allocation == Allocation::Triage
        && !scan_lines::<triage::SideLine>(&triage::path_of(out))?
            .0
            .is_empty();
    check_identity(out, identity, !previous.is_empty(), has_firsts)?;
    Ok(previous)
}

/// What a run on `out` whose results file holds `lines` records as spent, as a resumed run
/// counts it against its budget (see [`Runner::with_run_budget`]): every results line, whatever
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
fn spent_on(
    lines: &[ResultLine],
    kept: &[triage::SideLine],
    side_attempts: &HashSet<u64>,
    calls: &[ledger::Entry],
) -> Usage {
    let mut spent = Usage::default();
    let mut answered: HashMap<&str, bool> = HashMap::new();
    for line in lines {
        spent += line.usage;
        answered.insert(line.id.as_str(), line.error.is_none());
    }
    for stage in kept {
        if answered.get(stage.id.as_str()) != Some(&true) {
            spent += stage.solution.usage;
        }
    }
    let mut covered = side_attempts.clone();
    covered.extend(lines.iter().filter_map(|l| l.attempt));
    spent + ledger::unsettled(calls, &covered)
}

/// Checks that a line of the file at `path` holding `what` for `problem` (its id), recorded
/// with the question fingerprint `recorded`, answered the question `problem` asks now. A line
/// without a fingerprint (written before they were recorded) is not checked.
fn check_question(
    path: &Path,
    what: &str,
    recorded: Option<&str>,
    problem: &Problem,
) -> Result<()> {
    match recorded {
        Some(recorded) if recorded != question_fingerprint(problem) => Err(Error::Config {
            path: path.to_path_buf(),
            message: format!(
                "holds {what} for `{id}` to another question than `{id}` asks now (the problem \
                 file changed, or rows without an id, named by line number, moved); write to \
                 another --out, or delete the results file and its side files to start over",
                id = problem.id
            ),
        }),
        _ => Ok(()),
    }
}

/// Checks `identity` against the record beside `out` (or records it): `out` has results, or
/// first stages kept beside it (which must have a record to be resumed).
fn check_identity(
    out: &Path,
    identity: &serde_json::Value,
    has_results: bool,
    has_firsts: bool,
) -> Result<()> {
    if has_firsts {
        triage::check_recorded(out)?;
    }
    identity::check_or_record(out, identity, has_results || has_firsts)
}

pub use identity::PROBLEMS_IN_SET;

/// The side file recording what the results file `out` was written with: `<out>.config.json`.
pub fn config_path(out: &Path) -> PathBuf {
    identity::path_of(out)
}

/// The side file where a triage run keeps the first stages that asked for a second:
/// `<out>.triage.jsonl`.
pub fn triage_path(out: &Path) -> PathBuf {
    triage::path_of(out)
}

/// The side file where a run records each call as it comes back (the problem, the attempt at
/// it, what the call cost), so that a resumed run counts what attempts killed or failed in
/// flight spent: `<out>.spend.jsonl`.
pub fn spend_path(out: &Path) -> PathBuf {
    ledger::path_of(out)
}

/// Reads the finished lines of a results file, cutting off a last line that a killed run left
/// half-written (a whole last line without its newline is kept, and its newline added). A
/// missing file is an empty one.
pub fn read_results(path: &Path) -> Result<Vec<ResultLine>> {
    let (lines, tail) = scan_results(path)?;
    repair(path, tail)?;
    Ok(lines)
}

/// Reads the finished lines of a results file without changing it: the lines (a whole last line
/// without its newline included), and whether a half-written last line (a killed run's) was
/// left out. A missing file is an empty one.
pub fn peek_results(path: &Path) -> Result<(Vec<ResultLine>, bool)> {
    let (lines, tail) = scan_results(path)?;
    Ok((lines, matches!(tail, Some(Tail::Half { .. }))))
}

/// The finished lines, and what follows the last newline.
fn scan_results(path: &Path) -> Result<(Vec<ResultLine>, Option<Tail>)> {
    scan_lines(path)
}

/// What follows the last newline of an append-only JSON Lines file, when anything does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    /// A whole line without its newline (the file edited by hand, written by `jq`, or
    /// concatenated): read with the others; its newline is to be added before appending.
    Unended,
    /// Half a line, left by a run killed while writing it: the file is to be cut to `len`.
    Half { len: u64 },
}

/// The finished JSON lines of an append-only file, and what follows its last newline: a line
/// there that reads whole is among the lines (and the tail [`Tail::Unended`]); one that does
/// not is taken for half a line (a kill's) and left out.
fn scan_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<(Vec<T>, Option<Tail>)> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), None)),
        Err(e) => return Err(Error::io(path, e)),
    };
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut lines = Vec::new();
    let body = bytes.get(..complete).unwrap_or_default();
    // Byte slices, so offsets stay exact whatever the line endings (`\r\n`) or a stray invalid
    // byte (lossy decoding would change lengths).
    // Every line is written whole with its newline in one write: only what follows the last
    // newline can have been cut short by a kill. A whole line that does not read is damage.
    for (index, raw) in body.split_inclusive(|&b| b == b'\n').enumerate() {
        let text = String::from_utf8_lossy(raw);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let line = serde_json::from_str::<T>(text).map_err(|e| Error::ResultsFile {
            path: path.to_path_buf(),
            line: index + 1,
            message: crate::error::json_line_message(&e),
        })?;
        lines.push(line);
    }
    let rest = bytes.get(complete..).unwrap_or_default();
    if rest.is_empty() {
        return Ok((lines, None));
    }
    // Half a line never reads whole (an object's closing brace is the last byte before its
    // newline): a tail that reads is a whole line that only lacks its newline, and is kept.
    match serde_json::from_str::<T>(String::from_utf8_lossy(rest).trim()) {
        Ok(line) => {
            lines.push(line);
            Ok((lines, Some(Tail::Unended)))
        }
        Err(_) => Ok((
            lines,
            Some(Tail::Half {
                len: complete as u64,
            }),
        )),
    }
}

/// Makes the file at `path` end where its last whole line does: adds the newline a whole last
/// line lacks, or cuts off half a line.
fn repair(path: &Path, tail: Option<Tail>) -> Result<()> {
    match tail {
        None => Ok(()),
        Some(Tail::Unended) => {
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(|e| Error::io(path, e))?;
            file.write_all(b"\n")
                .and_then(|()| file.flush())
                .map_err(|e| Error::io(path, e))?;
            tracing::info!(path = %path.display(), "added the newline its whole last line lacked");
            Ok(())
        }
        Some(Tail::Half { len }) => truncate(path, len),
    }
}

fn truncate(path: &Path, len: u64) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.set_len(len).map_err(|e| Error::io(path, e))?;
    tracing::warn!(path = %path.display(), "cut off a half-written last line; its problem will be redone");
    Ok(())
}

/// The default output path for a problem file: `<stem>.results.jsonl` beside it.
pub fn default_out_path(problems: &Path) -> PathBuf {
    let stem = problems
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "problems".into());
    problems.with_file_name(format!("{stem}.results.jsonl"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str) -> String {
        let l = ResultLine {
            id: id.into(),
            strategy: "direct".into(),
            answer: Some("4".into()),
            reference: Some("4".into()),
            correct: Some(true),
            usage: Usage::default(),
            stop_reason: Some(StopReason::Completed),
            details: serde_json::Value::Null,
            completion: "4".into(),
            error: None,
            allotted: None,
            triage: None,
            question_sha: None,
            cut_short: false,
            candidates: None,
            attempt: None,
        };
        serde_json::to_string(&l).unwrap()
    }

    #[test]
    fn half_written_last_line_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let full = format!("{}\n{}\n", line("a"), line("b"));
        let cut = &line("c")[..20];
        std::fs::write(&path, format!("{full}{cut}")).unwrap();
        let lines = read_results(&path).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), full);

        // A whole last line (its newline written) that does not read was not cut by a kill:
        // damage (a hand edit, another program's line), named, and the file left as it is.
        let damaged = format!("{full}{{\"id\": \"c\"\n");
        std::fs::write(&path, &damaged).unwrap();
        let err = read_results(&path).unwrap_err().to_string();
        assert!(
            err.contains("r.jsonl:3:") && err.contains("(column 10)"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), damaged);
    }

    /// One call of up to 10 tokens; the completion is the answer.
    struct OneCall;

    #[async_trait::async_trait]
    impl Strategy for OneCall {
        fn name(&self) -> &'static str {
            "one_call"
        }

        async fn solve(&self, problem: &Problem, cx: &Context) -> Result<Solution> {
            let request = crate::backend::GenerationRequest::new(crate::backend::Prompt::Text(
                problem.question.clone(),
            ))
            .with_max_tokens(10);
            match cx.backend().generate(request).await {
                Ok(generation) => {
                    let choice = generation.into_first_choice()?;
                    let candidate = crate::solution::Candidate {
                        answer: Some(choice.text.clone()),
                        tokens: choice.text.len() as u64,
                        text: choice.text,
                        score: None,
                    };
                    Ok(Solution::single(
                        "one_call",
                        candidate,
                        StopReason::Completed,
                    ))
                }
                Err(Error::BudgetExhausted { resource }) => {
                    Ok(Solution::exhausted("one_call", resource))
                }
                Err(e) => Err(e),
            }
        }
    }

    /// Events for `recorder` that also check, at each problem's `finished` or `failed` event,
    /// that its line is already in `out`: a watcher reading the file on that event finds it.
    /// The ids found missing are pushed to the returned list.
    fn line_before_end(
        recorder: &Arc<crate::scripted::Recorder>,
        out: &Path,
    ) -> (Arc<dyn EventSink>, Arc<std::sync::Mutex<Vec<String>>>) {
        let missing = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (recorder, out, found_missing) = (
            Arc::clone(recorder),
            out.to_path_buf(),
            Arc::clone(&missing),
        );
        let sink = move |event: &crate::Event| {
            if matches!(
                event.kind,
                EventKind::Finished { .. } | EventKind::Failed { .. }
            ) {
                let written = read_results(&out)
                    .is_ok_and(|lines| lines.iter().any(|l| l.id == event.problem));
                if !written {
                    found_missing.lock().unwrap().push(event.problem.clone());
                }
            }
            recorder.emit(event);
        };
        (Arc::new(sink), missing)
    }

    #[tokio::test]
    async fn problems_the_run_budget_cut_short_record_only_their_spend_and_resume_solves_them() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let problems: Vec<Problem> = ["p1", "p2", "p3"]
            .into_iter()
            .map(|id| Problem::new(id, "Q?"))
            .collect();
        // Scripted tokens are bytes: a call is 2 prompt + 10 completion tokens. 19 tokens let
        // p1 finish, shorten p2's call to 5 completion tokens (cut short) and leave none for p3.
        let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["0123456789"; 3]));
        let events = crate::scripted::Recorder::new();
        let (sink, missing) = line_before_end(&events, &out);
        let summary = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
            .with_run_budget(Budget::unlimited().with_max_tokens(19))
            .with_events(sink)
            .run(&problems, &out, |_| {})
            .await
            .unwrap();
        assert_eq!(
            (summary.solved, summary.cut_short, summary.not_started),
            (1, 1, 1)
        );
        // Each problem's events say how it went: p1 finished, p2's call was shortened and it
        // was cut, p3 never started.
        let call = |completion_tokens, spent| EventKind::Call {
            n: 1,
            prompt_tokens: 2,
            completion_tokens,
            call_ms: 0,
            spent,
        };
        assert_eq!(
            events.kinds("p1"),
            [
                EventKind::Started,
                call(10, 12),
                EventKind::Finished {
                    answer: Some("0123456789".into()),
                    correct: None,
                    stop_reason: StopReason::Completed,
                    tokens: 12
                }
            ]
        );
        assert_eq!(
            events.kinds("p2"),
            [
                EventKind::Started,
                EventKind::Limited {
                    resource: crate::Resource::Tokens,
                    max_tokens: Some(5)
                },
                call(5, 7),
                EventKind::Cut
            ]
        );
        assert_eq!(events.kinds("p3"), []);
        assert!(missing.lock().unwrap().is_empty(), "{missing:?}");
        // p1's answer; of p2 only what it spent, marked cut short and retried on resume.
        let lines = read_results(&out).unwrap();
        let seen: Vec<(&str, Option<&str>, bool, u64)> = lines
            .iter()
            .map(|l| {
                (
                    l.id.as_str(),
                    l.answer.as_deref(),
                    l.cut_short && l.error.is_some(),
                    l.usage.total_tokens(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [("p1", Some("0123456789"), false, 12), ("p2", None, true, 7)]
        );

        // The budget is the whole job's: rerun with the same one, the 19 tokens are spent (p2's
        // cut attempt included), so nothing starts and nothing is written.
        let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["0123456789"; 2]));
        let summary = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
            .with_run_budget(Budget::unlimited().with_max_tokens(19))
            .run(&problems, &out, |_| {})
            .await
            .unwrap();
        assert_eq!(
            (summary.resumed, summary.solved, summary.not_started),
            (1, 0, 2)
        );
        assert!(backend.requests().is_empty());
        assert_eq!(read_results(&out).unwrap().len(), 2);

        // With budget to spare, a rerun solves exactly the two left.
        let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["0123456789"; 2]));
        let summary = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
            .run(&problems, &out, |_| {})
            .await
            .unwrap();
        assert_eq!((summary.resumed, summary.solved), (1, 2));
        let lines = read_results(&out).unwrap();
        let mut ids: Vec<&str> = lines
            .iter()
            .filter(|l| !l.cut_short)
            .map(|l| l.id.as_str())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, vec!["p1", "p2", "p3"]);
        assert!(lines
            .iter()
            .filter(|l| !l.cut_short)
            .all(|l| l.answer.as_deref() == Some("0123456789")));
    }

    /// Two sampled calls, one after the other, then the first's text.
    struct TwoDraws;

    #[async_trait::async_trait]
    impl Strategy for TwoDraws {
        fn name(&self) -> &'static str {
            "two_draws"
        }

        async fn solve(&self, problem: &Problem, cx: &Context) -> Result<Solution> {
            let mut texts = Vec::new();
            for _ in 0..2 {
                let request = text_request(problem.question.clone())
                    .with_sampling(crate::Sampling::with_temperature(1.0));
                texts.push(
                    cx.backend()
                        .generate(request)
                        .await?
                        .into_first_choice()?
                        .text,
                );
            }
            Ok(Solution::single(
                "two_draws",
                candidate(&texts[0], &texts[0]),
                StopReason::Completed,
            ))
        }
    }

    #[tokio::test]
    async fn a_seeded_run_gives_each_problem_the_same_seeds_whatever_the_concurrency() {
        let dir = tempfile::tempdir().unwrap();
        let problems = numbered(6);
        let seeds_at = |concurrency: usize, seed: Option<u64>, name: &str| {
            let out = dir.path().join(name);
            let problems = problems.clone();
            async move {
                let backend = Arc::new(
                    crate::scripted::ScriptedBackend::new(vec!["x"; 12])
                        .with_delay(std::time::Duration::from_millis(2)),
                );
                let mut runner =
                    Runner::new(Arc::new(TwoDraws), Arc::clone(&backend) as Arc<dyn Backend>)
                        .with_concurrency(concurrency);
                if let Some(seed) = seed {
                    runner = runner.with_seed(seed);
                }
                runner.run(&problems, &out, |_| {}).await.unwrap();
                let mut seeds: BTreeMap<String, Vec<Option<u64>>> = BTreeMap::new();
                for request in backend.requests() {
                    let prompt = crate::scripted::ScriptedBackend::render(&request.prompt);
                    seeds.entry(prompt).or_default().push(request.sampling.seed);
                }
                seeds
            }
        };
        let one = seeds_at(1, Some(7), "a.jsonl").await;
        assert_eq!(one.len(), 6);
        let all: HashSet<Option<u64>> = one.values().flatten().copied().collect();
        assert_eq!(all.len(), 12, "every draw its own seed: {one:?}");
        assert!(!all.contains(&None));
        assert_eq!(seeds_at(4, Some(7), "b.jsonl").await, one);
        assert_ne!(seeds_at(1, Some(8), "c.jsonl").await, one);
        let unseeded = seeds_at(4, None, "d.jsonl").await;
        assert!(unseeded.values().flatten().all(Option::is_none));
    }

    #[tokio::test]
    async fn an_even_allocation_starves_no_problem_and_passes_savings_on() {
        let dir = tempfile::tempdir().unwrap();
        let problems: Vec<Problem> = ["p1", "p2", "p3", "p4"]
            .into_iter()
            .map(|id| Problem::new(id, "Q?"))
            .collect();
        let run = |replies: Vec<&str>, allocation: Allocation, out: PathBuf| {
            let backend = Arc::new(crate::scripted::ScriptedBackend::new(replies));
            let problems = problems.clone();
            async move {
                let summary =
                    Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
                        .with_run_budget(Budget::unlimited().with_max_tokens(20))
                        .with_allocation(allocation)
                        .run(&problems, &out, |_| {})
                        .await
                        .unwrap();
                let asked: Vec<usize> = backend.requests().iter().map(|r| r.max_tokens).collect();
                (summary, read_results(&out).unwrap(), asked)
            }
        };
        // 20 tokens, calls of 2 prompt + 10 completion tokens. First come: p1 takes 12, p2 is
        // cut short, p3 and p4 never start.
        let long = vec!["0123456789"; 4];
        let (summary, lines, _) = run(
            long.clone(),
            Allocation::FirstCome,
            dir.path().join("first.jsonl"),
        )
        .await;
        assert_eq!(
            (summary.solved, summary.cut_short, summary.not_started),
            (1, 1, 2)
        );
        let cut: Vec<bool> = lines.iter().map(|l| l.cut_short).collect();
        assert_eq!(cut, [false, true], "p1's answer, p2's spend");
        // Even: each gets 5 (3 completion tokens), all four are recorded with their share.
        let (summary, lines, asked) =
            run(long, Allocation::Even, dir.path().join("even.jsonl")).await;
        assert_eq!((summary.solved, summary.not_started), (4, 0));
        assert_eq!(asked, vec![3, 3, 3, 3]);
        assert!(lines.iter().all(|l| l.answer.as_deref() == Some("012")
            && l.allotted.and_then(|b| b.max_tokens) == Some(5)));
        assert!(summary.usage.total_tokens() <= 20);
        // Savings roll over: three one-token answers (3 tokens each) leave the last problem
        // 20 - 9 = 11 tokens, room for its whole reply.
        let (_, lines, asked) = run(
            vec!["1", "1", "1", "012345678"],
            Allocation::Even,
            dir.path().join("rollover.jsonl"),
        )
        .await;
        let shares: Vec<Option<u64>> = lines
            .iter()
            .map(|l| l.allotted.and_then(|b| b.max_tokens))
            .collect();
        // 20/4 = 5 (2 back), 17/3 = 5 (2 back), 14/2 = 7 (4 back), then the 11 left.
        assert_eq!(shares, vec![Some(5), Some(5), Some(7), Some(11)]);
        assert_eq!(asked, vec![3, 3, 5, 9]);
        assert_eq!(lines[3].answer.as_deref(), Some("012345678"));
    }

    /// A staged strategy. First stage: one call on the question whose reply is
    /// `answer:confidence`, settled at confidence 0.5 or more. Second: one call of up to
    /// `think_tokens` tokens on `think <question>` whose reply is the answer.
    struct TwoStage {
        think_tokens: usize,
    }

    const TWO_STAGE: TwoStage = TwoStage { think_tokens: 10 };

    fn text_request(prompt: String) -> crate::backend::GenerationRequest {
        crate::backend::GenerationRequest::new(crate::backend::Prompt::Text(prompt))
            .with_max_tokens(10)
    }

    fn candidate(answer: &str, text: &str) -> crate::solution::Candidate {
        crate::solution::Candidate {
            answer: Some(answer.into()),
            text: text.into(),
            score: None,
            tokens: text.len() as u64,
        }
    }

    #[async_trait::async_trait]
    impl Strategy for TwoStage {
        fn name(&self) -> &'static str {
            "two_stage"
        }

        async fn solve(&self, problem: &Problem, cx: &Context) -> Result<Solution> {
            crate::solve_in_stages(self, problem, cx).await
        }

        fn staged(&self) -> Option<&dyn crate::Staged> {
            Some(self)
        }
    }

    #[async_trait::async_trait]
    impl crate::Staged for TwoStage {
        async fn first(&self, problem: &Problem, cx: &Context) -> Result<crate::Stage> {
            let request = text_request(problem.question.clone());
            let text = cx
                .backend()
                .generate(request)
                .await?
                .into_first_choice()?
                .text;
            let (answer, confidence) = text.split_once(':').expect("answer:confidence");
            let confidence: f64 = confidence.parse().expect("a confidence");
            Ok(crate::Stage {
                solution: Solution::single(
                    "two_stage",
                    candidate(answer, &text),
                    StopReason::Completed,
                ),
                pending: (confidence < 0.5).then(|| crate::Pending {
                    confidence,
                    why: format!("confidence {confidence}"),
                }),
            })
        }

        async fn next(
            &self,
            problem: &Problem,
            first: Solution,
            cx: &Context,
        ) -> Result<crate::Stage> {
            let solution = match cx
                .backend()
                .generate(
                    text_request(format!("think {}", problem.question))
                        .with_max_tokens(self.think_tokens),
                )
                .await
            {
                Ok(generation) => {
                    let text = generation.into_first_choice()?.text;
                    Ok(Solution::single(
                        "two_stage",
                        candidate(&text, &text),
                        StopReason::Completed,
                    ))
                }
                Err(Error::BudgetExhausted { resource }) => Ok(Solution {
                    stop_reason: resource.into(),
                    ..first
                }),
                Err(e) => Err(e),
            }?;
            Ok(crate::Stage {
                solution,
                pending: None,
            })
        }
    }

    #[tokio::test]
    async fn a_second_run_on_the_same_results_file_is_refused_while_the_first_writes() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let backend = Arc::new(
            crate::scripted::ScriptedBackend::new(vec!["4"; 4])
                .with_delay(std::time::Duration::from_millis(30)),
        );
        let runner = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>);
        let problems = numbered(2);
        let second = async {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            runner.run(&problems, &out, |_| {}).await
        };
        let (first, second) = tokio::join!(runner.run(&problems, &out, |_| {}), second);
        assert_eq!(first.unwrap().solved, 2);
        let err = second.unwrap_err().to_string();
        assert!(err.contains("another run is writing to it"), "{err}");
        assert_eq!(backend.requests().len(), 2, "each problem solved once");
        // Once the first is done, the file is free again.
        let again = runner.run(&problems, &out, |_| {}).await.unwrap();
        assert_eq!(again.resumed, 2);
    }

    #[tokio::test]
    async fn a_problems_last_line_counts_when_resuming() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        // p1 answered, then failed (two runs at once, say); p2 answered twice.
        let failed = serde_json::json!({
            "id": "p1", "strategy": "direct", "answer": null, "reference": null,
            "correct": null, "usage": {}, "stop_reason": null, "error": "backend gone"
        });
        let text = format!("{}\n{failed}\n{}\n{}\n", line("p1"), line("p2"), line("p2"));
        std::fs::write(&out, text).unwrap();
        let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["4"]));
        let summary = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
            .run(&numbered(2), &out, |_| {})
            .await
            .unwrap();
        assert_eq!(
            (summary.resumed, summary.graded, summary.solved),
            (1, 1, 1),
            "{summary:?}"
        );
        assert_eq!(prompts(&backend), ["Q1?"]);
    }

    #[tokio::test]
    async fn resuming_with_another_question_under_a_recorded_id_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["4"; 4]));
        let runner = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>);
        runner.run(&numbered(2), &out, |_| {}).await.unwrap();
        // The same questions: nothing to do.
        let summary = runner.run(&numbered(2), &out, |_| {}).await.unwrap();
        assert_eq!((summary.resumed, summary.solved), (2, 0));
        // Rows named by line number, one inserted: `p2` now asks what `p1` did.
        let moved = vec![Problem::new("p1", "New?"), Problem::new("p2", "Q1?")];
        let err = runner
            .run(&moved, &out, |_| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("r.jsonl") && err.contains("`p1` to another question"),
            "{err}"
        );
        assert_eq!(backend.requests().len(), 2, "nothing solved");
    }

    #[tokio::test]
    async fn reservations_of_calls_in_flight_neither_stop_nor_cut_problems_the_budget_pays_for() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        // Each call reserves 3 + 10 tokens and spends 3 + 2. Four in flight reserve 52, more
        // than the run's 45; all six problems (30 tokens) fit in it.
        let backend = Arc::new(
            crate::scripted::ScriptedBackend::new(vec!["ab"; 6])
                .with_delay(std::time::Duration::from_millis(30)),
        );
        let summary = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
            .with_concurrency(4)
            .with_run_budget(Budget::unlimited().with_max_tokens(45))
            .run(&numbered(6), &out, |_| {})
            .await
            .unwrap();
        assert_eq!(
            (summary.solved, summary.cut_short, summary.not_started),
            (6, 0, 0)
        );
        assert_eq!(summary.usage.total_tokens(), 30);
        let lines = by_id(&out);
        assert!(
            lines.values().all(|l| l.answer.as_deref() == Some("ab")),
            "{lines:?}"
        );
        // Requests asked for their whole ten tokens: none was shortened.
        assert!(backend.requests().iter().all(|r| r.max_tokens == 10));
    }

    fn numbered(n: usize) -> Vec<Problem> {
        (1..=n)
            .map(|i| Problem::new(format!("p{i}"), format!("Q{i}?")))
            .collect()
    }

    fn prompts(backend: &crate::scripted::ScriptedBackend) -> Vec<String> {
        backend
            .requests()
            .iter()
            .map(|r| crate::scripted::ScriptedBackend::render(&r.prompt))
            .collect()
    }

    fn by_id(out: &Path) -> BTreeMap<String, ResultLine> {
        read_results(out)
            .unwrap()
            .into_iter()
            .map(|l| (l.id.clone(), l))
            .collect()
    }

    #[tokio::test]
    async fn triage_thinks_about_the_least_sure_first_and_the_rest_keep_their_first_answer() {
        // Tokens are bytes. First stages: 3 prompt + 5 completion = 8 each, 32 for four. One
        // second stage: 9 prompt ("think Q3?") + 10 = 19. A run of 51 pays for exactly one and
        // leaves nothing; one of 56 leaves 5, less than the next second stage's prompt.
        for budget in [51, 56] {
            triage_pays_for_one_second_stage(budget).await;
        }
    }

    async fn triage_pays_for_one_second_stage(budget: u64) {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let backend = Arc::new(crate::scripted::ScriptedBackend::new([
            "x:0.9",
            "y:0.2",
            "z:0.1",
            "w:0.4",
            "0123456789",
        ]));
        let events = crate::scripted::Recorder::new();
        let (sink, missing) = line_before_end(&events, &out);
        let summary = Runner::new(
            Arc::new(TWO_STAGE),
            Arc::clone(&backend) as Arc<dyn Backend>,
        )
        .with_run_budget(Budget::unlimited().with_max_tokens(budget))
        .with_allocation(Allocation::Triage)
        .with_events(sink)
        .run(&numbered(4), &out, |_| {})
        .await
        .unwrap();
        assert_eq!(
            prompts(&backend),
            ["Q1?", "Q2?", "Q3?", "Q4?", "think Q3?"],
            "every first stage, then the least sure problem's second"
        );
        assert_eq!(
            (summary.solved, summary.second_stage, summary.first_only),
            (4, 1, 2),
            "run budget {budget}"
        );
        let lines = by_id(&out);
        assert_eq!(lines["p1"].answer.as_deref(), Some("x"));
        assert_eq!(lines["p1"].triage, None, "settled by its first stage");
        let thought = &lines["p3"];
        assert_eq!(thought.answer.as_deref(), Some("0123456789"));
        assert_eq!(thought.usage.total_tokens(), 8 + 19, "both stages");
        assert_eq!(thought.usage.calls, 2);
        assert!(thought
            .triage
            .as_ref()
            .is_some_and(|t| t.second_stage && t.confidence == 0.1));
        for (id, answer) in [("p2", "y"), ("p4", "w")] {
            let line = &lines[id];
            assert_eq!(line.answer.as_deref(), Some(answer));
            assert_eq!(line.stop_reason, Some(StopReason::TokenBudget));
            assert!(
                line.triage.as_ref().is_some_and(|t| !t.second_stage),
                "{id}"
            );
        }
        let total: u64 = lines.values().map(|l| l.usage.total_tokens()).sum();
        assert_eq!(total, 51);
        assert_eq!(summary.usage.total_tokens(), 51);

        // The events tell the same story: every problem ends as its line says, having spent in
        // calls what its line records; the unsure were deferred, p3 started again to think.
        for (id, line) in &lines {
            let kinds = events.kinds(id);
            assert_eq!(
                events.call_tokens(id),
                line.usage.total_tokens(),
                "{id}: {kinds:?}"
            );
            assert_eq!(kinds.first(), Some(&EventKind::Started), "{id}");
            assert!(
                matches!(kinds.last(), Some(EventKind::Finished { answer, stop_reason, .. })
                    if *answer == line.answer && Some(*stop_reason) == line.stop_reason),
                "{id}: {kinds:?}"
            );
            let deferred = kinds
                .iter()
                .any(|k| matches!(k, EventKind::Deferred { .. }));
            assert_eq!(deferred, line.triage.is_some(), "{id}: {kinds:?}");
        }
        let p3 = events.kinds("p3");
        assert!(
            matches!(p3.as_slice(), [EventKind::Started, EventKind::Call { .. }, EventKind::Deferred { confidence, .. }, EventKind::Started, EventKind::Call { .. }, EventKind::Finished { .. }] if *confidence == 0.1),
            "{p3:?}"
        );
        assert!(missing.lock().unwrap().is_empty(), "{missing:?}");
    }

    /// Four first stages, three of them unsure (p3, p2, p4 in order of need), then three
    /// failing second stages.
    fn undecided_then_failing() -> Vec<crate::scripted::Reply> {
        use crate::scripted::Reply::{Fail, Text};
        let mut replies: Vec<_> = ["x:0.9", "y:0.2", "z:0.1", "w:0.4"]
            .into_iter()
            .map(|t| Text(t.into()))
            .collect();
        replies.extend((0..3).map(|_| Fail("down".into())));
        replies
    }

    #[tokio::test]
    async fn a_resumed_triage_run_keeps_its_first_stages_and_redoes_only_a_cut_one() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let problems = numbered(4);
        let run = |replies: Vec<crate::scripted::Reply>| {
            let backend = Arc::new(crate::scripted::ScriptedBackend::from_replies(replies));
            let runner = Runner::new(
                Arc::new(TWO_STAGE),
                Arc::clone(&backend) as Arc<dyn Backend>,
            )
            .with_allocation(Allocation::Triage)
            .with_identity(serde_json::json!({ "strategy": "two_stage" }));
            (backend, runner)
        };
        use crate::scripted::Reply::Text;
        let text = |t: &str| Text(t.into());
        // Every second stage fails: three error lines, three first stages kept beside them.
        let (_, runner) = run(undecided_then_failing());
        let summary = runner.run(&problems, &out, |_| {}).await.unwrap();
        assert_eq!((summary.solved, summary.errors), (1, 3));
        let side = triage_path(&out);
        let kept = std::fs::read_to_string(&side).unwrap();
        assert_eq!(kept.lines().count(), 3);
        // A kill while p4's first stage was being written leaves half of its line.
        let (before, p4) = kept.trim_end().rsplit_once('\n').unwrap();
        assert!(p4.contains("\"p4\""));
        std::fs::write(&side, format!("{before}\n{}", &p4[..p4.len() / 2])).unwrap();

        // The resumed run redoes p4's first stage only, then every second stage in order.
        let (backend, runner) = run(vec![text("w:0.4"), text("Z"), text("Y"), text("W")]);
        let summary = runner.run(&problems, &out, |_| {}).await.unwrap();
        assert_eq!(
            prompts(&backend),
            ["Q4?", "think Q3?", "think Q2?", "think Q4?"]
        );
        assert_eq!(
            (summary.resumed, summary.solved, summary.second_stage),
            (1, 3, 3)
        );
        let lines = by_id(&out);
        assert_eq!(lines["p2"].answer.as_deref(), Some("Y"));
        // Its first stage (from the first run) and its second: 8 + 10.
        assert_eq!(lines["p2"].usage.total_tokens(), 8 + 10);
        // Nothing left: a third run makes no call, whatever the side file still holds.
        let (backend, runner) = run(Vec::new());
        let summary = runner.run(&problems, &out, |_| {}).await.unwrap();
        assert_eq!((summary.resumed, summary.solved), (4, 0));
        assert!(backend.requests().is_empty());

        // Results and their record deleted to start over: the stale first stages are refused.
        std::fs::remove_file(&out).unwrap();
        std::fs::remove_file(config_path(&out)).unwrap();
        let (_, runner) = run(Vec::new());
        let err = runner
            .run(&problems, &out, |_| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("r.jsonl.triage.jsonl") && err.contains("delete"),
            "{err}"
        );
    }

    /// A triage run of [`TWO_STAGE`] over `replies`, under a run budget of `budget` tokens.
    fn triage_runner(
        budget: Option<u64>,
        replies: Vec<crate::scripted::Reply>,
    ) -> (Arc<crate::scripted::ScriptedBackend>, Runner) {
        let backend = Arc::new(crate::scripted::ScriptedBackend::from_replies(replies));
        let mut runner = Runner::new(
            Arc::new(TWO_STAGE),
            Arc::clone(&backend) as Arc<dyn Backend>,
        )
        .with_allocation(Allocation::Triage);
        if let Some(tokens) = budget {
            runner = runner.with_run_budget(Budget::unlimited().with_max_tokens(tokens));
        }
        (backend, runner)
    }

    #[tokio::test]
    async fn a_resumed_triage_run_counts_what_its_files_record_against_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let problems = numbered(4);
        use crate::scripted::Reply::Text;
        let text = |t: &str| Text(t.into());
        let (_, runner) = triage_runner(None, undecided_then_failing());
        runner.run(&problems, &out, |_| {}).await.unwrap();
        // As if p2's second stage had finished in a run killed right after: its line counts
        // both stages (8 + 10), so its kept first stage must not count again.
        let p2 = ResultLine {
            id: "p2".into(),
            strategy: "two_stage".into(),
            answer: Some("Y".into()),
            reference: None,
            correct: None,
            usage: Usage {
                prompt_tokens: 12,
                completion_tokens: 6,
                calls: 2,
                ..Usage::default()
            },
            stop_reason: Some(StopReason::Completed),
            details: serde_json::Value::Null,
            completion: "Y".into(),
            error: None,
            allotted: None,
            triage: None,
            question_sha: None,
            cut_short: false,
            candidates: None,
            attempt: None,
        };
        let mut text_out = std::fs::read_to_string(&out).unwrap();
        text_out.push_str(&serde_json::to_string(&p2).unwrap());
        text_out.push('\n');
        std::fs::write(&out, text_out).unwrap();
        // What the run below counts against its budget, as `ponder run`'s progress shows it.
        let recorded =
            recorded_spend(&out, &read_results(&out).unwrap(), Allocation::Triage).unwrap();
        assert_eq!(recorded.total_tokens(), 8 + 18 + 8 + 8);
        // Recorded: p1 8, p2 18, the first stages of p3 and p4 8 each; 19 more pay for exactly
        // p3's second stage. (Not counting the kept first stages would leave room for p4's
        // too; counting p2's twice would cut p3's.)
        let (backend, runner) = triage_runner(Some(8 + 18 + 8 + 8 + 19), vec![text("0123456789")]);
        let summary = runner.run(&problems, &out, |_| {}).await.unwrap();
        assert_eq!(prompts(&backend), ["think Q3?"]);
        assert_eq!((summary.second_stage, summary.first_only), (1, 1));
        let lines = by_id(&out);
        assert_eq!(lines["p3"].answer.as_deref(), Some("0123456789"));
        assert_eq!(lines["p3"].stop_reason, Some(StopReason::Completed));
        assert_eq!(lines["p4"].answer.as_deref(), Some("w"));
        assert_eq!(lines["p4"].stop_reason, Some(StopReason::TokenBudget));
    }

    #[tokio::test]
    async fn a_triage_first_stage_the_run_budget_cuts_records_its_spend_once() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let problems = numbered(4);
        let run = |budget: Option<u64>, replies: Vec<&str>| {
            let replies = replies
                .into_iter()
                .map(|t| crate::scripted::Reply::Text(t.into()))
                .collect();
            triage_runner(budget, replies)
        };
        // First stages cost 3 prompt + 5 completion tokens. 22 pay for two and shorten the
        // third to 3 completion tokens ("z:0"): it is cut, the fourth never starts.
        let (backend, runner) = run(Some(22), vec!["x:0.9", "y:0.2", "z:0.1"]);
        let summary = runner.run(&problems, &out, |_| {}).await.unwrap();
        assert_eq!(prompts(&backend), ["Q1?", "Q2?", "Q3?"]);
        assert_eq!(
            (summary.solved, summary.first_only, summary.cut_short),
            (2, 1, 1),
            "p2 keeps its first answer: the run cannot pay for its second stage"
        );
        let lines = read_results(&out).unwrap();
        let cut: Vec<(&str, bool, u64)> = lines
            .iter()
            .map(|l| (l.id.as_str(), l.cut_short, l.usage.total_tokens()))
            .collect();
        assert_eq!(cut, [("p1", false, 8), ("p3", true, 6), ("p2", false, 8)]);
        let recorded =
            recorded_spend(&out, &read_results(&out).unwrap(), Allocation::Triage).unwrap();
        assert_eq!(recorded.total_tokens(), 22);

        // The same budget again: all 22 are spent (8 + 8 + 6 cut), so no call is made.
        let (backend, runner) = run(Some(22), Vec::new());
        let summary = runner.run(&problems, &out, |_| {}).await.unwrap();
        assert!(backend.requests().is_empty());
        assert_eq!(
            (summary.resumed, summary.solved, summary.not_started),
            (2, 0, 2)
        );

        // Unlimited: p3 and p4 from their first stages, thinking where unsure.
        let (backend, runner) = run(None, vec!["z:0.9", "w:0.9"]);
        let summary = runner.run(&problems, &out, |_| {}).await.unwrap();
        assert_eq!(prompts(&backend), ["Q3?", "Q4?"]);
        assert_eq!((summary.resumed, summary.solved), (2, 2));
        let lines = by_id(&out);
        assert_eq!(lines["p3"].answer.as_deref(), Some("z"));
        assert!(!lines["p3"].cut_short);
    }

    /// Second stages (prompts starting `think`) take a moment; first stages none.
    struct SlowThinking(crate::scripted::ScriptedBackend);

    #[async_trait::async_trait]
    impl Backend for SlowThinking {
        async fn generate(
            &self,
            request: crate::backend::GenerationRequest,
        ) -> Result<crate::backend::Generation> {
            if crate::scripted::ScriptedBackend::render(&request.prompt).starts_with("think") {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            self.0.generate(request).await
        }

        fn capabilities(&self) -> crate::backend::Capabilities {
            self.0.capabilities()
        }

        async fn tokenize(&self, input: crate::backend::TokenizeInput<'_>) -> Result<Vec<u32>> {
            self.0.tokenize(input).await
        }

        async fn detokenize(&self, ids: &[u32]) -> Result<String> {
            self.0.detokenize(ids).await
        }
    }

    #[tokio::test]
    async fn a_second_stage_that_does_not_fit_beside_reservations_waits_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let backend = Arc::new(SlowThinking(crate::scripted::ScriptedBackend::new([
            "x:0.9", "y:0.2", "z:0.1", "w:0.4", "A", "B", "C",
        ])));
        let events = crate::scripted::Recorder::new();
        let (sink, missing) = line_before_end(&events, &out);
        // First stages 32 tokens; then 47. A second stage reserves 9 + 30 and spends 9 + 1:
        // while p3's is in flight only 8 are free, less than p2's prompt, but once it is done
        // there is room for p2's and then p4's.
        let summary = Runner::new(
            Arc::new(TwoStage { think_tokens: 30 }),
            Arc::clone(&backend) as Arc<dyn Backend>,
        )
        .with_concurrency(2)
        .with_run_budget(Budget::unlimited().with_max_tokens(32 + 47))
        .with_allocation(Allocation::Triage)
        .with_events(sink)
        .run(&numbered(4), &out, |_| {})
        .await
        .unwrap();
        assert_eq!(
            prompts(&backend.0),
            [
                "Q1?",
                "Q2?",
                "Q3?",
                "Q4?",
                "think Q3?",
                "think Q2?",
                "think Q4?"
            ]
        );
        assert_eq!((summary.second_stage, summary.first_only), (3, 0));
        let lines = by_id(&out);
        for (id, answer) in [("p3", "A"), ("p2", "B"), ("p4", "C")] {
            assert_eq!(lines[id].answer.as_deref(), Some(answer), "{id}");
            assert!(lines[id].triage.as_ref().is_some_and(|t| t.second_stage));
        }
        assert_eq!(summary.usage.total_tokens(), 32 + 30);
        // p2's events say its call, which did not fit beside p3's reservation, waited in the
        // meter for p3's thought to settle, then thought in what was left (shortened: said so).
        let names: Vec<String> = events
            .kinds("p2")
            .iter()
            .map(|k| {
                serde_json::to_value(k).unwrap()["event"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            ["started", "call", "deferred", "started", "limited", "call", "finished"]
        );
        assert!(missing.lock().unwrap().is_empty(), "{missing:?}");
    }

    /// A strategy in as many stages as it takes: each stage one call answering
    /// `answer:confidence`, asking for another below 0.9 (prompts `Q?`, then `more Q?`).
    struct Steps;

    #[async_trait::async_trait]
    impl Strategy for Steps {
        fn name(&self) -> &'static str {
            "steps"
        }

        async fn solve(&self, problem: &Problem, cx: &Context) -> Result<Solution> {
            crate::solve_in_stages(self, problem, cx).await
        }

        fn staged(&self) -> Option<&dyn crate::Staged> {
            Some(self)
        }
    }

    impl Steps {
        /// A stage after `so_far` (none: the first).
        async fn stage(
            &self,
            prompt: String,
            so_far: Option<Solution>,
            cx: &Context,
        ) -> Result<crate::Stage> {
            let calls = so_far.as_ref().map_or(0, |s| {
                s.details["calls"].as_u64().expect("the last stage's")
            });
            let text = match cx.backend().generate(text_request(prompt)).await {
                Ok(generation) => generation.into_first_choice()?.text,
                Err(Error::BudgetExhausted { resource }) => {
                    let solution = match so_far {
                        Some(so_far) => Solution {
                            stop_reason: resource.into(),
                            ..so_far
                        },
                        None => Solution::exhausted("steps", resource),
                    };
                    return Ok(crate::Stage {
                        solution,
                        pending: None,
                    });
                }
                Err(e) => return Err(e),
            };
            let (answer, confidence) = text.split_once(':').expect("answer:confidence");
            let confidence: f64 = confidence.parse().expect("a confidence");
            let mut solution =
                Solution::single("steps", candidate(answer, &text), StopReason::Completed);
            solution.details = serde_json::json!({ "calls": calls + 1 });
            Ok(crate::Stage {
                solution,
                pending: (confidence < 0.9).then(|| crate::Pending {
                    confidence,
                    why: format!("confidence {confidence}"),
                }),
            })
        }
    }

    #[async_trait::async_trait]
    impl crate::Staged for Steps {
        async fn first(&self, problem: &Problem, cx: &Context) -> Result<crate::Stage> {
            self.stage(problem.question.clone(), None, cx).await
        }

        async fn next(
            &self,
            problem: &Problem,
            so_far: Solution,
            cx: &Context,
        ) -> Result<crate::Stage> {
            self.stage(format!("more {}", problem.question), Some(so_far), cx)
                .await
        }
    }

    fn steps_runner(
        replies: &[&str],
        budget: Option<u64>,
    ) -> (Arc<crate::scripted::ScriptedBackend>, Runner) {
        let backend = Arc::new(crate::scripted::ScriptedBackend::new(
            replies.iter().copied(),
        ));
        let mut runner = Runner::new(Arc::new(Steps), Arc::clone(&backend) as Arc<dyn Backend>)
            .with_allocation(Allocation::Triage);
        if let Some(tokens) = budget {
            runner = runner.with_run_budget(Budget::unlimited().with_max_tokens(tokens));
        }
        (backend, runner)
    }

    #[tokio::test]
    async fn triage_goes_on_a_stage_at_a_time_by_need_fewest_stages_first_among_equals() {
        // p1 and p2 are as unsure after their first stage; p3 is settled. p1 goes first (file
        // order) and stays at 0.5: p2, as unsure with fewer stages, goes next; it rises to 0.75,
        // so p1 is the least sure again.
        let replies = [
            "a:0.5", "b:0.5", "c:0.95", "a:0.5", "b:0.75", "a:0.95", "b:0.95",
        ];
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let (backend, runner) = steps_runner(&replies, None);
        let summary = runner.run(&numbered(3), &out, |_| {}).await.unwrap();
        assert_eq!(
            prompts(&backend),
            ["Q1?", "Q2?", "Q3?", "more Q1?", "more Q2?", "more Q1?", "more Q2?"]
        );
        assert_eq!(
            (summary.solved, summary.second_stage, summary.later_stages),
            (3, 2, 4)
        );
        let lines = by_id(&out);
        for id in ["p1", "p2"] {
            let line = &lines[id];
            assert_eq!(line.usage.calls, 3, "{id}: every stage counted once");
            assert_eq!(
                line.details["calls"], 3,
                "{id}: each stage went on from the last"
            );
            let note = line.triage.as_ref().unwrap();
            assert_eq!(
                (note.stages, note.second_stage, note.confidence),
                (3, true, 0.5),
                "{id}: the note keeps the first stage's confidence"
            );
        }
        // Stages 8 + 13 + 14 bytes (prompt and reply).
        assert_eq!(lines["p1"].usage.total_tokens(), 8 + 13 + 14);
        assert_eq!(lines["p3"].triage, None);
        // The side file holds each stage that asked for more: two first stages, two later.
        let side = std::fs::read_to_string(triage_path(&out)).unwrap();
        assert_eq!(side.lines().count(), 4);

        // A budget for the first stages (8 + 8 + 9) and two later ones (13 + 14), with 4 left
        // (less than a prompt): p1 and p2 get one more stage each, not p1 two, and keep its
        // answer, stopped by the budget.
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let (backend, runner) = steps_runner(&replies, Some(25 + 13 + 14 + 4));
        let summary = runner.run(&numbered(3), &out, |_| {}).await.unwrap();
        assert_eq!(
            prompts(&backend),
            ["Q1?", "Q2?", "Q3?", "more Q1?", "more Q2?"]
        );
        assert_eq!(
            (
                summary.second_stage,
                summary.later_stages,
                summary.first_only
            ),
            (2, 2, 0)
        );
        let lines = by_id(&out);
        for (id, answer) in [("p1", "a"), ("p2", "b")] {
            let line = &lines[id];
            assert_eq!(line.answer.as_deref(), Some(answer));
            assert_eq!(line.stop_reason, Some(StopReason::TokenBudget), "{id}");
            assert_eq!(line.usage.calls, 2, "{id}");
            assert_eq!(line.triage.as_ref().map(|t| t.stages), Some(2), "{id}");
        }
        assert_eq!(summary.usage.total_tokens(), 25 + 13 + 14);
    }

    #[tokio::test]
    async fn a_resumed_triage_run_goes_on_from_each_problems_last_recorded_stage() {
        use crate::scripted::Reply::{Fail, Text};
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let problems = numbered(2);
        // p1's second stage is recorded (asking for more); then every call fails.
        let backend = Arc::new(crate::scripted::ScriptedBackend::from_replies(
            ["a:0.5", "b:0.6", "a:0.5"]
                .into_iter()
                .map(|t| Text(t.into()))
                .chain((0..2).map(|_| Fail("down".into())))
                .collect::<Vec<_>>(),
        ));
        let summary = Runner::new(Arc::new(Steps), Arc::clone(&backend) as Arc<dyn Backend>)
            .with_allocation(Allocation::Triage)
            .run(&problems, &out, |_| {})
            .await
            .unwrap();
        assert_eq!(
            prompts(&backend),
            ["Q1?", "Q2?", "more Q1?", "more Q1?", "more Q2?"]
        );
        assert_eq!(summary.errors, 2);
        assert_eq!(
            std::fs::read_to_string(triage_path(&out))
                .unwrap()
                .lines()
                .count(),
            3
        );

        // Resumed: p1 from its second stage (the least sure, first), p2 from its first; no
        // stage done twice.
        let (backend, runner) = steps_runner(&["a:0.95", "b:0.95"], None);
        let summary = runner.run(&problems, &out, |_| {}).await.unwrap();
        assert_eq!(prompts(&backend), ["more Q1?", "more Q2?"]);
        assert_eq!((summary.solved, summary.later_stages), (2, 3));
        let lines = by_id(&out);
        assert_eq!(lines["p1"].answer.as_deref(), Some("a"));
        assert_eq!(lines["p1"].usage.calls, 3);
        assert_eq!(lines["p1"].details["calls"], 3);
        assert_eq!(lines["p1"].usage.total_tokens(), 8 + 13 + 14);
        assert_eq!(lines["p2"].usage.calls, 2);
        assert_eq!(lines["p2"].triage.as_ref().map(|t| t.stages), Some(2));
    }

    #[tokio::test]
    async fn triage_needs_a_staged_strategy() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(crate::scripted::ScriptedBackend::new(["1"]));
        let err = Runner::new(Arc::new(OneCall), backend as Arc<dyn Backend>)
            .with_allocation(Allocation::Triage)
            .run(&numbered(1), &dir.path().join("r.jsonl"), |_| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("one_call") && err.contains("first stage"),
            "{err}"
        );
    }

    #[test]
    fn a_problem_that_spent_past_its_share_takes_the_excess_from_the_pool() {
        let mut pool = Pool::new(
            Budget::unlimited().with_max_tokens(100).with_max_calls(4),
            2,
        );
        let share = pool.take();
        assert_eq!((share.max_tokens, share.max_calls), (Some(50), Some(2)));
        // The backend counted 70 tokens where 50 were reserved; one call of two.
        let used = Usage {
            prompt_tokens: 60,
            completion_tokens: 10,
            calls: 1,
            ..Usage::default()
        };
        pool.give_back(&share, &used);
        let last = pool.take();
        assert_eq!((last.max_tokens, last.max_calls), (Some(30), Some(3)));
    }

    /// Fails to grade until `working` is set (a sandbox that cannot start, then can).
    struct FlakyGrader {
        working: AtomicBool,
    }

    #[async_trait::async_trait]
    impl Grader for FlakyGrader {
        async fn grade(&self, _problem: &Problem, _solution: &Solution) -> Result<Option<bool>> {
            if self.working.load(Ordering::Relaxed) {
                Ok(Some(true))
            } else {
                Err(Error::Tool {
                    tool: "sandbox",
                    message: "python3 not found".into(),
                })
            }
        }
    }

    #[tokio::test]
    async fn a_problem_that_could_not_be_graded_is_recorded_failed_and_redone() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let problems = vec![Problem::new("p1", "Q?")];
        let grader = Arc::new(FlakyGrader {
            working: AtomicBool::new(false),
        });
        let run = |replies: Vec<&'static str>| {
            let backend = Arc::new(crate::scripted::ScriptedBackend::new(replies));
            Runner::new(Arc::new(OneCall), backend as Arc<dyn Backend>)
                .with_grader(Arc::clone(&grader) as Arc<dyn Grader>)
        };
        let summary = run(vec!["7"]).run(&problems, &out, |_| {}).await.unwrap();
        assert_eq!((summary.solved, summary.errors), (0, 1));
        let lines = read_results(&out).unwrap();
        assert_eq!(
            lines[0].answer.as_deref(),
            Some("7"),
            "what it found is kept"
        );
        assert_eq!(lines[0].correct, None);
        let error = lines[0].error.as_deref().unwrap();
        assert!(
            error.starts_with("grading: ") && error.contains("python3 not found"),
            "{error}"
        );

        grader.working.store(true, Ordering::Relaxed);
        let summary = run(vec!["7"]).run(&problems, &out, |_| {}).await.unwrap();
        assert_eq!(
            (summary.resumed, summary.solved, summary.correct),
            (0, 1, 1)
        );
        assert_eq!(
            read_results(&out).unwrap().last().unwrap().correct,
            Some(true)
        );
    }

    /// Answers "6" among the candidates "5", "6", "5", without a call.
    struct ThreeCandidates;

    #[async_trait::async_trait]
    impl Strategy for ThreeCandidates {
        fn name(&self) -> &'static str {
            "three"
        }

        async fn solve(&self, _problem: &Problem, _cx: &Context) -> Result<Solution> {
            let candidate = |a: &str| crate::solution::Candidate {
                answer: Some(a.into()),
                text: format!("it is {a}"),
                score: None,
                tokens: 1,
            };
            Ok(Solution {
                answer: Some("6".into()),
                candidates: vec![candidate("5"), candidate("6"), candidate("5")],
                ..Solution::single("three", candidate("6"), StopReason::Completed)
            })
        }
    }

    /// Grades a solution with candidates (the one chosen) as [`MathGrader`] does, and fails on
    /// one without (a candidate graded alone).
    struct ChosenOnly;

    #[async_trait::async_trait]
    impl Grader for ChosenOnly {
        async fn grade(&self, problem: &Problem, solution: &Solution) -> Result<Option<bool>> {
            if solution.candidates.is_empty() {
                return Err(Error::Tool {
                    tool: "sandbox",
                    message: "out of processes".into(),
                });
            }
            crate::grader::MathGrader.grade(problem, solution).await
        }
    }

    #[tokio::test]
    async fn a_line_records_how_its_candidates_grade_and_a_failure_there_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let problems = vec![Problem::new("p1", "2 + 3?").with_reference("5")];
        let backend = || Arc::new(crate::scripted::ScriptedBackend::new(Vec::<&str>::new()));
        let out = dir.path().join("r.jsonl");
        Runner::new(Arc::new(ThreeCandidates), backend() as Arc<dyn Backend>)
            .run(&problems, &out, |_| {})
            .await
            .unwrap();
        let line = read_results(&out).unwrap().pop().unwrap();
        // The wrong answer was chosen though two of three candidates were right.
        assert_eq!(line.correct, Some(false));
        assert_eq!(
            line.candidates,
            Some(CandidateGrades {
                graded: 3,
                right: 2
            })
        );
        // Grading the candidates failed: the line stands, without their grades.
        let out = dir.path().join("r2.jsonl");
        let summary = Runner::new(Arc::new(ThreeCandidates), backend() as Arc<dyn Backend>)
            .with_grader(Arc::new(ChosenOnly))
            .run(&problems, &out, |_| {})
            .await
            .unwrap();
        assert_eq!((summary.solved, summary.errors), (1, 0));
        let line = read_results(&out).unwrap().pop().unwrap();
        assert_eq!((line.correct, line.candidates), (Some(false), None));
    }

    #[test]
    fn a_half_written_line_after_crlf_lines_cuts_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let full = format!("{}\r\n{}\r\n", line("a"), line("b"));
        std::fs::write(&path, format!("{full}{{\"id\": \"c\"\r")).unwrap();
        assert_eq!(read_results(&path).unwrap().len(), 2);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), full);
    }

    #[test]
    fn damage_in_the_middle_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        std::fs::write(&path, format!("{}\nnot json\n{}\n", line("a"), line("b"))).unwrap();
        let err = read_results(&path).unwrap_err().to_string();
        assert!(err.contains("r.jsonl:2:"), "{err}");
    }

    #[test]
    fn a_whole_last_line_without_its_newline_is_kept_and_ended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        // Edited by hand, or written by `jq`: every line whole, the last without its newline.
        let text = format!("{}\n{}", line("a"), line("b"));
        std::fs::write(&path, &text).unwrap();
        let (lines, half_written) = peek_results(&path).unwrap();
        assert_eq!((lines.len(), half_written), (2, false));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "only read");
        let lines = read_results(&path).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].id, "b");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{text}\n"),
            "its newline added, nothing cut"
        );
    }

    #[tokio::test]
    async fn a_resumed_run_keeps_a_last_line_without_its_newline_and_writes_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        std::fs::write(&out, line("p1")).unwrap();
        let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["4"]));
        let summary = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
            .run(&numbered(2), &out, |_| {})
            .await
            .unwrap();
        assert_eq!((summary.resumed, summary.solved), (1, 1));
        assert_eq!(prompts(&backend), ["Q2?"]);
        let lines = by_id(&out);
        assert_eq!(lines.keys().collect::<Vec<_>>(), ["p1", "p2"]);
    }

    #[tokio::test]
    async fn a_triage_side_file_whose_last_line_lacks_its_newline_keeps_that_stage() {
        use crate::scripted::Reply::Text;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let problems = numbered(4);
        let (_, runner) = triage_runner(None, undecided_then_failing());
        runner.run(&problems, &out, |_| {}).await.unwrap();
        let side = triage_path(&out);
        let kept = std::fs::read_to_string(&side).unwrap();
        assert_eq!(kept.lines().count(), 3);
        std::fs::write(&side, kept.trim_end()).unwrap();
        // Read only: p4's first stage (8 tokens) counts, the file is left as it is.
        let recorded =
            recorded_spend(&out, &read_results(&out).unwrap(), Allocation::Triage).unwrap();
        assert_eq!(recorded.total_tokens(), 8 * 4);
        assert_eq!(std::fs::read_to_string(&side).unwrap(), kept.trim_end());
        // Resumed: no first stage is done again, and the side file's last line is ended.
        let text = |t: &str| Text(t.into());
        let (backend, runner) = triage_runner(None, vec![text("Z:0.9"), text("Y"), text("W")]);
        let summary = runner.run(&problems, &out, |_| {}).await.unwrap();
        assert_eq!(prompts(&backend), ["think Q3?", "think Q2?", "think Q4?"]);
        assert_eq!(summary.solved, 3);
        assert_eq!(std::fs::read_to_string(&side).unwrap(), kept);
    }

    #[tokio::test]
    async fn a_refused_resume_leaves_the_results_and_side_files_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let problems = numbered(4);
        let runner = |identity: &str, replies| {
            let (backend, runner) = triage_runner(None, replies);
            let runner = runner.with_identity(serde_json::json!({ "strategy": identity }));
            (backend, runner)
        };
        let (_, first) = runner("two_stage", undecided_then_failing());
        first.run(&problems, &out, |_| {}).await.unwrap();
        // A kill left half a line in each file.
        let side = triage_path(&out);
        for path in [&out, &side] {
            let mut text = std::fs::read_to_string(path).unwrap();
            text.push_str("{\"id\": \"p");
            std::fs::write(path, text).unwrap();
        }
        let files = || [&out, &side].map(|p| std::fs::read_to_string(p).unwrap());
        let before = files();

        // Another configuration: refused, and neither file is cut.
        let (backend, other) = runner("other", Vec::new());
        let err = other
            .run(&problems, &out, |_| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("strategy"), "{err}");
        assert!(backend.requests().is_empty());
        assert_eq!(files(), before);

        // Another question under a recorded id: refused, and neither file is cut.
        let mut moved = problems.clone();
        moved[2] = Problem::new("p3", "New?");
        let (backend, same) = runner("two_stage", Vec::new());
        let err = same
            .run(&moved, &out, |_| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("`p3` to another question"), "{err}");
        assert!(backend.requests().is_empty());
        assert_eq!(files(), before);

        // The same run resumed: the half lines are cut, the kept stages go on.
        use crate::scripted::Reply::Text;
        let (backend, same) = runner(
            "two_stage",
            ["Z", "Y", "W"].map(|t| Text(t.into())).to_vec(),
        );
        let summary = same.run(&problems, &out, |_| {}).await.unwrap();
        assert_eq!(summary.solved, 3);
        assert_eq!(prompts(&backend).len(), 3);
        assert!(!std::fs::read_to_string(&side)
            .unwrap()
            .contains("{\"id\": \"p\n"));
        assert_eq!(by_id(&out).len(), 4);
    }

    #[tokio::test]
    async fn a_triage_stage_kept_for_another_question_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let problems = numbered(4);
        let (_, runner) = triage_runner(None, undecided_then_failing());
        runner.run(&problems, &out, |_| {}).await.unwrap();
        // As if killed after the first stages: p1's answer, p2 to p4 waiting beside it.
        let p1 = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .find(|l| l.contains("\"p1\""))
            .unwrap()
            .to_string();
        std::fs::write(&out, format!("{p1}\n")).unwrap();
        let side = triage_path(&out);
        let kept = std::fs::read(&side).unwrap();

        let mut moved = problems.clone();
        moved[2] = Problem::new("p3", "New?");
        let (backend, runner) = triage_runner(None, Vec::new());
        let err = runner
            .run(&moved, &out, |_| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("r.jsonl.triage.jsonl") && err.contains("`p3` to another question"),
            "{err}"
        );
        assert!(backend.requests().is_empty(), "no stage went on");
        assert_eq!(std::fs::read(&side).unwrap(), kept);
    }

    #[tokio::test]
    async fn the_run_budget_counts_every_line_of_its_file_whatever_the_problems() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let problems = numbered(3);
        // Each call is 3 prompt + 10 completion tokens: the first invocation spends 26 of 26.
        let run = |replies: Vec<&'static str>| {
            let backend = Arc::new(crate::scripted::ScriptedBackend::new(replies));
            let runner = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
                .with_run_budget(Budget::unlimited().with_max_tokens(26));
            (backend, runner)
        };
        let (_, runner) = run(vec!["0123456789"; 2]);
        let summary = runner.run(&problems[..2], &out, |_| {}).await.unwrap();
        assert_eq!(summary.solved, 2);
        // Another slice of the set on the same file: the job's budget is spent.
        let recorded =
            recorded_spend(&out, &read_results(&out).unwrap(), Allocation::FirstCome).unwrap();
        assert_eq!(recorded.total_tokens(), 26);
        let (backend, runner) = run(vec!["0123456789"]);
        let summary = runner.run(&problems[2..], &out, |_| {}).await.unwrap();
        assert!(backend.requests().is_empty());
        assert_eq!((summary.solved, summary.not_started), (0, 1));
    }

    #[tokio::test]
    async fn a_triage_runs_budget_counts_kept_stages_of_problems_not_in_the_set() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let (_, runner) = triage_runner(None, undecided_then_failing());
        runner.run(&numbered(4), &out, |_| {}).await.unwrap();
        // p1's answer and the first stages kept for p2 to p4, 8 tokens each.
        let recorded =
            recorded_spend(&out, &read_results(&out).unwrap(), Allocation::Triage).unwrap();
        assert_eq!(recorded.total_tokens(), 8 * 4);
        let (backend, runner) = triage_runner(
            Some(8 * 4),
            vec![crate::scripted::Reply::Text("v:0.9".into())],
        );
        let p5 = [Problem::new("p5", "Q5?")];
        let summary = runner.run(&p5, &out, |_| {}).await.unwrap();
        assert!(backend.requests().is_empty());
        assert_eq!(summary.not_started, 1);
    }

    /// Answers its first `answer` calls from `inner`, then hangs (a slow model mid-call), saying
    /// so through `hung`.
    struct HangAfter {
        inner: crate::scripted::ScriptedBackend,
        answer: usize,
        calls: std::sync::atomic::AtomicUsize,
        hung: Arc<tokio::sync::Notify>,
    }

    #[async_trait::async_trait]
    impl Backend for HangAfter {
        async fn generate(
            &self,
            request: crate::backend::GenerationRequest,
        ) -> Result<crate::backend::Generation> {
            if self.calls.fetch_add(1, Ordering::SeqCst) >= self.answer {
                self.hung.notify_one();
                futures::future::pending::<()>().await;
            }
            self.inner.generate(request).await
        }

        fn capabilities(&self) -> crate::backend::Capabilities {
            self.inner.capabilities()
        }
    }

    /// [`OneCall`] twice; the second call's answer stands.
    struct CallTwice;

    #[async_trait::async_trait]
    impl Strategy for CallTwice {
        fn name(&self) -> &'static str {
            "call_twice"
        }

        async fn solve(&self, problem: &Problem, cx: &Context) -> Result<Solution> {
            OneCall.solve(problem, cx).await?;
            OneCall.solve(problem, cx).await
        }
    }

    fn ledger_lines(out: &Path) -> Vec<ledger::Entry> {
        ledger::scan(out).unwrap().0
    }

    #[tokio::test]
    async fn what_a_problem_killed_in_flight_spent_counts_against_the_resumed_runs_budget() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let problems = numbered(3);
        // p1's first call (3 prompt + 10 completion tokens) comes back; its second never does,
        // and the run is dropped (killed) there: no line records the 13 tokens.
        let hung = Arc::new(tokio::sync::Notify::new());
        let backend = HangAfter {
            inner: crate::scripted::ScriptedBackend::new(vec!["0123456789"]),
            answer: 1,
            calls: std::sync::atomic::AtomicUsize::new(0),
            hung: Arc::clone(&hung),
        };
        let runner = Runner::new(Arc::new(CallTwice), Arc::new(backend));
        tokio::select! {
            done = runner.run(&problems, &out, |_| {}) => panic!("the run ended: {done:?}"),
            () = hung.notified() => {}
        }
        drop(runner);
        assert!(read_results(&out).unwrap().is_empty());
        let calls = ledger_lines(&out);
        assert_eq!(calls.len(), 1);
        assert_eq!(
            (calls[0].id.as_str(), calls[0].usage.total_tokens()),
            ("p1", 13)
        );
        assert_eq!(calls[0].usage.calls, 1);
        let recorded = recorded_spend(&out, &[], Allocation::FirstCome).unwrap();
        assert_eq!((recorded.total_tokens(), recorded.calls), (13, 1));

        // A run of 26 tokens has 13 left: p1 (13 again), and nothing for p2. (Without the
        // ledger p2 would be solved too, and the job spend 39.)
        let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["0123456789"; 3]));
        let summary = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
            .with_run_budget(Budget::unlimited().with_max_tokens(26))
            .run(&problems, &out, |_| {})
            .await
            .unwrap();
        assert_eq!((summary.solved, summary.not_started), (1, 2));
        assert_eq!(prompts(&backend), ["Q1?"]);
        let lines = read_results(&out).unwrap();
        let recorded = recorded_spend(&out, &lines, Allocation::FirstCome).unwrap();
        assert_eq!(recorded.total_tokens(), 26);
        assert_eq!(ledger_lines(&out).len(), 2);
    }

    #[tokio::test]
    async fn the_calls_of_a_problem_with_a_line_are_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let problems = numbered(3);
        let run = |budget: u64| {
            let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["0123456789"; 3]));
            let runner = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
                .with_run_budget(Budget::unlimited().with_max_tokens(budget));
            (backend, runner)
        };
        let (_, runner) = run(26);
        let summary = runner.run(&problems, &out, |_| {}).await.unwrap();
        assert_eq!((summary.solved, summary.not_started), (2, 1));
        // Each line names the attempt whose call the ledger records.
        let lines = read_results(&out).unwrap();
        let calls = ledger_lines(&out);
        assert_eq!(calls.len(), 2);
        for (line, call) in lines.iter().zip(&calls) {
            assert_eq!((line.attempt, &line.id), (Some(call.attempt), &call.id));
            assert_eq!(line.usage.total_tokens(), call.usage.total_tokens());
        }
        let recorded = recorded_spend(&out, &lines, Allocation::FirstCome).unwrap();
        assert_eq!(recorded.total_tokens(), 26);
        // 13 more pay for p3 (counting p1's and p2's calls twice would leave none).
        let (backend, runner) = run(39);
        let summary = runner.run(&problems, &out, |_| {}).await.unwrap();
        assert_eq!((summary.resumed, summary.solved), (2, 1));
        assert_eq!(prompts(&backend), ["Q3?"]);
    }

    #[tokio::test]
    async fn a_results_file_without_a_ledger_resumes_and_a_half_written_ledger_line_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        // Written before the ledger: lines without attempts, no ledger beside them.
        let old = ResultLine {
            usage: Usage {
                prompt_tokens: 3,
                completion_tokens: 10,
                calls: 1,
                ..Usage::default()
            },
            ..serde_json::from_str(&line("p1")).unwrap()
        };
        std::fs::write(&out, format!("{}\n", serde_json::to_string(&old).unwrap())).unwrap();
        let ledger = spend_path(&out);
        assert!(!ledger.exists());
        let recorded =
            recorded_spend(&out, &read_results(&out).unwrap(), Allocation::FirstCome).unwrap();
        assert_eq!(recorded.total_tokens(), 13);
        let run = |budget: u64| {
            let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["0123456789"; 2]));
            let runner = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
                .with_run_budget(Budget::unlimited().with_max_tokens(budget));
            (backend, runner)
        };
        let (backend, runner) = run(26);
        let summary = runner.run(&numbered(3), &out, |_| {}).await.unwrap();
        assert_eq!(
            (summary.resumed, summary.solved, summary.not_started),
            (1, 1, 1)
        );
        assert_eq!(prompts(&backend), ["Q2?"]);
        // A kill while writing a ledger line leaves half of it: cut off, the next line whole.
        let mut text = std::fs::read_to_string(&ledger).unwrap();
        assert_eq!(text.lines().count(), 1);
        text.push_str("{\"id\": \"p3\", \"attem");
        std::fs::write(&ledger, &text).unwrap();
        let (backend, runner) = run(39);
        let summary = runner.run(&numbered(3), &out, |_| {}).await.unwrap();
        assert_eq!(summary.solved, 1);
        assert_eq!(prompts(&backend), ["Q3?"]);
        let calls = ledger_lines(&out);
        assert_eq!(
            calls.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["p2", "p3"]
        );
        let recorded =
            recorded_spend(&out, &read_results(&out).unwrap(), Allocation::FirstCome).unwrap();
        assert_eq!(recorded.total_tokens(), 39);
    }
}
