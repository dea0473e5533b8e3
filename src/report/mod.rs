//! Reports over results files (`ponder report`): per run accuracy with its uncertainty, what it
//! cost, how it stopped; across runs, accuracy on the problems every run graded (so runs over
//! different subsets compare fairly), head to head for two runs, and an accuracy-versus-tokens
//! plot (SVG).
//!
//! A results file may hold several lines for one problem: a run appends, and a problem that
//! failed is retried on resume. The last line of each problem is the one that counts. Files are
//! only read: a half-written last line (a killed run's) is left out and left in place.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use comfy_table::Table;
use plotters::prelude::*;
use ponder_engine::runner::{
    config_path, peek_results, recorded_spend, stop_reason_name, triage_path, Allocation,
    ResultLine,
};
use ponder_engine::CandidateGrades;
use ponder_engine::Usage;
use serde::Serialize;
use statrs::distribution::{Binomial, DiscreteCDF};

use crate::{Error, Result};

/// A path as text: serde refuses one that is not UTF-8, which would make the whole report null.
fn lossy_path<S: serde::Serializer>(
    path: &Path,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_str(&path.to_string_lossy())
}

/// One results file, summarised.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Its name in tables and plots.
    pub label: String,
    /// The file (in JSON as text, a name that is not UTF-8 with its odd bytes replaced).
    #[serde(serialize_with = "lossy_path")]
    pub path: PathBuf,
    /// The strategy kinds its lines name (one, normally).
    pub strategies: Vec<String>,
    /// The model, from the run's `<file>.config.json` where there is one.
    pub model: Option<String>,
    /// Problems in the latest run's set, from the same side file: those a budget never
    /// started have no line.
    pub set: Option<usize>,
    /// Problems with a line.
    pub problems: usize,
    /// Of those, problems whose last line is an error (retried on resume).
    pub errors: usize,
    /// Of those, problems whose last line was cut short by the run's budget (redone on resume);
    /// not counted in [`Self::errors`].
    pub cut_short: usize,
    /// Problems graded (solved, with a reference or tests).
    pub graded: usize,
    /// Of those, graded right.
    pub correct: usize,
    /// Graded problems whose candidates were graded too (their lines record it).
    pub with_candidates: usize,
    /// Of those, problems with a right candidate: the coverage selection had to work with.
    pub covered: usize,
    /// Of those, problems whose chosen answer was right.
    pub covered_correct: usize,
    /// Prompt plus completion tokens over the solved problems.
    pub tokens: u64,
    /// Completion tokens over the solved problems.
    pub completion_tokens: u64,
    /// Backend calls over the solved problems.
    pub calls: u64,
    /// Solving time summed over the solved problems, in milliseconds.
    pub elapsed_ms: u64,
    /// How the solved problems stopped.
    pub stop_reasons: BTreeMap<String, usize>,
    /// All the run recorded as spent, as a resumed run counts it against its budget: every
    /// line (failed, cut short and superseded attempts included), under `--allocate triage`
    /// the kept stage of each problem without an answer, and the calls in its spend ledger of
    /// attempts that wrote no line (a kill's, a failure's). `None` for lines not read from a
    /// file, or where the side files did not read ([`Self::spend_unreadable`]).
    pub spent: Option<Usage>,
    /// Why [`Self::spent`] could not be read (a damaged ledger or triage file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spend_unreadable: Option<String>,
    /// Whether the file ends in a half-written line (left out).
    pub half_written_line: bool,
    /// Whether a run was writing the file when it was read (it holds the file's lock): its
    /// unanswered problems may be in flight.
    pub in_progress: bool,
    /// For adaptive-thinking runs (`router`, `mode_token`): per route (`short`, `think`,
    /// `short (no budget to think)`, `none`), the solved problems that took it and how many of
    /// those were graded right.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, Route>,
    /// What regrading with this ponder's grader changed (`ponder report --regrade`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regraded: Option<Regraded>,
    /// Each graded problem's grade.
    #[serde(skip)]
    grades: HashMap<String, bool>,
    /// Each graded problem's question fingerprint, where its line records one.
    #[serde(skip)]
    questions: HashMap<String, String>,
    /// Of the covered problems, those with a wrong candidate too (so the selection had a
    /// choice to make: several candidates all right, or copies of one, leave it none), and of
    /// those, how many were answered right.
    #[serde(skip)]
    chosen_among_several: (usize, usize),
    /// Why the side file gave no set size, when read from a file: missing, unreadable,
    /// damaged, or written before set sizes were.
    #[serde(skip)]
    no_set_because: Option<String>,
    /// Problems with a line after one that answered them: a run never writes one (it redoes
    /// only errors and cut-short lines), so several runs' lines in one file. The last counts.
    #[serde(skip_serializing_if = "is_zero")]
    pub answered_again: usize,
    /// Solved problems some of whose calls failed on their own and were done without (a
    /// sample drawn again, a beam left partial, a round left unscored: `details.failed`,
    /// `details.scoring_failed`): answered, so not redone on resume.
    #[serde(skip_serializing_if = "is_zero")]
    pub with_failed_calls: usize,
}

/// What [`regrade`] changed, over the lines that count (each problem's last).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Regraded {
    /// Math answers graded again.
    pub graded: usize,
    /// Of those, recorded wrong and now right.
    pub now_right: usize,
    /// Of those, recorded right and now wrong.
    pub now_wrong: usize,
    /// With a problem file's references ([`References`]): lines graded against a reference
    /// it replaced.
    #[serde(skip_serializing_if = "is_zero")]
    pub references_changed: usize,
    /// Of those graded, lines not graded before (no reference recorded), and of them right.
    #[serde(skip_serializing_if = "is_zero")]
    pub newly_graded: usize,
    /// See `newly_graded`.
    #[serde(skip_serializing_if = "is_zero")]
    pub newly_right: usize,
    /// Math lines the file gives no reference now (no longer graded).
    #[serde(skip_serializing_if = "is_zero")]
    pub no_reference_now: usize,
    /// Lines that record no fingerprint of their question (written by an older ponder):
    /// matched to the file's problems by id alone.
    #[serde(skip_serializing_if = "is_zero")]
    pub unfingerprinted: usize,
    /// Lines of problems the file does not have (graded against the reference recorded).
    #[serde(skip_serializing_if = "is_zero")]
    pub not_in_problems: usize,
    /// Lines of problems whose question the file asks otherwise (graded against the
    /// reference recorded).
    #[serde(skip_serializing_if = "is_zero")]
    pub other_question: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// How [`regrade`] matched a line to a problem file's problems, where not plainly (same id,
