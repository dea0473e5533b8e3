//! Code problems: code out of a model's completion ([`extract_code`], [`assemble`]), HumanEval's
//! public tests ([`docstring_tests`]) and hidden tests, a [`CodeVerifier`] that runs a candidate
//! against tests in the [`Sandbox`] and reports each test, and the [`HumanEvalGrader`].
//!
//! Each verification is one sandbox run, but for the restarts below. The public tests all
//! execute in the candidate's process, one after another, each (and loading the program) under
//! its own CPU-time limit, and report through marked lines on stdout: what the model sees while
//! it debugs. A candidate that catches its timeout still timed out; one that runs on after
//! catching it is given up on and the harness starts itself again after that test. A harness
//! that dies in a test (a call into C past its timeout, a segfault, `os._exit`, the run's
//! limits) is started again after it in another sandbox run. The hidden tests (the grade) keep
//! the candidate out of the process that runs them: `check` runs in a judge process that calls
//! the candidate in a child of its own and sees only plain data come back (see
//! [`CodeVerifier::run_hidden`]), so a candidate cannot forge its grade. Runs share nothing, so
//! any number may be in flight at once; dropping a verification future kills its run (see
//! [`Sandbox`]). Nothing here holds permits.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ponder_engine::{CodeTask, Error, Grader, Problem, Solution};
use serde::{Deserialize, Serialize};

mod helpers;

use crate::sandbox::{nonce, Program, RunOutcome, RunReport, Sandbox, SandboxError, Termination};

/// One test: a call and, optionally, what it should equal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestCase {
    /// A Python expression (`has_close_elements([1.0, 2.0], 0.5)`).
    pub call: String,
    /// A Python expression the call's value must equal (`==`, floats within 1e-6 relative), or,
    /// for a doctest whose expectation is not an expression, the exact text it prints; `None` to
    /// only run the call and record its value.
    pub expected: Option<String>,
    /// Where the test came from (decides how an expectation that does not parse is treated).
    pub origin: TestOrigin,
}

/// Where a [`TestCase`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestOrigin {
    /// A `>>>` example: an expectation that is not an expression is compared as printed text.
    Doctest,
    /// An informal example (`f(x) ==> y`, `f(x) ➞ y`): one that does not parse is skipped.
    Example,
    /// Written by a caller or a model: one that does not parse is skipped.
    Given,
}

impl TestCase {
    /// A test that `call` equals `expected`.
    pub fn new(call: impl Into<String>, expected: impl Into<String>) -> Self {
        Self {
            call: call.into(),
            expected: Some(expected.into()),
            origin: TestOrigin::Given,
        }
    }

    /// A call whose value is only recorded (for comparing programs on new inputs).
    pub fn probe(call: impl Into<String>) -> Self {
        Self {
            call: call.into(),
            expected: None,
            origin: TestOrigin::Given,
        }
    }
}

/// How one test went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TestStatus {
    /// The value equalled the expectation (or, with none, the call returned).
    Passed,
    /// The value differed from the expectation.
    Failed,
    /// The call raised.
    Error {
        /// The exception line.
        exception: String,
    },
    /// The call ran past the per-test timeout.
    Timeout,
    /// The test could not be run as written (undefined names, an expectation that is not Python).
    Skipped {
        /// Why.
        reason: String,
    },
    /// The run ended before this test (the candidate failed to load, or the run was killed).
    NotRun,
}

/// One test's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestResult {
    /// The test.
    pub test: TestCase,
    /// How it went.
    pub status: TestStatus,
    /// `repr` of the value, when the call returned (cut at 1000 characters).
    pub got: Option<String>,
    /// What the call printed (cut at 1000 characters).
    pub stdout: String,
}

/// A candidate's run against a list of tests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestRun {
    /// One result per test, in order.
    pub results: Vec<TestResult>,
    /// The exception that stopped the candidate from loading (a syntax error, say, with the
    /// lines Python shows above it), if any.
    pub load_error: Option<String>,
    /// The sandbox run (its stdout holds what the candidate wrote past the per-test capture,
    /// straight to the descriptor; the harness's records are taken out).
    pub report: RunReport,
}

impl TestRun {
    /// Tests that passed.
    pub fn passed(&self) -> usize {
        self.results
            .iter()
            .filter(|r| r.status == TestStatus::Passed)
            .count()
    }

    /// Whether the candidate loaded and every test that could run passed.
    pub fn all_passed(&self) -> bool {
        self.load_error.is_none()
            && self
                .results
                .iter()
                .all(|r| matches!(r.status, TestStatus::Passed | TestStatus::Skipped { .. }))
    }
}

/// A run of HumanEval's hidden tests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HiddenRun {
    /// `check(entry_point)` returned.
    pub passed: bool,
    /// The sandbox run (its outcome says how a failing run failed).
    pub report: RunReport,
}

/// Runs candidates against tests in a [`Sandbox`].
#[derive(Debug, Clone)]
pub struct CodeVerifier {
    sandbox: Sandbox,
    test_timeout: Duration,
}

/// The longest wait between the grader's tries of a run the busy sandbox could not start (the
/// waits double from 1 s).
const BUSY_MAX_WAIT: Duration = Duration::from_secs(8);

/// How long past [`Sandbox::busy_until`] the grader still tries: the processes of the runs
/// that ended are reaped, and turns to run taken, after it.
const BUSY_MARGIN: Duration = Duration::from_secs(2);

/// Start-up allowance on top of the per-test timeouts for a run's wall-clock limit.
const STARTUP: Duration = Duration::from_secs(5);

/// A test's wall-clock backstop, in per-test timeouts (which count CPU time).
const WALL_PER_TIMEOUT: u32 = 3;

/// How many tests' time loading the program may take (the harness's `LOAD_TESTS`).
const LOAD_TESTS: u32 = 3;

impl CodeVerifier {
    /// A verifier over `sandbox` with a per-test timeout of 3 s.
    pub fn new(sandbox: Sandbox) -> Self {
        Self {
            sandbox,
            test_timeout: Duration::from_secs(3),
        }
    }

