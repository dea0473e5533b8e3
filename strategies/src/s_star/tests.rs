//! Control flow of S* on a scripted backend, with code run in the real sandbox.

use ponder_engine::scripted::ScriptedBackend;
use ponder_engine::{solve, Budget};

use super::text::calls_of;
use super::*;

fn add_problem() -> Problem {
    let prompt = "def add(a, b):\n    \"\"\"Add two numbers.\n    >>> add(1, 2)\n    3\n    >>> add(2, 2)\n    4\n    \"\"\"\n";
    Problem {
        id: "add".into(),
        question: prompt.into(),
        reference: None,
        code: Some(CodeTask {
            prompt: prompt.into(),
            entry_point: "add".into(),
            test: "def check(candidate):\n    assert candidate(100, 1) == 101\n".into(),
        }),
    }
}

/// S* with `config`, allowed to run code unisolated only where this machine cannot isolate it.
fn s_star(config: SStarConfig) -> SStar {
    let allow_unisolated = !isolation_check::namespaces_here();
    SStar::new(SStarConfig {
        allow_unisolated,
        ..config
    })
    .unwrap()
}

async fn solve_add(config: SStarConfig, backend: &Arc<ScriptedBackend>) -> Solution {
    let strategy = s_star(config);
    solve(
        &strategy,
        &add_problem(),
        backend.clone(),
        Budget::unlimited(),
    )
    .await
    .unwrap()
}

fn fenced(body: &str) -> String {
    format!("Here it is:\n```python\ndef add(a, b):\n    {body}\n```\n")
}

/// The prompt length of each request `backend` received, in order (a token a byte).
fn prompt_lengths(backend: &ScriptedBackend) -> Vec<usize> {
    backend
        .requests()
        .iter()
        .map(|r| backend.prompt_tokens(&r.prompt))
        .collect()
}

/// The prompt as the scripted backend saw it (`role: content` lines, then `assistant: `).
fn text(request: &GenerationRequest) -> String {
    ScriptedBackend::render(&request.prompt)
}

/// Turns in a rendered chat prompt, the open assistant turn excluded.
fn turns(request: &GenerationRequest) -> usize {
    let text = text(request);
    text.matches("user: ").count() + text.matches("assistant: ").count() - 1
}

#[tokio::test]
async fn debugs_the_failing_sample_then_a_knockout_compares_on_synthesised_inputs() {
    // Sample 0 subtracts (fails both public tests) and is fixed in one round into a version
    // that differs from sample 1 only at a >= 100; sample 1 is right from the start.
    let backend = Arc::new(ScriptedBackend::new([
        fenced("return a - b"),
        fenced("return a + b"),
        fenced("return a + b if a < 100 else 0"),
        ">>> add(100, 1)\n>>> add(1, 1)\n>>> add(1, 1)".to_string(),
        "A".to_string(),
        "A".to_string(),
    ]));
    let config = SStarConfig {
        n: NonZeroUsize::MIN.saturating_add(1),
        debug_rounds: 2,
        selection: CodeSelection::Knockout,
        ..SStarConfig::default()
    };
    let solution = solve_add(config, &backend).await;
    let details: SStarDetails = serde_json::from_value(solution.details.clone()).unwrap();
    assert_eq!(details.public_tests.len(), 2);
    // Sample 0: a failing round, then a passing rewrite; sample 1 passes at once.
    let rounds: Vec<(usize, usize)> = details.samples[0]
        .rounds
        .iter()
        .map(|r| (r.passed, r.total))
        .collect();
    assert_eq!(rounds, vec![(0, 2), (2, 2)]);
    assert_eq!(details.samples[1].rounds.len(), 1);
    assert!(details.samples.iter().all(|s| s.passes_public));
    // The rewrite was asked for with the failures shown.
    let requests = backend.requests();
    let debug = text(&requests[1]);
    assert_eq!(turns(&requests[1]), 3);
    assert!(
        debug.contains("assistant: ```python\ndef add(a, b):\n    return a - b\n```\nuser: "),
        "{debug}"
    );
    assert!(
        debug.contains("add(1, 2) should be 3, but it returned -1"),
        "{debug}"
    );
    // One comparison on the two distinct inputs; they differ on one, shown to the judge.
    assert_eq!(details.comparisons.len(), 1);
    let c = &details.comparisons[0];
    assert_eq!((c.a, c.b), (0, 1));
    assert_eq!(c.inputs, vec!["add(100, 1)", "add(1, 1)"]);
    assert_eq!(c.outputs_a, vec!["0", "2"]);
    assert_eq!(c.outputs_b, vec!["101", "2"]);
    assert_eq!(c.differing, 1);
    // Judged twice, each program shown first once.
    let verdicts = [text(&requests[3]), text(&requests[4])];
    assert!(verdicts
        .iter()
        .any(|v| v.contains("Input: add(100, 1)\nOutput of A: 0\nOutput of B: 101")));
    assert!(verdicts
        .iter()
        .any(|v| v.contains("Input: add(100, 1)\nOutput of A: 101\nOutput of B: 0")));
    assert!(verdicts.iter().all(|v| !v.contains("add(1, 1)")));
    // With both programs' code, each under the letter its outputs have.
    assert!(verdicts.iter().any(|v| v.contains(
        "Implementation A:\n```python\ndef add(a, b):\n    return a + b if a < 100 else 0\n```\n\nImplementation B:\n```python\ndef add(a, b):\n    return a + b\n```"
    ) && v.contains("Output of A: 0\nOutput of B: 101")));
    assert!(verdicts.iter().any(|v| v.contains(
        "Implementation A:\n```python\ndef add(a, b):\n    return a + b\n```\n\nImplementation B:\n```python\ndef add(a, b):\n    return a + b if a < 100 else 0\n```"
    ) && v.contains("Output of A: 101\nOutput of B: 0")));
    // The script answers "A" whichever program is shown first, certain each time: averaged over
    // both orders that position bias cancels out to an even verdict, which keeps A.
    assert_eq!(c.p_a_by_order, Some((1.0, 0.0)));
    assert_eq!(c.p_a, Some(0.5));
    assert_eq!(c.winner, Some(0));
    assert_eq!(details.selected, 0);
    assert!(details.clusters.is_empty() && details.probes.is_empty());
    assert!(solution.completion.contains("a < 100"));
    assert!(details.sandbox_ms > 0);
    assert_eq!(backend.remaining(), 0);
    assert_eq!(solution.candidates.len(), 2);
}

