//! [`Allocation::Triage`]: the first stage of every problem, then second stages in order of need
//! on what the run's budget has left.
//!
//! First stages that ask for a second are appended to `<out>.triage.jsonl` (one line each,
//! written whole and flushed, like the results file), so a run killed at any point resumes
//! without redoing them; their cost counts against the run's budget until the problem's result
//! line (which includes it) is written.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::{
    exhausted, less_spent, line_for, run_exhausted, scan_lines, truncate, Outcome, ResultLine,
    Runner, Sink, TriageNote,
};
use crate::budget::Resource;
use crate::error::{Error, Result};
use crate::metered::Meter;
use crate::problem::Problem;
use crate::solution::{Solution, StopReason};
use crate::strategy::{Context, FirstStage, Pending, Staged};

/// One line of the side file: a first stage that asked for the second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct SideLine {
    pub(super) id: String,
    /// The first stage's solution, its usage filled in.
    pub(super) first: Solution,
    pub(super) pending: Pending,
}

/// The side file of `out`: `<out>.triage.jsonl`.
pub(crate) fn path_of(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".triage.jsonl");
    out.with_file_name(name)
}

/// The first stages recorded beside `out` (a half-written last line cut off).
pub(super) fn read(out: &Path) -> Result<Vec<SideLine>> {
    let path = path_of(out);
    let (lines, cut_at) = scan_lines(&path)?;
    if let Some(len) = cut_at {
        truncate(&path, len)?;
    }
    Ok(lines)
}

/// First stages are only resumed under the configuration that made them: with no record of it
/// (the results file and its record deleted to start over), they are refused, not mixed in.
pub(super) fn check_recorded(out: &Path) -> Result<()> {
    let config = super::config_path(out);
    if config.exists() {
        return Ok(());
    }
    let side = path_of(out);
    Err(Error::Config {
        path: side.clone(),
        message: format!(
            "holds first-stage answers of an earlier run, but {} (what that run was) is gone; \
             delete {} too to start over",
            config.display(),
            side.display()
        ),
    })
}

/// How one first stage went.
enum First {
    /// Settled, failed, cut short or not started: as for a whole solve.
    Whole(Outcome),
    /// It asks for the second stage.
    Pending(SideLine),
}

impl Runner {
    /// The line of a problem whose first stage asked for a second the run could not pay for:
    /// the first stage's answer, with the budget that ran out as its stop reason.
    async fn first_only(
        &self,
        problem: &Problem,
        mut first: Solution,
        resource: Option<Resource>,
        note: TriageNote,
    ) -> Outcome {
        first.stop_reason = resource.map_or(StopReason::TokenBudget, StopReason::from);
        let mut line = self.finish(problem, first).await;
        line.triage = Some(note);
        Outcome::Done(line)
    }

