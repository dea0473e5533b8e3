//! The OpenAI-compatible HTTP backend against a real llama.cpp `llama-server` serving the
//! built-in SmolLM2-135M (built and cached by `scripts/build_llama_server.sh` on first use), plus
//! the retry policy against a scripted local HTTP responder.
//!
//! Each test starts a server of its own (about a second) and they run one at a time (a lock), so
//! they do not fight over the CPU.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod common;
#[path = "support/llama_server.rs"]
mod llama_server;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use common::{block_on, repo};
use llama_server::LlamaServer;
use ponder::engine::models::builtin;
use ponder::engine::{
    solve, Backend, Budget, Error, FinishReason, GenerationRequest, Message, ModelConfig,
    OpenAiBackend, OpenAiOptions, Problem, Prompt, Runner, Sampling, Solution, TokenizeInput,
};
use ponder::strategies::{
    BeamSearch, BeamSearchConfig, BestOfNConfig, BudgetForcingConfig, DirectConfig, ForcingDetails,
    ForcingMode, SearchDetails, SearchKind, StrategyConfig,
};

/// Held by each test that runs a server, so that they run one at a time.
static SERVERS: Mutex<()> = Mutex::new(());

/// A server of the test's own (a static one would outlive the test process: statics are never
/// dropped), and the lock that runs these tests one at a time.
fn server() -> (MutexGuard<'static, ()>, LlamaServer, String) {
    let guard = SERVERS.lock().unwrap_or_else(|p| p.into_inner());
    let server = LlamaServer::start(&smollm_path(), 4);
    let url = server.url();
    (guard, server, url)
}

fn smollm_path() -> std::path::PathBuf {
    builtin("smollm2-135m")
        .unwrap()
        .ensure()
        .expect("fetching smollm2-135m")
}

fn connect(url: &str) -> Arc<dyn Backend> {
    block_on(ModelConfig::openai(vec![url.to_string()], "smollm2").load()).unwrap()
}

/// Solves one question with `config` on `backend`.
fn solve_one(config: StrategyConfig, backend: Arc<dyn Backend>, question: &str) -> Solution {
    let strategy = config.build().unwrap();
    let problem = Problem::new("p", question);
    block_on(solve(
        strategy.as_ref(),
        &problem,
        backend,
        Budget::unlimited(),
    ))
    .unwrap()
}

fn chat(text: &str) -> Prompt {
    Prompt::chat(vec![Message::user(text)])
}

#[test]
fn solves_through_the_server_with_exact_usage() {
    let (_lock, _server, url) = server();
    let backend = connect(&url);
    let caps = backend.capabilities();
    assert_eq!(caps.backend, "openai");
    assert!(caps.tokenizer, "llama-server has /tokenize");
    assert!(!caps.logits_processors);
    assert_eq!(
        caps.context_tokens,
        Some(2048),
        "per-slot context from /props"
    );
    // `<|im_end|>` from /props, and `<|endoftext|>`, which ends a generation on llama.cpp too.
    assert_eq!(caps.eos_token_ids, vec![2, 0], "eos from /props first");

    let direct = || StrategyConfig::Direct(DirectConfig::default());
    let problem = Problem::new("p", "What is 2 + 3?");
    let solution = solve_one(direct(), Arc::clone(&backend), &problem.question);
    assert!(!solution.completion.trim().is_empty());
    assert_eq!(solution.usage.calls, 1);
    // The prompt went through the server's chat template; its token count is the server's.
    let prompt = Prompt::chat(ponder::strategies::PromptStyle::StepByStep.messages(&problem));
    let ids = block_on(backend.tokenize(TokenizeInput::Prompt(&prompt))).unwrap();
    assert_eq!(solution.usage.prompt_tokens, ids.len() as u64);
    assert!(solution.usage.completion_tokens > 0);
    assert_eq!(
        solution.candidates[0].tokens,
        solution.usage.completion_tokens
    );
    // A fresh server had nothing cached; the same prompt again comes (all but the last token,
    // which llama.cpp always evaluates) from its prefix cache, and the meter says so.
    assert_eq!(solution.usage.cached_prompt_tokens, 0);
    let again = solve_one(direct(), Arc::clone(&backend), &problem.question);
    assert_eq!(again.usage.prompt_tokens, solution.usage.prompt_tokens);
    assert!(
        again.usage.cached_prompt_tokens + 1 >= again.usage.prompt_tokens
            && again.usage.cached_prompt_tokens < again.usage.prompt_tokens,
        "{:?}",
        again.usage
    );
    // Detokenizing the prompt gives the template text back.
    let text = block_on(backend.detokenize(&ids)).unwrap();
    assert!(
        text.contains("What is 2 + 3?") && text.contains("<|im_start|>assistant"),
        "{text}"
    );
}

#[test]
fn n_samples_in_one_request_and_fanned_out_count_tokens_per_choice() {
    let (_lock, _server, url) = server();
    for native_n in [None, Some(false)] {
        let mut config = ModelConfig::openai(vec![url.clone()], "smollm2");
        config.native_n = native_n;
        let backend = block_on(config.load()).unwrap();
        // Not known until a request with n > 1 says so.
        assert!(!backend.capabilities().native_n);
        let request = GenerationRequest::new(chat("Write a long story about a dragon."))
            .with_n(3)
            .with_max_tokens(12)
            .with_sampling(Sampling::with_temperature(1.0));
        let generation = block_on(backend.generate(request)).unwrap();
        assert_eq!(generation.choices.len(), 3, "{native_n:?}");
        for choice in &generation.choices {
            match choice.finish_reason {
                FinishReason::Length => {
                    assert_eq!(choice.completion_tokens, 12, "{native_n:?}: {choice:?}");
                }
                // A sample at temperature 1 may end by itself first.
                _ => assert!(
                    (1..=12).contains(&choice.completion_tokens),
                    "{native_n:?}: {choice:?}"
                ),
            }
            assert!(choice.logprobs.is_none(), "not asked for");
        }
        let counted: usize = generation.choices.iter().map(|c| c.completion_tokens).sum();
        assert_eq!(generation.usage.completion_tokens, counted as u64);
        // One request when the server honours n (llama-server does), three when told not to.
        let calls = if native_n == Some(false) { 3 } else { 1 };
        assert_eq!(generation.usage.calls, calls, "{native_n:?}");
        assert_eq!(backend.capabilities().native_n, native_n != Some(false));
        // Samples at temperature 1 differ.
        let first = &generation.choices[0].text;
        assert!(
            generation.choices.iter().any(|c| &c.text != first),
            "{:?}",
            generation.choices
        );
    }
}

#[test]
fn an_n_past_the_real_servers_slots_fans_out_and_one_within_them_stays_whole() {
    // llama-server takes n up to its slots (4 here) and refuses more with a 400 that names the
    // limit; best-of-N's default is 8.
    let (_lock, _server, url) = server();
    let backend = connect(&url);
    let ask = |n: usize| {
        let request = GenerationRequest::new(chat("Write a long story about a dragon."))
            .with_n(n)
            .with_max_tokens(4)
            .with_sampling(Sampling::with_temperature(1.0));
        let generation = block_on(backend.generate(request)).unwrap();
        assert_eq!(generation.choices.len(), n);
        assert_eq!(generation.usage.completion_tokens, 4 * n as u64);
        generation.usage.calls
    };
    // 3 taken; 8 tried, refused (a call), fanned out; 4, within the named limit, tried and
    // taken; 8 and 5 fan out at once from then on.
    assert_eq!(ask(3), 1);
    assert_eq!(ask(8), 9);
    assert_eq!(ask(4), 1);
    assert_eq!(ask(8), 8);
    assert_eq!(ask(5), 5);
    let caps = backend.capabilities();
    assert!(
        caps.native_n && caps.max_native_n == Some(4) && !caps.tries_n,
        "{caps:?}"
    );
}

#[test]
fn choices_of_one_reply_count_the_tokens_llama_cpp_leaves_out_of_their_logprobs() {
    // With n > 1 llama-server counts only the first choice; the log-probabilities, the count
    // of each, leave out the tokens that end inside a character (the emoji here is three) and
    // those of the stop sequence that ended it: all of them where the stop came first, which
    // leaves none (and must still read as the stop, not the end of sequence). Sampling from the
    // top token only, every choice is the text one choice alone writes, which the server counts
    // exactly.
    let (_lock, _server, url) = server();
    let backend = connect(&url);
    let emoji = "Emoji for a plant: 🌿 Emoji for a fire: 🔥 Emoji for a dog:";
    for (prompt, stop, written) in [
        (emoji, " Emoji", " 🐍"),
        (emoji, "tree", " 🐍 Emoji for a "),
        // A stop inside characters itself, whose every entry was dropped.
        (emoji, "🐍", " "),
        ("1, 2, 3, 4, 5,", " 6", ""),
    ] {
        let request = |n| {
            GenerationRequest::new(Prompt::Text(prompt.into()))
                .with_n(n)
                .with_max_tokens(12)
                .with_stop(stop)
                .with_sampling(Sampling {
                    top_k: Some(1),
                    ..Sampling::with_temperature(1.0)
                })
        };
        let one = block_on(backend.generate(request(1))).unwrap();
        let alone = &one.choices[0];
        assert_eq!(alone.text, written, "{alone:?}");
        assert_eq!(alone.finish_reason, FinishReason::Stop, "{alone:?}");
        assert_eq!(alone.stop_sequence.as_deref(), Some(stop), "{alone:?}");
        assert_eq!(alone.completion_tokens as u64, one.usage.completion_tokens);
        assert!(alone.completion_tokens > 1, "{alone:?}");
        let three = block_on(backend.generate(request(3))).unwrap();
        assert_eq!(three.usage.calls, 1, "one request: the server honours n");
        assert_eq!(three.choices.len(), 3);
        for choice in &three.choices {
            assert_eq!(choice.text, alone.text, "{stop:?}");
            assert_eq!(choice.stop_sequence.as_deref(), Some(stop));
            assert_eq!(
                choice.completion_tokens, alone.completion_tokens,
                "{stop:?}: {choice:?}"
            );
        }
        assert_eq!(
            three.usage.completion_tokens,
            3 * one.usage.completion_tokens
        );
    }
}

