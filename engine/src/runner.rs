//! The batch [`Runner`]: a strategy over a problem set, concurrent, graded, resumable.
//!
//! Results go to a JSON Lines file, one line per finished problem, each written whole with a
//! single `write` and flushed before the next: a run killed at any moment loses no finished
//! problem. Starting again with the same output file resumes: ids with a result line are
//! skipped, a last line cut short by the kill is cut off and its problem redone, and problems
//! whose line records an error are retried. A problem the run's budget cut short (refused or
//! shortened one of its calls) is not recorded either: its answer is what the budget left room
//! for, so a resumed run with more budget redoes it.
//!
//! Concurrency: up to `concurrency` problems are solved at once, all within the caller's task
//! (`buffer_unordered`), so dropping the run future cancels everything; results are written by
//! that same task as they complete.

use std::collections::{BTreeMap, HashSet};
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
use crate::grader::Grader;
use crate::metered::{Meter, Metered};
use crate::problem::Problem;
use crate::solution::{Solution, StopReason};
use crate::strategy::{Context, Strategy};
use crate::usage::Usage;

mod identity;

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
}

/// How a run's budget is shared among its problems.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Allocation {
    /// First come, first served: a problem may spend whatever the run has left; a problem the
    /// run's budget cuts short is not recorded (a resumed run with more budget redoes it).
    #[default]
    FirstCome,
    /// An even share of what is left: as each problem starts it is given the run's unallotted
    /// tokens (and calls) divided by the problems not yet started, itself included, as its own
    /// budget; what it leaves unspent goes back for the problems after it. Cheap problems (a
    /// router's short answers, an adaptive vote decided early) pay for hard ones, and no problem
    /// is starved by those before it. A problem that runs out of its share is recorded with a
    /// budget stop reason, like a per-problem budget.
    Even,
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

