//! The sandbox against real processes: each hostile program is contained, reported as the right
//! outcome, and leaves the machine as it was.
//!
//! Tests take one lock so that process counts of the sandbox user are this test's alone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use futures::StreamExt;
use ponder_engine::{Candidate, CodeTask, Grader, Problem, Solution, StopReason};
use ponder_prm::{
    docstring_tests, CodeVerifier, HumanEvalGrader, Isolation, Limits, Program, RunOutcome,
    Sandbox, SandboxError, Stream, Termination, TestCase, TestRun, TestStatus,
};
use tokio::sync::{Mutex, MutexGuard};

const PROCESSES: u32 = 16;
const WALL: Duration = Duration::from_secs(4);
/// Start-up under load (two cores shared with other jobs) and clean-up, on top of the limit.
const SLACK: Duration = Duration::from_secs(4);

#[path = "../../tests/support/isolation.rs"]
mod isolation_check;

static LOCK: Mutex<()> = Mutex::const_new(());
static SANDBOX: LazyLock<Sandbox> = LazyLock::new(|| {
    Sandbox::new()
        .allow_unisolated(!isolation_check::namespaces_here())
        .with_limits(
            Limits::default()
                .with_wall(WALL)
                .with_cpu(Duration::from_secs(3))
                .with_processes(PROCESSES)
                .with_memory_bytes(512 << 20),
        )
});

/// Takes the lock and proves the process limit holds before the test runs anything.
async fn checked() -> MutexGuard<'static, ()> {
    let guard = LOCK.lock().await;
    let check = SANDBOX.self_check().await.expect("sandbox self-check");
    assert_eq!(check.process_limit, PROCESSES);
    assert!(check.forked < PROCESSES, "{check:?}");
    eprintln!("isolation: {:?}", check.isolation);
    guard
}

async fn isolation() -> &'static Isolation {
    &SANDBOX.self_check().await.unwrap().isolation
}

async fn sandbox_uid() -> Option<u32> {
    isolation().await.user.as_ref().map(|u| u.uid)
}

/// Processes (host pids) whose real uid is `uid`.
fn processes_of(uid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let real = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|u| u.parse::<u32>().ok());
        if real == Some(uid) {
            pids.push(pid);
        }
    }
    pids
}

