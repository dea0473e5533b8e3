use std::sync::Arc;

use ponder_engine::config::{parse_str, Format};
use ponder_engine::scripted::{Reply, ScriptedBackend};
use ponder_engine::{Backend, Budget, TokenLogprob};

use super::*;

fn solve_with(strategy: &dyn Strategy, backend: &Arc<ScriptedBackend>, budget: Budget) -> Solution {
    futures::executor::block_on(ponder_engine::solve(
        strategy,
        &Problem::new("p", "What is 3 + 4?"),
        Arc::clone(backend) as Arc<dyn Backend>,
        budget,
    ))
    .unwrap()
}

/// `solve_with`, with the events it sent.
fn solve_watched(
    strategy: &dyn Strategy,
    backend: &Arc<ScriptedBackend>,
) -> (Solution, Arc<ponder_engine::scripted::Recorder>) {
    solve_watched_under(strategy, backend, Budget::unlimited())
}

fn solve_watched_under(
    strategy: &dyn Strategy,
    backend: &Arc<ScriptedBackend>,
    budget: Budget,
) -> (Solution, Arc<ponder_engine::scripted::Recorder>) {
    let events = ponder_engine::scripted::Recorder::new();
    let cx = Context::with_events(
        Arc::clone(backend) as Arc<dyn Backend>,
        budget,
        events.events_of("p"),
    );
    let solution = futures::executor::block_on(ponder_engine::solve_in(
        strategy,
        &Problem::new("p", "What is 3 + 4?"),
        &cx,
    ))
    .unwrap();
    (solution, events)
}

fn details(solution: &Solution) -> RouterDetails {
    serde_json::from_value(solution.details.clone()).unwrap()
}

fn router(config: RouterConfig) -> Router {
    Router::new(config).unwrap()
}

#[test]
fn a_confident_short_answer_is_kept_in_one_request() {
    let backend = Arc::new(ScriptedBackend::new(["Final Answer: 7"]));
    let (solution, events) = solve_watched(&router(RouterConfig::default()), &backend);
    assert_eq!(solution.answer.as_deref(), Some("7"));
    assert_eq!(
        events.decisions("p"),
        [EventKind::Routed {
            route: "short".into(),
            why: "answered with confidence 1.000".into()
        }]
    );
    assert_eq!(solution.strategy, "router");
    assert_eq!(solution.stop_reason, StopReason::Completed);
    let d = details(&solution);
    assert_eq!(d.route, "short");
    assert_eq!(d.short.unwrap().confidence, Some(1.0));
    let requests = backend.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].max_tokens, 64);
    assert_eq!(requests[0].top_logprobs, Some(1));
    assert_eq!(requests[0].sampling.temperature, 0.0);
    let prompt = ScriptedBackend::render(&requests[0].prompt);
    assert!(prompt.contains("Give only the final answer"), "{prompt}");
}

#[test]
fn a_short_prefix_closes_the_thinking_a_template_opened() {
    let config = RouterConfig {
        short_prefix: "<think>\n\n</think>\n\n".into(),
        ..RouterConfig::default()
    };
    // A reasoning model's template opens the block; the prefix closes it at once.
    for (opening, turn) in [
        ("<think>\n", "<think>\n\n</think>\n\n"),
        ("", "<think>\n\n</think>\n\n"),
    ] {
        let backend = Arc::new(ScriptedBackend::new(["Final Answer: 7"]).with_opening(opening));
        let solution = solve_with(&router(config.clone()), &backend, Budget::unlimited());
        assert_eq!(solution.answer.as_deref(), Some("7"));
        let prompt = ScriptedBackend::render(&backend.requests()[0].prompt);
        assert!(
            prompt.ends_with(&format!("assistant: {turn}")),
            "{prompt:?}"
        );
    }
    // Recorded only where given.
    let written = serde_json::to_value(&config).unwrap();
    assert_eq!(written["short_prefix"], "<think>\n\n</think>\n\n");
    let default = serde_json::to_value(RouterConfig::default()).unwrap();
    assert!(default.get("short_prefix").is_none(), "{default}");
}

#[test]
fn an_unsure_short_answer_escalates_to_thinking() {
    // The answer's one token has probability 0.15 (the cue's tokens are not counted).
    let backend = Arc::new(ScriptedBackend::from_replies([
        Reply::Unsure("Final Answer: 7".into(), 0.15f32.ln()),
        Reply::Text("3 + 4 is 7, plus 1 is 8.\nFinal Answer: 8".into()),
    ]));
    let (solution, events) = solve_watched(&router(RouterConfig::default()), &backend);
    assert_eq!(solution.answer.as_deref(), Some("8"));
    assert_eq!(
        events.decisions("p"),
        [EventKind::Routed {
            route: "think".into(),
            why: details(&solution).why
        }]
    );
    assert!(solution.completion.contains("plus 1"));
    let d = details(&solution);
    assert_eq!(d.route, "think");
    assert!(d.why.contains("confidence 0.150 < 0.2"), "{}", d.why);
    assert_eq!(d.think_strategy.as_deref(), Some("direct"));
    let short = d.short.unwrap();
    assert_eq!(short.answer.as_deref(), Some("7"));
    assert!((short.confidence.unwrap() - 0.15).abs() < 1e-6);
    // Both candidates, short first; the second request is the thinking one (step by step, 512).
    assert_eq!(solution.candidates.len(), 2);
    let requests = backend.requests();
    assert_eq!(requests[1].max_tokens, 512);
    assert_eq!(requests[1].top_logprobs, None);
    // Usage covers both requests.
    assert_eq!(solution.usage.calls, 2);
    // With the signal off the same short answer is kept.
    let backend = Arc::new(ScriptedBackend::from_replies([Reply::Unsure(
        "Final Answer: 7".into(),
        0.15f32.ln(),
    )]));
    let config = RouterConfig {
        min_confidence: 0.0,
        ..RouterConfig::default()
    };
    let solution = solve_with(&router(config), &backend, Budget::unlimited());
    assert_eq!(details(&solution).route, "short");
    assert_eq!(backend.requests()[0].top_logprobs, None);
}

