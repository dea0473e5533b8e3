//! Where a run's lines go: [`Sink`] records how each problem ended (an [`Outcome`]) in the
//! results file and the run's summary, and reports it to the problem's events.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::files::{append_line, SyncClock};
use super::{ledger, stop_reason_name, ResultLine, RunSummary};
use crate::error::Result;
use crate::events::{EventKind, EventSink, Events};
use crate::solution::StopReason;

/// Where a run's lines go: the results file (each line whole, flushed), the summary, and the
/// caller's callback.
pub(super) struct Sink<'a, F> {
    pub(super) file: std::fs::File,
    pub(super) path: &'a Path,
    pub(super) summary: RunSummary,
    pub(super) on_line: F,
    /// When the run started: its events are timed from here.
    pub(super) started: Instant,
    /// Where the problems' events go: each one's end is reported once its line is written.
    pub(super) events: Option<Arc<dyn EventSink>>,
    /// The run's spend ledger: a write to it that failed ends the run once the line at hand is
    /// recorded.
    pub(super) ledger: Arc<ledger::Ledger>,
    /// Problems (and later stages) not started because the run was halted.
    pub(super) halted: usize,
    /// When the results file and the ledger were last synced to disk.
    pub(super) synced: SyncClock,
    /// Syncs both when the run ends however it ends (an error, Ctrl-C dropping the run).
    pub(super) _sync_at_end: SyncOnDrop,
}

/// Syncs a run's results file and spend ledger to disk when dropped (best effort).
pub(super) struct SyncOnDrop {
    pub(super) file: Option<std::fs::File>,
    pub(super) ledger: Arc<ledger::Ledger>,
}

impl Drop for SyncOnDrop {
    fn drop(&mut self) {
        let _ = self.ledger.sync();
        if let Some(file) = &self.file {
            let _ = file.sync_data();
        }
    }
}

impl<F: FnMut(&ResultLine)> Sink<'_, F> {
    /// Records how a problem ended, then reports it to its events: a `finished` event means its
    /// line is in the file. Fails if the spend ledger could not be written.
    pub(super) fn take(&mut self, outcome: Outcome) -> Result<()> {
        self.take_outcome(outcome)?;
        self.ledger.check()
    }

    fn take_outcome(&mut self, outcome: Outcome) -> Result<()> {
        let (id, attempt, kind) = match outcome {
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
                let (id, attempt) = (line.id.clone(), line.attempt);
                self.record(line)?;
                (id, attempt, kind)
            }
            Outcome::NotStarted => {
                self.summary.not_started += 1;
                return Ok(());
            }
            Outcome::Halted => {
                self.halted += 1;
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
                self.append(&line)?;
                self.summary.cut_short += 1;
                self.summary.usage += line.usage;
                (self.on_line)(&line);
                (line.id, line.attempt, EventKind::Cut)
            }
        };
        problem_events(self.events.as_ref(), &id, self.started)
            .with_attempt(attempt)
            .emit("", kind);
        Ok(())
    }

    /// Appends `line` to the results file, and syncs it to disk when a sync is due
    /// ([`SyncClock`]): the spend ledger first, so that the calls it records reach the disk
    /// no later than the line that settles some of them. (A ledger that fails to sync fails
    /// the run after the line is written, not before.)
    fn append(&mut self, line: &ResultLine) -> Result<()> {
        let due = self.synced.due();
        let ledger = if due { self.ledger.sync() } else { Ok(()) };
        append_line(&mut self.file, self.path, line, "a result line")?;
        if due {
            self.file
                .sync_data()
                .map_err(|e| crate::error::Error::io(self.path, e))?;
            self.synced.synced();
        }
        ledger
    }

    fn record(&mut self, line: ResultLine) -> Result<()> {
        self.append(&line)?;
        let summary = &mut self.summary;
        if line.grade_retried {
            // Solved and paid for by an earlier run: only its grade is this run's, or its
            // grading failing again, an error as it was.
            if line.error.is_some() {
                summary.errors += 1;
                *summary.stop_reasons.entry("error".to_string()).or_default() += 1;
            } else {
                summary.regraded += 1;
                summary.count_grade(line.correct);
            }
            (self.on_line)(&line);
            return Ok(());
        }
        summary.usage += line.usage;
        if line.error.is_some() {
            summary.errors += 1;
        } else {
            summary.solved += 1;
            summary.count_grade(line.correct);
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
pub(super) fn problem_events(
    sink: Option<&Arc<dyn EventSink>>,
    id: &str,
    started: Instant,
) -> Events {
    match sink {
        Some(sink) => Events::since(Arc::clone(sink), id.to_owned(), started),
        None => Events::off(),
    }
}

/// How one problem of a run went.
pub(super) enum Outcome {
    /// Solved (or failed) within the run's budget: recorded.
    Done(ResultLine),
    /// The run's budget refused or shortened one of its calls.
    Cut(ResultLine),
    /// The run's budget was spent before it started.
    NotStarted,
    /// Not started: the run was halted (the inference engine went away).
    Halted,
}