#[tokio::test]
async fn programs_too_long_to_show_the_judge_get_no_verdict_and_a_keeps_on() {
    // Two samples that pass the public tests and differ from 100 on, in a window that holds
    // the samples' and the inputs' prompts (and the short reply to the latter) but not the
    // verdicts', which show both programs and their outputs.
    let script = || {
        vec![
            fenced("return a + b if a < 100 else 0"),
            fenced("return a + b"),
            ">>> add(100, 1)".to_string(),
            "A".to_string(),
            "A".to_string(),
        ]
    };
    let config = SStarConfig {
        n: NonZeroUsize::MIN.saturating_add(1),
        debug_rounds: 0,
        selection: CodeSelection::Knockout,
        ..SStarConfig::default()
    };
    let measure = Arc::new(ScriptedBackend::new(script()));
    solve_add(config.clone(), &measure).await;
    let lengths = prompt_lengths(&measure);
    let window = lengths[1] + ">>> add(100, 1)".len() + 1;
    assert!(
        lengths.len() == 4 && lengths[0] + 60 < window && lengths[2..].iter().all(|&l| l >= window),
        "{lengths:?}"
    );
    let backend = Arc::new(ScriptedBackend::new(script()).with_context(window));
    let solution = solve_add(config, &backend).await;
    assert_eq!(backend.requests().len(), 2, "no verdict is asked for");
    let details: SStarDetails = serde_json::from_value(solution.details.clone()).unwrap();
    let c = &details.comparisons[0];
    assert_eq!((c.differing, c.p_a, c.winner), (1, None, Some(0)));
    assert_eq!(details.selected, 0);
}

#[tokio::test]
async fn no_room_to_ask_for_inputs_leaves_selection_without_a_verdict_not_a_failed_problem() {
    // A window that holds the samples' prompts and replies, not the prompt asking for inputs
    // that tell the two programs apart (it shows both): that pair gets no inputs, and the
    // knockout goes on as when the model writes none. It failed the problem before.
    let config = SStarConfig {
        n: NonZeroUsize::MIN.saturating_add(1),
        debug_rounds: 0,
        selection: CodeSelection::Knockout,
        ..SStarConfig::default()
    };
    let samples = || {
        vec![
            fenced("return a + b if a < 100 else 0"),
            fenced("return a + b"),
        ]
    };
    let mut script = samples();
    script.extend([">>> add(100, 1)", "A", "A"].map(String::from));
    let measure = Arc::new(ScriptedBackend::new(script));
    solve_add(config.clone(), &measure).await;
    let lengths = prompt_lengths(&measure);
    // One request for both samples, then the one asking for inputs.
    let window = lengths[0] + samples().iter().map(String::len).max().unwrap();
    assert!(lengths.len() == 4 && lengths[1] >= window, "{lengths:?}");
    let backend = Arc::new(ScriptedBackend::new(samples()).with_context(window));
    let solution = solve_add(config, &backend).await;
    assert_eq!(backend.requests().len(), 1, "only the samples are sent");
    let details: SStarDetails = serde_json::from_value(solution.details.clone()).unwrap();
    let c = &details.comparisons[0];
    assert!(c.inputs.is_empty());
    assert_eq!((c.differing, c.p_a, c.winner), (0, None, Some(0)));
    assert_eq!(details.selected, 0);
    assert!(solution.completion.contains("a < 100"));
}