#[test]
fn a_seeded_run_repeats_its_samples_and_another_seed_does_not() {
    // A sample at temperature 1 for each of four questions, on a fresh server each time (the
    // same requests in the same order: nothing cached from the last run changes the arithmetic).
    let samples = |seed: u64| -> Vec<String> {
        let (_lock, _server, url) = server();
        let strategy: Arc<dyn ponder::engine::Strategy> = StrategyConfig::Direct(DirectConfig {
            max_tokens: std::num::NonZeroUsize::new(16).unwrap(),
            temperature: 1.0,
            ..DirectConfig::default()
        })
        .build()
        .unwrap()
        .into();
        let problems: Vec<Problem> = (0..4)
            .map(|i| {
                Problem::new(
                    format!("q{i}"),
                    format!("Tell me a story about the number {i}."),
                )
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("results.jsonl");
        let runner = Runner::new(strategy, connect(&url)).with_seed(seed);
        block_on(runner.run(&problems, &out, |_| {})).unwrap();
        let mut lines = ponder::engine::runner::read_results(&out).unwrap();
        lines.sort_by(|a, b| a.id.cmp(&b.id));
        lines.into_iter().map(|l| l.completion).collect()
    };
    let first = samples(7);
    assert_eq!(first.len(), 4);
    assert!(first.iter().all(|c| !c.is_empty()), "{first:?}");
    assert_eq!(samples(7), first, "the same seed, the same samples");
    assert_ne!(samples(8), first, "another seed, other samples");
}

#[test]
fn stop_sequences_end_the_text_before_them() {
    let (_lock, _server, url) = server();
    let backend = connect(&url);
    let prompt = Prompt::Text("1, 2, 3, 4, 5,".into());
    let free = GenerationRequest::new(prompt.clone()).with_max_tokens(16);
    let free = block_on(backend.generate(free)).unwrap();
    let text = &free.choices[0].text;
    assert!(
        text.contains(" 8"),
        "greedy counting should reach 8: {text:?}"
    );
    for stop in [" 8", "7,"] {
        let request = GenerationRequest::new(prompt.clone())
            .with_max_tokens(16)
            .with_stop(stop);
        let choice = block_on(backend.generate(request))
            .unwrap()
            .choices
            .remove(0);
        assert_eq!(choice.finish_reason, FinishReason::Stop);
        assert_eq!(choice.stop_sequence.as_deref(), Some(stop));
        assert!(!choice.text.contains(stop), "{stop:?}: {:?}", choice.text);
        assert_eq!(choice.text, text[..text.find(stop).unwrap()], "{stop:?}");
    }
    // A short answer ends at the end-of-sequence token: no stop sequence ended it, whether the
    // request had one (the OpenAI API says "stop" for both; llama.cpp's log-probabilities tell).
    for stop in [None, Some("zzqx")] {
        let mut request = GenerationRequest::new(chat("What is 2 + 3?")).with_max_tokens(64);
        if let Some(stop) = stop {
            request = request.with_stop(stop);
        }
        let choice = block_on(backend.generate(request))
            .unwrap()
            .choices
            .remove(0);
        assert_eq!(choice.finish_reason, FinishReason::Stop, "{choice:?}");
        assert_eq!(choice.stop_sequence, None, "{stop:?}: {choice:?}");
        assert!(choice.logprobs.is_none(), "not asked for");
    }
}

#[test]
fn beam_search_over_http_grows_past_the_first_step() {
    // Steps end at the delimiter (a stop sequence), solutions at the end-of-sequence token; the
    // server says "stop" for both, so the backend must tell them apart or every beam would be
    // taken as finished after one step.
    let (_lock, _server, url) = server();
    let config = BeamSearchConfig {
        n: std::num::NonZeroUsize::new(4).unwrap(),
        beam_width: std::num::NonZeroUsize::new(2).unwrap(),
        max_steps: std::num::NonZeroUsize::new(3).unwrap(),
        max_step_tokens: std::num::NonZeroUsize::new(48).unwrap(),
        max_final_tokens: std::num::NonZeroUsize::new(96).unwrap(),
        ..BeamSearchConfig::default()
    };
    let search = BeamSearch::new(config, SearchKind::Beam).unwrap();
    let problem = Problem::new(
        "p",
        "Tom has 3 apples and buys 4 more. Then he gives 2 to Ann. How many apples does he have?",
    );
    let solution = block_on(solve(&search, &problem, connect(&url), Budget::unlimited())).unwrap();
    let details: SearchDetails = serde_json::from_value(solution.details.clone()).unwrap();
    let trace = solution.trace.expect("a search tree");
    let nodes = trace.json["nodes"].as_array().unwrap();
    let deepest = nodes.iter().filter_map(|n| n["depth"].as_u64()).max();
    assert!(
        details.rounds >= 2 && deepest >= Some(2),
        "no beam grew past its first step: {details:?}, {nodes:#?}"
    );
    // A step that ended at the delimiter is a partial solution, kept active or expanded.
    assert!(
        nodes
            .iter()
            .any(|n| n["depth"] == 1 && (n["state"] == "expanded" || n["state"] == "pruned")),
        "{nodes:#?}"
    );
    // The prompts of later rounds extend earlier ones: the server's prefix cache serves them.
    assert!(
        solution.usage.cached_prompt_tokens > 0,
        "{:?}",
        solution.usage
    );
}

#[test]
fn logprobs_carry_token_ids_that_match_the_tokenizer() {
    let (_lock, _server, url) = server();
    let backend = connect(&url);
    let request = GenerationRequest::new(Prompt::Text("The capital of France is".into()))
        .with_max_tokens(6)
        .with_top_logprobs(5);
    let choice = block_on(backend.generate(request))
        .unwrap()
        .choices
        .remove(0);
    let logprobs = choice.logprobs.expect("asked for");
    assert_eq!(logprobs.len(), choice.completion_tokens);
    let joined: String = logprobs.iter().map(|l| l.token.as_str()).collect();
    assert_eq!(joined, choice.text);
    for l in &logprobs {
        assert_eq!(l.top.len(), 5);
        assert!(l.top.windows(2).all(|w| w[0].logprob >= w[1].logprob));
        // Greedy: the chosen token is the most likely one.
        assert_eq!(l.top[0].token, l.token);
        assert!(l.logprob <= 0.0);
        let ids = block_on(backend.tokenize(TokenizeInput::Piece(&l.top[0].token))).unwrap();
        assert_eq!(ids, vec![l.top[0].id], "{l:?}");
    }
}

#[test]
fn budget_forcing_falls_back_to_resubmission() {
    let (_lock, _server, url) = server();
    let backend = connect(&url);
    let config = BudgetForcingConfig {
        mode: ForcingMode::InDecode,
        min_thinking_tokens: 0,
        max_thinking_tokens: 48,
        max_waits: 1,
        ..BudgetForcingConfig::default()
    };
    let solution = solve_one(
        StrategyConfig::BudgetForcing(config),
        backend,
        "What is 17 times 3?",
    );
    let details: ForcingDetails = serde_json::from_value(solution.details).unwrap();
    assert_eq!(
        details.mode,
        ForcingMode::Resubmit,
        "no logits processors over HTTP"
    );
    assert!(details.thinking_tokens <= 48, "{details:?}");
    assert!(solution.completion.contains("</think>"));
    assert!(solution.completion.contains("Final Answer:"));
    assert!(details.answer_tokens >= 1);
    assert!(solution.usage.calls >= 2, "thinking, then the answer");
}

#[test]
fn long_thinking_and_deep_searches_end_at_a_small_context_window_not_in_errors() {
    // A window of 256 tokens a slot (the server refuses a request whose prompt and max_tokens
    // pass it).
    let _lock = SERVERS.lock().unwrap_or_else(|p| p.into_inner());
    let server = LlamaServer::start_with(&smollm_path(), 1, &["--ctx-size", "256"]);
    let backend = connect(&server.url());
    // No logits processors over HTTP: budget forcing resubmits.
    common::thinking_and_search_end_at_a_256_token_window(backend, &[ForcingMode::Resubmit]);
}

#[test]
fn budget_forcing_goes_on_from_a_thinking_block_the_servers_template_opens() {
    // llama-server with a chat template whose assistant turn starts "<think>\n" (as
    // DeepSeek-R1's distills' does): the resubmitted prefixes must not open it again.
    let _lock = SERVERS.lock().unwrap_or_else(|p| p.into_inner());
    let template = common::thinking_template();
    let server = LlamaServer::start_with(
        &smollm_path(),
        2,
        &[
            "--jinja",
            "--chat-template-file",
            template.to_str().unwrap(),
        ],
    );
    let backend = connect(&server.url());
    let config = BudgetForcingConfig {
        max_thinking_tokens: 24,
        max_waits: 1,
        ..BudgetForcingConfig::default()
    };
    let strategy = ponder::strategies::BudgetForcing::new(config).unwrap();
    let problem = Problem::new("p", "What is 6 times 7?");
    let rendered = block_on(backend.tokenize(TokenizeInput::Prompt(&Prompt::Chat {
        messages: strategy.messages(&problem),
        assistant_prefix: String::new(),
    })))
    .unwrap();
    let tail = block_on(backend.detokenize(&rendered[rendered.len() - 8..])).unwrap();
    assert!(tail.ends_with("assistant\n<think>\n"), "{tail:?}");
    // A judge on this server has the block closed before the token it reads.
    assert_eq!(
        block_on(ponder::engine::turn::answer_opening(backend.as_ref())).unwrap(),
        "\n</think>\n\n"
    );
    let solution = block_on(solve(&strategy, &problem, backend, Budget::unlimited())).unwrap();
    let details: ForcingDetails = serde_json::from_value(solution.details).unwrap();
    assert_eq!(details.mode, ForcingMode::Resubmit);
    // The first request is the template's prompt alone (a second "<think>" would be more).
    assert_eq!(
        solution.usage.prompt_tokens - details.resubmitted_prompt_tokens,
        rendered.len() as u64,
        "{details:?}"
    );
    assert!(details.opened_by_template);
    assert!(solution.completion.contains("</think>\nFinal Answer:"));
}

#[test]
fn best_of_n_with_a_judge_reading_top_logprobs() {
    let (_lock, _server, url) = server();
    let backend = connect(&url);
    let config: BestOfNConfig = serde_json::from_value(serde_json::json!({
        "n": 4,
        "select": "weighted",
        "scorer": { "kind": "llm_judge" },
        "inner": { "kind": "direct", "temperature": 0.8, "max_tokens": 48 }
    }))
    .unwrap();
    let solution = solve_one(StrategyConfig::BestOfN(config), backend, "What is 6 + 7?");
    assert_eq!(solution.candidates.len(), 4);
    let scores: Vec<f64> = solution
        .candidates
        .iter()
        .map(|c| c.score.expect("judged"))
        .collect();
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)), "{scores:?}");
    // Read from the judge's top log-probabilities, not a constant fallback.
    assert!(scores.iter().any(|&s| s != 0.5), "{scores:?}");
    // One request for the four samples, one judgement each.
    assert_eq!(solution.usage.calls, 5);
}

#[test]
fn a_client_error_is_reported_with_the_servers_message() {
    let (_lock, _server, url) = server();
    let backend = connect(&url);
    let request = GenerationRequest::new(Prompt::Tokens(vec![1, 99_999_999])).with_max_tokens(2);
    let err = block_on(backend.generate(request)).unwrap_err();
    match &err {
        Error::Http {
            status, message, ..
        } => {
            assert_eq!(*status, 400);
            assert!(message.contains("invalid tokens"), "{message}");
        }
        other => panic!("expected an HTTP error, got {other:?}"),
    }
}

#[test]
fn a_request_is_given_up_at_its_deadline() {
    // A wall-time budget's deadline: the server's reply holds nothing until it is whole, so the
    // request is given up there (its connection closed) rather than waited for.
    let (_lock, _server, url) = server();
    let backend = connect(&url);
    // SmolLM2 goes on counting to its max_tokens: many seconds on this CPU.
    let numbers: String = (1..=20).map(|i| format!("{i}\n")).collect();
    let long = GenerationRequest::new(Prompt::Text(numbers)).with_max_tokens(1000);
    let sent = std::time::Instant::now();
    let err = block_on(
        backend.generate(
            long.clone()
                .with_deadline(sent + std::time::Duration::from_millis(500)),
        ),
    )
    .unwrap_err();
    let took = sent.elapsed();
    assert!(matches!(err, Error::BudgetExhausted { .. }), "{err:?}");
    // Without the deadline the same request runs to the end of its tokens.
    let whole = block_on(backend.generate(long)).unwrap();
    let full = sent.elapsed() - took;
    assert!(
        whole.choices[0].completion_tokens > 800 && took * 4 < full,
        "given up after {took:?}; the whole reply took {full:?} ({} tokens)",
        whole.choices[0].completion_tokens
    );
}

#[test]
fn a_killed_server_gives_a_typed_error_and_a_resumed_run_completes() {
    let (_lock, mut own, _) = server();
    let mut config = ModelConfig::openai(vec![own.url()], "smollm2");
    config.retries = Some(1);
    let backend = block_on(config.load()).unwrap();
    let strategy: Arc<dyn ponder::engine::Strategy> = StrategyConfig::Direct(DirectConfig {
        max_tokens: std::num::NonZeroUsize::new(24).unwrap(),
        ..DirectConfig::default()
    })
    .build()
    .unwrap()
    .into();
    let problems: Vec<Problem> = (0..4)
        .map(|i| Problem::new(format!("q{i}"), format!("What is {i} + 1?")))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results.jsonl");
    let runner = Runner::new(Arc::clone(&strategy), Arc::clone(&backend)).with_concurrency(1);
    // One problem done, then the server dies.
    let summary = block_on(runner.run(&problems[..1], &out, |_| {})).unwrap();
    assert_eq!((summary.solved, summary.errors), (1, 0));
    own.kill();
    let err = block_on(backend.generate(GenerationRequest::new(chat("hi")))).unwrap_err();
    assert!(
        matches!(err, Error::Connection { attempts: 2, .. }),
        "expected a connection error after 1 retry, got {err:?}"
    );
    let summary = block_on(runner.run(&problems, &out, |_| {})).unwrap();
    assert_eq!((summary.resumed, summary.errors), (1, 3), "{summary:?}");
    let lines = ponder::engine::runner::read_results(&out).unwrap();
    let errors: Vec<&String> = lines.iter().filter_map(|l| l.error.as_ref()).collect();
    assert_eq!(errors.len(), 3);
    // The request above gave up on the dead server: until one answers, each tries once.
    assert!(
        errors.iter().all(|e| e.contains("gave up after 1 attempt")),
        "{errors:?}"
    );
    // Back on the same port: the resumed run redoes the failed problems only.
    own.restart();
    let summary = block_on(runner.run(&problems, &out, |_| {})).unwrap();
    assert_eq!(
        (summary.resumed, summary.solved, summary.errors),
        (1, 3, 0),
        "{summary:?}"
    );
    let lines = ponder::engine::runner::read_results(&out).unwrap();
    let mut ids: Vec<&str> = lines
        .iter()
        .filter(|l| l.error.is_none())
        .map(|l| l.id.as_str())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["q0", "q1", "q2", "q3"]);
}

