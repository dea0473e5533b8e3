//! [`Allocation::Triage`]: the first stage of every problem, then later stages in order of need
//! on what the run's budget has left.
//!
//! Stages that ask for another are appended to `<out>.triage.jsonl` (one line each, written
//! whole and flushed, like the results file; a problem's later line supersedes its earlier), so
//! a run killed at any point resumes from a problem's last such stage without redoing it; what
//! the stages cost counts against the run's budget until the problem's result line (which
//! includes it) is written. Each such line names the attempt that ran its stage, whose calls in
//! the spend ledger it counts (a stage that wrote no line is counted from the ledger). A first
//! stage kept for a question the problem file has changed since is done again, the new stage
//! (or the problem's answer) carrying what the old one spent.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::files::{append_line, scan_lines, sync_dir, SyncClock, Tail};
use super::sink::{Outcome, Sink};
use super::spend::{exhausted, less_spent, run_exhausted};
use super::{line_for, question_fingerprint, ResultLine, Runner, TriageNote};
use crate::budget::Resource;
use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::metered::Meter;
use crate::problem::Problem;
use crate::solution::{Solution, StopReason};
use crate::strategy::{Context, Pending, Stage, Staged};
use crate::usage::Usage;

/// One line of the side file: a stage that asked for another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct SideLine {
    pub(super) id: String,
    /// The stage's solution, its usage filled in: that of every stage so far. (`first` on
    /// disk: once only first stages were recorded.)
    #[serde(rename = "first")]
    pub(super) solution: Solution,
    /// Why it asks for another. (A problem's result line notes its first stage's.)
    pub(super) pending: Pending,
    /// The stages behind `first`, this one included.
    #[serde(default = "one")]
    pub(super) stages: usize,
    /// The first stage's request, kept for the result line's note (absent on a first stage,
    /// whose own `pending` it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) first_pending: Option<Pending>,
    /// A fingerprint of the question the stage answered ([`question_fingerprint`]): a resumed
    /// run goes on from it only while the problem still asks it. (Absent in lines written
    /// before it was recorded: not checked.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) question_sha: Option<String>,
    /// The attempt that ran this stage, as the spend ledger names its calls: a resumed run
    /// counts them by this line. (Absent in lines written before it was recorded.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) attempt: Option<u64>,
    /// What stages kept for a question the problem asked before spent (the problem file
    /// changed since, and its first stage was done again): not this question's (its problem's
    /// budget and `solution.usage` leave it out), but the run's, so counted with this stage
    /// and carried on to its later stages and its answer's line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) carried: Option<Usage>,
}

fn one() -> usize {
    1
}

impl SideLine {
    /// What the run spent on this problem up to this stage: its stages', and what stages kept
    /// for a question it asked before spent.
    pub(super) fn spent(&self) -> Usage {
        self.solution.usage + self.carried.unwrap_or_default()
    }

    /// What the first stage asked, for the result line.
    fn first_pending(&self) -> &Pending {
        self.first_pending.as_ref().unwrap_or(&self.pending)
    }
}

/// The side file of `out`: `<out>.triage.jsonl`.
pub(crate) fn path_of(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".triage.jsonl");
    out.with_file_name(name)
}

/// The side file of a run, opened at its first line.
struct SideFile {
    path: PathBuf,
    file: Option<std::fs::File>,
    /// When it was last synced to disk.
    synced: SyncClock,
}

impl Drop for SideFile {
    /// Synced however the run ends (an error, Ctrl-C dropping it): best effort.
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            let _ = file.sync_data();
        }
    }
}

impl SideFile {
    fn new(out: &Path) -> Self {
        Self {
            path: path_of(out),
            file: None,
            synced: SyncClock::default(),
        }
    }

    /// Appends `line`, whole and flushed.
    fn append(&mut self, line: &SideLine, what: &'static str) -> Result<()> {
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .map_err(|e| Error::io(&self.path, e))?;
                sync_dir(&self.path);
                self.file.insert(file)
            }
        };
        append_line(file, &self.path, line, what)?;
        // On disk as results lines are: a crash of the machine does not make the stages' calls
        // be paid for twice.
        if self.synced.due() {
            file.sync_data().map_err(|e| Error::io(&self.path, e))?;
            self.synced.synced();
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        match &self.file {
            Some(file) => file.sync_data().map_err(|e| Error::io(&self.path, e)),
            None => Ok(()),
        }
    }
}