#[tokio::test]
async fn no_room_to_ask_for_inputs_in_a_round_robin_keeps_the_earliest() {
    // The prompt asking for inputs for the problem does not fit: no probes, and no tournament
    // (each pair's prompt, longer still, would not fit either).
    let samples = round_robin_samples();
    let config = SStarConfig {
        n: NonZeroUsize::new(4).unwrap(),
        debug_rounds: 0,
        ..SStarConfig::default()
    };
    let (measure, _) = round_robin(&[">>> add(100, 1)", ">>> add(-1, 1)", "A", "B"]).await;
    let lengths = prompt_lengths(&measure);
    let longest_reply = samples.iter().map(String::len).max().unwrap();
    // One request for the four samples, then the one asking for inputs.
    let window = lengths[0] + longest_reply;
    assert!(lengths[1] >= window, "{lengths:?}, window {window}");
    let backend = Arc::new(ScriptedBackend::new(samples).with_context(window));
    let solution = solve_add(config, &backend).await;
    assert_eq!(backend.requests().len(), 1, "only the samples are sent");
    let details: SStarDetails = serde_json::from_value(solution.details.clone()).unwrap();
    assert!(details.probes.is_empty() && details.clusters.is_empty());
    assert!(details.comparisons.is_empty(), "{:?}", details.comparisons);
    assert_eq!(details.selected, 0);
}

/// Samples for the round robin: 0 is wrong from 100 on, 1 and 2 are right (differently
/// written), 3 fails the public tests and is no candidate.
fn round_robin_samples() -> Vec<String> {
    vec![
        fenced("return a + b if a < 100 else 0"),
        fenced("return a + b"),
        fenced("return b + a"),
        fenced("return a - b"),
    ]
}

/// S* with default selection over `round_robin_samples` and then `replies`.
async fn round_robin(replies: &[&str]) -> (Arc<ScriptedBackend>, SStarDetails) {
    round_robin_over(round_robin_samples(), replies).await
}

/// S* with default selection over `samples` and then `replies`.
async fn round_robin_over(
    mut script: Vec<String>,
    replies: &[&str],
) -> (Arc<ScriptedBackend>, SStarDetails) {
    script.extend(replies.iter().map(|r| r.to_string()));
    let backend = Arc::new(ScriptedBackend::new(script));
    let config = SStarConfig {
        n: NonZeroUsize::new(4).unwrap(),
        debug_rounds: 0,
        ..SStarConfig::default()
    };
    let solution = solve_add(config, &backend).await;
    let details = serde_json::from_value(solution.details).unwrap();
    (backend, details)
}

#[tokio::test]
async fn debugging_that_outgrows_the_context_window_keeps_the_best_attempt() {
    let config = SStarConfig {
        n: NonZeroUsize::MIN,
        debug_rounds: 2,
        ..SStarConfig::default()
    };
    // The first prompt's length (a token a byte), from a run without a window.
    let measure = Arc::new(ScriptedBackend::new([fenced("return a + b")]));
    solve_add(config.clone(), &measure).await;
    let first = measure.prompt_tokens(&measure.requests()[0].prompt);
    // Room for the first attempt, not for the rewrite's prompt (the attempt and its feedback).
    let backend = Arc::new(
        ScriptedBackend::new([fenced("return a - b"), fenced("return a + b")])
            .with_context(first + 80),
    );
    let solution = solve_add(config, &backend).await;
    assert_eq!(backend.requests().len(), 1, "the rewrite is not sent");
    let details: SStarDetails = serde_json::from_value(solution.details.clone()).unwrap();
    assert_eq!(details.samples[0].rounds.len(), 1);
    assert!(
        solution.completion.contains("return a - b"),
        "{}",
        solution.completion
    );
}