#[test]
fn probes_that_disagree_escalate_and_probes_that_agree_do_not() {
    let config = RouterConfig {
        probes: NonZeroUsize::new(3).unwrap(),
        min_agreement: 0.6,
        min_confidence: 0.0,
        ..RouterConfig::default()
    };
    // 7 and 7.0 are one answer.
    let backend = Arc::new(ScriptedBackend::new([
        "Final Answer: 7",
        "Final Answer: 7.0",
        "Final Answer: 9",
    ]));
    let solution = solve_with(&router(config.clone()), &backend, Budget::unlimited());
    let d = details(&solution);
    assert_eq!(d.route, "short", "{d:?}");
    assert_eq!(solution.answer.as_deref(), Some("7"));
    assert_eq!(d.why, "2 of 3 agree");
    let requests = backend.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].n, 3);
    assert_eq!(requests[0].sampling.temperature, 0.7);
    // A three-way split thinks.
    let backend = Arc::new(ScriptedBackend::new([
        "Final Answer: 7",
        "Final Answer: 8",
        "Final Answer: 9",
        "Step by step: 7.\nFinal Answer: 7",
    ]));
    let solution = solve_with(&router(config), &backend, Budget::unlimited());
    let d = details(&solution);
    assert_eq!(d.route, "think");
    assert!(d.why.contains("agreement 1/3 < 0.6"), "{}", d.why);
    assert_eq!(solution.candidates.len(), 4);
}

#[test]
fn a_probe_that_failed_did_not_agree() {
    // Two probes asked for, one failed: the one answer is 1 of 2, not a unanimous 1 of 1.
    let config = RouterConfig {
        probes: NonZeroUsize::new(2).unwrap(),
        min_confidence: 0.0,
        ..RouterConfig::default()
    };
    let backend = Arc::new(ScriptedBackend::from_replies([
        Reply::Text("Final Answer: 7".into()),
        Reply::Fail("NaN".into()),
        Reply::Text("Step by step: 7.\nFinal Answer: 7".into()),
    ]));
    let solution = solve_with(&router(config), &backend, Budget::unlimited());
    let d = details(&solution);
    assert_eq!(d.route, "think", "{d:?}");
    assert!(d.why.contains("agreement 1/2 < 1"), "{}", d.why);
    assert_eq!(d.short.unwrap().agreement, 0.5);
}

#[test]
fn probes_tied_for_the_lead_think_whatever_min_agreement_allows() {
    let config = RouterConfig {
        probes: NonZeroUsize::new(2).unwrap(),
        min_agreement: 0.5,
        min_confidence: 0.0,
        ..RouterConfig::default()
    };
    // 7 and 9, one probe each: a share of 1/2 meets min_agreement, but 7 leads only by coming
    // back first.
    let backend = Arc::new(ScriptedBackend::new([
        "Final Answer: 7",
        "Final Answer: 9",
        "Step by step: 3 + 4 = 7.\nFinal Answer: 7",
    ]));
    let solution = solve_with(&router(config.clone()), &backend, Budget::unlimited());
    let d = details(&solution);
    assert_eq!(d.route, "think", "{d:?}");
    assert_eq!(d.why, "answers tied for the lead");
    assert_eq!(d.short.unwrap().agreement, 0.5);
    assert_eq!(backend.requests().len(), 2);
    // One answer and a probe that stated none is no tie: the share alone decides.
    let backend = Arc::new(ScriptedBackend::new(["Final Answer: 7", "I am not sure."]));
    let solution = solve_with(&router(config.clone()), &backend, Budget::unlimited());
    let d = details(&solution);
    assert_eq!(d.route, "short", "{d:?}");
    assert_eq!(solution.answer.as_deref(), Some("7"));
    // Nor is a runner-up with fewer probes: 2 of 4 lead 1 and 1.
    let config = RouterConfig {
        probes: NonZeroUsize::new(4).unwrap(),
        ..config
    };
    let backend = Arc::new(ScriptedBackend::new([
        "Final Answer: 8",
        "Final Answer: 7",
        "Final Answer: 7",
        "Final Answer: 9",
    ]));
    let solution = solve_with(&router(config), &backend, Budget::unlimited());
    let d = details(&solution);
    assert_eq!(d.route, "short", "{d:?}");
    assert_eq!(d.why, "2 of 4 agree");
    assert_eq!(solution.answer.as_deref(), Some("7"));
}

