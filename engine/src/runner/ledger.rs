//! The spend ledger, `<out>.spend.jsonl`: one line per backend call a run makes, appended as the
//! call comes back, naming the problem and the attempt at it that made the call.
//!
//! A problem's spend reaches the results file (and, under triage, the side file) only with its
//! line; a run killed or failed before that would otherwise leave what its problems in flight
//! spent recorded nowhere. A resumed run counts the calls of every attempt that wrote no line
//! (nor kept stage) against its budget; an attempt that did write one is counted by its line.
//!
//! Calls are recorded by [`Ledgered`], wrapped around the run's meter (so each call is recorded
//! as the meter counted it), from
//! the tasks that solve the problems; each line is one `write` to a file opened once for
//! appending (no flush to disk per call). A write that fails is kept and ends the run at the next
//! problem's line.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::files::{scan_lines, Tail};
use crate::backend::{Backend, Capabilities, Generation, GenerationRequest, TokenizeInput};
use crate::error::{Error, Result};
use crate::usage::Usage;

/// The ledger of `out`: `<out>.spend.jsonl`.
pub(super) fn path_of(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".spend.jsonl");
    out.with_file_name(name)
}

/// One line of the ledger: a call, as the run's meter counted it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Entry {
    /// The problem id.
    pub(super) id: String,
    /// The attempt that made the call ([`new_attempt`]).
    pub(super) attempt: u64,
    /// What the call cost.
    pub(super) usage: Usage,
}

/// A fresh attempt id: random, below 2^53 (exact in any JSON reader).
pub(super) fn new_attempt() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    // Keyed at random per process (and thread); the time and a count make each one differ.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(now);
    hasher.write_u64(COUNT.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    hasher.finish() & ((1 << 53) - 1)
}

/// The ledger's entries, only read (a half-written last line left out), and what follows its
/// last newline, for [`super::repair`] once the run is found resumable.
pub(super) fn scan(out: &Path) -> Result<(Vec<Entry>, Option<Tail>)> {
    scan_lines(&path_of(out))
}

/// What the calls of `entries` whose attempt is not in `covered` (attempts a line records)
/// spent.
pub(super) fn unsettled(entries: &[Entry], covered: &HashSet<u64>) -> Usage {
    entries
        .iter()
        .filter(|e| !covered.contains(&e.attempt))
        .fold(Usage::default(), |sum, e| sum + e.usage)
}

/// A run's ledger, open for appending.
#[derive(Debug)]
pub(super) struct Ledger {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    file: std::fs::File,
    /// The first write that failed.
    failed: Option<std::io::Error>,
    /// What the calls recorded since the ledger was opened cost.
    spent: Usage,
}

impl Ledger {
    /// Opens the ledger of `out` for appending, creating it.
    pub(super) fn open(out: &Path) -> Result<Self> {
        let path = path_of(out);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // Its entry in the directory survives a crash of the machine too.
        super::files::sync_dir(&path);
        Ok(Self {
            path,
            state: Mutex::new(State {
                file,
                failed: None,
                spent: Usage::default(),
            }),
        })
    }

    /// Appends a call of attempt `attempt` at problem `id` that cost `usage`, as one line; a
    /// failed write is kept for [`Ledger::check`].
    fn record(&self, id: &str, attempt: u64, usage: Usage) {
        let entry = Entry {
            id: id.to_owned(),
            attempt,
            usage,
        };
        let text = serde_json::to_string(&entry).map(|mut text| {
            text.push('\n');
            text
        });
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.spent += usage;
        if state.failed.is_some() {
            return;
        }
        let written = match text {
            Ok(text) => state.file.write_all(text.as_bytes()),
            Err(e) => Err(std::io::Error::other(e)),
        };
        if let Err(e) = written {
            state.failed = Some(e);
        }
    }

    /// The first write that failed, if any, as an error (once).
    pub(super) fn check(&self) -> Result<()> {
        let failed = match self.state.lock() {
            Ok(mut state) => state.failed.take(),
            Err(_) => Some(std::io::Error::other("the ledger's lock was poisoned")),
        };
        match failed {
            Some(e) => Err(Error::io(&self.path, e)),
            None => Ok(()),
        }
    }

    /// What the calls recorded since the ledger was opened (this run's) cost.
    pub(super) fn spent(&self) -> Usage {
        self.state.lock().map(|s| s.spent).unwrap_or_default()
    }

    /// Syncs what was written to disk.
    pub(super) fn sync(&self) -> Result<()> {
        match self.state.lock() {
            Ok(state) => state.file.sync_data().map_err(|e| Error::io(&self.path, e)),
            Err(_) => Ok(()),
        }
    }
}

/// A backend whose calls that come back are recorded in the ledger, for one attempt at one
/// problem. It wraps the run's meter, whose replies carry the usage it counted.
pub(super) struct Ledgered {
    inner: Arc<dyn Backend>,
    ledger: Arc<Ledger>,
    id: String,
    attempt: u64,
}

impl std::fmt::Debug for Ledgered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledgered")
            .field("id", &self.id)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl Ledgered {
    pub(super) fn new(
        inner: Arc<dyn Backend>,
        ledger: Arc<Ledger>,
        id: &str,
        attempt: u64,
    ) -> Self {
        Self {
            inner,
            ledger,
            id: id.to_owned(),
            attempt,
        }
    }
}

#[async_trait]
impl Backend for Ledgered {
    async fn generate(&self, request: GenerationRequest) -> Result<Generation> {
        let generation = self.inner.generate(request).await?;
        self.ledger.record(&self.id, self.attempt, generation.usage);
        Ok(generation)
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn tokenize(&self, input: TokenizeInput<'_>) -> Result<Vec<u32>> {
        self.inner.tokenize(input).await
    }

    async fn detokenize(&self, ids: &[u32]) -> Result<String> {
        self.inner.detokenize(ids).await
    }
}