#[tokio::test]
async fn adaptive_input_synthesis_clusters_by_outputs_then_judges_each_pair_of_clusters() {
    // The judge's two answers (program 0's cluster shown first, then the other first), the
    // winner, and the sample chosen.
    let cases = [
        // A, then B: it prefers the wrong program (shown first, then second) in both orders,
        // and that beats the majority.
        (["A", "B"], Some(0), 0, [1, 0]),
        // A both times: it prefers whichever comes first, which is no verdict; the larger
        // cluster (two programs that behave alike) stands, though it is not the earliest.
        (["A", "A"], None, 1, [0, 0]),
        // B, then A: it prefers program 1 (shown second, then first) in both orders: its
        // cluster wins.
        (["B", "A"], Some(1), 1, [0, 1]),
    ];
    for (answers, winner, selected, wins) in cases {
        let (backend, details) = round_robin(&[
            // Inputs for the problem: 1 and 2 return 101 and 5, 0 returns 0 and 5.
            ">>> add(100, 1)\n>>> add(2, 3)",
            // Inputs for the pair: one already run, one on which they agree.
            ">>> add(100, 1)\n>>> add(-1, 1)",
            answers[0],
            answers[1],
        ])
        .await;
        assert_eq!(backend.remaining(), 0, "{answers:?}");
        let requests = backend.requests();
        assert!(text(&requests[1]).contains("a wrong implementation would likely get wrong"));
        assert_eq!(details.probes, vec!["add(100, 1)", "add(2, 3)"]);
        let clusters: Vec<(Vec<usize>, Vec<String>, usize)> = details
            .clusters
            .iter()
            .map(|c| (c.samples.clone(), c.outputs.clone(), c.wins))
            .collect();
        assert_eq!(
            clusters,
            vec![
                (vec![0], vec!["0".to_string(), "5".to_string()], wins[0]),
                (
                    vec![1, 2],
                    vec!["101".to_string(), "5".to_string()],
                    wins[1]
                ),
            ],
            "{answers:?}"
        );
        // One comparison for the two clusters, by their first samples: the input they were
        // known to disagree on, then the pair's new one.
        assert_eq!(details.comparisons.len(), 1);
        let c = &details.comparisons[0];
        assert_eq!((c.a, c.b), (0, 1));
        assert_eq!(c.inputs, vec!["add(100, 1)", "add(-1, 1)"]);
        assert_eq!(c.outputs_a, vec!["0", "0"]);
        assert_eq!(c.outputs_b, vec!["101", "0"]);
        assert_eq!(c.differing, 1);
        assert_eq!(c.winner, winner, "{answers:?}");
        let shown = text(&requests[3]);
        assert!(
            shown.contains("Input: add(100, 1)\nOutput of A: 0\nOutput of B: 101"),
            "{shown}"
        );
        assert!(!shown.contains("add(-1, 1)"), "{shown}");
        assert_eq!(details.selected, selected, "{answers:?}");
    }
}

#[tokio::test]
async fn a_judge_given_in_code_judges_and_its_calls_count() {
    // The policy writes the samples and the inputs; the judge (a model already loaded, shared)
    // answers the comparison: A, then B, program 0 both times.
    let mut script = round_robin_samples();
    script.extend(
        [
            ">>> add(100, 1)\n>>> add(2, 3)",
            ">>> add(100, 1)\n>>> add(-1, 1)",
        ]
        .map(String::from),
    );
    let policy = Arc::new(ScriptedBackend::new(script));
    let judge = Arc::new(ScriptedBackend::new(["A", "B"]));
    let strategy = s_star(SStarConfig {
        n: NonZeroUsize::new(4).unwrap(),
        debug_rounds: 0,
        ..SStarConfig::default()
    })
    .with_judge(judge.clone());
    let solution = solve(
        &strategy,
        &add_problem(),
        policy.clone(),
        Budget::unlimited(),
    )
    .await
    .unwrap();
    assert_eq!((policy.remaining(), judge.remaining()), (0, 0));
    assert_eq!(judge.requests().len(), 2);
    let details: SStarDetails = serde_json::from_value(solution.details).unwrap();
    assert_eq!(details.comparisons[0].winner, Some(0));
    assert_eq!(details.selected, 0);
    assert_eq!(
        solution.usage.calls,
        (policy.requests().len() + judge.requests().len()) as u64
    );
}

#[tokio::test]
async fn samples_that_wrote_the_same_program_each_count_toward_its_cluster() {
    // Three samples wrote one program: it runs once, and its cluster counts three samples.
    let samples = vec![
        fenced("return a + b if a < 100 else 0"),
        fenced("return a + b"),
        fenced("return a + b"),
        fenced("return a + b"),
    ];
    let (backend, details) = round_robin_over(
        samples,
        &[
            ">>> add(100, 1)\n>>> add(2, 3)",
            ">>> add(100, 1)\n>>> add(-1, 1)",
            // No verdict (whichever is shown first): the larger cluster stands.
            "A",
            "A",
        ],
    )
    .await;
    assert_eq!(backend.remaining(), 0);
    let clusters: Vec<Vec<usize>> = details.clusters.iter().map(|c| c.samples.clone()).collect();
    assert_eq!(clusters, vec![vec![0], vec![1, 2, 3]]);
    assert_eq!(details.comparisons.len(), 1);
    assert_eq!(details.comparisons[0].winner, None);
    assert_eq!(details.selected, 1);
}

