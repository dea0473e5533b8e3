//! How a run ended: [`RunOutcome`], classified from what the sandbox saw (its own kills, the exit
//! status, CPU time) and the Python traceback on stderr.

use std::time::Duration;

use serde::Serialize;

/// How a sandboxed run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunOutcome {
    /// Exited with status 0.
    Passed,
    /// An `assert` failed.
    Failed {
        /// The failing source line (`assert candidate(1) == 2`), or the exception line when
        /// the traceback shows no source.
        assertion: String,
        /// The assertion's message, if it had one.
        message: Option<String>,
    },
    /// Any other failure: an uncaught exception, a non-zero exit, a signal.
    Error {
        /// The exception line (`ZeroDivisionError: division by zero`), or `exit status N` /
        /// `killed by signal N` when there is none.
        exception: String,
        /// The end of stderr (the traceback), at most about 4 KB.
        traceback: String,
    },
    /// Ran past the wall-clock or the CPU-time limit.
    Timeout,
    /// Ran out of address space (`MemoryError`, or an allocation failure that killed Python).
    MemoryLimit,
    /// Wrote more than the output cap to a stream.
    OutputLimit {
        /// The stream that overflowed.
        stream: Stream,
    },
}

impl RunOutcome {
    /// Whether the run passed.
    pub fn passed(&self) -> bool {
        matches!(self, Self::Passed)
    }
}

/// An output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// How the program's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Termination {
    /// Exited with this status.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

/// Why the sandbox killed a run itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kill {
    Timeout,
    Output(Stream),
}

const SIGKILL: i32 = 9;
const SIGXCPU: i32 = 24;
const TRACEBACK_BYTES: usize = 4000;

/// Classifies a run. The sandbox's own kills come first, then a clean exit, then the CPU limit
/// (`SIGXCPU`, or `SIGKILL` at the hard limit), then the traceback.
pub(crate) fn classify(
    killed: Option<Kill>,
    termination: Option<Termination>,
    cpu: Option<Duration>,
    cpu_limit: Duration,
    stderr: &str,
) -> RunOutcome {
    match killed {
        Some(Kill::Output(stream)) => return RunOutcome::OutputLimit { stream },
        Some(Kill::Timeout) => return RunOutcome::Timeout,
        None => {}
    }
    match termination {
        Some(Termination::Exited(0)) => return RunOutcome::Passed,
        Some(Termination::Signaled(SIGXCPU)) => return RunOutcome::Timeout,
        Some(Termination::Signaled(SIGKILL)) if cpu.is_some_and(|c| c >= cpu_limit) => {
            return RunOutcome::Timeout
        }
        _ => {}
    }
    let exception = last_exception(stderr);
    let out_of_memory = exception
        .as_ref()
        .is_some_and(|e| e.name.ends_with("MemoryError"))
        || (exception.is_none()
            && (stderr.contains("MemoryError") || stderr.contains("Cannot allocate memory")));
    if out_of_memory {
        return RunOutcome::MemoryLimit;
    }
    let traceback = crate::sandbox::tail(stderr, TRACEBACK_BYTES).to_string();
    match exception {
        Some(e) if e.name == "AssertionError" => RunOutcome::Failed {
            assertion: e.source.unwrap_or_else(|| e.line.clone()),
            message: e.message,
        },
        Some(e) => RunOutcome::Error {
            exception: e.line,
            traceback,
        },
        None => RunOutcome::Error {
            exception: match termination {
                Some(Termination::Exited(code)) => format!("exit status {code}"),
                Some(Termination::Signaled(signal)) => format!("killed by signal {signal}"),
                None => "no exit status".to_string(),
            },
            traceback,
        },
    }
}

/// The exception that ended a Python traceback.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Exception {
    /// `ValueError`, `numpy.core._exceptions._ArrayMemoryError`.
    pub name: String,
    /// The whole exception line.
    pub line: String,
    /// What followed `Name: `, with any continuation lines.
    pub message: Option<String>,
    /// The source line of the innermost frame.
    pub source: Option<String>,
}

