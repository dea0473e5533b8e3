//! Best-of-N and the scorers on the real SmolLM2-135M.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::num::NonZeroUsize;
use std::sync::Arc;

use common::{block_on, smollm_dyn};
use ponder::engine::{
    Backend, Budget, Context, GenerationRequest, LogitsProcessor, Prompt, Scorer, TokenizeInput,
};
use ponder::prm::{
    JudgeConfig, JudgeMode, LlmJudge, PrmConfig, PrmFormat, ScoreReader, ScorerConfig, Select,
    TokenPrm,
};
use ponder::strategies::{BestOfN, BestOfNConfig, BestOfNDetails};
use ponder::Problem;

#[test]
fn best_of_four_scores_every_candidate_and_selects_by_the_rule() {
    for select in [Select::Weighted, Select::Naive, Select::Majority] {
        let config = BestOfNConfig {
            n: NonZeroUsize::new(4).unwrap(),
            select,
            scorer: Some(ScorerConfig::LlmJudge(JudgeConfig::default())),
            inner: Box::new(ponder::StrategyConfig::Direct(
                ponder::strategies::DirectConfig {
                    temperature: 0.8,
                    max_tokens: NonZeroUsize::new(64).unwrap(),
                    ..Default::default()
                },
            )),
            ..BestOfNConfig::default()
        };
        let strategy = BestOfN::new(config).unwrap();
        let problem = Problem::new("bon", "What is 6 + 7?").with_reference("13");
        let solution = block_on(ponder::engine::solve(
            &strategy,
            &problem,
            smollm_dyn(),
            Budget::unlimited(),
        ))
        .unwrap();
        let d: BestOfNDetails = serde_json::from_value(solution.details.clone()).unwrap();
        assert_eq!(d.candidates.len(), 4);
        for c in &d.candidates {
            let score = c.score.expect("every candidate scored");
            assert!((0.0..=1.0).contains(&score), "{score}");
            assert!(c.tokens > 0);
        }
        // The selection is what the rule gives on the reported candidates.
        let answers: Vec<Option<String>> = d.candidates.iter().map(|c| c.answer.clone()).collect();
        let rewards: Vec<Option<f64>> = d.candidates.iter().map(|c| c.score).collect();
        assert_eq!(
            d.selected,
            select.apply(&answers, &rewards).index,
            "{select:?}"
        );
        assert_eq!(
            solution.answer,
            d.selected.and_then(|i| d.candidates[i].answer.clone())
        );
        // One sampling request of n = 4 plus one judge request per candidate.
        // (Identical candidates share one judgement.)
        assert!(
            (2..=5).contains(&solution.usage.calls),
            "{select:?}: {}",
            solution.usage.calls
        );
    }
}

fn steps() -> Vec<Vec<String>> {
    vec![
        vec![
            "Tom has 3 apples.".into(),
            "He buys 4 more, so 3 + 4 = 7.".into(),
            "The answer is 7.".into(),
        ],
        vec![
            "Tom has 3 apples.".into(),
            "He buys 4 more, so 3 + 4 = 9.".into(),
        ],
    ]
}