/// same question).
#[derive(Debug, Clone, Copy)]
enum Matched {
    /// The file has no problem of its id.
    NotInProblems,
    /// The file asks another question under its id.
    OtherQuestion,
    /// The line records no fingerprint of its question: matched by id alone.
    ById,
}

/// A problem file's reference answers, by problem id, for grading results against them
/// (`ponder report --regrade --problems FILE`: a corrected set).
#[derive(Debug, Clone, Default)]
pub struct References {
    /// Per id: the reference, the question's fingerprint, and whether it is a code problem
    /// (graded by its tests, not by a reference).
    by_id: HashMap<String, (Option<String>, String, bool)>,
}

impl References {
    /// The references of the problem set at `path` (any set `ponder run` reads).
    pub fn load(path: &Path) -> Result<Self> {
        let problems = ponder_engine::Problem::load_jsonl(path)?;
        Ok(Self::of(&problems))
    }

    /// The references of `problems`.
    pub fn of(problems: &[ponder_engine::Problem]) -> Self {
        let by_id = problems
            .iter()
            .map(|p| {
                let fingerprint = ponder_engine::runner::question_fingerprint(p);
                (
                    p.id.clone(),
                    (p.reference.clone(), fingerprint, p.code.is_some()),
                )
            })
            .collect();
        Self { by_id }
    }
}

/// Grades the math lines of `lines` again with this ponder's grader
/// ([`ponder_engine::answer::equivalent`] of `answer` and `reference`, as a run grades), for
/// results written by an older ponder whose grader has since been fixed. Code problems (no
/// reference: graded by their tests) and errors are left as recorded. A line's candidates are
/// graded again from the answers its details list (`details.candidates`: best-of-N, beam
/// search, DVTS); where its details do not list them and its own grade changed, a single
/// candidate (the answer itself) is graded as the answer is, and several have their grades
/// dropped rather than left to disagree with it.
///
/// With `references` (a problem file's), each line is graded against its problem's reference
/// there instead of the one it records, where the question is the same (by the fingerprint the
/// line records); lines of problems the file lacks keep theirs.
pub fn regrade(lines: &mut [ResultLine], references: Option<&References>) -> Regraded {
    let mut last = HashMap::new();
    for (i, line) in lines.iter().enumerate() {
        last.insert(line.id.clone(), i);
    }
    let mut changed = Regraded::default();
    for (i, line) in lines.iter_mut().enumerate() {
        let counts = last.get(&line.id) == Some(&i);
        // Whether the problem file's reference replaced the one recorded, and whether the file
        // says the problem is math (graded by its reference: without an answer, wrong).
        let mut replaced = false;
        let mut math = false;
        // How the line was matched to the file's problems, counted where it is graded or, for
        // want of a reference now, no longer is; never for an error line.
        let mut matched = None;
        if let Some(references) = references {
            match references.by_id.get(&line.id) {
                None => matched = Some(Matched::NotInProblems),
                // Another question under the id: its own reference, as without the file.
                Some((_, question, _))
                    if line.question_sha.as_deref().is_some_and(|q| q != question) =>
                {
                    matched = Some(Matched::OtherQuestion);
                }
                // Graded by its tests: as recorded.
                Some((_, _, true)) => continue,
                Some((reference, _, false)) => {
                    if line.question_sha.is_none() {
                        matched = Some(Matched::ById);
                    }
                    math = true;
                    replaced = reference.is_some() && line.reference != *reference;
                    line.reference.clone_from(reference);
                    // Math without a reference now: no grade.
                    if reference.is_none() {
                        if counts && line.error.is_none() {
                            changed.unfingerprinted += usize::from(matched.is_some());
                            changed.no_reference_now += usize::from(line.correct.is_some());
                        }
                        line.correct = None;
                        line.candidates = None;
                        continue;
                    }
                }
            }
        }
        let Some(reference) = line.reference.as_deref() else {
            continue;
        };
        // No answer anywhere, chosen or listed: nothing a math grader reads (a code problem,
        // graded by its tests, whose row's `answer` field gave it a reference in files
        // written before that was fixed; a math line without an answer is wrong already).
        let unanswered = line.answer.is_none()
            && listed_answers(&line.details).is_none_or(|a| a.iter().all(Option::is_none));
        // No answer, yet right: graded by its tests (math without an answer is wrong).
        let passed_code = line.answer.is_none() && line.correct == Some(true);
        if line.error.is_some() || (!math && (unanswered || passed_code)) {
            continue;
        }
        let now = line
            .answer
            .as_deref()
            .is_some_and(|a| ponder_engine::answer::equivalent(a, reference));
        if counts {
            changed.graded += 1;
            changed.references_changed += usize::from(replaced);
            match matched {
                Some(Matched::NotInProblems) => changed.not_in_problems += 1,
                Some(Matched::OtherQuestion) => changed.other_question += 1,
                Some(Matched::ById) => changed.unfingerprinted += 1,
                None => {}
            }
            match line.correct {
                Some(false) if now => changed.now_right += 1,
                Some(true) if !now => changed.now_wrong += 1,
                None => {
                    changed.newly_graded += 1;
                    changed.newly_right += usize::from(now);
                }
                _ => {}
            }
        }
        let was = line.correct.replace(now);
        let grade_listed = |answers: &[Option<&str>]| CandidateGrades {
            graded: answers.len(),
            right: answers
                .iter()
                .filter(|a| a.is_some_and(|a| ponder_engine::answer::equivalent(a, reference)))
                .count(),
        };
        // Graded for the first time (the problem file gave it a reference): its candidates
        // too, where its details list them, or the answer itself (`direct`'s one candidate).
        if line.candidates.is_none() && was.is_none() {
            line.candidates = match listed_answers(&line.details) {
                Some(answers) => Some(grade_listed(&answers)),
                None if line.strategy == "direct" => Some(CandidateGrades {
                    graded: 1,
                    right: usize::from(now),
                }),
                None => None,
            };
        }
        if let Some(grades) = line.candidates {
            line.candidates = match listed_answers(&line.details) {
                Some(answers) if answers.len() == grades.graded => Some(grade_listed(&answers)),
                _ if was == Some(now) => Some(grades),
                // One candidate: the answer itself (`direct`), graded as it now is.
                _ if grades.graded == 1 => Some(CandidateGrades {
                    graded: 1,
                    right: usize::from(now),
                }),
                _ => None,
            };
        }
    }
    changed
}

/// The candidates' answers a line's details list (`details.candidates[].answer`), if they do.
fn listed_answers(details: &serde_json::Value) -> Option<Vec<Option<&str>>> {
    details
        .get("candidates")?
        .as_array()?
        .iter()
        .map(|c| match c.get("answer")? {
            serde_json::Value::Null => Some(None),
            answer => answer.as_str().map(Some),
        })
        .collect()
}

