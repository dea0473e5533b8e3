//! The batch [`Runner`]: a strategy over a problem set, concurrent, graded, resumable.
//!
//! Results go to a JSON Lines file, one line per finished problem, each written whole with a
//! single `write` and flushed before the next: a run killed at any moment loses no finished
//! problem. Starting again with the same output file resumes: ids with a result line are
//! skipped, a last line cut short by the kill is cut off and its problem redone, and problems
//! whose line records an error are retried.
//!
//! Concurrency: up to `concurrency` problems are solved at once, all within the caller's task
//! (`buffer_unordered`), so dropping the run future cancels everything; results are written by
//! that same task as they complete.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
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
    trace_dir: Option<PathBuf>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("strategy", &self.strategy.name())
            .field("concurrency", &self.concurrency)
            .field("problem_budget", &self.problem_budget)
            .field("run_budget", &self.run_budget)
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
            trace_dir: None,
        }
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

    /// The budget of the whole run. Default unlimited.
    pub fn with_run_budget(mut self, budget: Budget) -> Self {
        self.run_budget = budget;
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
        let mut summary = RunSummary {
            total: problems.len(),
            ..RunSummary::default()
        };
        let wanted: HashSet<&str> = problems.iter().map(|p| p.id.as_str()).collect();
        let mut finished: HashSet<String> = HashSet::new();
        for line in previous
            .into_iter()
            .filter(|l| wanted.contains(l.id.as_str()))
        {
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
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .map_err(|e| Error::io(out, e))?;
        let run_meter = Meter::new(self.run_budget);
        let shared: Arc<dyn Backend> = Arc::new(Metered::with_meter(
            Arc::clone(&self.backend),
            Arc::clone(&run_meter),
        ));
        let mut results = futures::stream::iter(todo.iter().copied())
            .map(|problem| {
                let backend = Arc::clone(&shared);
                let meter = Arc::clone(&run_meter);
                async move {
                    if run_exhausted(&meter) {
                        return None;
                    }
                    Some(self.solve_one(problem, backend).await)
                }
            })
            .buffer_unordered(self.concurrency);
        while let Some(result) = results.next().await {
            let Some(line) = result else {
                summary.not_started += 1;
                continue;
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

    async fn solve_one(&self, problem: &Problem, backend: Arc<dyn Backend>) -> ResultLine {
        let cx = Context::new(backend, self.problem_budget);
        let outcome = self.strategy.solve(problem, &cx).await;
        let usage = cx.meter().usage();
        match outcome {
            Ok(mut solution) => {
                solution.usage = usage;
                if let (Some(dir), Some(trace)) = (&self.trace_dir, &solution.trace) {
                    if let Err(e) = trace.write(dir, &problem.id) {
                        tracing::warn!(problem = %problem.id, "writing the trace failed: {e}");
                    }
                }
                let correct = self.grader.grade(problem, &solution).await;
                line_for(problem, solution, correct)
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
            },
        }
    }
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

/// Reads the finished lines of a results file, cutting off a last line that a killed run left
/// half-written. A missing file is an empty one.
pub fn read_results(path: &Path) -> Result<Vec<ResultLine>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut lines = Vec::new();
    let body = bytes.get(..complete).unwrap_or_default();
    let text = String::from_utf8_lossy(body);
    let count = text.lines().count();
    let mut cut_at = complete;
    let mut offset = 0usize;
    for (index, raw) in text.lines().enumerate() {
        let line_len = raw.len() + 1;
        if raw.trim().is_empty() {
            offset += line_len;
            continue;
        }
        match serde_json::from_str::<ResultLine>(raw) {
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
    if cut_at < bytes.len() {
        truncate(path, cut_at as u64)?;
    }
    Ok(lines)
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

    #[test]
    fn damage_in_the_middle_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        std::fs::write(&path, format!("{}\nnot json\n{}\n", line("a"), line("b"))).unwrap();
        let err = read_results(&path).unwrap_err().to_string();
        assert!(err.contains("r.jsonl:2:"), "{err}");
    }
}