#[test]
fn a_cut_or_missing_short_answer_escalates() {
    let config = RouterConfig {
        max_tokens: NonZeroUsize::new(16).unwrap(),
        ..RouterConfig::default()
    };
    let backend = Arc::new(ScriptedBackend::new([
        "Final Answer: 1234567890",
        "Final Answer: 7",
    ]));
    let solution = solve_with(&router(config.clone()), &backend, Budget::unlimited());
    let d = details(&solution);
    assert_eq!(d.route, "think");
    assert_eq!(d.why, "the short answer was cut at max_tokens");
    assert_eq!(solution.answer.as_deref(), Some("7"));
    let backend = Arc::new(ScriptedBackend::new(["I am not sure.", "Final Answer: 7"]));
    let solution = solve_with(&router(config.clone()), &backend, Budget::unlimited());
    assert_eq!(details(&solution).why, "no short answer");
    // With several probes and no answer, a cut one says the short answer was cut, whichever
    // probe it was (not only the first).
    let probes = RouterConfig {
        probes: NonZeroUsize::new(2).unwrap(),
        ..config.clone()
    };
    let backend = Arc::new(ScriptedBackend::new([
        "I am not sure.",
        "Final Answer: 1234567890",
        "Final Answer: 7",
    ]));
    let solution = solve_with(&router(probes), &backend, Budget::unlimited());
    let d = details(&solution);
    assert_eq!(d.why, "the short answer was cut at max_tokens");
    assert!(d.short.unwrap().cut);
    assert_eq!(solution.answer.as_deref(), Some("7"));
    // A reply that states nothing but ends on a number (the question's, echoed) has no
    // answer either; a bare value is one.
    let backend = Arc::new(ScriptedBackend::new(["37 times 43", "Final Answer: 1591"]));
    let solution = solve_with(&router(config.clone()), &backend, Budget::unlimited());
    assert_eq!(details(&solution).why, "no short answer");
    assert_eq!(solution.answer.as_deref(), Some("1591"));
    let backend = Arc::new(ScriptedBackend::new([" 1591.\n"]));
    let solution = solve_with(&router(config.clone()), &backend, Budget::unlimited());
    assert_eq!(details(&solution).route, "short");
    assert_eq!(solution.answer.as_deref(), Some("1591"));
    // Stated, for a vote over samples that asks (it is no guess of a budget's cut). A line that
    // works a value out is a probe's answer, but not stated as the router's completion: there
    // it may be thinking cut on its first line.
    let r = router(config);
    assert!(r.states_answer(" 1591.\n", false));
    assert!(r.states_answer("Final Answer: 1591", false));
    assert!(!r.states_answer("37 * 43 = 1591", false));
    assert!(bare_value("37 * 43 = 1591").is_some());
    assert!(!r.states_answer("37 times 43", false));
    assert!(!r.states_answer("Let me see.\n37 * 43 = 1591", false));
}

#[test]
fn thinking_cut_on_its_first_line_states_no_answer() {
    // No short answer, then thinking cut at its 40 tokens right after `= 9`: the 9 is a number
    // of its working, which a vote over such samples must not take as stated.
    let config: RouterConfig = parse_str(
        "think = { kind = \"direct\", max_tokens = 40 }",
        Format::Toml,
    )
    .unwrap();
    let cut = "Three boxes of 3 apples each, so 3*3 = 9";
    let backend = Arc::new(ScriptedBackend::new([
        "I am not sure.".to_string(),
        format!("{cut} apples, and 4 more make 13.\nFinal Answer: 13"),
    ]));
    let r = router(config);
    let solution = solve_with(&r, &backend, Budget::unlimited());
    assert_eq!(solution.stop_reason, StopReason::MaxTokens);
    assert_eq!(solution.completion, cut);
    assert_eq!(details(&solution).why, "no short answer");
    assert!(!r.states_answer(&solution.completion, false));
    // Read as a short probe's whole reply, the same line would be its answer.
    assert_eq!(bare_value(cut).as_deref(), Some("9"));
}

/// The scripted backend, saying it returns no log-probabilities.
struct NoLogprobs(ScriptedBackend);

#[async_trait]
impl Backend for NoLogprobs {
    async fn generate(&self, request: GenerationRequest) -> Result<ponder_engine::Generation> {
        self.0.generate(request).await
    }

    fn capabilities(&self) -> ponder_engine::Capabilities {
        ponder_engine::Capabilities {
            max_top_logprobs: 0,
            ..self.0.capabilities()
        }
    }

    async fn tokenize(&self, input: TokenizeInput<'_>) -> Result<Vec<u32>> {
        self.0.tokenize(input).await
    }

    async fn detokenize(&self, ids: &[u32]) -> Result<String> {
        self.0.detokenize(ids).await
    }
}

