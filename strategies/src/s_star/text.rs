//! What S* reads and writes as text: test runs as rounds and outputs, the feedback turn, and the
//! calls in a model's list of synthesised inputs.

use ponder_prm::{TestRun, TestStatus};

use super::{Round, TestLine};

/// A test run as a [`Round`].
pub(super) fn round(code: String, run: &TestRun) -> Round {
    let tests: Vec<TestLine> = run
        .results
        .iter()
        .map(|r| {
            let (status, got) = match &r.status {
                TestStatus::Passed => ("passed", r.got.clone()),
                TestStatus::Failed => ("failed", r.got.clone()),
                TestStatus::Error { exception } => ("error", Some(exception.clone())),
                TestStatus::Timeout => ("timeout", None),
                TestStatus::Skipped { reason } => ("skipped", Some(reason.clone())),
                TestStatus::NotRun => ("not_run", None),
            };
            TestLine {
                call: r.test.call.clone(),
                expected: r.test.expected.clone(),
                status: status.into(),
                got,
            }
        })
        .collect();
    let counted = tests.iter().filter(|t| t.status != "skipped").count();
    Round {
        code,
        tokens: 0,
        passed: run.passed(),
        total: counted,
        load_error: run.load_error.clone(),
        tests,
        sandbox_ms: run.report.wall.as_millis() as u64,
        repeated: false,
    }
}

/// What each probe of a comparison run gave, as text to compare and to show the judge.
pub(super) fn outputs(run: &TestRun) -> Vec<String> {
    if let Some(error) = &run.load_error {
        return vec![format!("(the program does not load: {error})"); run.results.len()];
    }
    run.results
        .iter()
        .map(|r| match &r.status {
            TestStatus::Passed | TestStatus::Failed => r.got.clone().unwrap_or_default(),
            TestStatus::Error { exception } => format!("raises {exception}"),
            TestStatus::Timeout => "(times out)".into(),
            TestStatus::Skipped { reason } => format!("(not run: {reason})"),
            TestStatus::NotRun => "(did not run)".into(),
        })
        .collect()
}

/// The user turn that shows a failed attempt's test results.
pub(super) fn feedback_message(round: &Round, entry: &str) -> String {
    let mut text = String::new();
    if let Some(error) = &round.load_error {
        text.push_str(&format!(
            "Your code does not run; loading it raised:\n{error}\n\n"
        ));
    } else {
        text.push_str(&format!(
            "Your `{entry}` passed {} of {} tests. The failures:\n",
            round.passed, round.total
        ));
        for t in round
            .tests
            .iter()
            .filter(|t| !matches!(t.status.as_str(), "passed" | "skipped"))
            .take(5)
        {
            let expected = t.expected.as_deref().unwrap_or("?");
            let line = match t.status.as_str() {
                "failed" => format!(
                    "- {} should be {expected}, but it returned {}\n",
                    t.call,
                    t.got.as_deref().unwrap_or("nothing")
                ),
                "error" => format!(
                    "- {} should be {expected}, but it raised {}\n",
                    t.call,
                    t.got.as_deref().unwrap_or("an exception")
                ),
                "timeout" => format!("- {} did not finish in time\n", t.call),
                _ => format!("- {} did not run\n", t.call),
            };
            text.push_str(&line);
        }
        text.push('\n');
    }
    text.push_str(
        "The code is wrong. Find the mistake and write a corrected version that gives the expected results; do not repeat the same code. Reply with the whole corrected function in one ```python code block.",
    );
    text
}

/// The call at the start of `text`, up to its balanced closing parenthesis.
pub(super) fn balanced_call(text: &str) -> Option<String> {
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(text[..i + c.len_utf8()].to_string());
                }
            }
            _ => {}
        }
    }
    None
}

/// Up to `k` distinct calls of `entry` in a model's reply, each cut at its closing
/// parenthesis: those on `>>>` lines first (the form the prompt asks for), then bare ones
/// (a call named in prose, `f(numbers, threshold)`, would otherwise take a slot before them).
/// The prompt's own placeholder, `entry(...)`, is not an input, and a call inside another
/// (`f(f(1))`) is part of it.
pub(super) fn calls_of(text: &str, entry: &str, k: usize) -> Vec<String> {
    let head = format!("{entry}(");
    let placeholder = format!("{entry}(...)");
    let mut calls: Vec<String> = Vec::new();
    let prompted = |line: &str| line.trim_start().starts_with(">>>");
    let lines = text
        .lines()
        .filter(|l| prompted(l))
        .chain(text.lines().filter(|l| !prompted(l)));
    for line in lines {
        let mut from = 0;
        while let Some(found) = line.get(from..).and_then(|rest| rest.find(&head)) {
            let at = from + found;
            from = at + head.len();
            // A call of `entry`, not of `my_entry` or `obj.entry`, and not its `def` line.
            let before = line[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
                || line[..at].trim_end().ends_with("def")
            {
                continue;
            }
            let Some(call) = balanced_call(&line[at..]) else {
                continue;
            };
            from = at + call.len();
            if call.replace(' ', "") == placeholder {
                continue;
            }
            if !calls.contains(&call) {
                calls.push(call);
            }
            if calls.len() == k {
                return calls;
            }
        }
    }
    calls
}
