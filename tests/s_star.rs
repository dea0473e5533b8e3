//! S* end to end on the real Qwen2.5-Coder-0.5B (the built-in `qwen2.5-coder-0.5b`, fetched on
//! first use) through mistral.rs, on HumanEval/0, with code run in the real sandbox.
//!
//! The model's three first samples are fixed (a logits processor writes them through the real
//! engine) so that every stage is sure to run: one is right, one passes the docstring examples
//! but is wrong in general (it only compares neighbours), one fails an example and must be
//! debugged. Everything after that (the rewrite from the test feedback, the synthesised
//! inputs, the judge's verdict) is the model's own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod common;
#[path = "support/isolation.rs"]
mod isolation;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::block_on;
use ponder::engine::scripted::Recorder;
use ponder::engine::{
    grade_candidates, solve_in, Backend, Budget, Capabilities, Context, EventKind, Generation,
    GenerationRequest, Grader, LogitsProcessor, ModelConfig, Problem, Result, TokenizeInput,
};
use ponder::prm::{HumanEvalGrader, Sandbox};
use ponder::strategies::{CodeSelection, SStar, SStarConfig, SStarDetails};

const RIGHT: &str = "```python\nfrom typing import List\n\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n    for i in range(len(numbers)):\n        for j in range(i + 1, len(numbers)):\n            if abs(numbers[i] - numbers[j]) < threshold:\n                return True\n    return False\n```";
const NEIGHBOURS: &str = "Here is the function:\n\n```python\ndef has_close_elements(numbers, threshold):\n    return any(abs(numbers[i] - numbers[i + 1]) < threshold for i in range(len(numbers) - 1))\n```";
const WRONG: &str = "def has_close_elements(numbers, threshold):\n    return False\n";

/// Makes the sequences of one request write `texts`, one each (told apart by their first
/// token, assigned in the order the engine asks), then end.
struct WritesEach {
    texts: Vec<Vec<u32>>,
    eos: u32,
    state: Mutex<(Option<usize>, usize)>,
}

impl LogitsProcessor for WritesEach {
    fn process(&self, logits: &mut [f32], context: &[u32]) {
        let mut state = self.state.lock().unwrap();
        let start = *state.0.get_or_insert(context.len());
        let written = &context[start.min(context.len())..];
        let which = if written.is_empty() {
            state.1 += 1;
            Some((state.1 - 1) % self.texts.len())
        } else {
            self.texts.iter().position(|t| t.starts_with(written))
        };
        let Some(which) = which else { return };
        let next = self.texts[which]
            .get(written.len())
            .copied()
            .unwrap_or(self.eos);
        for (i, l) in logits.iter_mut().enumerate() {
            if i != next as usize {
                *l = f32::NEG_INFINITY;
            }
        }
    }
}

/// The real backend, with the first request's samples written by [`WritesEach`].
struct FirstSamplesFixed {
    inner: Arc<dyn Backend>,
    texts: Vec<String>,
    used: AtomicBool,
}