#[test]
fn min_confidence_without_log_probabilities_is_refused_before_the_probe_is_paid_for() {
    let backend = Arc::new(NoLogprobs(ScriptedBackend::new(["Final Answer: 7"])));
    let err = futures::executor::block_on(ponder_engine::solve(
        &router(RouterConfig::default()),
        &Problem::new("p", "What is 3 + 4?"),
        Arc::clone(&backend) as Arc<dyn Backend>,
        Budget::unlimited(),
    ))
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unsupported {
                backend: "scripted",
                operation: LOGPROBS_FOR_CONFIDENCE
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("min_confidence = 0"), "{err}");
    // No call made: nothing recorded, the reply still in the script.
    assert!(backend.0.requests().is_empty());
    assert_eq!(backend.0.remaining(), 1);
    // With the signal off the same backend answers short.
    let config = RouterConfig {
        min_confidence: 0.0,
        ..RouterConfig::default()
    };
    let backend = Arc::new(NoLogprobs(ScriptedBackend::new(["Final Answer: 7"])));
    let solution = futures::executor::block_on(ponder_engine::solve(
        &router(config),
        &Problem::new("p", "What is 3 + 4?"),
        Arc::clone(&backend) as Arc<dyn Backend>,
        Budget::unlimited(),
    ))
    .unwrap();
    assert_eq!(solution.answer.as_deref(), Some("7"));
    assert_eq!(details(&solution).route, "short");
    assert_eq!(backend.0.requests().len(), 1);
}

#[test]
fn thinking_without_an_answer_keeps_the_short_one() {
    let backend = Arc::new(ScriptedBackend::from_replies([Reply::Unsure(
        "Final Answer: 7".into(),
        0.1f32.ln(),
    )]));
    let solution = solve_with(
        &router(RouterConfig::default()),
        &backend,
        Budget::unlimited().with_max_calls(1),
    );
    assert_eq!(solution.stop_reason, StopReason::CallBudget);
    assert_eq!(solution.answer.as_deref(), Some("7"));
    // No thinking ran: the short answer's route, as a triage run records it.
    assert_eq!(details(&solution).route, NO_BUDGET_TO_THINK);
    assert_eq!(backend.requests().len(), 1);
    // The events say it too: the route to think, then the short answer it came to.
    let backend = Arc::new(ScriptedBackend::from_replies([Reply::Unsure(
        "Final Answer: 7".into(),
        0.1f32.ln(),
    )]));
    let (solution, events) = solve_watched_under(
        &router(RouterConfig::default()),
        &backend,
        Budget::unlimited().with_max_calls(1),
    );
    let why = details(&solution).why;
    assert_eq!(
        events.decisions("p"),
        [
            EventKind::Routed {
                route: "think".into(),
                why: why.clone()
            },
            EventKind::Routed {
                route: NO_BUDGET_TO_THINK.into(),
                why
            }
        ]
    );
    // Thinking that ends without any answer: the short one stands too.
    let backend = Arc::new(ScriptedBackend::from_replies([
        Reply::Unsure("Final Answer: 7".into(), 0.1f32.ln()),
        Reply::Text("I cannot tell.".into()),
    ]));
    let solution = solve_with(
        &router(RouterConfig::default()),
        &backend,
        Budget::unlimited(),
    );
    assert_eq!(solution.answer.as_deref(), Some("7"));
    // The text the answer was taken from is the short one's; the thinking is a candidate.
    assert_eq!(solution.completion, "Final Answer: 7");
    assert!(solution
        .candidates
        .iter()
        .any(|c| c.text == "I cannot tell."));
    assert_eq!(details(&solution).route, "think");
    // Thinking cut off mid-way ends on a number it was working with, not an answer: the short
    // one stands (by its length, and by the budget). Cut after it stated one, that one.
    let cut_at_40: RouterConfig = parse_str(
        "think = { kind = \"direct\", max_tokens = 40 }",
        Format::Toml,
    )
    .unwrap();
    let working = "Each box costs 3 dollars, so 3 boxes cost 3 times 3 which is 9, and then";
    for (config, budget, thinking, answer, stop) in [
        (
            &cut_at_40,
            Budget::unlimited(),
            working,
            "7",
            StopReason::MaxTokens,
        ),
        (
            &RouterConfig::default(),
            Budget::unlimited().with_max_completion_tokens(15 + 40),
            working,
            "7",
            StopReason::CompletionBudget,
        ),
        (
            &cut_at_40,
            Budget::unlimited(),
            "3 + 4 = 7. Final Answer: 8, and to check it we add",
            "8",
            StopReason::MaxTokens,
        ),
    ] {
        let backend = Arc::new(ScriptedBackend::from_replies([
            Reply::Unsure("Final Answer: 7".into(), 0.1f32.ln()),
            Reply::Text(thinking.into()),
        ]));
        let solution = solve_with(&router(config.clone()), &backend, budget);
        assert_eq!(solution.stop_reason, stop, "{thinking}");
        // The cut thinking is a candidate, its text as far as it got.
        let cut = solution
            .candidates
            .last()
            .map(|c| c.text.as_str())
            .unwrap_or_default();
        assert!(thinking.starts_with(cut) && cut != thinking, "{cut}");
        // The completion is the text the answer was read from: the short answer's where it
        // stands, the thinking's where that stated one.
        if answer == "7" {
            assert_eq!(solution.completion, "Final Answer: 7");
            // So a vote over such samples reads the answer as stated, not a guess of the
            // budget's cut.
            assert!(router(config.clone()).states_answer(&solution.completion, false));
        } else {
            assert_eq!(solution.completion, cut);
        }
        assert_eq!(solution.answer.as_deref(), Some(answer), "{thinking}");
    }
    // A reasoning model's template opened the thinking: an answer tried in it, cut before
    // `</think>`, is not stated; one after the close is.
    for (thinking, answer) in [
        (
            "so maybe \\boxed{9}? Let me check: each box costs 3 dollars, and",
            "7",
        ),
        (
            "so 9.</think> The answer is 9, and to check it we add more",
            "9",
        ),
    ] {
        let backend = Arc::new(
            ScriptedBackend::from_replies([
                Reply::Unsure("Final Answer: 7".into(), 0.1f32.ln()),
                Reply::Text(thinking.into()),
            ])
            .with_opening("<think>\n"),
        );
        let solution = solve_with(&router(cut_at_40.clone()), &backend, Budget::unlimited());
        assert_eq!(solution.stop_reason, StopReason::MaxTokens, "{thinking}");
        assert_eq!(solution.answer.as_deref(), Some(answer), "{thinking}");
    }
    // No budget even for the short answer: an empty solution, not an error.
    let backend = Arc::new(ScriptedBackend::new(["Final Answer: 7"]));
    let solution = solve_with(
        &router(RouterConfig::default()),
        &backend,
        Budget::unlimited().with_max_calls(0),
    );
    assert_eq!(solution.stop_reason, StopReason::CallBudget);
    assert_eq!(solution.answer, None);
}