    /// The triage run of `todo`, whose recorded first stages are `firsts`.
    pub(super) async fn run_triage<F: FnMut(&ResultLine)>(
        &self,
        staged: &dyn Staged,
        todo: &[&Problem],
        mut firsts: Vec<SideLine>,
        run_meter: &Arc<Meter>,
        sink: &mut Sink<'_, F>,
    ) -> Result<()> {
        // Pass 1: the first stage of every problem that has none recorded.
        let recorded: HashSet<String> = firsts.iter().map(|f| f.id.clone()).collect();
        let fresh = todo.iter().copied().filter(|p| !recorded.contains(&p.id));
        let side_path = path_of(sink.path);
        let mut side: Option<std::fs::File> = None;
        let mut stream = futures::stream::iter(fresh)
            .map(|problem| {
                let meter = Arc::clone(run_meter);
                async move {
                    if run_exhausted(&meter) {
                        return First::Whole(Outcome::NotStarted);
                    }
                    let (backend, cut) = self.run_backend(meter);
                    let cx = Context::new(backend, self.problem_budget);
                    let outcome = staged.first(problem, &cx).await;
                    let usage = cx.meter().usage();
                    match outcome {
                        Ok(FirstStage {
                            mut solution,
                            pending,
                        }) => {
                            solution.usage = usage;
                            if cut.load(Ordering::Relaxed) {
                                // As for a whole solve: redone by a resumed run.
                                return First::Whole(Outcome::Cut(line_for(
                                    problem, solution, None,
                                )));
                            }
                            match pending {
                                None => First::Whole(Outcome::Done(
                                    self.finish(problem, solution).await,
                                )),
                                Some(pending) => {
                                    solution.trace = None;
                                    First::Pending(SideLine {
                                        id: problem.id.clone(),
                                        first: solution,
                                        pending,
                                    })
                                }
                            }
                        }
                        Err(e) => {
                            First::Whole(Outcome::Done(self.line_of(problem, Err(e), usage).await))
                        }
                    }
                }
            })
            .buffer_unordered(self.concurrency);
        while let Some(first) = stream.next().await {
            match first {
                First::Whole(outcome) => sink.take(outcome)?,
                First::Pending(line) => {
                    let file = match &mut side {
                        Some(file) => file,
                        None => side.insert(
                            std::fs::OpenOptions::new()
                                .create(true)
                                .append(true)
                                .open(&side_path)
                                .map_err(|e| Error::io(&side_path, e))?,
                        ),
                    };
                    let mut text =
                        serde_json::to_string(&line).map_err(|source| Error::Serialize {
                            what: "a first stage",
                            source,
                        })?;
                    text.push('\n');
                    file.write_all(text.as_bytes())
                        .and_then(|()| file.flush())
                        .map_err(|e| Error::io(&side_path, e))?;
                    firsts.push(line);
                }
            }
        }
        drop(stream);
        if let Some(file) = &side {
            file.sync_data().map_err(|e| Error::io(&side_path, e))?;
        }

        // Pass 2: second stages, the least sure first stage first (ties in the set's order).
        let position: HashMap<&str, (usize, &Problem)> = todo
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.as_str(), (i, *p)))
            .collect();
        let mut queue: Vec<(usize, &Problem, SideLine)> = firsts
            .into_iter()
            .filter_map(|f| {
                let (i, problem) = *position.get(f.id.as_str())?;
                Some((i, problem, f))
            })
            .collect();
        queue.sort_by(|(ia, _, a), (ib, _, b)| {
            a.pending
                .confidence
                .total_cmp(&b.pending.confidence)
                .then(ia.cmp(ib))
        });
        let mut stream = futures::stream::iter(queue)
            .map(|(_, problem, first)| {
                let meter = Arc::clone(run_meter);
                async move {
                    let mut note = TriageNote {
                        confidence: first.pending.confidence,
                        why: first.pending.why.clone(),
                        second_stage: false,
                    };
                    match exhausted(&meter) {
                        // This invocation's time: the next one can think about it.
                        Some(Resource::WallTime) => return Outcome::NotStarted,
                        // The run's tokens or calls are spent for good: the first answer stands.
                        Some(resource) => {
                            return self
                                .first_only(problem, first.first, Some(resource), note)
                                .await
                        }
                        None => {}
                    }
                    let (backend, cut) = self.run_backend(Arc::clone(&meter));
                    let cx =
                        Context::new(backend, less_spent(self.problem_budget, &first.first.usage));
                    let first_usage = first.first.usage;
                    let outcome = staged.second(problem, first.first.clone(), &cx).await;
                    let usage = cx.meter().usage();
                    let cut = cut.load(Ordering::Relaxed);
                    if cut && usage.calls == 0 && outcome.is_ok() {
                        // Refused at its first call: the run has less left than one call needs.
                        return match exhausted(&meter) {
                            Some(Resource::WallTime) => Outcome::NotStarted,
                            resource => self.first_only(problem, first.first, resource, note).await,
                        };
                    }
                    note.second_stage = true;
                    let mut line = match outcome {
                        Ok(mut solution) => {
                            solution.usage = first_usage + usage;
                            if cut && exhausted(&meter) == Some(Resource::WallTime) {
                                // Cut by this invocation's time: redone by a resumed run.
                                return Outcome::Cut(line_for(problem, solution, None));
                            }
                            if cut && !solution.stop_reason.is_budget() {
                                // A call shortened to what the run had left.
                                solution.stop_reason = exhausted(&meter)
                                    .map_or(StopReason::TokenBudget, StopReason::from);
                            }
                            self.finish(problem, solution).await
                        }
                        // Recorded with what this attempt cost; the first stage stays recorded
                        // (and counted) in the side file for the retry.
                        Err(e) => self.line_of(problem, Err(e), usage).await,
                    };
                    line.triage = Some(note);
                    Outcome::Done(line)
                }
            })
            .buffer_unordered(self.concurrency);
        while let Some(outcome) = stream.next().await {
            if let Outcome::Done(line) = &outcome {
                match &line.triage {
                    Some(note) if line.error.is_none() && note.second_stage => {
                        sink.summary.second_stage += 1;
                    }
                    Some(note) if !note.second_stage => sink.summary.first_only += 1,
                    _ => {}
                }
            }
            sink.take(outcome)?;
        }
        Ok(())
    }
}