/// The tighter of two budgets, limit by limit.
fn tighter(a: Budget, b: Budget) -> Budget {
    let min = |x: Option<u64>, y: Option<u64>| match (x, y) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    };
    Budget {
        max_tokens: min(a.max_tokens, b.max_tokens),
        max_completion_tokens: min(a.max_completion_tokens, b.max_completion_tokens),
        max_calls: min(a.max_calls, b.max_calls),
        max_wall_ms: min(a.max_wall_ms, b.max_wall_ms),
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
    /// Usage of this run's problems, summed (elapsed is the sum of per-problem times).
    pub usage: Usage,
    /// Wall time of this run.
    pub wall_ms: u64,
    /// How this run's problems stopped.
    pub stop_reasons: BTreeMap<String, usize>,
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
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("strategy", &self.strategy.name())
            .field("concurrency", &self.concurrency)
            .field("problem_budget", &self.problem_budget)
            .field("run_budget", &self.run_budget)
            .field("allocation", &self.allocation)
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
        }
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
    /// tokens and calls its recorded lines spent count against it when a run resumes (the wall
    /// time is this invocation's). Default unlimited.
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
        mut on_line: impl FnMut(&ResultLine),
    ) -> Result<RunSummary> {
        let started = Instant::now();
        let previous = read_results(out)?;
        if let Some(identity) = &self.identity {
            identity::check_or_record(out, identity, !previous.is_empty())?;
        }
        let mut summary = RunSummary {
            total: problems.len(),
            ..RunSummary::default()
        };
        let wanted: HashSet<&str> = problems.iter().map(|p| p.id.as_str()).collect();
        let mut finished: HashSet<String> = HashSet::new();
        let mut spent = Usage::default();
        for line in previous
            .into_iter()
            .filter(|l| wanted.contains(l.id.as_str()))
        {
            spent += line.usage;
            if line.error.is_some() {
                finished.remove(&line.id);
                continue;
            }
            if finished.insert(line.id.clone()) {
                summary.resumed += 1;
                if let Some(correct) = line.correct {
                    summary.graded += 1;
                    summary.correct += usize::from(correct);
                }
            }
        }
        let todo: Vec<&Problem> = problems
            .iter()
            .filter(|p| !finished.contains(&p.id))
            .collect();
        let run_budget = less_spent(self.run_budget, &spent);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .map_err(|e| Error::io(out, e))?;
        let run_meter = Meter::new(run_budget);
        let pool = (self.allocation == Allocation::Even)
            .then(|| std::sync::Mutex::new(Pool::new(run_budget, todo.len())));
        let pool = &pool;
        let mut results = futures::stream::iter(todo.iter().copied())
            .map(|problem| {
                let meter = Arc::clone(&run_meter);
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
                        share.map_or(self.problem_budget, |s| tighter(self.problem_budget, s));
                    // Each problem reaches the backend through the run's shared meter, with a
                    // flag of its own that says whether the run's budget limited one of its calls.
                    let cut = Arc::new(AtomicBool::new(false));
                    let backend: Arc<dyn Backend> = Arc::new(
                        Metered::with_meter(Arc::clone(&self.backend), meter)
                            .noting_limits(Arc::clone(&cut)),
                    );
                    let mut line = self.solve_one(problem, backend, budget).await;
                    if let (Some(pool), Some(share)) = (pool, share) {
                        if let Ok(mut pool) = pool.lock() {
                            pool.give_back(&share, &line.usage);
                        }
                        line.allotted = Some(share);
                    }
                    // Under `Even` the shares never add up to more than the run has, so only
                    // the run's wall time can cut a problem short.
                    if cut.load(Ordering::Relaxed) {
                        Outcome::Cut(line)
                    } else {
                        Outcome::Done(line)
                    }
                }
            })
            .buffer_unordered(self.concurrency);
        while let Some(result) = results.next().await {
            let line = match result {
                Outcome::Done(line) => line,
                Outcome::NotStarted => {
                    summary.not_started += 1;
                    continue;
                }
                Outcome::Cut(line) => {
                    // Its answer is what the run's budget left room for, not what the strategy
                    // would give: not recorded, so a resumed run (with more budget) redoes it.
                    tracing::info!(problem = %line.id, "cut short by the run's budget; not recorded");
                    summary.cut_short += 1;
                    summary.usage += line.usage;
                    continue;
                }
            };
            let mut text = serde_json::to_string(&line).map_err(|source| Error::Serialize {
                what: "a result line",
                source,
            })?;
            text.push('\n');
            file.write_all(text.as_bytes())
                .and_then(|()| file.flush())
                .map_err(|e| Error::io(out, e))?;
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
            on_line(&line);
        }
        file.sync_data().map_err(|e| Error::io(out, e))?;
        summary.wall_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(summary)
    }

    async fn solve_one(
        &self,
        problem: &Problem,
        backend: Arc<dyn Backend>,
        budget: Budget,
    ) -> ResultLine {
        let cx = Context::new(backend, budget);
        let outcome = self.strategy.solve(problem, &cx).await;
        let usage = cx.meter().usage();
        match outcome {
            Ok(mut solution) => {
                solution.usage = usage;
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
                    Ok(correct) => line_for(problem, solution, correct),
                    // Recorded as failed, with what it found, so a resumed run does it again.
                    Err(error) => ResultLine {
                        error: Some(format!("grading: {}", error_chain(&error))),
                        ..line_for(problem, solution, None)
                    },
                }
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
            },
        }
    }
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