#[test]
fn code_problems_go_straight_to_thinking() {
    let backend = Arc::new(ScriptedBackend::new([
        "```python\ndef f():\n    return 1\n```",
    ]));
    let problem = Problem {
        code: Some(ponder_engine::CodeTask {
            prompt: "def f():\n".into(),
            entry_point: "f".into(),
            test: "def check(c):\n    assert c() == 1\n".into(),
        }),
        ..Problem::new("c", "def f():\n")
    };
    let solution = futures::executor::block_on(ponder_engine::solve(
        &router(RouterConfig::default()),
        &problem,
        Arc::clone(&backend) as Arc<dyn Backend>,
        Budget::unlimited(),
    ))
    .unwrap();
    let d = details(&solution);
    assert_eq!(d.route, "think");
    assert!(d.short.is_none());
    assert_eq!(backend.requests().len(), 1);
}

fn token(text: &str, p: f32) -> TokenLogprob {
    TokenLogprob {
        token: text.into(),
        logprob: p.ln(),
        top: Vec::new(),
    }
}

#[test]
fn confidence_is_the_probability_of_the_answers_own_tokens() {
    let tokens = [
        token("Final", 0.5),
        token(" Answer", 0.5),
        token(":", 0.5),
        token(" 4", 0.8),
        token("2", 0.5),
        token(" apples", 0.1),
        token("\n", 0.1),
        token("Question", 0.1),
    ];
    // The answer as extracted: its tokens only.
    let c = answer_confidence(&tokens, Some("42")).unwrap();
    assert!((c - 0.4).abs() < 1e-6, "{c}");
    // Not spelled as in the text (normalised): the cue's line.
    let c = answer_confidence(&tokens, Some("42.0")).unwrap();
    assert!((c - 0.04).abs() < 1e-6, "{c}");
    // Lower case cue, a blank line before the answer.
    let tokens = [
        token("final answer:", 0.1),
        token("\n", 0.1),
        token("12", 0.9),
    ];
    assert!((answer_confidence(&tokens, None).unwrap() - 0.9).abs() < 1e-6);
    // An answer in a box, no cue: the box's content, wherever it is.
    let tokens = [
        token("So", 0.1),
        token(" \\boxed{", 0.1),
        token("7", 0.6),
        token("}", 0.1),
        token("\nDone", 0.1),
    ];
    assert!((answer_confidence(&tokens, Some("7")).unwrap() - 0.6).abs() < 1e-6);
    // No cue and no answer: every token, over lines.
    let tokens = [token("7", 0.5), token("\n", 0.5), token("apples", 0.5)];
    assert!((answer_confidence(&tokens, None).unwrap() - 0.25).abs() < 1e-6);
    assert_eq!(answer_confidence(&[], Some("7")), None);
    // The answer where it stands after the cue: not inside a later "15", nor a rambling "5"
    // after it.
    let tokens = [
        token("Final Answer:", 0.5),
        token(" 5", 0.9),
        token(". That is", 0.5),
        token(" 15", 0.2),
        token(" minus 10, or", 0.5),
        token(" 5", 0.3),
        token(".", 0.5),
    ];
    assert!((answer_confidence(&tokens, Some("5")).unwrap() - 0.9).abs() < 1e-6);
    // No cue: the last place it stands alone, not the "5" in "0.5".
    let tokens = [token("So 5", 0.7), token(" then 0.", 0.5), token("5", 0.1)];
    assert!((answer_confidence(&tokens, Some("5")).unwrap() - 0.7).abs() < 1e-6);
    // Written with a thousands separator, extracted without: the number's tokens, not the
    // unit after it on the cue's line.
    let tokens = [
        token("Final Answer:", 0.5),
        token(" 1", 0.9),
        token(",", 0.9),
        token("200", 0.9),
        token(" dollars", 0.1),
        token(".", 0.1),
    ];
    let c = answer_confidence(&tokens, Some("1200")).unwrap();
    assert!((c - 0.729).abs() < 1e-6, "{c}");
    assert_eq!(grouped("-1234567.5").as_deref(), Some("-1,234,567.5"));
    assert_eq!(grouped("123"), None);
    assert_eq!(grouped("12a4"), None);
}