/// The stages recorded beside `out`, the last of each problem, only read (a half-written last
/// line left out, a whole one without its newline read); the attempts of every stage recorded
/// (superseded ones included); and what follows the side file's last newline, for
/// [`super::repair`] once the run is found resumable.
pub(super) fn scan(out: &Path) -> Result<(Vec<SideLine>, HashSet<u64>, Option<Tail>)> {
    let (lines, tail) = scan_lines::<SideLine>(&path_of(out))?;
    let attempts = lines.iter().filter_map(|l| l.attempt).collect();
    Ok((last_of(lines), attempts, tail))
}

/// The stages recorded beside `out`, the last of each problem, and the attempts of every stage
/// recorded, only read (a half-written last line left out, and left as it is).
pub(super) fn peek(out: &Path) -> Result<(Vec<SideLine>, HashSet<u64>)> {
    let (kept, attempts, _) = scan(out)?;
    Ok((kept, attempts))
}

/// Whether `stage` answered the question `problem` asks now (a stage that recorded no
/// fingerprint of its question is taken to have).
pub(super) fn asks(stage: &SideLine, problem: &Problem) -> bool {
    stage
        .question_sha
        .as_deref()
        .is_none_or(|q| q == question_fingerprint(problem))
}

/// The last of each problem's `lines`, in the order problems first appear.
fn last_of(lines: Vec<SideLine>) -> Vec<SideLine> {
    let mut at: HashMap<String, usize> = HashMap::new();
    let mut last: Vec<SideLine> = Vec::new();
    for line in lines {
        match at.get(&line.id) {
            Some(&i) => last[i] = line,
            None => {
                at.insert(line.id.clone(), last.len());
                last.push(line);
            }
        }
    }
    last
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

/// A problem waiting for its second stage: its place in the set, the problem, its first stage.
type Waiting<'a> = (usize, &'a Problem, SideLine);