/// How many problems took one route of an adaptive-thinking run, and how they went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Route {
    /// Problems that took it.
    pub problems: usize,
    /// Of those, graded.
    pub graded: usize,
    /// Of those, right.
    pub correct: usize,
}

/// Whether a line's details record a call that failed on its own: a non-empty `failed` or
/// `scoring_failed` list, in its own details or in those of a strategy inside it (a router's
/// `think`). (S*'s failures are per sample, `error` in its lists: not counted here.)
fn records_failed_calls(details: &serde_json::Value) -> bool {
    let Some(map) = details.as_object() else {
        return false;
    };
    map.iter().any(|(key, value)| match value {
        serde_json::Value::Array(errors) => {
            matches!(key.as_str(), "failed" | "scoring_failed") && !errors.is_empty()
        }
        serde_json::Value::Object(_) => records_failed_calls(value),
        _ => false,
    })
}

/// The route an adaptive-thinking line took: `details.route` (router) or `details.mode`
/// (mode_token).
fn route_of(line: &ResultLine) -> Option<&str> {
    // A triage run that could not pay for thinking: a short answer that wanted to think.
    if line.strategy == "router" && line.triage.as_ref().is_some_and(|t| !t.second_stage) {
        return Some(ponder_strategies::NO_BUDGET_TO_THINK);
    }
    match line.strategy.as_str() {
        "router" => line.details.get("route"),
        "mode_token" => line.details.get("mode"),
        _ => None,
    }
    .and_then(serde_json::Value::as_str)
}

impl RunReport {
    /// Reads `path`; `label` defaults to the file name without `.jsonl` and `.results`.
    pub fn load(path: &Path, label: Option<String>) -> Result<Self> {
        Self::read(path, label, None)
    }

    /// [`RunReport::load`], with the math answers graded again by this ponder's grader
    /// ([`regrade`]); the file is not changed.
    pub fn load_regraded(
        path: &Path,
        label: Option<String>,
        references: Option<&References>,
    ) -> Result<Self> {
        Self::read(path, label, Some(references))
    }

    /// Reads `path`, regrading its lines where `regrade_with` is given (with a problem file's
    /// references, where it holds them).
    fn read(
        path: &Path,
        label: Option<String>,
        regrade_with: Option<Option<&References>>,
    ) -> Result<Self> {
        if !path.is_file() {
            let why = if path.is_dir() {
                "a directory, not a results file (a .jsonl that `ponder run --out` wrote)"
            } else {
                "no such results file"
            };
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, why),
            ));
        }
        let (mut lines, half_written_line) = peek_results(path)?;
        let regraded = regrade_with.map(|references| regrade(&mut lines, references));
        let label = label.unwrap_or_else(|| default_label(path));
        let mut report = Self::from_lines(label, &lines);
        report.regraded = regraded;
        report.path = path.to_path_buf();
        report.half_written_line = half_written_line;
        // `ponder run` holds an exclusive lock on its results file while it writes.
        report.in_progress = std::fs::File::open(path).is_ok_and(|file| {
            matches!(
                file.try_lock_shared(),
                Err(std::fs::TryLockError::WouldBlock)
            )
        });
        if lines.is_empty() && !report.in_progress {
            tracing::warn!(
                "{}: holds no results (its row is empty; a run writes a line per problem it ends)",
                path.display()
            );
        }
        let side = side_file(path);
        report.model = side.as_ref().ok().and_then(model_of);
        report.set = side.as_ref().ok().and_then(set_of);
        report.no_set_because = match &side {
            Err(why) => Some(why.clone()),
            Ok(_) if report.set.is_none() => Some("predates set sizes".into()),
            Ok(_) => None,
        };
        let side = side.ok();
        // The side file names the allocation where it is not first come; only triage keeps
        // spend of its own (the kept stages). Without a readable side file, triage's own file
        // says it (read as first come, its stages' calls would count again from the ledger).
        let triage = match &side {
            Some(s) => s.get("allocation").and_then(|a| a.get("triage")).is_some(),
            None => triage_path(path).exists(),
        };
        let allocation = if triage {
            Allocation::Triage
        } else {
            Allocation::FirstCome
        };
        match recorded_spend(path, &lines, allocation) {
            Ok(spent) => report.spent = Some(spent),
            Err(e) => report.spend_unreadable = Some(e.to_string()),
        }
        Ok(report)
    }

    /// Summarises `lines` (in file order: a later line for a problem replaces an earlier one).
    pub fn from_lines(label: impl Into<String>, lines: &[ResultLine]) -> Self {
        let mut last: HashMap<&str, &ResultLine> = HashMap::new();
        let mut answered_again: HashSet<&str> = HashSet::new();
        for line in lines {
            if let Some(before) = last.insert(line.id.as_str(), line) {
                if before.error.is_none() && !before.cut_short {
                    answered_again.insert(line.id.as_str());
                }
            }
        }
        let mut report = Self {
            label: label.into(),
            path: PathBuf::new(),
            strategies: Vec::new(),
            model: None,
            set: None,
            problems: last.len(),
            errors: 0,
            cut_short: 0,
            graded: 0,
            correct: 0,
            with_candidates: 0,
            covered: 0,
            covered_correct: 0,
            tokens: 0,
            completion_tokens: 0,
            calls: 0,
            elapsed_ms: 0,
            stop_reasons: BTreeMap::new(),
            spent: None,
            spend_unreadable: None,
            half_written_line: false,
            in_progress: false,
            routes: BTreeMap::new(),
            regraded: None,
            grades: HashMap::new(),
            questions: HashMap::new(),
            chosen_among_several: (0, 0),
            no_set_because: None,
            answered_again: answered_again.len(),
            with_failed_calls: 0,
        };
        let mut strategies = BTreeSet::new();
        for line in last.values() {
            strategies.insert(line.strategy.clone());
            if line.cut_short {
                report.cut_short += 1;
                continue;
            }
            if line.error.is_some() {
                report.errors += 1;
                continue;
            }
            // Counts read from a file can be anything (a damaged line): a sum that wrapped would
            // show a huge spend as a tiny one.
            report.tokens = report.tokens.saturating_add(line.usage.total_tokens());
            report.completion_tokens = report
                .completion_tokens
                .saturating_add(line.usage.completion_tokens);
            report.calls = report.calls.saturating_add(line.usage.calls);
            report.with_failed_calls += usize::from(records_failed_calls(&line.details));
            report.elapsed_ms = report.elapsed_ms.saturating_add(line.usage.elapsed_ms);
            let reason = line.stop_reason.map_or("unknown", stop_reason_name);
            *report.stop_reasons.entry(reason.to_string()).or_default() += 1;
            if let Some(correct) = line.correct {
                report.graded += 1;
                report.correct += usize::from(correct);
                report.grades.insert(line.id.clone(), correct);
                if let Some(sha) = &line.question_sha {
                    report.questions.insert(line.id.clone(), sha.clone());
                }
                if let Some(c) = line.candidates.filter(|c| c.graded > 0) {
                    report.with_candidates += 1;
                    if c.right > 0 {
                        report.covered += 1;
                        report.covered_correct += usize::from(correct);
                        if c.right < c.graded {
                            report.chosen_among_several.0 += 1;
                            report.chosen_among_several.1 += usize::from(correct);
                        }
                    }
                }
            }
            if let Some(route) = route_of(line) {
                let r = report.routes.entry(route.to_string()).or_default();
                r.problems += 1;
                r.graded += usize::from(line.correct.is_some());
                r.correct += usize::from(line.correct == Some(true));
            }
        }
        report.strategies = strategies.into_iter().collect();
        report
    }

    /// Problems solved (with a line that is not an error, nor cut short).
    pub fn solved(&self) -> usize {
        self.problems - self.errors - self.cut_short
    }

    /// Share of the graded problems graded right.
    pub fn accuracy(&self) -> Option<f64> {
        (self.graded > 0).then(|| self.correct as f64 / self.graded as f64)
    }

    /// Problems left without an answer: errors, cut short by the run's budget, and (where the
    /// set size is recorded) never started.
    pub fn unanswered(&self) -> usize {
        let started = self.errors + self.cut_short;
        match self.set {
            Some(set) => set.saturating_sub(self.solved()).max(started),
            None => started,
        }
    }

    /// Share right of the graded problems and the unanswered ones, which count as wrong (runs
    /// under one budget that answered different numbers of problems compare fairly); `None`
    /// when nothing was left unanswered, or answers were not graded (no references). A run
    /// that answered nothing scores 0.
    pub fn accuracy_with_unanswered(&self) -> Option<(f64, usize)> {
        let unanswered = self.unanswered();
        let n = self.graded + unanswered;
        let known = self.graded > 0 || self.solved() == 0;
        (unanswered > 0 && known).then(|| (self.correct as f64 / n as f64, n))
    }

    /// The 95% Wilson score interval of [`Self::accuracy`]: at 0 or all of few problems right it
    /// is still wide, where `p ± se` would read `100% ± 0`.
    pub fn interval(&self) -> Option<(f64, f64)> {
        Some(wilson(self.accuracy()?, self.graded))
    }

    /// Share of the problems with graded candidates where some candidate was right.
    pub fn coverage(&self) -> Option<f64> {
        (self.with_candidates > 0).then(|| self.covered as f64 / self.with_candidates as f64)
    }

    /// Mean prompt plus completion tokens per solved problem.
    pub fn tokens_per_problem(&self) -> Option<f64> {
        per(self.tokens, self.solved())
    }

    /// The problems the run's spend is shared over: its set where recorded (problems a budget
    /// never started spent nothing), else those with a line.
    pub fn set_size(&self) -> usize {
        self.set.unwrap_or(0).max(self.problems)
    }

    /// Mean tokens [`Self::spent`] per problem of the set: the run's compute per problem, what
    /// the accuracy counting unanswered problems as wrong was bought with. Equal to
    /// [`Self::tokens_per_problem`] where every problem of the set was answered at the first
    /// attempt.
    pub fn spent_per_problem(&self) -> Option<f64> {
        per(self.spent?.total_tokens(), self.set_size())
    }

    /// Tokens [`Self::spent`] on no answer that counts: failed, cut short and superseded
    /// attempts, kept stages of problems without an answer, calls of attempts that wrote no
    /// line.
    pub fn spent_elsewhere(&self) -> Option<u64> {
        Some(self.spent?.total_tokens().saturating_sub(self.tokens))
    }

    /// Accuracy over `ids` (each must be graded here).
    fn accuracy_on(&self, ids: &BTreeSet<String>) -> Option<f64> {
        let right = ids
            .iter()
            .filter(|id| self.grades.get(*id) == Some(&true))
            .count();
        (!ids.is_empty()).then(|| right as f64 / ids.len() as f64)
    }
}

