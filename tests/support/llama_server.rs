//! A real llama.cpp `llama-server` for the HTTP backend's tests and benchmark: built once by
//! `scripts/build_llama_server.sh` (cached outside the clone), started on a free loopback port
//! with a GGUF, killed when the guard drops.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

// The includer's `repo` (tests/support/repo.rs), loaded once per crate.
use crate::repo;

/// The `llama-server` binary: `$PONDER_LLAMA_SERVER`, else built (once) by the script.
pub fn binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("PONDER_LLAMA_SERVER") {
                return PathBuf::from(path);
            }
            let script = repo::repo("scripts/build_llama_server.sh");
            let out = Command::new("bash")
                .arg(&script)
                .stderr(Stdio::inherit())
                .output()
                .expect("running scripts/build_llama_server.sh");
            assert!(
                out.status.success(),
                "scripts/build_llama_server.sh failed ({}); set PONDER_LLAMA_SERVER to a llama-server binary to skip the build",
                out.status
            );
            let path = String::from_utf8_lossy(&out.stdout);
            PathBuf::from(path.lines().last().unwrap_or_default().trim())
        })
        .clone()
}

/// A running server; killed on drop.
#[derive(Debug)]
pub struct LlamaServer {
    child: Child,
    pub port: u16,
    model: PathBuf,
    slots: usize,
    /// Further command-line arguments, kept for a restart.
    extra: Vec<String>,
}

impl LlamaServer {
    /// Starts `llama-server` on `model` with `slots` parallel slots of 2048 tokens each, on a
    /// free port, and waits until it answers `/health`.
    pub fn start(model: &Path, slots: usize) -> Self {
        Self::start_with(model, slots, &[])
    }

    /// The same with further command-line arguments (`--jinja`, `--chat-template-file F`).
    pub fn start_with(model: &Path, slots: usize, extra: &[&str]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::launch(
            model,
            slots,
            port,
            extra.iter().map(|a| a.to_string()).collect(),
        )
    }

    /// The same on a given port (to bring a killed server back where clients expect it).
    pub fn start_on(model: &Path, slots: usize, port: u16) -> Self {
        Self::launch(model, slots, port, Vec::new())
    }

    fn launch(model: &Path, slots: usize, port: u16, extra: Vec<String>) -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let child = Command::new(binary())
            .args(["--model"])
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--parallel", &slots.to_string()])
            .args(["--ctx-size", &(2048 * slots).to_string()])
            .args(["--threads", &threads.to_string()])
            .args(["--no-webui", "--log-disable"])
            .args(&extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting llama-server");
        let mut server = Self {
            child,
            port,
            model: model.to_path_buf(),
            slots,
            extra,
        };
        server.wait_healthy();
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn wait_healthy(&mut self) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("llama-server exited at start-up: {status}");
            }
            if self.healthy() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "llama-server did not become healthy in 120 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Whether `/health` answers 200 (a raw HTTP/1.1 request: no client needed).
    pub fn healthy(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!(
            "GET /health HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        );
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        reply.starts_with("HTTP/1.1 200")
    }

    /// Kills the server now (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the same server again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        *self = Self::launch(
            &self.model.clone(),
            self.slots,
            self.port,
            self.extra.clone(),
        );
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        self.kill();
    }
}