/// A local HTTP responder that answers each connection with the next scripted status, and
/// counts requests: the retry policy, without waiting on a real server to misbehave.
fn scripted_server(statuses: Vec<u16>) -> (String, Arc<AtomicUsize>) {
    scripted_server_with(statuses.into_iter().map(|s| (s, None)).collect())
}

/// Like [`scripted_server`], with the body of each reply where one is given (status 0: no
/// reply at all).
fn scripted_server_with(replies: Vec<(u16, Option<String>)>) -> (String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    let url = local_server(None, move |path, _| {
        if path == "/v1/models" {
            return Some((200, r#"{"data":[{"id":"m"}]}"#.to_string()));
        }
        if !path.starts_with("/v1/") {
            return Some((404, NO_SUCH_ENDPOINT.to_string()));
        }
        let i = seen.fetch_add(1, Ordering::SeqCst);
        let (status, given) = replies.get(i).cloned().unwrap_or((200, None));
        // Status 0: the request is taken and never answered (a server that hangs).
        let body = match (status, given) {
            (0, _) => return None,
            (_, Some(body)) => body,
            (200, None) => r#"{"choices":[{"index":0,"text":"ok","finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#.to_string(),
            (_, None) => format!(r#"{{"error":{{"message":"scripted {status}"}}}}"#),
        };
        Some((status, body))
    });
    (url, count)
}

const NO_SUCH_ENDPOINT: &str = r#"{"error":{"message":"no such endpoint"}}"#;

/// A local HTTP server: each connection's request is read and answered with what `answer`
/// makes of its path and body, `(status, body)` (`None`: held open, never answered; for a 3xx
/// the body is the `Location`). It stops listening after `connections`, where given.
fn local_server(
    connections: Option<usize>,
    mut answer: impl FnMut(&str, &str) -> Option<(u16, String)> + Send + 'static,
) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{BufRead, BufReader, Read, Write};
        let mut held = Vec::new();
        for stream in listener.incoming().take(connections.unwrap_or(usize::MAX)) {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut path, mut length, mut line) = (String::new(), 0, String::new());
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                if path.is_empty() {
                    path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut sent = vec![0; length];
            let _ = reader.read_exact(&mut sent);
            let Some((status, mut body)) = answer(&path, &String::from_utf8_lossy(&sent)) else {
                held.push(stream);
                continue;
            };
            let mut headers = String::new();
            if (300..400).contains(&status) {
                headers = format!("Location: {body}\r\n");
                body.clear();
            }
            let _ = stream.write_all(
                format!(
                    "HTTP/1.1 {status} X\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    url
}

fn scripted_backend(url: &str, retries: u32) -> OpenAiBackend {
    let mut options = OpenAiOptions::new(url, "m");
    options.retries = retries;
    options.backoff = std::time::Duration::from_millis(10);
    block_on(OpenAiBackend::connect(options)).unwrap()
}

#[test]
fn retries_429_and_5xx_but_never_4xx() {
    let (url, count) = scripted_server(vec![429, 503, 200]);
    let backend = scripted_backend(&url, 3);
    assert!(!backend.capabilities().tokenizer, "no /tokenize there");
    let generation =
        block_on(backend.generate(GenerationRequest::new(Prompt::Text("x".into())))).unwrap();
    assert_eq!(generation.choices[0].text, "ok");
    assert_eq!(count.load(Ordering::SeqCst), 3);

    let (url, count) = scripted_server(vec![422, 200]);
    let backend = scripted_backend(&url, 3);
    let err =
        block_on(backend.generate(GenerationRequest::new(Prompt::Text("x".into())))).unwrap_err();
    assert!(
        matches!(&err, Error::Http { status: 422, message, .. } if message == "scripted 422"),
        "{err:?}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1, "a 4xx is not retried");

    // A 500 through every retry: the server answered, so the request failed, not the server
    // lost (a 500 for one prompt alone drops that sample, not the whole solve).
    let (url, count) = scripted_server(vec![500, 500, 500]);
    let backend = scripted_backend(&url, 2);
    let err =
        block_on(backend.generate(GenerationRequest::new(Prompt::Text("x".into())))).unwrap_err();
    assert!(
        matches!(&err, Error::Http { status: 500, message, .. }
            if message.starts_with("scripted 500") && message.contains("3 attempt")),
        "{err:?}"
    );
    assert!(err.is_per_call(), "{err}");
    assert_eq!(count.load(Ordering::SeqCst), 3);
    // A 503 through every retry is a server down for every request, not one sample's failure.
    let (url, count) = scripted_server(vec![503, 503, 503]);
    let backend = scripted_backend(&url, 2);
    let err =
        block_on(backend.generate(GenerationRequest::new(Prompt::Text("x".into())))).unwrap_err();
    assert!(
        matches!(&err, Error::Connection { attempts: 3, reason, .. } if reason.contains("HTTP 503")),
        "{err:?}"
    );
    assert!(!err.is_per_call(), "{err}");
    assert_eq!(count.load(Ordering::SeqCst), 3);
    // A 500 about the request's context (llama-server's KV cache filled by the requests in
    // flight) is that call's failure, not retried (it would decode as far again) and not a
    // server lost: a strategy drops that sample and goes on.
    let full = r#"{"error":{"code":500,"message":"Context size has been exceeded.","type":"server_error"}}"#;
    let (url, count) = scripted_server_with(vec![(500, Some(full.into()))]);
    let backend = scripted_backend(&url, 2);
    let err =
        block_on(backend.generate(GenerationRequest::new(Prompt::Text("x".into())))).unwrap_err();
    assert!(
        matches!(&err, Error::Http { status: 500, message, .. } if message.contains("Context size")),
        "{err:?}"
    );
    assert!(err.is_per_call());
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn a_gateways_timeout_is_a_timeout_and_a_501_is_never_retried() {
    let ask = |backend: &OpenAiBackend, n: usize| {
        let request = GenerationRequest::new(Prompt::Text("x".into()))
            .with_n(n)
            .with_sampling(Sampling::with_temperature(0.8));
        block_on(backend.generate(request))
    };
    // A proxy's 504 (nginx's `proxy_read_timeout`) or 524 (Cloudflare's): the request ran out
    // of time, and sent again to one server would only run as long again. So too the one try
    // of an n not known to be taken. (A 408 is the server closing a connection it waited on
    // for a request, which may be sent again: retried, as before.)
    for (status, n) in [(504, 1), (524, 1), (504, 2)] {
        let (url, count) = scripted_server(vec![status, 200, 200, 200]);
        let backend = scripted_backend(&url, 3);
        let err = ask(&backend, n).unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
        let shown = err.to_string();
        assert!(
            shown.contains(&format!("HTTP {status}"))
                && shown.contains(&format!("scripted {status}")),
            "{shown}"
        );
        assert_eq!(count.load(Ordering::SeqCst), 1, "{status} with n = {n}");
    }
    let (url, count) = scripted_server(vec![408, 200]);
    let backend = scripted_backend(&url, 3);
    assert_eq!(ask(&backend, 1).unwrap().choices[0].text, "ok");
    assert_eq!(count.load(Ordering::SeqCst), 2, "a 408 is sent again");
    // With a fleet, as our own timeout: once to each server, then the next request goes on.
    let (a, to_a) = scripted_server(vec![504; 16]);
    let (b, to_b) = scripted_server(vec![504, 200]);
    let mut options = OpenAiOptions::new(a, "m");
    options.base_urls.push(b);
    options.backoff = std::time::Duration::from_millis(10);
    let backend = block_on(OpenAiBackend::connect(options)).unwrap();
    let err = ask(&backend, 1).unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert_eq!(
        (to_a.load(Ordering::SeqCst), to_b.load(Ordering::SeqCst)),
        (1, 1)
    );
    assert_eq!(ask(&backend, 1).unwrap().choices[0].text, "ok");
    assert_eq!(to_b.load(Ordering::SeqCst), 2);
    // Not implemented (llama-server's `not_supported_error`), HTTP version not supported: never
    // temporary, so the server's words at once.
    for status in [501, 505] {
        let refusal = format!(
            r#"{{"error":{{"code":{status},"message":"This server does not support this","type":"not_supported_error"}}}}"#
        );
        let (url, count) = scripted_server_with(vec![(status, Some(refusal)), (200, None)]);
        let backend = scripted_backend(&url, 3);
        let err = ask(&backend, 1).unwrap_err();
        assert!(
            matches!(&err, Error::Http { status: s, message, .. } if *s == status && message == "This server does not support this"),
            "{err:?}"
        );
        assert_eq!(count.load(Ordering::SeqCst), 1, "{status}");
    }
}

#[test]
fn a_reply_without_usage_is_counted_from_its_bytes_not_free() {
    // No `usage`, no `/tokenize`: the completion counts its bytes (an upper bound of its
    // tokens) and the meter counts the prompt as it bounded it (one byte, one token at most).
    let bare = r#"{"choices":[{"index":0,"text":"four","finish_reason":"stop"}]}"#;
    let (url, _) = scripted_server_with(vec![(200, Some(bare.into()))]);
    let metered = ponder::engine::Metered::new(scripted_backend(&url, 0), Budget::unlimited());
    let generation =
        block_on(metered.generate(GenerationRequest::new(Prompt::Text("x".into())))).unwrap();
    assert_eq!(generation.choices[0].completion_tokens, 4);
    let usage = metered.meter().usage();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (1, 4));
    // A usage without the completion's count, or with `null` for it (vLLM's type allows
    // one): counted the same way, neither free nor a failed reply.
    for usage in [
        r#"{"total_tokens":20}"#,
        r#"{"prompt_tokens":1,"completion_tokens":null}"#,
    ] {
        let reply = format!(
            r#"{{"choices":[{{"index":0,"text":"four","finish_reason":"stop"}}],"usage":{usage}}}"#
        );
        let (url, _) = scripted_server_with(vec![(200, Some(reply))]);
        let backend = scripted_backend(&url, 0);
        let generation =
            block_on(backend.generate(GenerationRequest::new(Prompt::Text("x".into())))).unwrap();
        assert_eq!(generation.choices[0].completion_tokens, 4, "{usage}");
    }
}

#[test]
fn a_prompt_the_server_says_is_too_long_for_its_window_is_prompt_too_long() {
    // vLLM's words, and llama-server's with its counts.
    let vllm = r#"{"object":"error","message":"This model's maximum context length is 2048 tokens. However, you requested 2060 tokens (2000 in the messages, 60 in the completion). Please reduce the length of the messages or completion.","type":"BadRequestError","param":null,"code":400}"#;
    let llama = r#"{"error":{"code":400,"message":"request (2101 tokens) exceeds the available context size (2048 tokens), try increasing it","type":"exceed_context_size_error","n_prompt_tokens":2101,"n_ctx":2048}}"#;
    for (reply, prompt_tokens, context_tokens) in [(vllm, 0, 0), (llama, 2101, 2048)] {
        let (url, _) = scripted_server_with(vec![(400, Some(reply.into()))]);
        let backend = scripted_backend(&url, 0);
        let err = block_on(
            backend.generate(GenerationRequest::new(Prompt::Text("x".into())).with_max_tokens(60)),
        )
        .unwrap_err();
        match err {
            Error::PromptTooLong {
                prompt_tokens: p,
                max_tokens: 60,
                context_tokens: c,
            } => assert_eq!((p, c), (prompt_tokens, context_tokens), "{reply}"),
            other => panic!("{other:?} from {reply}"),
        }
    }
}

#[test]
fn a_request_that_times_out_is_not_sent_again() {
    // The first n > 1 asks whether the server takes n; one that hangs says nothing, and is not
    // asked again (as any timed-out request: it would only run as long again). Sampled: greedy
    // choices would be asked for once, with n = 1.
    let ask = |n: usize| {
        GenerationRequest::new(Prompt::Text("x".into()))
            .with_n(n)
            .with_sampling(Sampling::with_temperature(0.8))
    };
    let (url, count) = scripted_server(vec![0, 0, 0]);
    let mut options = OpenAiOptions::new(&url, "m");
    options.retries = 3;
    options.timeout = std::time::Duration::from_millis(300);
    let backend = block_on(OpenAiBackend::connect(options)).unwrap();
    for n in [2, 1] {
        let before = count.load(Ordering::SeqCst);
        let err = block_on(backend.generate(ask(n))).unwrap_err();
        assert!(
            matches!(&err, Error::Timeout { after, .. } if after.as_millis() == 300),
            "{err:?}"
        );
        assert!(err.to_string().contains("no answer within 300ms"), "{err}");
        assert_eq!(count.load(Ordering::SeqCst) - before, 1, "n = {n}");
    }
    // The hang said nothing about n: neither taken nor refused, still to be tried.
    let caps = backend.capabilities();
    assert!(!caps.native_n && caps.tries_n, "{caps:?}");
    // With a second server, it goes there.
    let (hanging, hung) = scripted_server(vec![0; 16]);
    let (other, answered) = scripted_server(vec![]);
    let mut options = OpenAiOptions::new(&hanging, "m");
    options.base_urls.push(other);
    options.timeout = std::time::Duration::from_millis(300);
    let backend = block_on(OpenAiBackend::connect(options)).unwrap();
    for n in [2, 2, 1, 1] {
        let done = answered.load(Ordering::SeqCst);
        let generation = block_on(backend.generate(ask(n))).unwrap();
        assert_eq!(generation.choices.len(), n);
        assert!(answered.load(Ordering::SeqCst) > done, "n = {n}");
    }
    assert!(
        hung.load(Ordering::SeqCst) > 0,
        "round-robin sent some to the hanging one"
    );
}

#[test]
fn the_stop_a_server_names_is_the_stop_sequence() {
    // vLLM names it in `stop_reason`, SGLang in `matched_stop`: a string for a stop sequence,
    // null or a token id for an end-of-sequence token.
    let reply = |field: &str, value: &str| {
        Some(format!(
            r#"{{"choices":[{{"index":0,"text":"a","finish_reason":"stop","{field}":{value}}}],"usage":{{"prompt_tokens":3,"completion_tokens":1}}}}"#
        ))
    };
    let cases = [
        ("stop_reason", r#""\n\n""#, Some("\n\n")),
        ("stop_reason", "null", None),
        ("matched_stop", r#""\n\n""#, Some("\n\n")),
        ("matched_stop", "151643", None),
    ];
    let (url, _) = scripted_server_with(
        cases
            .iter()
            .map(|(field, value, _)| (200, reply(field, value)))
            .collect(),
    );
    let backend = scripted_backend(&url, 0);
    for (field, value, expected) in cases {
        let request = GenerationRequest::new(Prompt::Text("x".into())).with_stop("\n\n");
        let choice = block_on(backend.generate(request))
            .unwrap()
            .into_first_choice()
            .unwrap();
        assert_eq!(
            choice.stop_sequence.as_deref(),
            expected,
            "{field}: {value}"
        );
    }
}

#[test]
fn a_server_that_refuses_or_ignores_n_gets_single_requests() {
    // Refuses n = 3 with a 500 that says so (old llama.cpp): no retries of that, three single
    // requests.
    let refusal = r#"{"error":{"message":"Only one completion choice is allowed"}}"#;
    let (url, count) = scripted_server_with(vec![(500, Some(refusal.into()))]);
    let backend = scripted_backend(&url, 3);
    // Sampled: greedy choices are asked for once and copied.
    let request = GenerationRequest::new(Prompt::Text("x".into()))
        .with_n(3)
        .with_sampling(Sampling::with_temperature(0.8));
    let generation = block_on(backend.generate(request.clone())).unwrap();
    assert_eq!(generation.choices.len(), 3);
    assert_eq!(count.load(Ordering::SeqCst), 4);
    assert!(!backend.capabilities().native_n);
    // No n above 1 is left to try (the refusal names no limit): a meter holds room for no try.
    assert!(!backend.capabilities().tries_n);
    // Later requests fan out at once.
    block_on(backend.generate(request.clone())).unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 7);
    // A 500 that does not say why may be a hiccup: that request fans out, the next asks again
    // (and gets its three choices in one reply).
    let three = r#"{"choices":[{"index":0,"text":"a","finish_reason":"stop"},{"index":1,"text":"b","finish_reason":"stop"},{"index":2,"text":"c","finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":3}}"#;
    let (url, count) = scripted_server_with(vec![
        (500, None),
        (200, None),
        (200, None),
        (200, None),
        (200, Some(three.into())),
    ]);
    let backend = scripted_backend(&url, 3);
    block_on(backend.generate(request.clone())).unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 4);
    let generation = block_on(backend.generate(request.clone())).unwrap();
    assert_eq!(generation.choices.len(), 3);
    assert_eq!(count.load(Ordering::SeqCst), 5);
    assert!(backend.capabilities().native_n);
    // Answers n = 3 with one choice: the two missing ones are fanned out.
    let (url, count) = scripted_server(vec![]);
    let backend = scripted_backend(&url, 3);
    let generation = block_on(backend.generate(request.clone())).unwrap();
    assert_eq!(generation.choices.len(), 3);
    assert_eq!(generation.usage.calls, 3);
    assert_eq!(count.load(Ordering::SeqCst), 3);
    assert!(!backend.capabilities().native_n);
    // A busy server (503) says nothing about n: this request fans out, the question stays open.
    let (url, count) = scripted_server(vec![503]);
    let backend = scripted_backend(&url, 3);
    let generation = block_on(backend.generate(request.clone())).unwrap();
    assert_eq!(generation.choices.len(), 3);
    assert_eq!(count.load(Ordering::SeqCst), 4);
    assert!(!backend.capabilities().native_n, "not decided by a 503");

    // Until the server is known to honour n, a meter holds room for a request per sample
    // (and the try of n): a call budget of 2 does not let a sampled n = 3 fan out into 3
    // requests. It is refused before any is sent.
    let (url, count) = scripted_server(vec![]);
    let metered = ponder::engine::Metered::new(
        scripted_backend(&url, 3),
        Budget::unlimited().with_max_calls(2),
    );
    let result = block_on(metered.generate(request));
    assert!(
        matches!(
            result,
            Err(Error::BudgetExhausted {
                resource: ponder::engine::Resource::Calls
            })
        ),
        "{result:?}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 0);
    assert_eq!(metered.meter().usage().calls, 0);
}

/// A server that takes `n` up to `slots` choices and refuses more with a 400 saying
/// `refusal(slots, n)`; with `props`, its /props tells the slots (`total_slots`), as
/// llama-server's does.
fn slots_server(
    slots: Arc<AtomicUsize>,
    props: bool,
    refusal: fn(usize, usize) -> String,
) -> (String, Sent) {
    vllm_server(move |path, body| {
        let limit = slots.load(Ordering::SeqCst);
        match path {
            "/props" if props => Some((200, format!(r#"{{"total_slots":{limit}}}"#))),
            "/v1/completions" => {
                let n = body["n"].as_u64().unwrap_or(1) as usize;
                if n > limit {
                    let message = refusal(limit, n);
                    return Some((
                        400,
                        serde_json::json!({ "error": { "message": message } }).to_string(),
                    ));
                }
                let choices: Vec<_> = (0..n)
                    .map(|i| serde_json::json!({"index": i, "text": "ok", "finish_reason": "stop"}))
                    .collect();
                let usage = serde_json::json!({"prompt_tokens": 3, "completion_tokens": n});
                Some((
                    200,
                    serde_json::json!({ "choices": choices, "usage": usage }).to_string(),
                ))
            }
            _ => None,
        }
    })
}

#[test]
fn a_refusal_past_the_slots_that_names_no_number_reads_them_from_props() {
    // llama-server since 2025 refuses an `n` past its slots without naming them; its /props
    // tells them (`total_slots`).
    let (url, sent) = slots_server(Arc::new(AtomicUsize::new(4)), true, |_, _| {
        "n_cmpl cannot be greater than the number of slots, please increase -np".into()
    });
    let backend = scripted_backend(&url, 0);
    let ask = |n: usize| {
        let request = GenerationRequest::new(Prompt::Text("x".into()))
            .with_n(n)
            .with_sampling(Sampling::with_temperature(0.8));
        let generation = block_on(backend.generate(request)).unwrap();
        assert_eq!(generation.choices.len(), n);
        sent.lock().unwrap().clear();
        generation.usage.calls
    };
    // llama.cpp's own name for the repetition penalty goes to it (it answers /props).
    let request = GenerationRequest::new(Prompt::Text("x".into()));
    block_on(backend.generate(request)).unwrap();
    let body = sent_to(&sent.lock().unwrap(), "/v1/completions")[0].clone();
    assert_eq!(body["repeat_penalty"], 1.0, "{body}");
    sent.lock().unwrap().clear();
    // 8 refused and fanned out; 4, within the slots, still one request; 6 fans out at once.
    assert_eq!(ask(8), 9);
    assert_eq!(ask(4), 1);
    assert_eq!(ask(6), 6);
    assert_eq!(backend.capabilities().max_native_n, Some(4));
}

#[test]
fn an_n_past_the_servers_slots_fans_out_and_smaller_ones_stay_in_one_request() {
    // llama-server takes `n` up to its slots and refuses more with a 400 naming `n`.
    let slots = Arc::new(AtomicUsize::new(4));
    let (url, sent) = slots_server(Arc::clone(&slots), false, |slots, n| {
        format!("Field 'n': Value must be between 1 <= value <= {slots}, but got {n}")
    });
    let backend = scripted_backend(&url, 0);
    let ns = || -> Vec<u64> {
        sent_to(&sent.lock().unwrap(), "/v1/completions")
            .iter()
            .map(|body| body["n"].as_u64().unwrap_or(1))
            .collect()
    };
    let ask = |n: usize| {
        let request = GenerationRequest::new(Prompt::Text("x".into()))
            .with_n(n)
            .with_sampling(Sampling::with_temperature(0.8));
        let generation = block_on(backend.generate(request)).unwrap();
        assert_eq!(generation.choices.len(), n);
        sent.lock().unwrap().clear();
        generation.usage.calls
    };
    // n = 8 first: tried, refused, fanned out; the refused request was a call too.
    sent.lock().unwrap().clear();
    assert_eq!(ask(8), 9);
    assert!(!backend.capabilities().native_n);
    // A smaller n is still tried, and taken in one request.
    assert_eq!(ask(3), 1);
    let caps = backend.capabilities();
    assert!(
        caps.native_n && caps.max_native_n == Some(3) && caps.tries_n,
        "{caps:?}"
    );
    // 8 again fans out at once, and so do 5 to 7, past the limit the refusal named; 4 is
    // tried and taken.
    assert_eq!(ask(8), 8);
    assert_eq!(ask(4), 1);
    assert_eq!(ask(6), 6);
    assert_eq!(ask(5), 5);
    let caps = backend.capabilities();
    assert_eq!(caps.max_native_n, Some(4));
    assert!(!caps.tries_n, "every n is known: {caps:?}");
    assert_eq!(ask(4), 1);
    assert_eq!(ask(7), 7);
    // Restarted with fewer slots: an n it took is refused, that request fans out, and later
    // ones of that n fan out at once.
    slots.store(2, Ordering::SeqCst);
    assert_eq!(ask(3), 4);
    assert_eq!(backend.capabilities().max_native_n, Some(2));
    sent.lock().unwrap().clear();
    let request = GenerationRequest::new(Prompt::Text("x".into()))
        .with_n(3)
        .with_sampling(Sampling::with_temperature(0.8));
    block_on(backend.generate(request)).unwrap();
    assert_eq!(ns(), vec![1, 1, 1]);
    sent.lock().unwrap().clear();
    // A meter holds room for every request a call may make: n = 3 past the largest taken
    // is three requests, so a budget of two calls refuses it before any is sent.
    let metered = ponder::engine::Metered::new(backend, Budget::unlimited().with_max_calls(2));
    let request = GenerationRequest::new(Prompt::Text("x".into()))
        .with_n(3)
        .with_sampling(Sampling::with_temperature(0.8));
    assert!(matches!(
        block_on(metered.generate(request)),
        Err(Error::BudgetExhausted { .. })
    ));
    assert!(ns().is_empty());
}

#[test]
fn the_context_window_is_the_listed_models_own() {
    // A gateway listing several models: the window is the one of the model asked for.
    let (url, _) = vllm_server(|path, _| {
        (path == "/v1/models").then(|| {
            (
                200,
                r#"{"data":[{"id":"big","max_model_len":32768},{"id":"m","max_model_len":8192}]}"#
                    .to_string(),
            )
        })
    });
    let backend = block_on(OpenAiBackend::connect(OpenAiOptions::new(&url, "m"))).unwrap();
    assert_eq!(backend.capabilities().context_tokens, Some(8192));
    // A model not listed: no window read (not another model's).
    let other = block_on(OpenAiBackend::connect(OpenAiOptions::new(&url, "x"))).unwrap();
    assert_eq!(other.capabilities().context_tokens, None);
}

#[test]
fn a_choice_the_server_aborted_is_counted_and_left_out_of_the_others() {
    // vLLM and SGLang end a choice they aborted (evicted, out of memory) with "abort".
    let (url, _) = vllm_server(|path, body| {
        if path != "/v1/completions" {
            return None;
        }
        let n = body["n"].as_u64().unwrap_or(1);
        let all = body["prompt"] == "all";
        let choices: Vec<_> = (0..n)
            .map(|i| {
                // mistral.rs ends one it cancelled "canceled"; the Mistral API one cut at
                // the model's window "model_length".
                let reason = match (body["prompt"].as_str(), i) {
                    (Some("mistral"), 1) => "canceled",
                    (Some("mistral"), 2) => "model_length",
                    _ if all || i == 1 => "abort",
                    _ => "stop",
                };
                serde_json::json!({"index": i, "text": "ok", "finish_reason": reason})
            })
            .collect();
        let usage = serde_json::json!({"prompt_tokens": 3, "completion_tokens": 2 * n});
        Some((
            200,
            serde_json::json!({ "choices": choices, "usage": usage }).to_string(),
        ))
    });
    let mut options = OpenAiOptions::new(&url, "m");
    options.native_n = Some(true);
    let backend = block_on(OpenAiBackend::connect(options)).unwrap();
    let ask = |prompt: &str| {
        GenerationRequest::new(Prompt::Text(prompt.into()))
            .with_n(3)
            .with_sampling(Sampling::with_temperature(0.8))
    };
    let generation = block_on(backend.generate(ask("x"))).unwrap();
    assert_eq!(generation.choices.len(), 2, "{generation:?}");
    // The aborted choice's tokens were spent: two a choice ("ok", a token a character).
    assert_eq!(generation.usage.completion_tokens, 6);
    let err = block_on(backend.generate(ask("all"))).unwrap_err();
    assert!(
        matches!(&err, Error::Inference { message } if message.contains("ended all 3")),
        "{err:?}"
    );
    let generation = block_on(backend.generate(ask("mistral"))).unwrap();
    let reasons: Vec<FinishReason> = generation.choices.iter().map(|c| c.finish_reason).collect();
    assert_eq!(reasons, [FinishReason::Stop, FinishReason::Length]);
}

#[test]
fn a_fanned_out_call_whose_request_fails_returns_and_counts_the_choices_answered() {
    // Answers n = 3 with one choice; of the two requests fanned out, one is refused (a 422 is
    // not retried). The two choices answered are the reply, and counted, not lost with it.
    let (url, count) = scripted_server_with(vec![(200, None), (200, None), (422, None)]);
    let metered = ponder::engine::Metered::new(scripted_backend(&url, 3), Budget::unlimited());
    let request = GenerationRequest::new(Prompt::Text("x".into()))
        .with_n(3)
        .with_sampling(Sampling::with_temperature(0.8));
    let generation = block_on(metered.generate(request.clone())).unwrap();
    assert_eq!(generation.choices.len(), 2, "{generation:?}");
    assert_eq!(count.load(Ordering::SeqCst), 3);
    assert_eq!(generation.usage.completion_tokens, 2);
    assert_eq!(
        generation.usage.calls, 3,
        "the refused request was a call too"
    );
    let usage = metered.meter().usage();
    assert_eq!((usage.completion_tokens, usage.calls), (2, 3));
    // Every request refused (n = 3, then each of the three fanned out): the call is that
    // refusal.
    let (url, _) = scripted_server_with(vec![(422, None); 4]);
    let backend = scripted_backend(&url, 3);
    let err = block_on(backend.generate(request)).unwrap_err();
    assert!(matches!(&err, Error::Http { status: 422, .. }), "{err:?}");
}

#[test]
fn a_fanned_out_call_cut_at_its_deadline_returns_and_counts_the_choices_answered() {
    // Answers n = 3 with one choice; of the two requests fanned out one answers, one hangs.
    // At the deadline the hanging one is given up; the two answered are the reply, cut by
    // wall time and counted, not lost with it.
    let (url, _) = scripted_server_with(vec![(200, None), (200, None), (0, None)]);
    let mut options = OpenAiOptions::new(&url, "m");
    options.timeout = std::time::Duration::from_secs(60);
    let backend = block_on(OpenAiBackend::connect(options)).unwrap();
    let metered = ponder::engine::Metered::new(
        backend,
        Budget::unlimited().with_max_wall(std::time::Duration::from_millis(700)),
    );
    let request = GenerationRequest::new(Prompt::Text("x".into()))
        .with_n(3)
        .with_sampling(Sampling::with_temperature(0.8));
    let sent = std::time::Instant::now();
    let generation = block_on(metered.generate(request)).unwrap();
    assert!(sent.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(generation.choices.len(), 2, "{generation:?}");
    assert_eq!(generation.cut_by, Some(ponder::engine::Resource::WallTime));
    assert_eq!(metered.meter().usage().completion_tokens, 2);
}

#[test]
fn requests_spread_round_robin_over_base_urls() {
    let (a, count_a) = scripted_server(vec![]);
    let (b, count_b) = scripted_server(vec![]);
    let mut options = OpenAiOptions::new(a, "m");
    options.base_urls.push(format!("{b}/v1/"));
    let backend = block_on(OpenAiBackend::connect(options)).unwrap();
    for _ in 0..6 {
        block_on(backend.generate(GenerationRequest::new(Prompt::Text("x".into())))).unwrap();
    }
    assert_eq!(
        (
            count_a.load(Ordering::SeqCst),
            count_b.load(Ordering::SeqCst)
        ),
        (3, 3)
    );
}

#[test]
fn a_fleet_is_asked_what_it_offers_at_the_server_that_answered() {
    let (_lock, own, url) = server();
    // A port nothing listens on, listed first: round-robin would send it every other probe.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let mut options = OpenAiOptions::new(dead, "smollm2");
    options.base_urls.push(url.clone());
    options.backoff = std::time::Duration::from_millis(10);
    let fleet = block_on(OpenAiBackend::connect(options)).unwrap();
    let alone = block_on(OpenAiBackend::connect(OpenAiOptions::new(url, "smollm2"))).unwrap();
    let (fleet, alone) = (fleet.capabilities(), alone.capabilities());
    assert!(fleet.tokenizer);
    assert!(!alone.eos_token_ids.is_empty());
    assert_eq!(
        (fleet.eos_token_ids, fleet.context_tokens),
        (alone.eos_token_ids, alone.context_tokens)
    );
    drop(own);
}

/// A server that answers its first `answers` connections (the model list, 404 elsewhere) and
/// then is gone (connections refused).
fn short_lived_server(answers: usize) -> String {
    local_server(Some(answers), |path, _| {
        Some(match path {
            "/v1/models" => (200, r#"{"data":[{"id":"m"}]}"#.to_string()),
            _ => (404, NO_SUCH_ENDPOINT.to_string()),
        })
    })
}

#[test]
fn once_a_request_gave_up_on_an_unreachable_server_the_next_tries_once() {
    // Connecting takes the model list and three probes; then the server is gone.
    let url = short_lived_server(4);
    let backend = scripted_backend(&url, 3);
    let ask = || block_on(backend.generate(GenerationRequest::new(Prompt::Text("x".into()))));
    let first = ask().unwrap_err();
    assert!(
        matches!(first, Error::Connection { attempts: 4, .. }),
        "{first:?}"
    );
    let next = ask().unwrap_err();
    assert!(
        matches!(next, Error::Connection { attempts: 1, .. }),
        "{next:?}"
    );
}

/// A local server whose every reply `answer` makes from the request's path and how many
/// requests that path had before (`(status, body)`; for a 3xx, the body is the `Location`).
fn fake_server(answer: impl Fn(&str, usize) -> (u16, String) + Send + 'static) -> String {
    let mut seen: std::collections::HashMap<String, usize> = Default::default();
    local_server(None, move |path, _| {
        let nth = seen.entry(path.to_string()).or_default();
        let reply = answer(path, *nth);
        *nth += 1;
        Some(reply)
    })
}

#[test]
fn a_token_id_the_server_failed_to_give_fails_the_reply_and_is_asked_for_again() {
    // vLLM-style log-probabilities carry no token ids; they are read from /tokenize, which
    // fails once (after answering the connection's probe) and then recovers.
    let url = fake_server(|path, nth| {
        match (path, nth) {
        ("/v1/models", _) => (200, r#"{"data":[{"id":"m"}]}"#.into()),
        // After the probes: the tokenizer, its pieces (none: vLLM's), then chat rendering
        // (one token: not a template).
        ("/tokenize", 3) => (503, r#"{"error":{"message":"busy"}}"#.into()),
        ("/tokenize", _) => (200, r#"{"tokens":[7]}"#.into()),
        ("/v1/completions", _) => (
            200,
            r#"{"choices":[{"index":0,"text":"Yes","finish_reason":"stop","logprobs":{"tokens":["Yes"],"token_logprobs":[-0.1],"top_logprobs":[{"Yes":-0.1}]}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#.into(),
        ),
        _ => (404, NO_SUCH_ENDPOINT.into()),
    }
    });
    let backend = scripted_backend(&url, 0);
    assert!(backend.capabilities().tokenizer);
    let generate = || {
        let request = GenerationRequest::new(Prompt::Text("x".into())).with_top_logprobs(1);
        block_on(backend.generate(request))
    };
    // Not "not a token" (a judge would read neither Yes nor No and score 0): an error, so the
    // problem fails and a rerun does it again.
    let err = generate().unwrap_err();
    assert!(
        matches!(&err, Error::Inference { message }
            if message.contains("token id of \"Yes\"") && message.contains("busy")),
        "{err:?}"
    );
    let generation = generate().unwrap();
    let logprobs = generation.choices[0].logprobs.clone().unwrap();
    assert_eq!(
        logprobs[0].top[0].id, 7,
        "asked again, not remembered as unknown"
    );
}

#[test]
fn a_piece_is_asked_of_the_server_once_and_a_prompt_every_time() {
    // Budget forcing asks some 45 pieces before every solve: each is asked of /tokenize once
    // in the backend's life. A prompt (different each time) is not kept.
    let asked = Arc::new(Mutex::new(Vec::<String>::new()));
    let noted = Arc::clone(&asked);
    let url = local_server(None, move |path, body| match path {
        "/v1/models" => Some((200, r#"{"data":[{"id":"m"}]}"#.into())),
        "/tokenize" => {
            let body: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
            let content = body["content"].as_str().unwrap_or_default().to_string();
            noted.lock().unwrap().push(content);
            Some((200, r#"{"tokens":[7, 8]}"#.into()))
        }
        _ => Some((404, NO_SUCH_ENDPOINT.into())),
    });
    let backend = scripted_backend(&url, 0);
    assert!(backend.capabilities().tokenizer);
    let before = asked.lock().unwrap().len();
    for _ in 0..3 {
        assert_eq!(
            block_on(backend.tokenize(TokenizeInput::Piece("</think>"))).unwrap(),
            [7, 8]
        );
        block_on(backend.tokenize(TokenizeInput::Piece(" Wait"))).unwrap();
        block_on(backend.tokenize(TokenizeInput::Prompt(&Prompt::Text("a prompt".into()))))
            .unwrap();
    }
    let asked = asked.lock().unwrap()[before..].to_vec();
    let count = |text: &str| asked.iter().filter(|a| *a == text).count();
    assert_eq!(count("</think>"), 1, "{asked:?}");
    assert_eq!(count(" Wait"), 1, "{asked:?}");
    assert_eq!(count("a prompt"), 3, "{asked:?}");
}

#[test]
fn a_redirect_that_would_turn_a_post_into_a_get_is_told_with_where_it_points() {
    let url = fake_server(|path, _| match path {
        "/v1/models" => (200, r#"{"data":[{"id":"m"}]}"#.into()),
        "/v1/completions" => (302, "https://example.invalid/v1/completions".into()),
        _ => (404, NO_SUCH_ENDPOINT.into()),
    });
    let backend = scripted_backend(&url, 3);
    let err =
        block_on(backend.generate(GenerationRequest::new(Prompt::Text("x".into())))).unwrap_err();
    assert!(
        matches!(&err, Error::Http { status: 302, message, .. }
            if message.starts_with("redirected to https://example.invalid/v1/completions: point base_url")),
        "{err:?}"
    );
}

#[test]
fn a_login_in_a_base_url_is_sent_as_basic_auth_and_never_shown() {
    // A server that notes each request's Authorization header and refuses completions, so
    // that the error names the URL.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let noted = Arc::clone(&seen);
    std::thread::spawn(move || {
        use std::io::{BufRead, BufReader, Read, Write};
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut path, mut length, mut line) = (String::new(), 0, String::new());
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                if path.is_empty() {
                    path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("authorization:") {
                    noted.lock().unwrap().push(line.trim_end().to_string());
                }
                line.clear();
            }
            let _ = reader.read_exact(&mut vec![0; length]);
            let (status, body) = match path.as_str() {
                "/v1/models" => (200, r#"{"data":[{"id":"m"}]}"#),
                "/v1/completions" => (400, r#"{"error":{"message":"no"}}"#),
                _ => (404, NO_SUCH_ENDPOINT),
            };
            let _ = stream.write_all(
                format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    // Percent-encoded in the URL: the user is `us@er`, the password `p:ss`.
    let url = format!("http://us%40er:p%3Ass@127.0.0.1:{port}/v1");
    let backend = scripted_backend(&url, 0);
    assert_eq!(
        backend.options().base_urls,
        vec![format!("http://127.0.0.1:{port}")]
    );
    let err =
        block_on(backend.generate(GenerationRequest::new(Prompt::Text("x".into())))).unwrap_err();
    let shown = format!("{err} {err:?} {backend:?}");
    assert!(matches!(err, Error::Http { status: 400, .. }), "{err:?}");
    assert!(
        !shown.contains("p%3Ass") && !shown.contains("p:ss"),
        "{shown}"
    );
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 2, "{seen:?}");
    // Every request, the probes and the completion: base64 of `us@er:p:ss`.
    assert!(
        seen.iter()
            .all(|h| h.eq_ignore_ascii_case("authorization: Basic dXNAZXI6cDpzcw==")),
        "{seen:?}"
    );
    // One server under two logins: refused, naming neither password.
    let mut options = OpenAiOptions::new(url.clone(), "m");
    options
        .base_urls
        .push(format!("http://other:pw@127.0.0.1:{port}"));
    let err = block_on(OpenAiBackend::connect(options))
        .unwrap_err()
        .to_string();
    assert!(err.contains("different logins"), "{err}");
    assert!(!err.contains("p:ss") && !err.contains(":pw"), "{err}");
    // A password with a `/` not percent-encoded is still a password.
    let options = OpenAiOptions::new(format!("http://u:pa/ss@127.0.0.1:{port}/v1"), "m");
    let backend = block_on(OpenAiBackend::connect(options)).unwrap();
    assert_eq!(
        backend.options().base_urls,
        vec![format!("http://127.0.0.1:{port}")]
    );
    // A login and an API key would both be the Authorization header.
    let mut options = OpenAiOptions::new(url, "m");
    options.api_key = Some("k".into());
    let err = block_on(OpenAiBackend::connect(options))
        .unwrap_err()
        .to_string();
    assert!(err.contains("both an API key and a login"), "{err}");
    assert!(!err.contains("p:ss") && !err.contains("p%3Ass"), "{err}");
    // Without a scheme: refused, the login not read and shown as `***`.
    let options = OpenAiOptions::new(format!("us:p:ss@127.0.0.1:{port}"), "m");
    let err = block_on(OpenAiBackend::connect(options))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("must start with http://") && err.contains(&format!("***@127.0.0.1:{port}")),
        "{err}"
    );
    assert!(!err.contains("p:ss"), "{err}");
}

#[test]
fn thinking_a_servers_reasoning_parser_took_out_is_put_back_before_the_answer() {
    // No /apply-template: chat prompts go to /v1/chat/completions, whose reply carries the
    // thinking apart (vLLM's and llama.cpp's reasoning parsers).
    let url = fake_server(|path, _| {
        match path {
        "/v1/models" => (200, r#"{"data":[{"id":"m"}]}"#.into()),
        "/v1/chat/completions" => (
            200,
            r#"{"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"The answer is 7.","reasoning_content":"3 + 4 = 7"}}],"usage":{"prompt_tokens":9,"completion_tokens":12}}"#.into(),
        ),
        _ => (404, NO_SUCH_ENDPOINT.into()),
    }
    });
    let backend = scripted_backend(&url, 0);
    let generation = block_on(backend.generate(GenerationRequest::new(chat("3 + 4?")))).unwrap();
    assert_eq!(
        generation.choices[0].text,
        "<think>\n3 + 4 = 7\n</think>\n\nThe answer is 7."
    );
}

#[test]
fn a_success_reply_that_carries_an_error_is_that_error() {
    let (url, count) = scripted_server_with(vec![(
        200,
        Some(r#"{"error":{"message":"CUDA out of memory","code":500}}"#.into()),
    )]);
    let backend = scripted_backend(&url, 3);
    let err =
        block_on(backend.generate(GenerationRequest::new(Prompt::Text("x".into())))).unwrap_err();
    assert!(
        matches!(&err, Error::Http { status: 200, message, url: at } if message == "CUDA out of memory" && at.starts_with(&url)),
        "{err:?}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1, "not sent again");
}

#[test]
fn a_reply_that_is_not_a_completion_names_the_server_of_the_fleet_that_sent_it() {
    // Two servers; the second answers JSON that is no completion (a gateway's own reply, say).
    let (good, _) = scripted_server(vec![]);
    let (bad, _) = scripted_server_with(vec![(200, Some(r#"{"choices":"none"}"#.into()))]);
    let mut options = OpenAiOptions::new(good.clone(), "m");
    options.base_urls.push(bad.clone());
    let backend = block_on(OpenAiBackend::connect(options)).unwrap();
    let ask = || block_on(backend.generate(GenerationRequest::new(Prompt::Text("x".into()))));
    let replies = [ask(), ask()];
    let err = replies
        .iter()
        .find_map(|r| r.as_ref().err())
        .expect("one of the two requests reached the bad server");
    assert!(
        matches!(err, Error::Inference { message } if message.contains(&format!("{bad}/v1/completions")) && !message.contains(&good)),
        "{err:?}"
    );
}

#[test]
fn a_retry_goes_to_the_next_server_whatever_other_requests_do() {
    // One server of two is down; with one retry each, every request reaches the other, however
    // many are in flight (the shared round-robin counter alone could send a retry back).
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let (up, count) = scripted_server(vec![]);
    let mut options = OpenAiOptions::new(up, "m");
    options.base_urls.push(dead);
    options.retries = 1;
    options.backoff = std::time::Duration::from_millis(10);
    let backend = block_on(OpenAiBackend::connect(options)).unwrap();
    let asks = (0..16).map(|_| backend.generate(GenerationRequest::new(Prompt::Text("x".into()))));
    let replies = block_on(futures::future::join_all(asks));
    assert!(replies.iter().all(Result::is_ok), "{replies:?}");
    assert_eq!(count.load(Ordering::SeqCst), 16);
}

#[test]
fn a_retry_goes_to_the_server_after_the_one_tried_when_one_is_passed_over() {
    // A is down (passed over once tried), B answers its second request with a 503, C is up.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let (b, to_b) = scripted_server(vec![200, 503]);
    let (c, to_c) = scripted_server(vec![]);
    let mut options = OpenAiOptions::new(dead, "m");
    options.base_urls.push(b);
    options.base_urls.push(c);
    options.retries = 1;
    options.backoff = std::time::Duration::from_millis(10);
    let backend = block_on(OpenAiBackend::connect(options)).unwrap();
    for _ in 0..4 {
        block_on(backend.generate(GenerationRequest::new(Prompt::Text("x".into())))).unwrap();
    }
    // Connecting found A down (its turn taken); requests 1 (B) and 2 (C) in turn; request 3,
    // meant for A, goes to B, whose 503 sends the retry on to C, not back to B; request 4, B.
    assert_eq!(to_b.load(Ordering::SeqCst), 3);
    assert_eq!(to_c.load(Ordering::SeqCst), 2);
}

#[test]
fn a_fleet_member_that_hangs_is_passed_over_after_its_first_timeout() {
    let (hanging, hung) = scripted_server(vec![0; 16]);
    let (up, answered) = scripted_server(vec![]);
    let mut options = OpenAiOptions::new(up, "m");
    options.base_urls.push(hanging);
    options.timeout = std::time::Duration::from_millis(300);
    let backend = block_on(OpenAiBackend::connect(options)).unwrap();
    for _ in 0..8 {
        block_on(backend.generate(GenerationRequest::new(Prompt::Text("x".into())))).unwrap();
    }
    // Round-robin alone would have sent it four of the eight, each waiting out the timeout.
    assert_eq!(hung.load(Ordering::SeqCst), 1);
    assert_eq!(answered.load(Ordering::SeqCst), 8);
}

#[test]
fn a_request_every_fleet_member_times_out_on_is_tried_once_on_each() {
    // A request too long for the timeout would run it out on every server in turn, up to the
    // retries (10): tried once on each, it fails after two timeouts, not eleven.
    let (a, hung_a) = scripted_server(vec![0; 16]);
    let (b, hung_b) = scripted_server(vec![0; 16]);
    let mut options = OpenAiOptions::new(a, "m");
    options.base_urls.push(b);
    options.timeout = std::time::Duration::from_millis(300);
    let backend = block_on(OpenAiBackend::connect(options)).unwrap();
    let err =
        block_on(backend.generate(GenerationRequest::new(Prompt::Text("x".into())))).unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert_eq!(
        (hung_a.load(Ordering::SeqCst), hung_b.load(Ordering::SeqCst)),
        (1, 1)
    );
}

#[test]
fn config_errors_name_what_is_wrong() {
    let mut config = ModelConfig::openai(Vec::new(), "m");
    let err = config.openai_options().unwrap_err().to_string();
    assert!(err.contains("needs base_url"), "{err}");
    config = ModelConfig::openai(vec!["http://127.0.0.1:1".into()], "m");
    config.api_key_env = Some("PONDER_TEST_SURELY_UNSET_KEY".into());
    let err = config.openai_options().unwrap_err().to_string();
    assert!(err.contains("PONDER_TEST_SURELY_UNSET_KEY"), "{err}");
    let parsed: ponder::Config = ponder::engine::config::parse_str(
        "[model]\nbackend = \"openai\"\nbase_url = [\"http://a:1\", \"http://b:2\"]\nmodel = \"qwen\"\n",
        ponder::engine::config::Format::Toml,
    )
    .unwrap();
    assert_eq!(
        parsed.model.openai_options().unwrap().base_urls,
        vec!["http://a:1", "http://b:2"]
    );
    let err = ponder::engine::config::parse_str::<ponder::Config>(
        "[model]\nbackend = \"http\"\n",
        ponder::engine::config::Format::Toml,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("model.backend") && err.contains("openai"),
        "{err}"
    );
}

#[test]
fn a_judge_draw_cut_inside_a_character_is_drawn_again_then_unreadable() {
    use ponder::engine::Metered;
    use ponder::prm::choice_probability;

    let (_lock, _server, url) = server();
    // After a row of pizzas the next token is, near certainly, the first byte of another: a
    // token that ends inside a UTF-8 character, for which llama-server sends text "\u{FFFD}"
    // and no log-probabilities at all.
    let prompt = || Prompt::Text("Pizza 🍕🍕🍕🍕🍕🍕🍕🍕🍕🍕🍕🍕🍕🍕🍕🍕".into());
    // Seeded: unseeded, one run in about 25 drew a rarer token ("==", p = 7e-5 here).
    let bare = block_on(
        connect(&url).generate(
            GenerationRequest::new(prompt())
                .with_max_tokens(1)
                .with_sampling(Sampling {
                    seed: Some(7),
                    ..Sampling::with_temperature(1.0)
                })
                .with_top_logprobs(5),
        ),
    )
    .unwrap();
    assert_eq!(bare.choices[0].text, "\u{FFFD}", "{bare:?}");
    assert_eq!(bare.choices[0].logprobs, None, "{bare:?}");

    // A judge asking there draws again, then calls the answer unreadable: not a server that
    // ignores `top_logprobs` (the error), and "Yes" and "No" are not among the pizza bytes.
    // Seeded, so the draws are the same each time (unseeded, a run now and then drew a whole
    // character first).
    let metered = Arc::new(Metered::new(connect(&url), Budget::unlimited()));
    let backend: Arc<dyn Backend> = Arc::new(ponder::engine::Seeded::new(
        Arc::clone(&metered) as Arc<dyn Backend>,
        7,
    ));
    let words = |w: &str| block_on(backend.tokenize(TokenizeInput::Piece(w))).unwrap();
    let (yes, no) = (words("Yes"), words("No"));
    let p = block_on(choice_probability(&backend, prompt(), &yes[..1], &no[..1])).unwrap();
    assert_eq!(p, 0.5);
    let calls = metered.meter().usage().calls;
    assert!((2..=3).contains(&calls), "{calls} draws");
}

#[test]
fn a_token_prm_served_over_http_reads_what_it_reads_in_process() {
    use ponder::engine::{Context, Scorer};
    use ponder::prm::{PrmConfig, PrmFormat, PrmModel, TokenPrm};

    let (_lock, _server, url) = server();
    // SmolLM2 stands in for a PRM, asked a question its top log-probabilities answer (a real
    // PRM puts its labels first): Math-Shepherd's tag asks it, and RLHFlow's turns end asking.
    let question = "Tom has 3 apples and buys 4 more. How many apples does he have?";
    let steps = |ask: &str| {
        let step = |s: &str| format!("{s}{ask}");
        vec![
            vec![
                step("Tom has 3 apples."),
                step("He buys 4 more, so 3 + 4 = 7."),
                step("The answer is 7."),
            ],
            vec![
                step("Tom has 3 apples."),
                step("He buys 4 more, so 3 + 4 = 9."),
            ],
        ]
    };
    let cases = [
        (
            PrmConfig {
                format: PrmFormat::MathShepherd,
                step_tag: "Is this step correct? Answer:".into(),
                good: " Yes".into(),
                bad: " No".into(),
                ..PrmConfig::default()
            },
            steps(""),
        ),
        (
            PrmConfig {
                format: PrmFormat::Rlhflow,
                good: "Yes".into(),
                bad: "No".into(),
                ..PrmConfig::default()
            },
            steps(" Is this step correct? Answer Yes or No."),
        ),
    ];
    let policy = block_on(ModelConfig::default().load()).unwrap();
    let cx = Context::new(policy, Budget::unlimited());
    for (config, candidates) in cases {
        let format = config.format;
        // The PRM as its own model: the server, named by a model table.
        let http = TokenPrm::new(PrmConfig {
            model: Some(PrmModel::Config(Box::new(ModelConfig::openai(
                vec![url.clone()],
                "smollm2",
            )))),
            ..config.clone()
        });
        let over_http = block_on(http.score(&cx, question, &candidates)).unwrap();
        // The same weights in process (the policy), read by a logits processor in the decode.
        let read_locally =
            block_on(TokenPrm::new(config).score(&cx, question, &candidates)).unwrap();
        eprintln!("{format:?}: over HTTP {over_http:?}, in process {read_locally:?}");
        assert_eq!((over_http[0].len(), over_http[1].len()), (3, 2));
        for (h, l) in over_http
            .iter()
            .flatten()
            .zip(read_locally.iter().flatten())
        {
            // An unread step is NaN, which fails this.
            assert!(
                h.is_finite() && l.is_finite(),
                "{format:?}: a label was not read: {over_http:?} {read_locally:?}"
            );
            // llama.cpp and candle round the same quantized weights differently (up to 0.05
            // seen; llama.cpp's own reads of one prompt differ by 0.003 between batches).
            assert!(
                (h - l).abs() < 0.1,
                "{format:?}: {over_http:?} vs {read_locally:?}"
            );
        }
    }
}

/// The requests a fake server was sent: path and JSON body.
type Sent = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

/// A fake server in vLLM's dialect where `answer` gives no reply of its own: the model list
/// (with `max_model_len`), 404 for llama.cpp's `/props` and `/apply-template`, and `/tokenize`
/// of a prompt (`ponder` -> one token, anything else -> one token a character) or of chat
/// messages (ten tokens: the template's). Every request is recorded.
fn vllm_server(
    answer: impl Fn(&str, &serde_json::Value) -> Option<(u16, String)> + Send + 'static,
) -> (String, Sent) {
    let sent: Sent = Arc::default();
    let log = Arc::clone(&sent);
    let url = local_server(None, move |path, body| {
        let body: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        log.lock().unwrap().push((path.to_string(), body.clone()));
        if let Some(reply) = answer(path, &body) {
            return Some(reply);
        }
        Some(match path {
            "/v1/models" => (
                200,
                r#"{"object":"list","data":[{"id":"m","owned_by":"vllm","max_model_len":4096}]}"#
                    .into(),
            ),
            "/tokenize" if body.get("messages").is_some() => {
                (200, r#"{"count":10,"max_model_len":4096,"tokens":[100,101,102,103,104,105,106,107,108,109]}"#.into())
            }
            "/tokenize" => {
                let prompt = body["prompt"].as_str().unwrap_or_default();
                let ids: Vec<u32> = if prompt == "ponder" {
                    vec![9]
                } else {
                    prompt.chars().map(|c| 1000 + c as u32).collect()
                };
                (200, serde_json::json!({ "count": ids.len(), "tokens": ids }).to_string())
            }
            _ => (404, r#"{"detail":"Not Found"}"#.into()),
        })
    });
    (url, sent)
}

fn sent_to<'a>(sent: &'a [(String, serde_json::Value)], path: &str) -> Vec<&'a serde_json::Value> {
    sent.iter()
        .filter(|(p, _)| p == path)
        .map(|(_, b)| b)
        .collect()
}

/// `3 + 4?`, the assistant's turn begun with `<t>`.
fn continued_chat() -> Prompt {
    Prompt::Chat {
        messages: vec![Message::user("3 + 4?")],
        assistant_prefix: "<t>".into(),
    }
}

const COMPLETION: &str = r#"{"choices":[{"index":0,"text":" 7","finish_reason":"stop","stop_reason":null}],"usage":{"prompt_tokens":12,"completion_tokens":2}}"#;

#[test]
fn a_vllm_server_renders_chat_prompts_to_token_ids_that_an_assistant_prefix_continues() {
    let (url, sent) =
        vllm_server(|path, _| (path == "/v1/completions").then(|| (200, COMPLETION.to_string())));
    let backend = scripted_backend(&url, 0);
    let prompt = continued_chat();
    let generation = block_on(backend.generate(GenerationRequest::new(prompt.clone()))).unwrap();
    assert_eq!(generation.choices[0].text, " 7");
    // The template's ids from the chat /tokenize, then the prefix's: to /v1/completions, as a
    // prompt of token ids. Nothing goes to /v1/chat/completions, whose reasoning parser would
    // read the continuation without its opening tag.
    let template: Vec<u32> = (100..110).collect();
    let expected: Vec<u32> = template.iter().copied().chain([1060, 1116, 1062]).collect();
    let log = sent.lock().unwrap().clone();
    let completions = sent_to(&log, "/v1/completions");
    assert_eq!(completions.len(), 1, "{log:?}");
    assert_eq!(completions[0]["prompt"], serde_json::json!(expected));
    assert!(sent_to(&log, "/v1/chat/completions").is_empty());
    let chat = sent_to(&log, "/tokenize")
        .into_iter()
        .rfind(|b| b.get("messages").is_some())
        .unwrap()
        .clone();
    assert_eq!(chat["add_generation_prompt"], true);
    assert_eq!(chat["add_special_tokens"], false);
    assert_eq!(chat["messages"][0]["content"], "3 + 4?");
    // Tokenizing the prompt gives the same ids (a meter and `template_tail` read them).
    let ids = block_on(backend.tokenize(TokenizeInput::Prompt(&prompt))).unwrap();
    assert_eq!(ids, expected);
}

#[test]
fn a_server_whose_tokenize_ignores_messages_sends_chat_prompts_as_messages() {
    // A /tokenize that reads only a prompt (llama.cpp's reads only `content`) tokenizes the
    // chat body as nothing: not taken for a template.
    let (url, sent) = vllm_server(|path, body| {
        match path {
        "/tokenize" if body.get("messages").is_some() => Some((200, r#"{"tokens":[]}"#.into())),
        "/v1/chat/completions" => Some((
            200,
            r#"{"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":" 7"}}],"usage":{"prompt_tokens":9,"completion_tokens":2}}"#.into(),
        )),
        _ => None,
    }
    });
    let backend = scripted_backend(&url, 0);
    let prompt = continued_chat();
    let generation = block_on(backend.generate(GenerationRequest::new(prompt.clone()))).unwrap();
    assert_eq!(generation.choices[0].text, " 7");
    let log = sent.lock().unwrap().clone();
    let chat = sent_to(&log, "/v1/chat/completions");
    assert_eq!(chat.len(), 1, "{log:?}");
    assert_eq!(chat[0]["continue_final_message"], true);
    // SGLang's switch: thinking left in the text.
    assert_eq!(chat[0]["separate_reasoning"], false);
    let err = block_on(backend.tokenize(TokenizeInput::Prompt(&prompt))).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
}

#[test]
fn a_server_that_refuses_fields_beyond_openais_api_is_sent_none_after_the_first_refusal() {
    const EXTENSIONS: [&str; 7] = [
        "separate_reasoning",
        "continue_final_message",
        "add_generation_prompt",
        "top_k",
        "min_p",
        "repetition_penalty",
        "repeat_penalty",
    ];
    // OpenAI's API: no /tokenize, and a 400 naming the first field it does not know.
    let (url, sent) = vllm_server(|path, body| {
        match path {
        "/tokenize" => Some((404, r#"{"error":"not found"}"#.into())),
        "/v1/chat/completions" => Some(
            match EXTENSIONS.iter().find(|f| body.get(**f).is_some()) {
                Some(field) => (
                    400,
                    format!(
                        r#"{{"error":{{"message":"Unrecognized request argument supplied: {field}","type":"invalid_request_error","param":null,"code":null}}}}"#
                    ),
                ),
                None => (
                    200,
                    r#"{"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"7"}}],"usage":{"prompt_tokens":9,"completion_tokens":1}}"#.into(),
                ),
            },
        ),
        _ => None,
    }
    });
    let backend = scripted_backend(&url, 0);
    let ask = || {
        block_on(backend.generate(
            GenerationRequest::new(chat("3 + 4?")).with_sampling(Sampling {
                top_k: Some(5),
                ..Sampling::with_temperature(0.7)
            }),
        ))
    };
    assert_eq!(ask().unwrap().choices[0].text, "7");
    assert_eq!(ask().unwrap().choices[0].text, "7");
    let log = sent.lock().unwrap().clone();
    let chats = sent_to(&log, "/v1/chat/completions");
    // Refused once, sent again without them, and never again with them.
    assert_eq!(chats.len(), 3, "{log:?}");
    assert!(chats[0].get("separate_reasoning").is_some());
    for body in &chats[1..] {
        for field in EXTENSIONS {
            assert!(body.get(field).is_none(), "{field} in {body}");
        }
        assert_eq!(body["temperature"], 0.7);
    }
    // A continuation of an assistant message cannot be asked of such a server: an error, not
    // a reply to a turn taken as finished.
    let err = block_on(backend.generate(GenerationRequest::new(continued_chat()))).unwrap_err();
    assert!(
        matches!(err, Error::Unsupported { operation, .. } if operation.contains("continue_final_message")),
        "{err:?}"
    );
}

#[test]
fn a_refusal_that_names_no_field_of_ours_leaves_them_sent() {
    // llama-server refusing an n past its slots: a 400 about n, not about our fields.
    let (url, sent) = vllm_server(|path, body| {
        match path {
        "/tokenize" => Some((404, r#"{"error":"not found"}"#.into())),
        "/v1/chat/completions" if body["n"].as_u64() > Some(1) => Some((
            400,
            r#"{"error":{"code":400,"message":"n must be 1","type":"invalid_request_error"}}"#
                .into(),
        )),
        "/v1/chat/completions" => Some((
            200,
            r#"{"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"7"}}],"usage":{"prompt_tokens":9,"completion_tokens":1}}"#.into(),
        )),
        _ => None,
    }
    });
    let backend = scripted_backend(&url, 0);
    let sampled = GenerationRequest::new(chat("3 + 4?"))
        .with_n(2)
        .with_sampling(Sampling::with_temperature(0.7));
    assert_eq!(
        block_on(backend.generate(sampled)).unwrap().choices.len(),
        2
    );
    // A continuation is still asked for as one, with the fields that ask for it.
    assert_eq!(
        block_on(backend.generate(GenerationRequest::new(continued_chat())))
            .unwrap()
            .choices[0]
            .text,
        "7"
    );
    let log = sent.lock().unwrap().clone();
    let chats = sent_to(&log, "/v1/chat/completions");
    // No repetition penalty: vLLM's name for it (llama.cpp's only to a server with /props).
    assert!(
        chats.iter().all(|b| b.get("min_p").is_some()
            && b["repetition_penalty"] == 1.0
            && b.get("repeat_penalty").is_none()),
        "{chats:?}"
    );
    assert_eq!(chats.last().unwrap()["continue_final_message"], true);
}

#[test]
fn greedy_choices_are_asked_for_once_and_a_later_sampled_n_is_still_sent_whole() {
    // vLLM refuses n > 1 at temperature 0.
    let (url, sent) = vllm_server(|path, body| {
        (path == "/v1/completions").then(|| {
            let n = body["n"].as_u64().unwrap_or(1);
            if n > 1 && body["temperature"].as_f64() == Some(0.0) {
                return (
                    400,
                    r#"{"object":"error","message":"n must be 1 when using greedy sampling, got 4.","type":"BadRequestError","code":400}"#.into(),
                );
            }
            let choices: Vec<String> = (0..n)
                .map(|i| {
                    format!(
                        r#"{{"index":{i},"text":" {i}","finish_reason":"stop","logprobs":{{"tokens":[" {i}"],"token_logprobs":[-0.5],"top_logprobs":null}}}}"#
                    )
                })
                .collect();
            (
                200,
                format!(
                    r#"{{"choices":[{}],"usage":{{"prompt_tokens":5,"completion_tokens":{n}}}}}"#,
                    choices.join(",")
                ),
            )
        })
    });
    let backend = scripted_backend(&url, 0);
    let request = |temperature: f64| {
        GenerationRequest::new(Prompt::Text("x".into()))
            .with_n(4)
            .with_sampling(Sampling::with_temperature(temperature))
    };
    let greedy = block_on(backend.generate(request(0.0))).unwrap();
    assert_eq!(greedy.choices.len(), 4);
    assert!(greedy.choices.iter().all(|c| c.text == " 0"));
    assert_eq!((greedy.usage.calls, greedy.usage.completion_tokens), (1, 1));
    let sampled = block_on(backend.generate(request(0.8))).unwrap();
    let texts: Vec<&str> = sampled.choices.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(texts, [" 0", " 1", " 2", " 3"]);
    assert_eq!(sampled.usage.calls, 1, "sent whole, not fanned out");
    assert!(backend.capabilities().native_n);
    let log = sent.lock().unwrap().clone();
    let ns: Vec<u64> = sent_to(&log, "/v1/completions")
        .iter()
        .map(|b| b["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, [1, 4]);
}

#[test]
fn vllm_and_sglang_reply_shapes_are_read() {
    let (url, sent) = vllm_server(|path, _| {
        match path {
        // SGLang's /detokenize.
        "/detokenize" => Some((200, r#"{"text":"<|im_end|>"}"#.into())),
        // An aborted request's choice.
        "/v1/completions" => Some((
            200,
            r#"{"choices":[{"index":0,"text":"3 + ","finish_reason":"abort","matched_stop":null}],"usage":{"prompt_tokens":5,"completion_tokens":2}}"#.into(),
        )),
        _ => None,
    }
    });
    let backend = scripted_backend(&url, 0);
    let text = block_on(backend.detokenize(&[2])).unwrap();
    assert_eq!(text, "<|im_end|>");
    let log = sent.lock().unwrap().clone();
    assert_eq!(
        sent_to(&log, "/detokenize")[0]["skip_special_tokens"],
        false
    );
    // Cut where it stood, not ended: an error, not a finished text.
    let err =
        block_on(backend.generate(GenerationRequest::new(Prompt::Text("x".into())))).unwrap_err();
    assert!(
        matches!(&err, Error::Inference { message } if message.contains("finish_reason \"abort\"")),
        "{err:?}"
    );
    // A server without chat rendering, whose reply has both reasoning keys (vLLM from late
    // 2025): read, not refused as a duplicate field.
    let (plain, _) = vllm_server(|path, body| {
        match path {
        "/tokenize" if body.get("messages").is_some() => Some((404, "{}".into())),
        "/v1/chat/completions" => Some((
            200,
            r#"{"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"7","reasoning":"3 + 4","reasoning_content":"3 + 4"}}],"usage":{"prompt_tokens":9,"completion_tokens":1}}"#.into(),
        )),
        _ => None,
    }
    });
    let backend = scripted_backend(&plain, 0);
    let generation = block_on(backend.generate(GenerationRequest::new(chat("3 + 4?")))).unwrap();
    assert_eq!(generation.choices[0].text, "<think>\n3 + 4\n</think>\n\n7");
}

#[test]
fn mistral_rs_base_10_logprobs_are_read_as_natural_ones_and_a_missing_one_as_unknown() {
    // mistral.rs's server (its alternatives' ids under `token`) writes base-10 logs, as its
    // engine does in process; llama.cpp's (ids under `id`) are natural already. A chosen
    // token's log-probability left out (`null`) is not known: never certain (0).
    let mistral_rs = r#"{"choices":[{"index":0,"text":"Yes","finish_reason":"stop","logprobs":{"content":[{"token":"Yes","logprob":-0.05,"bytes":[89,101,115],"top_logprobs":[{"token":9642,"logprob":-0.05,"bytes":"Yes"},{"token":2822,"logprob":-1.2,"bytes":"No"}]}]}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
    let llama_cpp = r#"{"choices":[{"index":0,"text":"Yes","finish_reason":"stop","logprobs":{"content":[{"id":9642,"token":"Yes","logprob":-0.05,"top_logprobs":[{"id":9642,"token":"Yes","logprob":-0.05},{"id":2822,"token":"No","logprob":-1.2}]}]}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
    let unknown = r#"{"choices":[{"index":0,"text":"Yes","finish_reason":"stop","logprobs":{"content":[{"token":"Yes","logprob":null,"top_logprobs":[{"token":9642,"logprob":-0.05,"bytes":"Yes"}]}]}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
    let (url, _) = scripted_server_with(vec![
        (200, Some(mistral_rs.into())),
        (200, Some(llama_cpp.into())),
        (200, Some(unknown.into())),
    ]);
    let backend = scripted_backend(&url, 0);
    let read = || {
        let request = GenerationRequest::new(Prompt::Text("x".into())).with_top_logprobs(2);
        let choice = block_on(backend.generate(request))
            .unwrap()
            .into_first_choice()
            .unwrap();
        choice.logprobs.unwrap().remove(0)
    };
    let probability = |logprob: f32| f64::from(logprob).exp();
    let close = |a: f64, b: f64| (a - b).abs() < 1e-5;
    for (base, shape) in [(10f64, "mistral.rs"), (std::f64::consts::E, "llama.cpp")] {
        let first = read();
        assert!(
            close(probability(first.logprob), base.powf(-0.05)),
            "{shape}: {first:?}"
        );
        let top: Vec<(u32, f64)> = first
            .top
            .iter()
            .map(|t| (t.id, probability(t.logprob)))
            .collect();
        assert_eq!((top[0].0, top[1].0), (9642, 2822), "{shape}: {first:?}");
        assert!(
            close(top[0].1, base.powf(-0.05)) && close(top[1].1, base.powf(-1.2)),
            "{shape}: {first:?}"
        );
    }
    let first = read();
    assert!(
        first.logprob.is_infinite() && first.logprob.is_sign_negative(),
        "{first:?}"
    );
    assert!(close(probability(first.top[0].logprob), 10f64.powf(-0.05)));
}

#[test]
fn a_busy_server_is_asked_again_what_it_offers_and_one_that_stays_busy_fails_connecting() {
    // A 503 to the first /tokenize (a server busy while connecting) is not a server without
    // a tokenizer for good: asked again, it answers.
    let url = fake_server(|path, nth| match (path, nth) {
        ("/v1/models", _) => (200, r#"{"data":[{"id":"m"}]}"#.into()),
        ("/tokenize", 0) => (503, r#"{"error":{"message":"busy"}}"#.into()),
        ("/tokenize", _) => (200, r#"{"tokens":[7]}"#.into()),
        _ => (404, NO_SUCH_ENDPOINT.into()),
    });
    assert!(scripted_backend(&url, 3).capabilities().tokenizer);
    // Not offered (a 404, a 405): going without it, at once.
    let url = fake_server(|path, _| match path {
        "/v1/models" => (200, r#"{"data":[{"id":"m"}]}"#.into()),
        "/props" => (405, r#"{"error":{"message":"method not allowed"}}"#.into()),
        _ => (404, NO_SUCH_ENDPOINT.into()),
    });
    let caps = scripted_backend(&url, 3).capabilities();
    assert!(!caps.tokenizer && caps.eos_token_ids.is_empty(), "{caps:?}");
    // Busy through every retry: connecting fails, naming the endpoint and what it answered.
    let url = fake_server(|path, _| match path {
        "/v1/models" => (200, r#"{"data":[{"id":"m"}]}"#.into()),
        "/props" => (429, r#"{"error":{"message":"slow down"}}"#.into()),
        _ => (404, NO_SUCH_ENDPOINT.into()),
    });
    let options = |url: &str| {
        let mut options = OpenAiOptions::new(url, "m");
        options.retries = 3;
        options.backoff = std::time::Duration::from_millis(10);
        options
    };
    let err = block_on(OpenAiBackend::connect(options(&url))).unwrap_err();
    assert!(
        matches!(&err, Error::Connection { url, attempts: 4, reason }
            if url.ends_with("/props") && reason.contains("HTTP 429: slow down")),
        "{err:?}"
    );
    // A model still loading (llama.cpp answers the model list then, and 503 the rest) is
    // waited for past the retries.
    let url = fake_server(|path, nth| match (path, nth) {
        ("/v1/models", _) => (200, r#"{"data":[{"id":"m"}]}"#.into()),
        ("/props", 0..=5) => (503, r#"{"error":{"message":"Loading model"}}"#.into()),
        ("/props", _) => (
            200,
            r#"{"default_generation_settings":{"n_ctx":1234}}"#.into(),
        ),
        _ => (404, NO_SUCH_ENDPOINT.into()),
    });
    let backend = block_on(OpenAiBackend::connect(options(&url))).unwrap();
    assert_eq!(backend.capabilities().context_tokens, Some(1234));
    // An endpoint that fails on its own (a 500 every time) is gone without, the rest kept.
    let url = fake_server(|path, _| match path {
        "/v1/models" => (200, r#"{"data":[{"id":"m"}]}"#.into()),
        "/apply-template" => (500, r#"{"error":{"message":"template error"}}"#.into()),
        "/tokenize" => (200, r#"{"tokens":[7]}"#.into()),
        _ => (404, NO_SUCH_ENDPOINT.into()),
    });
    let backend = block_on(OpenAiBackend::connect(options(&url))).unwrap();
    assert!(backend.capabilities().tokenizer);
}