/// What `run` spent beyond its answers' lines, where anything: the tokens/problem column is over
/// the answers, the plot's measure over the set.
fn spend_note(run: &RunReport) -> Option<String> {
    if let Some(why) = &run.spend_unreadable {
        return Some(format!(
            "{}: what the run spent in all is unknown ({why}); the plot places it by tokens per \
             answered problem",
            run.label
        ));
    }
    let spent = run.spent?.total_tokens();
    let elsewhere = run.spent_elsewhere()?;
    let set = run.set_size();
    if elsewhere == 0 && set == run.solved() {
        return None;
    }
    let per = run.spent_per_problem()?;
    let mut note = format!(
        "{}: {spent} tokens spent in all, {per:.0} per problem of the set of {set} (the plot's \
         measure)",
        run.label
    );
    if elsewhere > 0 {
        note.push_str(&format!(
            "; {elsewhere} of them on no answer that counts (failed, cut short or redone \
             attempts, calls of attempts that wrote no line)"
        ));
    }
    Some(note)
}

/// `1 problem`, `2 problems`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn per(total: u64, count: usize) -> Option<f64> {
    (count > 0).then(|| total as f64 / count as f64)
}

fn default_label(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = name.strip_suffix(".jsonl").unwrap_or(&name);
    let name = name.strip_suffix(".results").unwrap_or(name);
    name.to_string()
}

/// The 95% Wilson score interval of a share `p` of `n`: unlike `p ± 1.96 se`, it does not
/// shrink to nothing at 0% or 100% (20 right of 20 is not a certainty).
fn wilson(p: f64, n: usize) -> (f64, f64) {
    let z = 1.96f64;
    let n = n.max(1) as f64;
    let denominator = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denominator;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denominator;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Runs that share a label (`a/r.jsonl` and `b/r.jsonl` are both `r`) are told apart by their
/// directory, then by their place in the list: tables, head to head and the plot name each once.
fn distinguish_labels(runs: &mut [RunReport]) {
    let count = |runs: &[RunReport], label: &str| runs.iter().filter(|r| r.label == label).count();
    let shared: Vec<usize> = (0..runs.len())
        .filter(|&i| count(runs, &runs[i].label) > 1)
        .collect();
    for &i in &shared {
        let dir = runs[i]
            .path
            .parent()
            .and_then(Path::file_name)
            .map(|d| d.to_string_lossy().into_owned());
        if let Some(dir) = dir {
            runs[i].label = format!("{dir}/{}", runs[i].label);
        }
    }
    let still: Vec<usize> = (0..runs.len())
        .filter(|&i| count(runs, &runs[i].label) > 1)
        .collect();
    for i in still {
        runs[i].label = format!("{} #{}", runs[i].label, i + 1);
    }
}

/// The run's side file (`<file>.config.json`), or why there is none to read.
fn side_file(path: &Path) -> std::result::Result<serde_json::Value, String> {
    let bytes = std::fs::read(config_path(path)).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "is missing".to_string(),
        _ => format!("cannot be read: {e}"),
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("is damaged, not the JSON a run writes: {e}"))
}

