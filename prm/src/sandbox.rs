//! [`Sandbox`]: runs untrusted Python 3 programs under resource limits and reports a typed
//! [`RunOutcome`].
//!
//! Each run gets a fresh temporary directory `T` under the system temporary directory (which the
//! sandbox user must be able to traverse), holding the program (`T/src`, read-only to it) and a
//! scratch working directory (`T/work`, also `HOME` and `TMPDIR`); `T` is deleted afterwards. A
//! small Python bootstrap (`sandbox/bootstrap.py`), run with ponder's own privileges inside the
//! namespaces, sets the run up: it remounts the filesystem read-only, starts the program as the
//! sandbox user under the limits and without capabilities, reaps it and writes its exit status
//! and CPU time to a file (one the program cannot write, as root; not as root, it is written
//! after everything the program started is dead, and not read at all after a kill).
//!
//! What is enforced, and how (see [`Isolation`] for what a given machine supports; the first
//! run probes it and proves the process limit holds with [`Sandbox::self_check`]):
//!
//! - **user**: when ponder runs as root, the program runs as an unprivileged user (`nobody`,
//!   uid/gid 65534 unless [`Sandbox::with_user`] says otherwise), supplementary groups cleared and
//!   `no_new_privs` set. Root ignores `RLIMIT_NPROC`; the unprivileged user does not. When ponder
//!   is not root, programs run as the calling user in a user namespace of the run's own, where
//!   (kernels since 5.14) only the run's processes count toward the process limit; on older
//!   kernels, or without the namespace, the user's other processes count too.
//! - **capabilities**: none. Not as root the program is uid 0 of its own user namespace, which
//!   would give it every capability there (enough to remount the read-only mounts read-write):
//!   the bootstrap empties the bounding set, and the program's inheritable and ambient sets are
//!   cleared before exec, so exec gives it nothing. The self-check proves its effective,
//!   permitted and bounding sets are empty.
//! - **processes**: `RLIMIT_NPROC`. As root, the kernel counts every process of the sandbox
//!   user, machine-wide, so concurrent runs under one user share [`Limits::processes`], whichever
//!   sandbox (S*'s, the grader's, another ponder's) started them: a fork bomb in one run can
//!   make `fork` fail in another run until the bomb's run ends (starting a run still works; a
//!   test harness that cannot start the candidate's process says [`SandboxError::Busy`], which
//!   the grader tries again until [`Sandbox::busy_until`]). Give sandboxes that run side by
//!   side different users ([`Sandbox::with_user`]) to keep them apart.
//! - **time**: wall clock with [`tokio::time::timeout`]; CPU with `RLIMIT_CPU` (`SIGXCPU`, then
//!   `SIGKILL` one second later).
//! - **memory**: `RLIMIT_AS` (Python raises `MemoryError`), per process: a run may hold up to
//!   [`Limits::processes`] times it, so its processes carry the highest OOM score (1000) and
//!   are what the kernel kills first if memory runs out, not ponder. **File size**:
//!   `RLIMIT_FSIZE`.
//!   **Open files**: `RLIMIT_NOFILE`. No core dumps.
//! - **output**: stdout and stderr are read as they come and kept up to
//!   [`Limits::output_bytes`] each; past that the run is killed ([`RunOutcome::OutputLimit`]).
//! - **network** (where `unshare --net` works): a fresh network namespace with only a loopback
//!   device that is down, so every connection fails. Unix sockets are files, which a network
//!   namespace does not cut (a Docker daemon's, a session bus, an ssh agent): a seccomp filter
//!   (x86_64, aarch64) refuses `socket(AF_UNIX)`, datagram `socketpair`s (which could connect
//!   elsewhere later) and io_uring (which could open sockets around it); the self-check proves
//!   it ([`Isolation::unix_sockets_refused`]). The same filter refuses the kernel keyrings
//!   (shared by every run of the sandbox user, outliving them) and new namespaces (`unshare`,
//!   `setns`, `clone` with a `CLONE_NEW*` flag; `clone3` says `ENOSYS`, so libc falls back to
//!   `clone`), `memfd_create` (memory outside `RLIMIT_AS`), page-cache probes (`fadvise`,
//!   `readahead`, `cachestat`: bits one run could leave for a later one), and socket families
//!   but IP and netlink (`AF_VSOCK` is not cut by a network namespace). A level without the
//!   filesystem isolation below needs [`Sandbox::allow_unisolated`], as root too.
//! - **filesystem** (where `unshare --mount` works): a mount namespace with a root of its own
//!   (`pivot_root` into a `tmpfs`): the host's system directories (`/usr`, `/bin`, `/lib*`,
//!   and of `/etc` what the loader, name lookups, time zones, TLS and Python read), the
//!   interpreter's own files (its executable and symlinks, a virtual environment's
//!   `pyvenv.cfg`, each prefix's `lib/pythonX.Y`, the directories of the libraries it loaded and
//!   their run paths; never the directory around the executable, which may be a home's `bin`,
//!   nor one holding a login user's home), `/dev/null` and a few other devices, `/proc`, and `T`'s
//!   own paths, all read-only and `nosuid`; nothing else of the host (home directories, problem
//!   sets with their tests and solutions, other runs' directories in `/tmp`) is there to read.
//!   Libraries an extension module links from elsewhere (not the system directories, not
//!   beside what the interpreter loaded nor on its run paths) are not there.
//!   `T/work` is a fresh `tmpfs` of [`Limits::disk_bytes`] (and `/dev/shm` another); the
//!   status file is not in the program's root (the bootstrap writes it through a descriptor
//!   opened before). An IPC namespace too, so runs share no System V or POSIX IPC. Without a
//!   mount namespace the program would see the host's files (and, not as root, run as the
//!   calling user with that user's files writable), so every level without it needs the same
//!   opt-in as no namespace at all.
//! - **cleanup**: the run is its own process group; on timeout, output overflow or when the run
//!   future is dropped the whole group gets `SIGKILL`. Where `unshare --pid` works the program also
//!   runs in a PID namespace whose init is the bootstrap: when the program exits or the bootstrap
//!   is killed, the kernel kills every process left in it, including ones that left the group.
//!   Without a PID namespace the group is still killed when the program exits, but a process that
//!   called `setsid` escapes (under its CPU and memory limits; if it holds the output pipes, the
//!   run ends at the wall-clock limit).
//!
//! The first run tries, in order: `unshare --net --mount --pid --fork --kill-child --mount-proc`;
//! `unshare --net` (each inside `unshare --user --map-root-user` when ponder is not root). Where
//! neither works (`unshare` missing, or user namespaces refused) untrusted code would run with
//! network access (and not as root, where only the second works, with the user's files
//! writable), so the first run fails with [`SandboxError::Unisolated`], unless
//! [`Sandbox::allow_unisolated`] opted in: then runs go on with the user switch, the limits and
//! the group kill, [`Isolation`] says `network: false, filesystem: false, pid_namespace: false`,
//! and a warning is logged once per sandbox: network access and writes to world-writable
//! directories are then NOT prevented.
//!
//! Concurrency and cancellation: [`Sandbox::run`] may be called from many tasks at once (the
//! sandbox is a cheap [`Clone`]); each run spawns its own processes, and at most one run per
//! core (16 at most) goes at once in a process (the others wait their turn, in the run
//! future). The run future is safe to drop at any await: the child is spawned with `kill_on_drop`, the process
//! group is killed by a guard, the temporary directory is removed by its own guard, and the
//! run leaves the runs in flight ([`Sandbox::busy_until`]) with a third.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::OnceCell;