/// Finds the exception of the last traceback in `stderr`: the first unindented line after the
/// last `Traceback (most recent call last):` (or, for a `SyntaxError` in the main file, which
/// prints no such header, after the last `  File "..."` line).
pub(crate) fn last_exception(stderr: &str) -> Option<Exception> {
    let lines: Vec<&str> = stderr.lines().collect();
    let start = lines
        .iter()
        .rposition(|l| l.starts_with("Traceback (most recent call last):"))
        .map(|i| i + 1)
        .or_else(|| lines.iter().rposition(|l| l.starts_with("  File \"")))?;
    let offset = lines[start..]
        .iter()
        .position(|l| !l.is_empty() && !l.starts_with(' ') && !l.starts_with('\t'))?;
    let at = start + offset;
    let line = lines[at].trim_end().to_string();
    let (name, first) = match line.split_once(": ") {
        Some((name, rest)) => (name.to_string(), Some(rest.to_string())),
        None => (line.trim_end_matches(':').to_string(), None),
    };
    if name.is_empty() || name.contains(' ') {
        return None;
    }
    let continuation: Vec<&str> = lines[at + 1..].to_vec();
    let message = first.map(|first| {
        std::iter::once(first.as_str())
            .chain(continuation)
            .collect::<Vec<_>>()
            .join("\n")
            .trim_end()
            .to_string()
    });
    let source = lines[start..at]
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| {
            !l.is_empty() && !l.starts_with("File \"") && !l.chars().all(|c| "^~ ".contains(c))
        })
        .map(str::to_string);
    Some(Exception {
        name,
        line,
        message,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(2);

    fn run(termination: Option<Termination>, stderr: &str) -> RunOutcome {
        classify(None, termination, None, LIMIT, stderr)
    }

    #[test]
    fn parses_the_last_exception_and_its_source_line() {
        let stderr = "Traceback (most recent call last):\n  File \"main.py\", line 3, in <module>\n    check(f)\n  File \"tests.py\", line 2, in check\n    assert candidate(1) == 2, \"one\"\n           ^^^^^^^^^^^^^^^^^\nAssertionError: one\n";
        let e = last_exception(stderr).unwrap();
        assert_eq!(e.name, "AssertionError");
        assert_eq!(e.message.as_deref(), Some("one"));
        assert_eq!(
            e.source.as_deref(),
            Some("assert candidate(1) == 2, \"one\"")
        );
        assert_eq!(
            run(Some(Termination::Exited(1)), stderr),
            RunOutcome::Failed {
                assertion: "assert candidate(1) == 2, \"one\"".into(),
                message: Some("one".into())
            }
        );
    }

    #[test]
    fn chained_and_syntax_errors() {
        let chained = "Traceback (most recent call last):\n  File \"a\", line 1\n    x\nKeyError: 'k'\n\nDuring handling of the above exception, another exception occurred:\n\nTraceback (most recent call last):\n  File \"a\", line 3\n    1/0\nZeroDivisionError: division by zero\n";
        let e = last_exception(chained).unwrap();
        assert_eq!(e.line, "ZeroDivisionError: division by zero");
        let syntax = "  File \"/t/src/main.py\", line 1\n    def f(\n         ^\nSyntaxError: '(' was never closed\n";
        assert_eq!(last_exception(syntax).unwrap().name, "SyntaxError");
        assert!(matches!(
            run(Some(Termination::Exited(1)), syntax),
            RunOutcome::Error { exception, .. } if exception == "SyntaxError: '(' was never closed"
        ));
        assert_eq!(last_exception("just some text\n"), None);
    }

    #[test]
    fn classifies_limits_and_exits() {
        assert_eq!(run(Some(Termination::Exited(0)), ""), RunOutcome::Passed);
        let memory = "Traceback (most recent call last):\n  File \"m\", line 1\n    b = bytearray(10**10)\nMemoryError\n";
        assert_eq!(
            run(Some(Termination::Exited(1)), memory),
            RunOutcome::MemoryLimit
        );
        assert_eq!(
            run(Some(Termination::Signaled(SIGXCPU)), ""),
            RunOutcome::Timeout
        );
        assert_eq!(
            classify(
                None,
                Some(Termination::Signaled(SIGKILL)),
                Some(LIMIT),
                LIMIT,
                ""
            ),
            RunOutcome::Timeout
        );
        assert!(matches!(
            run(Some(Termination::Signaled(SIGKILL)), ""),
            RunOutcome::Error { exception, .. } if exception == "killed by signal 9"
        ));
        assert!(matches!(
            run(Some(Termination::Exited(3)), "bye\n"),
            RunOutcome::Error { exception, .. } if exception == "exit status 3"
        ));
        assert_eq!(
            classify(Some(Kill::Timeout), None, None, LIMIT, ""),
            RunOutcome::Timeout
        );
        assert_eq!(
            classify(
                Some(Kill::Output(Stream::Stdout)),
                Some(Termination::Exited(0)),
                None,
                LIMIT,
                ""
            ),
            RunOutcome::OutputLimit {
                stream: Stream::Stdout
            }
        );
    }
}
