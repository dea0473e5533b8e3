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

mod files;
mod identity;
mod ledger;
mod sink;
mod spend;
mod triage;

pub use files::{
    config_path, default_out_path, peek_results, read_results, spend_path, triage_path,
};
pub use spend::recorded_spend;

use files::{repair, scan_results};
use sink::{problem_events, Outcome, Sink};
use spend::{less_spent, run_exhausted, spent_on, Pool};

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
    /// On a line whose grading failed (a sandbox that could not start, say): the solution's
    /// candidates, so that a resumed run grades the solution again instead of solving the
    /// problem again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_grade: Option<Vec<crate::solution::Candidate>>,
    /// This line grades again the solution an earlier line recorded whose grading failed: its
    /// usage is that line's, spent once (the run's budget counts it there).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grade_retried: bool,
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

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunSummary {
    /// Problems in the set (after `limit`).
    pub total: usize,
    /// Problems already finished in the output file, skipped.
    pub resumed: usize,
    /// Problems solved by this run.
    pub solved: usize,
    /// Problems whose grading had failed, graded by this run (not solved again: their spend
    /// is the earlier run's, in neither `solved` nor `usage`). One whose grading failed again
    /// is in `errors`.
    pub regraded: usize,
    /// Of all finished problems (resumed and new): how many were graded, and how many right.
    pub graded: usize,
    /// Right answers among the graded.
    pub correct: usize,
    /// Problems that failed with an error in this run.
    pub errors: usize,
    /// Problems not started because the run's budget ran out.
    pub not_started: usize,
    /// Problems started but cut short by the run's budget (a call refused or shortened):
    /// recorded without an answer (`cut_short: true` and the error), so a resumed run redoes
    /// them. Their usage is in `usage`.
    pub cut_short: usize,
    /// Usage of this run's problems, summed (elapsed is the sum of per-problem times). Under
    /// [`Allocation::Triage`] a first stage counts with its problem's line, so one that is still
    /// waiting for its second stage when the run stops is not in here yet.
    pub usage: Usage,
    /// Every call this run made, as the spend ledger recorded them: unlike `usage`, not the
    /// calls of earlier runs whose stages a line of this one records (a resumed triage run's
    /// first stages), and the calls of problems that wrote no line (killed, or not yet
    /// recorded) included.
    pub spent: Usage,
    /// Wall time of this run.
    pub wall_ms: u64,
    /// How this run's problems stopped.
    pub stop_reasons: BTreeMap<String, usize>,
    /// Under [`Allocation::Triage`]: problems of this run with a later stage than their first.
    pub second_stage: usize,
    /// Under [`Allocation::Triage`]: the later stages those problems ran, in all.
    pub later_stages: usize,
    /// Under [`Allocation::Triage`]: problems of this run whose first stage asked for the second
    /// but the run's budget, or the problem's own, ran out first; their first stage's answer is
    /// recorded.
    pub first_only: usize,
    /// Set when the inference engine went away during the run ([`Error::EngineGone`]: mistral.rs
    /// could not give an engine) and problems (or later stages) were left: the run started none
    /// after that.
    pub halted: Option<Halt>,
}

/// Why a run stopped starting problems before its set was done, and how many it left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Halt {
    /// The error that stopped it.
    pub error: String,
    /// Problems (and, under [`Allocation::Triage`], later stages) not started after it; a
    /// rerun of the same command resumes them.
    pub not_started: usize,
}