fn run_exhausted(meter: &Meter) -> bool {
    let budget = meter.budget();
    let usage = meter.usage();
    budget.max_calls.is_some_and(|m| usage.calls >= m)
        || budget.max_wall_ms.is_some_and(|m| usage.elapsed_ms >= m)
        || meter.remaining_completion_tokens() == Some(0)
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
/// results file `out` reads, and was written with `identity` (see [`Runner::with_identity`]).
/// Returns its finished lines (a half-written last line left out, and left in place).
pub fn check_resumable(out: &Path, identity: &serde_json::Value) -> Result<Vec<ResultLine>> {
    let (previous, _) = peek_results(out)?;
    identity::check_or_record(out, identity, !previous.is_empty())?;
    Ok(previous)
}

/// The side file recording what the results file `out` was written with: `<out>.config.json`.
pub fn config_path(out: &Path) -> PathBuf {
    identity::path_of(out)
}

/// Reads the finished lines of a results file, cutting off a last line that a killed run left
/// half-written. A missing file is an empty one.
pub fn read_results(path: &Path) -> Result<Vec<ResultLine>> {
    let (lines, cut_at) = scan_results(path)?;
    if let Some(len) = cut_at {
        truncate(path, len)?;
    }
    Ok(lines)
}

/// Reads the finished lines of a results file without changing it: the lines, and whether a
/// half-written last line (a killed run's) was left out. A missing file is an empty one.
pub fn peek_results(path: &Path) -> Result<(Vec<ResultLine>, bool)> {
    let (lines, cut_at) = scan_results(path)?;
    Ok((lines, cut_at.is_some()))
}

/// The finished lines, and the length to cut the file to when its last line is half-written.
fn scan_results(path: &Path) -> Result<(Vec<ResultLine>, Option<u64>)> {
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
    let raws: Vec<&[u8]> = body.split_inclusive(|&b| b == b'\n').collect();
    let count = raws.len();
    let mut cut_at = complete;
    let mut offset = 0usize;
    for (index, raw) in raws.into_iter().enumerate() {
        let line_len = raw.len();
        let text = String::from_utf8_lossy(raw);
        let text = text.trim();
        if text.is_empty() {
            offset += line_len;
            continue;
        }
        match serde_json::from_str::<ResultLine>(text) {
            Ok(line) => lines.push(line),
            // Only the last line can have been cut short by a kill; anything else is damage.
            Err(_) if index + 1 == count => {
                cut_at = offset;
                break;
            }
            Err(e) => {
                return Err(Error::ResultsFile {
                    path: path.to_path_buf(),
                    line: index + 1,
                    message: e.to_string(),
                })
            }
        }
        offset += line_len;
    }
    Ok((lines, (cut_at < bytes.len()).then_some(cut_at as u64)))
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

        // A complete-looking last line that is not JSON (killed before the newline landed
        // would not have one; this one does) is also redone, not fatal.
        std::fs::write(&path, format!("{full}{{\"id\": \"c\"\n")).unwrap();
        assert_eq!(read_results(&path).unwrap().len(), 2);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), full);
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

    #[tokio::test]
    async fn problems_the_run_budget_cut_short_are_not_recorded_and_resume_solves_them() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let problems: Vec<Problem> = ["p1", "p2", "p3"]
            .into_iter()
            .map(|id| Problem::new(id, "Q?"))
            .collect();
        // Scripted tokens are bytes: a call is 2 prompt + 10 completion tokens. 19 tokens let
        // p1 finish, shorten p2's call to 5 completion tokens (cut short) and leave none for p3.
        let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["0123456789"; 3]));
        let summary = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
            .with_run_budget(Budget::unlimited().with_max_tokens(19))
            .run(&problems, &out, |_| {})
            .await
            .unwrap();
        assert_eq!(
            (summary.solved, summary.cut_short, summary.not_started),
            (1, 1, 1)
        );
        let ids: Vec<String> = read_results(&out)
            .unwrap()
            .into_iter()
            .map(|l| l.id)
            .collect();
        assert_eq!(ids, vec!["p1".to_string()], "only the finished problem");

        // With budget to spare, a rerun solves exactly the two left.
        let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["0123456789"; 2]));
        let summary = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
            .run(&problems, &out, |_| {})
            .await
            .unwrap();
        assert_eq!((summary.resumed, summary.solved), (1, 2));
        let lines = read_results(&out).unwrap();
        let mut ids: Vec<&str> = lines.iter().map(|l| l.id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, vec!["p1", "p2", "p3"]);
        assert!(lines
            .iter()
            .all(|l| l.answer.as_deref() == Some("0123456789")));
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
        assert_eq!(lines.len(), 1);
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

    #[test]
    fn a_half_written_line_after_crlf_lines_cuts_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let full = format!("{}\r\n{}\r\n", line("a"), line("b"));
        std::fs::write(&path, format!("{full}{{\"id\": \"c\"\r\n")).unwrap();
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
}