/// How one later stage went.
enum Second<'a> {
    /// Recorded (or cut short, or not started), and whether it ran: made a call, or failed
    /// (which gives back what it held as a call does).
    Done(Outcome, bool),
    /// It asks for yet another stage: back in line.
    Again(Waiting<'a>),
    /// The run's budget refused it while other second stages held reservations they may not
    /// use: tried again once they are done.
    Deferred(Waiting<'a>),
}

/// Counts the second stages in flight while it lives.
struct Running(Arc<AtomicUsize>);

impl Running {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(count))
    }

    /// Second stages in flight besides this one.
    fn others(&self) -> usize {
        self.0.load(Ordering::SeqCst).saturating_sub(1)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Runner {
    /// The line of a problem whose last stage asked for another the run could not pay for:
    /// that stage's answer, with the budget that ran out as its stop reason.
    async fn first_only(
        &self,
        problem: &Problem,
        first: SideLine,
        resource: Option<Resource>,
    ) -> Outcome {
        if first.solution.usage.calls == 0 {
            // Nothing was written for it (a stage that only asked for the next, as the router's
            // first stage does for a code problem): not started, as under the other
            // allocations; a rerun with more budget goes on from its recorded stage.
            return Outcome::NotStarted;
        }
        let note = note_of(&first, first.stages);
        let attempt = first.attempt;
        let carried = first.carried.unwrap_or_default();
        let mut solution = first.solution;
        solution.stop_reason = resource.map_or(StopReason::TokenBudget, StopReason::from);
        let mut line = self.finish(problem, solution).await;
        // The attempt that ran the stage it records (its calls are the ledger's under it).
        line.attempt = attempt;
        if line.error.is_some() {
            // Not graded: retried on resume, when the side file's line counts the stages so far.
            line.usage = Usage::default();
        } else {
            line.usage += carried;
        }
        line.triage = Some(note);
        Outcome::Done(line)
    }

    /// A later stage the run cannot pay for now (`resource` ran out): out of this invocation's
    /// time it is left for the next; with other stages in flight it waits for what they give
    /// back; else its last stage's answer stands.
    async fn unaffordable<'a>(
        &self,
        item: Waiting<'a>,
        resource: Option<Resource>,
        others: usize,
        started: Instant,
    ) -> Second<'a> {
        if others == 0 || resource == Some(Resource::WallTime) {
            return Second::Done(
                self.unaffordable_alone(item, resource, started).await,
                false,
            );
        }
        // Told as of the attempt whose stage stands (or is kept), as its line will name it.
        self.events_of(item.1, started)
            .with_attempt(item.2.attempt)
            .emit(
                    "",
                EventKind::Deferred {
                    confidence: item.2.pending.confidence,
                    why: format!(
                        "the run's budget is held by {others} other second stage(s): waiting for what \
                         they give back"
                    ),
                },
            );
        Second::Deferred(item)
    }

    /// A later stage the run cannot pay for, with no other in flight to give anything back:
    /// its last stage's answer is recorded; where the run's time ran out, that stage is kept
    /// and a resumed run does the next.
    async fn unaffordable_alone(
        &self,
        item: Waiting<'_>,
        resource: Option<Resource>,
        started: Instant,
    ) -> Outcome {
        let (_, problem, first) = item;
        if resource == Some(Resource::WallTime) {
            self.events_of(problem, started)
                .with_attempt(first.attempt)
                .emit("", EventKind::Cut);
            return Outcome::NotStarted;
        }
        self.first_only(problem, first, resource).await
    }

    /// The first stage of `problem` in `cx`, by attempt `attempt`; `cut` says whether the run's
    /// budget limited one of its calls.
    async fn first_stage(
        &self,
        staged: &dyn Staged,
        problem: &Problem,
        (cx, cut, attempt): (&Context, &AtomicBool, u64),
    ) -> First {
        let mut first = self.first_stage_of(staged, problem, cx, cut).await;
        match &mut first {
            First::Whole(Outcome::Done(line) | Outcome::Cut(line)) => line.attempt = Some(attempt),
            First::Pending(stage) => stage.attempt = Some(attempt),
            First::Whole(Outcome::NotStarted | Outcome::Halted) => {}
        }
        first
    }

    async fn first_stage_of(
        &self,
        staged: &dyn Staged,
        problem: &Problem,
        cx: &Context,
        cut: &AtomicBool,
    ) -> First {
        let outcome = super::unpanicked(staged.first(problem, cx))
            .await
            .map(|mut stage| {
                crate::strategy::mark_budget_stop(&mut stage.solution, cx);
                stage
            });
        let usage = cx.meter().usage();
        if cut.load(Ordering::Relaxed)
            && usage.calls == 0
            && matches!(outcome, Ok(_) | Err(Error::BudgetExhausted { .. }))
        {
            // Refused at its first call (the run had less left than its prompt needs): not
            // started, as under the other allocations, so not recorded. Its `started` event
            // was sent: it ends as cut.
            cx.events().emit("", EventKind::Cut);
            return First::Whole(Outcome::NotStarted);
        }
        if cut.load(Ordering::Relaxed) {
            // As for a whole solve: redone by a resumed run; a failure that is not the
            // budget's is the problem's (recorded as failed, retried).
            let line = match outcome {
                Ok(mut first) => {
                    first.solution.usage = usage;
                    line_for(problem, first.solution, None)
                }
                Err(e) if !e.is_budget() => {
                    return First::Whole(Outcome::Done(self.line_of(problem, Err(e), usage).await));
                }
                Err(e) => self.line_of(problem, Err(e), usage).await,
            };
            return First::Whole(Outcome::Cut(line));
        }
        match outcome {
            Ok(Stage {
                mut solution,
                pending: None,
            }) => {
                solution.usage = usage;
                First::Whole(Outcome::Done(self.finish(problem, solution).await))
            }
            Ok(Stage {
                mut solution,
                pending: Some(mut pending),
            }) => {
                solution.usage = usage;
                solution.trace = None;
                // JSON has no NaN: an unreadable confidence is no confidence.
                if !pending.confidence.is_finite() {
                    pending.confidence = 0.0;
                }
                First::Pending(SideLine {
                    id: problem.id.clone(),
                    solution,
                    pending,
                    stages: 1,
                    first_pending: None,
                    question_sha: Some(question_fingerprint(problem)),
                    attempt: None,
                    carried: None,
                })
            }
            Err(e) => First::Whole(Outcome::Done(self.line_of(problem, Err(e), usage).await)),
        }
    }

    /// The triage run of `todo`, whose recorded first stages are `firsts`.
    pub(super) async fn run_triage<F: FnMut(&ResultLine)>(
        &self,
        staged: &dyn Staged,
        todo: &[&Problem],
        mut firsts: Vec<SideLine>,
        stale: &HashMap<String, Usage>,
        run_meter: &Arc<Meter>,
        sink: &mut Sink<'_, F>,
    ) -> Result<()> {
        // Pass 1: the first stage of every problem that has none recorded.
        let recorded: HashSet<String> = firsts.iter().map(|f| f.id.clone()).collect();
        let fresh = todo.iter().copied().filter(|p| !recorded.contains(&p.id));
        let mut side = SideFile::new(sink.path);
        let started = sink.started;
        let ledger = &Arc::clone(&sink.ledger);
        let mut stream = futures::stream::iter(fresh)
            .map(|problem| {
                let meter = Arc::clone(run_meter);
                async move {
                    if self.is_halted() {
                        return First::Whole(Outcome::Halted);
                    }
                    if run_exhausted(&meter) {
                        return First::Whole(Outcome::NotStarted);
                    }
                    let events = self.events_of(problem, started);
                    let (cx, cut, attempt) = self.problem_context(
                        meter,
                        ledger,
                        self.problem_budget,
                        &events,
                        problem,
                        0,
                    );
                    let events = cx.events().clone();
                    events.emit("", EventKind::Started);
                    let mut first = self
                        .first_stage(staged, problem, (&cx, &cut, attempt))
                        .await;
                    // A first stage kept for the question the problem asked before: its spend
                    // goes on with the new stage, which supersedes it beside the results, or in
                    // the problem's answer. (A failed or cut line does not carry it: the old
                    // stage, still the last kept, is counted while the problem is unanswered.)
                    if let Some(spent) = stale.get(&problem.id) {
                        match &mut first {
                            First::Pending(stage) => stage.carried = Some(*spent),
                            First::Whole(Outcome::Done(line)) if line.error.is_none() => {
                                line.usage += *spent;
                            }
                            First::Whole(_) => {}
                        }
                    }
                    if let First::Pending(line) = &first {
                        events.emit(
                            "",
                            EventKind::Deferred {
                                confidence: line.pending.confidence,
                                why: line.pending.why.clone(),
                            },
                        );
                    }
                    first
                }
            })
            .buffer_unordered(self.concurrency);
        while let Some(first) = stream.next().await {
            match first {
                First::Whole(outcome) => sink.take(outcome)?,
                First::Pending(line) => {
                    side.append(&line, "a first stage")?;
                    firsts.push(line);
                }
            }
        }
        drop(stream);
        side.sync()?;

        // Pass 2: later stages, the least sure problem first (then the fewest stages, then the
        // set's order).
        let position: HashMap<&str, (usize, &Problem)> = todo
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.as_str(), (i, *p)))
            .collect();
        let mut waiting: Vec<Waiting<'_>> = firsts
            .into_iter()
            .filter_map(|f| {
                let (i, problem) = *position.get(f.id.as_str())?;
                Some((i, problem, f))
            })
            .collect();
        waiting.sort_by(by_need);
        // In rounds: a stage refused while others held reservations is deferred to the next
        // round, after they have given back what they did not use. A round in which no stage
        // made a call ends the rest with their last stage's answer. A stage that asks for
        // another is recorded and goes back in line by its new need.
        let running = Arc::new(AtomicUsize::new(0));
        let mut queue: VecDeque<Waiting<'_>> = waiting.into();
        let mut deferred: Vec<Waiting<'_>> = Vec::new();
        let mut progress = false;
        let mut in_flight = FuturesUnordered::new();
        loop {
            while in_flight.len() < self.concurrency {
                let Some(item) = queue.pop_front() else {
                    break;
                };
                in_flight
                    .push(self.second_stage(staged, item, run_meter, ledger, &running, started));
            }
            match in_flight.next().await {
                Some(Second::Done(outcome, ran)) => {
                    progress |= ran;
                    tally(&mut sink.summary, &outcome);
                    sink.take(outcome)?;
                    if ran {
                        // What it held and did not use (all of it, where its call failed) is
                        // back: the deferred take their places in line again, by need.
                        requeue(&mut queue, deferred.drain(..));
                    }
                }
                Some(Second::Again(item)) => {
                    progress = true;
                    side.append(&item.2, "a stage")?;
                    // Back in line by its new need, behind a deferred stage that needs more
                    // (which its reservation kept out).
                    requeue(&mut queue, deferred.drain(..).chain([item]));
                }
                Some(Second::Deferred(item)) => deferred.push(item),
                None if deferred.is_empty() => break,
                None if progress => {
                    requeue(&mut queue, deferred.drain(..));
                    progress = false;
                }
                None if self.is_halted() => {
                    // Their last stages are kept in the side file for a resumed run.
                    for _ in deferred.drain(..) {
                        sink.take(Outcome::Halted)?;
                    }
                    break;
                }
                None => {
                    // As a stage the budget refused with nothing else in flight: its last
                    // stage's answer, or, where the run's time ran out, kept for a resumed run.
                    for item in deferred.drain(..) {
                        let resource = exhausted(run_meter);
                        let outcome = self.unaffordable_alone(item, resource, started).await;
                        tally(&mut sink.summary, &outcome);
                        sink.take(outcome)?;
                    }
                    break;
                }
            }
        }
        side.sync()
    }

    /// The next stage of one waiting problem on what the run has left.
    async fn second_stage<'a>(
        &self,
        staged: &dyn Staged,
        item: Waiting<'a>,
        run_meter: &Arc<Meter>,
        ledger: &Arc<super::ledger::Ledger>,
        running: &Arc<AtomicUsize>,
        started: Instant,
    ) -> Second<'a> {
        let running = Running::enter(running);
        let meter = Arc::clone(run_meter);
        if self.is_halted() {
            // Its last stage is kept in the side file; a resumed run goes on from it.
            return Second::Done(Outcome::Halted, false);
        }
        if let Some(resource) = exhausted(&meter) {
            return self
                .unaffordable(item, Some(resource), running.others(), started)
                .await;
        }
        let (_, problem, last) = &item;
        let problem = *problem;
        let events = self.events_of(problem, started);
        // The problem's own budget, less what its stages so far spent (their time included).
        let mut budget = less_spent(self.problem_budget, &last.solution.usage);
        budget.max_wall_ms = budget
            .max_wall_ms
            .map(|ms| ms.saturating_sub(last.solution.usage.elapsed_ms));
        let (cx, cut, attempt) = self.problem_context(
            Arc::clone(&meter),
            ledger,
            budget,
            &events,
            problem,
            last.stages,
        );
        let events = cx.events().clone();
        events.emit("", EventKind::Started);
        let outcome = super::unpanicked(staged.next(problem, last.solution.clone(), &cx))
            .await
            .map(|mut stage| {
                crate::strategy::mark_budget_stop(&mut stage.solution, &cx);
                stage
            });
        let usage = cx.meter().usage();
        let cut = cut.load(Ordering::Relaxed);
        if cut && usage.calls == 0 && matches!(outcome, Ok(_) | Err(Error::BudgetExhausted { .. }))
        {
            // Refused at its first call: the run has less left than the call needs. (A stage
            // that passed the refusal on as its error is refused all the same, as a first
            // stage is: not a failure that would replace the answer kept.)
            return self
                .unaffordable(item, exhausted(&meter), running.others(), started)
                .await;
        }
        // A stage that made no call (its problem's own budget refused it) ran nothing: the
        // line is its last stage's, after as many stages. One that failed ran (and held what
        // it reserved until it failed), whether or not a call of it came back.
        let failed = outcome.is_err();
        let ran = usage.calls > 0 || failed;
        let stages = if !ran { last.stages } else { last.stages + 1 };
        let note = note_of(last, stages);
        let mut line = match outcome {
            Ok(Stage {
                mut solution,
                pending: Some(mut pending),
            }) if !cut && usage.calls > 0 => {
                // It asks for another: back in line, this stage recorded. (A stage the run's
                // budget cut, or one that made no call, is final.)
                solution.usage = last.solution.usage + usage;
                solution.trace = None;
                if !pending.confidence.is_finite() {
                    pending.confidence = 0.0;
                }
                events.emit(
                    "",
                    EventKind::Deferred {
                        confidence: pending.confidence,
                        why: pending.why.clone(),
                    },
                );
                let (i, problem, last) = item;
                let first_pending = Some(last.first_pending().clone());
                return Second::Again((
                    i,
                    problem,
                    SideLine {
                        id: last.id,
                        solution,
                        pending,
                        stages,
                        first_pending,
                        question_sha: Some(question_fingerprint(problem)),
                        attempt: Some(attempt),
                        carried: last.carried,
                    },
                ));
            }
            Ok(Stage { mut solution, .. }) => {
                solution.usage = last.solution.usage + usage;
                if cut && exhausted(&meter) == Some(Resource::WallTime) {
                    // Cut by this invocation's time: redone by a resumed run. Its line counts
                    // what this attempt spent (the side file counts the stages before).
                    let mut line = line_for(problem, solution, None);
                    line.usage = usage;
                    line.attempt = Some(attempt);
                    let outcome = Outcome::Cut(line);
                    return Second::Done(outcome, usage.calls > 0);
                }
                if cut && !solution.stop_reason.is_budget() {
                    // A call shortened to what the run had left.
                    solution.stop_reason =
                        exhausted(&meter).map_or(StopReason::TokenBudget, StopReason::from);
                }
                self.finish(problem, solution).await
            }
            Err(e) => self.line_of(problem, Err(e), usage).await,
        };
        if line.error.is_some() {
            // Retried on resume, when the side file's line counts the stages so far: this line
            // counts what this attempt cost.
            line.usage = usage;
        } else {
            // The answer's line counts what the side file's did (it is not counted after).
            line.usage += last.carried.unwrap_or_default();
        }
        line.triage = Some(note);
        line.attempt = Some(attempt);
        Second::Done(Outcome::Done(line), ran)
    }
}

