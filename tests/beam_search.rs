//! Beam search and DVTS on the real SmolLM2-135M, with SmolLM2 as an LLM-judge PRM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::num::NonZeroUsize;

use common::{block_on, smollm_dyn};
use ponder::engine::{Budget, Solution};
use ponder::strategies::{BeamSearch, BeamSearchConfig, SearchDetails, SearchKind};
use ponder::Problem;

/// The two tests share one engine; run them one at a time. (Seen once: while the budget test
/// dropped in-flight judge requests, the other test's request was closed by the engine with no
/// answer. Not confirmed; one cause that fits is mistral.rs's panic on a stop string after an
/// unfinished character, which fails every request the engine holds, and which ponder now
/// avoids by matching stop strings itself.)
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn config() -> BeamSearchConfig {
    BeamSearchConfig {
        n: NonZeroUsize::new(4).unwrap(),
        beam_width: NonZeroUsize::new(2).unwrap(),
        max_steps: NonZeroUsize::new(3).unwrap(),
        max_step_tokens: NonZeroUsize::new(48).unwrap(),
        max_final_tokens: NonZeroUsize::new(96).unwrap(),
        ..BeamSearchConfig::default()
    }
}

/// One search of `kind` on the shared SmolLM2 under `budget`.
fn search(kind: SearchKind, problem: &Problem, budget: Budget) -> Solution {
    let search = BeamSearch::new(config(), kind).unwrap();
    block_on(ponder::engine::solve(
        &search,
        problem,
        smollm_dyn(),
        budget,
    ))
    .unwrap()
}

#[test]
fn beam_search_finishes_writes_a_parsable_trace_and_respects_the_budget() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    for kind in [SearchKind::Beam, SearchKind::Dvts] {
        let problem = Problem::new(
            "gsm/1",
            "Tom has 3 apples and buys 4 more. How many apples does he have?",
        );
        let solution = search(kind, &problem, Budget::unlimited().with_max_tokens(12_000));
        assert!(solution.usage.total_tokens() <= 12_000);
        let details: SearchDetails = serde_json::from_value(solution.details.clone()).unwrap();
        assert!(details.rounds >= 1 && details.rounds <= 3, "{details:?}");
        assert!(details.nodes >= 4, "{details:?}");
        assert!(!solution.completion.is_empty());

        let dir = tempfile::tempdir().unwrap();
        let trace = solution.trace.expect("a search tree");
        let written = trace.write(dir.path(), &problem.id).unwrap();
        // `/` is not file-safe: it becomes `_`, and a hash of the id keeps names apart.
        let dot_path = written
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == "dot"))
            .expect("a .dot file")
            .clone();
        let name = dot_path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("gsm_1-") && dot_path.starts_with(dir.path()),
            "{name}"
        );
        let nodes = trace.json["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), details.nodes + 1);
        assert!(nodes.iter().any(|n| n["chosen"] == true));
        // The judge read something (it reads logits: always a number): some step scored, and
        // every score is a reward.
        let scores: Vec<f64> = nodes
            .iter()
            .flat_map(|n| [&n["score"], &n["step_score"]])
            .filter_map(serde_json::Value::as_f64)
            .collect();
        assert!(!scores.is_empty(), "no node scored: {details:?}");
        assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)), "{scores:?}");
        // A search that went on past its first round (not cut short by the budget or a failed
        // call) chose among candidates: it pruned some, or grew a node two steps deep.
        if details.rounds >= 2 && !solution.stop_reason.is_budget() && details.failed.is_empty() {
            let deep = |n: &serde_json::Value| n["depth"].as_u64().is_some_and(|d| d >= 2);
            assert!(
                nodes.iter().any(|n| deep(n) || n["state"] == "pruned"),
                "{details:?}"
            );
        }
        // The DOT parses: render it with Graphviz when it is installed.
        let dot = std::process::Command::new("dot")
            .arg("-Tsvg")
            .arg(&dot_path)
            .output();
        match dot {
            Ok(out) => {
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(String::from_utf8_lossy(&out.stdout).contains("<svg"));
                assert!(dot_path.with_extension("svg").exists());
            }
            Err(_) => {
                let text = std::fs::read_to_string(&dot_path).unwrap();
                assert!(text.starts_with("digraph {") && text.trim_end().ends_with('}'));
                eprintln!("graphviz `dot` not installed: checked the DOT's shape only");
            }
        }
    }
}

#[test]
fn a_tight_budget_stops_the_search_with_a_beam() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let problem = Problem::new("tight", "What is 5 + 6?");
    // Three calls: the first expansion (n/M = 2 requests of the root) fits, scoring its four
    // steps (one judge call each) cannot, whatever the model writes. (A token budget was flaky: a model that
    // answers in its first step can finish the search inside it.)
    let solution = search(
        SearchKind::Beam,
        &problem,
        Budget::unlimited().with_max_calls(3),
    );
    assert!(solution.usage.calls <= 3, "{:?}", solution.usage);
    assert!(
        solution.stop_reason.is_budget(),
        "{:?}",
        solution.stop_reason
    );
    assert!(
        !solution.completion.is_empty(),
        "a best partial beam is returned"
    );
}
