//! Reports over results files (`ponder report`): per run accuracy with its uncertainty, what it
//! cost, how it stopped; across runs, accuracy on the problems every run graded (so runs over
//! different subsets compare fairly), head to head for two runs, and an accuracy-versus-tokens
//! plot (SVG).
//!
//! A results file may hold several lines for one problem: a run appends, and a problem that
//! failed is retried on resume. The last line of each problem is the one that counts. Files are
//! only read: a half-written last line (a killed run's) is left out and left in place.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use comfy_table::Table;
use plotters::prelude::*;
use ponder_engine::runner::{config_path, peek_results, stop_reason_name, ResultLine};
use serde::Serialize;

use crate::{Error, Result};

/// One results file, summarised.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Its name in tables and plots.
    pub label: String,
    /// The file.
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
    /// Whether the file ends in a half-written line (left out).
    pub half_written_line: bool,
    /// For adaptive-thinking runs (`router`, `mode_token`): per route (`short`, `think`,
    /// `none`), the solved problems that took it and how many of those were graded right.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, Route>,
    /// What regrading with this ponder's grader changed (`ponder report --regrade`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regraded: Option<Regraded>,
    /// Each graded problem's grade.
    #[serde(skip)]
    grades: HashMap<String, bool>,
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
}

/// Grades the math lines of `lines` again with this ponder's grader
/// ([`ponder_engine::answer::equivalent`] of `answer` and `reference`, as a run grades), for
/// results written by an older ponder whose grader has since been fixed. Code problems (no
/// reference: graded by their tests) and errors are left as recorded.
pub fn regrade(lines: &mut [ResultLine]) -> Regraded {
    let mut last = HashMap::new();
    for (i, line) in lines.iter().enumerate() {
        last.insert(line.id.clone(), i);
    }
    let mut changed = Regraded::default();
    for (i, line) in lines.iter_mut().enumerate() {
        let Some(reference) = line.reference.as_deref() else {
            continue;
        };
        if line.error.is_some() {
            continue;
        }
        let now = line
            .answer
            .as_deref()
            .is_some_and(|a| ponder_engine::answer::equivalent(a, reference));
        if last.get(&line.id) == Some(&i) {
            changed.graded += 1;
            match line.correct {
                Some(false) if now => changed.now_right += 1,
                Some(true) if !now => changed.now_wrong += 1,
                _ => {}
            }
        }
        line.correct = Some(now);
    }
    changed
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

/// The route an adaptive-thinking line took: `details.route` (router) or `details.mode`
/// (mode_token).
fn route_of(line: &ResultLine) -> Option<&str> {
    // A triage run that could not pay for thinking: a short answer that wanted to think.
    if line.strategy == "router" && line.triage.as_ref().is_some_and(|t| !t.second_stage) {
        return Some("short (no budget to think)");
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
        Self::read(path, label, false)
    }

    /// [`RunReport::load`], with the math answers graded again by this ponder's grader
    /// ([`regrade`]); the file is not changed.
    pub fn load_regraded(path: &Path, label: Option<String>) -> Result<Self> {
        Self::read(path, label, true)
    }

    fn read(path: &Path, label: Option<String>, regrade_lines: bool) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such results file"),
            ));
        }
        let (mut lines, half_written_line) = peek_results(path)?;
        let regraded = regrade_lines.then(|| regrade(&mut lines));
        let label = label.unwrap_or_else(|| default_label(path));
        let mut report = Self::from_lines(label, &lines);
        report.regraded = regraded;
        report.path = path.to_path_buf();
        report.half_written_line = half_written_line;
        let side = side_file(path);
        report.model = side.as_ref().and_then(model_of);
        report.set = side.as_ref().and_then(set_of);
        Ok(report)
    }

    /// Summarises `lines` (in file order: a later line for a problem replaces an earlier one).
    pub fn from_lines(label: impl Into<String>, lines: &[ResultLine]) -> Self {
        let mut last: HashMap<&str, &ResultLine> = HashMap::new();
        for line in lines {
            last.insert(line.id.as_str(), line);
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
            half_written_line: false,
            routes: BTreeMap::new(),
            regraded: None,
            grades: HashMap::new(),
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
            report.elapsed_ms = report.elapsed_ms.saturating_add(line.usage.elapsed_ms);
            let reason = line.stop_reason.map_or("unknown", stop_reason_name);
            *report.stop_reasons.entry(reason.to_string()).or_default() += 1;
            if let Some(correct) = line.correct {
                report.graded += 1;
                report.correct += usize::from(correct);
                report.grades.insert(line.id.clone(), correct);
                if let Some(c) = line.candidates.filter(|c| c.graded > 0) {
                    report.with_candidates += 1;
                    if c.right > 0 {
                        report.covered += 1;
                        report.covered_correct += usize::from(correct);
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
    /// when nothing was left unanswered or nothing graded.
    pub fn accuracy_with_unanswered(&self) -> Option<(f64, usize)> {
        let unanswered = self.unanswered();
        let n = self.graded + unanswered;
        (unanswered > 0 && self.graded > 0).then(|| (self.correct as f64 / n as f64, n))
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

    /// Accuracy over `ids` (each must be graded here).
    fn accuracy_on(&self, ids: &BTreeSet<String>) -> Option<f64> {
        let right = ids
            .iter()
            .filter(|id| self.grades.get(*id) == Some(&true))
            .count();
        (!ids.is_empty()).then(|| right as f64 / ids.len() as f64)
    }
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

/// The latest run's set size from the run's side file, if recorded.
/// The run's side file (`<file>.config.json`), if it is there and reads.
fn side_file(path: &Path) -> Option<serde_json::Value> {
    let bytes = std::fs::read(config_path(path)).ok()?;
    serde_json::from_slice(&bytes).ok()
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
    let model = identity.get("model")?;
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
    /// second, neither.
    pub head_to_head: Option<HeadToHead>,
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
        let common = common.unwrap_or_default();
        let accuracy_on_common = runs.iter().map(|r| r.accuracy_on(&common)).collect();
        let head_to_head = match runs.as_slice() {
            [a, b] => {
                let mut h = HeadToHead {
                    both: 0,
                    first_only: 0,
                    second_only: 0,
                    neither: 0,
                };
                for id in &common {
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
                Some(h)
            }
            _ => None,
        };
        Self {
            common: common.len(),
            runs,
            accuracy_on_common,
            head_to_head,
        }
    }

    /// Whether every run graded the same problems (then "on common" adds nothing).
    fn same_problems(&self) -> bool {
        self.runs.iter().all(|r| r.graded == self.common)
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
        if self.runs.len() > 1 && !self.same_problems() {
            notes.push(format!(
                "on common: accuracy on the {} problems every run graded",
                self.common
            ));
        }
        if let (Some(h), [a, b]) = (self.head_to_head, self.runs.as_slice()) {
            notes.push(format!(
                "head to head on {} problems: both right {}, only {} {}, only {} {}, neither {}",
                self.common, h.both, a.label, h.first_only, b.label, h.second_only, h.neither
            ));
        }
        for run in &self.runs {
            if run.half_written_line {
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
            if run.covered > 0 {
                notes.push(format!(
                    "{}: of the {} problems with a right candidate, the answer chosen was right \
                     in {} ({:.1}%)",
                    run.label,
                    run.covered,
                    run.covered_correct,
                    100.0 * run.covered_correct as f64 / run.covered as f64
                ));
            }
            if run.errors > 0 {
                notes.push(format!(
                    "{}: {} problems ended in an error; a rerun retries them",
                    run.label, run.errors
                ));
            }
            if run.cut_short > 0 {
                notes.push(format!(
                    "{}: {} problems were cut short by the run's budget (left out here); a rerun \
                     with a larger --max-run-tokens solves them",
                    run.label, run.cut_short
                ));
            }
            if let Some(r) = run.regraded {
                notes.push(format!(
                    "{}: {} math answers graded again by this ponder: {} now right, {} now wrong",
                    run.label, r.graded, r.now_right, r.now_wrong
                ));
            }
        }
        notes
    }

    /// Draws accuracy (with a 95% interval; unanswered problems count as wrong) against tokens
    /// per problem, one point per run, to an SVG file. Runs without a graded problem are left out; it is an error if none is left.
    pub fn plot(&self, path: &Path) -> Result<()> {
        let points: Vec<(&RunReport, f64, f64, (f64, f64))> = self
            .runs
            .iter()
            .filter_map(|r| {
                // Unanswered problems count as wrong here too (see the table).
                let (p, n) = r
                    .accuracy_with_unanswered()
                    .or_else(|| Some((r.accuracy()?, r.graded)))?;
                let (low, high) = wilson(p, n);
                Some((
                    r,
                    r.tokens_per_problem()?,
                    100.0 * p,
                    (100.0 * low, 100.0 * high),
                ))
            })
            .collect();
        if points.is_empty() {
            return Err(Error::Tool {
                tool: "plot",
                message: "no run has a graded problem to plot".into(),
            });
        }
        draw(path, &points).map_err(|e| Error::Tool {
            tool: "plot",
            message: format!("{}: {e}", path.display()),
        })
    }
}

fn draw(
    path: &Path,
    points: &[(&RunReport, f64, f64, (f64, f64))],
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let (low, high) = points.iter().fold((f64::INFINITY, 0f64), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    let root = SVGBackend::new(path, (800, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("accuracy against tokens per problem", ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        // Log tokens: test-time scaling curves are drawn against log compute.
        .build_cartesian_2d(((low / 1.5).max(1.0)..high * 1.5).log_scale(), 0f64..100f64)?;
    chart
        .configure_mesh()
        .x_desc("tokens per problem (prompt + completion, log scale)")
        .y_desc("accuracy, % (bars: 95% interval)")
        .draw()?;
    // One colour per strategy kind.
    let kind_of = |run: &RunReport| {
        run.strategies
            .first()
            .map_or("", String::as_str)
            .to_string()
    };
    let kinds: BTreeSet<String> = points.iter().map(|p| kind_of(p.0)).collect();
    for (run, x, y, (low, high)) in points {
        let index = kinds.iter().position(|k| *k == kind_of(run)).unwrap_or(0);
        let color = Palette99::pick(index).to_rgba();
        chart.draw_series(std::iter::once(ErrorBar::new_vertical(
            *x,
            *low,
            *y,
            *high,
            color.stroke_width(1),
            8,
        )))?;
        chart.draw_series(std::iter::once(
            EmptyElement::at((*x, *y))
                + Circle::new((0, 0), 5, color.filled())
                + Text::new(
                    run.label.clone(),
                    (8, -14),
                    ("sans-serif", 13).into_font().color(&BLACK),
                ),
        ))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use ponder_engine::{StopReason, Usage};

    fn line(id: &str, correct: Option<bool>, tokens: u64, error: bool) -> ResultLine {
        ResultLine {
            id: id.into(),
            strategy: "direct".into(),
            answer: Some("1".into()),
            reference: Some("1".into()),
            correct,
            usage: Usage {
                prompt_tokens: tokens / 2,
                completion_tokens: tokens - tokens / 2,
                calls: 1,
                elapsed_ms: 1000,
                ..Usage::default()
            },
            stop_reason: (!error).then_some(StopReason::Completed),
            details: serde_json::Value::Null,
            completion: String::new(),
            error: error.then(|| "backend gone".into()),
            allotted: None,
            triage: None,
            question_sha: None,
            cut_short: false,
            candidates: None,
            attempt: None,
        }
    }

    #[test]
    fn regrading_uses_this_grader_on_math_lines_only() {
        let graded = |id: &str, answer: &str, reference: Option<&str>, correct: bool| ResultLine {
            answer: Some(answer.into()),
            reference: reference.map(Into::into),
            ..line(id, Some(correct), 10, false)
        };
        let mut lines = vec![
            // An older grader missed plain-text sqrt; this one reads it.
            graded("a", "sqrt(3)/3", Some("\\frac{\\sqrt{3}}{3}"), false),
            // Recorded right, but the answer is not the reference.
            graded("b", "7", Some("8"), true),
            graded("c", "8", Some("8"), true),
            // A code problem: graded by its tests, kept.
            graded("d", "def f(): pass", None, true),
            // An earlier line of a problem that has a later one: regraded, not counted.
            graded("e", "2", Some("1"), true),
            graded("e", "1", Some("1"), true),
            line("f", None, 10, true),
        ];
        let changed = regrade(&mut lines);
        assert_eq!(
            changed,
            Regraded {
                graded: 4,
                now_right: 1,
                now_wrong: 1
            }
        );
        let correct: Vec<Option<bool>> = lines.iter().map(|l| l.correct).collect();
        let expected = [true, false, true, true, false, true].map(Some);
        assert_eq!(correct[..6], expected);
        assert_eq!(correct[6], None);
        let run = RunReport::from_lines("r", &lines);
        assert_eq!((run.graded, run.correct), (5, 4));
    }

    #[test]
    fn the_last_line_of_a_problem_counts() {
        let lines = vec![
            line("a", None, 10, true),
            line("b", Some(false), 100, false),
            line("a", Some(true), 300, false),
            line("c", None, 50, true),
        ];
        let run = RunReport::from_lines("r", &lines);
        assert_eq!((run.problems, run.errors, run.solved()), (3, 1, 2));
        assert_eq!((run.graded, run.correct), (2, 1));
        assert_eq!(run.tokens, 400);
        assert_eq!(run.tokens_per_problem(), Some(200.0));
        assert_eq!(run.accuracy(), Some(0.5));
        // 1 of 2: Wilson's interval (Newcombe 1998, method 3).
        let (low, high) = run.interval().unwrap();
        assert!(
            (low - 0.0945).abs() < 5e-4 && (high - 0.9055).abs() < 5e-4,
            "{low} {high}"
        );
        assert_eq!(run.stop_reasons.get("completed"), Some(&2));
    }

    #[test]
    fn problems_cut_short_by_the_run_budget_are_neither_solved_nor_errors() {
        let cut = |id: &str| ResultLine {
            answer: None,
            correct: None,
            cut_short: true,
            ..line(id, None, 40, true)
        };
        // "a" was cut, then solved by a rerun; "b" is still cut.
        let lines = vec![
            cut("a"),
            line("a", Some(true), 100, false),
            cut("b"),
            line("c", None, 10, true),
        ];
        let report = Comparison::new(vec![RunReport::from_lines("r", &lines)]);
        let run = &report.runs[0];
        assert_eq!(
            (run.problems, run.errors, run.cut_short, run.solved()),
            (3, 1, 1, 1)
        );
        assert_eq!((run.graded, run.correct, run.tokens), (1, 1, 100));
        let notes = report.notes().join("\n");
        assert!(
            notes.contains("r: 1 problems were cut short by the run's budget"),
            "{notes}"
        );
    }

    #[test]
    fn unanswered_problems_count_as_wrong_beside_the_graded_accuracy() {
        // Two runs under one budget over a set of 10: one answered 4 (3 right) and never started
        // the rest, the other answered all 10 (5 right). Graded accuracy alone ranks the first
        // above; counting what each left unanswered ranks them as the budget spent them.
        let few: Vec<ResultLine> = (0..4)
            .map(|i| line(&format!("p{i}"), Some(i < 3), 10, false))
            .collect();
        let all: Vec<ResultLine> = (0..10)
            .map(|i| line(&format!("p{i}"), Some(i < 5), 10, false))
            .collect();
        let mut first = RunReport::from_lines("few", &few);
        first.set = Some(10);
        let mut second = RunReport::from_lines("all", &all);
        second.set = Some(10);
        assert_eq!(first.accuracy(), Some(0.75));
        assert_eq!(first.unanswered(), 6);
        assert_eq!(first.accuracy_with_unanswered(), Some((0.3, 10)));
        assert_eq!(second.unanswered(), 0);
        assert_eq!(second.accuracy_with_unanswered(), None);
        let table = Comparison::new(vec![first.clone(), second])
            .table()
            .to_string();
        assert!(
            table.contains("30.0% (3/10) counting 6 unanswered as wrong"),
            "{table}"
        );
        // Without a recorded set: errors and cut-short problems are the unanswered ones.
        first.set = None;
        let mut lines = few.clone();
        lines.push(line("p9", None, 10, true));
        let run = RunReport::from_lines("few", &lines);
        assert_eq!(run.unanswered(), 1);
        assert_eq!(run.accuracy_with_unanswered(), Some((0.6, 5)));
    }

    #[test]
    fn the_plot_interval_is_wilsons() {
        // 20 of 20: [0.839, 1], not a bar of nothing.
        let (low, high) = wilson(1.0, 20);
        assert!((low - 0.8389).abs() < 1e-3 && high == 1.0, "{low} {high}");
        let (low, high) = wilson(0.5, 100);
        assert!((low - 0.4038).abs() < 1e-3 && (high - 0.5962).abs() < 1e-3);
    }

    #[test]
    fn runs_with_one_label_are_told_apart() {
        let lines = vec![line("a", Some(true), 10, false)];
        let at = |path: &str| {
            let mut run = RunReport::from_lines("r", &lines);
            run.path = PathBuf::from(path);
            run
        };
        let report = Comparison::new(vec![
            at("base/r.jsonl"),
            at("tuned/r.jsonl"),
            at("tuned/r.jsonl"),
            at("other.jsonl"),
        ]);
        let labels: Vec<&str> = report.runs.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["base/r", "tuned/r #2", "tuned/r #3", "r"]);
    }

    #[test]
    fn adaptive_thinking_runs_count_their_routes() {
        let routed = |id: &str, route: &str, correct: bool| ResultLine {
            strategy: "router".into(),
            details: serde_json::json!({ "route": route, "why": "x" }),
            ..line(id, Some(correct), 10, false)
        };
        let unthought = ResultLine {
            triage: Some(ponder_engine::TriageNote {
                confidence: 0.1,
                why: "confidence 0.100 < 0.2".into(),
                second_stage: false,
                stages: 1,
            }),
            ..routed("e", "short", false)
        };
        let lines = vec![
            routed("a", "short", true),
            routed("b", "think", false),
            routed("c", "think", true),
            line("d", Some(true), 10, false),
            unthought,
        ];
        let run = RunReport::from_lines("r", &lines);
        assert_eq!(
            run.routes.get("think"),
            Some(&Route {
                problems: 2,
                graded: 2,
                correct: 1
            })
        );
        assert_eq!(run.routes.get("short").map(|r| r.correct), Some(1));
        let notes = Comparison::new(vec![run]).notes();
        assert!(
            notes.contains(
                &"r: routes: short 1 (1/1 right), short (no budget to think) 1 (0/1 right), think 2 (1/2 right)"
                    .to_string()
            ),
            "{notes:?}"
        );
        // Other strategies' lines have no routes.
        let plain = RunReport::from_lines("p", &[line("d", Some(true), 10, false)]);
        assert!(plain.routes.is_empty());
    }

    #[test]
    fn coverage_counts_the_problems_with_a_right_candidate() {
        let with = |id: &str, correct: bool, graded: usize, right: usize| ResultLine {
            candidates: Some(ponder_engine::CandidateGrades { graded, right }),
            ..line(id, Some(correct), 10, false)
        };
        let lines = vec![
            with("1", true, 4, 3),
            // A right candidate, the wrong one chosen.
            with("2", false, 4, 1),
            with("3", false, 4, 0),
            // A line from before candidates were graded: not counted either way.
            line("4", Some(true), 10, false),
        ];
        let run = RunReport::from_lines("s", &lines);
        assert_eq!(
            (run.with_candidates, run.covered, run.covered_correct),
            (3, 2, 1)
        );
        let plain = RunReport::from_lines("p", &[line("1", Some(true), 10, false)]);
        let comparison = Comparison::new(vec![run, plain]);
        let table = comparison.table().to_string();
        assert!(
            table.contains("any candidate right") && table.contains("66.7% (2/3)"),
            "{table}"
        );
        let notes = comparison.notes().join("\n");
        assert!(
            notes.contains("s: of the 2 problems with a right candidate, the answer chosen was right in 1 (50.0%)"),
            "{notes}"
        );
    }

    #[test]
    fn runs_compare_on_the_problems_all_graded() {
        let a = RunReport::from_lines(
            "a",
            &[
                line("1", Some(true), 10, false),
                line("2", Some(true), 10, false),
                line("3", Some(false), 10, false),
            ],
        );
        let b = RunReport::from_lines(
            "b",
            &[
                line("1", Some(false), 10, false),
                line("2", Some(true), 10, false),
            ],
        );
        let comparison = Comparison::new(vec![a, b]);
        assert_eq!(comparison.common, 2);
        assert_eq!(comparison.accuracy_on_common, vec![Some(1.0), Some(0.5)]);
        assert_eq!(
            comparison.head_to_head,
            Some(HeadToHead {
                both: 1,
                first_only: 1,
                second_only: 0,
                neither: 0
            })
        );
        let table = comparison.table().to_string();
        assert!(
            table.contains("on common") && table.contains("66.7% [20.8-93.9] (2/3)"),
            "{table}"
        );
        let notes = comparison.notes().join("\n");
        assert!(notes.contains("only a 1, only b 0"), "{notes}");
    }

    #[test]
    fn the_plot_names_every_run() {
        let dir = tempfile::tempdir().unwrap();
        let runs = vec![
            RunReport::from_lines("cap 64", &[line("1", Some(true), 100, false)]),
            RunReport::from_lines("cap 256", &[line("1", Some(false), 900, false)]),
            RunReport::from_lines("all errors", &[line("1", None, 5, true)]),
        ];
        let svg = dir.path().join("plot.svg");
        Comparison::new(runs).plot(&svg).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.starts_with("<svg"));
        assert!(text.contains("cap 64") && text.contains("cap 256"));
        assert!(!text.contains("all errors"));
        let none = Comparison::new(vec![RunReport::from_lines(
            "x",
            &[line("1", None, 5, true)],
        )]);
        assert!(none.plot(&svg).unwrap_err().to_string().contains("graded"));
    }

    #[test]
    fn a_server_asked_for_its_default_model_is_named_by_its_address() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o.jsonl");
        let model_of_config = |model: &str| {
            let toml = format!("[model]\n{model}\n[strategy]\nkind = \"direct\"\n");
            let config: crate::Config =
                ponder_engine::config::parse_str(&toml, ponder_engine::config::Format::Toml)
                    .unwrap();
            std::fs::write(config_path(&out), config.identity().to_string()).unwrap();
            side_file(&out).as_ref().and_then(model_of)
        };
        let openai = "backend = \"openai\"\nbase_url = ";
        assert_eq!(
            model_of_config(&format!("{openai}\"http://a:8000/v1\"")).as_deref(),
            Some("http://a:8000/v1")
        );
        assert_eq!(
            model_of_config(&format!("{openai}[\"http://a:8000\", \"http://b:8000\"]")).as_deref(),
            Some("http://a:8000,http://b:8000")
        );
        assert_eq!(
            model_of_config(&format!("{openai}\"http://a:8000\"\nmodel = \"qwen\"")).as_deref(),
            Some("qwen")
        );
        assert_eq!(
            model_of_config("source = \"smollm2-135m\"").as_deref(),
            Some("smollm2-135m")
        );
    }
}