#[tokio::test]
async fn candidates_that_agree_on_every_synthesised_input_are_one_cluster_and_never_judged() {
    let (backend, details) = round_robin(&[">>> add(1, 1)\n>>> add(-2, 7)"]).await;
    assert_eq!(backend.requests().len(), 2, "samples, inputs: no judge");
    let samples: Vec<Vec<usize>> = details.clusters.iter().map(|c| c.samples.clone()).collect();
    assert_eq!(samples, vec![vec![0, 1, 2]]);
    assert!(details.comparisons.is_empty());
    assert_eq!(details.selected, 0);

    // Where no input can be read from the model's reply, every candidate stands alone and each
    // pair is compared on inputs of its own.
    let (backend, details) = round_robin(&[
        "I cannot think of any.",
        "No inputs either.",
        "No inputs either.",
        "No inputs either.",
    ])
    .await;
    assert!(details.probes.is_empty());
    assert_eq!(details.clusters.len(), 3);
    let pairs: Vec<(usize, usize, usize)> = details
        .comparisons
        .iter()
        .map(|c| (c.a, c.b, c.differing))
        .collect();
    assert_eq!(pairs, vec![(0, 1, 0), (0, 2, 0), (1, 2, 0)]);
    assert!(details.comparisons.iter().all(|c| c.winner.is_none()));
    assert_eq!(details.selected, 0);
    assert_eq!(backend.remaining(), 0);
}

#[tokio::test]
async fn an_input_only_some_programs_can_run_neither_parts_clusters_nor_reaches_the_judge() {
    // Samples 0 and 1 write one function, 0 after `import string`: a call that names `string`
    // runs for 0 and is skipped for the others (an undefined name). It parted 0 from 1 into two
    // clusters, and was shown to the judge as "(not run: ...)" beside a value.
    let samples = vec![
        "Here it is:\n```python\nimport string\n\ndef add(a, b):\n    return a + b\n```\n"
            .to_string(),
        fenced("return a + b"),
        fenced("return a + b if a < 100 else 0"),
        fenced("return a - b"),
    ];
    let (backend, details) = round_robin_over(
        samples,
        &[
            ">>> add(len(string.digits), 1)\n>>> add(100, 1)",
            // The pair's: one only sample 0 can run, one on which both agree.
            ">>> add(len(string.digits), 100)\n>>> add(-1, 1)",
            // No verdict (whichever is shown first): the larger cluster stands.
            "A",
            "A",
        ],
    )
    .await;
    assert_eq!(backend.remaining(), 0);
    assert_eq!(details.probes, vec!["add(100, 1)"]);
    let clusters: Vec<Vec<usize>> = details.clusters.iter().map(|c| c.samples.clone()).collect();
    assert_eq!(clusters, vec![vec![0, 1], vec![2]]);
    assert_eq!(details.comparisons.len(), 1);
    let c = &details.comparisons[0];
    assert_eq!((c.a, c.b), (0, 2));
    assert_eq!(c.inputs, vec!["add(100, 1)", "add(-1, 1)"]);
    assert_eq!(c.outputs_a, vec!["101", "0"]);
    assert_eq!(c.outputs_b, vec!["0", "0"]);
    assert_eq!(c.differing, 1);
    for request in &backend.requests()[3..] {
        let shown = text(request);
        assert!(
            !shown.contains("string.digits") && !shown.contains("not run"),
            "{shown}"
        );
    }
    assert_eq!(details.selected, 0);
}

#[tokio::test]
async fn feedback_last_keeps_only_the_latest_attempt() {
    for (feedback, lengths) in [(Feedback::All, [3, 5]), (Feedback::Last, [3, 3])] {
        let backend = Arc::new(ScriptedBackend::new([
            fenced("return a - b"),
            fenced("return a * b"),
            fenced("return 0"),
        ]));
        let config = SStarConfig {
            n: NonZeroUsize::MIN,
            debug_rounds: 2,
            feedback,
            selection: CodeSelection::PublicTests,
            ..SStarConfig::default()
        };
        let solution = solve_add(config, &backend).await;
        let requests = backend.requests();
        assert_eq!(requests.len(), 3, "{feedback:?}");
        assert_eq!([turns(&requests[1]), turns(&requests[2])], lengths);
        let last = text(&requests[2]);
        // The latest attempt is always shown; the first only with the whole history.
        assert!(last.contains("return a * b"));
        assert_eq!(last.contains("return a - b"), feedback == Feedback::All);
        let details: SStarDetails = serde_json::from_value(solution.details).unwrap();
        let passed: Vec<usize> = details.samples[0].rounds.iter().map(|r| r.passed).collect();
        // a*b passes add(2, 2) only.
        assert_eq!(passed, vec![0, 1, 0]);
        assert!(!details.samples[0].passes_public);
        // The last rewrite is worse than the one before: selection keeps the better one.
        assert_eq!(details.samples[0].best_round, 1);
        assert!(solution.completion.contains("return a * b"));
    }
}

