//! The pieces of one run: its directory, the guard that kills its process group, and the
//! capped capture of its output.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncReadExt};

use super::{Program, SandboxError};

/// The run directory: `root` (root-owned, traversable), `root/src` (the program, read-only),
/// `root/work` (the program's own), `root/status.json` (written by the bootstrap).
pub(super) struct RunDir {
    dir: tempfile::TempDir,
    pub(super) root: PathBuf,
    pub(super) work: PathBuf,
    pub(super) main: PathBuf,
    pub(super) status: PathBuf,
}

impl RunDir {
    pub(super) fn create(program: &Program, ids: Option<(u32, u32)>) -> Result<Self, SandboxError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |action| move |source| SandboxError::Io { action, source };
        let dir = tempfile::Builder::new()
            .prefix("ponder-sandbox-")
            .tempdir()
            .map_err(io("creating the run directory"))?;
        let root = dir
            .path()
            .canonicalize()
            .map_err(io("resolving the run directory"))?;
        let mode = |path: &Path, mode| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(io("setting permissions"))
        };
        mode(&root, if ids.is_some() { 0o711 } else { 0o700 })?;
        let (src, work) = (root.join("src"), root.join("work"));
        for path in [&src, &work] {
            std::fs::create_dir(path).map_err(io("creating the run directory"))?;
        }
        mode(&src, 0o755)?;
        mode(&work, 0o700)?;
        if let Some((uid, gid)) = ids {
            std::os::unix::fs::chown(&work, Some(uid), Some(gid))
                .map_err(io("giving the work directory to the sandbox user"))?;
        }
        let main = src.join("main.py");
        let files = std::iter::once(("main.py", program.main.as_str()))
            .chain(program.files.iter().map(|(n, c)| (n.as_str(), c.as_str())));
        for (name, contents) in files {
            let path = src.join(name);
            std::fs::write(&path, contents).map_err(io("writing the program"))?;
            mode(&path, 0o644)?;
        }
        Ok(Self {
            dir,
            status: root.join("status.json"),
            root,
            work,
            main,
        })
    }

    pub(super) fn remove(self) {
        if let Err(error) = self.dir.close() {
            tracing::warn!(%error, "could not remove a sandbox run directory");
        }
    }
}

/// Kills the run's process group with `SIGKILL`, now or when dropped, until disarmed (once the
/// leader is reaped its id may be reused, so the guard stops there).
pub(super) struct GroupKill {
    pgid: std::sync::Mutex<Option<rustix::process::Pid>>,
}

impl GroupKill {
    pub(super) fn new(pid: Option<u32>) -> Self {
        let pgid = pid
            .and_then(|p| i32::try_from(p).ok())
            .and_then(rustix::process::Pid::from_raw);
        Self {
            pgid: std::sync::Mutex::new(pgid),
        }
    }

    pub(super) fn kill(&self) {
        if let Ok(guard) = self.pgid.lock() {
            if let Some(pgid) = *guard {
                // ESRCH (the group is already gone) is the expected case after a clean exit.
                let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
            }
        }
    }

    pub(super) fn disarm(&self) {
        if let Ok(mut guard) = self.pgid.lock() {
            *guard = None;
        }
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Default)]
pub(super) struct Capture {
    pub(super) bytes: Vec<u8>,
    pub(super) overflow: bool,
}

/// Reads `reader` to its end, keeping at most `cap` bytes; past that, kills the group and stops.
pub(super) async fn read_capped(
    mut reader: impl AsyncRead + Unpin,
    cap: usize,
    capture: &mut Capture,
    group: &GroupKill,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let room = cap.saturating_sub(capture.bytes.len());
                capture.bytes.extend_from_slice(&buffer[..n.min(room)]);
                if n > room {
                    capture.overflow = true;
                    group.kill();
                    return;
                }
            }
        }
    }
}