mod limits;
mod outcome;
mod run;

pub use limits::Limits;
use outcome::{classify, Kill};
pub use outcome::{RunOutcome, Stream, Termination};
use run::{read_capped, Capture, GroupKill, RunDir};

/// `unshare`'s arguments for an unprivileged user namespace (ponder not root), mapped to root.
pub const UNSHARE_USER: [&str; 2] = ["--user", "--map-root-user"];

/// How long past the wall limit the bootstrap ends a run by itself: ponder ends it at the limit,
/// unless ponder is gone.
const DEADLINE_SLACK: Duration = Duration::from_secs(5);

/// `unshare`'s arguments for the full level: network, IPC, mount and PID namespaces, the
/// program killed with its init.
pub const UNSHARE_FULL: [&str; 7] = [
    "--net",
    "--ipc",
    "--mount",
    "--pid",
    "--fork",
    "--kill-child",
    "--mount-proc",
];

/// The unprivileged user untrusted code runs as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SandboxUser {
    /// User id.
    pub uid: u32,
    /// Group id (supplementary groups are cleared).
    pub gid: u32,
    /// The name in `/etc/passwd`, when the uid has one.
    pub name: Option<String>,
}

/// What a sandbox enforces on this machine, beyond the resource limits (always set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Isolation {
    /// The user programs run as; `None` when ponder does not run as root and so cannot switch
    /// (programs then run as the calling user; see the module docs for what the process limit
    /// counts then).
    pub user: Option<SandboxUser>,
    /// A network namespace with no usable interface.
    pub network: bool,
    /// A mount namespace with everything read-only but the run's own directory.
    pub filesystem: bool,
    /// A PID namespace: everything the program started dies with it.
    pub pid_namespace: bool,
    /// A seccomp filter refuses Unix sockets (which a network namespace does not cut: a Docker
    /// daemon's, a session bus, an ssh agent are files) and io_uring.
    pub unix_sockets_refused: bool,
}