fn set_of(identity: &serde_json::Value) -> Option<usize> {
    identity
        .get(ponder_engine::runner::PROBLEMS_IN_SET)?
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
}

/// `model.source` (or `model.model` for a server, or its `base_url` where it was asked for its
/// default model: the identity knows that model by its address) from the run's side file, if
/// any.
fn model_of(identity: &serde_json::Value) -> Option<String> {
    // As a resumed run reads it (a record written before logins were left out may hold one).
    let mut model = identity.get("model")?.clone();
    ponder_engine::model_identities(&mut model);
    let model = &model;
    let named = ["source", "model"]
        .iter()
        .find_map(|key| model.get(*key).and_then(|v| v.as_str()));
    if let Some(name) = named {
        return Some(name.to_string());
    }
    // One server, or a fleet of them.
    match model.get("base_url")? {
        serde_json::Value::String(url) => Some(url.clone()),
        serde_json::Value::Array(urls) => {
            let urls: Vec<&str> = urls.iter().filter_map(|u| u.as_str()).collect();
            (!urls.is_empty()).then(|| urls.join(","))
        }
        _ => None,
    }
}

/// Several runs side by side.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The runs, in the order given.
    pub runs: Vec<RunReport>,
    /// Problems graded in every run.
    pub common: usize,
    /// Each run's accuracy on those (None where there are none).
    pub accuracy_on_common: Vec<Option<f64>>,
    /// For two runs: on the common problems, how many both got right, only the first, only the
    /// second, neither (none where no problem is common).
    pub head_to_head: Option<HeadToHead>,
    /// For two runs over sets of one size of which either left some problems unanswered: the
    /// same over the whole set, an unanswered problem counting as wrong (as the table's
    /// accuracy over the set does). Runs under one budget answer the problems it served them,
    /// so the common problems alone can reverse the ranking.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_to_head_over_set: Option<HeadToHead>,
    /// Ids graded in every run that name different questions in some of them (problem files
    /// without ids are numbered by line): left out of the common problems.
    pub mismatched: Vec<String>,
}

/// Two runs on the problems both graded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HeadToHead {
    /// Right in both.
    pub both: usize,
    /// Right in the first only.
    pub first_only: usize,
    /// Right in the second only.
    pub second_only: usize,
    /// Right in neither.
    pub neither: usize,
}

impl HeadToHead {
    /// `a` against `b` over `ids` (a problem one did not grade right is wrong there), and
    /// `neither` more that neither graded.
    fn of(a: &RunReport, b: &RunReport, ids: &BTreeSet<String>, neither: usize) -> Self {
        let mut h = Self {
            both: 0,
            first_only: 0,
            second_only: 0,
            neither,
        };
        for id in ids {
            match (
                a.grades.get(id) == Some(&true),
                b.grades.get(id) == Some(&true),
            ) {
                (true, true) => h.both += 1,
                (true, false) => h.first_only += 1,
                (false, true) => h.second_only += 1,
                (false, false) => h.neither += 1,
            }
        }
        h
    }

    /// The line a note gives it: the counts, and McNemar's test over the split problems.
    fn summary(&self, a: &str, b: &str) -> String {
        format!(
            "both right {}, only {a} {}, only {b} {}, neither {}{}",
            self.both,
            self.first_only,
            self.second_only,
            self.neither,
            match self.first_only + self.second_only {
                0 => String::new(),
                split => {
                    let p = self.p_value();
                    format!(
                        "; McNemar's exact test over the {} only one got right: {}, {} \
                         difference beyond chance at 5%",
                        count(split, "problem", "problems"),
                        if p < 0.001 {
                            "p < 0.001".to_string()
                        } else {
                            format!("p = {p:.3}")
                        },
                        if p < 0.05 { "a" } else { "no" }
                    )
                }
            }
        )
    }

    /// McNemar's exact test, two-sided: how likely a split of the problems only one run got
    /// right at least this uneven is if both runs are equally good (each such problem then
    /// goes either way with probability 1/2). 1 where no problem split them.
    pub fn p_value(&self) -> f64 {
        let split = (self.first_only + self.second_only) as u64;
        if split == 0 {
            return 1.0;
        }
        let fewer = self.first_only.min(self.second_only) as u64;
        // `split > 0`: a valid distribution.
        let chance = Binomial::new(0.5, split).map_or(1.0, |b| b.cdf(fewer));
        (2.0 * chance).min(1.0)
    }
}

impl Comparison {
    /// Compares `runs`.
    pub fn new(mut runs: Vec<RunReport>) -> Self {
        distinguish_labels(&mut runs);
        let mut common: Option<BTreeSet<String>> = None;
        for run in &runs {
            let ids: BTreeSet<String> = run.grades.keys().cloned().collect();
            common = Some(match common {
                None => ids,
                Some(c) => c.intersection(&ids).cloned().collect(),
            });
        }
        let mut common = common.unwrap_or_default();
        // The same id on different questions is not the same problem.
        let mismatched: Vec<String> = common
            .iter()
            .filter(|id| {
                let shas: BTreeSet<&String> =
                    runs.iter().filter_map(|r| r.questions.get(*id)).collect();
                shas.len() > 1
            })
            .cloned()
            .collect();
        for id in &mismatched {
            common.remove(id);
        }
        let accuracy_on_common = runs.iter().map(|r| r.accuracy_on(&common)).collect();
        let head_to_head = match runs.as_slice() {
            [a, b] if !common.is_empty() => Some(HeadToHead::of(a, b, &common, 0)),
            _ => None,
        };
        // Only where the runs look like runs over one set: problems in common, none of them
        // a different question.
        let head_to_head_over_set = match runs.as_slice() {
            [a, b] if !common.is_empty() && mismatched.is_empty() => Self::over_set(a, b),
            _ => None,
        };
        Self {
            common: common.len(),
            runs,
            accuracy_on_common,
            head_to_head,
            head_to_head_over_set,
            mismatched,
        }
    }

