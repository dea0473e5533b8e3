//! End-to-end tests of the `ponder` binary on the real SmolLM2-135M.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
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
    write_strategy(
        dir,
        "direct.toml",
        "kind = \"direct\"\nstyle = \"step_by_step\"\nmax_tokens = 48\n",
    )
}

/// `dir/name`: SmolLM2 on [`device`] under the `[strategy]` table `strategy`.
fn write_strategy(dir: &Path, name: &str, strategy: &str) -> PathBuf {
    let config = dir.join(name);
    let device = device();
    std::fs::write(
        &config,
        format!(
            "[model]\nsource = \"smollm2-135m\"\ndevice = \"{device}\"\n\n[strategy]\n{strategy}"
        ),
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

/// `ponder run` of `config` on the first four singleop problems into `out`, with `extra` flags.
fn run_singleop(config: &Path, out: &Path, concurrency: usize, extra: &[&str]) -> Output {
    ponder()
        .args([
            "run",
            "--limit",
            "4",
            "--concurrency",
            &concurrency.to_string(),
        ])
        .arg("--config")
        .arg(config)
        .arg("--problems")
        .arg(repo("examples/problems/mawps-singleop-20.jsonl"))
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn solve_prints_json_with_answer_and_usage() {
    let traces = tempfile::tempdir().unwrap();
    let out = ponder()
        .args([
            "solve",
            "What is 3 + 4?",
            "--json",
            "--events",
            "-",
            "--config",
        ])
        .arg(repo("examples/strategies/direct.yaml"))
        .args(["--device", &device()])
        .arg("--trace-dir")
        .arg(traces.path())
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
    // `--events -` told the call as it happened, on stderr, stdout left one object.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tokens = json["usage"]["prompt_tokens"].as_u64().unwrap()
        + json["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("question: call: ") && l.ends_with(&format!("; {tokens} spent"))),
        "{stderr}"
    ); // A --trace-dir no strategy of the config writes to is said to stay empty.
    assert!(
        stderr.contains("only beam_search and dvts write search trees"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(traces.path()).unwrap().count(), 0);
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
    let events = dir.path().join("events.jsonl");
    let run = || {
        ponder()
            .args(["run", "--limit", "5", "--concurrency", "2", "--config"])
            .arg(&config)
            .arg("--problems")
            .arg(repo("examples/problems/mawps-singleop-20.jsonl"))
            .arg("--out")
            .arg(&out)
            .arg("--events")
            .arg(&events)
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
        // `direct` has one candidate, its answer: graded as the line is.
        let right = u64::from(line["correct"] == true);
        assert_eq!(
            line["candidates"],
            serde_json::json!({"graded": 1, "right": right})
        );
        assert!(line["reference"].is_string());
        assert!(line["usage"]["completion_tokens"].as_u64().unwrap() > 0);
        assert!(line["stop_reason"].is_string());
    }
    // The events log tells each problem's story: started, its calls (adding up to what its
    // line records), finished with the line's answer and grade.
    let logged = lines(&events);
    for line in &written {
        let mine: Vec<&Value> = logged
            .iter()
            .filter(|e| e["problem"] == line["id"])
            .collect();
        assert_eq!(
            mine.first().map(|e| &e["event"]),
            Some(&Value::from("started"))
        );
        // Each names the attempt its line does (a resumed run's tell killed attempts apart).
        for event in &mine {
            assert_eq!(event["attempt"], line["attempt"], "{event}");
        }
        let last = mine.last().unwrap();
        assert_eq!(last["event"], "finished", "{last}");
        assert_eq!(
            (&last["answer"], &last["correct"], &last["stop_reason"]),
            (&line["answer"], &line["correct"], &line["stop_reason"])
        );
        let called: u64 = mine
            .iter()
            .filter(|e| e["event"] == "call")
            .map(|e| {
                e["prompt_tokens"].as_u64().unwrap() + e["completion_tokens"].as_u64().unwrap()
            })
            .sum();
        let recorded = line["usage"]["prompt_tokens"].as_u64().unwrap()
            + line["usage"]["completion_tokens"].as_u64().unwrap();
        assert_eq!(called, recorded, "{}", line["id"]);
        assert_eq!(last["tokens"].as_u64(), Some(recorded));
        // The spend ledger holds the same calls, under the attempt the line names.
        let ledgered: u64 = lines(&dir.path().join("results.jsonl.spend.jsonl"))
            .iter()
            .filter(|e| e["attempt"] == line["attempt"])
            .map(|e| {
                assert_eq!(e["id"], line["id"]);
                e["usage"]["prompt_tokens"].as_u64().unwrap()
                    + e["usage"]["completion_tokens"].as_u64().unwrap()
            })
            .sum();
        assert!(line["attempt"].is_u64(), "{line}");
        assert_eq!(ledgered, recorded, "{}", line["id"]);
    }
    // The report counts what the lines say.
    let correct = written.iter().filter(|l| l["correct"] == true).count();
    let report = ponder()
        .arg("report")
        .arg(&out)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let json: Value = serde_json::from_slice(&report.stdout).unwrap();
    let summary = &json["runs"][0];
    assert_eq!(summary["label"], "results");
    assert_eq!(summary["model"], "smollm2-135m");
    assert_eq!(
        (summary["problems"].as_u64(), summary["graded"].as_u64()),
        (Some(5), Some(5))
    );
    assert_eq!(summary["correct"].as_u64(), Some(correct as u64));
    let tokens: u64 = written
        .iter()
        .map(|l| {
            l["usage"]["prompt_tokens"].as_u64().unwrap()
                + l["usage"]["completion_tokens"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(summary["tokens"].as_u64(), Some(tokens));

    let second = run();
    assert!(second.status.success());
    assert_eq!(lines(&out).len(), 5, "a second run must add nothing");
    assert_eq!(
        lines(&events),
        logged,
        "nor log anything: it solves nothing"
    );
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
    let run = |extra: &[&str]| run_singleop(&config, &out, 1, extra);
    // Four problems of a prompt and up to 48 tokens each do not fit in 250 tokens.
    let first = run(&["--max-run-tokens", "250"]);
    assert!(first.status.success());
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(stderr.contains("cut short"), "{stderr}");
    let answered = |all: &[serde_json::Value]| -> Vec<serde_json::Value> {
        all.iter()
            .filter(|l| l.get("cut_short").is_none())
            .cloned()
            .collect()
    };
    let written = lines(&out);
    assert!(answered(&written).len() < 4, "{written:?}");
    for line in &written {
        if line.get("cut_short").is_some() {
            // What a cut attempt spent is recorded, its answer is not.
            assert_eq!(line["cut_short"], true, "{line}");
            assert!(
                line["answer"].is_null() && line["error"].is_string(),
                "{line}"
            );
            continue;
        }
        let reason = line["stop_reason"].as_str().unwrap();
        assert!(
            !reason.ends_with("budget"),
            "a cut answer was recorded: {line}"
        );
    }
    let tokens = |all: &[serde_json::Value]| -> u64 {
        all.iter()
            .map(|l| {
                l["usage"]["prompt_tokens"].as_u64().unwrap()
                    + l["usage"]["completion_tokens"].as_u64().unwrap()
            })
            .sum()
    };
    // The budget is the whole job's: every token spent is recorded, cut attempts included.
    assert!(tokens(&written) <= 250, "{written:?}");

    // A rerun with the same budget counts all of it: whatever it still tries, the job's
    // spending stays within the 250.
    let again = run(&["--max-run-tokens", "250"]);
    assert!(again.status.success());
    let recorded = tokens(&lines(&out));
    assert!(
        recorded <= 250,
        "{recorded} tokens recorded under a 250-token run budget"
    );

    let second = run(&[]);
    assert!(second.status.success());
    let after = answered(&lines(&out));
    let mut ids: Vec<&str> = after.iter().map(|l| l["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        (after.len(), ids.len()),
        (4, 4),
        "each problem answered once"
    );
}

#[test]
fn an_even_allocation_gives_every_problem_a_share_of_the_run_budget() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let out = dir.path().join("even.jsonl");
    let run = |extra: &[&str]| run_singleop(&config, &out, 2, extra);
    let refused = run(&["--allocate", "even"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("give --max-run-tokens"), "{stderr}");
    // A share of 150 each pays for a prompt (90 to 110 tokens) and some answer. (A share
    // smaller than the prompt leaves its problem unstarted.) The shares are of the whole
    // file's 20 problems, though `--limit` runs 4 of them now: 3000 / 20.
    let even = run(&["--allocate", "even", "--max-run-tokens", "3000"]);
    let stderr = String::from_utf8_lossy(&even.stderr);
    assert!(even.status.success(), "{stderr}");
    let written = lines(&out);
    assert_eq!(written.len(), 4, "every problem recorded: {written:?}");
    let mut spent = 0;
    for line in &written {
        let share = line["allotted"]["max_tokens"].as_u64().unwrap();
        let used = line["usage"]["prompt_tokens"].as_u64().unwrap()
            + line["usage"]["completion_tokens"].as_u64().unwrap();
        assert!(used <= share, "{line}");
        // Its part of the set's budget, and what those before it left unspent.
        assert!((3000 / 20..3000 / 4).contains(&share), "{line}");
        spent += used;
    }
    // The four took about their part (4 / 20) of the budget, not the other sixteen's.
    assert!(spent <= 3000 * 4 / 16, "{spent}");
    // The shares depend on the run's budget: resuming with another one is refused.
    let other = run(&["--allocate", "even", "--max-run-tokens", "4000"]);
    assert!(!other.status.success());
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert!(stderr.contains("allocation"), "{stderr}");
}

#[test]
fn a_seeded_run_in_process_repeats_its_samples_whatever_the_concurrency() {
    // A router whose two short answers are sampled at temperature 1 and read for their
    // log-probabilities, thinking with best-of-2 sampled at temperature 1, with a seed: the same
    // samples and confidences alone (one problem at a time) and beside other problems' (three
    // at a time, whose requests take turns in another order and leave mistral.rs's own
    // generator elsewhere). The CPU only: on a GPU concurrent sequences are batched as they
    // reach the engine, and batched arithmetic may move a near tie.
    if device() != "cpu" {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("seeded.toml");
    std::fs::write(
        &config,
        format!(
            "seed = 5\n\n[model]\nsource = \"smollm2-135m\"\ndevice = \"{}\"\n\n[strategy]\n\
             kind = \"router\"\nprobes = 2\ntemperature = 1.0\nmax_tokens = 16\n\
             min_confidence = 0.9\n\
             think = {{ kind = \"best_of_n\", n = 2, select = \"majority_vote\", inner = {{ \
             kind = \"direct\", style = \"step_by_step\", temperature = 1.0, max_tokens = 24 \
             }} }}\n",
            device()
        ),
    )
    .unwrap();
    let samples = |concurrency: usize, name: &str| {
        let out = dir.path().join(name);
        let output = run_singleop(&config, &out, concurrency, &[]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut written: Vec<(String, Value, Value, Value)> = lines(&out)
            .into_iter()
            .map(|l| {
                (
                    l["id"].as_str().unwrap().to_string(),
                    l["completion"].clone(),
                    l["details"].clone(),
                    l["usage"]["completion_tokens"].clone(),
                )
            })
            .collect();
        written.sort_by(|a, b| a.0.cmp(&b.0));
        written
    };
    let alone = samples(1, "alone.jsonl");
    assert_eq!(alone.len(), 4);
    // Short answers read for their confidence (a probability, neither certain nor impossible:
    // the drawn tokens' own, not what mistral.rs says of a token forced), and some thought about.
    assert!(
        alone
            .iter()
            .any(|(_, _, details, _)| details["short"]["confidence"]
                .as_f64()
                .is_some_and(|c| c > 0.0 && c < 1.0)),
        "{alone:?}"
    );
    assert!(
        alone
            .iter()
            .any(|(_, _, details, _)| details["route"] == "think"),
        "{alone:?}"
    );
    let beside = samples(3, "beside.jsonl");
    assert_eq!(alone, beside);
}

#[test]
fn a_triage_allocation_thinks_about_the_least_sure_problems_first() {
    let dir = tempfile::tempdir().unwrap();
    // Every short answer is below this confidence, so every problem asks to think.
    let config = write_strategy(
        dir.path(),
        "router.toml",
        "kind = \"router\"\nmin_confidence = 0.999999\nthink = { kind = \"direct\", style = \"step_by_step\", max_tokens = 48 }\n",
    );
    let out = dir.path().join("triage.jsonl");
    // One at a time: with more, a thought may reserve its tokens before a less sure one's
    // (tokenizing first takes its own time), and the order is only nearly by confidence.
    let run = |config: &Path, extra: &[&str]| run_singleop(config, &out, 1, extra);
    let refused = run(&config, &["--allocate", "triage"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("give --max-run-tokens"));
    let direct = run(
        &write_config(dir.path()),
        &["--allocate", "triage", "--max-run-tokens", "600"],
    );
    assert!(!direct.status.success());
    let stderr = String::from_utf8_lossy(&direct.stderr);
    assert!(stderr.contains("kind = \"direct\""), "{stderr}");

    // The four short answers cost about 440 tokens and one chain of thought about 140: 600
    // pays for every short answer and one or two thoughts, not four.
    let triage = run(
        &config,
        &["--allocate", "triage", "--max-run-tokens", "600"],
    );
    let stderr = String::from_utf8_lossy(&triage.stderr);
    assert!(triage.status.success(), "{stderr}");
    let written = lines(&out);
    assert_eq!(written.len(), 4, "every problem recorded: {written:?}");
    let spent: u64 = written
        .iter()
        .map(|l| {
            l["usage"]["prompt_tokens"].as_u64().unwrap()
                + l["usage"]["completion_tokens"].as_u64().unwrap()
        })
        .sum();
    assert!(spent <= 600, "{spent}");
    let confidence = |l: &Value| l["triage"]["confidence"].as_f64().unwrap();
    let (thought, unthought): (Vec<&Value>, Vec<&Value>) = written
        .iter()
        .partition(|l| l["triage"]["second_stage"].as_bool().unwrap());
    assert!(!thought.is_empty() && !unthought.is_empty(), "{written:?}");
    for t in &thought {
        assert_eq!(t["details"]["route"], "think", "{t}");
        assert_eq!(t["usage"]["calls"], 2, "{t}");
        for u in &unthought {
            assert!(confidence(t) <= confidence(u), "{t}\n{u}");
        }
    }
    for u in &unthought {
        // A short answer that wanted thinking the budget could not pay for.
        assert_eq!(u["details"]["route"], "short (no budget to think)", "{u}");
        assert_eq!(u["stop_reason"], "token_budget", "{u}");
        assert_eq!(u["usage"]["calls"], 1, "{u}");
    }
    // Finished: a rerun redoes nothing.
    let again = run(
        &config,
        &["--allocate", "triage", "--max-run-tokens", "600"],
    );
    assert!(again.status.success());
    assert_eq!(lines(&out), written);
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
fn report_compares_runs_and_names_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let line = |id: &str, correct: bool, tokens: u64| {
        format!(
            "{{\"id\":\"{id}\",\"strategy\":\"direct\",\"answer\":\"1\",\"reference\":\"1\",\"correct\":{correct},\"usage\":{{\"prompt_tokens\":{tokens},\"cached_prompt_tokens\":0,\"completion_tokens\":{tokens},\"calls\":1,\"elapsed_ms\":10}},\"stop_reason\":\"completed\"}}\n"
        )
    };
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    std::fs::write(
        &a,
        format!("{}{}", line("1", true, 10), line("2", false, 10)),
    )
    .unwrap();
    // b's last line is half-written, as a killed run leaves it: left out, and left in place.
    let half = format!("{}{}", line("1", true, 50), &line("2", true, 50)[..30]);
    std::fs::write(&b, &half).unwrap();
    let svg = dir.path().join("plot.svg");
    let out = ponder()
        .arg("report")
        .args([&a, &b])
        .args(["--labels", "short,long", "--plot"])
        .arg(&svg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("50.0% [9.5-90.5] (1/2)") && stdout.contains("100.0% [20.7-100.0] (1/1)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("head to head on 1 problem: both right 1"),
        "{stdout}"
    );
    assert!(stdout.contains("half-written"), "{stdout}");
    assert_eq!(std::fs::read_to_string(&b).unwrap(), half);
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.contains("short") && plot.contains("long"));
    // The plot is SVG: another name is refused, nothing written.
    let png = dir.path().join("plot.png");
    let out = ponder()
        .arg("report")
        .arg(&a)
        .arg("--plot")
        .arg(&png)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("name it FILE.svg"),
        "{stderr}"
    );
    assert!(!png.exists());
    // --regrade grades the answers again with this ponder: a's second line answers "1" to "1"
    // but was recorded wrong.
    let out = ponder()
        .args(["report", "--regrade"])
        .arg(&a)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("100.0% [34.2-100.0] (2/2)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 math answers graded again by this ponder: 1 now right, 0 now wrong"),
        "{stdout}"
    );
    // Against a corrected problem file: problem 1's reference is now 2, problem 2 is not in it.
    let corrected = dir.path().join("corrected.jsonl");
    std::fs::write(
        &corrected,
        "{\"id\": \"1\", \"question\": \"q\", \"answer\": \"2\"}\n{\"id\": \"3\", \"question\": \"q\", \"answer\": \"1\"}\n",
    )
    .unwrap();
    let out = ponder()
        .args(["report", "--regrade", "--problems"])
        .arg(&corrected)
        .arg(&a)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("50.0% [9.5-90.5] (1/2)"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 problem graded against the problem file's reference")
            && stdout.contains("1 problem not in the problem file")
            && stdout.contains("1 problem without a fingerprint of the question"),
        "{stdout}"
    );
    // Without --regrade it would change nothing: refused.
    let out = ponder()
        .args(["report", "--problems"])
        .arg(&corrected)
        .arg(&a)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--regrade"),
        "{stderr}"
    );

    // A run's other files given with it (`ponder report runs/*`): left out, said so.
    let ledger = dir.path().join("a.jsonl.spend.jsonl");
    std::fs::write(&ledger, "{\"id\":\"1\",\"attempt\":1,\"usage\":{}}\n").unwrap();
    let events = dir.path().join("a.events.jsonl");
    std::fs::write(
        &events,
        "{\"ms\":2,\"problem\":\"1\",\"attempt\":1,\"event\":\"started\"}\n",
    )
    .unwrap();
    // The record of the run's configuration, written over several lines as a run writes it
    // (its first line alone is no JSON).
    let record = dir.path().join("a.jsonl.config.json");
    std::fs::write(
        &record,
        "{\n  \"model\": {\n    \"source\": \"smollm2-135m\"\n  },\n  \"strategy\": {\n    \
         \"kind\": \"direct\"\n  }\n}\n",
    )
    .unwrap();
    let out = ponder()
        .arg("report")
        .args([&a, &record, &ledger, &events])
        .arg("--json")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["runs"].as_array().map(Vec::len), Some(1));
    // Read with its results file, as the ledger is.
    assert_eq!(json["runs"][0]["model"], "smollm2-135m", "{json}");
    assert!(
        stderr.contains(&format!(
            "left out {}: the record of the configuration of {}, read with it",
            record.display(),
            a.display()
        )) && stderr.contains(&format!(
            "left out {}: the spend ledger of {}, read with it",
            ledger.display(),
            a.display()
        )) && stderr.contains(&format!(
            "left out {}: an events log (`--events`), not a results file",
            events.display()
        )),
        "{stderr}"
    );
    // What follows reads a without it.
    std::fs::remove_file(&record).unwrap();
    let out = ponder().arg("report").arg(&events).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("error: no results files among the 1 given"),
        "{stderr}"
    );

    let damaged = dir.path().join("damaged.jsonl");
    std::fs::write(
        &damaged,
        format!("{}not json\n{}", line("1", true, 1), line("2", true, 1)),
    )
    .unwrap();
    for (args, expected) in [
        (vec![damaged.clone()], "damaged.jsonl:2".to_string()),
        (
            vec![dir.path().join("missing.jsonl")],
            "missing.jsonl".to_string(),
        ),
    ] {
        let out = ponder().arg("report").args(&args).output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&expected), "{stderr}");
    }
    let out = ponder()
        .arg("report")
        .args([&a, &b])
        .args(["--labels", "one"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("--labels names 1 run but 2 results files are given"));
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

/// `ponder` with RUST_BACKTRACE=1 (a common setting): what a user error prints and returns.
fn user_error(args: &[&str]) -> (Option<i32>, String) {
    let out = ponder()
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn an_events_log_that_cannot_be_written_leaves_the_run_its_summary() {
    // /dev/full takes the open and fails every write (helper-125: the `?` on the log's first
    // error skipped the summary and the `results:` line, and did not say it was the log).
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let out = dir.path().join("results.jsonl");
    let run = ponder()
        .args(["run", "--limit", "1", "--config"])
        .arg(&config)
        .arg("--problems")
        .arg(repo("examples/problems/mawps-singleop-20.jsonl"))
        .arg("--out")
        .arg(&out)
        .args(["--events", "/dev/full"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stdout.contains(&format!("results: {}", out.display())),
        "{stdout}"
    );
    assert!(
        stderr.contains(
            "error: the events log could not be written (/dev/full: No space left on device \
             (os error 28)): the events from its first failed write on are lost"
        ),
        "{stderr}"
    );
    assert_eq!(lines(&out).len(), 1);
}

#[test]
fn user_errors_are_told_once_without_a_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let missing = text(&missing);
    let missing_toml = format!("{missing}.toml");
    let out = format!("{missing}/o.jsonl");
    let here = dir.path().join("o.jsonl");
    let config = write_config(dir.path());
    let config = text(&config);
    let traces = format!("{config}/traces");
    let spend = format!("{}.spend.jsonl", text(&here));
    let traced_out = dir.path().join("singleop-0.json");
    let traced_out = text(&traced_out);
    let link = dir.path().join("link.toml");
    std::fs::hard_link(config, &link).unwrap();
    let problems = repo("examples/problems/mawps-singleop-20.jsonl");
    let problems = text(&problems);
    let cases = [
        (
            vec!["models", "fetch", "nope"],
            "error: `nope` is not a built-in model".to_string(),
        ),
        (
            vec!["solve", "hi", "--config", &missing_toml],
            format!("error: {missing_toml}: No such file or directory"),
        ),
        (
            vec!["report", missing],
            format!("error: {missing}: no such results file"),
        ),
        (
            vec![
                "run",
                "--config",
                config,
                "--problems",
                missing,
                "--out",
                text(&here),
            ],
            format!("error: {missing}: No such file or directory"),
        ),
        (
            vec![
                "run",
                "--config",
                config,
                "--problems",
                problems,
                "--out",
                &out,
            ],
            format!("error: --out {out}: directory {missing} does not exist"),
        ),
        // A results file is read back whole to resume: a device never ends.
        (
            vec![
                "run",
                "--config",
                config,
                "--problems",
                problems,
                "--out",
                "/dev/null",
            ],
            "error: --out /dev/null: not a regular file".to_string(),
        ),
        // One file for two flags: refused before anything loads.
        (
            vec![
                "run",
                "--config",
                config,
                "--problems",
                problems,
                "--out",
                text(&here),
                "--events",
                text(&here),
            ],
            format!(
                "error: --events {} is also --out: give --events a file of its own",
                text(&here)
            ),
        ),
        // A file the run keeps beside --out, or another name for one a flag names.
        (
            vec![
                "run",
                "--config",
                config,
                "--problems",
                problems,
                "--out",
                text(&here),
                "--events",
                &spend,
            ],
            format!("error: --events {spend} is also the run's spend ledger beside --out"),
        ),
        // One that cannot be made where its folder is: said before the model loads.
        (
            vec![
                "run",
                "--config",
                config,
                "--problems",
                problems,
                "--out",
                text(&here),
                "--events",
                "/proc/self/events.jsonl",
            ],
            "error: /proc/self/events.jsonl: No such file or directory".to_string(),
        ),
        (
            vec![
                "run",
                "--config",
                config,
                "--problems",
                problems,
                "--out",
                text(&here),
                "--events",
                text(&link),
            ],
            format!("error: --events {} is also --config", text(&link)),
        ),
        (
            vec![
                "run",
                "--config",
                config,
                "--problems",
                problems,
                "--out",
                problems,
            ],
            format!("error: --out {problems} is also --problems"),
        ),
        (
            vec![
                "solve",
                "hi",
                "--config",
                config,
                "--events",
                text(dir.path()),
            ],
            format!(
                "error: --events {}: a directory, not a file",
                text(dir.path())
            ),
        ),
        // Said before the solve, not after it (its trace would be lost).
        (
            vec!["solve", "hi", "--config", config, "--trace-dir", &traces],
            format!("error: --trace-dir {traces}: cannot make the directory"),
        ),
        // A trace directory that is a file the run writes, or where a problem's trace would
        // be written over one: said before the directory is made or the model loads.
        (
            vec![
                "run",
                "--config",
                config,
                "--problems",
                problems,
                "--out",
                text(&here),
                "--trace-dir",
                text(&here),
            ],
            format!("error: --trace-dir {} is also --out", text(&here)),
        ),
        (
            vec![
                "run",
                "--config",
                config,
                "--problems",
                problems,
                "--out",
                &traced_out,
                "--trace-dir",
                text(dir.path()),
            ],
            format!(
                "error: --trace-dir {}: the trace of problem `singleop-0` would be written over \
                 --out {traced_out}",
                text(dir.path())
            ),
        ),
    ];
    for (args, expected) in cases {
        let (code, stderr) = user_error(&args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(stderr.starts_with(&expected), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("backtrace") && !stderr.contains("Caused by"),
            "{args:?}: {stderr}"
        );
        // The message once: a cause it already quotes is not told again.
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    }
    // Nothing was written for the runs (the config and its link are the test's).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn every_model_table_is_checked_before_a_run_starts_and_named_with_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("prm.gguf");
    let prm = dir.path().join("prm.toml");
    std::fs::write(
        &prm,
        format!(
            "[strategy]\nkind = \"best_of_n\"\nn = 2\nselect = \"majority\"\n\
             inner = {{ kind = \"router\", think = {{ kind = \"beam_search\", \
             scorer = {{ kind = \"prm\", model = {:?} }} }} }}\n",
            missing.display()
        ),
    )
    .unwrap();
    let judge = dir.path().join("judge.toml");
    std::fs::write(
        &judge,
        "[strategy]\nkind = \"s_star\"\n\n[strategy.judge]\nbackend = \"openai\"\n\
         base_url = \"http://127.0.0.1:9\"\napi_key_env = \"PONDER_TEST_UNSET_KEY\"\n",
    )
    .unwrap();
    let problems = repo("examples/problems/mawps-singleop-20.jsonl");
    let out = dir.path().join("o.jsonl");
    let cases = [
        (
            &prm,
            format!(
                "error: {}: strategy.inner.think.scorer.model: model source `{}`: no such file",
                prm.display(),
                missing.display()
            ),
        ),
        (
            &judge,
            format!(
                "error: {}: strategy.judge: api_key_env names `PONDER_TEST_UNSET_KEY`, which is \
                 not set in the environment",
                judge.display()
            ),
        ),
    ];
    for (config, expected) in cases {
        let (code, stderr) = user_error(&[
            "run",
            "--config",
            text(config),
            "--problems",
            text(&problems),
            "--out",
            text(&out),
        ]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.starts_with(&expected), "{stderr}");
        assert!(!out.exists(), "stopped before any file was written");
    }
}

#[test]
fn a_run_whose_problems_failed_exits_1_after_its_summary() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_strategy(dir.path(), "s_star.toml", "kind = \"s_star\"\n");
    // Math problems, which S* cannot take: each fails before any call.
    let problems = dir.path().join("math.jsonl");
    std::fs::write(
        &problems,
        "{\"id\": \"m1\", \"question\": \"2 + 2?\", \"answer\": \"4\"}\n\
         {\"id\": \"m2\", \"question\": \"3 + 3?\", \"answer\": \"6\"}\n",
    )
    .unwrap();
    let out = dir.path().join("o.jsonl");
    let output = ponder()
        .args([
            "run",
            "--config",
            text(&config),
            "--problems",
            text(&problems),
        ])
        .args(["--out", text(&out)])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: 2 problems failed; their lines carry the error"),
        "{stderr}"
    );
    // The summary came first, and the lines are there to resume from.
    assert!(!output.stdout.is_empty(), "{stderr}");
    let written = lines(&out);
    assert_eq!(written.len(), 2);
    for line in written {
        let error = line["error"].as_str().unwrap_or_default();
        assert!(error.contains("is not a code problem"), "{line}");
    }
}

#[test]
fn code_problems_with_no_sandbox_to_grade_them_are_an_error_before_anything_is_solved() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let out = dir.path().join("o.jsonl");
    // A temporary directory that is not there: the sandbox cannot make a program's run
    // directory in it.
    let output = ponder()
        .args(["run", "--config", text(&config), "--problems"])
        .arg(repo("examples/problems/humaneval-3.jsonl"))
        .args(["--out", text(&out)])
        .env("TMPDIR", dir.path().join("gone"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("grading code problems needs the sandbox")
            && stderr.contains("run directory"),
        "{stderr}"
    );
    // Nothing solved, nothing to redo: no line (solving first would have written three, each
    // with its grading's error).
    assert!(
        std::fs::read_to_string(&out).unwrap_or_default().is_empty(),
        "{stderr}"
    );
}

#[test]
fn an_api_key_no_header_can_carry_is_refused_without_showing_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("http.toml");
    std::fs::write(
        &config,
        "[model]\nbackend = \"openai\"\nbase_url = \"http://127.0.0.1:1\"\nretries = 0\n\
         api_key_env = \"PONDER_TEST_KEY\"\n\n[strategy]\nkind = \"direct\"\n",
    )
    .unwrap();
    let output = ponder()
        .args(["solve", "hi", "--config", text(&config)])
        .env("PONDER_TEST_KEY", "sk-sec\u{1}ret")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("PONDER_TEST_KEY") && stderr.contains("control characters"),
        "{stderr}"
    );
    assert!(!stderr.contains("sk-sec"), "{stderr}");
}

#[test]
fn ctrl_c_says_how_many_problems_are_finished_and_exits_130() {
    stopped_by("INT", 130);
}

#[test]
fn sigterm_stops_a_run_as_ctrl_c_does_and_exits_143() {
    // What `kill`, `timeout` and batch schedulers send to end a job.
    stopped_by("TERM", 143);
}

/// Sends `signal` to a `ponder run` once a problem is finished: it says how many are, and exits
/// with `code`.
fn stopped_by(signal: &str, code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let out = dir.path().join("o.jsonl");
    let mut child = ponder()
        .args(["run", "--concurrency", "1", "--config", text(&config)])
        .arg("--problems")
        .arg(repo("examples/problems/mawps-singleop-20.jsonl"))
        .args(["--out", text(&out)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while lines(&out).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no problem finished in 5 minutes"
        );
        assert!(child.try_wait().unwrap().is_none(), "ponder ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    let told = stderr
        .lines()
        .find_map(|l| l.strip_prefix("interrupted: "))
        .unwrap_or_else(|| panic!("no interrupted line: {stderr}"));
    let finished: usize = told.split(' ').next().unwrap().parse().unwrap();
    let written = lines(&out).len();
    assert!(
        (1..=written).contains(&finished) && written < 20,
        "{finished} told, {written} written: {told}"
    );
    assert!(
        told.contains(&format!(
            "of 20 problems are finished in {}; run the same command again",
            out.display()
        )),
        "{told}"
    );
}

#[test]
fn input_that_leaves_nothing_to_do_is_an_error_before_any_file_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    let out = dir.path().join("o.jsonl");
    let run = |problems: &Path, extra: &[&str]| {
        let mut args = vec![
            "run",
            "--config",
            text(&config),
            "--problems",
            text(problems),
            "--out",
            text(&out),
        ];
        args.extend(extra);
        user_error(&args)
    };
    let (code, stderr) = run(&empty, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: no problems in {}", empty.display())),
        "{stderr}"
    );
    let problems = repo("examples/problems/mawps-singleop-20.jsonl");
    let (code, stderr) = run(&problems, &["--limit", "0"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: --limit 0 leaves nothing to run"),
        "{stderr}"
    );
    let mut written: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    written.sort();
    assert_eq!(written, ["direct.toml", "empty.jsonl"]);

    for question in ["", "  \n"] {
        let (code, stderr) = user_error(&["solve", question]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.starts_with("error: the question is empty"),
            "{stderr}"
        );
    }

    let zero = dir.path().join("zero.toml");
    std::fs::write(
        &zero,
        "[strategy]\nkind = \"direct\"\n\n[budget]\nmax_calls = 0\n",
    )
    .unwrap();
    let (code, stderr) = user_error(&["solve", "hi", "--config", text(&zero)]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("zero.toml") && stderr.contains("max_calls = 0"),
        "{stderr}"
    );
    let (code, stderr) = run(&problems, &["--max-run-tokens", "0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--max-run-tokens"), "{stderr}");
}

/// A temporary directory with a config of a server nobody listens on, asked once.
fn down_server_config() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("down.toml");
    std::fs::write(
        &config,
        "[model]\nbackend = \"openai\"\nbase_url = \"http://127.0.0.1:9\"\nmodel = \"m\"\n\
         retries = 0\n\n[strategy]\nkind = \"direct\"\nmax_tokens = 8\n",
    )
    .unwrap();
    (dir, config)
}

#[test]
fn problems_without_a_reference_answer_are_said_before_the_model_loads() {
    // A server nobody listens on: the model fails to load after the checks before it.
    let (dir, config) = down_server_config();
    let problems = dir.path().join("p.jsonl");
    let out = dir.path().join("o.jsonl");
    let run = |rows: &str| {
        std::fs::write(&problems, rows).unwrap();
        user_error(&[
            "run",
            "--config",
            text(&config),
            "--problems",
            text(&problems),
            "--out",
            text(&out),
        ])
    };
    // The answers under a key that is not read: an error, before the model loads.
    let (code, stderr) = run(
        "{\"id\":\"a\",\"question\":\"What is 2+3?\",\"target\":\"5\"}\n\
         {\"id\":\"b\",\"question\":\"What is 2+4?\",\"target\":\"6\"}\n",
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: {}:1: `target` is not read as a reference answer (none of the 2 problems has \
             a reference answer",
            problems.display()
        )) && stderr.contains("keys seen: id, question, target;")
            && stderr.contains("rename `target` to `answer`")
            && !stderr.contains("127.0.0.1:9"),
        "{stderr}"
    );
    // No answer under any key: the problems may run ungraded, but it is said first.
    let (code, stderr) = run("{\"id\":\"a\",\"question\":\"What is 2+3?\"}\n\
         {\"id\":\"b\",\"question\":\"What is 2+4?\"}\n");
    assert_eq!(code, Some(1), "{stderr}");
    let warned = stderr.find(&format!(
        "warning: none of the 2 problems in {} has a reference answer, so none of them is graded \
         (keys seen: id, question; a reference is read from `answer`",
        problems.display()
    ));
    let failed = stderr.find("127.0.0.1:9");
    assert!(
        warned.is_some() && failed.is_some() && warned < failed,
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn a_file_named_gguf_that_is_not_one_is_told_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("x.gguf");
    std::fs::write(&fake, "not a model\n").unwrap();
    let (code, stderr) = user_error(&["solve", "hi", "--model", text(&fake)]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("x.gguf is not a GGUF file (it starts with \"not \""),
        "{stderr}"
    );
}

#[test]
fn a_model_that_fails_to_load_leaves_no_events_log_or_trace_dir_the_command_made() {
    // A server nobody listens on, asked once: the model fails to load after the checks before
    // it (and after the events log is opened).
    let (dir, config) = down_server_config();
    let kept = dir.path().join("kept.jsonl");
    std::fs::write(&kept, "{\"earlier\": 1}\n").unwrap();
    for (events, before) in [
        (dir.path().join("new.jsonl"), None),
        (kept.clone(), Some("{\"earlier\": 1}\n")),
    ] {
        let out = run_singleop(
            &config,
            &dir.path().join("out.jsonl"),
            1,
            &["--events", text(&events)],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("127.0.0.1:9"), "{stderr}");
        // A log made for this run goes with it; one that was there keeps what it held.
        assert_eq!(
            std::fs::read_to_string(&events).ok().as_deref(),
            before,
            "{}",
            events.display()
        );
    }
    assert!(!dir.path().join("out.jsonl").exists());
    // So does a trace directory it made, and `ponder solve`'s log and directory.
    let traces = dir.path().join("traces");
    let out = run_singleop(
        &config,
        &dir.path().join("out.jsonl"),
        1,
        &["--trace-dir", text(&traces)],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(!traces.exists());
    let events = dir.path().join("solve.jsonl");
    let out = ponder()
        .args(["solve", "hi", "--config"])
        .arg(&config)
        .arg("--events")
        .arg(&events)
        .arg("--trace-dir")
        .arg(&traces)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("127.0.0.1:9"), "{stderr}");
    assert!(!events.exists() && !traces.exists());
    let mut left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["down.toml", "kept.jsonl"]);
}

#[test]
fn a_gguf_named_by_its_file_name_alone_loads_from_the_directory_it_is_in() {
    // `Path::parent` of a bare name is "", which mistral.rs took for a hub repository.
    let file = ponder::engine::models::builtin("smollm2-135m")
        .unwrap()
        .ensure()
        .expect("fetching smollm2-135m");
    let out = ponder()
        .current_dir(file.parent().unwrap())
        .args(["solve", "What is 3 + 4?", "--json", "--device", &device()])
        .arg("--model")
        .arg(file.file_name().unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["usage"]["calls"] == 1, "{json}");
}

#[test]
fn models_fetch_without_a_name_lists_the_builtins() {
    let (code, stderr) = user_error(&["models", "fetch"]);
    // A usage error, as clap's own are.
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("smollm2-135m") && stderr.contains("qwen2.5-coder-0.5b"),
        "{stderr}"
    );
    assert!(stderr.contains("ponder models fetch <NAME>"), "{stderr}");
}

#[test]
fn solve_counts_one_call_in_the_singular() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let out = ponder()
        .args(["solve", "What is 3 + 4?", "--config"])
        .arg(&config)
        .args(["--device", &device()])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let usage = stdout.lines().find(|l| l.starts_with("usage: ")).unwrap();
    assert!(usage.contains(" completion tokens, 1 call, "), "{usage}");
    // mistral.rs's false "mix of GPU and CPU" warning on every CPU load is not shown.
    assert!(!stderr.contains("mix of GPU and CPU"), "{stderr}");
    // ponder's own warnings are, as the CLI writes its notes (not as a log, unless RUST_LOG
    // asks): a prefix cache on the CPU warns.
    if device() == "cpu" {
        let cached = dir.path().join("cached.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(
            &cached,
            text.replace("[model]\n", "[model]\nprefix_cache = true\n"),
        )
        .unwrap();
        let out = ponder()
            .args(["solve", "What is 3 + 4?", "--config"])
            .arg(&cached)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("warning: prefix cache on the CPU")),
            "{stderr}"
        );
        assert!(
            !stderr.contains("WARN") && !stderr.contains("ponder_engine::"),
            "{stderr}"
        );
    }
}

