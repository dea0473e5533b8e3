//! End-to-end tests of the `ponder` binary on the real SmolLM2-135M.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/repo.rs"]
mod repo;
use repo::repo;

/// The binary under test: cargo's, or `PONDER_TEST_BIN` where the tests run away from the build
/// (scripts/gpu/run.sh carries both to the GPU machine).
fn ponder() -> Command {
    Command::new(std::env::var_os("PONDER_TEST_BIN").unwrap_or(env!("CARGO_BIN_EXE_ponder").into()))
}

/// The device the tests run ponder on: `PONDER_TEST_DEVICE`, default the CPU.
fn device() -> String {
    std::env::var("PONDER_TEST_DEVICE").unwrap_or("cpu".into())
}

/// The direct strategy on SmolLM2, on [`device`].
fn write_config(dir: &Path) -> PathBuf {
    let config = dir.join("direct.toml");
    let device = device();
    std::fs::write(
        &config,
        format!("[model]\nsource = \"smollm2-135m\"\ndevice = \"{device}\"\n\n[strategy]\nkind = \"direct\"\nstyle = \"step_by_step\"\nmax_tokens = 48\n"),
    )
    .unwrap();
    config
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn solve_prints_json_with_answer_and_usage() {
    let out = ponder()
        .args(["solve", "What is 3 + 4?", "--json", "--config"])
        .arg(repo("examples/strategies/direct.yaml"))
        .args(["--device", &device()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["strategy"], "direct");
    assert!(json.get("answer").is_some());
    assert!(json["stop_reason"].is_string());
    for key in ["prompt_tokens", "completion_tokens", "calls", "elapsed_ms"] {
        assert!(json["usage"][key].is_u64(), "usage.{key} in {json}");
    }
    assert_eq!(json["usage"]["calls"], 1);
}

#[test]
fn bad_config_is_reported_with_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[strategy]\nkind = \"direct\"\nmax_tokns = 5\n").unwrap();
    let out = ponder()
        .args(["solve", "hi", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("max_tokns"),
        "{stderr}"
    );
}

#[test]
fn run_writes_graded_lines_and_resumes_without_repeating() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let out = dir.path().join("results.jsonl");
    let run = || {
        ponder()
            .args(["run", "--limit", "5", "--concurrency", "2", "--config"])
            .arg(&config)
            .arg("--problems")
            .arg(repo("examples/problems/mawps-singleop-20.jsonl"))
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let written = lines(&out);
    assert_eq!(written.len(), 5);
    for line in &written {
        assert!(line["correct"].is_boolean(), "ungraded: {line}");
        assert!(line["reference"].is_string());
        assert!(line["usage"]["completion_tokens"].as_u64().unwrap() > 0);
        assert!(line["stop_reason"].is_string());
    }
    let second = run();
    assert!(second.status.success());
    assert_eq!(lines(&out).len(), 5, "a second run must add nothing");
    let table = String::from_utf8_lossy(&second.stdout);
    assert!(table.contains("resumed"), "{table}");

    // Resuming into the same file with another configuration would mix two experiments.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("max_tokens = 48", "max_tokens = 64")).unwrap();
    let changed = run();
    assert!(!changed.status.success());
    let stderr = String::from_utf8_lossy(&changed.stderr);
    assert!(
        stderr.contains("results.jsonl") && stderr.contains("strategy.max_tokens: 48 -> 64"),
        "{stderr}"
    );
    assert_eq!(lines(&out).len(), 5);
}

#[test]
fn problems_the_run_budget_cuts_short_are_redone_by_a_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let out = dir.path().join("results.jsonl");
    let run = |extra: &[&str]| {
        ponder()
            .args(["run", "--limit", "4", "--concurrency", "1", "--config"])
            .arg(&config)
            .arg("--problems")
            .arg(repo("examples/problems/mawps-singleop-20.jsonl"))
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    // Four problems of a prompt and up to 48 tokens each do not fit in 250 tokens.
    let first = run(&["--max-run-tokens", "250"]);
    assert!(first.status.success());
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(stderr.contains("cut short"), "{stderr}");
    let written = lines(&out);
    assert!(written.len() < 4, "{written:?}");
    for line in &written {
        let reason = line["stop_reason"].as_str().unwrap();
        assert!(
            !reason.ends_with("budget"),
            "a cut answer was recorded: {line}"
        );
    }

    let second = run(&[]);
    assert!(second.status.success());
    let after = lines(&out);
    let mut ids: Vec<&str> = after.iter().map(|l| l["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!((after.len(), ids.len()), (4, 4), "each problem once");
}

#[test]
fn a_killed_run_resumes_without_losing_or_repeating_work() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let out = dir.path().join("results.jsonl");
    let args = |cmd: &mut Command| {
        cmd.args(["run", "--limit", "6", "--concurrency", "1", "--config"])
            .arg(&config)
            .arg("--problems")
            .arg(repo("examples/problems/mawps-singleop-20.jsonl"))
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    };
    let mut cmd = ponder();
    args(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    while lines(&out).len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = lines(&out).len();
    assert!((2..6).contains(&before), "killed after {before} lines");
    // Simulate a kill in the middle of a write as well: a torn last line.
    let mut text = std::fs::read_to_string(&out).unwrap();
    text.push_str("{\"id\": \"singleop-9\", \"strat");
    std::fs::write(&out, text).unwrap();

    let mut cmd = ponder();
    args(&mut cmd);
    assert!(cmd.status().unwrap().success());
    let after = lines(&out);
    assert_eq!(after.len(), 6);
    let mut ids: Vec<&str> = after.iter().map(|l| l["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 6, "no problem written twice");
}

#[test]
fn models_lists_the_builtins() {
    let out = ponder().arg("models").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("smollm2-135m") && text.contains("qwen2.5-coder-0.5b"),
        "{text}"
    );
    let out = ponder()
        .args(["models", "fetch", "gpt-9"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a built-in model"));
}