    /// Sets the per-test timeout (default 3 s), in CPU time: a test that would pass on an idle
    /// machine is not timed out on a loaded one, where it gets a share of a core. A test also
    /// times out after 3 times as much wall-clock time (one that waits: sleeps, blocks); loading
    /// the program may take as long as three tests. A run's wall-clock limit is the sum of its
    /// tests' and the load's wall-clock times (each test's with a second of grace) plus 5 s, or
    /// the sandbox's, whichever is larger.
    pub fn with_test_timeout(mut self, timeout: Duration) -> Self {
        self.test_timeout = timeout;
        self
    }

    /// The sandbox.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Runs `code` (a whole program defining what the tests call) against `tests`, all in one
    /// sandbox run, unless the program dies in a test: then the tests after it run in another.
    #[tracing::instrument(skip_all, fields(tests = tests.len()))]
    pub async fn run_tests(&self, code: &str, tests: &[TestCase]) -> Result<TestRun, SandboxError> {
        let mut results: Vec<TestResult> = tests
            .iter()
            .map(|test| TestResult {
                test: test.clone(),
                status: TestStatus::NotRun,
                got: None,
                stdout: String::new(),
            })
            .collect();
        let mut load_error = None;
        let mut rest = String::new();
        let mut wall = Duration::ZERO;
        let mut start = 0;
        let mark = format!("@@ponder-test-{:016x} ", nonce());
        loop {
            let mut report = self.run_from(code, tests, start, &mark).await?;
            wall += report.wall;
            let mut run = RunRecords::default();
            for line in report.stdout.lines() {
                take_record(line, &mark, &mut results, &mut run, &mut rest);
            }
            let hard_timeout = report.termination == Some(Termination::Signaled(SIGVTALRM));
            if hard_timeout && !run.loaded && run.load_error.is_none() {
                // Killed before it loaded: a call into C at import that the timer could not
                // interrupt.
                run.load_error = Some(format!(
                    "loading the program did not finish in time ({} s of CPU time)",
                    self.test_timeout.saturating_mul(LOAD_TESTS).as_secs_f64()
                ));
            }
            if let Some(error) = run.load_error {
                if start == 0 && !run.restarted {
                    load_error = Some(error);
                } else {
                    // Loaded the first time, not again (randomness, the clock), in a rerun or
                    // in the harness started again after a caught timeout: the tests left fail
                    // with it, and what the first load gave stands.
                    for result in results.iter_mut().skip(start) {
                        if result.status == TestStatus::NotRun {
                            result.status = TestStatus::Error {
                                exception: error.clone(),
                            };
                        }
                    }
                }
            }
            // The first test without a result is the one the run died in.
            let died_in = results
                .iter()
                .skip(start)
                .position(|r| r.status == TestStatus::NotRun)
                .map(|i| start + i);
            if let (None, Some(i)) = (&load_error, died_in) {
                results[i].status = match &report.outcome {
                    // The kernel ended a call the harness's timers could not interrupt.
                    _ if hard_timeout => TestStatus::Timeout,
                    RunOutcome::Timeout => TestStatus::Timeout,
                    RunOutcome::Error { exception, .. } => TestStatus::Error {
                        exception: exception.clone(),
                    },
                    RunOutcome::MemoryLimit => TestStatus::Error {
                        exception: "MemoryError".into(),
                    },
                    RunOutcome::OutputLimit { .. } => TestStatus::Error {
                        exception: "output limit exceeded".into(),
                    },
                    // Left in the middle of the test (`os._exit(0)`): the harness never
                    // exits 0 before its last record.
                    RunOutcome::Passed => TestStatus::Error {
                        exception: "exit status 0".into(),
                    },
                    RunOutcome::Failed { assertion, .. } => TestStatus::Error {
                        exception: assertion.clone(),
                    },
                };
                // Died after the program loaded, so in this test, whatever killed it (a
                // segfault, `os._exit`, the CPU or wall limit): the tests after it still run,
                // in a harness started again after it. `start` only grows, so this ends.
                // (Died before it loaded, a new start would die the same way.)
                if run.loaded && i + 1 < tests.len() {
                    start = i + 1;
                    continue;
                }
            }
            report.stdout = std::mem::take(&mut rest);
            report.wall = wall;
            return Ok(TestRun {
                results,
                load_error,
                report,
            });
        }
    }

    /// One sandbox run of the test harness over `tests`, from the test at `start` on.
    async fn run_from(
        &self,
        code: &str,
        tests: &[TestCase],
        start: usize,
        mark: &str,
    ) -> Result<RunReport, SandboxError> {
        let test_wall = self.test_timeout.saturating_mul(WALL_PER_TIMEOUT);
        let config = serde_json::json!({
            "timeout_s": self.test_timeout.as_secs_f64(),
            "wall_s": test_wall.as_secs_f64(),
            "tests": tests,
            "start": start,
        });
        // Each test left and the load, with the grace a call that caught its timeout gets.
        let left = tests
            .len()
            .saturating_sub(start)
            .saturating_add(LOAD_TESTS as usize);
        let wall = test_wall
            .saturating_add(Duration::from_secs(1))
            .saturating_mul(u32::try_from(left).unwrap_or(u32::MAX))
            .saturating_add(STARTUP);
        let program = Program::new(PUBLIC_TESTS.replace("{MARK}", mark))
            .with_file("solution.py", code)
            .with_file("tests.json", config.to_string())
            .with_wall(wall.max(self.sandbox.limits().wall()));
        self.sandbox.run(&program).await
    }

