//! The engine's error type.

use std::path::PathBuf;

use crate::budget::Resource;

/// Everything that can go wrong in the engine, its backends and its runner.
///
/// Running out of budget surfaces here as [`Error::BudgetExhausted`] at the backend level only;
/// strategies turn it into a [`crate::StopReason`] and return the best answer so far.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The prompt and the requested completion do not fit in the model's context window.
    /// (A count a server did not say is 0.)
    #[error("{}", too_long(*prompt_tokens, *max_tokens, *context_tokens))]
    PromptTooLong {
        prompt_tokens: usize,
        max_tokens: usize,
        context_tokens: usize,
    },
    /// A request that makes no sense before it reaches the model (empty prompt, n = 0, ...).
    #[error("invalid request: {reason}")]
    InvalidRequest { reason: &'static str },
    /// The backend cannot do what was asked (for example logits processors over HTTP).
    #[error("backend `{backend}` does not support {operation}")]
    Unsupported {
        backend: &'static str,
        operation: &'static str,
    },
    /// The metered budget has no room left for this call.
    #[error("budget exhausted: {resource}")]
    BudgetExhausted { resource: Resource },
    /// The model could not be loaded.
    #[error("failed to load model `{source_name}`")]
    ModelLoad {
        source_name: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The model named in the config does not exist where it was said to be.
    #[error("model source `{source_name}`: {reason}")]
    ModelSource { source_name: String, reason: String },
    /// The inference engine reported an error for a request.
    #[error("inference failed: {message}")]
    Inference { message: String },
    /// The inference engine went away (its thread died or the channel closed).
    #[error("inference engine is gone: {context}")]
    EngineGone { context: &'static str },
    /// An inference server answered a request with an error status that is not worth retrying
    /// (4xx), or kept answering one that is through every retry (a 500 for this request, not
    /// a busy or down server's 429, 502, 503 or 529), or answered with something that is not a
    /// reply.
    #[error("{url} answered HTTP {status}: {message}")]
    Http {
        url: String,
        status: u16,
        message: String,
    },
    /// An inference server could not be reached through every retry (connection errors, no
    /// status), or said it was busy or down for every request (429, 502, 503, 529) through
    /// them, or could not say what it offers while connecting.
    #[error("{url}: gave up after {attempts} attempt(s): {reason}")]
    Connection {
        url: String,
        attempts: u32,
        reason: String,
    },
    /// An inference server took the request but did not answer within the timeout (not retried:
    /// it would only run as long again).
    #[error("{url}: no answer within {after:?}: {reason}")]
    Timeout {
        url: String,
        after: std::time::Duration,
        reason: String,
    },
    /// A tool a strategy relies on failed (a plotting library, a scorer's contract).
    #[error("{tool} failed: {message}")]
    Tool { tool: &'static str, message: String },
    /// The code sandbox could not run a program: its own failure, not the program's. The
    /// source is the sandbox's error (`ponder::prm::SandboxError`; downcast it to tell an
    /// unisolated sandbox or a busy one apart).
    #[error("sandbox failed {doing}: {source}")]
    Sandbox {
        /// What it was doing (`running the hidden tests (1 try)`).
        doing: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Fetching a built-in model failed.
    #[error("fetching built-in model `{name}` failed: {reason}")]
    Fetch { name: String, reason: String },
    /// A config file could not be read or did not validate.
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    /// A problem file had a bad line.
    #[error("{path}:{line}: {message}")]
    ProblemFile {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A results file (or a side file kept beside it: its spend ledger, triage's stages) could
    /// not be parsed for resuming.
    #[error("{}:{line}: not {}: {message}", path.display(), line_kind(path))]
    ResultsFile {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// File system errors, with the path involved.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A configured value out of its range, or keys that disagree. `key` is the value's path
    /// from the table that was checked (`temperature`; `strategy.inner.temperature` once the
    /// whole config has been checked), which [`crate::config::load_checked`] turns into a line
    /// of the file.
    #[error("at `{key}`: {reason}")]
    ConfigValue { key: String, reason: String },
    /// A strategy was configured with values that cannot work together.
    #[error("strategy `{strategy}`: {reason}")]
    StrategyConfig {
        strategy: &'static str,
        reason: String,
    },
    /// Serialising a result failed.
    #[error("serialising {what}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// Reads a text file a user gave (a config, a problem set): where it is not UTF-8, the
    /// error names the line and byte of the first bad one (as a JSON or TOML error would),
    /// not only that the file is not text.
    pub fn read_text(path: &std::path::Path) -> Result<String> {
        let bytes = std::fs::read(path).map_err(|e| Self::io(path, e))?;
        // A compressed or columnar file: what it is, not its first byte that is not UTF-8.
        if let Some(what) = packed(&bytes) {
            return Err(Self::io(
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not text: {what}")),
            ));
        }
        String::from_utf8(bytes).map_err(|e| {
            let bytes = e.as_bytes();
            let at = e.utf8_error().valid_up_to();
            let before = bytes.get(..at).unwrap_or_default();
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let line_start = before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let byte = bytes.get(at).copied().unwrap_or_default();
            Self::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "line {line}, byte {}: not UTF-8 (0x{byte:02x}); save the file as UTF-8",
                        at - line_start + 1
                    ),
                ),
            )
        })
    }

    /// A [`Error::ConfigValue`] at `key`.
    pub fn config_value(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::ConfigValue {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// A [`Error::ConfigValue`] from a nested table, with its key put under `table`
    /// (`temperature` under `inner` is `inner.temperature`); other errors as they are.
    pub fn under(self, table: &str) -> Self {
        match self {
            Self::ConfigValue { key, reason } => Self::ConfigValue {
                key: format!("{table}.{key}"),
                reason,
            },
            other => other,
        }
    }

    /// True for [`Error::BudgetExhausted`]: the caller should stop and report, not fail.
    pub fn is_budget(&self) -> bool {
        matches!(self, Self::BudgetExhausted { .. })
    }

    /// True for the failure of one call or tool run that others beside it need not share: a
    /// sampling error ([`Error::Inference`]), a server's error status or silence for one
    /// request ([`Error::Http`] but an authentication or not-found status, [`Error::Timeout`]),
    /// a sandbox run that could not be made ([`Error::Sandbox`]). A strategy
    /// holding other samples may drop the one that failed and go on; not a budget stop, a lost
    /// engine or server, a wrong key, model or address, or a scorer breaking its contract.
    pub fn is_per_call(&self) -> bool {
        match self {
            Self::Inference { .. } | Self::Timeout { .. } => true,
            Self::Http { status, .. } => !matches!(status, 401 | 403 | 404),
            Self::Sandbox { .. } => true,
            _ => false,
        }
    }

    /// This error, where it is about the `[model]` table ([`crate::ModelConfig::load`]'s),
    /// said of `table` instead: a scorer's or judge's model table, loaded at its first use.
    pub fn of_table(self, table: &str) -> Self {
        match self {
            Self::Config { path, message } if path == std::path::Path::new("[model]") => {
                Self::Config {
                    path: table.into(),
                    message,
                }
            }
            other => other,
        }
    }

    /// The wall-time budget's stop: a request given up at its deadline.
    pub fn out_of_time() -> Self {
        Self::BudgetExhausted {
            resource: crate::budget::Resource::WallTime,
        }
    }

    /// True for [`Error::out_of_time`]: a cut, not a failure.
    pub fn is_out_of_time(&self) -> bool {
        matches!(
            self,
            Self::BudgetExhausted {
                resource: crate::budget::Resource::WallTime
            }
        )
    }

    /// Of two errors of the requests of one call, the one to report: an engine gone before any
    /// other failure, a failure before a request given up at its deadline; of equals, `self`.
    pub(crate) fn or_more_telling(self, other: Error) -> Error {
        let rank = |e: &Error| match e {
            Error::EngineGone { .. } => 2,
            e if e.is_out_of_time() => 0,
            _ => 1,
        };
        if rank(&other) > rank(&self) {
            other
        } else {
            self
        }
    }
}

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What serde_json says of one line of a JSON Lines file, for a message that names the file
/// and line itself: its own "at line 1 column C" (the line within the line) becomes
/// "(column C)".
pub(crate) fn json_line_message(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    match message.strip_suffix(&position) {
        Some(bare) if e.column() > 0 => format!("{bare} (column {})", e.column()),
        Some(bare) => bare.to_string(),
        None => message,
    }
}

/// What a file starting with `bytes` is, where its magic number says it is compressed,
/// archived or columnar, and what to do about it.
pub(crate) fn packed(bytes: &[u8]) -> Option<&'static str> {
    const MAGIC: [(&[u8], &str); 6] = [
        (
            b"\x1f\x8b",
            "gzip-compressed: decompress it first (`gunzip`)",
        ),
        (
            b"\x28\xb5\x2f\xfd",
            "zstd-compressed: decompress it first (`zstd -d`)",
        ),
        (
            b"\xfd7zXZ\x00",
            "xz-compressed: decompress it first (`unxz`)",
        ),
        (b"PK\x03\x04", "a zip archive: extract it first (`unzip`)"),
        (
            b"PAR1",
            "a Parquet file: export it as JSON Lines first (pandas: \
             `pd.read_parquet(f).to_json(out, orient=\"records\", lines=True)`)",
        ),
        (b"ARROW1", "an Arrow file: export it as JSON Lines first"),
    ];
    // bzip2: `BZh`, the block size (1-9), the block magic (pi's digits in BCD, `1AY&SY`).
    let bzip2 = bytes.len() >= 10
        && bytes.starts_with(b"BZh")
        && (b'1'..=b'9').contains(&bytes[3])
        && &bytes[4..10] == b"1AY&SY";
    if bzip2 {
        return Some("bzip2-compressed: decompress it first (`bunzip2`)");
    }
    MAGIC
        .iter()
        .find(|(magic, _)| bytes.starts_with(magic))
        .map(|&(_, what)| what)
}

/// What a line of the file at `path` is, by the side file's name.
fn line_kind(path: &std::path::Path) -> &'static str {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    if name.ends_with(".spend.jsonl") {
        "a line of a run's spend ledger"
    } else if name.ends_with(".triage.jsonl") {
        "a line of triage's kept stages"
    } else {
        "a results line"
    }
}

/// [`Error::PromptTooLong`]'s message, leaving out a count that is not known (0).
fn too_long(prompt_tokens: usize, max_tokens: usize, context_tokens: usize) -> String {
    let prompt = match prompt_tokens {
        0 => "the prompt".to_string(),
        n => format!("prompt of {n} tokens"),
    };
    let context = match context_tokens {
        0 => "the model's context window".to_string(),
        n => format!("the model's context of {n} tokens"),
    };
    format!("{prompt} plus max_tokens {max_tokens} exceeds {context}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_json_line_message_gives_the_column_not_a_line_of_its_own() {
        let e = serde_json::from_str::<serde_json::Value>("{\"a\": tru}").unwrap_err();
        assert_eq!(
            super::json_line_message(&e),
            "expected ident (column 10)",
            "{e}"
        );
    }

    #[test]
    fn one_calls_failures_are_told_from_failures_every_call_would_share() {
        use super::Error;
        let http = |status| Error::Http {
            url: "http://x/v1/completions".into(),
            status,
            message: String::new(),
        };
        let tool = |tool| Error::Tool {
            tool,
            message: String::new(),
        };
        for e in [
            Error::Inference {
                message: "NaN".into(),
            },
            http(400),
            http(422),
            Error::Sandbox {
                doing: "running a program".into(),
                source: "no room".into(),
            },
        ] {
            assert!(e.is_per_call(), "{e}");
        }
        for e in [
            http(401),
            http(403),
            http(404),
            tool("scorer"),
            tool("sandbox"),
            Error::EngineGone { context: "test" },
            Error::out_of_time(),
        ] {
            assert!(!e.is_per_call(), "{e}");
        }
    }
}