/// The order of later stages: the least sure first, then the fewest stages, then the set's
/// order.
fn by_need((ia, _, a): &Waiting<'_>, (ib, _, b): &Waiting<'_>) -> std::cmp::Ordering {
    a.pending
        .confidence
        .total_cmp(&b.pending.confidence)
        .then(a.stages.cmp(&b.stages))
        .then(ia.cmp(ib))
}

/// Puts `items` in `queue` by need, each behind those that need as much.
fn requeue<'a>(queue: &mut VecDeque<Waiting<'a>>, items: impl IntoIterator<Item = Waiting<'a>>) {
    for item in items {
        let at = queue.partition_point(|other| by_need(other, &item).is_le());
        queue.insert(at, item);
    }
}

/// Counts a recorded line of a problem that asked for more than its first stage.
fn tally(summary: &mut super::RunSummary, outcome: &Outcome) {
    let Outcome::Done(line) = outcome else {
        return;
    };
    match &line.triage {
        Some(note) if line.error.is_none() && note.second_stage => {
            summary.second_stage += 1;
            summary.later_stages += note.stages.saturating_sub(1);
        }
        // A failed problem is an error, whichever stage failed: not an answer kept.
        Some(note) if line.error.is_none() && !note.second_stage => summary.first_only += 1,
        _ => {}
    }
}

/// The result line's note of a problem whose last recorded stage is `last`, after `stages`.
fn note_of(last: &SideLine, stages: usize) -> TriageNote {
    let first = last.first_pending();
    TriageNote {
        confidence: first.confidence,
        why: first.why.clone(),
        second_stage: stages > 1,
        stages,
    }
}
