//! Adaptive thinking on the real SmolLM2-135M: the router's signals read from real
//! log-probabilities, and the mode-token router's first-position logits read and forced.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::num::NonZeroUsize;
use std::sync::Arc;

use common::{block_on, smollm_dyn};
use ponder::engine::scripted::Recorder;
use ponder::engine::{Backend, Budget, Context, EventKind, Prompt, TokenizeInput};
use ponder::strategies::{
    Direct, DirectConfig, ModeDetails, ModeRouter, ModeRouterConfig, PromptStyle, Router,
    RouterConfig, RouterDetails, StrategyConfig,
};
use ponder::{Problem, Solution};

fn solve(strategy: &dyn ponder::engine::Strategy, question: &str) -> Solution {
    block_on(ponder::engine::solve(
        strategy,
        &Problem::new("r", question),
        smollm_dyn(),
        Budget::unlimited(),
    ))
    .unwrap()
}

fn router(min_confidence: f64) -> Router {
    Router::new(RouterConfig {
        min_confidence,
        think: Box::new(StrategyConfig::Direct(DirectConfig {
            max_tokens: NonZeroUsize::new(96).unwrap(),
            ..DirectConfig::default()
        })),
        ..RouterConfig::default()
    })
    .unwrap()
}

#[test]
fn the_router_reads_the_answers_probability_and_thinks_below_the_threshold() {
    let question = "What is 37 times 43?";
    // A threshold no real answer reaches: the short answer is read, then thinking follows.
    let solution = solve(&router(0.999_999), question);
    let d: RouterDetails = serde_json::from_value(solution.details.clone()).unwrap();
    let short = d.short.clone().expect("the short answer's signals");
    assert!(
        short.answer.is_some(),
        "SmolLM2 gives a short answer here: {d:?}"
    );
    let c = short
        .confidence
        .expect("a confidence from real log-probabilities");
    assert!(c > 0.0 && c < 0.999_999, "{d:?}");
    assert!(d.why.starts_with("confidence "), "{d:?}");
    assert_eq!(d.route, "think", "{d:?}");
    assert_eq!(d.think_strategy.as_deref(), Some("direct"));
    assert_eq!(solution.usage.calls, 2);
    assert!(solution.completion.len() > short.tokens as usize / 4);
    // A threshold every answer reaches: one call, the short answer kept with the same
    // confidence (greedy decoding of the same prompt).
    let kept = solve(&router(1e-12), question);
    let k: RouterDetails = serde_json::from_value(kept.details.clone()).unwrap();
    assert_eq!(k.route, "short", "{k:?}");
    assert_eq!(kept.usage.calls, 1);
    assert_eq!(kept.answer, short.answer);
    let a = k.short.unwrap().confidence.unwrap();
    // Read again, the same up to how the device rounds a repeated prompt.
    let within = if common::repeats_exactly() { 1e-3 } else { 0.1 };
    assert!((a - c).abs() < within * c.max(1e-9), "{a} vs {c}");
}

fn single_token(text: &str) {
    let ids = block_on(smollm_dyn().tokenize(TokenizeInput::Piece(text))).unwrap();
    assert_eq!(ids.len(), 1, "`{text}` is {ids:?} in SmolLM2's vocabulary");
}

fn mode_router(threshold: Option<f64>) -> ModeRouter {
    // SmolLM2 has no mode tokens of its own; two ordinary single tokens that can both start
    // its reply stand in for `<short>` and `<think>`.
    ModeRouter::new(ModeRouterConfig {
        short_token: "The".into(),
        think_token: "Let".into(),
        think_threshold: threshold,
        style: PromptStyle::StepByStep,
        max_tokens: NonZeroUsize::new(24).unwrap(),
        temperature: 0.0,
        ..ModeRouterConfig::default()
    })
    .unwrap()
}