    /// Runs HumanEval's hidden tests (`task.test`, then `check(entry_point)`) on `code`, a whole
    /// program (see [`assemble`]).
    ///
    /// `code` runs in a process of its own inside the sandbox run; `check` runs in the run's main
    /// process (the judge) beside the task's prompt (the helpers some tests call, such as
    /// `encode_cyclic`, come from there, not from the candidate). The judge reads both from its
    /// stdin before the candidate starts, so they are never on a disk the candidate can read
    /// (it could run them itself and replay the values compared with). Each call of the
    /// candidate crosses between the two as plain data: `None`, `bool`, `int`, `float`,
    /// `complex`, `Fraction`, `Decimal`, `str`, `bytes`, `range`, tuples, lists, sets and dicts
    /// of them, and iterators and dict views over them (other numbers, numpy's, as
    /// `int`/`float`; subclasses as their base; anything else the candidate returns crosses as
    /// a stand-in that keeps its truth value and equals nothing, so `assert candidate(s)` reads
    /// a returned `re.Match` as OpenAI's harness does). What the candidate raises is raised in the tests with its args: a built-in
    /// exception as itself (but `StopIteration`, which would end the tests' own loops), the
    /// candidate's own classes as subclasses of their nearest built-in ancestor. So the
    /// candidate cannot patch `check`, return an object that equals anything, or print the
    /// pass mark: the judge is not dumpable, which keeps its memory, stdin and stdout
    /// out of reach through `/proc`, and the candidate's own output is discarded. A call that
    /// mutates its arguments is not seen by the tests (none of HumanEval's look).
    ///
    /// # Errors
    /// [`SandboxError::Busy`] when the candidate's process could not be started (the sandbox
    /// user's process limit, shared by every run, reached): not the candidate's failure.
    #[tracing::instrument(skip_all, fields(entry_point = %task.entry_point))]
    pub async fn run_hidden(&self, task: &CodeTask, code: &str) -> Result<HiddenRun, SandboxError> {
        let mark = format!("@@ponder-check-{:016x}", nonce());
        let entry = serde_json::Value::from(task.entry_point.as_str()).to_string();
        let program = Program::new(HIDDEN_TESTS.replace("{ENTRY}", &entry))
            .with_file("solution.py", code)
            // Not files: the candidate's process can read the run directory.
            .with_stdin(
                serde_json::json!({ "prompt": task.prompt, "tests": task.test, "mark": mark })
                    .to_string()
                    .into_bytes(),
            );
        let report = self.sandbox.run(&program).await?;
        let unavailable = format!("{mark} unavailable: ");
        if let Some(reason) = report
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix(&unavailable))
        {
            return Err(SandboxError::Busy {
                reason: format!(
                    "the hidden tests could not start the candidate's process: {reason}"
                ),
            });
        }
        // The mark ends its line (output without a newline may come before it).
        let passed = report.outcome.passed() && report.stdout.lines().any(|l| l.ends_with(&mark));
        Ok(HiddenRun { passed, report })
    }
}

/// Takes a line of the harness's output: a record (after `mark`) goes to its test's result in
/// `results` (or is the `load_error`), the rest (what the candidate wrote straight to the
/// descriptor) to `rest`.
fn take_record(
    line: &str,
    mark: &str,
    results: &mut [TestResult],
    run: &mut RunRecords,
    rest: &mut String,
) {
    // A record starts where the mark is: output the candidate wrote straight to the file
    // descriptor without a newline ends up in front of it.
    let Some(at) = line.find(mark) else {
        rest.push_str(line);
        rest.push('\n');
        return;
    };
    let (before, record) = line.split_at(at);
    if !before.is_empty() {
        rest.push_str(before);
        rest.push('\n');
    }
    let record = &record[mark.len()..];
    let Ok(record) = serde_json::from_str::<Record>(record) else {
        return;
    };
    if let Some(error) = record.load_error {
        run.load_error = Some(error);
    }
    run.loaded |= record.loaded == Some(true);
    if record.restart == Some(true) {
        // The harness starts again: what follows is another load's.
        run.loaded = false;
        run.restarted = true;
    }
    let Some(result) = record.i.and_then(|i| results.get_mut(i)) else {
        return;
    };
    result.got = record.got;
    result.stdout = record.stdout.unwrap_or_default();
    result.status = match record.status.as_deref() {
        Some("passed") => TestStatus::Passed,
        Some("failed") => TestStatus::Failed,
        Some("timeout") => TestStatus::Timeout,
        Some("skipped") => TestStatus::Skipped {
            reason: record.reason.unwrap_or_default(),
        },
        _ => TestStatus::Error {
            exception: record.error.unwrap_or_default(),
        },
    };
}

/// The signal the test harness's hard per-test timer kills it with.
const SIGVTALRM: i32 = rustix::process::Signal::VTALARM.as_raw();

/// What one run of the test harness said of its load.
#[derive(Default)]
struct RunRecords {
    /// It loaded the program (a kill after this is a test's).
    loaded: bool,
    /// Why it could not.
    load_error: Option<String>,
    /// It started itself again after a test (a caught timeout): it loaded once before.
    restarted: bool,
}

#[derive(Deserialize)]
struct Record {
    i: Option<usize>,
    status: Option<String>,
    got: Option<String>,
    stdout: Option<String>,
    error: Option<String>,
    reason: Option<String>,
    load_error: Option<String>,
    loaded: Option<bool>,
    restart: Option<bool>,
}

/// Grades HumanEval-style problems (those with [`Problem::code`]) by running the hidden tests on
/// the solution's completion in the sandbox: pass@1 of that completion. Other problems are left
/// ungraded (`None`); a run the sandbox could not start is an error ([`Error::Sandbox`]: the runner
/// records the problem as failed, and a rerun grades it again).
#[derive(Debug, Clone)]
pub struct HumanEvalGrader {
    verifier: CodeVerifier,
}

impl HumanEvalGrader {
    /// A grader running in `sandbox`. As root, runs under one sandbox user share its process
    /// limit (see the [`Sandbox`] docs): a strategy running code beside the grader (S*) under
    /// the same user can leave it busy (a candidate's fork bomb), and it waits that out (until
    /// [`Sandbox::busy_until`]); a sandbox of another user ([`Sandbox::with_user`]) keeps them
    /// apart.
    pub fn new(sandbox: Sandbox) -> Self {
        Self {
            verifier: CodeVerifier::new(sandbox),
        }
    }
}