/// What [`Sandbox::self_check`] proved on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SelfCheck {
    /// What is enforced.
    pub isolation: Isolation,
    /// The process limit that was tested.
    pub process_limit: u32,
    /// Children the check program managed to fork when it tried `process_limit + 5`.
    pub forked: u32,
}

/// A program to run: the main script, extra files next to it, and standard input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Program {
    main: String,
    files: Vec<(String, String)>,
    stdin: Vec<u8>,
    wall: Option<Duration>,
}

impl Program {
    /// A program whose main script (`main.py`) is `source`.
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            main: source.into(),
            ..Self::default()
        }
    }

    /// Adds a file next to `main.py` (read-only to the program; find it through `__file__`).
    /// The name must be a plain file name other than `main.py`.
    pub fn with_file(mut self, name: impl Into<String>, contents: impl Into<String>) -> Self {
        self.files.push((name.into(), contents.into()));
        self
    }

    /// Sets what the program reads on standard input (default: nothing, end of file at once).
    pub fn with_stdin(mut self, stdin: impl Into<Vec<u8>>) -> Self {
        self.stdin = stdin.into();
        self
    }

    /// Sets the wall-clock limit for this program (default: the sandbox's [`Limits::wall_ms`]);
    /// a longer one raises its CPU-time limit to match.
    pub fn with_wall(mut self, wall: Duration) -> Self {
        self.wall = Some(wall);
        self
    }
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// How it ended.
    pub outcome: RunOutcome,
    /// Standard output (lossy UTF-8), at most [`Limits::output_bytes`].
    pub stdout: String,
    /// Standard error (lossy UTF-8), at most [`Limits::output_bytes`].
    pub stderr: String,
    /// Whether stdout went past the cap (and was cut there).
    pub stdout_truncated: bool,
    /// Whether stderr went past the cap (and was cut there).
    pub stderr_truncated: bool,
    /// How the program ended; `None` when the sandbox killed it first.
    pub termination: Option<Termination>,
    /// Wall time from spawn to exit.
    pub wall: Duration,
    /// CPU time of the program and the children it waited for, when it ended by itself.
    pub cpu: Option<Duration>,
}

/// A sandbox that could not run a program at all (the program's own failures are outcomes).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// Preparing the run directory or starting a process failed.
    #[error("sandbox {action} failed")]
    Io {
        action: &'static str,
        #[source]
        source: io::Error,
    },
    /// The bootstrap could not set the run up (namespaces, privileges, limits, interpreter).
    #[error("sandbox set-up failed: {reason}")]
    Setup { reason: String },
    /// A process of the run could not be started because the sandbox user's process limit,
    /// shared by the runs in flight as root, was reached: not the program's failure, and
    /// likely to pass once other runs end.
    #[error("sandbox busy: {reason}")]
    Busy { reason: String },
    /// A file of a [`Program`] has a name that is not a plain file name.
    #[error("program file name `{name}` must be a plain file name other than main.py")]
    FileName { name: String },
    /// The self-check forked more children than the process limit allows.
    #[error("process limit not enforced: forked {forked} children with a limit of {limit}")]
    ProcessLimit { limit: u32, forked: u32 },
    /// The self-check found an isolation the probe claimed missing in practice.
    #[error("sandbox self-check failed: {what}")]
    SelfCheck { what: String },
    /// No namespace level that isolates enough works here: untrusted code would run with
    /// network access, or (not as root, without a mount namespace) as the calling user with its
    /// files writable; and [`Sandbox::allow_unisolated`] did not allow that.
    #[error(
        "cannot isolate untrusted code: `{}` could not make the network, mount and PID \
         namespaces that keep the host's files out of reach; install \
         util-linux's unshare (and, not as root, allow unprivileged user namespaces), or opt \
         in to running without that isolation: `allow_unisolated = true` in an s_star \
         strategy, `ponder run --allow-unisolated-sandbox` for grading, or \
         Sandbox::allow_unisolated(true) in code (the isolated run failed with: {source})",
        unshare.display()
    )]
    Unisolated {
        unshare: PathBuf,
        #[source]
        source: Box<SandboxError>,
    },
}

/// Runs untrusted Python under limits: as an unprivileged user (when ponder is root), with
/// `RLIMIT_CPU`/`AS`/`NPROC`/`FSIZE`/`NOFILE`, capped output, a wall-clock timeout and, where
/// `unshare` works, without network, on a read-only filesystem and in its own PID namespace.
/// [`Isolation`] says what this machine enforces.
///
/// ```no_run
/// use ponder_prm::{Program, RunOutcome, Sandbox};
///
/// # async fn demo() -> Result<(), ponder_prm::SandboxError> {
/// let sandbox = Sandbox::new();
/// println!("{:?}", sandbox.self_check().await?.isolation);
/// let report = sandbox.run(&Program::new("assert 1 + 1 == 3")).await?;
/// assert!(matches!(report.outcome, RunOutcome::Failed { .. }));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Sandbox {
    limits: Limits,
    python: PathBuf,
    user: Option<(u32, u32)>,
    unshare: PathBuf,
    allow_unisolated: bool,
    checked: Arc<OnceCell<Checked>>,
}

