//! The library examples, run as programs on the real default model (SmolLM2-135M on CPU):
//! what `examples/` shows must work, not only compile. `cargo test` builds them beside the
//! test binaries.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

/// An example's binary: `target/<profile>/examples/<name>`, beside this test's `deps/`.
fn example(name: &str) -> Command {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path: PathBuf = profile.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: `cargo test` builds the examples before the tests",
        path.display()
    );
    Command::new(path)
}

#[test]
fn custom_strategy_runs_under_best_of_n_and_reports_its_events() {
    let out = example("custom_strategy")
        .arg("Tom has 3 apples and buys 4 more. How many apples does he have?")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    // Three runs of the custom strategy, two calls each, each reporting its check; then the vote.
    let events: Vec<&str> = stderr.lines().filter(|l| l.contains("] example")).collect();
    let count = |what: &str| events.iter().filter(|l| l.contains(what)).count();
    assert_eq!(count("example: call: "), 6, "{stderr}");
    assert_eq!(count("example check_twice: checked: {"), 3, "{stderr}");
    assert_eq!(
        count("example self_consistency: 3 of 3 samples"),
        1,
        "{stderr}"
    );
    let selected = events.last().copied().unwrap_or_default();
    assert!(
        selected.contains("example self_consistency: selected "),
        "the vote comes last: {stderr}"
    );
    // The answer printed is the one selected, and the usage adds up the calls.
    let answer = stdout
        .lines()
        .find_map(|l| l.strip_prefix("answer: "))
        .unwrap_or_else(|| panic!("no answer line: {stdout}"));
    assert!(
        answer != "(none)" && selected.contains(&format!("selected `{answer}` of 3")),
        "{selected} vs {answer}"
    );
    let spent: u64 = events
        .iter()
        .filter_map(|l| l.rsplit_once("; ")?.1.strip_suffix(" spent")?.parse().ok())
        .max()
        .unwrap();
    assert!(
        stdout.contains(&format!("usage: {spent} tokens in 6 calls")),
        "{stdout} vs {spent}"
    );
}

#[test]
fn solve_prints_the_completion_its_answer_and_usage() {
    let out = example("solve")
        .arg("Tom has 3 apples and buys 4 more. How many apples does he have?")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer = stdout
        .lines()
        .find_map(|l| l.strip_prefix("answer: "))
        .unwrap_or_else(|| panic!("no answer line: {stdout}"));
    // The answer is the completion's (or none, said so).
    let completion = stdout.split("\n\nanswer: ").next().unwrap_or_default();
    assert!(
        answer == "(none)" || completion.contains(answer),
        "{answer} not in {completion}"
    );
    let usage = stdout
        .lines()
        .find_map(|l| l.strip_prefix("usage: "))
        .unwrap_or_else(|| panic!("no usage line: {stdout}"));
    let words: Vec<&str> = usage.split_whitespace().collect();
    let prompt: u64 = words[0].parse().unwrap();
    let completion_tokens: u64 = words[3].parse().unwrap();
    assert!(
        prompt > 10 && (1..=192).contains(&completion_tokens),
        "{usage}"
    );
    assert!(usage.contains("tokens in 1 call(s)"), "{usage}");
}

#[test]
fn grade_answers_grades_each_line_and_leaves_a_line_without_a_reference_ungraded() {
    use std::io::Write;
    let mut child = example("grade_answers")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input = concat!(
        "{\"answer\": \"0.5\", \"reference\": \"\\\\frac{1}{2}\"}\n",
        "{\"completion\": \"So 3 + 4 = 7.\\nFinal Answer: 7\", \"reference\": 7}\n",
        // A results line without an answer, and a code problem's without a reference.
        "{\"answer\": null, \"reference\": \"3\"}\n",
        "{\"answer\": \"def f(): pass\", \"reference\": null}\n",
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let graded: Vec<&serde_json::Value> = rows.iter().map(|r| &r["correct"]).collect();
    assert_eq!(
        graded,
        [
            &true.into(),
            &true.into(),
            &false.into(),
            &serde_json::Value::Null
        ]
    );
    assert_eq!(rows[1]["extracted"], "7");
    assert_eq!(rows[0]["answer_key"], rows[0]["reference_key"]);
    // A line with neither an answer nor a completion is an error naming it.
    let out = example("grade_answers")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"{\"reference\": \"3\"}\n")?;
            child.wait_with_output()
        })
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("stdin line 1: needs an `answer`"),
        "{stderr}"
    );
}