/// Waits up to `within` for the sandbox user to have no processes but those in `before`.
async fn settles(uid: u32, before: &[u32], within: Duration) -> Vec<u32> {
    let deadline = Instant::now() + within;
    loop {
        let left: Vec<u32> = processes_of(uid)
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run(source: &str) -> ponder_prm::RunReport {
    SANDBOX
        .run(&Program::new(source))
        .await
        .expect("sandbox run")
}

#[tokio::test]
async fn a_normal_program_passes() {
    let _guard = checked().await;
    let report = run("import os\nprint('hello', os.getuid())\nprint(open('/proc/self/oom_score_adj').read().strip())\n").await;
    assert_eq!(report.outcome, RunOutcome::Passed);
    let (stdout, oom) = report.stdout.trim().rsplit_once('\n').unwrap();
    // What the OOM killer takes first, ahead of ponder.
    assert_eq!(oom, "1000");
    assert_eq!(report.termination, Some(Termination::Exited(0)));
    assert!(report.cpu.is_some());
    let uid: u32 = stdout
        .trim()
        .strip_prefix("hello ")
        .unwrap()
        .parse()
        .unwrap();
    if let Some(expected) = sandbox_uid().await {
        assert_eq!(uid, expected, "runs as the unprivileged user");
        assert_ne!(uid, 0);
    }
}

#[tokio::test]
async fn a_failing_assert_is_failed_with_its_line() {
    let _guard = checked().await;
    let report = run("def f():\n    return 1\n\nassert f() == 2, 'f is wrong'\n").await;
    assert_eq!(
        report.outcome,
        RunOutcome::Failed {
            assertion: "assert f() == 2, 'f is wrong'".into(),
            message: Some("f is wrong".into()),
        },
        "{}",
        report.stderr
    );
    let report = run("x = 1\nassert x == 2\n").await;
    assert!(
        matches!(&report.outcome, RunOutcome::Failed { assertion, message: None } if assertion == "assert x == 2"),
        "{:?}",
        report.outcome
    );
}

#[tokio::test]
async fn an_exception_is_an_error_with_its_traceback() {
    let _guard = checked().await;
    let report = run("def g():\n    return 1 / 0\n\ng()\n").await;
    match &report.outcome {
        RunOutcome::Error {
            exception,
            traceback,
        } => {
            assert_eq!(exception, "ZeroDivisionError: division by zero");
            assert!(traceback.contains("line 2, in g"), "{traceback}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_infinite_loop_times_out() {
    let _guard = checked().await;
    let started = Instant::now();
    // Sleeping uses no CPU: the wall clock ends it.
    let report = run("import time\nwhile True:\n    time.sleep(0.1)\n").await;
    assert_eq!(report.outcome, RunOutcome::Timeout);
    assert_eq!(report.termination, None);
    assert!(started.elapsed() < WALL + SLACK, "{:?}", started.elapsed());
    // Spinning on the CPU: RLIMIT_CPU (3 s) or the wall clock (4 s), whichever comes first.
    let report = run("while True:\n    pass\n").await;
    assert_eq!(report.outcome, RunOutcome::Timeout);
    assert!(started.elapsed() < 2 * (WALL + SLACK));
}

#[tokio::test]
async fn the_cpu_limit_kills_a_spinning_program() {
    let _guard = checked().await;
    let sandbox = SANDBOX.clone().with_limits(
        SANDBOX
            .limits()
            .with_cpu(Duration::from_secs(1))
            .with_wall(Duration::from_secs(30)),
    );
    let started = Instant::now();
    let report = sandbox
        .run(&Program::new("while True:\n    pass\n"))
        .await
        .unwrap();
    assert_eq!(report.outcome, RunOutcome::Timeout);
    assert_eq!(
        report.termination,
        Some(Termination::Signaled(24)),
        "SIGXCPU"
    );
    // The reported CPU time is tick-sampled: on a loaded machine it reads as low as 0.7 s for
    // a process that SIGXCPU stopped at 1 s (seen with a bare setrlimit and wait4, no sandbox).
    assert!(
        report.cpu.unwrap() >= Duration::from_millis(500),
        "{report:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn a_fork_bomb_is_contained() {
    let _guard = checked().await;
    let uid = sandbox_uid().await;
    let before = uid.map(processes_of).unwrap_or_default();
    for bomb in [
        // Dies at the limit: the fork that fails raises.
        "import os\nwhile True:\n    os.fork()\n",
        // Keeps trying until the wall clock ends it.
        "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)\n",
    ] {
        let started = Instant::now();
        let mut peak = 0;
        let program = Program::new(bomb);
        let run = SANDBOX.run(&program);
        tokio::pin!(run);
        let report = loop {
            tokio::select! {
                report = &mut run => break report.unwrap(),
                () = tokio::time::sleep(Duration::from_millis(20)) => {
                    if let Some(uid) = uid {
                        peak = peak.max(processes_of(uid).len().saturating_sub(before.len()));
                    }
                }
            }
        };
        assert!(
            matches!(report.outcome, RunOutcome::Error { .. } | RunOutcome::Timeout),
            "{:?}",
            report.outcome
        );
        assert!(started.elapsed() < WALL + SLACK, "{:?}", started.elapsed());
        assert!(peak <= PROCESSES as usize, "peak {peak} processes");
        if let Some(uid) = uid {
            let left = settles(uid, &before, Duration::from_secs(3)).await;
            assert!(left.is_empty(), "left behind: {left:?}");
        }
        eprintln!("{:?} in {:?}, peak {peak}", report.outcome, started.elapsed());
    }
}

#[tokio::test]
async fn a_10_gb_allocation_hits_the_memory_limit() {
    let _guard = checked().await;
    let report = run("b = bytearray(10 * 1024 ** 3)\nprint(len(b))\n").await;
    assert_eq!(report.outcome, RunOutcome::MemoryLimit, "{}", report.stderr);
    let report = run("x = [0] * (10 ** 10 // 8)\n").await;
    assert_eq!(report.outcome, RunOutcome::MemoryLimit, "{}", report.stderr);
}

#[tokio::test]
async fn a_100_mb_print_hits_the_output_limit() {
    let _guard = checked().await;
    let started = Instant::now();
    let report = run(
        "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(100):\n    sys.stdout.write(chunk)\n",
    )
    .await;
    assert_eq!(
        report.outcome,
        RunOutcome::OutputLimit {
            stream: Stream::Stdout
        }
    );
    let cap = SANDBOX.limits().output_bytes.get();
    assert_eq!(report.stdout.len(), cap);
    assert!(report.stdout_truncated && !report.stderr_truncated);
    assert!(report.stdout.bytes().all(|b| b == b'x'));
    assert!(
        started.elapsed() < WALL,
        "killed at the cap, not at the timeout"
    );
    let report = run("import sys\nsys.stderr.write('e' * (3 << 20))\n").await;
    assert_eq!(
        report.outcome,
        RunOutcome::OutputLimit {
            stream: Stream::Stderr
        }
    );
    assert_eq!(report.stderr.len(), cap);
}

#[tokio::test]
async fn a_connection_to_a_local_listener_fails() {
    let _guard = checked().await;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let source = format!(
        "import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\ns.sendall(b'escaped')\n"
    );
    let report = run(&source).await;
    let isolation = isolation().await;
    let accepted = listener.accept();
    if !isolation.network {
        eprintln!("network isolation is not enforced on this machine; the connection got through");
        assert!(accepted.is_ok());
        return;
    }
    match &report.outcome {
        RunOutcome::Error { exception, .. } => {
            assert!(exception.contains("Network is unreachable"), "{exception}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        accepted.map(|_| ()).unwrap_err().kind(),
        ErrorKind::WouldBlock,
        "the listener got no connection"
    );
}

#[tokio::test]
async fn a_unix_socket_on_the_host_is_out_of_reach() {
    use std::os::unix::fs::PermissionsExt;
    let _guard = checked().await;
    assert!(isolation().await.unix_sockets_refused);
    // A world-connectable socket in a world-traversable directory, as a daemon's would be: a
    // read-only mount does not stop connect(2), and a network namespace does not cover it.
    let dir = std::env::temp_dir().join(format!("ponder-sandbox-unix-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.join("daemon.sock");
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let source = format!(
        r#"import ctypes, errno, os, socket
tried = {{}}
def attempt(name, f):
    try:
        f()
        tried[name] = "ok"
    except OSError as e:
        tried[name] = errno.errorcode.get(e.errno, str(e.errno))
def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect({path:?})
    s.sendall(b"escaped")
attempt("connect", connect)
def dgram_pair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.connect({path:?})
attempt("dgram socketpair", dgram_pair)
# A stream pair (asyncio's self-pipe) still works.
attempt("stream socketpair", lambda: socket.socketpair())
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
tried["io_uring_setup"] = "ok" if libc.syscall(425, 1, params) >= 0 else errno.errorcode[ctypes.get_errno()]
print(sorted(tried.items()))
"#,
        path = path.to_str().unwrap(),
    );
    let report = run(&source).await;
    let accepted = listener.accept();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(report.outcome, RunOutcome::Passed, "{}", report.stderr);
    assert_eq!(
        report.stdout.trim(),
        "[('connect', 'EACCES'), ('dgram socketpair', 'EACCES'), ('io_uring_setup', 'ENOSYS'), \
         ('stream socketpair', 'ok')]"
    );
    assert_eq!(
        accepted.map(|_| ()).unwrap_err().kind(),
        ErrorKind::WouldBlock,
        "the listener got no connection"
    );
}

/// With a mount namespace the program's root is its own: the system directories and the
/// interpreter, read-only, and its run directory; not the host's files (a problem set with its
/// tests and solutions, home directories, other runs' directories).
#[tokio::test]
async fn the_host_beyond_the_system_is_out_of_sight() {
    let _guard = checked().await;
    if !isolation().await.filesystem {
        eprintln!("no mount namespace here: the program sees the host's files");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("ponder-host-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let secret = dir.path().join("answers.jsonl");
    std::fs::write(&secret, "{\"canonical_solution\": \"...\"}\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let source = format!(
        "import os\nfor p in ({:?}, {:?}, '/home', '/root'):\n    print(p, os.path.exists(p))\nprint(sorted(os.listdir('/tmp')) == [os.getcwd().split('/')[2]])\nimport json\nprint(json.dumps(1))\n",
        secret.to_str().unwrap(),
        repo,
    );
    let report = run(&source).await;
    assert_eq!(report.outcome, RunOutcome::Passed, "{}", report.stderr);
    let lines: Vec<&str> = report.stdout.lines().collect();
    for line in &lines[..4] {
        assert!(line.ends_with(" False"), "{}", report.stdout);
    }
    // Only its own run directory in /tmp; the standard library still imports.
    assert_eq!(&lines[4..], ["True", "1"], "{}", report.stdout);
}

/// An interpreter outside the system directories (a copy in a home-like directory, as
/// `~/bin/python3`) brings its own files into the program's root, not the directory around it:
/// the rest of that home (an ssh key) stays out of sight, and the standard library still imports.
#[tokio::test]
async fn an_interpreter_in_a_home_directory_leaves_the_home_out_of_sight() {
    use std::os::unix::fs::PermissionsExt;
    let _guard = checked().await;
    if !isolation().await.filesystem {
        eprintln!("no mount namespace here: the program sees the host's files");
        return;
    }
    let system = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find_map(|p| std::fs::canonicalize(p).ok())
        .expect("a system python3");
    let home = tempfile::Builder::new()
        .prefix("ponder-home-")
        .tempdir_in("/tmp")
        .unwrap();
    let bin = home.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let python = bin.join("python3");
    std::fs::copy(&system, &python).unwrap();
    let key = home.path().join("id_rsa");
    std::fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
    for (path, mode) in [
        (home.path(), 0o755),
        (bin.as_path(), 0o755),
        (python.as_path(), 0o755),
        (key.as_path(), 0o644),
    ] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    // A build that finds its libraries relative to itself (`$ORIGIN`) does not run as a copy.
    let runs = tokio::process::Command::new(&python)
        .args(["-c", "import json, decimal, ssl"])
        .status()
        .await
        .is_ok_and(|s| s.success());
    if !runs {
        eprintln!(
            "a copy of {} does not run on its own: skipped",
            system.display()
        );
        return;
    }
    let sandbox = Sandbox::new()
        .with_python(python.clone())
        .with_limits(*SANDBOX.limits());
    let source = format!(
        "import decimal, json, os, ssl\nhome = {:?}\nprint(sorted(os.listdir(home)), sorted(os.listdir(home + '/bin')), os.path.exists(home + '/id_rsa'))\n",
        home.path().to_str().unwrap(),
    );
    let report = sandbox
        .run(&Program::new(source))
        .await
        .expect("sandbox run");
    assert_eq!(report.outcome, RunOutcome::Passed, "{}", report.stderr);
    assert_eq!(report.stdout, "['bin'] ['python3'] False\n");
}

/// Out of the program's reach: the kernel keyrings (shared by every run of the sandbox user and
/// outliving them), new namespaces (every capability in a user namespace of its own), its PID
/// namespace's init (the bootstrap, which would leave no status), the status file; while
/// threads, subprocesses, a process pool and `/dev/stdin` still work.
#[tokio::test]
async fn keyrings_namespaces_and_the_bootstrap_are_out_of_reach() {
    let _guard = checked().await;
    let source = r#"import ctypes, errno, os, signal, subprocess, sys, threading
from multiprocessing import Pool
libc = ctypes.CDLL(None, use_errno=True)
x86 = os.uname().machine == "x86_64"
def refused(result):
    return "refused" if result == -1 and ctypes.get_errno() in (errno.EPERM, errno.EACCES) else "allowed"
print("add_key", refused(libc.syscall(248 if x86 else 217, b"user", b"ponder-test", b"v", 1, -4)))
print("keyctl", refused(libc.syscall(250 if x86 else 219, 0, -4, 0)))
print("unshare", refused(libc.unshare(0x10000000)))
import socket
def attempt(what, call):
    try:
        call()
        print(what, "allowed")
    except OSError:
        print(what, "refused")
attempt("memfd", lambda: os.memfd_create("x"))
attempt("vsock", lambda: socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM))
attempt("raw pair", lambda: socket.socketpair(socket.AF_UNIX, socket.SOCK_RAW))
attempt("fadvise", lambda: os.posix_fadvise(os.open("/etc/passwd", os.O_RDONLY), 0, 0, os.POSIX_FADV_DONTNEED))
if os.getpid() != 1:
    try:
        os.kill(1, signal.SIGINT)
    except OSError:
        pass
run_dir = os.path.dirname(os.path.dirname(os.path.abspath(sys.argv[0])))
print("status", os.path.exists(os.path.join(run_dir, "status.json")))
t = threading.Thread(target=lambda: None)
t.start()
t.join()
print(subprocess.run(["/bin/sh", "-c", "echo sh"], capture_output=True, text=True).stdout.strip())
with Pool(2) as pool:
    print("pool", sum(pool.map(abs, [-1, -2])))
print("stdin", open("/dev/stdin").read())
import getpass, sqlite3, ssl, zoneinfo
ssl.create_default_context()
sqlite3.connect(":memory:").execute("select 1")
print("stdlib", getpass.getuser() in ("nobody", "root"), zoneinfo.ZoneInfo("Europe/Paris").key)
print("etc", sorted(n for n in ("apt", "machine-id", "passwd") if os.path.exists("/etc/" + n)))
"#;
    let report = SANDBOX
        .run(&Program::new(source).with_stdin(b"hello".to_vec()))
        .await
        .expect("sandbox run");
    assert_eq!(report.outcome, RunOutcome::Passed, "{}", report.stderr);
    if isolation().await.unix_sockets_refused {
        let refused = "add_key refused\nkeyctl refused\nunshare refused\nmemfd refused\nvsock refused\nraw pair refused\nfadvise refused";
        assert!(report.stdout.starts_with(refused), "{}", report.stdout);
    }
    let tail = "status False\nsh\npool 3\nstdin hello\nstdlib True Europe/Paris\n";
    assert!(report.stdout.contains(tail), "{}", report.stdout);
    // Of /etc, with a root of its own, only what the loader, name lookups, time zones, TLS and
    // Python read.
    let host_has = |p: &str| std::path::Path::new(p).exists();
    if isolation().await.filesystem && host_has("/etc/apt") && host_has("/etc/machine-id") {
        assert!(
            report.stdout.ends_with("etc ['passwd']\n"),
            "{}",
            report.stdout
        );
    }
}

/// Runs share no System V or POSIX IPC (an IPC namespace each): a segment one run leaves is not
/// there for the next to read.
#[tokio::test]
async fn runs_share_no_ipc() {
    let _guard = checked().await;
    if !isolation().await.filesystem {
        eprintln!("no namespaces here: runs share the host's IPC");
        return;
    }
    let key = 0x706f_6e64;
    let leave = format!("import ctypes\nlibc = ctypes.CDLL(None)\nprint(libc.shmget({key}, 4096, 0o1000 | 0o666) >= 0)\n");
    let report = run(&leave).await;
    assert_eq!(report.stdout.trim(), "True", "{}", report.stderr);
    let find =
        format!("import ctypes\nlibc = ctypes.CDLL(None)\nprint(libc.shmget({key}, 0, 0) >= 0)\n");
    let report = run(&find).await;
    assert_eq!(report.stdout.trim(), "False", "{}", report.stderr);
    // Its shared memory, which RLIMIT_AS does not count once detached, is held to the memory
    // limit (the namespace's defaults are unlimited).
    let report = run("print(int(open('/proc/sys/kernel/shmmax').read()))\n").await;
    let shmmax: u64 = report.stdout.trim().parse().expect(&report.stderr);
    assert!(shmmax <= SANDBOX.limits().memory_bytes.get(), "{shmmax}");
}

#[tokio::test]
async fn writes_outside_the_run_directory_fail() {
    let _guard = checked().await;
    let isolation = isolation().await;
    let unique = format!("ponder-sandbox-escape-test-{}", std::process::id());
    // Programs never run as root (as root, the sandbox switches users), so root's home is closed
    // to them; world-writable places are read-only where there is a mount namespace.
    // With a mount namespace the program has a root of its own, where /root is not at all and
    // /tmp is read-only (its /dev/shm is a tmpfs of its own, gone with it).
    let mut targets = vec![(
        PathBuf::from("/root").join(&unique),
        if isolation.filesystem {
            "FileNotFoundError"
        } else {
            "PermissionError"
        },
    )];
    if isolation.filesystem {
        targets.push((std::env::temp_dir().join(&unique), "Read-only file system"));
    } else {
        eprintln!("no mount namespace here: the program could write to world-writable places");
    }
    for (path, expected) in targets {
        let source = format!("open({:?}, 'w').write('escaped')\n", path.to_str().unwrap());
        let report = run(&source).await;
        match &report.outcome {
            RunOutcome::Error { exception, .. } => {
                assert!(exception.contains(expected), "{path:?}: {exception}")
            }
            other => panic!("{path:?}: {other:?}"),
        }
        assert!(!path.exists(), "{path:?} was written");
    }
    // Nor the run directory around its own: not its source (or a harness's tests), not a file
    // beside them (disk it could fill). As root its owner is root; not as root the mount is
    // read-only.
    let report = run("import os\nfor p in ('../escape', '../src/main.py', '../src/extra.py'):\n    try:\n        open(p, 'w').write('x')\n        print(p, 'written')\n    except OSError as e:\n        print(p, type(e).__name__)\n").await;
    assert_eq!(report.outcome, RunOutcome::Passed, "{}", report.stderr);
    for line in report.stdout.lines() {
        assert!(
            line.ends_with("PermissionError") || line.ends_with("OSError"),
            "{}",
            report.stdout
        );
    }
    assert_eq!(report.stdout.lines().count(), 3, "{}", report.stdout);
    // Its own directory is writable, and is gone afterwards.
    let report = run("import os\nopen('ok.txt', 'w').write('fine')\nprint(os.getcwd())\nprint(open('ok.txt').read())\n").await;
    assert_eq!(report.outcome, RunOutcome::Passed, "{}", report.stderr);
    let mut lines = report.stdout.lines();
    let cwd = PathBuf::from(lines.next().unwrap());
    assert_eq!(lines.next(), Some("fine"));
    assert!(!cwd.exists(), "{cwd:?} left behind");
}

#[tokio::test]
async fn a_program_can_neither_remount_nor_mount() {
    let _guard = checked().await;
    let isolation = isolation().await;
    let target =
        std::env::temp_dir().join(format!("ponder-sandbox-mount-test-{}", std::process::id()));
    // Not as root the program is uid 0 of its own user namespace, whose mounts it could remount
    // read-write if it had kept its capabilities there. Every mount point, "/" included, is
    // tried, then a tmpfs over its own directory; then a write where the host would see it.
    let source = format!(
        r#"import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
MS_REMOUNT, MS_BIND = 32, 4096
def mount(src, dst, fstype, flags):
    if libc.mount(src, dst.encode(), fstype, flags, None) == 0:
        return "mounted"
    return os.strerror(ctypes.get_errno())
tried = {{"/": mount(None, "/", None, MS_REMOUNT | MS_BIND)}}
with open("/proc/self/mountinfo") as f:
    for line in f:
        point = line.split()[4]
        tried[point] = mount(None, point, None, MS_REMOUNT | MS_BIND)
tried["tmpfs on ."] = mount(b"tmpfs", os.getcwd(), b"tmpfs", 0)
print(json.dumps(tried))
if {write}:
    open({target:?}, "w").write("escaped")
"#,
        write = if isolation.filesystem {
            "True"
        } else {
            "False"
        },
        target = target.to_str().unwrap(),
    );
    let report = run(&source).await;
    let line = report.stdout.lines().next().unwrap_or_default();
    let tried: std::collections::BTreeMap<String, String> = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", report.outcome, report.stderr));
    assert!(tried.len() >= 3, "{tried:?}");
    for (point, result) in &tried {
        assert_eq!(result, "Operation not permitted", "{point}: {tried:?}");
    }
    if isolation.filesystem {
        match &report.outcome {
            RunOutcome::Error { exception, .. } => {
                assert!(exception.contains("Read-only file system"), "{exception}")
            }
            other => panic!("{other:?}"),
        }
    } else {
        eprintln!("no mount namespace here: the write was not tried");
        assert_eq!(report.outcome, RunOutcome::Passed, "{}", report.stderr);
    }
    assert!(!target.exists(), "{target:?} was written");
}

#[tokio::test]
async fn a_leftover_process_cannot_forge_the_status() {
    let _guard = checked().await;
    if !isolation().await.pid_namespace {
        eprintln!("no PID namespace here: leftovers are not killed before the status is written");
        return;
    }
    // Not as root the program may write the run directory, status file included: a child that
    // left the group keeps writing a clean exit there while the program fails.
    let program = Program::new(
        r#"import json, os, time
forged = json.dumps({"code": 0, "cpu_s": 0.0})
if os.fork() == 0:
    os.setsid()
    end = time.time() + 3
    while time.time() < end:
        try:
            with open("../status.json", "w") as f:
                f.write(forged)
        except OSError:
            time.sleep(0.001)
    os._exit(0)
time.sleep(0.3)
os._exit(3)
"#,
    );
    for _ in 0..3 {
        let report = SANDBOX.run(&program).await.unwrap();
        assert_eq!(
            report.termination,
            Some(Termination::Exited(3)),
            "{:?}",
            report.outcome
        );
        assert!(report.wall < Duration::from_secs(2), "{:?}", report.wall);
    }
}

#[tokio::test]
async fn without_unshare_code_runs_only_when_allowed() {
    let _guard = checked().await;
    let missing = PathBuf::from("/nonexistent/ponder-sandbox-test/unshare");
    // Strict whatever this machine made the shared sandbox.
    let sandbox = SANDBOX
        .clone()
        .allow_unisolated(false)
        .with_unshare(&missing);
    let program = Program::new("print('ran')");
    let error = sandbox.run(&program).await.unwrap_err();
    match &error {
        SandboxError::Unisolated { unshare, .. } => assert_eq!(unshare, &missing),
        other => panic!("{other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains(missing.to_str().unwrap()) && message.contains("allow_unisolated(true)"),
        "{message}"
    );
    let cause = std::error::Error::source(&error).unwrap().to_string();
    assert!(cause.contains("not found"), "{cause}");
    // Refused every time, not only on the first run.
    assert!(matches!(
        sandbox.self_check().await,
        Err(SandboxError::Unisolated { .. })
    ));

    let allowed = sandbox.allow_unisolated(true);
    let report = allowed.run(&program).await.unwrap();
    assert_eq!(report.outcome, RunOutcome::Passed, "{}", report.stderr);
    assert_eq!(report.stdout, "ran\n");
    let isolation = &allowed.self_check().await.unwrap().isolation;
    assert!(
        !isolation.network && !isolation.filesystem && !isolation.pid_namespace,
        "{isolation:?}"
    );
    assert_eq!(isolation.user, self::isolation().await.user);
    // Unisolated, the program still cannot read this process's environment (API keys) or
    // memory: as root it runs as another user; not as root, as this one, and this process has
    // made itself not dumpable.
    let pid = std::process::id();
    let report = allowed
        .run(&Program::new(format!(
            "for part in ('environ', 'mem'):\n    try:\n        \
             open('/proc/{pid}/' + part, 'rb').read(16)\n        print(part, 'read')\n    \
             except OSError as e:\n        print(part, type(e).__name__)\n"
        )))
        .await
        .unwrap();
    assert_eq!(
        report.stdout, "environ PermissionError\nmem PermissionError\n",
        "{}",
        report.stderr
    );
}

#[tokio::test]
async fn file_size_and_disk_are_limited() {
    let _guard = checked().await;
    let report = run("open('big', 'wb').write(b'x' * (32 << 20))\n").await;
    match &report.outcome {
        RunOutcome::Error { exception, .. } => {
            assert!(exception.contains("File too large"), "{exception}")
        }
        other => panic!("{other:?}"),
    }
    if isolation().await.filesystem {
        // Five files under the 16 MiB file limit overflow the 64 MiB scratch tmpfs.
        let report =
            run("for i in range(5):\n    open(f'part{i}', 'wb').write(b'x' * (15 << 20))\n").await;
        match &report.outcome {
            RunOutcome::Error { exception, .. } => {
                assert!(exception.contains("No space left on device"), "{exception}")
            }
            other => panic!("{other:?}"),
        }
        // Empty files use no space but an inode each: capped too (16384 for 64 MiB).
        let report = run("for i in range(20000):\n    open(f'f{i}', 'w').close()\n").await;
        match &report.outcome {
            RunOutcome::Error { exception, .. } => {
                assert!(exception.contains("No space left on device"), "{exception}")
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn dropping_a_run_kills_its_processes() {
    let _guard = checked().await;
    let Some(uid) = sandbox_uid().await else {
        eprintln!("not root: the program runs as this user, its processes cannot be told apart");
        return;
    };
    let before = processes_of(uid);
    // The child leaves the process group: only the PID namespace (or nothing) catches it.
    let program =
        Program::new("import os, time\nif os.fork() == 0:\n    os.setsid()\ntime.sleep(600)\n");
    let mut run = Box::pin(SANDBOX.run(&program));
    let deadline = Instant::now() + Duration::from_secs(10);
    let started = loop {
        tokio::select! {
            report = &mut run => panic!("finished: {report:?}"),
            () = tokio::time::sleep(Duration::from_millis(20)) => {
                let now: Vec<u32> = processes_of(uid).into_iter().filter(|p| !before.contains(p)).collect();
                if now.len() >= 2 {
                    break now;
                }
                assert!(Instant::now() < deadline, "the program never started");
            }
        }
    };
    drop(run);
    let left = settles(uid, &before, Duration::from_secs(3)).await;
    assert!(left.is_empty(), "still running after drop: {left:?}");
    for pid in started {
        assert!(
            !PathBuf::from(format!("/proc/{pid}")).exists(),
            "{pid} is gone"
        );
    }
}

/// Run by [`a_run_ends_when_its_caller_dies`] in a process of its own, which it kills.
#[tokio::test]
#[ignore = "a helper: run by a_run_ends_when_its_caller_dies"]
async fn caller_that_dies() {
    if std::env::var_os("PONDER_SANDBOX_CALLER").is_none() {
        return;
    }
    // Two processes, one outside the group, both sleeping where no CPU limit reaches them,
    // under a wall limit long past the test's patience.
    let program = Program::new(
        "import os\nif os.fork() == 0:\n    os.setsid()\n    os.execv('/bin/sleep', ['sleep', '613'])\nos.execv('/bin/sleep', ['sleep', '612'])\n",
    )
    .with_wall(Duration::from_secs(600));
    let report = SANDBOX.run(&program).await;
    panic!("the run ended before its caller was killed: {report:?}");
}

/// The sandbox user's processes running `sleep 612` or `sleep 613` and not yet reaped.
fn sleepers(uid: u32) -> Vec<u32> {
    processes_of(uid)
        .into_iter()
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'));
            !zombie && (cmdline == b"sleep\x00612\x00" || cmdline == b"sleep\x00613\x00")
        })
        .collect()
}

#[tokio::test]
async fn a_run_ends_when_its_caller_dies() {
    let _guard = checked().await;
    let Some(uid) = sandbox_uid().await else {
        eprintln!("not root: the program runs as this user, its processes cannot be told apart");
        return;
    };
    if !isolation().await.pid_namespace {
        eprintln!("no PID namespace: a program that leaves its group outlives its run");
        return;
    }
    assert!(
        sleepers(uid).is_empty(),
        "left by another run: {:?}",
        sleepers(uid)
    );
    // ponder killed (SIGKILL, the OOM killer, a crash) while a program sleeps: nothing of the
    // run may stay behind.
    /// Kills the caller however the test ends (an assertion failing before it is killed).
    struct Caller(std::process::Child);
    impl Drop for Caller {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    // A killed caller never removes its run directory: it makes it here, removed after.
    let tmp = tempfile::Builder::new()
        .prefix("ponder-sandbox-caller-")
        .tempdir()
        .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    let mut caller = Caller(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "caller_that_dies", "--ignored", "--nocapture"])
            .env("PONDER_SANDBOX_CALLER", "1")
            .env("TMPDIR", tmp.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while sleepers(uid).len() < 2 {
        if let Some(status) = caller.0.try_wait().unwrap() {
            panic!("the caller ended first: {status}");
        }
        assert!(Instant::now() < deadline, "the program never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(caller);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !sleepers(uid).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        sleepers(uid).is_empty(),
        "outlived their caller: {:?}",
        sleepers(uid)
    );
}

#[tokio::test]
async fn a_program_may_start_threads_under_the_memory_limit() {
    let _guard = checked().await;
    // Twelve threads that each allocate: 512 MiB of address space holds their stacks, but not a
    // malloc arena of 64 MiB reserved for each.
    let report = run(r#"import threading
def work():
    blocks = [bytearray(1000) for _ in range(2000)]
    barrier.wait(timeout=2)
barrier = threading.Barrier(12)
threads = [threading.Thread(target=work) for _ in range(12)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("joined", len(threads))
"#)
    .await;
    assert_eq!(report.outcome, RunOutcome::Passed, "{}", report.stderr);
    assert_eq!(report.stdout.trim(), "joined 12");
}

/// String hashes are seeded the same every run (where Python has -P, 3.11, to keep -I's other
/// protections without its -E), so a set of strings comes out in one order and two runs of one
/// program agree (S* clusters programs by their outputs); the script's directory and the user
/// site stay off sys.path, and numpy's BLAS starts one thread, not one a core.
#[tokio::test]
async fn a_set_of_strings_comes_out_in_one_order_every_run() {
    let _guard = checked().await;
    let source = r#"import os, sys
print(os.path.dirname(os.path.abspath(__file__)) in sys.path, sys.flags.no_user_site)
print(*(os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")))
if sys.version_info >= (3, 11):
    print(list({"apple", "pear", "fig", "kiwi", "plum", "a", "b", "c"}))
"#;
    let first = run(source).await;
    assert_eq!(first.outcome, RunOutcome::Passed, "{}", first.stderr);
    assert!(
        first.stdout.starts_with("False 1\n1 1 1\n"),
        "{}",
        first.stdout
    );
    for _ in 0..3 {
        let again = run(source).await;
        assert_eq!(again.stdout, first.stdout);
    }
}

#[tokio::test]
async fn a_program_cannot_end_its_bootstrap_with_a_signal() {
    let _guard = checked().await;
    let isolation = isolation().await;
    // Not as root the program is the bootstrap's own user: it may signal it, and a PID
    // namespace's init gets only the signals it handles. Every signal that would end a process
    // (or that a bootstrap might handle) is sent; the run must end as the program does, with
    // its status, not as a set-up error or a timeout.
    let program = Program::new(
        r#"import os, signal, time
sent = []
if os.getppid() == 1:
    for s in (signal.SIGALRM, signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGINT,
              signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE, signal.SIGXFSZ,
              signal.SIGXCPU, signal.SIGVTALRM, signal.SIGPROF, signal.SIGIO):
        try:
            os.kill(1, s)
            sent.append(s.name)
        except PermissionError:
            pass
time.sleep(0.3)
print("sent", len(sent), flush=True)
os._exit(3)
"#,
    );
    let report = SANDBOX.run(&program).await.unwrap();
    assert_eq!(
        report.termination,
        Some(Termination::Exited(3)),
        "{:?}: {}",
        report.outcome,
        report.stderr
    );
    let sent: usize = report
        .stdout
        .trim()
        .strip_prefix("sent ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{:?}", report.stdout));
    if isolation.user.is_none() && isolation.pid_namespace {
        // The case this guards: the signals reached the bootstrap (none was refused).
        assert_eq!(sent, 14, "{:?}", report.stdout);
    }
}

/// Whether the sandbox user can run this test binary's copy under `setpriv` (root here, with
/// util-linux): the tests below then run again not as root, where the sandbox takes another
/// path (a user namespace of the run's own, the program the caller's own user).
#[tokio::test]
async fn the_hostile_programs_are_contained_not_as_root_too() {
    if std::env::var_os("PONDER_SANDBOX_NOT_ROOT").is_some() {
        return;
    }
    if !rustix::process::geteuid().is_root() {
        eprintln!("not root: the other tests ran not as root already");
        return;
    }
    let works = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let drop_root = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    let user_namespace = [
        &drop_root[..],
        &["unshare", "--user", "--map-root-user", "true"],
    ]
    .concat();
    if !works("setpriv", &user_namespace) {
        eprintln!("no setpriv, or no unprivileged user namespaces here: skipped");
        return;
    }
    let _guard = LOCK.lock().await;
    // The test binary's directory (under root's home) is out of the other user's reach: a
    // copy goes where it can read it.
    let dir = tempfile::Builder::new()
        .prefix("ponder-not-root-")
        .tempdir()
        .unwrap();
    let copy = dir.path().join("sandbox-tests");
    std::fs::copy(std::env::current_exe().unwrap(), &copy).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let tests = [
        "a_normal_program_passes",
        "a_program_cannot_end_its_bootstrap_with_a_signal",
        "a_program_may_start_threads_under_the_memory_limit",
        "a_fork_bomb_is_contained",
        "a_leftover_process_cannot_forge_the_status",
        "keyrings_namespaces_and_the_bootstrap_are_out_of_reach",
        "writes_outside_the_run_directory_fail",
        "a_program_can_neither_remount_nor_mount",
        "the_host_beyond_the_system_is_out_of_sight",
        "a_connection_to_a_local_listener_fails",
        "a_unix_socket_on_the_host_is_out_of_reach",
        "a_candidate_cannot_forge_its_hidden_test_grade",
    ];
    let output = tokio::process::Command::new("setpriv")
        .args(drop_root)
        .arg(&copy)
        .args(["--exact", "--test-threads=1"])
        .args(tests)
        .env("PONDER_SANDBOX_NOT_ROOT", "1")
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "not as root: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("{} passed", tests.len())),
        "not every test ran: {stdout}"
    );
}

#[tokio::test]
async fn stdin_and_extra_files_reach_the_program() {
    let _guard = checked().await;
    let program = Program::new(
        "import os, sys\nhere = os.path.dirname(__file__)\nprint(sys.stdin.read().upper())\nprint(open(os.path.join(here, 'data.txt')).read())\n",
    )
    .with_file("data.txt", "from a file")
    .with_stdin("from stdin");
    let report = SANDBOX.run(&program).await.unwrap();
    assert_eq!(report.outcome, RunOutcome::Passed, "{}", report.stderr);
    assert_eq!(report.stdout, "FROM STDIN\nfrom a file\n");
    let bad = Program::new("pass").with_file("../x.py", "");
    assert!(matches!(
        SANDBOX.run(&bad).await,
        Err(SandboxError::FileName { .. })
    ));
}

fn verifier() -> CodeVerifier {
    CodeVerifier::new(SANDBOX.clone()).with_test_timeout(Duration::from_secs(1))
}

/// `code` (whose `f` returns its argument) against `f(1)`, then `call` (expected 2), then
/// `f(3)`: whether what `call` does leaves the tests around it alone.
async fn between(code: &str, call: &str) -> TestRun {
    let tests = [
        TestCase::new("f(1)", "1"),
        TestCase::new(call, "2"),
        TestCase::new("f(3)", "3"),
    ];
    verifier().run_tests(code, &tests).await.unwrap()
}

#[tokio::test]
async fn the_verifier_reports_each_test() {
    let _guard = checked().await;
    let code = "def f(x):\n    if x == 3:\n        raise ValueError('three')\n    if x == 4:\n        while True:\n            pass\n    print('saw', x)\n    return x * 2\n";
    let tests = vec![
        TestCase::new("f(1)", "2"),
        TestCase::new("f(2)", "5"),
        TestCase::new("f(3)", "6"),
        TestCase::new("f(4)", "8"),
        TestCase::new("f(y)", "2"),
        TestCase::new("f(0.1)", "0.2000000001"),
        TestCase::probe("f(5)"),
        TestCase::new("f(1)", "not python ("),
        TestCase::new("f(51167078)", "102334155"),
        TestCase::new("f(sum([i * i for i in range(3)]))", "10"),
    ];
    let run = verifier().run_tests(code, &tests).await.unwrap();
    let statuses: Vec<&TestStatus> = run.results.iter().map(|r| &r.status).collect();
    assert_eq!(statuses[0], &TestStatus::Passed);
    assert_eq!(statuses[1], &TestStatus::Failed);
    assert_eq!(run.results[1].got.as_deref(), Some("4"));
    assert_eq!(run.results[1].stdout, "saw 2\n");
    assert_eq!(
        statuses[2],
        &TestStatus::Error {
            exception: "ValueError: three".into()
        }
    );
    assert_eq!(statuses[3], &TestStatus::Timeout);
    assert!(matches!(statuses[4], TestStatus::Skipped { reason } if reason.contains("`y`")));
    assert_eq!(statuses[5], &TestStatus::Passed, "floats within 1e-6");
    assert_eq!(statuses[6], &TestStatus::Passed);
    assert_eq!(run.results[6].got.as_deref(), Some("10"));
    assert!(matches!(statuses[7], TestStatus::Skipped { .. }));
    assert_eq!(
        statuses[8],
        &TestStatus::Failed,
        "ints are compared exactly"
    );
    assert_eq!(
        statuses[9],
        &TestStatus::Passed,
        "a name the call binds itself is defined"
    );
    assert_eq!(run.passed(), 4);
    assert!(!run.all_passed());
    assert_eq!(run.report.outcome, RunOutcome::Passed);
    assert_eq!(run.report.stdout, "", "harness lines are taken out");

    let broken = verifier()
        .run_tests("def f(x)\n    return x\n", &tests[..1])
        .await
        .unwrap();
    assert!(
        broken
            .load_error
            .as_deref()
            .unwrap()
            .ends_with("SyntaxError: expected ':'"),
        "{broken:?}"
    );
    assert_eq!(broken.results[0].status, TestStatus::NotRun);
    let exits = verifier()
        .run_tests(
            "import os\ndef f(x):\n    if x == 2:\n        os._exit(3)\n    return x\n",
            &[
                TestCase::new("f(1)", "1"),
                TestCase::new("f(2)", "2"),
                TestCase::new("f(3)", "3"),
            ],
        )
        .await
        .unwrap();
    let statuses: Vec<&TestStatus> = exits.results.iter().map(|r| &r.status).collect();
    assert_eq!(statuses[0], &TestStatus::Passed);
    assert!(matches!(statuses[1], TestStatus::Error { exception } if exception == "exit status 3"));
    // Run in a harness started again after the test it died in.
    assert_eq!(statuses[2], &TestStatus::Passed);
}

/// What a candidate writes to `sys.stderr` (logging, warnings) the public-test harness drops, as
/// the hidden tests' does: a correct function that logs past the output limit passes, where it
/// ended the run (its tests read as errors).
#[tokio::test]
async fn a_candidate_logging_past_the_output_limit_still_passes_its_tests() {
    let _guard = checked().await;
    let code = "import logging, sys\nlogging.basicConfig()\nsys.stderr.write('loading\\n' * 100000)\ndef f(x):\n    for _ in range(1500):\n        logging.warning('%s', 'x' * 1000)\n    return x\n";
    let tests = [TestCase::new("f(1)", "1"), TestCase::new("f(2)", "2")];
    let run = verifier().run_tests(code, &tests).await.unwrap();
    let statuses: Vec<&TestStatus> = run.results.iter().map(|r| &r.status).collect();
    assert_eq!(statuses, vec![&TestStatus::Passed; 2], "{:?}", run.results);
    assert_eq!(run.report.outcome, RunOutcome::Passed);
    assert!(
        !run.report.stderr.contains("loading") && !run.report.stderr.contains("xxxx"),
        "{} bytes on stderr",
        run.report.stderr.len()
    );
}

#[tokio::test]
async fn output_without_a_newline_and_sets_of_strings_are_read_right() {
    let _guard = checked().await;
    // Writes straight to the descriptor (past the per-test capture), without a newline: the
    // next record is glued to it. And a set of strings, whose order changes with every process.
    let code = "import os\ndef f(x):\n    os.write(1, b'dbg')\n    return x\ndef g():\n    return {'pear', 'apple', 'fig', 'kiwi', 'plum'}\n";
    let tests = vec![
        TestCase::new("f(1)", "1"),
        TestCase::new("f(2)", "2"),
        TestCase::new("f(3)", "3"),
        TestCase::probe("g()"),
    ];
    let run = verifier().run_tests(code, &tests).await.unwrap();
    let statuses: Vec<&TestStatus> = run.results.iter().map(|r| &r.status).collect();
    assert_eq!(statuses, vec![&TestStatus::Passed; 4], "{:?}", run.results);
    assert_eq!(
        run.results[3].got.as_deref(),
        Some("{'apple', 'fig', 'kiwi', 'pear', 'plum'}")
    );
    assert_eq!(run.report.stdout, "dbg\ndbg\ndbg\n");

    // Equal dicts built in two orders read the same; outputs that differ only past the cut
    // for showing (1000 characters) do not.
    let code = "def h(a):\n    return {'b': 2, 'a': 2} if a else {'a': 2, 'b': 2}\ndef s(n):\n    return ' '.join(str(i) for i in range(n))\n";
    let tests = [
        TestCase::probe("h(True)"),
        TestCase::probe("h(False)"),
        TestCase::probe("s(1000)"),
        TestCase::probe("s(1001)"),
    ];
    let run = verifier().run_tests(code, &tests).await.unwrap();
    let got: Vec<&str> = run
        .results
        .iter()
        .map(|r| r.got.as_deref().unwrap())
        .collect();
    assert_eq!(got[0], "{'a': 2, 'b': 2}");
    assert_eq!(got[0], got[1]);
    // Two ways to a mean that differ in the last bit read the same (and so cluster in S*).
    let means = [
        "def m(xs):\n    return sum(xs) / len(xs)\n",
        "import statistics\ndef m(xs):\n    return statistics.mean(xs)\n",
    ];
    let tests = [
        TestCase::probe("m([1.1, 2.2, 3.3])"),
        TestCase::probe("m([1.0, 2.0])"),
        TestCase::probe("[m([1, 2]), m([0.1, 0.2, 0.3, 0.4]) * 3]"),
    ];
    let mut shown = Vec::new();
    for code in means {
        let run = verifier().run_tests(code, &tests).await.unwrap();
        shown.push(
            run.results
                .iter()
                .map(|r| r.got.clone().unwrap_or_default())
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(shown[0], ["2.2", "1.5", "[1.5, 0.75]"]);
    assert_eq!(shown[0], shown[1]);
    assert_ne!(got[2], got[3]);
    assert!(
        got[2].len() < 1100 && got[2].contains("characters in all"),
        "{}",
        got[2]
    );

    // An input that names a standard module runs whether or not the program imported it (two
    // programs alike but for the import are not told apart by it); one that calls `random` or
    // names a variable does not.
    let tests = [
        TestCase::probe("f(math.inf)"),
        TestCase::probe("f(random.random())"),
        TestCase::probe("f(n)"),
    ];
    for code in [
        "def f(x):\n    return x\n",
        "import math\ndef f(x):\n    return x\n",
    ] {
        let run = verifier().run_tests(code, &tests).await.unwrap();
        assert_eq!(run.results[0].status, TestStatus::Passed, "{code}");
        assert_eq!(run.results[0].got.as_deref(), Some("inf"));
        for r in &run.results[1..] {
            assert!(
                matches!(r.status, TestStatus::Skipped { .. }),
                "{code}: {r:?}"
            );
        }
    }

    // HumanEval's hidden tests: a solution that prints without a newline still passes.
    let task = CodeTask {
        prompt: String::new(),
        entry_point: "inc".into(),
        test: "def check(candidate):\n    assert candidate(1) == 2\n".into(),
    };
    let printing = "def inc(x):\n    print('x', end='')\n    return x + 1\n";
    let hidden = verifier().run_hidden(&task, printing).await.unwrap();
    assert!(hidden.passed, "{:?}", hidden.report);
    let wrong = "def inc(x):\n    print('x', end='')\n    return x\n";
    assert!(!verifier().run_hidden(&task, wrong).await.unwrap().passed);
}

/// A program whose classes need their module in sys.modules loads in both harnesses: a
/// dataclass with string annotations (all of them, under `from __future__ import annotations`,
/// which `assemble` moves to the top), and pickle of its own class.
#[tokio::test]
async fn a_dataclass_with_string_annotations_loads_in_both_harnesses() {
    let _guard = checked().await;
    let task = CodeTask {
        prompt: String::new(),
        entry_point: "inc".into(),
        test:
            "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(-1) == 0\n"
                .into(),
    };
    let code = "from __future__ import annotations\nimport pickle\nfrom dataclasses import dataclass\n@dataclass\nclass P:\n    x: int\ndef inc(x):\n    return pickle.loads(pickle.dumps(P(x))).x + 1\n";
    let hidden = verifier().run_hidden(&task, code).await.unwrap();
    assert!(hidden.passed, "{:?}", hidden.report);
    let tests = [TestCase::new("inc(1)", "2"), TestCase::new("inc(-1)", "0")];
    let public = verifier().run_tests(code, &tests).await.unwrap();
    assert_eq!(public.load_error, None, "{public:?}");
    assert!(public.all_passed(), "{public:?}");

    let wrong = code.replace("x + 1", "x + 2");
    assert!(!verifier().run_hidden(&task, &wrong).await.unwrap().passed);
    let public = verifier().run_tests(&wrong, &tests).await.unwrap();
    assert_eq!(public.load_error, None, "{public:?}");
    assert_eq!(public.passed(), 0, "{public:?}");
}

/// The per-test timeout counts CPU time, so a loaded machine (where a test gets a share of a
/// core) does not time out what an idle one passes; a test that waits is stopped by a
/// wall-clock backstop of three timeouts.
#[tokio::test]
async fn a_test_is_timed_by_its_cpu_time_with_a_wall_clock_backstop() {
    let _guard = checked().await;
    let code = "import time\ndef wait(s):\n    time.sleep(s)\n    return s\ndef spin():\n    while True:\n        pass\n";
    let tests = vec![
        // Past the 1 s timeout in wall-clock time, but using no CPU.
        TestCase::new("wait(1.5)", "1.5"),
        TestCase::new("spin()", "None"),
        TestCase::new("wait(30)", "30"),
    ];
    let run = verifier().run_tests(code, &tests).await.unwrap();
    let statuses: Vec<&TestStatus> = run.results.iter().map(|r| &r.status).collect();
    // The last one timed out by the harness's backstop, not by the run's limit (which would
    // leave it not run).
    assert_eq!(
        statuses,
        vec![
            &TestStatus::Passed,
            &TestStatus::Timeout,
            &TestStatus::Timeout
        ],
        "{:?}",
        run.report
    );
}

/// A call the harness's timers cannot interrupt (one long call into C: Python runs a signal
/// handler only between bytecodes) is ended by the kernel past its timeout, and the tests
/// after it still run.
#[tokio::test]
async fn a_call_into_c_that_runs_on_is_ended_and_the_rest_run() {
    let _guard = checked().await;
    let code = "def stuck(x):\n    return sum(range(10 ** 13))\ndef f(x):\n    return x\n";
    let started = Instant::now();
    let run = between(code, "stuck(2)").await;
    let statuses: Vec<&TestStatus> = run.results.iter().map(|r| &r.status).collect();
    assert_eq!(
        statuses,
        vec![
            &TestStatus::Passed,
            &TestStatus::Timeout,
            &TestStatus::Passed
        ],
        "{run:?}"
    );
    // 1 s of CPU, its grace and the kernel's margin (3 s), and a second start of the harness;
    // not the run's limit ((3 + 1) * 6 + 5 = 29 s).
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    assert!(run.report.wall >= Duration::from_secs(3), "both runs' wall");

    // The same at import: the load's failure, said once, not every test's timeout in turn.
    let at_import = "sum(range(10 ** 13))\ndef f(x):\n    return x\n";
    let started = Instant::now();
    let run = between(at_import, "stuck(2)").await;
    assert!(
        run.load_error
            .as_deref()
            .is_some_and(|e| e.contains("loading the program did not finish")),
        "{run:?}"
    );
    assert!(run.results.iter().all(|r| r.status == TestStatus::NotRun));
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "one run: {:?}",
        started.elapsed()
    );
}

/// A harness that dies inside a test any other way (`os._exit`, an abort, a segfault) has that
/// test recorded as the error it died of, and the tests after it still run, in a harness
/// started again after it.
#[tokio::test]
async fn a_test_that_ends_the_harness_fails_alone_and_the_rest_run() {
    let _guard = checked().await;
    let code = "import os, signal\ndef ends(how):\n    if how == 'exit':\n        os._exit(3)\n    if how == 'exit 0':\n        os._exit(0)\n    if how == 'abort':\n        os.abort()\n    os.kill(os.getpid(), signal.SIGSEGV)\ndef f(x):\n    return x\n";
    for (how, exception) in [
        ("exit", "exit status 3"),
        ("exit 0", "exit status 0"),
        ("abort", "killed by signal 6"),
        ("segfault", "killed by signal 11"),
    ] {
        let run = between(code, &format!("ends({how:?})")).await;
        let statuses: Vec<&TestStatus> = run.results.iter().map(|r| &r.status).collect();
        assert_eq!(
            statuses,
            vec![
                &TestStatus::Passed,
                &TestStatus::Error {
                    exception: exception.into()
                },
                &TestStatus::Passed
            ],
            "{how}: {run:?}"
        );
        assert_eq!(run.load_error, None, "{how}: {run:?}");
    }
}

/// A candidate that catches the timeout (a bare `except:`) neither runs past it nor passes
/// with what it returns after it, and the tests after it still run; loading the program is
/// timed too, and a hang there is the load's, not the first test's.
#[tokio::test]
async fn a_caught_timeout_still_ends_the_test_and_the_rest_run() {
    let _guard = checked().await;
    let code = "def swallow(x):\n    while True:\n        try:\n            sum(range(10000))\n        except:\n            pass\ndef slow(x):\n    try:\n        while True:\n            pass\n    except BaseException:\n        return x\ndef f(x):\n    return x\n";
    let tests = vec![
        TestCase::new("swallow(1)", "1"),
        TestCase::new("f(2)", "2"),
        TestCase::new("slow(3)", "3"),
        TestCase::new("f(4)", "4"),
    ];
    let started = std::time::Instant::now();
    let run = verifier().run_tests(code, &tests).await.unwrap();
    let statuses: Vec<&TestStatus> = run.results.iter().map(|r| &r.status).collect();
    assert_eq!(
        statuses,
        vec![
            &TestStatus::Timeout,
            &TestStatus::Passed,
            &TestStatus::Timeout,
            &TestStatus::Passed
        ],
        "{:?}",
        run
    );
    // Two timeouts of 1 s of CPU and their grace, not the run's limit (4 * 3 + 5 s).
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );

    // Caught and turned into another exception: a timeout still. And the restart point is
    // the harness's: a candidate setting it at import skips nothing.
    let converts = "import os\nos.environ['PONDER_FROM_TEST'] = '2'\ndef g(x):\n    try:\n        while True:\n            pass\n    except BaseException:\n        raise ValueError('converted')\ndef f(x):\n    return x\n";
    let run = between(converts, "g(2)").await;
    let statuses: Vec<&TestStatus> = run.results.iter().map(|r| &r.status).collect();
    assert_eq!(
        statuses,
        vec![
            &TestStatus::Passed,
            &TestStatus::Timeout,
            &TestStatus::Passed
        ],
        "{run:?}"
    );
    // Started again after a caught timeout, the program fails to load (it reads the variable
    // the harness starts itself with): the tests left fail with it; the first load stands.
    let reloads = "import os\nif os.environ.get('PONDER_FROM_TEST'):\n    raise RuntimeError('second load')\ndef swallow(x):\n    while True:\n        try:\n            sum(range(10000))\n        except:\n            pass\ndef f(x):\n    return x\n";
    let run = between(reloads, "swallow(2)").await;
    assert_eq!(run.load_error, None, "{run:?}");
    let statuses: Vec<&TestStatus> = run.results.iter().map(|r| &r.status).collect();
    assert_eq!(
        statuses,
        vec![
            &TestStatus::Passed,
            &TestStatus::Timeout,
            &TestStatus::Error {
                exception: "RuntimeError: second load".into()
            }
        ],
        "{run:?}"
    );
    // The same where the reload hangs in C (killed by the kernel, before it loaded again).
    let hangs = reloads.replace("raise RuntimeError('second load')", "sum(range(10 ** 13))");
    let run = between(&hangs, "swallow(2)").await;
    assert_eq!(run.load_error, None, "{run:?}");
    assert_eq!(
        (&run.results[0].status, &run.results[1].status),
        (&TestStatus::Passed, &TestStatus::Timeout),
        "{run:?}"
    );
    assert!(
        matches!(&run.results[2].status, TestStatus::Error { exception } if exception.contains("did not finish in time")),
        "{run:?}"
    );
    // Building a table at import may take longer than one test (up to three).
    let slow_import = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.5:\n    pass\ndef f(x):\n    return x\n";
    let run = verifier()
        .run_tests(slow_import, &tests[1..2])
        .await
        .unwrap();
    assert_eq!(run.results[0].status, TestStatus::Passed, "{run:?}");

    let hangs = "import time\ndef f(x):\n    return x\ntime.sleep(100)\n";
    let run = verifier().run_tests(hangs, &tests[1..2]).await.unwrap();
    assert!(
        run.load_error
            .as_deref()
            .is_some_and(|e| e.contains("did not finish in time")),
        "{run:?}"
    );
    assert_eq!(run.results[0].status, TestStatus::NotRun);
}

#[tokio::test]
async fn a_candidate_cannot_forge_its_hidden_test_grade() {
    let _guard = checked().await;
    let task = CodeTask {
        prompt: "def inc(x):\n    \"\"\"x + 1\"\"\"\n".into(),
        entry_point: "inc".into(),
        test:
            "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(-1) == 0\n"
                .into(),
    };
    // Each would pass if the candidate shared the process that runs `check` (as in OpenAI's
    // human-eval harness, and ponder's before it).
    let forgeries = [
        (
            "prints the pass mark and leaves before check runs",
            "def inc(x):\n    return x\nimport __main__, os\nprint(__main__.MARK, flush=True)\nos._exit(0)\n",
        ),
        (
            "replaces check wherever it finds it",
            "def inc(x):\n    return x\nimport sys\nfor m in list(sys.modules.values()):\n    ns = getattr(m, 'ns', None)\n    if isinstance(ns, dict):\n        ns['check'] = lambda candidate: None\n",
        ),
        (
            "answers with an object that equals anything",
            "class Any:\n    def __eq__(self, other):\n        return True\ndef inc(x):\n    return Any()\n",
        ),
        (
            "answers with an int that equals anything",
            "class I(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\ndef inc(x):\n    return I(x)\n",
        ),
        (
            "writes the mark to the judge's stdout through /proc",
            "import os, __main__\ntry:\n    fd = os.open('/proc/%d/fd/1' % os.getppid(), os.O_WRONLY)\n    os.write(fd, (__main__.MARK + '\\n').encode())\nexcept OSError:\n    pass\ndef inc(x):\n    return x\nos._exit(0)\n",
        ),
        (
            "runs the tests itself and replays what its answers were compared with",
            "import os, sys\nhere = os.path.dirname(os.path.abspath(sys.argv[0]))\nanswers = {}\nclass Probe:\n    def __init__(self, key):\n        self.key = key\n    def __eq__(self, other):\n        answers.setdefault(self.key, other)\n        return True\n    __hash__ = object.__hash__\nns = {'__name__': 'tests'}\nfor name in os.listdir(here):\n    if name not in ('main.py', 'solution.py'):\n        exec(open(os.path.join(here, name)).read(), ns)\nns['check'](lambda *a: Probe(repr(a)))\ndef inc(*a):\n    return answers[repr(a)]\n",
        ),
    ];
    for (what, code) in forgeries {
        let run = verifier().run_hidden(&task, code).await.unwrap();
        assert!(
            !run.passed,
            "a candidate that {what} passed: {:?}",
            run.report
        );
    }
    // The judge process is out of the candidate's reach through /proc (so the above could not
    // have written its stdout); the candidate says what it could open by what it returns.
    let probe = "import os\ndef inc(x):\n    for what, mode in (('fd/1', os.O_WRONLY), ('mem', os.O_RDONLY), ('environ', os.O_RDONLY)):\n        try:\n            os.close(os.open('/proc/%d/%s' % (os.getppid(), what), mode))\n            return 'opened ' + what\n        except OSError:\n            pass\n    return x + 1\n";
    let run = verifier().run_hidden(&task, probe).await.unwrap();
    assert!(run.passed, "{:?}", run.report);
    // Values cross whole: an int past Python's 4300-digit printing limit, numbers that are not
    // finite, sets of tuples, bytes, numbers of other types as plain ones.
    let values = CodeTask {
        prompt: "import math\n".into(),
        entry_point: "f".into(),
        test: "import fractions, math\ndef check(candidate):\n    assert candidate(3000) == math.factorial(3000)\n    got = candidate(-1)\n    assert got == (float('inf'), {(1, 'a')}, b'\\xff', [None, True], fractions.Fraction(1, 3), 5)\n    assert type(got[5]) is int and got[3][1] is True\n".into(),
    };
    let code = "import math, fractions\nclass I(int):\n    pass\ndef f(n):\n    if n < 0:\n        return (float('inf'), {(1, 'a')}, b'\\xff', [None, True], fractions.Fraction(1, 3), I(5))\n    return math.factorial(n)\n";
    let run = verifier().run_hidden(&values, code).await.unwrap();
    assert!(run.passed, "{:?}", run.report);
    // Iterators, ranges and dict views cross as what they are: `tuple(candidate(x))` works, and
    // a generator still does not equal a list, here as in the candidate's process.
    let iterating = CodeTask {
        test: "def check(candidate):\n    assert tuple(candidate(1)) == (1, 2)\n    assert candidate(2) != [2, 3]\n    assert candidate(0) == range(0, 3) and list(candidate(-1)) == ['k']\n".into(),
        ..task.clone()
    };
    let code = "def inc(x):\n    if x == 0:\n        return range(3)\n    if x < 0:\n        return {'k': 1}.keys()\n    return (y for y in (x, x + 1))\n";
    let run = verifier().run_hidden(&iterating, code).await.unwrap();
    assert!(run.passed, "{:?}", run.report);
    // What is not data (a re.Match) crosses as its truth value alone, as OpenAI's harness reads
    // `assert candidate(x)`; it equals nothing, and a test that reads more of it fails.
    let matching = CodeTask {
        test: "def check(candidate):\n    assert candidate(1)\n    assert not candidate(-1)\n    assert candidate(1) != True and candidate(1) != candidate(1)\n    assert [bool(m) for m in candidate(0)] == [True, False]\n".into(),
        ..task.clone()
    };
    let code = "import re\nclass Nothing:\n    def __bool__(self):\n        return False\ndef inc(x):\n    if x == 0:\n        return iter([re.match('a', 'a'), Nothing()])\n    return re.match('a', 'a') if x > 0 else Nothing()\n";
    let run = verifier().run_hidden(&matching, code).await.unwrap();
    assert!(run.passed, "{:?}", run.report);
    let reading = CodeTask {
        test: "def check(candidate):\n    assert candidate(1).group(0) == 'a'\n".into(),
        ..task.clone()
    };
    let run = verifier().run_hidden(&reading, code).await.unwrap();
    assert!(!run.passed, "{:?}", run.report);
    // Exceptions cross with their args, the candidate's own classes as subclasses of their
    // nearest built-in ancestor.
    let excepting = CodeTask {
        test: "def check(candidate):\n    try:\n        candidate(0)\n    except ValueError as e:\n        assert type(e).__name__.endswith('NegativeError')\n    try:\n        candidate(1)\n    except UnicodeDecodeError as e:\n        assert e.start == 0\n    try:\n        candidate(2)\n    except KeyError as e:\n        assert e.args == (5,)\n    assert candidate(3) == bytearray(b'ab')\n".into(),
        ..task.clone()
    };
    let code = "class NegativeError(ValueError):\n    pass\ndef inc(x):\n    if x == 0:\n        raise NegativeError('no')\n    if x == 1:\n        return b'\\xff'.decode()\n    if x == 2:\n        return {}[5]\n    return bytearray(b'ab')\n";
    let run = verifier().run_hidden(&excepting, code).await.unwrap();
    assert!(run.passed, "{:?}", run.report);
    // A StopIteration raised by the candidate does not end the tests' own iteration early.
    let mapping = CodeTask {
        test: "def check(candidate):\n    assert all(map(lambda x: candidate(x) == x + 1, [1, 2, 3]))\n".into(),
        ..task.clone()
    };
    let code = "def inc(x):\n    raise StopIteration\n";
    assert!(!verifier().run_hidden(&mapping, code).await.unwrap().passed);
    // The failing line reported is the tests', whatever the candidate writes where it runs.
    let code = "open('tests.py', 'w').write('def check(candidate):\\n    assert \"the tests are wrong\"\\n')\ndef inc(x):\n    return x\n";
    let run = verifier().run_hidden(&task, code).await.unwrap();
    assert!(
        matches!(&run.report.outcome, RunOutcome::Failed { assertion, .. } if assertion == "assert candidate(1) == 2"),
        "{:?}",
        run.report
    );
    // A candidate that kills itself ends the run as killed.
    let code = "import os, signal\ndef inc(x):\n    os.kill(os.getpid(), signal.SIGKILL)\n";
    let run = verifier().run_hidden(&task, code).await.unwrap();
    assert!(
        matches!(&run.report.outcome, RunOutcome::Error { exception, .. } if exception.contains("signal 9")),
        "{:?}",
        run.report
    );
    // What the candidate raises reaches the tests as itself (a test may expect it), and the
    // run's outcome names it; a candidate killed by a limit ends the run the same way.
    let raising = CodeTask {
        test: "def check(candidate):\n    try:\n        candidate(0)\n    except ValueError as e:\n        assert str(e) == 'zero'\n    else:\n        assert False\n    assert candidate(1) == {'a': (1, 2.5, None)}\n    candidate(2)\n".into(),
        ..task.clone()
    };
    let code = "def inc(x):\n    if x == 0:\n        raise ValueError('zero')\n    if x == 1:\n        return {'a': (1, 2.5, None)}\n    return [1] * (1 << 40)\n";
    let run = verifier().run_hidden(&raising, code).await.unwrap();
    assert!(!run.passed);
    assert_eq!(
        run.report.outcome,
        RunOutcome::MemoryLimit,
        "{:?}",
        run.report
    );
    let spinning = "def inc(x):\n    while True:\n        pass\n";
    let run = verifier().run_hidden(&task, spinning).await.unwrap();
    assert!(!run.passed);
    assert!(
        matches!(run.report.outcome, RunOutcome::Timeout),
        "{:?}",
        run.report
    );
}

#[derive(serde::Deserialize)]
struct Row {
    task_id: String,
    prompt: String,
    entry_point: String,
    canonical_solution: String,
    test: String,
}

fn solution(completion: &str) -> Solution {
    let candidate = Candidate {
        answer: None,
        text: completion.to_string(),
        score: None,
        tokens: 0,
    };
    Solution::single("test", candidate, StopReason::Completed)
}

/// While a run is in flight the sandbox user's processes may be held until it ends at the
/// latest (its own wall limit, a test harness's longer than the sandbox's, past its start): a
/// grader told `Busy` tries that long. With none in flight, as long as a run could last.
#[tokio::test]
async fn busy_until_covers_the_longest_run_in_flight() {
    let _guard = checked().await;
    let long = Duration::from_secs(120);
    let started = Instant::now();
    let program = Program::new("import time\ntime.sleep(1)\n").with_wall(long);
    let run = SANDBOX.run(&program);
    tokio::pin!(run);
    let mut seen = started;
    let report = loop {
        tokio::select! {
            report = &mut run => break report.unwrap(),
            () = tokio::time::sleep(Duration::from_millis(50)) => {
                seen = seen.max(SANDBOX.busy_until());
            }
        }
    };
    assert_eq!(report.outcome, RunOutcome::Passed, "{}", report.stderr);
    assert!(seen >= started + long, "{:?}", seen - started);
    let idle = SANDBOX.busy_until();
    let now = Instant::now();
    assert!(idle >= now + WALL && idle < now + long, "{:?}", idle - now);
}

/// A judge that cannot start the candidate's process (the process limit, shared by every run of
/// the sandbox user, reached) is the sandbox's failure, not a failed grade.
#[tokio::test]
async fn hidden_tests_that_cannot_start_the_candidate_are_an_error_not_a_fail() {
    let _guard = checked().await;
    let one_process = Sandbox::new()
        .allow_unisolated(!isolation_check::namespaces_here())
        .with_limits(SANDBOX.limits().with_processes(1));
    let task = CodeTask {
        prompt: String::new(),
        entry_point: "inc".into(),
        test: "def check(candidate):\n    assert candidate(1) == 2\n".into(),
    };
    let code = "def inc(x):\n    return x + 1\n";
    let err = CodeVerifier::new(one_process.clone())
        .run_hidden(&task, code)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SandboxError::Busy { reason } if reason.contains("could not start the candidate")),
        "{err:?}"
    );
    // The grader tries again as other runs end (none is in flight: as long as a run of its
    // sandbox could last), then says it could not.
    let problem = Problem {
        code: Some(task.clone()),
        ..Problem::new("p", "")
    };
    let busy_until = one_process.busy_until();
    let err = HumanEvalGrader::new(one_process)
        .grade(&problem, &solution(code))
        .await
        .unwrap_err();
    assert!(Instant::now() >= busy_until, "gave up early");
    assert!(
        Instant::now() < busy_until + Duration::from_secs(15),
        "tried on too long"
    );
    // The sandbox's own error is the source, to match on.
    let busy = std::error::Error::source(&err)
        .and_then(|source| source.downcast_ref::<SandboxError>())
        .is_some_and(|source| matches!(source, SandboxError::Busy { .. }));
    assert!(busy && err.is_per_call(), "{err:?}");
    let err = err.to_string();
    assert!(err.contains(" tries)") && err.contains("busy"), "{err}");
    assert!(verifier().run_hidden(&task, code).await.unwrap().passed);
}

/// HumanEval's rows 0-81, from the copy in `tests/fixtures` (see its README).
fn humaneval() -> Vec<Row> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/humaneval.jsonl");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every canonical solution passes with the candidate out of the judge's process: the tests'
/// arguments and the solutions' values all cross as plain data, and the helpers tests call
/// (`poly`, `encode_cyclic`) come from the prompt.
#[tokio::test]
async fn every_humaneval_canonical_solution_passes_its_hidden_tests() {
    let rows = humaneval();
    let _guard = checked().await;
    let failed: Vec<String> = futures::stream::iter(rows.iter().map(|row| async move {
        let task = CodeTask {
            prompt: row.prompt.clone(),
            entry_point: row.entry_point.clone(),
            test: row.test.clone(),
        };
        let code = format!("{}{}", row.prompt, row.canonical_solution);
        let run = verifier().run_hidden(&task, &code).await.unwrap();
        (!run.passed).then(|| format!("{}: {:?}", row.task_id, run.report.outcome))
    }))
    .buffer_unordered(4)
    .filter_map(|failed| async move { failed })
    .collect()
    .await;
    assert_eq!(rows.len(), 82);
    assert!(failed.is_empty(), "{failed:#?}");
}

#[tokio::test]
async fn humaneval_canonical_solutions_pass_and_wrong_ones_fail() {
    let mut rows = humaneval();
    let _guard = checked().await;
    let grader = HumanEvalGrader::new(SANDBOX.clone());
    rows.truncate(10);
    assert_eq!(rows.len(), 10);
    let counts = futures::stream::iter(rows.iter().map(|row| {
        let grader = &grader;
        async move {
            let task = CodeTask {
                prompt: row.prompt.clone(),
                entry_point: row.entry_point.clone(),
                test: row.test.clone(),
            };
            let problem = Problem {
                id: row.task_id.clone(),
                question: row.prompt.clone(),
                reference: None,
                code: Some(task.clone()),
            };
            let body = solution(&row.canonical_solution);
            assert_eq!(
                grader.grade(&problem, &body).await.unwrap(),
                Some(true),
                "{}",
                row.task_id
            );
            let fenced = format!(
                "Here you go:\n```python\n{}{}```\n",
                row.prompt, row.canonical_solution
            );
            assert_eq!(
                grader.grade(&problem, &solution(&fenced)).await.unwrap(),
                Some(true),
                "{}",
                row.task_id
            );
            let wrong = solution("    return None\n");
            assert_eq!(
                grader.grade(&problem, &wrong).await.unwrap(),
                Some(false),
                "{}",
                row.task_id
            );

            let tests = docstring_tests(&row.prompt, &row.entry_point);
            assert!(!tests.is_empty(), "{}: no public tests", row.task_id);
            let program = format!("{}{}", row.prompt, row.canonical_solution);
            let run = verifier().run_tests(&program, &tests).await.unwrap();
            assert!(run.all_passed(), "{}: {:?}", row.task_id, run.results);
            assert_eq!(run.passed(), tests.len(), "{}", row.task_id);
            let wrong = format!("{}    return None\n", row.prompt);
            let run = verifier().run_tests(&wrong, &tests).await.unwrap();
            assert!(
                !run.all_passed(),
                "{}: return None passed its public tests",
                row.task_id
            );
            tests.len()
        }
    }))
    .buffer_unordered(2)
    .collect::<Vec<usize>>()
    .await;
    eprintln!("public tests per problem: {counts:?}");
    // Exiting with status 0 before `check` runs is not a pass.
    let row = &rows[0];
    let problem = Problem {
        id: row.task_id.clone(),
        question: row.prompt.clone(),
        reference: None,
        code: Some(CodeTask {
            prompt: row.prompt.clone(),
            entry_point: row.entry_point.clone(),
            test: row.test.clone(),
        }),
    };
    let early_exit = solution("    return True\n\nimport os\nos._exit(0)\n");
    assert_eq!(
        grader.grade(&problem, &early_exit).await.unwrap(),
        Some(false)
    );
    let math = Problem::new("m", "2+2?").with_reference("4");
    assert_eq!(grader.grade(&math, &solution("4")).await.unwrap(), None);
}

/// No more runs go at once than the machine has cores (a CPU-bound program gets a core, and
/// its wall-clock limit is not spent waiting for one): the others wait their turn.
#[tokio::test]
async fn runs_beyond_the_cores_wait_their_turn() {
    let _guard = checked().await;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    // A process limit that several runs at once stay within, whatever the cores.
    let sandbox = Sandbox::new()
        .allow_unisolated(!isolation_check::namespaces_here())
        .with_limits(
            Limits::default()
                .with_wall(Duration::from_secs(30))
                .with_processes(u32::try_from(4 * cores + 8).unwrap()),
        );
    let program = Program::new(
        "import json, time\na = time.time()\ntime.sleep(0.3)\nprint(json.dumps([a, time.time()]))\n",
    );
    let runs = futures::future::join_all((0..2 * cores + 1).map(|_| sandbox.run(&program))).await;
    let mut edges = Vec::new();
    for run in runs {
        let run = run.unwrap();
        assert_eq!(run.outcome, RunOutcome::Passed, "{run:?}");
        let [start, end]: [f64; 2] = serde_json::from_str(run.stdout.trim()).unwrap();
        edges.push((start, 1));
        edges.push((end, -1));
    }
    // Ends before starts at the same instant.
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    assert!(
        most <= i32::try_from(cores).unwrap(),
        "{most} programs ran at once on {cores} cores"
    );
}