#[async_trait]
impl Grader for HumanEvalGrader {
    async fn grade(
        &self,
        problem: &Problem,
        solution: &Solution,
    ) -> ponder_engine::Result<Option<bool>> {
        let Some(task) = problem.code.as_ref() else {
            return Ok(None);
        };
        let code = assemble(task, &solution.completion);
        // A sandbox busy with other runs' processes (a candidate forking in S*'s tests, which
        // share the sandbox user's process limit) is tried again as they end, rather than
        // failing the problem: until the runs in flight when it was first busy could hold the
        // processes no longer (a test harness's run lasts its tests' time limits, a minute or
        // more), the waits doubling up to BUSY_MAX_WAIT.
        let mut tries = 0u32;
        let mut wait = Duration::from_secs(1);
        let mut give_up: Option<Instant> = None;
        let run = loop {
            tries += 1;
            let outcome = self.verifier.run_hidden(task, &code).await;
            if matches!(outcome, Err(SandboxError::Busy { .. })) {
                let until = *give_up.get_or_insert_with(|| {
                    let busy_until = self.verifier.sandbox().busy_until();
                    busy_until.checked_add(BUSY_MARGIN).unwrap_or(busy_until)
                });
                let left = until.saturating_duration_since(Instant::now());
                if !left.is_zero() {
                    tokio::time::sleep(wait.min(left)).await;
                    wait = wait.saturating_mul(2).min(BUSY_MAX_WAIT);
                    continue;
                }
            }
            break outcome.map_err(|error| Error::Sandbox {
                doing: format!(
                    "running the hidden tests ({tries} {})",
                    if tries == 1 { "try" } else { "tries" }
                ),
                source: Box::new(error),
            })?;
        };
        Ok(Some(run.passed))
    }
}

/// The program to test for `task` from a model's `completion`: the extracted code, after the
/// prompt's imports and helpers when it defines the entry point itself, else after the whole
/// prompt (a completion that continues the function body).
pub fn assemble(task: &CodeTask, completion: &str) -> String {
    let code = extract_task_code(task, completion);
    let prompt = task.prompt.as_str();
    let program = if defines(&code, &task.entry_point) {
        format!("{}{code}\n", preamble(task))
    } else {
        format!("{prompt}{code}\n")
    };
    helpers::hoist_future(&program)
}

/// The code of a model's `completion` for `task`: [`extract_code`], where the names the
/// prompt's preamble binds (its imports and helpers, which [`assemble`] puts first) are not
/// looked for in the completion's other blocks (a stub `def poly(...): ...` the model echoed).
pub fn extract_task_code(task: &CodeTask, completion: &str) -> String {
    let known = helpers::top_level_names(preamble(task));
    extract_code_known(completion, Some(&task.entry_point), &known)
}

/// What `task`'s prompt has before its entry point's `def`.
fn preamble(task: &CodeTask) -> &str {
    let prompt = task.prompt.as_str();
    def_line(prompt, &task.entry_point).map_or("", |at| &prompt[..at])
}

/// Whether `code` defines `name` at the top level (`def name(` or `async def name(`).
pub fn defines(code: &str, name: &str) -> bool {
    def_line(code, name).is_some()
}

/// The byte offset of the line that defines `name` at the top level.
fn def_line(code: &str, name: &str) -> Option<usize> {
    let mut offset = 0;
    for line in code.split_inclusive('\n') {
        let rest = line.strip_prefix("async ").unwrap_or(line);
        if rest
            .strip_prefix("def ")
            .and_then(|r| r.trim_start().strip_prefix(name))
            .is_some_and(|r| r.trim_start().starts_with('('))
        {
            return Some(offset);
        }
        offset += line.len();
    }
    None
}

/// The code in a model's completion: of its fenced blocks (```` ```python ````, ```` ```py ````
/// or unlabelled; an unclosed last block runs to the end), the last that defines `entry_point`
/// (after the helpers it uses from other blocks: `helpers.rs`), else the longest; without
/// fences, the code from the first top-level `def`, `class` or import (or the whole text, when
/// it starts indented: a function body), cut before trailing prose.
/// A reasoning model's completion is read after its thinking (`</think>`) where that part
/// holds a fenced block or defines `entry_point`, so a draft written while thinking does not
/// outrank the program it answers with.
pub fn extract_code(completion: &str, entry_point: Option<&str>) -> String {
    extract_code_known(completion, entry_point, &HashSet::new())
}

/// [`extract_code`], where the program will also have `known` (the names a prompt's preamble
/// binds): those are not looked for in other blocks.
fn extract_code_known(
    completion: &str,
    entry_point: Option<&str>,
    known: &HashSet<String>,
) -> String {
    match ponder_engine::answer::after_thinking(completion) {
        Some(after)
            if !fenced_blocks(after).is_empty()
                || entry_point.is_some_and(|name| defines(after, name)) =>
        {
            extract_code_in(after, entry_point, known)
        }
        // The thinking's, its opening delimiter dropped: a draft written against it
        // (`<think>def f(x):`, `<think>```python`) reads as code.
        _ => extract_code_in(
            completion
                .trim_start()
                .strip_prefix("<think>")
                // (Its own line's spaces too: they do not indent a function body.)
                .map_or(completion, |rest| rest.trim_start_matches([' ', '\t'])),
            entry_point,
            known,
        ),
    }
}