#[tokio::test]
async fn a_rewrite_that_copies_the_attempt_is_marked() {
    let backend = Arc::new(ScriptedBackend::new([
        fenced("return a - b"),
        format!("Sure.\n{}", fenced("return a - b")),
    ]));
    let config = SStarConfig {
        n: NonZeroUsize::MIN,
        debug_rounds: 1,
        ..SStarConfig::default()
    };
    let solution = solve_add(config, &backend).await;
    let details: SStarDetails = serde_json::from_value(solution.details).unwrap();
    let repeated: Vec<bool> = details.samples[0]
        .rounds
        .iter()
        .map(|r| r.repeated)
        .collect();
    assert_eq!(repeated, vec![false, true]);
    assert!(text(&backend.requests()[1]).contains("do not repeat the same code"));
}

#[tokio::test]
async fn public_tests_selection_prefers_the_most_passing_sample() {
    let backend = Arc::new(ScriptedBackend::new([
        fenced("return a - b"),
        fenced("return a * b"),
        fenced("return a + b"),
        fenced("return a + b + 0"),
    ]));
    let config = SStarConfig {
        n: NonZeroUsize::MIN.saturating_add(3),
        debug_rounds: 0,
        selection: CodeSelection::PublicTests,
        ..SStarConfig::default()
    };
    let strategy = s_star(config);
    let solution = solve(&strategy, &add_problem(), backend, Budget::unlimited())
        .await
        .unwrap();
    let details: SStarDetails = serde_json::from_value(solution.details).unwrap();
    assert_eq!(details.selected, 2);
    assert!(details.comparisons.is_empty());
    let scores: Vec<Option<f64>> = solution.candidates.iter().map(|c| c.score).collect();
    assert_eq!(scores, vec![Some(0.0), Some(0.5), Some(1.0), Some(1.0)]);
}