#[test]
fn a_short_answer_cut_at_max_tokens_is_no_answer_whether_thinking_follows_or_not() {
    let r = router(RouterConfig {
        max_tokens: NonZeroUsize::new(16).unwrap(),
        ..RouterConfig::default()
    });
    // No budget to think after the short call: a plain solve has no answer.
    let backend = Arc::new(ScriptedBackend::new(["Final Answer: 1234567890"]));
    let plain = solve_with(&r, &backend, Budget::unlimited().with_max_calls(1));
    assert_eq!(plain.answer, None);
    // Nor does the first stage a triage run keeps where it cannot pay for thinking.
    let backend = Arc::new(ScriptedBackend::new(["Final Answer: 1234567890"]));
    let cx = Context::new(
        Arc::clone(&backend) as Arc<dyn Backend>,
        Budget::unlimited(),
    );
    let first = futures::executor::block_on(ponder_engine::Staged::first(
        &r,
        &Problem::new("p", "What is 3 + 4?"),
        &cx,
    ))
    .unwrap();
    assert_eq!(first.solution.answer, plain.answer);
    assert!(first.pending.is_some());
    // Nor is its cut number a candidate's answer (graded among the candidates otherwise).
    assert!(first.solution.candidates.iter().all(|c| c.answer.is_none()));
    assert!(plain.candidates.iter().all(|c| c.answer.is_none()));
}

#[test]
fn configs_parse_and_bad_values_are_named() {
    let config: StrategyConfig = parse_str(
        "kind = \"router\"\nprobes = 4\nmin_agreement = 0.75\nthink = { kind = \"budget_forcing\", max_thinking_tokens = 256 }\n",
        Format::Toml,
    )
    .unwrap();
    assert_eq!(config.build().unwrap().name(), "router");
    let StrategyConfig::Router(r) = &config else {
        panic!("not a router")
    };
    assert_eq!(r.temperature(), 0.7);
    assert_eq!(r.think.kind(), "budget_forcing");
    let err = parse_str::<StrategyConfig>(
        "kind = \"router\"\nthink = { kind = \"direct\", max_tokens = \"many\" }",
        Format::Toml,
    )
    .unwrap_err();
    assert!(err.starts_with("at `think.max_tokens` (line 2)"), "{err}");
    for (toml, says) in [
        (
            "probes = 3\ntemperature = 0.0",
            "probes = 3 at temperature 0",
        ),
        ("min_agreement = 0.0", "min_agreement"),
        ("min_confidence = 1.5", "min_confidence"),
    ] {
        let config: StrategyConfig =
            parse_str(&format!("kind = \"router\"\n{toml}"), Format::Toml).unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains(says), "{toml}: {err}");
    }
    let config: StrategyConfig =
        parse_str("kind = \"mode_token\"\nthink_threshold = 0.3", Format::Toml).unwrap();
    assert_eq!(config.build().unwrap().name(), "mode_token");
    for (toml, says) in [
        ("think_threshold = 2.0", "think_threshold"),
        ("short_token = \"<t>\"\nthink_token = \"<t>\"", "both `<t>`"),
    ] {
        let config: StrategyConfig =
            parse_str(&format!("kind = \"mode_token\"\n{toml}"), Format::Toml).unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains(says), "{toml}: {err}");
    }
}

#[test]
fn the_mode_processor_reads_and_forces_the_first_position_only() {
    let processor = ModeProcessor {
        short: 1,
        think: 2,
        threshold: Some(0.3),
        seen: Mutex::new(FirstPosition::default()),
    };
    // ln 3 apart: P(think) / (P(think) + P(short)) = 1/4 < 0.3, so short is forced.
    let mut logits = vec![5.0, 3.0f32.ln(), 0.0, 1.0];
    processor.process(&mut logits, &[9, 9]);
    assert_eq!(logits[1], 3.0f32.ln());
    assert!(logits
        .iter()
        .enumerate()
        .all(|(i, l)| i == 1 || *l == f32::NEG_INFINITY));
    let seen = processor.seen.lock().unwrap();
    assert!((seen.think_probability.unwrap() - 0.25).abs() < 1e-6);
    drop(seen);
    // Later positions pass through; the first generated token is noted.
    let mut logits = vec![5.0, 0.0, 0.0, 1.0];
    processor.process(&mut logits, &[9, 9, 1]);
    assert_eq!(logits, vec![5.0, 0.0, 0.0, 1.0]);
    assert_eq!(processor.seen.lock().unwrap().first, Some(1));
    // Threshold at or below the probability: think; a token with no probability is still forced.
    let processor = ModeProcessor {
        short: 1,
        think: 2,
        threshold: Some(0.0),
        seen: Mutex::new(FirstPosition::default()),
    };
    let mut logits = vec![5.0, 0.0, f32::NEG_INFINITY, 1.0];
    processor.process(&mut logits, &[9]);
    assert_eq!(logits[2], 0.0);
    assert!(logits
        .iter()
        .enumerate()
        .all(|(i, l)| i == 2 || *l == f32::NEG_INFINITY));
    // Without a threshold it only reads.
    let processor = ModeProcessor {
        short: 1,
        think: 2,
        threshold: None,
        seen: Mutex::new(FirstPosition::default()),
    };
    let mut logits = vec![5.0, 0.0, 0.0, 1.0];
    processor.process(&mut logits, &[9]);
    assert_eq!(logits, vec![5.0, 0.0, 0.0, 1.0]);
    assert_eq!(processor.seen.lock().unwrap().think_probability, Some(0.5));
}