fn extract_code_in(completion: &str, entry_point: Option<&str>, known: &HashSet<String>) -> String {
    let blocks = fenced_blocks(completion);
    if !blocks.is_empty() {
        if let Some(at) = entry_point.and_then(|name| blocks.iter().rposition(|b| defines(b, name)))
        {
            return helpers::with_helpers(&blocks, at, known);
        }
        return blocks
            .iter()
            .max_by_key(|b| b.len())
            .cloned()
            .unwrap_or_default();
    }
    let lines: Vec<&str> = completion.lines().collect();
    let first = lines.iter().position(|l| !l.trim().is_empty());
    let starts_indented = first.is_some_and(|i| lines[i].starts_with([' ', '\t']));
    let start = if starts_indented {
        first
    } else {
        lines.iter().position(|l| {
            ["def ", "async def ", "class ", "import ", "from ", "@"]
                .iter()
                .any(|k| l.starts_with(k))
        })
    };
    let Some(start) = start else {
        return completion.to_string();
    };
    let end = lines[start..]
        .iter()
        .position(|l| !l.is_empty() && !l.starts_with([' ', '\t']) && !looks_like_code(l))
        .map_or(lines.len(), |n| start + n);
    let mut code = lines[start..end].join("\n");
    code.truncate(code.trim_end().len());
    code.push('\n');
    code
}

fn fenced_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    // Whether the block is Python, how far its fence is indented, its lines.
    let mut current: Option<(bool, usize, Vec<&str>)> = None;
    for line in text.lines() {
        let unindented = line.trim_start();
        let fence = unindented.strip_prefix("```");
        match (&mut current, fence) {
            (None, Some(label)) => {
                let label = label.trim().to_ascii_lowercase();
                let python = ["", "python", "py", "python3"].contains(&label.as_str());
                current = Some((python, line.len() - unindented.len(), Vec::new()));
            }
            (Some(_), Some(_)) => {
                if let Some((true, indent, lines)) = current.take() {
                    blocks.push(without_margin(&lines, indent));
                }
            }
            (Some((_, _, lines)), None) => lines.push(line),
            (None, None) => {}
        }
    }
    if let Some((true, indent, lines)) = current {
        blocks.push(without_margin(&lines, indent));
    }
    blocks.retain(|b| !b.trim().is_empty());
    blocks
}

/// A fenced block's `lines`, less the indentation its fence had (a block inside a list item is
/// indented with its fence: its code is not), or less what all its lines share where that is
/// less: nesting within the block is kept.
fn without_margin(lines: &[&str], fence_indent: usize) -> String {
    let margin = |line: &str| line.len() - line.trim_start_matches([' ', '\t']).len();
    // Comments may sit anywhere (a note flush left in an indented block).
    let shared = lines
        .iter()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| margin(l))
        .min()
        .unwrap_or(0);
    let strip = shared.min(fence_indent);
    let kept: Vec<&str> = lines.iter().map(|l| &l[strip.min(margin(l))..]).collect();
    kept.join("\n") + "\n"
}

/// Whether an unindented line reads as Python rather than prose.
fn looks_like_code(line: &str) -> bool {
    const STARTS: [&str; 27] = [
        "def ", "async ", "class ", "import ", "from ", "@", "if ", "elif ", "else:", "for ",
        "while ", "try:", "except", "finally:", "with ", "return", "print(", "#", "assert ",
        "raise ", ")", "]", "}", "\"\"\"", "'''", "pass", "del ",
    ];
    if STARTS.iter().any(|s| line.starts_with(s)) {
        return true;
    }
    let name_end = line
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(line.len());
    if name_end == 0 {
        return false;
    }
    let after = &line[name_end..];
    let rest = after.trim_start();
    // A call or index is written against its name (`main()`, `xs[0] = 1`): prose puts a space
    // before its parenthesis ("Explanation (see above):"). A comma after a name is Python's
    // only in an unpacking (`a, b = b, a`), prose's in "However, this is O(n).".
    after.starts_with(['(', '['])
        || ["=", "+=", "-=", "*=", "/="]
            .iter()
            .any(|s| rest.starts_with(s))
        || (rest.starts_with(',') && rest.contains('='))
}

/// The examples in the docstring of `entry_point` in a HumanEval `prompt`, as tests: `>>>` lines
/// with the output lines that follow (an empty output means `None`), and informal examples
/// (`entry_point(args) <sep> expected` with `==>`, `=>`, `➞`, `->`, `==`, `# returns`, `=`;
/// `true`/`false` read as `True`/`False`; of a worked `a - b = c`, the `c`).
pub fn docstring_tests(prompt: &str, entry_point: &str) -> Vec<TestCase> {
    let body = def_line(prompt, entry_point).map_or(prompt, |at| &prompt[at..]);
    let lines: Vec<&str> = body.lines().collect();
    let call_prefix = format!("{entry_point}(");
    let recurrence = lines.iter().any(|l| defines_recurrence(l, entry_point));
    let examples_from = lines.iter().rposition(|l| {
        let l = l.trim().to_lowercase();
        l.starts_with("example") || l.starts_with("for example")
    });
    let mut tests = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        i += 1;
        if let Some(call) = line.strip_prefix(">>>") {
            let mut call = call.trim().to_string();
            while let Some(more) = lines
                .get(i)
                .and_then(|l| l.trim_start().strip_prefix("..."))
            {
                call.push('\n');
                call.push_str(more.strip_prefix(' ').unwrap_or(more));
                i += 1;
            }
            let mut expected = Vec::new();
            while let Some(next) = lines.get(i).map(|l| l.trim()) {
                if next.is_empty() || next.starts_with(">>>") || is_docstring_end(next) {
                    break;
                }
                i += 1;
                match next
                    .strip_suffix("\"\"\"")
                    .or_else(|| next.strip_suffix("'''"))
                {
                    Some(last) => {
                        expected.push(last.trim_end());
                        break;
                    }
                    None => expected.push(next),
                }
            }
            if call.contains(&call_prefix) {
                let expected = expected.join("\n");
                tests.push(if expected.is_empty() {
                    compared(&call, entry_point)
                } else {
                    TestCase {
                        call,
                        expected: Some(expected),
                        origin: TestOrigin::Doctest,
                    }
                });
            }
        } else if line.starts_with(&call_prefix) {
            if let Some(test) = informal_example(line, entry_point.len()) {
                // Where the docstring defines a sequence (`tri(n) = ...`), a `tri(1) = 3` is
                // one of its terms, not what the function returns, unless under the last
                // "Examples" heading.
                let under_examples = examples_from.is_some_and(|from| i > from);
                if under_examples || !recurrence || !bare_equals(line, &test.call) {
                    tests.push(test);
                }
            }
        }
    }
    tests
}