#[test]
fn token_prm_reads_every_step_in_both_formats() {
    for format in [PrmFormat::MathShepherd, PrmFormat::Rlhflow] {
        // SmolLM2 stands in for a PRM; "+" and "-" ids come from its own tokenizer.
        let prm = TokenPrm::new(PrmConfig {
            format,
            ..PrmConfig::default()
        });
        let cx = Context::new(smollm_dyn(), Budget::unlimited());
        let scores =
            block_on(prm.score(&cx, "Tom has 3 apples and buys 4 more. How many?", &steps()))
                .unwrap();
        assert_eq!(scores.len(), 2);
        assert_eq!(scores[0].len(), 3, "{format:?}");
        assert_eq!(scores[1].len(), 2, "{format:?}");
        for s in scores.iter().flatten() {
            // A step never read is NaN, which fails this too.
            assert!(*s > 0.0 && *s < 1.0, "{format:?}: {s}");
        }
        // Not all the same number: they were read at different places.
        assert!(
            scores[0].windows(2).any(|w| (w[0] - w[1]).abs() > 1e-6),
            "{format:?}: {scores:?}"
        );
        let calls = match format {
            // One forced decode per candidate.
            PrmFormat::MathShepherd => 2,
            // One request per step: a forced end-of-turn token would end the decode.
            PrmFormat::Rlhflow => 5,
        };
        assert_eq!(cx.meter().usage().calls, calls, "{format:?}");

        // Scores are remembered: the same steps again cost nothing and read the same; a path
        // grown by a step reads that step alone (one call, the path so far its prompt, one
        // token generated), as a search rescoring its beams each round does.
        let question = "Tom has 3 apples and buys 4 more. How many?";
        let before = cx.meter().usage();
        let again = block_on(prm.score(&cx, question, &steps())).unwrap();
        assert_eq!(again, scores, "{format:?}");
        assert_eq!(cx.meter().usage().calls, before.calls, "{format:?}");
        let mut grown = steps()[1].clone();
        grown.push("So he has 9 apples.".into());
        let grown = block_on(prm.score(&cx, question, &[grown])).unwrap();
        assert_eq!(grown[0][..2], scores[1][..], "{format:?}");
        assert!(
            grown[0][2] > 0.0 && grown[0][2] < 1.0,
            "{format:?}: {grown:?}"
        );
        let after = cx.meter().usage();
        assert_eq!(
            (
                after.calls - before.calls,
                after.completion_tokens - before.completion_tokens
            ),
            (1, 1),
            "{format:?}"
        );
    }

    // Math-Shepherd's text is tokenized whole and read at its step tags (the last token of
    // " ки"): in a real tokenizer's reading of the whole text the tag shows once per step.
    let backend = smollm_dyn();
    let tag = block_on(backend.tokenize(TokenizeInput::Piece(" ки"))).unwrap();
    let whole = block_on(
        backend.tokenize(TokenizeInput::Prompt(&Prompt::Text(
            "How many? Tom has 3 apples. ки\nHe buys 4 more, so 3 + 4 = 7. ки\nThe answer is 7. ки"
                .into(),
        ))),
    )
    .unwrap();
    let tags = whole.iter().filter(|&id| Some(id) == tag.last()).count();
    assert_eq!(tags, 3, "{tag:?} in {whole:?}");

    // Each step's score in the one forced decode is what the model says after that step's
    // tag with nothing forced: the logits at the end of a prompt cut right after the tag.
    let question = "How many?";
    let three = [steps()[0].clone()];
    let cx = Context::new(smollm_dyn(), Budget::unlimited());
    let forced =
        block_on(TokenPrm::new(PrmConfig::default()).score(&cx, question, &three)).unwrap();
    let (plus, minus) = (
        block_on(backend.tokenize(TokenizeInput::Piece("+"))).unwrap(),
        block_on(backend.tokenize(TokenizeInput::Piece("-"))).unwrap(),
    );
    let after_tags: Vec<usize> = whole
        .iter()
        .enumerate()
        .filter(|&(_, id)| Some(id) == tag.last())
        .map(|(at, _)| at + 1)
        .collect();
    for (k, &end) in after_tags.iter().enumerate() {
        let reader = Arc::new(ScoreReader::new(
            Vec::new(),
            vec![0],
            plus.clone(),
            minus.clone(),
        ));
        let request = GenerationRequest::new(Prompt::Tokens(whole[..end].to_vec()))
            .with_max_tokens(1)
            .with_logits_processor(Arc::clone(&reader) as Arc<dyn LogitsProcessor>);
        block_on(backend.generate(request)).unwrap();
        let alone = reader.scores()[0].unwrap();
        // Prefill and forced decoding take different kernels: close, not bit-equal (0.13
        // apart in log-odds at most, seen here; a read one token off was 1.5 away).
        let log_odds = |p: f64| (p / (1.0 - p)).ln();
        assert!(
            (log_odds(forced[0][k]) - log_odds(alone)).abs() < 0.4,
            "step {k}: forced {} vs alone {alone} ({forced:?})",
            forced[0][k]
        );
    }

    // A label id past the model's vocabulary is an error naming it, not every step scored 0.
    let past = TokenPrm::new(PrmConfig {
        good_id: Some(10_000_000),
        bad_id: Some(minus[0]),
        ..PrmConfig::default()
    });
    let err = block_on(past.score(&cx, question, &three))
        .unwrap_err()
        .to_string();
    assert!(err.contains("good_id = 10000000 is not a token"), "{err}");

    // A PRM model of its own (here given in code) is metered as the policy is: the context's
    // meter counts its calls, and the policy (a script with nothing to say) is not asked.
    let policy = Arc::new(ponder::engine::scripted::ScriptedBackend::new(
        Vec::<&str>::new(),
    ));
    let cx = Context::new(Arc::clone(&policy) as Arc<dyn Backend>, Budget::unlimited());
    let prm = TokenPrm::with_backend(PrmConfig::default(), smollm_dyn());
    let scores =
        block_on(prm.score(&cx, "Tom has 3 apples and buys 4 more. How many?", &steps())).unwrap();
    assert_eq!(scores.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 2]);
    assert!(policy.requests().is_empty());
    let usage = cx.meter().usage();
    assert_eq!(usage.calls, 2);
    assert!(usage.prompt_tokens > 20, "{usage:?}");
}