#[tokio::test]
async fn a_problem_without_code_is_an_error() {
    let backend = Arc::new(ScriptedBackend::new(["x"]));
    let strategy = SStar::new(SStarConfig::default()).unwrap();
    let err = solve(
        &strategy,
        &Problem::new("p1", "What is 2+3?"),
        backend,
        Budget::unlimited(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("`p1` is not a code problem"),
        "{err}"
    );
}

#[test]
fn calls_are_read_from_doctest_lines_and_bare_calls() {
    let text = "Here are inputs:\n>>> f([1, 2], ')')\n2. `f((3), \"a)\")` checks quotes\ndef f(x):\n>>> f([1, 2], ')')\nf(4)";
    assert_eq!(
        calls_of(text, "f", 5),
        vec!["f([1, 2], ')')", "f((3), \"a)\")", "f(4)"]
    );
    assert_eq!(calls_of(text, "f", 1), vec!["f([1, 2], ')')"]);
    assert!(calls_of("no calls here", "f", 3).is_empty());
    // Other names ending in the entry point's are not its calls; every call on a line is.
    assert_eq!(
        calls_of("x = my_f(1) + obj.f(2); f(3) == f(4)", "f", 5),
        vec!["f(3)", "f(4)"]
    );
    // `>>>` lines before calls named in prose; the prompt's placeholder echoed is no input;
    // a call inside another is part of it.
    let text = "Inputs for add(a, b):\n>>> add(...)\n>>> add(1, 2)\n>>> add(add(5, -5), 0)";
    assert_eq!(
        calls_of(text, "add", 3),
        vec!["add(1, 2)", "add(add(5, -5), 0)", "add(a, b)"]
    );
}

#[test]
fn feedback_names_each_failure() {
    let round = Round {
        code: "def f(x):\n    return x\n".into(),
        tokens: 0,
        passed: 1,
        total: 3,
        load_error: None,
        tests: vec![
            TestLine {
                call: "f(1)".into(),
                expected: Some("1".into()),
                status: "passed".into(),
                got: Some("1".into()),
            },
            TestLine {
                call: "f(2)".into(),
                expected: Some("4".into()),
                status: "failed".into(),
                got: Some("2".into()),
            },
            TestLine {
                call: "f(0)".into(),
                expected: Some("0".into()),
                status: "error".into(),
                got: Some("ZeroDivisionError: division by zero".into()),
            },
        ],
        sandbox_ms: 0,
        repeated: false,
    };
    let text = feedback_message(&round, "f");
    assert!(text.contains("passed 1 of 3"), "{text}");
    assert!(
        text.contains("f(2) should be 4, but it returned 2"),
        "{text}"
    );
    assert!(
        text.contains("f(0) should be 0, but it raised ZeroDivisionError"),
        "{text}"
    );
    assert!(!text.contains("f(1)"), "{text}");
}

#[test]
fn config_defaults_and_checks() {
    let config: SStarConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(config, SStarConfig::default());
    assert_eq!(config.n.get(), 4);
    let bad: SStarConfig = serde_json::from_str("{\"test_timeout_secs\": 0}").unwrap();
    assert!(bad.validate().is_err());
    // Would overflow a Duration when the verifier is built.
    let huge: SStarConfig = serde_json::from_str("{\"test_timeout_secs\": 1e20}").unwrap();
    assert!(huge.validate().is_err());
    let err = serde_json::from_str::<SStarConfig>("{\"feedback\": \"some\"}").unwrap_err();
    assert!(err.to_string().contains("unknown variant"), "{err}");
}

#[tokio::test]
async fn a_sandbox_that_cannot_isolate_fails_before_any_sample_is_paid_for() {
    let backend = Arc::new(ScriptedBackend::new([fenced("return a + b")]));
    let sandbox = ponder_prm::Sandbox::new()
        .with_unshare("/nonexistent/ponder-s-star-test/unshare")
        .allow_unisolated(false);
    let strategy = SStar::with_sandbox(SStarConfig::default(), sandbox).unwrap();
    let err = solve(
        &strategy,
        &add_problem(),
        backend.clone(),
        Budget::unlimited(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("allow_unisolated = true"), "{err}");
    assert!(backend.requests().is_empty(), "no sample was drawn");
}

#[tokio::test]
async fn the_wall_time_budget_ends_a_test_run_in_flight() {
    // The only sample sleeps 20 s as it loads; the budget allows 1.5 s of wall time. The run
    // is ended at the deadline, not waited for, and the sample is kept, marked untested. So
    // too nested (S* inside best-of-N, a sample's context): that context's own meter has no
    // budget, its parent's has the wall time, and that deadline ends the run.
    for nested in [false, true] {
        let backend = Arc::new(ScriptedBackend::new([
            "```python\nimport time\ntime.sleep(20)\ndef add(a, b):\n    return a + b\n```\n",
        ]));
        let strategy = s_star(SStarConfig {
            n: NonZeroUsize::new(1).unwrap(),
            ..SStarConfig::default()
        });
        // The sandbox self-check first, so that its time is not the budget's.
        strategy.verifier.sandbox().self_check().await.unwrap();
        let started = std::time::Instant::now();
        let budget = Budget::unlimited().with_max_wall(Duration::from_millis(1500));
        let solution = if nested {
            let cx = ponder_engine::Context::new(backend.clone(), budget);
            cx.solve_sample(&strategy, &add_problem(), 0).await
        } else {
            solve(&strategy, &add_problem(), backend.clone(), budget).await
        }
        .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "nested: {nested}, {:?}",
            started.elapsed()
        );
        assert_eq!(solution.stop_reason, ponder_engine::StopReason::TimeBudget);
        let details: SStarDetails = serde_json::from_value(solution.details).unwrap();
        let first = &details.samples[0].rounds[0];
        assert!(
            first
                .load_error
                .as_deref()
                .is_some_and(|e| e.contains("not tested")),
            "{first:?}"
        );
        assert!(solution.completion.contains("def add"));
    }
}

#[tokio::test]
async fn a_rewrite_whose_request_fails_ends_that_samples_debugging_not_the_problem() {
    use ponder_engine::scripted::Reply;
    let backend = Arc::new(ScriptedBackend::from_replies([
        Reply::Text(fenced("return a + b")),
        Reply::Text(fenced("return a - b")),
        Reply::Fail("boom".into()),
    ]));
    let config = SStarConfig {
        n: NonZeroUsize::new(2).unwrap(),
        debug_rounds: 1,
        selection: CodeSelection::PublicTests,
        ..SStarConfig::default()
    };
    let solution = solve_add(config, &backend).await;
    assert_eq!(backend.remaining(), 0);
    assert!(solution.completion.contains("return a + b"));
    let details: SStarDetails = serde_json::from_value(solution.details).unwrap();
    assert_eq!(details.selected, 0);
    assert_eq!(details.samples[0].error, None);
    assert!(
        details.samples[1]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("boom")),
        "{:?}",
        details.samples[1]
    );
    assert_eq!(details.samples[1].rounds.len(), 1);
}