/// Whether `line`, a docstring line, defines `entry_point` as a sequence by a free variable:
/// `tri(n) = 1 + n / 2, if n is even.` (HumanEval/130).
fn defines_recurrence(line: &str, entry_point: &str) -> bool {
    let line = line.trim();
    let Some(rest) = line.strip_prefix(entry_point) else {
        return false;
    };
    let Some((arg, after)) = rest.strip_prefix('(').and_then(|r| r.split_once(')')) else {
        return false;
    };
    let arg = arg.trim();
    let free = arg.starts_with(|c: char| c.is_alphabetic() || c == '_')
        && arg.chars().all(|c| c.is_alphanumeric() || c == '_');
    free && bare_equals(line, &line[..line.len() - after.len()])
}

/// Whether the example `line` sets its `call` against a value with a bare `=` (not `==`, `=>`).
fn bare_equals(line: &str, call: &str) -> bool {
    let rest = line.get(call.len()..).unwrap_or_default().trim_start();
    rest.starts_with('=') && !rest.starts_with("==") && !rest.starts_with("=>")
}

/// A doctest with no output line: a call that prints nothing (`None`), a call with its output
/// after it on the line (`>>> f(1) [0, 1]`, HumanEval/116: against that value), or a
/// comparison meant to hold, as `>>> f(19) == 'xix'` (HumanEval/116, 145, 156, 162): `f(19)`
/// against `'xix'` where the right side is one value, else the whole expression against `True`.
fn compared(call: &str, entry_point: &str) -> TestCase {
    let test = |call: &str, expected: &str| TestCase {
        call: call.to_string(),
        expected: Some(expected.to_string()),
        origin: TestOrigin::Doctest,
    };
    if !compares(call) {
        // `>>> sort_array([1, 0, 2, 3, 4]) [0, 1, 2, 3, 4]` (HumanEval/116): the output written
        // after the call, its `==` left out. As a call expected to return `None` it would raise
        // for every program (a list indexed by a tuple).
        if let Some((call, value)) = juxtaposed(call, entry_point) {
            return test(call, value);
        }
        return test(call, "None");
    }
    let split = informal_example(call, entry_point.len()).and_then(|t| {
        let value = call[t.call.len()..].trim_start().strip_prefix("==")?.trim();
        // One value: no second comparison or boolean operator after the first, and no call
        // (`f(2) == f(-2)`: the expected side is read as a value, without the program).
        let one = !value.is_empty()
            && !value.starts_with(['=', '>'])
            && ![" or ", " and ", "==", "!=", " if ", " not "]
                .iter()
                .any(|op| value.contains(op))
            && !value.char_indices().any(|(at, c)| {
                c == '(' && value[..at].ends_with(|p: char| p.is_alphanumeric() || p == '_')
            });
        one.then(|| test(&t.call, value))
    });
    split.unwrap_or_else(|| test(call, "True"))
}

/// Whether `expr` holds `==` or `!=` outside its strings.
fn compares(expr: &str) -> bool {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut previous = ' ';
    for c in expr.chars() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '=' && (previous == '=' || previous == '!') => return true,
            None => {}
        }
        previous = c;
    }
    false
}

fn is_docstring_end(line: &str) -> bool {
    line.starts_with("\"\"\"") || line.starts_with("'''")
}

/// `entry_point(args) <literal>`, a space between (not `f(args)[0]`, an index): the call and
/// the literal (a list, tuple, dict or set closed at the end, a string, a number, `True`,
/// `False`, `None`).
fn juxtaposed<'a>(line: &'a str, entry_point: &str) -> Option<(&'a str, &'a str)> {
    if !line.strip_prefix(entry_point)?.starts_with('(') {
        return None;
    }
    let close = closing(line, entry_point.len())?;
    let (call, rest) = line.split_at(close + 1);
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let value = rest.trim();
    let literal = match value.chars().next()? {
        '[' | '(' | '{' => closing(value, 0) == Some(value.len() - 1),
        q @ ('\'' | '"') => value.len() >= 2 && value.ends_with(q),
        c if c.is_ascii_digit() || c == '-' => {
            value
                .trim_start_matches('-')
                .starts_with(|d: char| d.is_ascii_digit())
                && value.parse::<f64>().is_ok()
        }
        _ => matches!(value, "True" | "False" | "None"),
    };
    literal.then_some((call, value))
}

/// Where the bracket that opens first at or after `from` (a byte offset) closes, outside
/// strings.
fn closing(line: &str, from: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (at, c) in line.char_indices().skip_while(|&(at, _)| at < from) {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' => quote = Some(c),
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return Some(at);
                    }
                }
                _ => {}
            },
        }
    }
    None
}

/// `f(args) ==> value`: the call runs to the parenthesis that closes the one after the name.
fn informal_example(line: &str, name_len: usize) -> Option<TestCase> {
    let close = closing(line, name_len)?;
    let rest = line[close + 1..].trim();
    const SEPARATORS: [&str; 9] = [
        "==>",
        "=>",
        "➞",
        "→",
        "->",
        "==",
        "# returns",
        "returns",
        "=",
    ];
    let separator = SEPARATORS.iter().find(|s| rest.starts_with(*s))?;
    // `f(x) -> 19 - 5 - 6 = 8`: the worked example ends in the value.
    let expected = rest[separator.len()..].trim();
    let expected = expected.rsplit(" = ").next().unwrap_or(expected).trim();
    let expected = match expected {
        "" => return None,
        "true" => "True",
        "false" => "False",
        e => e,
    };
    Some(TestCase {
        call: line[..=close].to_string(),
        expected: Some(expected.to_string()),
        origin: TestOrigin::Example,
    })
}