#[test]
fn llm_judge_scores_steps_and_outcomes() {
    let cx = Context::new(smollm_dyn(), Budget::unlimited());
    let steps_judge = LlmJudge::new(JudgeConfig {
        mode: JudgeMode::Steps,
        prompt: None,
    });
    let scores =
        block_on(steps_judge.score(&cx, "Tom has 3 apples and buys 4 more. How many?", &steps()))
            .unwrap();
    assert_eq!(scores.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 2]);
    assert!(scores.iter().flatten().all(|s| (0.0..=1.0).contains(s)));
    let outcome = LlmJudge::new(JudgeConfig::default());
    let scores =
        block_on(outcome.score(&cx, "What is 2 + 2?", &[vec!["4".into()], vec!["5".into()]]))
            .unwrap();
    assert_eq!(scores.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 1]);
}

#[test]
fn a_budget_stops_best_of_n_cleanly() {
    let config = BestOfNConfig {
        adaptive: Some(ponder::strategies::AdaptiveConfig {
            round: NonZeroUsize::new(2).unwrap(),
            agreement: None,
        }),
        ..BestOfNConfig::self_consistency(NonZeroUsize::new(8).unwrap())
    };
    let strategy = BestOfN::new(config).unwrap();
    let problem = Problem::new("budget", "What is 6 + 7?");
    // Each round of 2 re-sends the ~70-token prompt, so 200 tokens cannot hold more than two
    // rounds, however short the answers.
    let budget = Budget::unlimited().with_max_tokens(200);
    let solution = block_on(ponder::engine::solve(
        &strategy,
        &problem,
        smollm_dyn(),
        budget,
    ))
    .unwrap();
    assert!(solution.usage.total_tokens() <= 200, "{:?}", solution.usage);
    let d: BestOfNDetails = serde_json::from_value(solution.details.clone()).unwrap();
    assert!(d.samples >= 1 && d.samples < 8, "{d:?}");
    // Four samples at most cannot decide a vote of eight (the leader needs more than the four
    // left could overturn): the budget stopped it.
    assert_eq!(
        solution.stop_reason,
        ponder::StopReason::TokenBudget,
        "{d:?}"
    );
}