#[tokio::test]
async fn a_comparison_whose_judge_fails_has_no_verdict_and_says_why() {
    use ponder_engine::scripted::Reply;
    let mut script: Vec<Reply> = round_robin_samples().into_iter().map(Reply::Text).collect();
    script.extend([
        Reply::Text(">>> add(100, 1)\n>>> add(2, 3)".into()),
        Reply::Text(">>> add(-1, 1)".into()),
        Reply::Fail("judge down".into()),
        Reply::Text("A".into()),
    ]);
    let backend = Arc::new(ScriptedBackend::from_replies(script));
    let config = SStarConfig {
        n: NonZeroUsize::new(4).unwrap(),
        debug_rounds: 0,
        ..SStarConfig::default()
    };
    let solution = solve_add(config, &backend).await;
    let details: SStarDetails = serde_json::from_value(solution.details).unwrap();
    assert_eq!(details.comparisons.len(), 1);
    let c = &details.comparisons[0];
    assert_eq!((c.winner, c.p_a), (None, None));
    assert!(
        c.error.as_deref().is_some_and(|e| e.contains("judge down")),
        "{c:?}"
    );
    // No verdict: the larger cluster stands, as in the tie.
    assert_eq!(details.selected, 1);
}

#[tokio::test]
async fn a_judge_whose_probabilities_cannot_be_read_gives_no_verdict_not_a_failed_problem() {
    // A server that leaves out the top log-probabilities: the comparison's verdict cannot be
    // read (the judge's call is unsupported there), so it has none, and says why; the problem
    // failed there, after every sample was paid for.
    let mut script = round_robin_samples();
    script.extend([
        ">>> add(100, 1)\n>>> add(2, 3)".to_string(),
        ">>> add(-1, 1)".to_string(),
        "A".to_string(),
        "A".to_string(),
    ]);
    let backend = Arc::new(ScriptedBackend::new(script).without_top_logprobs());
    let config = SStarConfig {
        n: NonZeroUsize::new(4).unwrap(),
        debug_rounds: 0,
        ..SStarConfig::default()
    };
    let solution = solve_add(config, &backend).await;
    let details: SStarDetails = serde_json::from_value(solution.details).unwrap();
    assert_eq!(details.comparisons.len(), 1);
    let c = &details.comparisons[0];
    assert_eq!((c.winner, c.p_a), (None, None));
    assert!(
        c.error
            .as_deref()
            .is_some_and(|e| e.contains("top_logprobs")),
        "{c:?}"
    );
    assert_eq!(details.selected, 1);
}

/// A scripted backend without a tokenizer, like an OpenAI-compatible server without
/// `/tokenize`.
struct NoTokenizer(Arc<ScriptedBackend>);

#[async_trait::async_trait]
impl ponder_engine::Backend for NoTokenizer {
    async fn generate(&self, request: GenerationRequest) -> Result<ponder_engine::Generation> {
        self.0.generate(request).await
    }

    fn capabilities(&self) -> ponder_engine::Capabilities {
        self.0.capabilities()
    }

    async fn tokenize(&self, _: ponder_engine::TokenizeInput<'_>) -> Result<Vec<u32>> {
        Err(Error::Unsupported {
            backend: "scripted",
            operation: "tokenize",
        })
    }
}

#[tokio::test]
async fn a_judge_whose_tokens_cannot_be_read_gives_no_verdicts_not_a_failed_problem() {
    for selection in [
        CodeSelection::AdaptiveInputSynthesis,
        CodeSelection::Knockout,
    ] {
        let round_robin = selection == CodeSelection::AdaptiveInputSynthesis;
        let mut script = round_robin_samples();
        if round_robin {
            // Inputs to cluster by (the knockout asks for inputs per pair only).
            script.push(">>> add(100, 1)\n>>> add(2, 3)".into());
        }
        let scripted = Arc::new(ScriptedBackend::new(script));
        let config = SStarConfig {
            n: NonZeroUsize::new(4).unwrap(),
            debug_rounds: 0,
            selection,
            ..SStarConfig::default()
        };
        let solution = solve(
            &s_star(config),
            &add_problem(),
            Arc::new(NoTokenizer(Arc::clone(&scripted))),
            Budget::unlimited(),
        )
        .await
        .unwrap();
        let details: SStarDetails = serde_json::from_value(solution.details).unwrap();
        assert!(details.comparisons.is_empty(), "{selection:?}");
        assert_eq!(scripted.remaining(), 0, "{selection:?}");
        assert!(
            details
                .selection_errors
                .iter()
                .any(|e| e.starts_with("preparing the judge")),
            "{:?}",
            details.selection_errors
        );
        // Without verdicts: the larger cluster, or the earliest of the knockout.
        assert_eq!(details.selected, usize::from(round_robin), "{selection:?}");
    }
}