#[derive(Debug)]
struct Checked {
    report: SelfCheck,
    level: Level,
}

/// How much namespace isolation a run gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    /// Network, mount and PID namespaces.
    Full,
    /// A network namespace only.
    Network,
    /// Without root: the same namespaces inside an unprivileged user namespace (the caller
    /// mapped to its root), where the kernel allows them.
    UserFull,
    /// Without root: a network namespace inside a user namespace.
    UserNetwork,
    /// None: only with [`Sandbox::allow_unisolated`].
    Plain,
}

impl Level {
    fn filesystem(self) -> bool {
        matches!(self, Level::Full | Level::UserFull)
    }

    fn network(self) -> bool {
        self != Level::Plain
    }
}

/// Turns to run a program, one per core ([`MAX_RUNS_AT_ONCE`] at most), shared by every
/// sandbox of the process.
fn run_turns() -> &'static tokio::sync::Semaphore {
    static TURNS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    TURNS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        tokio::sync::Semaphore::new(cores.min(MAX_RUNS_AT_ONCE))
    })
}

/// The runs this process has in flight, each by a number of its own with the time it ends by
/// at the latest (see [`Sandbox::busy_until`]).
fn runs_in_flight() -> &'static std::sync::Mutex<Vec<(u64, Instant)>> {
    static RUNS: std::sync::OnceLock<std::sync::Mutex<Vec<(u64, Instant)>>> =
        std::sync::OnceLock::new();
    RUNS.get_or_init(|| std::sync::Mutex::new(Vec::new()))
}

/// A run in [`runs_in_flight`] while this lives (dropped with the run, or with its future).
struct InFlight(u64);

impl InFlight {
    fn new(ends_by: Instant) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut runs) = runs_in_flight().lock() {
            runs.push((id, ends_by));
        }
        Self(id)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut runs) = runs_in_flight().lock() {
            runs.retain(|&(id, _)| id != self.0);
        }
    }
}