/// Runs a candidate against its tests (`{MARK}` is substituted).
const PUBLIC_TESTS: &str = include_str!("code/public_tests.py");
/// Runs HumanEval's `check` in a judge process and the candidate in a child (`{ENTRY}` is
/// substituted; the prompt, the tests and the pass mark come on stdin).
const HIDDEN_TESTS: &str = include_str!("code/hidden_tests.py");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_the_block_that_defines_the_entry_point() {
        let text = "Here is a helper:\n```python\ndef helper():\n    return 1\n```\nAnd the answer:\n```python\ndef f(x):\n    return helper() + x\n```\nDone. ```text\nnot code\n```";
        // The helper it calls, from a block of its own, goes before it.
        assert_eq!(
            extract_code(text, Some("f")),
            "def helper():\n    return 1\n\ndef f(x):\n    return helper() + x\n"
        );
        assert_eq!(
            extract_code(text, Some("g")),
            "def f(x):\n    return helper() + x\n",
            "the longest block when none defines it"
        );
        let unclosed = "```py\ndef f(x):\n    return x";
        assert_eq!(
            extract_code(unclosed, Some("f")),
            "def f(x):\n    return x\n"
        );
    }

    #[test]
    fn a_reasoning_models_program_follows_its_thinking() {
        let draft =
            "```python\ndef f(x):\n    # a long first try\n    y = x\n    return y * 2\n```";
        let text = format!("<think>\nLet me try:\n{draft}\nWait, that doubles it.\n</think>\n\n```python\ndef f(x):\n    return x\n```\nThen call it:\n```python\nprint(f(1))\n```");
        // Without an entry point the longest block would be the draft.
        assert_eq!(extract_code(&text, None), "def f(x):\n    return x\n");
        assert_eq!(extract_code(&text, Some("f")), "def f(x):\n    return x\n");
        // No code after the thinking: the thinking's.
        let cut = format!("<think>\n{draft}\n</think>\nAs above.");
        assert!(extract_code(&cut, Some("f")).contains("a long first try"));
        // Bare code after it, defining the entry point.
        let bare = format!("<think>\n{draft}\n</think>\ndef f(x):\n    return x\n");
        assert_eq!(extract_code(&bare, Some("f")), "def f(x):\n    return x\n");
        // Thinking cut off, its code written against its delimiter: the code, without it.
        for glued in [
            "<think>def f(x):\n    return x\n",
            "<think>```python\ndef f(x):\n    return x\n```\nor",
            "<think> Let me think.\nSo here:\ndef f(x):\n    return x\n",
        ] {
            assert_eq!(extract_code(glued, Some("f")), "def f(x):\n    return x\n");
        }
    }

    #[test]
    fn extracts_bare_code_and_drops_prose() {
        let text = "Sure! Here it is.\n\nimport math\n\ndef f(x):\n    return math.sqrt(x)\n\nprint(f(4))\nThis prints 2.0.\n";
        assert_eq!(
            extract_code(text, Some("f")),
            "import math\n\ndef f(x):\n    return math.sqrt(x)\n\nprint(f(4))\n"
        );
        let body = "    return sorted(x)\n\n\nThe function sorts.";
        assert_eq!(extract_code(body, Some("f")), "    return sorted(x)\n");
        assert_eq!(extract_code("no code at all", None), "no code at all");
        // Prose after the function that opens with a word and a comma or a spaced parenthesis.
        let prose = "def f(x):\n    return x\n\nHowever, this is O(n).\nExplanation (short):\n";
        assert_eq!(extract_code(prose, Some("f")), "def f(x):\n    return x\n");
        // Code that opens with a name and a comma, a call or an index stays.
        let code = "def f(x):\n    return x\na, b = f(1), f(2)\nmain()\nxs[0] = 1\n";
        assert_eq!(extract_code(code, Some("f")), code);
    }

    #[test]
    fn a_fenced_block_inside_a_list_item_is_unindented() {
        let text =
            "1. Code:\n   ```python\n   def add(a, b):\n       return a + b\n   ```\n2. Done.";
        assert_eq!(
            extract_code(text, Some("add")),
            "def add(a, b):\n    return a + b\n"
        );
        // A comment flush left does not keep the block's indentation.
        let noted =
            "1. Code:\n    ```python\n# note\n    def add(a, b):\n        return a + b\n    ```";
        assert_eq!(
            extract_code(noted, Some("add")),
            "# note\ndef add(a, b):\n    return a + b\n"
        );
        // Code written flush left under an indented fence keeps its nesting.
        let flush = "1. Code:\n    ```python\ndef add(a, b):\n  if a:\n    return a + b\n  return b\n    ```";
        assert_eq!(
            extract_code(flush, Some("add")),
            "def add(a, b):\n  if a:\n    return a + b\n  return b\n"
        );
    }

    #[test]
    fn assembles_with_or_without_the_prompt() {
        let task = CodeTask {
            prompt:
                "from typing import List\n\n\ndef f(xs: List[int]) -> int:\n    \"\"\"Sum.\"\"\"\n"
                    .into(),
            entry_point: "f".into(),
            test: String::new(),
        };
        let body = assemble(&task, "    return sum(xs)\n");
        assert!(body.starts_with(&task.prompt) && body.ends_with("return sum(xs)\n\n"));
        let whole = assemble(
            &task,
            "```python\ndef f(xs: List[int]) -> int:\n    return sum(xs)\n```",
        );
        assert_eq!(
            whole,
            "from typing import List\n\n\ndef f(xs: List[int]) -> int:\n    return sum(xs)\n\n"
        );
        assert!(defines("async def f (x):\n", "f") && !defines("def fx(x):\n", "f"));
        assert!(!defines("class A:\n    def f(self):\n", "f"));
    }

    /// Each test's call and expected output.
    fn calls_and_outputs(tests: &[TestCase]) -> Vec<(&str, &str)> {
        tests
            .iter()
            .map(|t| (t.call.as_str(), t.expected.as_deref().unwrap()))
            .collect()
    }

    #[test]
    fn parses_doctests_and_informal_examples() {
        let prompt = "def helper():\n    \"\"\"\n    >>> helper()\n    1\n    \"\"\"\n\ndef f(xs, s):\n    \"\"\" Doc.\n    >>> f([1, 2], 'a')\n    [2, 1]\n    >>> f([],\n    ... 'b')\n\n    >>> f([4], 'd') == ['d']\n    >>> f([6], 'f') == ['f'] or f([6], 'f') == []\n    >>> f([7], 'g') != []\n    >>> f([8], 'h')=='a = b'\n    >>> f('a==b')\n    >>> f([9], 'i') == f([9], 'j')\n    >>> f([5], 'e') == ['e']\n    True\n    >>> f([3], 'c')\n    'c'\"\"\"\n";
        let tests = docstring_tests(prompt, "f");
        assert_eq!(
            calls_and_outputs(&tests),
            vec![
                ("f([1, 2], 'a')", "[2, 1]"),
                ("f([],\n'b')", "None"),
                // A comparison with no output line is the example (HumanEval/116); one with
                // more than a value on its right is checked whole.
                ("f([4], 'd')", "['d']"),
                ("f([6], 'f') == ['f'] or f([6], 'f') == []", "True"),
                ("f([7], 'g') != []", "True"),
                ("f([8], 'h')", "'a = b'"),
                ("f('a==b')", "None"),
                ("f([9], 'i') == f([9], 'j')", "True"),
                ("f([5], 'e') == ['e']", "True"),
                ("f([3], 'c')", "'c'")
            ]
        );
        assert!(tests.iter().all(|t| t.origin == TestOrigin::Doctest));
        let informal = "def g(a, b):\n    '''\n    g([1, (2)], \")\") ➞ False\n    g(1, 2) ==> [1, 2]\n    g(3, 4) => true\n    g(5, 6)   # returns \"db\"\n    g(7, 8) -> 19 - 5 = 8\n    g(9, 0)\n    '''\n";
        let tests = docstring_tests(informal, "g");
        assert_eq!(
            calls_and_outputs(&tests),
            vec![
                ("g([1, (2)], \")\")", "False"),
                ("g(1, 2)", "[1, 2]"),
                ("g(3, 4)", "True"),
                ("g(5, 6)", "\"db\""),
                ("g(7, 8)", "8"),
            ]
        );
        assert!(tests.iter().all(|t| t.origin == TestOrigin::Example));
    }

    #[test]
    fn a_doctest_missing_its_equals_is_read_as_a_comparison() {
        // HumanEval/116's last example: the expected list after the call, `==` left out. As a
        // call expected to return None it raised TypeError for every program.
        let prompt = "\ndef sort_array(arr):\n    \"\"\"\n    It must be implemented like this:\n    >>> sort_array([1, 5, 2, 3, 4]) == [1, 2, 3, 4, 5]\n    >>> sort_array([-2, -3, -4, -5, -6]) == [-6, -5, -4, -3, -2]\n    >>> sort_array([1, 0, 2, 3, 4]) [0, 1, 2, 3, 4]\n    \"\"\"\n";
        let tests = docstring_tests(prompt, "sort_array");
        assert_eq!(
            calls_and_outputs(&tests),
            vec![
                ("sort_array([1, 5, 2, 3, 4])", "[1, 2, 3, 4, 5]"),
                ("sort_array([-2, -3, -4, -5, -6])", "[-6, -5, -4, -3, -2]"),
                ("sort_array([1, 0, 2, 3, 4])", "[0, 1, 2, 3, 4]"),
            ]
        );
        // Other literals after a space too; an index, a call of the result, an operation or
        // another call (no literal) stay one expression expected to return None.
        let cases = [
            ("f(1) 'a'", ("f(1)", "'a'")),
            ("f(1) -2.5", ("f(1)", "-2.5")),
            ("f(1) True", ("f(1)", "True")),
            ("f(1) (1, 2)", ("f(1)", "(1, 2)")),
            ("f(1)[0]", ("f(1)[0]", "None")),
            ("f(1) [0] + [1]", ("f(1) [0] + [1]", "None")),
            ("f(1) inf", ("f(1) inf", "None")),
            ("g(f(1)) [0]", ("g(f(1)) [0]", "None")),
        ];
        for (line, (call, expected)) in cases {
            let prompt = format!("def f(x):\n    \"\"\"\n    >>> {line}\n    \"\"\"\n");
            let tests = docstring_tests(&prompt, "f");
            assert_eq!(tests.len(), 1, "{line}");
            assert_eq!(
                (
                    tests[0].call.as_str(),
                    tests[0].expected.as_deref().unwrap()
                ),
                (call, expected),
                "{line}"
            );
        }
    }

    #[test]
    fn the_terms_of_a_sequence_the_docstring_defines_are_not_examples() {
        // HumanEval/130: `tri(1) = 3` is a term of the sequence, but `tri` returns a list of
        // them; only the example under "Examples:" is one.
        let prompt = "def tri(n):\n    \"\"\"Tribonacci sequence is defined by the recurrence:\n    tri(1) = 3\n    tri(n) = 1 + n / 2, if n is even.\n    tri(n) =  tri(n - 1) + tri(n - 2) + tri(n + 1), if n is odd.\n    For example:\n    tri(2) = 1 + (2 / 2) = 2\n    tri(4) = 3\n    tri(3) = tri(2) + tri(1) + tri(4)\n           = 2 + 3 + 3 = 8 \n    You are given a non-negative integer number n, you have to a return a list of the \n    first n + 1 numbers of the Tribonacci sequence.\n    Examples:\n    tri(3) = [1, 3, 2, 8]\n    \"\"\"\n";
        let tests = docstring_tests(prompt, "tri");
        assert_eq!(calls_and_outputs(&tests), vec![("tri(3)", "[1, 3, 2, 8]")]);
        // Without a definition by a free variable, a bare `=` example stands.
        let tests = docstring_tests("def g(n):\n    '''\n    g(1) = 3\n    '''\n", "g");
        assert_eq!(tests.len(), 1);
    }
}