#[async_trait]
impl Backend for FirstSamplesFixed {
    async fn generate(&self, mut request: GenerationRequest) -> Result<Generation> {
        if !self.used.swap(true, Ordering::SeqCst) {
            assert_eq!(request.n, self.texts.len());
            let mut texts = Vec::new();
            for text in &self.texts {
                texts.push(self.inner.tokenize(TokenizeInput::Piece(text)).await?);
            }
            let eos = self.inner.capabilities().eos_token_ids[0];
            request = request.with_logits_processor(Arc::new(WritesEach {
                texts,
                eos,
                state: Mutex::new((None, 0)),
            }));
        }
        self.inner.generate(request).await
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn tokenize(&self, input: TokenizeInput<'_>) -> Result<Vec<u32>> {
        self.inner.tokenize(input).await
    }

    async fn detokenize(&self, ids: &[u32]) -> Result<String> {
        self.inner.detokenize(ids).await
    }
}

#[test]
fn s_star_debugs_and_selects_on_humaneval_0_with_qwen() {
    let problems =
        Problem::load_jsonl(&common::repo::repo("examples/problems/humaneval-3.jsonl")).unwrap();
    let problem = problems.into_iter().next().unwrap();
    assert_eq!(
        problem.code.as_ref().unwrap().entry_point,
        "has_close_elements"
    );
    let qwen = block_on(
        ModelConfig {
            source: "qwen2.5-coder-0.5b".into(),
            device: common::device(),
            ..ModelConfig::default()
        }
        .load(),
    )
    .expect("loading qwen2.5-coder-0.5b");
    let backend = Arc::new(FirstSamplesFixed {
        inner: qwen,
        texts: vec![RIGHT.into(), NEIGHBOURS.into(), WRONG.into()],
        used: AtomicBool::new(false),
    });
    let config = SStarConfig {
        n: std::num::NonZeroUsize::new(3).unwrap(),
        debug_rounds: 1,
        selection: CodeSelection::AdaptiveInputSynthesis,
        max_tokens: std::num::NonZeroUsize::new(384).unwrap(),
        allow_unisolated: !isolation::namespaces_here(),
        ..SStarConfig::default()
    };
    let strategy = SStar::new(config).unwrap();
    let events = Recorder::new();
    let cx = Context::with_events(
        backend as Arc<dyn Backend>,
        Budget::unlimited(),
        events.events_of(&problem.id),
    );
    let solution = block_on(solve_in(&strategy, &problem, &cx)).expect("S* solve");
    let details: SStarDetails = serde_json::from_value(solution.details.clone()).unwrap();
    // The events follow the solve as it went: every test run, every comparison, the
    // selection last, and calls adding up to the usage.
    let kinds = events.kinds(&problem.id);
    let mut tested: Vec<(usize, usize, usize, usize)> = kinds
        .iter()
        .filter_map(|k| match k {
            EventKind::Tested {
                sample,
                round,
                passed,
                total,
            } => Some((*sample, *round, *passed, *total)),
            _ => None,
        })
        .collect();
    tested.sort_unstable();
    let rounds: Vec<(usize, usize, usize, usize)> = details
        .samples
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            s.rounds
                .iter()
                .enumerate()
                .map(move |(r, round)| (i, r, round.passed, round.total))
        })
        .collect();
    assert_eq!(tested, rounds);
    let compared: Vec<(usize, usize, Option<usize>)> = kinds
        .iter()
        .filter_map(|k| match k {
            EventKind::Compared { a, b, winner, .. } => Some((*a, *b, *winner)),
            _ => None,
        })
        .collect();
    let comparisons: Vec<(usize, usize, Option<usize>)> = details
        .comparisons
        .iter()
        .map(|c| (c.a, c.b, c.winner))
        .collect();
    assert_eq!(compared, comparisons);
    assert!(
        matches!(
            events.decisions(&problem.id).last(),
            Some(EventKind::Selected { .. })
        ),
        "{kinds:?}"
    );
    assert_eq!(
        events.call_tokens(&problem.id),
        solution.usage.total_tokens()
    );
    eprintln!(
        "{}",
        serde_json::to_string_pretty(&solution.details).unwrap()
    );

    // Generation: the three fixed samples, tested on the two docstring examples. Which choice
    // got which text is the engine's order of asking, so samples are told apart by their code.
    assert_eq!(details.public_tests.len(), 2);
    assert_eq!(details.samples.len(), 3);
    let find = |needle: &str| {
        details
            .samples
            .iter()
            .position(|s| s.rounds[0].code.contains(needle))
            .unwrap_or_else(|| panic!("no sample wrote {needle:?}"))
    };
    let (right, neighbours, wrong) = (
        find("for j in range"),
        find("numbers[i + 1]"),
        find("threshold):\n    return False"),
    );
    for i in [right, neighbours] {
        let s = &details.samples[i];
        assert_eq!(s.rounds.len(), 1, "passing samples are not debugged");
        assert!(s.passes_public);
    }
    // Debugging: the wrong sample fails `... 0.3) -> True`, and the model rewrote it from the
    // feedback (a 0.5B model may well copy its attempt; `repeated` says so).
    let debugged = &details.samples[wrong];
    assert_eq!(
        (debugged.rounds[0].passed, debugged.rounds[0].total),
        (1, 2)
    );
    assert_eq!(debugged.rounds.len(), 2, "one debug round");
    assert!(debugged.rounds[1].tokens > 0);
    // Selection: the samples passing both examples (distinct programs) clustered by their
    // outputs on inputs the model wrote for the problem, then each pair of clusters compared
    // once on those and on inputs written for the pair; every disagreement judged in both orders.
    let clustered: Vec<usize> = details
        .clusters
        .iter()
        .flat_map(|c| c.samples.clone())
        .collect();
    assert!(clustered.contains(&right) && clustered.contains(&neighbours));
    for c in &details.clusters {
        assert_eq!(c.outputs.len(), details.probes.len());
    }
    let k = details.clusters.len();
    assert_eq!(details.comparisons.len(), k * (k - 1) / 2);
    let wins: usize = details.clusters.iter().map(|c| c.wins).sum();
    assert_eq!(
        wins,
        details
            .comparisons
            .iter()
            .filter(|c| c.winner.is_some())
            .count()
    );
    for c in &details.comparisons {
        if !details.probes.is_empty() {
            assert!(c.differing > 0, "clusters differ on some input: {c:?}");
        }
        assert!(details.samples[c.a].passes_public && details.samples[c.b].passes_public);
        assert_eq!(c.inputs.len(), c.outputs_a.len());
        if c.differing > 0 {
            let p = c.p_a.expect("the judge ruled on differing outputs");
            let (first, second) = c.p_a_by_order.expect("both orders");
            assert!((p - (first + second) / 2.0).abs() < 1e-9);
        }
    }
    assert!(details.selected < 3);
    assert!(details.sandbox_ms > 0);
    assert!(
        solution.usage.calls >= 3 + details.comparisons.len() as u64,
        "samples, rewrite, inputs, and inputs for each comparison"
    );
    // The chosen program is graded with the hidden tests in the sandbox.
    let sandbox = Sandbox::new().allow_unisolated(!isolation::namespaces_here());
    let grader = HumanEvalGrader::new(sandbox);
    let grade = block_on(grader.grade(&problem, &solution)).unwrap();
    if details.selected == right {
        assert_eq!(grade, Some(true), "the right sample passes");
    } else if details.selected == neighbours {
        assert_eq!(
            grade,
            Some(false),
            "comparing neighbours only fails the hidden tests"
        );
    } else {
        assert!(grade.is_some(), "hidden tests ran");
    }
    // Every sample graded as if chosen: the right one passes, the neighbours-only one does not.
    let candidates = block_on(grade_candidates(&grader, &problem, &solution, grade))
        .unwrap()
        .expect("code candidates are graded");
    assert_eq!(candidates.graded, 3);
    assert!((1..=2).contains(&candidates.right), "{candidates:?}");
}