/// The most runs that go at once in a process, however many cores: as root every run's
/// processes count toward the one sandbox user's process limit (64 by default), and a program
/// with its test harness is two or three of them; one run a core on a machine of 64 would
/// leave no process to start.
const MAX_RUNS_AT_ONCE: usize = 16;

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// A sandbox with default [`Limits`], the system's `python3` (the first of
    /// `/usr/bin/python3`, `/usr/local/bin/python3` and `python3` on `PATH`) and, as root, the
    /// `nobody` user. Nothing runs until the first [`Sandbox::run`] or [`Sandbox::self_check`].
    pub fn new() -> Self {
        Self {
            limits: Limits::default(),
            python: default_python(),
            user: None,
            unshare: PathBuf::from("unshare"),
            allow_unisolated: false,
            checked: Arc::new(OnceCell::new()),
        }
    }

    /// Sets the limits (default [`Limits::default`]).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self.checked = Arc::new(OnceCell::new());
        self
    }

    /// Sets the Python interpreter; the sandbox user must be able to execute it.
    pub fn with_python(mut self, python: impl Into<PathBuf>) -> Self {
        self.python = python.into();
        self.checked = Arc::new(OnceCell::new());
        self
    }

    /// Sets the uid and gid programs run as when ponder runs as root (default `nobody`, or
    /// 65534/65534 where there is no such user). Use a uid no one else uses.
    pub fn with_user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self.checked = Arc::new(OnceCell::new());
        self
    }

    /// Whether programs may run without namespaces where `unshare` is missing or refused: with
    /// network access, and able to write wherever the sandbox user may (default `false`: the
    /// first run fails with [`SandboxError::Unisolated`]). The limits, the user switch (as
    /// root) and the group kill still apply; [`Isolation`] says what was lost.
    pub fn allow_unisolated(mut self, allow: bool) -> Self {
        self.allow_unisolated = allow;
        self.checked = Arc::new(OnceCell::new());
        self
    }

    /// Names the `unshare` program (default `unshare`, looked up on a fixed system `PATH`). One
    /// that does not exist makes every namespace level unavailable, as on a machine without
    /// util-linux.
    pub fn with_unshare(mut self, unshare: impl Into<PathBuf>) -> Self {
        self.unshare = unshare.into();
        self.checked = Arc::new(OnceCell::new());
        self
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Probes what this machine supports and proves the process limit holds: a program as the
    /// sandbox user tries to fork `processes + 5` children and must not get past the limit; it
    /// also checks that the network and filesystem isolation claimed hold. Runs once per sandbox
    /// (and its clones); [`Sandbox::run`] calls it first, so no program runs unchecked.
    pub async fn self_check(&self) -> Result<&SelfCheck, SandboxError> {
        let checked = self.checked.get_or_try_init(|| self.probe()).await?;
        Ok(&checked.report)
    }

    /// Until when the runs of this process now in flight may hold processes of the sandbox
    /// user, at the latest: the end of the one that ends last (its wall-clock limit past its
    /// start, then the bootstrap's own slack), and at least as long from now as a run of this
    /// sandbox could last (a run of another process, which is not seen here). As root every
    /// run's processes count toward one process limit (see the module docs): a caller told
    /// [`SandboxError::Busy`] may try again until then, when a fork bomb among them is over.
    pub fn busy_until(&self) -> Instant {
        let now = Instant::now();
        let own = now
            .checked_add(self.limits.wall().saturating_add(DEADLINE_SLACK))
            .unwrap_or(now);
        let latest = runs_in_flight()
            .lock()
            .ok()
            .and_then(|runs| runs.iter().map(|&(_, ends_by)| ends_by).max());
        latest.map_or(own, |latest| latest.max(own))
    }

    /// Runs `program` with `python3 -s -P main.py` (`-I` before Python 3.11) and classifies
    /// how it ended. At most as many runs as the machine has cores (16 at most) go at once in
    /// this process (the others wait their turn): a program and its test harness are
    /// CPU-bound, so more only slice the cores thinner, and a run's wall-clock limit (a few
    /// times its CPU limit) would then end programs still within their CPU time.
    #[tracing::instrument(skip_all, fields(bytes = program.main.len()))]
    pub async fn run(&self, program: &Program) -> Result<RunReport, SandboxError> {
        let checked = self.checked.get_or_try_init(|| self.probe()).await?;
        let user = checked.report.isolation.user.as_ref();
        // Never closed, so never an error.
        let _turn = run_turns().acquire().await.ok();
        self.execute(program, checked.level, user).await
    }

    async fn probe(&self) -> Result<Checked, SandboxError> {
        let user = self.sandbox_user().await;
        let limit = self.limits.processes.get();
        let mut last_error = None;
        let levels: &[Level] = if user.is_some() {
            &[Level::Full, Level::Network, Level::Plain]
        } else {
            &[Level::UserFull, Level::UserNetwork, Level::Plain]
        };
        for &level in levels {
            // Without a mount namespace the program sees the host's files (problem sets with
            // their solutions, other runs' directories; not as root, the calling user's own,
            // writable): that needs the same opt-in as no namespace at all.
            if !level.filesystem() && !self.allow_unisolated {
                let source = last_error.unwrap_or(SandboxError::Setup {
                    reason: "no namespace level was tried".into(),
                });
                return Err(SandboxError::Unisolated {
                    unshare: self.unshare.clone(),
                    source: Box::new(source),
                });
            }
            let escape =
                std::env::temp_dir().join(format!("ponder-sandbox-escape-{:016x}", nonce()));
            let probe = Program::new(
                SELF_CHECK_PROGRAM
                    .replace("{ATTEMPTS}", &(limit + 5).to_string())
                    .replace("{ESCAPE}", &escape.to_string_lossy()),
            );
            let run = self.execute(&probe, level, user.as_ref()).await;
            let escaped = tokio::fs::try_exists(&escape).await.unwrap_or(false);
            let _ = tokio::fs::remove_file(&escape).await;
            let report = match run {
                Ok(report) => report,
                Err(error @ SandboxError::Setup { .. }) if level != Level::Plain => {
                    tracing::debug!(?level, %error, "sandbox isolation level unavailable");
                    last_error = Some(error);
                    continue;
                }
                Err(error) => return Err(error),
            };
            let line = report.stdout.lines().rev().find(|l| l.starts_with('{'));
            let parsed: Option<ProbeResult> = line.and_then(|l| serde_json::from_str(l).ok());
            // The level set up fine, so a failure here is not a reason to try a weaker one.
            let Some(result) = parsed else {
                return Err(SandboxError::SelfCheck {
                    what: format!(
                        "check program gave no result ({:?}); stderr: {}",
                        report.outcome,
                        tail(&report.stderr, 400)
                    ),
                });
            };
            if result.forked >= limit {
                return Err(SandboxError::ProcessLimit {
                    limit,
                    forked: result.forked,
                });
            }
            if let Some(user) = &user {
                if result.uid != user.uid {
                    return Err(SandboxError::SelfCheck {
                        what: format!("program ran as uid {} instead of {}", result.uid, user.uid),
                    });
                }
            }
            let network = level.network();
            if network && result.network != "unreachable" {
                return Err(SandboxError::SelfCheck {
                    what: format!("network namespace in place but loopback {}", result.network),
                });
            }
            // Where the program is uid 0 (its own user namespace's root) its bounding set must be
            // empty too, or exec would give it those capabilities.
            let caps = &result.caps;
            let mut held = vec![
                ("effective", caps.cap_eff),
                ("permitted", caps.cap_prm),
                ("inheritable", caps.cap_inh),
                ("ambient", caps.cap_amb),
            ];
            if result.uid == 0 {
                held.push(("bounding", caps.cap_bnd));
            }
            if let Some((set, bits)) = held.into_iter().find(|&(_, bits)| bits != 0) {
                return Err(SandboxError::SelfCheck {
                    what: format!("the program kept capabilities: {set} set {bits:#x}"),
                });
            }
            let unix_sockets_refused = result.unix == "refused";
            if !unix_sockets_refused {
                if !self.allow_unisolated {
                    return Err(SandboxError::SelfCheck {
                        what: format!("a Unix socket was not refused ({})", result.unix),
                    });
                }
                tracing::warn!(
                    unix = %result.unix,
                    "sandbox programs may open Unix sockets (no seccomp filter for this machine)"
                );
            }
            let filesystem = level.filesystem();
            if filesystem && escaped {
                return Err(SandboxError::SelfCheck {
                    what: "wrote outside its directory in a read-only mount namespace".into(),
                });
            }
            if !level.filesystem() {
                // What the opt-in gives up, said where it is taken.
                let exposed = match (&user, network) {
                    (Some(_), true) => "every file readable by any user",
                    (Some(_), false) => "every file readable by any user, and the network",
                    (None, true) => {
                        "your files (readable and writable as you) and your other processes \
                         (their environments: API keys)"
                    }
                    (None, false) => {
                        "your files (readable and writable as you), your other processes \
                         (their environments: API keys), and the network"
                    }
                };
                tracing::warn!(
                    network,
                    "sandbox runs without mount and PID namespaces (unshare unavailable): \
                     model-written programs can reach {exposed}; {}",
                    last_error.map(|e| e.to_string()).unwrap_or_default()
                );
            }
            let isolation = Isolation {
                user,
                network,
                filesystem,
                pid_namespace: level.filesystem(),
                unix_sockets_refused,
            };
            return Ok(Checked {
                report: SelfCheck {
                    isolation,
                    process_limit: limit,
                    forked: result.forked,
                },
                level,
            });
        }
        Err(last_error.unwrap_or(SandboxError::SelfCheck {
            what: "no isolation level could run".into(),
        }))
    }

    async fn sandbox_user(&self) -> Option<SandboxUser> {
        if !rustix::process::geteuid().is_root() {
            return None;
        }
        let passwd = tokio::fs::read_to_string("/etc/passwd")
            .await
            .unwrap_or_default();
        let entries: Vec<(String, u32, u32)> = passwd
            .lines()
            .filter_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?.to_string();
                let uid = fields.nth(1)?.parse().ok()?;
                let gid = fields.next()?.parse().ok()?;
                Some((name, uid, gid))
            })
            .collect();
        let (uid, gid) = self.user.unwrap_or_else(|| {
            entries
                .iter()
                .find(|(name, _, _)| name == "nobody")
                .map_or((65534, 65534), |&(_, uid, gid)| (uid, gid))
        });
        let name = entries
            .into_iter()
            .find(|&(_, u, _)| u == uid)
            .map(|(name, _, _)| name);
        Some(SandboxUser { uid, gid, name })
    }

    async fn execute(
        &self,
        program: &Program,
        level: Level,
        user: Option<&SandboxUser>,
    ) -> Result<RunReport, SandboxError> {
        for (name, _) in &program.files {
            if name.is_empty() || name == "main.py" || name.starts_with('.') || name.contains('/') {
                return Err(SandboxError::FileName { name: name.clone() });
            }
        }
        let dir = {
            let program = program.clone();
            let ids = user.map(|u| (u.uid, u.gid));
            tokio::task::spawn_blocking(move || RunDir::create(&program, ids))
                .await
                .map_err(|e| SandboxError::Io {
                    action: "preparing the run directory",
                    source: io::Error::other(e),
                })??
        };
        // A program given a longer wall (a test harness running many tests in one process)
        // gets as much CPU time: one process cannot use more CPU than wall time anyway.
        let cpu_seconds = match program.wall {
            Some(wall) => self.limits.cpu_seconds().max(
                wall.as_millis()
                    .div_ceil(1000)
                    .try_into()
                    .unwrap_or(u64::MAX),
            ),
            None => self.limits.cpu_seconds(),
        };
        // Paths as (lossy) text: `json!` would panic on a path that is not UTF-8.
        let text = |path: &Path| path.to_string_lossy().into_owned();
        let work = text(&dir.work);
        let wall_limit = program.wall.unwrap_or_else(|| self.limits.wall());
        let config = serde_json::json!({
            "status": text(&dir.status),
            // The bootstrap's own end, past the wall limit ponder enforces: a run ponder no
            // longer watches (killed, stuck) ends all the same.
            // (At most 1e9 s: Python's timers take no more.)
            "deadline": wall_limit.saturating_add(DEADLINE_SLACK).as_secs_f64().min(1e9),
            "fs": level.filesystem(),
            "strict": !self.allow_unisolated,
            "root": text(&dir.root),
            "work": work,
            "disk": self.limits.disk_bytes.get(),
            "memory": self.limits.memory_bytes.get(),
            "uid": user.map(|u| u.uid),
            "gid": user.map(|u| u.gid),
            "python": text(&self.python),
            "main": text(&dir.main),
            "env": {
                "HOME": work, "TMPDIR": work, "PATH": "/usr/local/bin:/usr/bin:/bin",
                "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                // glibc reserves 64 MiB of address space for each thread's malloc arena (up to
                // eight a core): under RLIMIT_AS that would cap a program at a dozen threads.
                "MALLOC_ARENA_MAX": "2",
                // numpy's BLAS starts a thread per core, and threads count toward RLIMIT_NPROC,
                // shared by every run of the sandbox user.
                "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                // String hashes fixed: a set of strings comes out in one order every run, so two
                // runs of one program agree (S* clusters programs by their outputs). -I would
                // ignore this (it implies -E): the bootstrap gives the program -I's other parts,
                // -s and -P, where Python has -P (3.11).
                "PYTHONHASHSEED": "0",
            },
            "rlimits": [
                ["RLIMIT_NPROC", self.limits.processes.get(), self.limits.processes.get()],
                ["RLIMIT_AS", self.limits.memory_bytes.get(), self.limits.memory_bytes.get()],
                ["RLIMIT_CPU", cpu_seconds, cpu_seconds.saturating_add(1)],
                ["RLIMIT_FSIZE", self.limits.file_bytes.get(), self.limits.file_bytes.get()],
                ["RLIMIT_NOFILE", self.limits.open_files.get(), self.limits.open_files.get()],
                ["RLIMIT_CORE", 0, 0],
            ],
        });
        if !level.filesystem() && user.is_none() {
            // The program runs as this process's own user (in a user namespace of its own or
            // none), and sees the host's /proc: it could read this process's environment (API
            // keys) and memory there. A process that is not dumpable keeps those to root. (Its
            // children get it back at exec; the program's environment is its own, cleared
            // below.)
            if let Err(e) = rustix::process::set_dumpable_behavior(
                rustix::process::DumpableBehavior::NotDumpable,
            ) {
                tracing::warn!(
                    "cannot keep this process's environment from the unisolated sandbox's \
                     programs (prctl PR_SET_DUMPABLE: {e})"
                );
            }
        }
        let mut command = match level {
            Level::Plain => Command::new(&self.python),
            _ => {
                let mut c = Command::new(&self.unshare);
                if matches!(level, Level::UserFull | Level::UserNetwork) {
                    c.args(UNSHARE_USER);
                }
                if level.filesystem() {
                    c.args(UNSHARE_FULL);
                } else {
                    c.args(["--net", "--ipc"]);
                }
                c.arg("--").arg(&self.python);
                c
            }
        };
        command
            .args(["-I", "-S", "-c", BOOTSTRAP])
            .arg(config.to_string())
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .current_dir(&dir.root)
            .stdin(if program.stdin.is_empty() {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let started = Instant::now();
        // Said to hold the sandbox user's processes until it ends at the latest (ponder ends it
        // at the wall limit; the bootstrap by itself, the slack after).
        let _in_flight = InFlight::new(
            started
                .checked_add(wall_limit.saturating_add(DEADLINE_SLACK))
                .unwrap_or(started),
        );
        let mut child = command.spawn().map_err(|source| match source.kind() {
            io::ErrorKind::NotFound if level != Level::Plain => SandboxError::Setup {
                reason: format!("`{}` not found", self.unshare.display()),
            },
            _ => SandboxError::Io {
                action: "spawning the bootstrap",
                source,
            },
        })?;
        let group = GroupKill::new(child.id());
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(SandboxError::Io {
                action: "capturing output",
                source: io::Error::other("missing pipe"),
            });
        };
        let stdin = child.stdin.take();
        let cap = self.limits.output_bytes.get();
        let (mut out, mut err) = (Capture::default(), Capture::default());
        let feed = async {
            if let Some(mut stdin) = stdin {
                // A program that exits without reading its input closes the pipe: not an error.
                let _ = stdin.write_all(&program.stdin).await;
            }
        };
        let exited = async {
            let status = child.wait().await;
            // Whatever the program left in its group dies with it (and lets the pipes close).
            group.kill();
            status
        };
        let joined = tokio::time::timeout(wall_limit, async {
            tokio::join!(
                read_capped(stdout, cap, &mut out, &group),
                read_capped(stderr, cap, &mut err, &group),
                exited,
                feed,
            )
        })
        .await;
        let timed_out = joined.is_err();
        if let Ok((_, _, Err(source), _)) = joined {
            return Err(SandboxError::Io {
                action: "waiting for the bootstrap",
                source,
            });
        }
        if timed_out {
            group.kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
        group.disarm();
        let wall = started.elapsed();
        let killed = if out.overflow {
            Some(Kill::Output(Stream::Stdout))
        } else if err.overflow {
            Some(Kill::Output(Stream::Stderr))
        } else if timed_out {
            Some(Kill::Timeout)
        } else {
            None
        };
        // The bootstrap writes the status once everything the program started is dead; after a
        // kill it wrote none, and what is there (not as root) may be the program's own.
        let status: Option<BootStatus> = match killed {
            Some(_) => None,
            None => tokio::fs::read_to_string(&dir.status)
                .await
                .ok()
                .and_then(|s| serde_json::from_str(&s).ok()),
        };
        if let Some(reason) = status.as_ref().and_then(|s| s.setup_error.clone()) {
            return Err(SandboxError::Setup { reason });
        }
        let stdout = String::from_utf8_lossy(&out.bytes).into_owned();
        let stderr = String::from_utf8_lossy(&err.bytes).into_owned();
        let termination = status.as_ref().and_then(BootStatus::termination);
        // No status after the wall limit: the bootstrap ended the run at its own deadline
        // (ponder's timer ran late on a loaded machine).
        let killed = match killed {
            None if status.is_none() && wall >= wall_limit => Some(Kill::Timeout),
            killed => killed,
        };
        if killed.is_none() && status.is_none() {
            return Err(SandboxError::Setup {
                reason: format!(
                    "the bootstrap wrote no status; stderr: {}",
                    tail(&stderr, 400)
                ),
            });
        }
        let cpu = status
            .as_ref()
            .and_then(|s| s.cpu_s)
            .map(|s| Duration::from_secs_f64(s.max(0.0)));
        let cpu_limit = Duration::from_secs(cpu_seconds);
        let outcome = classify(killed, termination, cpu, cpu_limit, &stderr);
        tokio::task::spawn_blocking(move || dir.remove())
            .await
            .map_err(|e| SandboxError::Io {
                action: "removing the run directory",
                source: io::Error::other(e),
            })?;
        Ok(RunReport {
            outcome,
            stdout,
            stderr,
            stdout_truncated: out.overflow,
            stderr_truncated: err.overflow,
            termination,
            wall,
            cpu,
        })
    }
}

#[derive(Deserialize)]
struct ProbeResult {
    uid: u32,
    forked: u32,
    network: String,
    unix: String,
    caps: ProbeCaps,
}

/// The check program's capability sets, from `/proc/self/status`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProbeCaps {
    cap_eff: u64,
    cap_prm: u64,
    cap_bnd: u64,
    cap_inh: u64,
    /// Missing before Linux 4.3 (no ambient set).
    #[serde(default)]
    cap_amb: u64,
}

#[derive(Deserialize)]
struct BootStatus {
    setup_error: Option<String>,
    code: Option<i32>,
    signal: Option<i32>,
    cpu_s: Option<f64>,
}

impl BootStatus {
    fn termination(&self) -> Option<Termination> {
        match (self.code, self.signal) {
            (Some(code), _) => Some(Termination::Exited(code)),
            (None, Some(signal)) => Some(Termination::Signaled(signal)),
            (None, None) => None,
        }
    }
}

fn default_python() -> PathBuf {
    let fixed = ["/usr/bin/python3", "/usr/local/bin/python3"].map(PathBuf::from);
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("python3"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    fixed
        .into_iter()
        .chain(on_path)
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// A random 64-bit number (for unique names and markers; not for cryptography).
pub(crate) fn nonce() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// The last `max` bytes of `text` (on a character boundary).
pub(crate) fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Forks `{ATTEMPTS}` times, connects to the loopback, writes `{ESCAPE}`; prints a JSON line.
const SELF_CHECK_PROGRAM: &str = include_str!("sandbox/self_check.py");

/// Sets a run up and reports how it ended (see the file's own header).
const BOOTSTRAP: &str = include_str!("sandbox/bootstrap.py");