#[test]
fn the_mode_router_reads_the_first_position_and_forces_the_threshold() {
    single_token("The");
    single_token("Let");
    let question = "A train travels 60 miles in 1.5 hours. What is its average speed?";
    let mode = |solution: &Solution| -> ModeDetails {
        serde_json::from_value(solution.details.clone()).unwrap()
    };
    // Free: the model's own (greedy) first token, and the probability read at that position.
    let free = solve(&mode_router(None), question);
    let f = mode(&free);
    let p = f.think_probability.expect("read from the logits");
    assert!((0.0..=1.0).contains(&p), "{f:?}");
    assert!(!f.forced);
    // Reading the first position leaves the decode as it was: the reply is the one plain greedy
    // decoding of the same prompt writes, whose start says the mode too.
    let plain = solve(
        &Direct::new(DirectConfig {
            style: PromptStyle::StepByStep,
            max_tokens: NonZeroUsize::new(24).unwrap(),
            temperature: 0.0,
            ..DirectConfig::default()
        })
        .unwrap(),
        question,
    );
    if common::repeats_exactly() {
        assert_eq!(free.completion, plain.completion);
    }
    let start = plain.completion.trim_start();
    match f.mode.as_str() {
        "think" => {
            assert!(p >= 0.5, "greedy chose think at {p}");
            assert!(start.starts_with("Let"), "{start:?}");
        }
        "short" => {
            assert!(p <= 0.5, "greedy chose short at {p}");
            assert!(start.starts_with("The"), "{start:?}");
        }
        // SmolLM2 starts this reply with a token of its own ("1" on the CPU), which says
        // nothing of P(think) against P(short); the plain decode starts with neither either.
        "none" => assert!(
            !start.starts_with("Let") && !start.starts_with("The"),
            "{start:?} ({f:?})"
        ),
        other => panic!("mode {other}"),
    }
    // Threshold 0: always think; threshold 1: think only if short had no probability at all.
    let think = solve(&mode_router(Some(0.0)), question);
    let t = mode(&think);
    assert_eq!((t.mode.as_str(), t.forced), ("think", true), "{t:?}");
    assert!(
        think.completion.starts_with("Let"),
        "{:?}",
        think.completion
    );
    let within = if common::repeats_exactly() {
        1e-6
    } else {
        0.05
    };
    assert!(
        (t.think_probability.unwrap() - p).abs() < within,
        "{t:?} vs {p}"
    );
    let short = solve(&mode_router(Some(1.0)), question);
    let s = mode(&short);
    assert_eq!(s.mode, "short", "{s:?}");
    assert!(
        short.completion.starts_with("The"),
        "{:?}",
        short.completion
    );
}

#[test]
fn a_short_prefix_closes_the_thinking_the_template_opened() {
    // SmolLM2 with a chat template whose assistant turn starts "<think>\n" (as DeepSeek-R1's
    // distills' does): the short answer's prefix closes the block without opening another.
    let backend = common::smollm_thinking();
    let problem = Problem::new("r", "What is 3 + 4?");
    let rendered = block_on(backend.tokenize(TokenizeInput::Prompt(&Prompt::Chat {
        messages: PromptStyle::Direct.messages(&problem),
        assistant_prefix: String::new(),
    })))
    .unwrap()
    .len() as u64;
    let closing = block_on(backend.tokenize(TokenizeInput::Piece("\n</think>\n\n")))
        .unwrap()
        .len() as u64;
    // The prompt tokens of the short answer's call.
    let short_prompt = |short_prefix: &str| {
        let strategy = Router::new(RouterConfig {
            short_prefix: short_prefix.into(),
            min_confidence: 0.0,
            think: Box::new(StrategyConfig::Direct(DirectConfig {
                max_tokens: NonZeroUsize::new(8).unwrap(),
                ..DirectConfig::default()
            })),
            ..RouterConfig::default()
        })
        .unwrap();
        let events = Recorder::new();
        let cx = Context::with_events(
            Arc::clone(&backend),
            Budget::unlimited(),
            events.events_of("r"),
        );
        block_on(ponder::engine::solve_in(&strategy, &problem, &cx)).unwrap();
        match events.kinds("r").first() {
            Some(EventKind::Call { prompt_tokens, .. }) => *prompt_tokens,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(short_prompt(""), rendered);
    // "<think>\n" is the template's; only "\n</think>\n\n" is written after it.
    assert_eq!(short_prompt("<think>\n\n</think>\n\n"), rendered + closing);
    // A judge on it (best-of-N's, S*'s) has the block closed before the token it reads; on the
    // model's own template, nothing is written.
    assert_eq!(
        block_on(ponder::engine::turn::answer_opening(backend.as_ref())).unwrap(),
        "\n</think>\n\n"
    );
    assert_eq!(
        block_on(ponder::engine::turn::answer_opening(smollm_dyn().as_ref())).unwrap(),
        ""
    );
}
