//! [`Limits`]: what one sandboxed run may use.

use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Resource limits for one run. Every field has a default and none may be zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Wall-clock time for the whole run, start-up included. Default 10000.
    pub wall_ms: NonZeroU64,
    /// CPU time per process (`RLIMIT_CPU`, rounded up to whole seconds). Default 10000.
    pub cpu_ms: NonZeroU64,
    /// Address space per process (`RLIMIT_AS`). Default 1 GiB.
    pub memory_bytes: NonZeroU64,
    /// Processes (and threads) of the sandbox user at once (`RLIMIT_NPROC`). Default 64.
    pub processes: NonZeroU32,
    /// Largest file the program may write (`RLIMIT_FSIZE`). Default 16 MiB.
    pub file_bytes: NonZeroU64,
    /// Size of the scratch directory where a mount namespace is available. Default 64 MiB.
    pub disk_bytes: NonZeroU64,
    /// Open file descriptors per process (`RLIMIT_NOFILE`). Default 256.
    pub open_files: NonZeroU32,
    /// Bytes of stdout, and separately of stderr, kept before the run is killed. Default 1 MiB.
    pub output_bytes: NonZeroUsize,
}

const MIB: u64 = 1 << 20;

impl Default for Limits {
    fn default() -> Self {
        Self {
            wall_ms: nz64(10_000),
            cpu_ms: nz64(10_000),
            memory_bytes: nz64(1024 * MIB),
            processes: nz32(64),
            file_bytes: nz64(16 * MIB),
            disk_bytes: nz64(64 * MIB),
            open_files: nz32(256),
            output_bytes: NonZeroUsize::new(1 << 20).unwrap_or(NonZeroUsize::MIN),
        }
    }
}

fn nz64(value: u64) -> NonZeroU64 {
    NonZeroU64::new(value).unwrap_or(NonZeroU64::MIN)
}

fn nz32(value: u32) -> NonZeroU32 {
    NonZeroU32::new(value).unwrap_or(NonZeroU32::MIN)
}

impl Limits {
    /// Sets the wall-clock limit (at least 1 ms).
    pub fn with_wall(mut self, wall: Duration) -> Self {
        self.wall_ms = nz64(u64::try_from(wall.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Sets the CPU-time limit (at least 1 ms; enforced in whole seconds).
    pub fn with_cpu(mut self, cpu: Duration) -> Self {
        self.cpu_ms = nz64(u64::try_from(cpu.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Sets the address-space limit in bytes (at least 1).
    pub fn with_memory_bytes(mut self, bytes: u64) -> Self {
        self.memory_bytes = nz64(bytes);
        self
    }

    /// Sets the process limit (at least 1).
    pub fn with_processes(mut self, processes: u32) -> Self {
        self.processes = nz32(processes);
        self
    }

    /// Sets the file-size limit in bytes (at least 1).
    pub fn with_file_bytes(mut self, bytes: u64) -> Self {
        self.file_bytes = nz64(bytes);
        self
    }

    /// Sets the output cap per stream in bytes (at least 1).
    pub fn with_output_bytes(mut self, bytes: usize) -> Self {
        self.output_bytes = NonZeroUsize::new(bytes).unwrap_or(NonZeroUsize::MIN);
        self
    }

    /// The wall-clock limit.
    pub fn wall(&self) -> Duration {
        Duration::from_millis(self.wall_ms.get())
    }

    pub(crate) fn cpu_seconds(&self) -> u64 {
        self.cpu_ms.get().div_ceil(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_in_and_bad_keys_or_zeros_are_rejected() {
        let limits: Limits = serde_json::from_str(r#"{"wall_ms": 2500}"#).unwrap();
        assert_eq!(limits.wall(), Duration::from_millis(2500));
        assert_eq!(limits.processes, Limits::default().processes);
        assert_eq!(Limits::default().output_bytes.get(), 1 << 20);
        let err = serde_json::from_str::<Limits>(r#"{"wall_sec": 2}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `wall_sec`"),
            "{err}"
        );
        let err = serde_json::from_str::<Limits>(r#"{"processes": 0}"#).unwrap_err();
        assert!(err.to_string().contains("nonzero"), "{err}");
        assert_eq!(
            Limits::default()
                .with_cpu(Duration::from_millis(1500))
                .cpu_seconds(),
            2
        );
        assert_eq!(Limits::default().with_processes(0).processes.get(), 1);
    }
}