#[test]
fn without_logits_processors_the_mode_is_read_from_the_text() {
    let backend = Arc::new(ScriptedBackend::new([
        "<think>3 + 4 = 7? Final Answer: 6 no.\n</think>\nFinal Answer: 7",
    ]));
    let strategy = ModeRouter::new(ModeRouterConfig::default()).unwrap();
    let solution = solve_with(&strategy, &backend, Budget::unlimited());
    // The answer after the thinking, not the one inside it.
    assert_eq!(solution.answer.as_deref(), Some("7"));
    let d: ModeDetails = serde_json::from_value(solution.details.clone()).unwrap();
    assert_eq!(d.mode, "think");
    assert_eq!(d.think_probability, None);
    assert!(!d.forced);
    assert_eq!(backend.requests()[0].max_tokens, 4096);
    let backend = Arc::new(ScriptedBackend::new(["<short>Final Answer: 7"]));
    let solution = solve_with(&strategy, &backend, Budget::unlimited());
    let d: ModeDetails = serde_json::from_value(solution.details.clone()).unwrap();
    assert_eq!(d.mode, "short");
    // A threshold needs the logits: a clear error, not a silent fallback.
    let strategy = ModeRouter::new(ModeRouterConfig {
        think_threshold: Some(0.5),
        ..ModeRouterConfig::default()
    })
    .unwrap();
    let backend = Arc::new(ScriptedBackend::new(["<short>7"]));
    let err = futures::executor::block_on(ponder_engine::solve(
        &strategy,
        &Problem::new("p", "Q?"),
        backend as Arc<dyn Backend>,
        Budget::unlimited(),
    ))
    .unwrap_err();
    assert!(err.to_string().contains("think_threshold"), "{err}");
}

#[test]
fn the_mode_is_the_first_token_where_it_is_a_mode_token_else_read_from_the_text() {
    let strategy = ModeRouter::new(ModeRouterConfig::default()).unwrap();
    let ids = Some((10, 11));
    assert_eq!(strategy.mode_of(ids, Some(11), "<think>..."), "think");
    assert_eq!(strategy.mode_of(ids, Some(10), "<short>7"), "short");
    // Whitespace first: the mode token follows it in the text.
    assert_eq!(strategy.mode_of(ids, Some(220), " <think>..."), "think");
    assert_eq!(strategy.mode_of(ids, Some(198), "\n<short>7"), "short");
    assert_eq!(strategy.mode_of(ids, Some(5), "7"), "none");
    assert_eq!(strategy.mode_of(None, None, "<short>7"), "short");
}