    /// [`Self::head_to_head_over_set`]: every problem either run graded, a problem neither
    /// graded right in neither.
    fn over_set(a: &RunReport, b: &RunReport) -> Option<HeadToHead> {
        let set = a.set.filter(|&set| Some(set) == b.set)?;
        if a.unanswered() == 0 && b.unanswered() == 0 {
            return None;
        }
        let graded: BTreeSet<String> = a.grades.keys().chain(b.grades.keys()).cloned().collect();
        // Ungraded answers (no reference) leave nothing to count.
        if a.graded + a.unanswered() < set || b.graded + b.unanswered() < set || graded.len() > set
        {
            return None;
        }
        Some(HeadToHead::of(a, b, &graded, set - graded.len()))
    }

    /// The comparison for scripts (`ponder report --json`): every field, and each run's derived
    /// numbers as the table shows them (`accuracy`, its 95% `interval`, `unanswered`,
    /// `accuracy_counting_unanswered` and its `interval_counting_unanswered`,
    /// `tokens_per_problem`, `coverage`, `selection`).
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = serde_json::to_value(self).unwrap_or_default();
        if let Some(runs) = json.get_mut("runs").and_then(|r| r.as_array_mut()) {
            for (value, run) in runs.iter_mut().zip(&self.runs) {
                let derived = serde_json::json!({
                    "solved": run.solved(),
                    "accuracy": run.accuracy(),
                    "interval": run.interval().map(|(low, high)| [low, high]),
                    "unanswered": run.unanswered(),
                    "accuracy_counting_unanswered": run.accuracy_with_unanswered().map(|(a, _)| a),
                    // Its 95% interval, as the plot draws it.
                    "interval_counting_unanswered": run
                        .accuracy_with_unanswered()
                        .map(|(a, n)| wilson(a, n))
                        .map(|(low, high)| [low, high]),
                    "tokens_per_problem": run.tokens_per_problem(),
                    "spent_per_problem": run.spent_per_problem(),
                    "coverage": run.coverage(),
                    // Selection accuracy: of the problems whose candidates held both a right
                    // and a wrong answer, how many were answered right.
                    "selection": {
                        "problems": run.chosen_among_several.0,
                        "right": run.chosen_among_several.1,
                    },
                });
                if let (Some(value), serde_json::Value::Object(derived)) =
                    (value.as_object_mut(), derived)
                {
                    value.extend(derived);
                }
            }
        }
        for (h, key) in [
            (self.head_to_head, "head_to_head"),
            (self.head_to_head_over_set, "head_to_head_over_set"),
        ] {
            if let (Some(h), Some(value)) = (h, json.get_mut(key).and_then(|v| v.as_object_mut())) {
                value.insert("p_value".into(), serde_json::json!(h.p_value()));
            }
        }
        json
    }

    /// Whether every run graded the same problems (then "on common" adds nothing).
    fn same_problems(&self) -> bool {
        self.mismatched.is_empty() && self.runs.iter().all(|r| r.graded == self.common)
    }

    /// The table: one row per run.
    pub fn table(&self) -> Table {
        let mut table = Table::new();
        let mut header = vec![
            "run",
            "strategy",
            "problems",
            "errors",
            "accuracy [95% CI]",
            "tokens/problem",
            "completion/problem",
            "calls/problem",
            "s/problem",
            "stop reasons",
        ];
        let with_common = !self.same_problems();
        if with_common {
            header.insert(5, "on common");
        }
        // After accuracy (and "on common"): where the candidates were graded.
        let with_coverage = self.runs.iter().any(|r| r.with_candidates > 0);
        let coverage_at = if with_common { 6 } else { 5 };
        if with_coverage {
            header.insert(coverage_at, "any candidate right");
        }
        let with_model = self.runs.iter().any(|r| r.model.is_some());
        if with_model {
            header.insert(2, "model");
        }
        table.set_header(header);
        for (run, common) in self.runs.iter().zip(&self.accuracy_on_common) {
            let accuracy = match (run.accuracy(), run.interval()) {
                (Some(a), Some((low, high))) => format!(
                    "{:.1}% [{:.1}-{:.1}] ({}/{})",
                    100.0 * a,
                    100.0 * low,
                    100.0 * high,
                    run.correct,
                    run.graded
                ),
                _ => "-".into(),
            };
            // Under a budget, problems left unanswered count: a run that answered fewer, better,
            // is not ranked above one that answered all.
            let accuracy = match run.accuracy_with_unanswered() {
                Some((a, n)) => format!(
                    "{accuracy}; {:.1}% ({}/{n}) counting {} unanswered as wrong",
                    100.0 * a,
                    run.correct,
                    run.unanswered()
                ),
                None => accuracy,
            };
            let mean = |total: u64, digits: usize| {
                per(total, run.solved()).map_or("-".into(), |v| format!("{v:.digits$}"))
            };
            let seconds = per(run.elapsed_ms, run.solved())
                .map_or("-".into(), |ms| format!("{:.1}", ms / 1000.0));
            let reasons: Vec<String> = run
                .stop_reasons
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let mut row = vec![
                run.label.clone(),
                run.strategies.join(", "),
                run.problems.to_string(),
                run.errors.to_string(),
                accuracy,
                mean(run.tokens, 0),
                mean(run.completion_tokens, 0),
                mean(run.calls, 1),
                seconds,
                reasons.join(", "),
            ];
            if with_common {
                row.insert(
                    5,
                    common.map_or("-".into(), |a| format!("{:.1}%", 100.0 * a)),
                );
            }
            if with_coverage {
                row.insert(
                    coverage_at,
                    run.coverage().map_or("-".into(), |c| {
                        format!(
                            "{:.1}% ({}/{})",
                            100.0 * c,
                            run.covered,
                            run.with_candidates
                        )
                    }),
                );
            }
            if with_model {
                row.insert(2, run.model.clone().unwrap_or_else(|| "-".into()));
            }
            table.add_row(row);
        }
        table
    }

    /// Lines under the table: the common problems, head to head, files with a half-written line.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(first) = self.mismatched.first() {
            notes.push(format!(
                "{} graded in every run {} different questions in different runs (`{first}` \
                 first): left out of \"on common\"; are these runs over the same problem set?",
                count(self.mismatched.len(), "problem id", "problem ids"),
                if self.mismatched.len() == 1 {
                    "names"
                } else {
                    "name"
                }
            ));
        }
        if self.runs.len() > 1 && self.common == 0 {
            notes.push("no problem was graded in every run: nothing to compare them on".into());
        } else if self.runs.len() > 1 && !self.same_problems() {
            notes.push(format!(
                "on common: accuracy on the {} every run graded",
                count(self.common, "problem", "problems")
            ));
        }
        if let (Some(h), [a, b]) = (self.head_to_head_over_set, self.runs.as_slice()) {
            let set = h.both + h.first_only + h.second_only + h.neither;
            notes.push(format!(
                "head to head over the set of {set}, an unanswered problem wrong: {}",
                h.summary(&a.label, &b.label)
            ));
        }
        if let (Some(h), [a, b]) = (self.head_to_head, self.runs.as_slice()) {
            let on = if self.head_to_head_over_set.is_some() {
                format!(
                    "the {} both answered (which a budget chose)",
                    count(self.common, "problem", "problems")
                )
            } else {
                count(self.common, "problem", "problems")
            };
            notes.push(format!(
                "head to head on {on}: {}",
                h.summary(&a.label, &b.label)
            ));
        }
        let mut paths = HashSet::new();
        for run in &self.runs {
            let path = std::fs::canonicalize(&run.path).unwrap_or_else(|_| run.path.clone());
            if !run.path.as_os_str().is_empty() && !paths.insert(path) {
                notes.push(format!(
                    "{}: given more than once (compared with itself)",
                    run.path.display()
                ));
            }
            if run.with_failed_calls > 0 {
                notes.push(format!(
                    "{}: {} had calls that failed on their own (`failed`, `scoring_failed` in \
                     their details, a router's `think` too: samples drawn again or done without, beams left \
                     partial, rounds unscored); answered, so a resume does not redo them",
                    run.label,
                    count(run.with_failed_calls, "problem", "problems")
                ));
            }
            if run.answered_again > 0 {
                notes.push(format!(
                    "{}: {} a line after an answer (a run writes none: several runs' lines in one \
                     file?); the last line counts",
                    run.label,
                    count(run.answered_again, "problem has", "problems have")
                ));
            }
            if run.in_progress {
                notes.push(format!(
                    "{}: a run is writing this file now: problems it has not finished count as \
                     unanswered here",
                    run.path.display()
                ));
            } else if run.half_written_line {
                notes.push(format!(
                    "{}: its last line is half-written (a killed run); left out here, redone on resume",
                    run.path.display()
                ));
            }
            if !run.routes.is_empty() {
                let routes: Vec<String> = run
                    .routes
                    .iter()
                    .map(|(route, r)| {
                        format!("{route} {} ({}/{} right)", r.problems, r.correct, r.graded)
                    })
                    .collect();
                notes.push(format!("{}: routes: {}", run.label, routes.join(", ")));
            }
            // One candidate is always the answer: nothing to say of a choice.
            let (among, right) = run.chosen_among_several;
            if among > 0 {
                notes.push(format!(
                    "{}: of the {} with both right and wrong candidates, the answer chosen was \
                     right in {right} ({:.1}%)",
                    run.label,
                    count(among, "problem", "problems"),
                    100.0 * right as f64 / among as f64
                ));
            }
            if run.errors > 0 {
                notes.push(format!(
                    "{}: {} ended in an error; a rerun retries {}",
                    run.label,
                    count(run.errors, "problem", "problems"),
                    if run.errors == 1 { "it" } else { "them" }
                ));
            }
            if run.cut_short > 0 {
                notes.push(format!(
                    "{}: {} cut short by the run's budget (left out here); a rerun with a \
                     larger --max-run-tokens solves {}",
                    run.label,
                    count(run.cut_short, "problem was", "problems were"),
                    if run.cut_short == 1 { "it" } else { "them" }
                ));
            }
            if let Some(note) = spend_note(run) {
                notes.push(note);
            }
            // A file read from disk whose side file is gone (moved without it) or predates the
            // set size: problems a run budget never started leave no line, and nothing says how
            // many there were.
            if let (None, Some(why)) = (run.set, &run.no_set_because) {
                notes.push(format!(
                    "{}: no set size recorded ({} {why}): problems a run budget never started \
                     are not counted as unanswered",
                    run.label,
                    config_path(&run.path).display()
                ));
            }
            if let Some(r) = run.regraded {
                notes.push(format!(
                    "{}: {} graded again by this ponder: {} now right, {} now wrong",
                    run.label,
                    count(r.graded, "math answer", "math answers"),
                    r.now_right,
                    r.now_wrong
                ));
                if r.newly_graded > 0 {
                    notes.push(format!(
                        "{}: {} graded for the first time (the problem file gave a reference): \
                         {} right",
                        run.label,
                        count(r.newly_graded, "problem", "problems"),
                        r.newly_right,
                    ));
                }
                let about_the_file = [
                    (
                        r.references_changed,
                        "graded against the problem file's reference, not the one recorded",
                    ),
                    (
                        r.not_in_problems,
                        "not in the problem file: graded against the reference recorded",
                    ),
                    (
                        r.other_question,
                        "asked otherwise in the problem file (another question under the same \
                         id): graded against the reference recorded",
                    ),
                    (
                        r.no_reference_now,
                        "without a reference in the problem file: no longer graded",
                    ),
                    (
                        r.unfingerprinted,
                        "without a fingerprint of the question in the results (an older \
                         ponder's): matched to the problem file by id alone",
                    ),
                ];
                for (n, what) in about_the_file.into_iter().filter(|(n, _)| *n > 0) {
                    let problems = count(n, "problem", "problems");
                    notes.push(format!("{}: {problems} {what}", run.label));
                }
            }
        }
        notes
    }

    /// Draws accuracy (with a 95% interval; unanswered problems count as wrong) against tokens
    /// per problem, one point per run, to an SVG file, the runs named in a legend beside it.
    /// Returns why runs were left out (nothing graded, every problem failed), a line each; it is
    /// an error if none is left.
    pub fn plot(&self, path: &Path) -> Result<Vec<String>> {
        let mut left_out = Vec::new();
        let mut points = Vec::new();
        for run in &self.runs {
            // Every problem it has a line for failed, none cut by its budget: a server that was
            // down, not a point on a scaling curve at 0%.
            if run.solved() == 0 && run.errors > 0 && run.cut_short == 0 {
                left_out.push(format!(
                    "{}: not plotted: every problem failed ({})",
                    run.label,
                    count(run.errors, "error", "errors")
                ));
                continue;
            }
            // Unanswered problems count as wrong here too (see the table), and what the run
            // spent on them counts too: the compute per problem of the set, not per answer.
            let point = run
                .accuracy_with_unanswered()
                .or_else(|| Some((run.accuracy()?, run.graded)))
                .zip(run.spent_per_problem().or_else(|| run.tokens_per_problem()));
            let Some(((p, n), tokens)) = point else {
                left_out.push(format!("{}: not plotted: nothing graded", run.label));
                continue;
            };
            let (low, high) = wilson(p, n);
            points.push(Point {
                run,
                problems: n,
                tokens,
                accuracy: 100.0 * p,
                interval: (100.0 * low, 100.0 * high),
            });
        }
        if points.is_empty() {
            return Err(Error::Tool {
                tool: "plot",
                message: format!("no run to plot: {}", left_out.join("; ")),
            });
        }
        draw(path, &points).map_err(|e| Error::Tool {
            tool: "plot",
            message: format!("{}: {e}", path.display()),
        })?;
        Ok(left_out)
    }
}