impl RunSummary {
    /// Counts a finished problem's grade, where it has one.
    pub(crate) fn count_grade(&mut self, correct: Option<bool>) {
        if let Some(correct) = correct {
            self.graded += 1;
            self.correct += usize::from(correct);
        }
    }

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
    /// The ids of the whole set where a run is given part of it ([`Runner::with_set`]).
    set: Option<HashSet<String>>,
    /// Set in a run once a problem failed because the inference engine went away: no problem
    /// starts after it, since each would only fail the same way.
    halted: std::sync::Mutex<Option<String>>,
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
    /// A runner solving one problem at a time, unlimited budgets, math grading
    /// ([`crate::MathGrader`], which leaves code problems ungraded: give
    /// `ponder::prm::StandardGrader`, as `ponder run` does, with [`Runner::with_grader`] to run
    /// HumanEval's hidden tests too).
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
            set: None,
            halted: std::sync::Mutex::new(None),
        }
    }

    /// Seeds the sampler of each problem's sampled requests from `seed` and the problem's id
    /// (and its stage after a staged strategy's first, under any allocation: see
    /// [`Context::stage`]), whatever the concurrency: a run repeats its random draws where the
    /// backend takes a per-request seed ([`crate::Seeded`]).
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

    /// The ids of the whole set, where a run is given only part of it (`ponder run --limit`):
    /// under [`Allocation::Even`] each problem's share is then of what the run has left
    /// divided by the set's problems not yet answered (this run's and those left for another
    /// run), so the part run first does not take the budget of the rest. Default: the problems
    /// given. (Answers the results file holds to problems of no set given, another part run
    /// from another file, are not counted either way.)
    pub fn with_set(mut self, ids: impl IntoIterator<Item = String>) -> Self {
        self.set = Some(ids.into_iter().collect());
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
    /// `out` for each; `on_line` sees every line written (for progress display), those of
    /// problems cut short by the run's budget too (`cut_short`, with an `error` saying so).
    pub async fn run(
        &self,
        problems: &[Problem],
        out: &Path,
        on_line: impl FnMut(&ResultLine),
    ) -> Result<RunSummary> {
        let started = Instant::now();
        // A result line is found by its problem's id (to resume, to report): two problems of one
        // id would write two lines that the next run cannot tell apart. A problem file is
        // checked as it is read; problems made in code are checked here.
        let mut first_of: HashMap<&str, usize> = HashMap::new();
        for (index, problem) in problems.iter().enumerate() {
            if let Some(first) = first_of.insert(problem.id.as_str(), index) {
                return Err(Error::ConfigValue {
                    key: "problems".into(),
                    reason: format!(
                        "problems {} and {} (counting from 1) of those given to the run have \
                         the same id `{}`: each problem's result line is found by its id, so \
                         ids must differ",
                        first + 1,
                        index + 1,
                        problem.id
                    ),
                });
            }
        }
        if let Ok(mut halted) = self.halted.lock() {
            *halted = None;
        }
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
        // Its entry in the directory survives a crash of the machine too.
        files::sync_dir(out);
        take_lock(&lock, out)?;
        // Only read until the files are found to belong to this run: one refused leaves them
        // as they were.
        let (previous, results_tail) = scan_results(out)?;
        let (firsts, side_attempts, side_tail) = match staged {
            Some(_) => triage::scan(out)?,
            None => (Vec::new(), HashSet::new(), None),
        };
        let (calls, ledger_tail) = ledger::scan(out)?;
        let wanted: HashMap<&str, &Problem> = problems.iter().map(|p| (p.id.as_str(), p)).collect();
        check_questions(out, &previous, &wanted)?;
        let mut regraded: Vec<&str> = Vec::new();
        for line in &previous {
            if let Some(problem) = wanted.get(line.id.as_str()) {
                // Same question, another reference (the problem file was corrected): the line's
                // grade is against the one it records.
                if line.error.is_none() && line.reference != problem.reference {
                    regraded.push(&line.id);
                }
            }
        }
        if let Some(first) = regraded.first() {
            tracing::warn!(
                "{} result(s) in {} were graded against another reference answer than the \
                 problem file gives now (`{first}`, ...): their `correct` is the old reference's \
                 (`ponder report` counts it so; `ponder report --regrade --problems FILE` \
                 grades them against the new ones)",
                regraded.len(),
                out.display(),
            );
        }
        // A results file none of whose problems is in this set: another slice of one set (a
        // job run in parts, whose budget is the whole file's), or another set altogether
        // (GSM8K's results, SVAMP asked now), which would mix two experiments in one report.
        // Which, only the user knows: said, not refused.
        if !previous.is_empty() && !previous.iter().any(|l| wanted.contains_key(l.id.as_str())) {
            let ids: HashSet<&str> = previous.iter().map(|l| l.id.as_str()).collect();
            tracing::warn!(
                "none of the {} problems {} holds (`{}`, ...) is among the {} asked now: this \
                 run adds to them (fine for another part of one set; another set would mix two \
                 experiments in one file)",
                ids.len(),
                out.display(),
                previous[0].id,
                problems.len()
            );
        }
        if let Some(identity) = &self.identity {
            check_kind_unrecorded(out, identity, &previous)?;
        }
        if let Some(identity) = &self.identity {
            check_identity(
                out,
                identity,
                !previous.is_empty(),
                !firsts.is_empty(),
                !calls.is_empty(),
                true,
            )?;
            // The set: the problems given now and those the file already answers (another
            // part of it, run before).
            let mut set: HashSet<&str> = problems.iter().map(|p| p.id.as_str()).collect();
            set.extend(previous.iter().map(|l| l.id.as_str()));
            identity::record_set(out, set.len())?;
        }
        repair(out, results_tail, files::RESULT_LOST)?;
        repair(
            &triage::path_of(out),
            side_tail,
            "a first stage kept for later (redone unless its problem has a result line)",
        )?;
        repair(
            &ledger::path_of(out),
            ledger_tail,
            "one call's record (where its attempt wrote no result line, that call no longer \
             counts against the run's budget)",
        )?;
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
        // Problems whose last line is a solution its grading failed on: graded again, not
        // solved again.
        // (Not one that answered another question than the problem file asks now: that is a
        // new problem, solved again.)
        let mut regrade: BTreeMap<&str, &ResultLine> = BTreeMap::new();
        for line in previous.iter() {
            let Some(problem) = wanted.get(line.id.as_str()) else {
                continue;
            };
            let same_question = || {
                line.question_sha
                    .as_ref()
                    .is_none_or(|sha| *sha == question_fingerprint(problem))
            };
            if line.error.is_some() && line.to_grade.is_some() && same_question() {
                regrade.insert(line.id.as_str(), line);
            } else {
                regrade.remove(line.id.as_str());
            }
        }
        // What stages kept beside the results (under triage) spent on them: the line graded
        // again costs them too, as it would have had it been graded the first time.
        let kept_spend: HashMap<String, Usage> = firsts
            .iter()
            .filter(|f| regrade.contains_key(f.id.as_str()))
            .map(|f| (f.id.clone(), f.spent()))
            .collect();
        finished.extend(regrade.keys().map(|id| id.to_string()));
        for (id, (answered, correct)) in last {
            if answered {
                summary.resumed += 1;
                summary.count_grade(correct);
                finished.insert(id);
            }
        }
        let todo: Vec<&Problem> = problems
            .iter()
            .filter(|p| !finished.contains(&p.id))
            .collect();
        // The set's problems not yet answered: this run's and, where it was given part of the
        // set, the rest (answered where the file's last line for one answered it).
        let set_left = {
            let mut last_answered: HashMap<&str, bool> = HashMap::new();
            for line in previous.iter() {
                last_answered.insert(line.id.as_str(), line.error.is_none());
            }
            let mut set: HashSet<&str> = problems.iter().map(|p| p.id.as_str()).collect();
            set.extend(self.set.iter().flatten().map(String::as_str));
            set.into_iter()
                .filter(|id| {
                    !finished.contains(*id) && last_answered.get(id).copied() != Some(true)
                })
                .count()
        };
        // First stages recorded for problems not finished yet: not done again, unless the
        // problem asks another question now (fixed after its first stage): done again, the
        // new stage carrying what the old one spent (see `run_triage`).
        let mut stale: HashMap<String, Usage> = HashMap::new();
        let firsts: Vec<triage::SideLine> = firsts
            .into_iter()
            .filter(|f| !finished.contains(&f.id))
            .filter(|f| match wanted.get(f.id.as_str()) {
                None => false,
                Some(problem) if !triage::asks(f, problem) => {
                    stale.insert(f.id.clone(), f.spent());
                    false
                }
                Some(_) => true,
            })
            .collect();
        if let Some(first) = stale.keys().next() {
            tracing::warn!(
                "{} stage(s) kept in {} answered another question than the problem file asks \
                 now (`{first}`, ...): those problems start over",
                stale.len(),
                triage::path_of(out).display(),
            );
        }
        let run_budget = less_spent(self.run_budget, &spent);
        let ledger = Arc::new(ledger::Ledger::open(out)?);
        let lock_for_sync = lock.try_clone().ok();
        let mut sink = Sink {
            file: lock,
            path: out,
            summary,
            on_line,
            started,
            events: self.events.clone(),
            ledger: Arc::clone(&ledger),
            halted: 0,
            synced: files::SyncClock::default(),
            _sync_at_end: sink::SyncOnDrop {
                file: lock_for_sync,
                ledger,
            },
        };
        for (id, line) in regrade {
            let Some(problem) = wanted.get(id) else {
                continue;
            };
            let kept = kept_spend.get(id).copied().unwrap_or_default();
            sink.take(Outcome::Done(self.grade_again(problem, line, kept).await))?;
        }
        let run_meter = Meter::new(run_budget);
        match staged {
            Some(staged) => {
                self.run_triage(staged, &todo, firsts, &stale, &run_meter, &mut sink)
                    .await?;
            }
            None => {
                self.run_shared(&todo, set_left, &run_meter, &mut sink)
                    .await?
            }
        }
        sink.file.sync_data().map_err(|e| Error::io(out, e))?;
        sink.ledger.check()?;
        sink.ledger.sync()?;
        let mut summary = sink.summary;
        summary.halted = self
            .halted_by()
            .filter(|_| sink.halted > 0)
            .map(|error| Halt {
                error,
                not_started: sink.halted,
            });
        summary.spent = sink.ledger.spent();
        summary.wall_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(summary)
    }

    /// The problems of `todo` solved whole, sharing the run's budget first come or evenly (an
    /// even share as if `set_left` problems were to come, where more than `todo`).
    async fn run_shared<F: FnMut(&ResultLine)>(
        &self,
        todo: &[&Problem],
        set_left: usize,
        run_meter: &Arc<Meter>,
        sink: &mut Sink<'_, F>,
    ) -> Result<()> {
        let pool = (self.allocation == Allocation::Even).then(|| {
            std::sync::Mutex::new(Pool::new(run_meter.budget(), todo.len().max(set_left)))
        });
        let pool = &pool;
        let started = sink.started;
        let ledger = &Arc::clone(&sink.ledger);
        let mut results = futures::stream::iter(todo.iter().copied())
            .map(|problem| {
                let meter = Arc::clone(run_meter);
                async move {
                    if self.is_halted() {
                        return Outcome::Halted;
                    }
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
                    if let (Some(pool), Some(share)) = (pool, share.as_ref()) {
                        if share.max_tokens == Some(0)
                            || share.max_completion_tokens == Some(0)
                            || share.max_calls == Some(0)
                        {
                            // Nothing of one kind to start with: the rest of its share goes
                            // back for the problems after it.
                            if let Ok(mut pool) = pool.lock() {
                                pool.give_back(share, &Usage::default());
                            }
                            return Outcome::NotStarted;
                        }
                    }
                    let budget =
                        share.map_or(self.problem_budget, |s| self.problem_budget.tighter(s));
                    // Each problem reaches the backend through the run's shared meter, with a
                    // flag of its own that says whether the run's budget limited one of its calls.
                    let events = self.events_of(problem, started);
                    let (cx, cut, attempt) =
                        self.problem_context(meter, ledger, budget, &events, problem, 0);
                    cx.events().emit("", EventKind::Started);
                    let outcome =
                        unpanicked(self.strategy.solve(problem, &cx))
                            .await
                            .map(|mut s| {
                                crate::strategy::mark_budget_stop(&mut s, &cx);
                                s
                            });
                    let usage = cx.meter().usage();
                    // A failure that is not the budget's is the problem's, whatever the
                    // budget cut before it: recorded as such (and retried), not as cut short.
                    let failed = matches!(&outcome, Err(e) if !e.is_budget());
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
                    // Refused at its first call: the run had less left than it needed, or
                    // its even share could not pay for its prompt (a rerun, with fewer
                    // problems to share among, may).
                    let refused = cut.load(Ordering::Relaxed)
                        || share.as_ref().is_some_and(|share| {
                            line.stop_reason.is_some_and(|reason| {
                                share_binds(share, &self.problem_budget, reason)
                            })
                        });
                    if failed {
                        Outcome::Done(line)
                    } else if refused && line.usage.calls == 0 {
                        // Unrecorded, but its `started` event was sent: it ends as cut.
                        cx.events().emit("", EventKind::Cut);
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
        let events = &events.with_attempt(Some(attempt));
        // Each stage after the first seeded apart, as `Context::stage` seeds a plain solve's.
        let seed = self.seed.map(|seed| match stage {
            0 => crate::seed_for(seed, &problem.id),
            _ => crate::strategy::stage_seed(crate::seed_for(seed, &problem.id), stage),
        });
        let run_meter = Arc::clone(&meter);
        let run: crate::strategy::Metering = {
            let (cut, events, ledger) = (Arc::clone(&cut), events.clone(), Arc::clone(ledger));
            let id = problem.id.clone();
            Arc::new(move |backend| {
                let metered: Arc<dyn Backend> = Arc::new(
                    Metered::with_meter(backend, Arc::clone(&meter))
                        .noting_limits(Arc::clone(&cut))
                        .with_limit_events(events.clone()),
                );
                Arc::new(ledger::Ledgered::new(
                    metered,
                    Arc::clone(&ledger),
                    &id,
                    attempt,
                )) as Arc<dyn Backend>
            })
        };
        let cx = Context::with_events(run(Arc::clone(&self.backend)), budget, events.clone())
            .metered_below(run)
            .within_noting(run_meter, Arc::clone(&cut));
        // Seeded above the problem's meter, as `Context::seeded` seeds a plain solve and
        // `Context::stage` its later stages: the seeds follow the prompts as the strategy sent
        // them (below, a backend with a tokenizer would have them as token ids, other seeds).
        let cx = match seed {
            Some(base) => cx.seeded(base),
            None => cx,
        };
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
            Err(error) => {
                self.note_failure(&error);
                ResultLine {
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
                    to_grade: None,
                    grade_retried: false,
                }
            }
        }
    }

    /// Halts the run if `error` says the inference engine went away: every later problem
    /// would fail the same way, each with a line of its own to redo.
    fn note_failure(&self, error: &Error) {
        if let Error::EngineGone { .. } = error {
            if let Ok(mut halted) = self.halted.lock() {
                if halted.is_none() {
                    let error = error_chain(error);
                    tracing::error!(
                        "{error}: no further problem is started; a rerun of the same command \
                         resumes the run"
                    );
                    *halted = Some(error);
                }
            }
        }
    }

    /// The error that halted this run, once one has.
    fn halted_by(&self) -> Option<String> {
        self.halted.lock().ok().and_then(|h| h.clone())
    }

    /// Whether this run has been halted.
    fn is_halted(&self) -> bool {
        self.halted.lock().is_ok_and(|h| h.is_some())
    }

    /// The line of a solution `line` recorded ungraded (its grading failed), graded now: what it
    /// spent is that line's, and `kept`, what a stage kept beside the results spent on it.
    async fn grade_again(&self, problem: &Problem, line: &ResultLine, kept: Usage) -> ResultLine {
        tracing::info!(problem = %problem.id, "grading again the solution whose grading failed");
        let solution = Solution {
            strategy: line.strategy.clone(),
            answer: line.answer.clone(),
            completion: line.completion.clone(),
            candidates: line.to_grade.clone().unwrap_or_default(),
            stop_reason: line.stop_reason.unwrap_or(StopReason::Completed),
            usage: line.usage + kept,
            details: line.details.clone(),
            trace: None,
        };
        ResultLine {
            attempt: line.attempt,
            allotted: line.allotted,
            triage: line.triage.clone(),
            grade_retried: true,
            ..self.finish(problem, solution).await
        }
    }

    /// The result line of a solution (its usage filled in): its trace written, graded.
    async fn finish(&self, problem: &Problem, mut solution: Solution) -> ResultLine {
        if problem.code.is_some() {
            // A program is graded by its text; a number read out of it or of the prose around
            // it (`direct`, `router`) is not its answer.
            solution.answer = None;
            for candidate in &mut solution.candidates {
                candidate.answer = None;
            }
        }
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
        match unpanicked(self.grader.grade(problem, &solution)).await {
            Ok(correct) => {
                // The chosen answer's grade stands whatever becomes of the others'.
                let candidates = match unpanicked(grade_candidates(
                    self.grader.as_ref(),
                    problem,
                    &solution,
                    correct,
                ))
                .await
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
            // Recorded as failed, with what it found and what to grade, so a resumed run
            // grades it again.
            Err(error) => ResultLine {
                error: Some(format!("grading: {}", error_chain(&error))),
                to_grade: Some(solution.candidates.clone()),
                ..line_for(problem, solution, None)
            },
        }
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
        to_grade: None,
        grade_retried: false,
    }
}

/// An error and its sources, joined with `: `; a source whose message the text already holds
/// (an error that says its cause, as [`Error::Sandbox`] does) is not said twice.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

/// Whether a problem stopped for `reason` ran out of its even `share` rather than of the
/// per-problem budget (`problem`): the share is the tighter limit of what ran out. (A problem
/// whose own budget cannot pay for its prompt is recorded as such, as under first come.)
fn share_binds(share: &Budget, problem: &Budget, reason: StopReason) -> bool {
    let tighter = |share: Option<u64>, problem: Option<u64>| {
        share.is_some_and(|s| problem.is_none_or(|p| s < p))
    };
    match reason {
        StopReason::TokenBudget => tighter(share.max_tokens, problem.max_tokens),
        StopReason::CompletionBudget => {
            tighter(share.max_completion_tokens, problem.max_completion_tokens)
        }
        StopReason::CallBudget => tighter(share.max_calls, problem.max_calls),
        _ => false,
    }
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
/// Its answers (and kept stages) for `problems` answered the questions they ask now.
/// Returns its finished lines (a half-written last line left out, and left in place).
pub fn check_resumable(
    out: &Path,
    identity: &serde_json::Value,
    allocation: Allocation,
    problems: &[Problem],
) -> Result<Vec<ResultLine>> {
    // Another run writing to it now: said before a model loads for nothing. (Let go at once:
    // the run takes the lock for itself.)
    match std::fs::File::open(out) {
        Ok(file) => take_lock(&file, out)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(out, e)),
    }
    let (previous, _) = peek_results(out)?;
    let has_firsts = allocation == Allocation::Triage && !triage::peek(out)?.0.is_empty();
    let has_calls = !ledger::scan(out)?.0.is_empty();
    let wanted: HashMap<&str, &Problem> = problems.iter().map(|p| (p.id.as_str(), p)).collect();
    check_questions(out, &previous, &wanted)?;
    check_kind_unrecorded(out, identity, &previous)?;
    // Checked only: the record is written by the run, under the results file's lock (a run
    // writing to `out` now may not have written a line yet).
    check_identity(
        out,
        identity,
        !previous.is_empty(),
        has_firsts,
        has_calls,
        false,
    )?;
    Ok(previous)
}

/// Takes the results file's lock (one run at a time writes to it), held while `file` is open.
fn take_lock(file: &std::fs::File, out: &Path) -> Result<()> {
    // A few tries over a tenth of a second: `ponder report` takes a shared lock for an instant
    // to see whether a run is writing (a report polled in a loop must not make a run fail to
    // start, its model loaded for nothing). A run holds its lock to the end.
    const TRIES: usize = 5;
    for tried in 1..=TRIES {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if tried < TRIES => {
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            Err(std::fs::TryLockError::WouldBlock) => break,
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(out, e)),
        }
    }
    Err(Error::Config {
        path: out.to_path_buf(),
        message: "another run is writing to it (wait for it, or write to another --out)".into(),
    })
}

/// `solve`'s outcome, a panic in it (a strategy's, a backend's or a grader's defect) being
/// the problem's failure, named and retried by a resumed run, rather than the end of the whole
/// run.
pub(crate) async fn unpanicked<T>(
    solve: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(solve).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(Error::Tool {
                tool: "ponder",
                message: format!("panicked: {message}"),
            })
        }
    }
}

/// Checks that each answer in `previous` (the results file `out`'s lines) for a problem of
/// `wanted` answered the question that problem asks now: a resumed run would otherwise keep an
/// answer to another question. An error line (cut short by the budget, or failed) answered
/// nothing: its problem is asked again as it is now (a question fixed after it failed), as is
/// one whose first stage triage kept for another question.
fn check_questions(
    out: &Path,
    previous: &[ResultLine],
    wanted: &HashMap<&str, &Problem>,
) -> Result<()> {
    for line in previous.iter().filter(|l| l.error.is_none()) {
        if let Some(problem) = wanted.get(line.id.as_str()) {
            check_question(out, "an answer", line.question_sha.as_deref(), problem)?;
        }
    }
    Ok(())
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

/// Results without a record of their configuration beside them (deleted, or copied without
/// it) are assumed to be this run's; the strategy each line names is all there is to check
/// that against, and another one is refused (two experiments would mix in one file).
fn check_kind_unrecorded(
    out: &Path,
    identity: &serde_json::Value,
    previous: &[ResultLine],
) -> Result<()> {
    let side = identity::path_of(out);
    let Some(kind) = identity
        .get("strategy")
        .and_then(|s| s.get("kind"))
        .and_then(serde_json::Value::as_str)
    else {
        return Ok(());
    };
    if side.exists() {
        return Ok(());
    }
    match previous
        .iter()
        .position(|l| !l.strategy.is_empty() && l.strategy != kind)
    {
        Some(at) => Err(Error::Config {
            path: out.to_path_buf(),
            message: format!(
                "holds results of `{}` (problem `{}`'s line, the first) and no record of \
                 their configuration ({}), and this run's strategy is `{kind}`: write to \
                 another --out, or delete it and its side files to start over",
                previous[at].strategy,
                previous[at].id,
                side.display()
            ),
        }),
        None => Ok(()),
    }
}

/// Checks `identity` against the record beside `out` (and, with `record`, records it): `out`
/// has results, or first stages kept beside it (which must have a record to be resumed).
fn check_identity(
    out: &Path,
    identity: &serde_json::Value,
    has_results: bool,
    has_firsts: bool,
    has_calls: bool,
    record: bool,
) -> Result<()> {
    if has_firsts {
        triage::check_recorded(out)?;
    }
    identity::check_or_record(out, identity, has_results || has_firsts, has_calls, record)
}

pub use identity::PROBLEMS_IN_SET;

#[cfg(test)]
mod tests;