#[test]
fn the_first_stage_says_how_sure_it_is_and_the_second_thinks_from_it() {
    let r = router(RouterConfig::default());
    let first = |replies: Vec<Reply>, problem: &Problem| {
        let backend = Arc::new(ScriptedBackend::from_replies(replies));
        let cx = Context::new(
            Arc::clone(&backend) as Arc<dyn Backend>,
            Budget::unlimited(),
        );
        let stage = futures::executor::block_on(r.first(problem, &cx)).unwrap();
        (stage, backend.requests().len())
    };
    let question = Problem::new("p", "What is 3 + 4?");
    let (sure, calls) = first(vec![Reply::Text("Final Answer: 7".into())], &question);
    assert_eq!((sure.pending, calls), (None, 1));
    // Unsure: the short answer stands until thinking replaces it.
    let (unsure, _) = first(
        vec![Reply::Unsure("Final Answer: 7".into(), 0.15f32.ln())],
        &question,
    );
    let pending = unsure.pending.clone().unwrap();
    assert!((pending.confidence - 0.15).abs() < 1e-6, "{pending:?}");
    assert!(
        pending.why.contains("confidence 0.150 < 0.2"),
        "{pending:?}"
    );
    assert_eq!(unsure.solution.answer.as_deref(), Some("7"));
    // Final as it stands only where the thinking goes unpaid (a triage run's budget).
    assert_eq!(details(&unsure.solution).route, NO_BUDGET_TO_THINK);
    assert_eq!(details(&sure.solution).route, "short");
    // No short answer: as unsure as can be.
    let (none, _) = first(vec![Reply::Text("Seven, I think".into())], &question);
    assert_eq!(none.pending.map(|p| p.confidence), Some(0.0));
    // Probes that split are unsure however likely the leader's tokens (each 1.0 here): no
    // surer than their agreement, 1 of 3.
    let split = router(RouterConfig {
        probes: NonZeroUsize::new(3).unwrap(),
        ..RouterConfig::default()
    });
    let backend = Arc::new(ScriptedBackend::new([
        "Final Answer: 7",
        "Final Answer: 8",
        "Final Answer: 9",
    ]));
    let cx = Context::new(
        Arc::clone(&backend) as Arc<dyn Backend>,
        Budget::unlimited(),
    );
    let stage = futures::executor::block_on(split.first(&question, &cx)).unwrap();
    let pending = stage.pending.unwrap();
    assert!((pending.confidence - 1.0 / 3.0).abs() < 1e-9, "{pending:?}");
    assert!(pending.why.contains("agreement 1/3 < 1"), "{pending:?}");
    // A code problem asks to think without a call.
    let code = Problem {
        code: Some(ponder_engine::CodeTask {
            prompt: "def f():\n".into(),
            entry_point: "f".into(),
            test: "def check(c):\n    assert c() == 1\n".into(),
        }),
        ..Problem::new("c", "def f():\n")
    };
    let (code_first, calls) = first(Vec::new(), &code);
    assert_eq!(calls, 0);
    assert_eq!(code_first.pending.map(|p| p.confidence), Some(0.0));

    // The second stage from the first's solution (after the JSON round trip a triage run makes)
    // is what `solve` gives: the thought answer, with the short signals in its details.
    let backend = Arc::new(ScriptedBackend::new([
        "3 + 4 = 7, and 1 more is 8.\nFinal Answer: 8",
    ]));
    let cx = Context::new(
        Arc::clone(&backend) as Arc<dyn Backend>,
        Budget::unlimited(),
    );
    let kept: Solution =
        serde_json::from_str(&serde_json::to_string(&unsure.solution).unwrap()).unwrap();
    let thought = futures::executor::block_on(r.next(&question, kept, &cx)).unwrap();
    assert_eq!(thought.pending, None, "thinking is the last stage");
    let thought = thought.solution;
    assert_eq!(thought.answer.as_deref(), Some("8"));
    let d = details(&thought);
    assert_eq!(d.route, "think");
    assert_eq!(d.short.and_then(|s| s.answer).as_deref(), Some("7"));
    assert_eq!(
        thought.candidates.len(),
        2,
        "the short answer and the thought"
    );
    assert_eq!(backend.requests()[0].max_tokens, 512);
}

#[test]
fn an_answer_budget_forcing_stated_behind_its_own_cue_stands_when_cut() {
    // Thinking by budget forcing with Sky-T1's delimiters and a cue of its own: the budget
    // cuts the thinking short and budget forcing closes it and asks for the answer, which is
    // stated behind the cue, so it stands; the standard reading knows neither the delimiter
    // nor the cue and would take the unsure short answer instead.
    let config: RouterConfig = parse_str(
        "think = { kind = \"budget_forcing\", mode = \"resubmit\", \
         think_open = \"<|begin_of_thought|>\", think_close = \"<|end_of_thought|>\", \
         answer_cue = \"Therefore:\", max_answer_tokens = 8 }",
        Format::Toml,
    )
    .unwrap();
    let backend = Arc::new(ScriptedBackend::from_replies([
        Reply::Unsure("Final Answer: 5".into(), 0.1f32.ln()),
        Reply::Text("3 and 4 make 7, as counting on from 3 by 4 gives 7.<|end_of_thought|>".into()),
        Reply::Text("7 apples".into()),
    ]));
    let budget = Budget::unlimited().with_max_completion_tokens(15 + 30 + 37);
    let solution = solve_with(&router(config.clone()), &backend, budget);
    assert!(
        solution.stop_reason.is_budget(),
        "{:?}",
        solution.stop_reason
    );
    assert!(
        solution
            .completion
            .ends_with("<|end_of_thought|>\nTherefore: 7 apples"),
        "{}",
        solution.completion
    );
    assert_eq!(
        ponder_engine::answer::stated_answer(&solution.completion),
        None
    );
    let answer = solution.answer.unwrap();
    assert!(ponder_engine::answer::equivalent(&answer, "7"), "{answer}");
    // The router says so in turn (for a best-of-N over it), and of a short answer too.
    let r = router(config.clone());
    assert!(r.states_answer(&solution.completion, false));
    assert!(r.states_answer("Final Answer: 5", false));
    assert!(!r.states_answer("<|begin_of_thought|>3 and 4 make", false));

    // Cut before its close (thinking only): not stated, and the short answer stands.
    let backend = Arc::new(ScriptedBackend::from_replies([
        Reply::Unsure("Final Answer: 5".into(), 0.1f32.ln()),
        Reply::Text("3 and 4 make 7, so the answer is 7, but".into()),
    ]));
    let solution = solve_with(
        &router(config),
        &backend,
        Budget::unlimited().with_max_calls(2),
    );
    assert!(
        solution.stop_reason.is_budget(),
        "{:?}",
        solution.stop_reason
    );
    assert_eq!(
        solution.answer.as_deref(),
        Some("5"),
        "{}",
        solution.completion
    );
}