#[test]
fn dequantize_in_the_config_is_set_for_candle_before_the_model_loads() {
    // candle reads its switch from the environment; the CLI sets it from the config (the
    // model refuses to load where the environment does not ask for what its table says), the
    // table's way winning over a variable already set. CPU only: refused on a GPU.
    if device() != "cpu" {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let table = std::fs::read_to_string(&config).unwrap();
    for way in ["f16", "f32"] {
        let dequantized = dir.path().join(format!("{way}.toml"));
        std::fs::write(
            &dequantized,
            table.replace("[model]\n", &format!("[model]\ndequantize = \"{way}\"\n")),
        )
        .unwrap();
        let out = ponder()
            .args([
                "solve",
                "Tom has 3 apples and buys 4 more. How many apples does he have?",
            ])
            .args(["--json", "--config"])
            .arg(&dequantized)
            .env_remove("CANDLE_DEQUANTIZE_ALL_F16")
            .env(
                "CANDLE_DEQUANTIZE_ALL",
                if way == "f16" { "1" } else { "0" },
            )
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{way}: {stderr}");
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["answer"], "7", "{way}: {json}");
    }
    // A switch inherited from the environment, where the config does not ask: turned off,
    // with a warning naming it (the run's record says the weights load as stored).
    let out = ponder()
        .args(["solve", "What is 3 + 4?", "--config"])
        .arg(&config)
        .env("CANDLE_DEQUANTIZE_ALL_F16", "1")
        .env_remove("CANDLE_DEQUANTIZE_ALL")
        .env("RUST_LOG", "warn,ponder_engine::mistralrs_backend=debug")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("CANDLE_DEQUANTIZE_ALL_F16 is set, but the config does not ask")
            && stderr.contains("dequantize = \"f16\""),
        "{stderr}"
    );
    // What the engine found as the model loaded.
    assert!(stderr.contains("dequantized=None"), "{stderr}");
    // `--dequantize` overrides the config's, or gives it where the config (or its absence)
    // does not.
    let f16 = dir.path().join("f16.toml");
    for config in [Some(&f16), None] {
        let mut command = ponder();
        command.args(["solve", "What is 3 + 4?", "--dequantize", "f32"]);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let out = command
            .env_remove("CANDLE_DEQUANTIZE_ALL_F16")
            .env_remove("CANDLE_DEQUANTIZE_ALL")
            .env("RUST_LOG", "warn,ponder_engine::mistralrs_backend=debug")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{config:?}: {stderr}");
        // What the engine found as the model loaded: the flag's, not the config's f16 (nor
        // nothing, as stored).
        assert!(
            stderr.contains("dequantized=Some(F32)"),
            "{config:?}: {stderr}"
        );
    }
    let (code, stderr) = user_error(&["solve", "What is 3 + 4?", "--dequantize", "f8"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("expected f16 or f32"), "{stderr}");
    let openai = repo("examples/strategies/openai.toml");
    let (code, stderr) = user_error(&[
        "solve",
        "hi",
        "--config",
        text(&openai),
        "--dequantize",
        "f16",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: --dequantize applies to models run in process"),
        "{stderr}"
    );
}