/// One run as the plot shows it.
struct Point<'a> {
    run: &'a RunReport,
    /// Problems its accuracy is over.
    problems: usize,
    tokens: f64,
    accuracy: f64,
    interval: (f64, f64),
}

/// Tableau's ten colours: told apart in print and by most colour-blind readers.
const COLOURS: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// Where a point sits on the token axis: a log axis has no 0, so a run that spent nothing
/// sits at 1.
fn x_of(point: &Point<'_>) -> f64 {
    point.tokens.max(1.0)
}

/// The log axis from the power of ten below the least tokens to the one above the most (plotters
/// labels a log axis only from the first power of ten inside it), with ticks at 1, 2 and 5 of
/// each power over up to three powers, else at each power (every other one past six), so that
/// the labels never run together.
fn token_axis(points: &[Point<'_>]) -> (std::ops::Range<f64>, Vec<f64>) {
    let (least, most) = points.iter().fold((f64::INFINITY, 1f64), |(lo, hi), p| {
        (lo.min(x_of(p)), hi.max(x_of(p)))
    });
    let low = 10f64.powf((least / 1.05).log10().floor());
    let high = 10f64.powf((most * 1.05).log10().ceil()).max(low * 10.0);
    let powers = (high / low).log10().round() as usize;
    let (steps, every): (&[f64], usize) = match powers {
        0..=3 => (&[1.0, 2.0, 5.0], 1),
        4..=6 => (&[1.0], 1),
        _ => (&[1.0], 2),
    };
    let ticks = (0..=powers)
        .step_by(every)
        .flat_map(|k| steps.iter().map(move |m| m * low * 10f64.powi(k as i32)))
        .filter(|&t| t <= high * 1.0001)
        .collect();
    (low..high, ticks)
}

/// A token count as a tick label: `500`, `2k`, `1.5M`, `0.5`, `0` (a run that spent nothing,
/// drawn at 1).
fn tokens_label(v: f64) -> String {
    let short = |x: f64, unit: &str| {
        let text = format!("{x:.1}");
        format!("{}{unit}", text.trim_end_matches(".0"))
    };
    match v {
        v if v >= 1e6 => short(v / 1e6, "M"),
        v if v >= 1e3 => short(v / 1e3, "k"),
        v if v <= 0.0 => "0".to_string(),
        v if v < 1.0 => format!("{v:.1}"),
        v => format!("{v:.0}"),
    }
}

/// `text`, cut to `most` characters with an ellipsis.
fn clipped(text: &str, most: usize) -> String {
    if text.chars().count() > most {
        text.chars().take(most - 1).chain(['…']).collect()
    } else {
        text.to_string()
    }
}

/// The `n`th run's marker, on the chart and in the legend: a circle, then (past the ten
/// colours) a triangle, then a cross.
fn marker(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    at: (i32, i32),
    n: usize,
    style: ShapeStyle,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    match (n / COLOURS.len()) % 3 {
        0 => area.draw(&Circle::new(at, 5, style))?,
        1 => area.draw(&TriangleMarker::new(at, 7, style))?,
        _ => area.draw(&Cross::new(at, 5, style.stroke_width(2)))?,
    }
    Ok(())
}

fn draw(path: &Path, points: &[Point<'_>]) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (980, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot_area, legend_area) = root.split_horizontally(680);
    let (range, ticks) = token_axis(points);
    let mut chart = ChartBuilder::on(&plot_area)
        .caption("accuracy against tokens per problem", ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        // Log tokens: test-time scaling curves are drawn against log compute.
        .build_cartesian_2d(range.log_scale().with_key_points(ticks), 0f64..100f64)?;
    chart
        .configure_mesh()
        .x_desc("tokens spent per problem of the set (prompt + completion, log scale)")
        .y_desc("accuracy, % (bars: 95% interval)")
        .x_label_formatter(&|v| tokens_label(*v))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(WHITE)
        .draw()?;
    let colour = |n: usize| {
        let (r, g, b) = COLOURS[n % COLOURS.len()];
        RGBColor(r, g, b)
    };
    // Points that would fall on one another are set apart a little along the axis.
    let mut placed: Vec<(f64, f64)> = Vec::new();
    for (n, p) in points.iter().enumerate() {
        let same =
            |(x, y): &(f64, f64)| (x / x_of(p) - 1.0).abs() < 0.02 && (y - p.accuracy).abs() < 1.0;
        let x = x_of(p) * 1.04f64.powi(placed.iter().filter(|q| same(q)).count() as i32);
        placed.push((x_of(p), p.accuracy));
        let (low, high) = p.interval;
        chart.draw_series(std::iter::once(ErrorBar::new_vertical(
            x,
            low,
            p.accuracy,
            high,
            colour(n).stroke_width(1),
            8,
        )))?;
        // In pixels of the whole picture, where the plot area starts at its origin.
        let at = chart.backend_coord(&(x, p.accuracy));
        marker(&root, at, n, colour(n).filled())?;
    }
    // The legend: each run's marker, label, accuracy and what it is over; rows shrink to fit
    // every run, down to one line each.
    let rows = points.len().max(1) as i32;
    let row = (460 / rows).min(40);
    let two_lines = row >= 30;
    let size: i32 = if row >= 15 { 13 } else { 10 };
    let font = ("sans-serif", f64::from(size)).into_font();
    for (n, p) in points.iter().enumerate() {
        let y = 40 + row * n as i32;
        marker(&legend_area, (12, y + size / 2), n, colour(n).filled())?;
        let stats = format!(
            "{}: {:.1}% of {}, {} tokens",
            p.run.strategies.join(", "),
            p.accuracy,
            count(p.problems, "problem", "problems"),
            tokens_label(p.tokens)
        );
        let first = if two_lines {
            clipped(&p.run.label, 36)
        } else {
            clipped(&format!("{}  {:.1}%", p.run.label, p.accuracy), 40)
        };
        legend_area.draw(&Text::new(first, (24, y), font.clone().color(&BLACK)))?;
        if two_lines {
            legend_area.draw(&Text::new(
                clipped(&stats, 44),
                (24, y + 16),
                font.clone().color(&RGBColor(90, 90, 90)),
            ))?;
        }
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests;
