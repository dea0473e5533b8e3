//! End-to-end tests of the mistral.rs backend on the real SmolLM2-135M (CPU).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{block_on, fixture_path, smollm, smollm_dyn};
use ponder::engine::models::ModelSource;
use ponder::engine::{
    Backend, Budget, Choice, Dequantize, DeviceSpec, Error, FinishReason, GenerationRequest,
    LoadOptions, LogitsProcessor, Message, Metered, MistralRsBackend, ModelConfig, Prompt,
    Resource, Sampling, TokenizeInput,
};
use ponder::strategies::{Direct, DirectConfig, ForcingMode};
use ponder::{Problem, StopReason};

fn ask(question: &str) -> Prompt {
    Prompt::chat(vec![Message::user(question)])
}

#[test]
fn solve_extracts_an_answer_and_counts_usage() {
    let backend = smollm_dyn();
    let strategy = Direct::new(DirectConfig {
        max_tokens: std::num::NonZeroUsize::new(96).unwrap(),
        ..DirectConfig::default()
    })
    .unwrap();
    let problem = Problem::new("add", "What is 2 + 3?").with_reference("5");
    let solution = block_on(ponder::engine::solve(
        &strategy,
        &problem,
        backend,
        Budget::unlimited(),
    ))
    .unwrap();
    assert!(
        solution.answer.is_some(),
        "no answer in {:?}",
        solution.completion
    );
    assert_eq!(solution.usage.calls, 1);
    assert!(solution.usage.prompt_tokens > 10);
    assert_eq!(
        solution.usage.completion_tokens,
        solution.candidates[0].tokens
    );
    assert!(solution.usage.completion_tokens > 0 && solution.usage.completion_tokens <= 96);
    assert!(matches!(
        solution.stop_reason,
        StopReason::Completed | StopReason::MaxTokens
    ));
}

#[test]
fn chat_prompts_go_through_the_models_template() {
    let backend = smollm();
    let ids = block_on(backend.tokenize(TokenizeInput::Prompt(&ask("Hi")))).unwrap();
    let text = block_on(backend.detokenize(&ids)).unwrap();
    assert!(text.contains("<|im_start|>user"), "{text}");
    assert!(text.trim_end().ends_with("<|im_start|>assistant"), "{text}");
    let with_prefix = Prompt::Chat {
        messages: vec![Message::user("Hi")],
        assistant_prefix: "<think>".into(),
    };
    let ids2 = block_on(backend.tokenize(TokenizeInput::Prompt(&with_prefix))).unwrap();
    assert!(ids2.len() > ids.len() && ids2.starts_with(&ids));
}

#[test]
fn four_samples_in_one_request_with_usage_summed_per_choice() {
    let backend = smollm_dyn();
    let request = GenerationRequest::new(ask("Write a short sentence about the sea."))
        .with_n(4)
        .with_max_tokens(24)
        .with_sampling(Sampling::with_temperature(0.9));
    let generation = block_on(backend.generate(request)).unwrap();
    assert_eq!(generation.choices.len(), 4);
    let sum: usize = generation.choices.iter().map(|c| c.completion_tokens).sum();
    assert_eq!(generation.usage.completion_tokens, sum as u64);
    assert!(generation
        .choices
        .iter()
        .all(|c| c.completion_tokens >= 1 && c.completion_tokens <= 24));
    assert_eq!(generation.usage.calls, 1);
    // Prompt counted once for the request, not once per choice.
    let prompt_ids = block_on(backend.tokenize(TokenizeInput::Prompt(&ask(
        "Write a short sentence about the sea.",
    ))))
    .unwrap();
    assert_eq!(generation.usage.prompt_tokens, prompt_ids.len() as u64);
}

/// A processor that makes the model write `ids` (then end), whatever it would have written, so
/// tests of stop handling do not depend on what the model would say.
fn writes(ids: Vec<u32>, eos: u32) -> Arc<dyn LogitsProcessor> {
    let start = std::sync::OnceLock::new();
    Arc::new(move |logits: &mut [f32], context: &[u32]| {
        let at = context.len() - *start.get_or_init(|| context.len());
        let next = ids.get(at).copied().unwrap_or(eos);
        for (i, l) in logits.iter_mut().enumerate() {
            if i != next as usize {
                *l = f32::NEG_INFINITY;
            }
        }
    })
}

/// A processor that does `then` to the logits from the `from`th generated token on.
fn from_token(from: usize, then: fn(&mut [f32])) -> Arc<dyn LogitsProcessor> {
    let start = std::sync::OnceLock::new();
    Arc::new(move |logits: &mut [f32], context: &[u32]| {
        if context.len() - *start.get_or_init(|| context.len()) >= from {
            then(logits);
        }
    })
}

/// Logits processors run on mistral.rs's engine thread, which catches no panic (one would stop
/// the engine for every request in flight): a processor that panics, or NaN among the logits
/// (a seeded draw would skip them, mistral.rs's greedy pick read them as the last token), fails
/// its own call, naming what happened, and the engine goes on.
#[test]
fn a_processor_that_panics_or_leaves_nan_fails_its_call_and_the_engine_goes_on() {
    let backend = smollm_dyn();
    let request = |processor| {
        GenerationRequest::new(ask("Write a short sentence about the sea."))
            .with_max_tokens(16)
            .with_logits_processor(processor)
    };
    let panics = from_token(2, |_| panic!("a test processor's own bug"));
    let error = block_on(backend.generate(request(panics))).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("a logits processor panicked") && text.contains("a test processor's own bug"),
        "{text}"
    );
    let nan = |logits: &mut [f32]| logits[7] = f32::NAN;
    let seeded = Sampling {
        seed: Some(3),
        ..Sampling::with_temperature(0.8)
    };
    for sampling in [Sampling::greedy(), seeded] {
        let error = block_on(backend.generate(request(from_token(1, nan)).with_sampling(sampling)))
            .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("left NaN among the logits (token 7"),
            "{text}"
        );
    }
    // The engine still answers.
    let plain = block_on(
        backend.generate(GenerationRequest::new(ask("What is 2 + 2?")).with_max_tokens(4)),
    )
    .unwrap();
    assert!(plain.choices[0].completion_tokens >= 1, "{plain:?}");
}

#[test]
fn a_stop_sequence_stops_the_completion() {
    let backend = smollm();
    let eos = backend.capabilities().eos_token_ids[0];
    let text = "alpha beta gamma delta epsilon zeta eta theta";
    let ids = block_on(backend.tokenize(TokenizeInput::Piece(text))).unwrap();
    let request = || {
        GenerationRequest::new(ask("Recite the Greek letters."))
            .with_max_tokens(ids.len() + 4)
            .with_logits_processor(writes(ids.clone(), eos))
    };
    let free = block_on(backend.generate(request())).unwrap();
    assert_eq!(free.choices[0].text.trim(), text);
    // Ended by the end-of-sequence token, with or without a stop sequence that never came.
    for stop in [None, Some("omega")] {
        let done = match stop {
            Some(stop) => block_on(backend.generate(request().with_stop(stop))),
            None => block_on(backend.generate(request())),
        }
        .unwrap();
        assert_eq!(done.choices[0].finish_reason, FinishReason::Stop);
        assert_eq!(done.choices[0].stop_sequence, None);
    }
    // A two-word stop string (several tokens) and a one-word one (one token, written " gamma",
    // another token: mistral.rs's own matching would have missed it and decoded on). Either
    // ends the completion at the token after it, the end of sequence.
    let words = |text: &str| block_on(backend.tokenize(TokenizeInput::Piece(text))).unwrap();
    for stop in ["gamma delta", "gamma"] {
        let stopped = block_on(backend.generate(request().with_stop(stop))).unwrap();
        let choice = &stopped.choices[0];
        assert_eq!(choice.text.trim(), "alpha beta", "stop {stop:?}");
        assert_eq!(choice.finish_reason, FinishReason::Stop);
        assert_eq!(choice.stop_sequence.as_deref(), Some(stop));
        let through_stop = words(&format!("alpha beta {stop}")).len();
        assert_eq!(
            choice.completion_tokens,
            through_stop + 1,
            "stop {stop:?}: generation went on past it"
        );
    }
}

/// A stop string after a character the model left unfinished (its first byte alone: invalid
/// UTF-8). mistral.rs 0.8.1 cuts its text at the stop's byte offset in the raw bytes, but
/// slices the lossily decoded string (where the stray byte became a 3-byte U+FFFD): a slice
/// inside a character, a panic on the engine thread, and every request after it would fail.
/// ponder matches stop strings itself; the engine never sees them.
#[test]
fn a_stop_after_a_broken_character_leaves_the_engine_working() {
    let backend = smollm();
    let eos = backend.capabilities().eos_token_ids[0];
    let piece = |text: &str| block_on(backend.tokenize(TokenizeInput::Piece(text))).unwrap();
    // A character SmolLM2's vocabulary writes in several tokens: its first token is part of it.
    let character = piece("\u{9F98}");
    assert!(character.len() >= 2, "one token: {character:?}");
    let blank = piece("\n\n");
    let ids = [&character[..1], &blank[..], &piece("more")[..]].concat();
    let request = GenerationRequest::new(ask("Write anything."))
        .with_max_tokens(ids.len() + 4)
        .with_logits_processor(writes(ids, eos))
        .with_stop("\n\n");
    let stopped = block_on(backend.generate(request)).unwrap();
    let choice = &stopped.choices[0];
    assert_eq!(choice.text, "\u{FFFD}");
    assert_eq!(choice.finish_reason, FinishReason::Stop);
    assert_eq!(choice.stop_sequence.as_deref(), Some("\n\n"));
    let after = block_on(
        backend.generate(GenerationRequest::new(ask("What is 1 + 1?")).with_max_tokens(4)),
    )
    .unwrap();
    assert!(after.choices[0].completion_tokens >= 1);
}

/// Makes the model write `ids` after a prompt of `prompt_len` tokens, then end: for a request
/// sent to mistral.rs directly.
struct RawWrites {
    ids: Vec<u32>,
    prompt_len: usize,
    eos: u32,
}

impl mistralrs::CustomLogitsProcessor for RawWrites {
    fn apply(
        &self,
        logits: &mistralrs::Tensor,
        context: &[u32],
    ) -> mistralrs::Result<mistralrs::Tensor> {
        let next = self
            .ids
            .get(context.len().saturating_sub(self.prompt_len))
            .copied()
            .unwrap_or(self.eos);
        let mut values = vec![f32::NEG_INFINITY; logits.elem_count()];
        values[next as usize] = 0.0;
        mistralrs::Tensor::from_vec(values, logits.shape(), logits.device())?
            .to_dtype(logits.dtype())
    }
}

/// SmolLM2 in an engine of its own.
fn own_engine() -> MistralRsBackend {
    block_on(MistralRsBackend::load(
        &ModelSource::parse("smollm2-135m").unwrap(),
        &common::options(),
    ))
    .unwrap()
}

#[test]
fn a_seeded_request_draws_the_same_texts_whatever_the_engine_did_before() {
    // mistral.rs draws from one generator for the engine; a request with a seed is drawn by
    // ponder from the seed. An engine of its own, so that on a GPU no other test's requests
    // are batched beside these (batched arithmetic may move a near tie).
    let backend = own_engine();
    let sample = |seed: Option<u64>, n: usize| {
        let request = GenerationRequest::new(ask("Write a short poem about the sea."))
            .with_n(n)
            .with_max_tokens(24)
            .with_sampling(Sampling {
                temperature: 1.0,
                top_p: Some(0.95),
                top_k: None,
                seed,
            });
        let generation = block_on(backend.generate(request)).unwrap();
        assert_eq!(generation.choices.len(), n);
        generation
            .choices
            .into_iter()
            .map(|c| c.text)
            .collect::<Vec<_>>()
    };
    let first = sample(Some(11), 3);
    // Each choice is drawn from a seed of its own, and the next seed draws none of them.
    assert!(first[0] != first[1] || first[1] != first[2], "{first:?}");
    let next = sample(Some(12), 3);
    assert!(
        next.iter().all(|text| !first.contains(text)),
        "{first:?} {next:?}"
    );
    // Exact repeats on the CPU, where ponder decodes one sequence at a time (on a GPU the
    // choices are batched as they reach the engine, and batched arithmetic may move a near tie),
    // with the prefix cache off: after unseeded samples moved the engine's own generator on,
    // and as a request of one.
    if common::repeats_exactly() {
        sample(None, 2);
        assert_eq!(sample(Some(11), 3), first);
        assert_eq!(sample(Some(11), 1)[0], first[0]);
    }
}

#[test]
fn a_seeded_request_for_log_probabilities_reports_the_distribution_it_drew_from() {
    // The drawn token is the only one mistral.rs is left; its probabilities come from the
    // draw's record: those mistral.rs would report for the same distribution.
    let backend = own_engine();
    let sample = |seed: Option<u64>| {
        let request = GenerationRequest::new(ask("Name a colour."))
            .with_n(2)
            .with_max_tokens(12)
            .with_top_logprobs(3)
            .with_sampling(Sampling {
                temperature: 1.0,
                top_p: Some(0.95),
                top_k: None,
                seed,
            });
        block_on(backend.generate(request)).unwrap().choices
    };
    let seeded = sample(Some(8));
    assert_eq!(seeded.len(), 2);
    for choice in &seeded {
        let logprobs = choice.logprobs.as_ref().unwrap();
        assert!(
            logprobs.iter().any(|l| l.logprob < -1e-3),
            "a sample of 12 tokens at temperature 1, all certain: {logprobs:?}"
        );
        for l in logprobs {
            assert!(l.logprob <= 0.0 && l.logprob.is_finite(), "{l:?}");
            assert!(!l.top.is_empty() && l.top.len() <= 3, "{l:?}");
            // Most likely first, none less likely than the token drawn where it is among them.
            assert!(
                l.top.windows(2).all(|w| w[0].logprob >= w[1].logprob),
                "{l:?}"
            );
            assert!(l.top[0].logprob >= l.logprob - 1e-6, "{l:?}");
            assert!(l.top.iter().all(|t| !t.token.is_empty()), "{l:?}");
        }
    }
    // The first position's distribution is the prompt's alone: the same as mistral.rs
    // reports for an unseeded sample of it. (On a GPU the two are batched differently, in
    // half precision, and with the prefix cache on one is read from the cache: near ties may
    // swap and the numbers move a little.)
    let unseeded = sample(None);
    let ours = &seeded[0].logprobs.as_ref().unwrap()[0].top;
    let theirs = &unseeded[0].logprobs.as_ref().unwrap()[0].top;
    let exact = common::repeats_exactly();
    if exact {
        assert_eq!(
            ours.iter().map(|t| t.id).collect::<Vec<_>>(),
            theirs.iter().map(|t| t.id).collect::<Vec<_>>(),
            "{ours:?} against {theirs:?}"
        );
    }
    let within = if exact { 1e-3 } else { 0.1 };
    let mut shared = 0;
    for a in ours {
        if let Some(b) = theirs.iter().find(|b| b.id == a.id) {
            shared += 1;
            assert!(
                (a.logprob - b.logprob).abs() < within,
                "{ours:?} against {theirs:?}"
            );
        }
    }
    assert!(shared >= 1, "{ours:?} against {theirs:?}");
    // Texts and probabilities repeat exactly, after the unseeded sample moved mistral.rs's own
    // generator on.
    if exact {
        assert_eq!(sample(Some(8)), seeded);
    }
}

#[test]
fn a_choice_that_fails_after_others_were_written_leaves_them_the_reply_and_counted() {
    // On the CPU the choices of a call are decoded one after another; the second fails at its
    // first token (its logits all NaN, which fail it). The first and third
    // are the reply, counted, not lost with the call. (On a GPU the choices are decoded in one
    // batch, and a sampling error fails the whole batch's step.)
    if common::device() != DeviceSpec::Cpu {
        return;
    }
    let backend = Arc::new(own_engine());
    let prompt = ask("Name a colour.");
    let prompt_len = block_on(backend.tokenize(TokenizeInput::Prompt(&prompt)))
        .unwrap()
        .len();
    let started = AtomicUsize::new(0);
    let second_fails = Arc::new(move |logits: &mut [f32], context: &[u32]| {
        if context.len() == prompt_len && started.fetch_add(1, Ordering::Relaxed) == 1 {
            logits.fill(f32::NAN);
        }
    });
    let metered = Metered::new(Arc::clone(&backend), Budget::unlimited());
    let request = GenerationRequest::new(prompt)
        .with_n(3)
        .with_max_tokens(6)
        .with_sampling(Sampling::with_temperature(1.0))
        .with_logits_processor(second_fails);
    let generation = block_on(metered.generate(request)).unwrap();
    assert_eq!(generation.choices.len(), 2, "{generation:?}");
    let written: u64 = generation
        .choices
        .iter()
        .map(|c| c.completion_tokens as u64)
        .sum();
    assert!(written >= 2);
    assert_eq!(generation.usage.completion_tokens, written);
    assert_eq!(metered.meter().usage().completion_tokens, written);
    // A call whose only choice fails is that failure.
    let nan = Arc::new(|logits: &mut [f32], _: &[u32]| logits.fill(f32::NAN));
    let failed = block_on(
        backend.generate(
            GenerationRequest::new(ask("Name a colour."))
                .with_sampling(Sampling::with_temperature(1.0))
                .with_logits_processor(nan),
        ),
    );
    assert!(matches!(failed, Err(Error::Inference { .. })), "{failed:?}");
}

/// mistral.rs restarts an engine whose thread panicked when it is next asked for its channel;
/// ponder waits for the new one rather than sending to the dead one's. The panic: a stop string
/// after an unfinished character, handed to mistral.rs directly (ponder no longer does).
#[test]
fn after_the_engine_thread_panics_the_next_request_is_answered() {
    // An engine of its own: the panic fails whatever the engine holds at that moment.
    let backend = own_engine();
    let eos = backend.capabilities().eos_token_ids[0];
    let piece = |text: &str| block_on(backend.tokenize(TokenizeInput::Piece(text))).unwrap();
    let ids = [
        &piece("\u{9F98}")[..1],
        &piece("\n\n")[..],
        &piece("more")[..],
    ]
    .concat();
    let prompt = piece("Write anything.");
    for round in 0..2 {
        let mut sampling = mistralrs::SamplingParams::deterministic();
        sampling.max_len = Some(8);
        sampling.stop_toks = Some(mistralrs::StopTokens::Seqs(vec!["\n\n".into()]));
        let writes = RawWrites {
            ids: ids.clone(),
            prompt_len: prompt.len(),
            eos,
        };
        let answered = block_on(raw_request(
            &backend,
            prompt.clone(),
            sampling,
            Arc::new(writes),
        ));
        assert!(!answered, "round {round}: mistral.rs no longer panics here");
        let after = block_on(
            backend.generate(GenerationRequest::new(ask("What is 1 + 1?")).with_max_tokens(4)),
        )
        .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(after.choices[0].completion_tokens >= 1);
    }
}

/// The ids a greedy choice generated, read from its top-1 log-probabilities (the request must
/// have asked for them).
fn generated_ids(choice: &Choice) -> Vec<u32> {
    choice
        .logprobs
        .as_ref()
        .expect("asked with top_logprobs")
        .iter()
        .map(|t| t.top[0].id)
        .collect()
}

/// Greedy completion of `question`: (text, generated ids).
async fn greedy_text(backend: &dyn Backend, question: &str) -> (String, Vec<u32>) {
    let request = GenerationRequest::new(ask(question))
        .with_max_tokens(24)
        .with_top_logprobs(1);
    let generation = backend.generate(request).await.unwrap();
    let choice = &generation.choices[0];
    (choice.text.clone(), generated_ids(choice))
}

/// Whether two greedy runs agree: exactly on the CPU (ponder runs one sequence at a time
/// there), and on a GPU, whose batched arithmetic may flip a near tie late, on their first 12
/// tokens at least.
fn same_greedy(alone: &[u32], other: &[u32]) -> bool {
    match common::device() {
        DeviceSpec::Cpu => alone == other,
        _ => {
            let shared = alone.iter().zip(other).take_while(|(a, b)| a == b).count();
            shared >= 12.min(alone.len())
        }
    }
}

#[test]
fn concurrent_requests_each_continue_their_own_prompt() {
    // mistral.rs 0.8.1's CPU decode kernel gives every row of a batch the last row's attention:
    // batched, the first of these came out as "The sky + 3 = 5". Two prompts of 37 and 38
    // tokens, so the first catches up with the second and they would share decode steps.
    let backend = smollm_dyn();
    let questions = ["Explain why the sky is blue.", "What is 2 + 3?"];
    let alone: Vec<_> = questions
        .iter()
        .map(|q| block_on(greedy_text(&*backend, q)))
        .collect();
    for _ in 0..2 {
        let together = block_on(futures::future::join_all(
            questions.iter().map(|q| greedy_text(&*backend, q)),
        ));
        for ((question, (text, ids)), (alone_text, alone_ids)) in
            questions.iter().zip(&together).zip(&alone)
        {
            assert!(
                same_greedy(alone_ids, ids),
                "{question:?}: alone {alone_text:?}, beside another request {text:?}"
            );
        }
    }
}

/// A processor that forces the first generated token of the k-th sequence to start (in the order
/// their first tokens are asked for) to `firsts[k]`, and leaves everything after it alone.
fn first_tokens(prompt_len: usize, firsts: Vec<u32>) -> Arc<dyn LogitsProcessor> {
    let started = AtomicUsize::new(0);
    Arc::new(move |logits: &mut [f32], context: &[u32]| {
        if context.len() != prompt_len {
            return;
        }
        let k = started.fetch_add(1, Ordering::Relaxed);
        let next = firsts[k.min(firsts.len() - 1)];
        for (i, l) in logits.iter_mut().enumerate() {
            if i != next as usize {
                *l = f32::NEG_INFINITY;
            }
        }
    })
}

#[test]
fn the_choices_of_one_request_continue_their_own_text() {
    // Two greedy choices made to differ at their first token (" The" and " I"): each must then
    // continue as that start does alone, not as the other choice.
    let backend = smollm_dyn();
    let prompt = ask("Describe the ocean.");
    let prompt_len = block_on(backend.tokenize(TokenizeInput::Prompt(&prompt)))
        .unwrap()
        .len();
    let start = |piece: &str| block_on(backend.tokenize(TokenizeInput::Piece(piece))).unwrap()[0];
    let (the, i) = (start("The"), start("I"));
    assert_ne!(the, i);
    let run = |n: usize, firsts: Vec<u32>| {
        let request = GenerationRequest::new(prompt.clone())
            .with_n(n)
            .with_max_tokens(24)
            .with_top_logprobs(1)
            .with_logits_processor(first_tokens(prompt_len, firsts));
        block_on(backend.generate(request))
            .unwrap()
            .choices
            .into_iter()
            .map(|c| {
                let ids = generated_ids(&c);
                (c.text, ids)
            })
            .collect::<Vec<_>>()
    };
    let alone_the = run(1, vec![the]).remove(0);
    let alone_i = run(1, vec![i]).remove(0);
    assert_ne!(alone_the.1, alone_i.1);
    let both = run(2, vec![the, i]);
    assert_eq!(both.len(), 2);
    for (text, ids) in &both {
        let alone = if ids[0] == the { &alone_the } else { &alone_i };
        assert!(
            same_greedy(&alone.1, ids),
            "choice {text:?} should continue as {:?}",
            alone.0
        );
    }
    assert_ne!(both[0].1[0], both[1].1[0], "{both:?}");
}

/// The context length mistral.rs passes with the first generated token of `ids`, asked
/// straight (no ponder in between).
async fn raw_first_context_len(backend: &MistralRsBackend, ids: Vec<u32>) -> usize {
    let first = Arc::new(std::sync::OnceLock::new());
    let seen = Arc::clone(&first);
    let processor = move |logits: &mistralrs::Tensor, context: &[u32]| {
        seen.get_or_init(|| context.len());
        Ok(logits.clone())
    };
    let sampling = mistralrs::SamplingParams {
        temperature: Some(0.0),
        max_len: Some(4),
        ..mistralrs::SamplingParams::neutral()
    };
    raw_request(backend, ids, sampling, Arc::new(processor)).await;
    *first.get().expect("the processor was called")
}

/// Sends a completion request for `ids` to mistral.rs straight (no ponder in between), with
/// `sampling` and `processor`, and waits for its end: whether it was answered (an engine whose
/// thread stops closes it unanswered).
async fn raw_request(
    backend: &MistralRsBackend,
    ids: Vec<u32>,
    sampling: mistralrs::SamplingParams,
    processor: Arc<dyn mistralrs::CustomLogitsProcessor>,
) -> bool {
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let request = mistralrs::NormalRequest {
        messages: mistralrs::RequestMessage::CompletionTokens(ids),
        sampling_params: sampling,
        response: tx,
        return_logprobs: false,
        is_streaming: false,
        id: 1_000_000,
        constraint: mistralrs::Constraint::None,
        suffix: None,
        tools: None,
        tool_choice: None,
        logits_processors: Some(vec![processor]),
        return_raw_logits: false,
        web_search_options: None,
        model_id: None,
        truncate_sequence: false,
    };
    let sender = backend.model().inner().get_sender(None).unwrap();
    sender
        .send(mistralrs::Request::Normal(Box::new(request)))
        .await
        .unwrap();
    while let Some(reply) = rx.recv().await {
        if let mistralrs::Response::CompletionDone(_) = reply {
            return true;
        }
    }
    false
}

#[test]
fn a_model_asking_for_dequantized_weights_the_environment_does_not_ask_for_is_refused() {
    // candle's switch is process-wide, read from the environment: a library caller who asks in
    // LoadOptions alone would get the weights as stored, silently.
    let source = ModelSource::parse(&ModelConfig::default().source).unwrap();
    let wanted = match Dequantize::in_effect() {
        Some(Dequantize::F16) => Dequantize::F32,
        _ => Dequantize::F16,
    };
    let options = LoadOptions {
        dequantize: Some(wanted),
        ..common::options()
    };
    let Err(err) = block_on(MistralRsBackend::load(&source, &options)) else {
        panic!("loaded without {}", wanted.variable());
    };
    let err = err.to_string();
    // On a GPU dequantizing is refused whatever the environment says (helper-127).
    let expected = match common::device() {
        DeviceSpec::Cpu => format!("start the program with {}=1", wanted.variable()),
        _ => wanted.on_cuda(),
    };
    assert!(err.contains(&expected), "{err}");
}

#[test]
fn a_processor_sees_the_whole_context_after_a_prefix_cache_hit() {
    let source = ModelSource::parse(&ModelConfig::default().source).unwrap();
    let options = LoadOptions {
        prefix_cache: true,
        ..common::options()
    };
    let backend = block_on(MistralRsBackend::load(&source, &options)).unwrap();
    let eos = backend.capabilities().eos_token_ids[0];
    let prompt =
        block_on(backend.tokenize(TokenizeInput::Prompt(&ask("Recite the Greek letters."))))
            .unwrap();
    // A first request leaves its prompt and completion in the cache...
    let first = block_on(
        backend.generate(
            GenerationRequest::new(Prompt::Tokens(prompt.clone()))
                .with_max_tokens(8)
                .with_top_logprobs(1),
        ),
    )
    .unwrap();
    let mut extended = prompt.clone();
    extended.extend(generated_ids(&first.choices[0]));
    let piece = |text: &str| block_on(backend.tokenize(TokenizeInput::Piece(text))).unwrap();
    extended.extend(piece(" Zebra?"));
    // ...so mistral.rs serves the next one from it, and gives a processor only the tokens it
    // had to compute as the first token's context (the hazard ponder's adapter covers; when
    // this fails, mistral.rs passes the whole context and the adapter's fill-in is moot).
    // (On CUDA the cache is PagedAttention's, which keeps the whole context.)
    let seen = block_on(raw_first_context_len(&backend, extended.clone()));
    if matches!(common::device(), DeviceSpec::Cpu) {
        assert!(
            seen < prompt.len(),
            "mistral.rs passed {seen} of {} tokens: no prefix-cache hit, or the hazard is gone",
            extended.len()
        );
    } else {
        assert_eq!(seen, extended.len());
    }
    // Through ponder a processor sees the whole context from the first token on: one that
    // writes a fixed text (counting from the context length at its first call) writes it all.
    extended.extend(piece(" Yak!"));
    let text = "alpha beta gamma delta epsilon";
    let written = block_on(
        backend.generate(
            GenerationRequest::new(Prompt::Tokens(extended))
                .with_max_tokens(16)
                .with_logits_processor(writes(piece(text), eos)),
        ),
    )
    .unwrap();
    assert_eq!(written.choices[0].text.trim(), text);
}

#[test]
fn a_processor_that_bans_end_of_sequence_reaches_max_tokens() {
    let backend = smollm();
    let eos = backend.capabilities().eos_token_ids;
    assert!(!eos.is_empty(), "the GGUF names its end-of-sequence tokens");
    let prompt = ask("Say hello.");
    // Control: a processor that forces end-of-sequence at the third token ends the reply there,
    // so end-of-sequence is honoured...
    let two = block_on(backend.tokenize(TokenizeInput::Piece("Hi there"))).unwrap();
    let early = block_on(
        backend.generate(
            GenerationRequest::new(prompt.clone())
                .with_max_tokens(48)
                .with_logits_processor(writes(two.clone(), eos[0])),
        ),
    )
    .unwrap();
    assert_eq!(early.choices[0].finish_reason, FinishReason::Stop);
    assert!(
        early.choices[0].completion_tokens <= 3,
        "{:?}",
        early.choices[0]
    );
    // ...and banning it makes the reply run to exactly max_tokens.
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let ban = move |logits: &mut [f32], _context: &[u32]| {
        seen.fetch_add(1, Ordering::Relaxed);
        common::ban(logits, &eos);
    };
    let banned = block_on(
        backend.generate(
            GenerationRequest::new(prompt)
                .with_max_tokens(48)
                .with_logits_processor(Arc::new(ban)),
        ),
    )
    .unwrap();
    assert_eq!(banned.choices[0].completion_tokens, 48);
    assert_eq!(banned.choices[0].finish_reason, FinishReason::Length);
    assert!(calls.load(Ordering::Relaxed) >= 47);
}

#[test]
fn more_top_log_probabilities_than_the_backend_lists_are_refused_before_decoding() {
    let backend = smollm_dyn();
    let most = backend.capabilities().max_top_logprobs;
    let ask = |k| {
        GenerationRequest::new(ask("Hi"))
            .with_max_tokens(2)
            .with_top_logprobs(k)
    };
    let err = block_on(backend.generate(ask(most + 1))).unwrap_err();
    assert!(matches!(err, Error::InvalidRequest { .. }), "{err:?}");
    let generation = block_on(backend.generate(ask(most))).unwrap();
    let listed = generation.choices[0].logprobs.as_ref().unwrap();
    assert!(listed.iter().all(|t| t.top.len() <= most), "{listed:?}");
}

#[test]
fn a_prompt_longer_than_the_context_is_a_clear_error() {
    let backend = smollm_dyn();
    let context = backend
        .capabilities()
        .context_tokens
        .expect("GGUF context length");
    let long = Prompt::Tokens(vec![1000; context + 10]);
    let err =
        block_on(backend.generate(GenerationRequest::new(long).with_max_tokens(16))).unwrap_err();
    match err {
        Error::PromptTooLong {
            prompt_tokens,
            max_tokens,
            context_tokens,
        } => {
            assert_eq!(
                (prompt_tokens, max_tokens, context_tokens),
                (context + 10, 16, context)
            );
        }
        other => panic!("expected PromptTooLong, got {other}"),
    }
    // Fits on its own but not with max_tokens.
    let almost = Prompt::Tokens(vec![1000; context - 8]);
    let err =
        block_on(backend.generate(GenerationRequest::new(almost).with_max_tokens(16))).unwrap_err();
    assert!(
        err.to_string().contains("exceeds the model's context"),
        "{err}"
    );
    let text = Prompt::Text("word ".repeat(context + 100));
    assert!(matches!(
        block_on(backend.generate(GenerationRequest::new(text))),
        Err(Error::PromptTooLong { .. })
    ));
}

#[test]
fn a_small_context_window_ends_thinking_and_searches_in_process_not_in_errors() {
    // SmolLM2 told its window is 256 tokens (the file says 8192). mistral.rs refuses a prompt
    // and max_tokens past the window; the meter shortens each call to fit it. The checks of
    // tests/openai_backend.rs's
    // `long_thinking_and_deep_searches_end_at_a_small_context_window_not_in_errors`, in process
    // and in both forcing modes.
    let dir = tempfile::tempdir().unwrap();
    let backend = common::smollm_with_window(dir.path(), 256);
    assert_eq!(backend.capabilities().context_tokens, Some(256));

    // A call asking for more than the window is shortened to fill it exactly, and the engine
    // writes every token of it (end-of-sequence banned).
    let prompt = ask("Write a long story about a dragon.");
    let prompt_tokens = block_on(backend.tokenize(TokenizeInput::Prompt(&prompt)))
        .unwrap()
        .len();
    let eos = backend.capabilities().eos_token_ids;
    let ban = move |logits: &mut [f32], _context: &[u32]| {
        common::ban(logits, &eos);
    };
    let metered = Metered::new(Arc::clone(&backend), Budget::unlimited());
    let filled = block_on(
        metered.generate(
            GenerationRequest::new(prompt.clone())
                .with_max_tokens(1000)
                .with_logits_processor(Arc::new(ban)),
        ),
    )
    .unwrap();
    assert_eq!(filled.choices[0].finish_reason, FinishReason::Length);
    assert_eq!(prompt_tokens + filled.choices[0].completion_tokens, 256);
    // Unmetered, one token past the window is refused before it reaches the engine.
    let over = GenerationRequest::new(prompt).with_max_tokens(256 - prompt_tokens + 1);
    assert!(matches!(
        block_on(backend.generate(over)),
        Err(Error::PromptTooLong {
            context_tokens: 256,
            ..
        })
    ));

    common::thinking_and_search_end_at_a_256_token_window(
        backend,
        &[ForcingMode::InDecode, ForcingMode::Resubmit],
    );
}

#[test]
fn a_dropped_request_leaves_the_engine_working() {
    let backend = smollm_dyn();
    for n in [1, 4] {
        // Paced, so that it is still writing when dropped on any device.
        let request = GenerationRequest::new(ask("Tell me a long story about a dragon."))
            .with_n(n)
            .with_max_tokens(200)
            .with_sampling(Sampling::with_temperature(0.8))
            .with_logits_processor(common::paced(
                backend.capabilities().eos_token_ids,
                Duration::from_millis(20),
            ));
        let cut = block_on(async {
            tokio::time::timeout(Duration::from_millis(300), backend.generate(request)).await
        });
        assert!(cut.is_err(), "the request should still have been running");
    }
    // And a solve dropped mid-flight.
    let strategy = Direct::new(DirectConfig::default()).unwrap();
    let problem = Problem::new("drop", "Explain photosynthesis in detail.");
    let dropped = block_on(async {
        tokio::time::timeout(
            Duration::from_millis(200),
            ponder::engine::solve(
                &strategy,
                &problem,
                common::Paced::wrap(Arc::clone(&backend), Duration::from_millis(20)),
                Budget::unlimited(),
            ),
        )
        .await
    });
    assert!(dropped.is_err());
    let after = block_on(
        backend.generate(GenerationRequest::new(ask("What is 1 + 1?")).with_max_tokens(8)),
    )
    .unwrap();
    assert_eq!(after.choices.len(), 1);
    assert!(after.choices[0].completion_tokens >= 1);
}

/// Waits until `steps` has stopped growing for a second (at most two minutes) and returns it.
async fn settled(steps: &AtomicUsize) -> usize {
    let mut last = steps.load(Ordering::Relaxed);
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = steps.load(Ordering::Relaxed);
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the abandoned request was still decoding after two minutes ({last} steps)");
}

#[test]
fn an_abandoned_request_stops_decoding_at_its_next_token() {
    // mistral.rs cannot cancel a non-streaming request: without ponder ending it, a request
    // whose caller gave up (here a timeout, like a wall-time budget) decodes on to max_tokens,
    // holding the CPU's only turn. The processor bans end-of-sequence, so it would run to all
    // 2000 tokens, and counts the decode steps.
    let backend = smollm_dyn();
    let eos = backend.capabilities().eos_token_ids;
    let steps = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&steps);
    let ban = move |logits: &mut [f32], _context: &[u32]| {
        seen.fetch_add(1, Ordering::Relaxed);
        common::ban(logits, &eos);
    };
    let max_tokens = 2000;
    let request = GenerationRequest::new(ask("Tell me a long story about a dragon."))
        .with_max_tokens(max_tokens)
        .with_sampling(Sampling::with_temperature(0.8))
        .with_logits_processor(Arc::new(ban));
    // Given up once it has decoded a few tokens (not after a fixed time: on a loaded machine
    // the prompt alone can take seconds).
    let decoding = Arc::clone(&steps);
    let cut = block_on(async {
        let started = async {
            while decoding.load(Ordering::Relaxed) < 4 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            done = backend.generate(request) => Some(done),
            () = started => None,
        }
    });
    assert!(cut.is_none(), "the request should still have been running");
    // The next request is served (on the CPU it needs the abandoned one's turn)...
    let after = block_on(
        backend.generate(GenerationRequest::new(ask("What is 1 + 1?")).with_max_tokens(8)),
    )
    .unwrap();
    assert!(after.choices[0].completion_tokens >= 1);
    // ...and the abandoned request has stopped far short of its max_tokens.
    let steps = block_on(settled(&steps));
    assert!(
        steps >= 1 && steps < max_tokens / 2,
        "the abandoned request decoded {steps} of its {max_tokens} tokens"
    );
}

#[test]
fn a_request_ends_at_its_deadline_with_what_it_wrote() {
    // A wall-time budget's deadline ends decoding: the text so far comes back, cut and counted
    // (it was dropped, and what it decoded counted as nothing). The processor bans
    // end-of-sequence and takes 20 ms a token (on a GPU SmolLM2 writes 2000 tokens in
    // seconds), so only the deadline can end it short of its 2000 tokens.
    let backend = smollm_dyn();
    let eos = backend.capabilities().eos_token_ids;
    let max_tokens = 2000;
    let request = GenerationRequest::new(ask("Tell me a long story about a dragon."))
        .with_max_tokens(max_tokens)
        .with_logits_processor(common::paced(eos, Duration::from_millis(20)))
        .with_top_logprobs(1)
        // Far enough that waiting for the engine's turn (other tests hold it) leaves time to
        // decode, near enough to end it well short of its 2000 tokens (about a minute).
        .with_deadline(std::time::Instant::now() + Duration::from_secs(10));
    let generation = block_on(backend.generate(request)).unwrap();
    let choice = &generation.choices[0];
    assert_eq!(choice.finish_reason, FinishReason::Length);
    assert!(
        choice.completion_tokens >= 1 && choice.completion_tokens < max_tokens / 2,
        "{} tokens",
        choice.completion_tokens
    );
    assert_eq!(
        generation.usage.completion_tokens,
        choice.completion_tokens as u64
    );
    // The forced end-of-sequence is the last token, at probability 1: how, of several
    // sequences of one request (on a GPU), those cut are told from those that ended by
    // themselves.
    let last = choice.logprobs.as_ref().and_then(|l| l.last()).unwrap();
    assert_eq!(last.logprob, 0.0, "{last:?}");
    // One whose deadline has passed before it could start decodes nothing.
    let late = GenerationRequest::new(ask("What is 1 + 1?"))
        .with_deadline(std::time::Instant::now() - Duration::from_millis(1));
    let err = block_on(backend.generate(late)).unwrap_err();
    assert!(matches!(err, Error::BudgetExhausted { .. }), "{err:?}");
}

#[test]
fn choices_written_before_the_deadline_come_back_when_a_later_one_is_stuck_in_a_step() {
    // On the CPU the choices of a request run one after another. A later one whose step
    // outlasts the deadline (a long prefill: the deadline's forced end comes only with a
    // token) used to hold the call until the meter dropped it, losing the choices already
    // written and counting nothing. A processor that sleeps on the second choice's first
    // step, past the meter's grace, stands in for that step. (CUDA runs both choices in one
    // batch: nothing to test there.)
    if !matches!(common::device(), DeviceSpec::Cpu) {
        return;
    }
    // A backend of its own: no other test's request holds the engine's turn.
    let source = ModelSource::parse(&ModelConfig::default().source).unwrap();
    let backend: Arc<dyn Backend> =
        Arc::new(block_on(MistralRsBackend::load(&source, &common::options())).unwrap());
    let ids =
        block_on(backend.tokenize(TokenizeInput::Piece("Once upon a time, there was"))).unwrap();
    let prompt_len = ids.len();
    // Time for the first choice (a few tokens) even on a loaded machine.
    let wall = Duration::from_secs(8);
    let started = std::time::Instant::now();
    let firsts = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&firsts);
    let stuck = move |_logits: &mut [f32], context: &[u32]| {
        if context.len() == prompt_len && seen.fetch_add(1, Ordering::SeqCst) == 1 {
            let until = started + wall + Duration::from_millis(2600);
            std::thread::sleep(until.saturating_duration_since(std::time::Instant::now()));
        }
    };
    let metered = Metered::new(
        Arc::clone(&backend),
        Budget::unlimited().with_max_wall(wall),
    );
    let request = GenerationRequest::new(Prompt::Tokens(ids))
        .with_n(2)
        .with_max_tokens(3)
        .with_sampling(Sampling::with_temperature(0.8))
        .with_logits_processor(Arc::new(stuck));
    let generation = block_on(metered.generate(request)).unwrap();
    assert_eq!(firsts.load(Ordering::SeqCst), 2, "the second choice began");
    assert_eq!(generation.choices.len(), 1);
    assert_eq!(generation.cut_by, Some(Resource::WallTime));
    let written = generation.choices[0].completion_tokens as u64;
    assert!(written >= 1);
    let counted = metered.meter().usage();
    assert_eq!(counted.completion_tokens, written, "{counted:?}");
    assert_eq!(counted.prompt_tokens, prompt_len as u64, "{counted:?}");
    assert_eq!(counted.calls, 1);
}

/// A tiny Llama with Llama-2's SentencePiece vocabulary and random weights
/// (`scripts/tiny_spm_model.sh`, fetched and written once, cached).
fn tiny_sentencepiece_model() -> MistralRsBackend {
    fixture_model("scripts/tiny_spm_model.sh", &[])
}

/// The model a fixture script of the repository writes (given `args`) and prints the path of,
/// loaded on the CPU.
fn fixture_model(script: &str, args: &[&std::path::Path]) -> MistralRsBackend {
    let source = ModelSource::parse(&fixture_path(script, args).to_string_lossy()).unwrap();
    block_on(MistralRsBackend::load(&source, &LoadOptions::default())).unwrap()
}

#[test]
fn a_sentencepiece_completion_keeps_its_leading_space() {
    // SentencePiece decodes a token alone without the space it starts with, and mistral.rs
    // trims a completion's leading whitespace: "I think" came back for " I think" after
    // "Wait", so a continuation glued onto its prefix (budget forcing by resubmission, beam
    // search's steps) read "WaitI think". (The fixture is fetched from the Python package
    // index: CPU runs only, as the GPU machine has no network.)
    if !matches!(common::device(), DeviceSpec::Cpu) {
        return;
    }
    let backend = tiny_sentencepiece_model();
    // SentencePiece puts a space before the text it tokenizes: "▁I", "▁th", "ink", "▁so".
    let said = block_on(backend.tokenize(TokenizeInput::Piece("I think so"))).unwrap();
    let eos = backend.capabilities().eos_token_ids[0];
    for alone in &said {
        assert!(
            !block_on(backend.detokenize(&[*alone]))
                .unwrap()
                .starts_with(' '),
            "the tokens lose their space decoded alone"
        );
    }
    // The model writes `completion` after `prompt` (its ids as the two are tokenized
    // together), with `stop`; the choice and its tokens' texts.
    let write = |prompt: &str, completion: &str, stop: &[&str], n: usize| {
        let before = block_on(backend.tokenize(TokenizeInput::Piece(prompt))).unwrap();
        let whole =
            block_on(backend.tokenize(TokenizeInput::Piece(&format!("{prompt}{completion}"))))
                .unwrap();
        let ids = whole
            .strip_prefix(before.as_slice())
            .expect("the prompt's ids first")
            .to_vec();
        let mut request = GenerationRequest::new(Prompt::Tokens(before))
            .with_n(n)
            .with_max_tokens(ids.len() + 1)
            .with_logits_processor(writes(ids, eos))
            .with_top_logprobs(1);
        for s in stop {
            request = request.with_stop(*s);
        }
        let generation = block_on(backend.generate(request)).unwrap();
        generation
            .choices
            .into_iter()
            .map(|c| {
                let tokens: String = c
                    .logprobs
                    .iter()
                    .flatten()
                    .map(|l| l.token.as_str())
                    .collect();
                (c.text, tokens, c.stop_sequence)
            })
            .collect::<Vec<_>>()
    };
    let (text, tokens, _) = write("Question: hi. Wait", " I think so", &[], 1).remove(0);
    assert_eq!(text, " I think so");
    // The tokens' own texts read as the completion does (what the router finds the answer's
    // tokens by), then the end of sequence.
    assert_eq!(tokens, " I think so</s>");
    // Leading whitespace of several tokens, written once: an indented line of code, a
    // newline.
    for (prompt, completion) in [("def f(x):\n", "    return x"), ("Answer:", "\n4 apples")] {
        let (text, tokens, _) = write(prompt, completion, &[], 1).remove(0);
        assert_eq!(text, completion);
        assert_eq!(tokens, format!("{completion}</s>"));
    }
    // Llama-2's vocabulary writes a newline, and a character it has no token for (an emoji),
    // in byte tokens (`<0x0A>`), which mistral.rs 0.8.1 takes for special tokens of a GGUF
    // and leaves out of a completion's text: "x\nFinal Answer:" read "xFinal Answer:", and a
    // stop at "\n\n" (beam search's steps) was never found. They are put back.
    for completion in [
        " x\nFinal Answer: 4\n\n x",
        " def f(x):\n    return x",
        " ok \u{1F642} done",
    ] {
        let (text, tokens, _) = write("Hello", completion, &[], 1).remove(0);
        assert_eq!(text, completion);
        assert_eq!(tokens, format!("{completion}</s>"));
    }
    let (text, _, stop) = write("Hello", " Step one.\n\nStep two", &["\n\n"], 1).remove(0);
    assert_eq!(
        (text.as_str(), stop.as_deref()),
        (" Step one.", Some("\n\n"))
    );
    // A stop string inside the leading whitespace cuts there.
    let (text, _, stop) = write("Step one.", "\n\nStep two", &["\n\n"], 1).remove(0);
    assert_eq!((text.as_str(), stop.as_deref()), ("", Some("\n\n")));
    // Several choices, one after another on the CPU: each keeps it.
    let texts: Vec<String> = write("Question: hi. Wait", " I think so", &[], 2)
        .into_iter()
        .map(|(text, _, _)| text)
        .collect();
    assert_eq!(texts, [" I think so", " I think so"]);
}

#[test]
fn math_shepherds_step_tag_is_read_where_a_sentencepiece_tokenizer_writes_it() {
    // Llama-2's tokenizer reads " ки" alone as "▁▁", "ки" but writes the tag after a step as
    // "▁ки": the PRM's reads were looked for at an id the scored text never held, and the
    // text was then tokenized in pieces with the tag as two tokens the PRM never saw.
    if !matches!(common::device(), DeviceSpec::Cpu) {
        return;
    }
    let backend = tiny_sentencepiece_model();
    let tag = block_on(ponder::prm::step_tag_ids(&backend, "ки")).unwrap();
    let whole = block_on(backend.tokenize(TokenizeInput::Prompt(&Prompt::Text(
        "What is 2+2+2? 2+2=4 ки\n4+2=6 ки".into(),
    ))))
    .unwrap();
    let at_tag = |id: u32| whole.iter().filter(|&&w| w == id).count();
    assert_eq!(tag.len(), 1, "{tag:?}");
    assert_eq!(at_tag(tag[0]), 2, "{tag:?} in {whole:?}");
    let alone = block_on(backend.tokenize(TokenizeInput::Piece(" ки"))).unwrap();
    assert_eq!(
        at_tag(*alone.last().unwrap()),
        0,
        "the tag alone: {alone:?}"
    );
    // On a byte-level BPE tokenizer it is the tag alone, as before.
    let smollm = smollm_dyn();
    assert_eq!(
        block_on(ponder::prm::step_tag_ids(smollm.as_ref(), "ки")).unwrap(),
        block_on(smollm.tokenize(TokenizeInput::Piece(" ки"))).unwrap()
    );
}

/// A raw text prompt to a GGUF model whose file asks for a beginning-of-sequence token
/// (`tokenizer.ggml.add_bos_token`, as Llama-2's and Mistral's do) starts with it, once, as
/// llama.cpp tokenizes it: mistral.rs's tokenizer built from a GGUF file never adds it. One
/// whose file says no (SmolLM2's) gets none.
#[test]
fn a_raw_prompt_starts_with_the_beginning_of_sequence_token_the_gguf_file_asks_for() {
    if !matches!(common::device(), DeviceSpec::Cpu) {
        return;
    }
    let backend = tiny_sentencepiece_model();
    let bos = 1; // the fixture's `tokenizer.ggml.bos_token_id`, with `add_bos_token` true
    let text = |t: &str| {
        block_on(backend.tokenize(TokenizeInput::Prompt(&Prompt::Text(t.into())))).unwrap()
    };
    let piece = block_on(backend.tokenize(TokenizeInput::Piece("What is 2+2?"))).unwrap();
    assert_ne!(
        piece.first(),
        Some(&bos),
        "a piece has no special tokens: {piece:?}"
    );
    let ids = text("What is 2+2?");
    assert_eq!(ids, [&[bos][..], &piece].concat());
    // Written out in the text already, it is not doubled.
    let ids = text("<s>What is 2+2?");
    assert_eq!(ids.iter().filter(|&&id| id == bos).count(), 1, "{ids:?}");
    assert_eq!(ids[0], bos);
    // The prompt the model reads is the one counted and generated from.
    let request = GenerationRequest::new(Prompt::Text("What is 2+2?".into())).with_max_tokens(1);
    let generation = block_on(backend.generate(request)).unwrap();
    assert_eq!(generation.usage.prompt_tokens as usize, piece.len() + 1);
    let smollm = smollm_dyn();
    let ids = block_on(smollm.tokenize(TokenizeInput::Prompt(&Prompt::Text("Hi".into())))).unwrap();
    let piece = block_on(smollm.tokenize(TokenizeInput::Piece("Hi"))).unwrap();
    assert_eq!(ids, piece, "SmolLM2's file says add_bos_token = false");
}

#[test]
fn a_problem_out_of_wall_time_answers_from_its_text_so_far_and_counts_it() {
    // Paced at 20 ms a token, end-of-sequence banned: on a GPU SmolLM2 would count to 1000
    // before the deadline.
    let backend = common::Paced::wrap(smollm_dyn(), Duration::from_millis(20));
    let strategy = Direct::new(DirectConfig {
        max_tokens: std::num::NonZeroUsize::new(2000).unwrap(),
        ..DirectConfig::default()
    })
    .unwrap();
    // SmolLM2 counts on to all 2000 tokens (about a minute); the budget ends it at 15 s, time
    // enough to wait for the engine's turn (other tests hold it) and still write.
    let problem = Problem::new("wall", "Count from 1 to 1000, one number per line.");
    let budget = Budget::unlimited().with_max_wall(Duration::from_secs(15));
    let solution = block_on(ponder::engine::solve(&strategy, &problem, backend, budget)).unwrap();
    assert_eq!(solution.stop_reason, StopReason::TimeBudget, "{solution:?}");
    assert_eq!(solution.usage.calls, 1);
    assert!(
        solution.usage.completion_tokens >= 1 && solution.usage.completion_tokens < 1000,
        "{:?}",
        solution.usage
    );
    assert!(!solution.completion.is_empty());
}

#[test]
fn a_budget_is_never_exceeded_on_the_real_model() {
    let backend = smollm_dyn();
    let strategy = Direct::new(DirectConfig::default()).unwrap();
    let problem = Problem::new("budget", "Explain how rain forms, in detail.");
    let budget = Budget::unlimited().with_max_tokens(80);
    let solution = block_on(ponder::engine::solve(&strategy, &problem, backend, budget)).unwrap();
    assert!(solution.usage.total_tokens() <= 80, "{:?}", solution.usage);
    assert!(matches!(
        solution.stop_reason,
        StopReason::MaxTokens | StopReason::TokenBudget
    ));
}

#[test]
fn greedy_is_deterministic() {
    // mistral.rs treats a missing temperature as 1.0; ponder sends an explicit 0 for greedy, so
    // the same request gives the same text. (Beside other requests too on the CPU, where ponder
    // decodes one sequence at a time: `concurrent_requests_each_continue_their_own_prompt`.)
    let backend = smollm_dyn();
    let prompt = ask("Name three colours.");
    let greedy = || GenerationRequest::new(prompt.clone()).with_max_tokens(24);
    let texts: Vec<String> = (0..3)
        .map(|_| {
            block_on(backend.generate(greedy())).unwrap().choices[0]
                .text
                .clone()
        })
        .collect();
    assert!(texts.windows(2).all(|w| w[0] == w[1]), "{texts:?}");
    let sampled: Vec<String> = (0..3)
        .map(|_| {
            let request = greedy().with_sampling(Sampling::with_temperature(1.0));
            block_on(backend.generate(request)).unwrap().choices[0]
                .text
                .clone()
        })
        .collect();
    assert!(
        sampled.windows(2).any(|w| w[0] != w[1]),
        "temperature 1 should vary: {sampled:?}"
    );
}

#[test]
fn greedy_log_probabilities_are_the_tokens_probabilities() {
    // mistral.rs 0.8.1 reports log10 of the raw logit on its greedy path; the backend must not.
    let backend = smollm_dyn();
    let prompt = ask("What is the capital of France?");
    let plain =
        block_on(backend.generate(GenerationRequest::new(prompt.clone()).with_max_tokens(12)))
            .unwrap();
    let with = block_on(
        backend.generate(
            GenerationRequest::new(prompt.clone())
                .with_max_tokens(12)
                .with_top_logprobs(5),
        ),
    )
    .unwrap();
    let (plain, with) = (&plain.choices[0], &with.choices[0]);
    if matches!(common::device(), DeviceSpec::Cpu) {
        assert_eq!(
            plain.text, with.text,
            "asking for log-probabilities changed greedy text"
        );
    }
    let logprobs = with.logprobs.as_ref().unwrap();
    assert_eq!(logprobs.len(), with.completion_tokens);
    for l in logprobs {
        assert!(l.logprob.is_finite() && l.logprob <= 0.0, "{l:?}");
        // The token taken, the most likely, and four alternatives, most likely first.
        assert_eq!(l.top.len(), 5, "{l:?}");
        assert_eq!(l.top[0].logprob, l.logprob, "{l:?}");
        assert!(
            l.top.windows(2).all(|w| w[0].logprob >= w[1].logprob),
            "{l:?}"
        );
    }
    // The first token's probability, against the top alternatives of a sampled one-token
    // request (temperature 1, no filter: the model's own distribution).
    let probe = block_on(
        backend.generate(
            GenerationRequest::new(prompt)
                .with_max_tokens(1)
                .with_sampling(Sampling::with_temperature(1.0))
                .with_top_logprobs(5),
        ),
    )
    .unwrap();
    let top = &probe.choices[0].logprobs.as_ref().unwrap()[0].top;
    let first = &logprobs[0];
    assert_eq!(
        top[0].id, first.top[0].id,
        "greedy took the most likely token"
    );
    assert!(
        (top[0].logprob - first.logprob).abs() < 1e-3,
        "{} vs {}",
        top[0].logprob,
        first.logprob
    );
    // The alternatives too are the model's own, as a sampler reports them.
    let ids = |top: &[ponder::engine::TopLogprob]| top.iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(ids(top), ids(&first.top), "{top:?} vs {:?}", first.top);
    for (sampled, greedy) in top.iter().zip(&first.top) {
        assert!(
            (sampled.logprob - greedy.logprob).abs() < 1e-3,
            "{top:?} vs {:?}",
            first.top
        );
    }
    assert!(
        top.windows(2).all(|w| w[0].logprob >= w[1].logprob),
        "{top:?}"
    );
}

/// A tiny Qwen2 model directory in the safetensors layout with random weights and Qwen2.5's
/// real tokenizer (`scripts/tiny_qwen_dir.sh`): the loading path the GPU runs take.
fn tiny_safetensors_model() -> MistralRsBackend {
    let dir = tiny_safetensors_dir();
    let source = ModelSource::parse(&dir.to_string_lossy()).unwrap();
    let backend = block_on(MistralRsBackend::load(&source, &LoadOptions::default())).unwrap();
    assert!(backend.name().ends_with("tiny-qwen"), "{}", backend.name());
    backend
}

/// The directory of [`tiny_safetensors_model`].
fn tiny_safetensors_dir() -> std::path::PathBuf {
    let qwen = block_on(async {
        tokio::task::spawn_blocking(|| {
            ponder::engine::models::builtin("qwen2.5-coder-0.5b")
                .unwrap()
                .ensure()
        })
        .await
        .unwrap()
    })
    .expect("fetching qwen2.5-coder-0.5b");
    fixture_path("scripts/tiny_qwen_dir.sh", &[&qwen])
}

/// The safetensors path: end-of-sequence ids from `generation_config.json`, chat prompts through
/// the template in `tokenizer_config.json`, and stop strings matched by ponder through the
/// token bytes of `tokenizer.json` (mistral.rs's own matching would panic its engine on the stop
/// after a broken character, as on the GGUF path).
#[test]
fn a_safetensors_directory_loads_and_ponder_matches_its_stop_strings() {
    // (The fixture is written with packages from the Python package index: CPU runs only, as
    // the GPU machine has no network.)
    if !matches!(common::device(), DeviceSpec::Cpu) {
        return;
    }
    let backend = tiny_safetensors_model();
    assert_eq!(backend.capabilities().eos_token_ids, vec![151645, 151643]);
    ponder_matches_stops_after_a_broken_character(&backend);
    // Without `generation_config.json`, the engine still ends sequences on the
    // `tokenizer_config.json`'s `eos_token`: ponder forces that one at a stop, and matches
    // stop strings itself all the same.
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(tiny_safetensors_dir()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "generation_config.json" {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    let source = ModelSource::parse(&dir.path().to_string_lossy()).unwrap();
    let backend = block_on(MistralRsBackend::load(&source, &LoadOptions::default())).unwrap();
    assert!(!backend.capabilities().eos_token_ids.is_empty());
    ponder_matches_stops_after_a_broken_character(&backend);
}

/// A stop string after a broken character ends the completion where ponder matched it (the
/// engine's own matching would panic it).
fn ponder_matches_stops_after_a_broken_character(backend: &MistralRsBackend) {
    let eos = backend.capabilities().eos_token_ids[0];
    let chat =
        block_on(backend.generate(GenerationRequest::new(ask("Hi")).with_max_tokens(3))).unwrap();
    assert!(chat.usage.prompt_tokens > 5, "{chat:?}");
    let piece = |text: &str| block_on(backend.tokenize(TokenizeInput::Piece(text))).unwrap();
    let character = piece("\u{9F98}");
    assert!(character.len() >= 2, "one token: {character:?}");
    for stop in ["\n\n", "gamma"] {
        let ids = [
            &character[..1],
            &piece(" alpha beta")[..],
            &piece(&format!(" {stop}"))[..],
            &piece(" more words")[..],
        ]
        .concat();
        let request = GenerationRequest::new(ask("Write anything."))
            .with_max_tokens(ids.len() + 4)
            .with_logits_processor(writes(ids, eos))
            .with_stop(stop);
        let stopped = block_on(backend.generate(request)).unwrap();
        let choice = &stopped.choices[0];
        assert_eq!(choice.text, "\u{FFFD} alpha beta ", "stop {stop:?}");
        assert_eq!(choice.finish_reason, FinishReason::Stop);
        assert_eq!(choice.stop_sequence.as_deref(), Some(stop));
        let through = 1 + piece(" alpha beta").len() + piece(&format!(" {stop}")).len();
        assert_eq!(choice.completion_tokens, through + 1, "stop {stop:?}");
    }
}

/// The tiny SentencePiece model has no chat template: mistral.rs 0.8.1 panics its engine
/// rendering chat messages for it (`processing.rs`, `chat_template.unwrap()`); ponder refuses
/// them, naming the model and what to do, and raw prompts still work.
#[test]
fn chat_messages_to_a_model_without_a_chat_template_are_refused_clearly() {
    // (The fixture is written with packages from the Python package index: CPU runs only, as
    // the GPU machine has no network.)
    if !matches!(common::device(), DeviceSpec::Cpu) {
        return;
    }
    let backend = tiny_sentencepiece_model();
    let error = block_on(backend.generate(GenerationRequest::new(ask("Hi")).with_max_tokens(2)))
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("tiny-llama-spm") && text.contains("no chat template"),
        "{text}"
    );
    let raw = block_on(backend.generate(
        GenerationRequest::new(Prompt::Text("Once upon a time".into())).with_max_tokens(2),
    ))
    .unwrap();
    assert!(raw.choices[0].completion_tokens >= 1);
}

/// The same refusal for a safetensors directory without a template: mistral.rs only warns as
/// it loads one, then panics its engine on the first chat message (a tokenize request skips the
/// check its chat requests get).
#[test]
fn chat_messages_to_a_safetensors_model_without_a_chat_template_are_refused() {
    if !matches!(common::device(), DeviceSpec::Cpu) {
        return;
    }
    let fixture = tiny_safetensors_dir();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("no-template");
    std::fs::create_dir(&model).unwrap();
    for entry in std::fs::read_dir(&fixture).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if name == "tokenizer_config.json" {
            let mut config: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            assert!(config["chat_template"].is_string(), "{config}");
            config.as_object_mut().unwrap().remove("chat_template");
            std::fs::write(model.join(name), config.to_string()).unwrap();
        } else {
            std::os::unix::fs::symlink(&path, model.join(name)).unwrap();
        }
    }
    let source = ModelSource::parse(&model.to_string_lossy()).unwrap();
    let backend = block_on(MistralRsBackend::load(&source, &LoadOptions::default())).unwrap();
    let error = block_on(backend.generate(GenerationRequest::new(ask("Hi")).with_max_tokens(2)))
        .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("no chat template"), "{text}");
    let raw = block_on(backend.generate(
        GenerationRequest::new(Prompt::Text("Once upon a time".into())).with_max_tokens(2),
    ))
    .unwrap();
    assert!(raw.choices[0].completion_tokens >= 1);
    // With one given in [model], chat messages go through it.
    let template = dir.path().join("chatml.jinja");
    std::fs::write(
        &template,
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\
         <|im_start|>assistant\n",
    )
    .unwrap();
    let options = LoadOptions {
        chat_template: Some(template),
        ..LoadOptions::default()
    };
    let backend = block_on(MistralRsBackend::load(&source, &options)).unwrap();
    let chat =
        block_on(backend.generate(GenerationRequest::new(ask("Hi")).with_max_tokens(2))).unwrap();
    assert!(chat.usage.prompt_tokens > 5, "{chat:?}");
}

#[test]
fn a_chat_template_that_cannot_be_read_is_named_before_loading() {
    let source = ModelSource::parse(&ModelConfig::default().source).unwrap();
    for (path, says) in [
        ("/nonexistent/r1.jinja", "No such file"),
        ("/etc/hostname", "`.jinja`"),
    ] {
        let options = LoadOptions {
            chat_template: Some(path.into()),
            ..common::options()
        };
        // mistral.rs would panic on either.
        let Err(err) = block_on(MistralRsBackend::load(&source, &options)) else {
            panic!("{path}: a model loaded with it");
        };
        let err = err.to_string();
        assert!(
            err.contains(path) && err.contains(says) && err.contains("smollm2-135m"),
            "{err}"
        );
    }
}

/// A reader over a GGUF file's bytes that knows where it is.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        self.at += n;
        &self.bytes[self.at - n..self.at]
    }

    fn number(&mut self, n: usize) -> u64 {
        let mut wide = [0u8; 8];
        wide[..n].copy_from_slice(self.take(n));
        u64::from_le_bytes(wide)
    }

    fn skip(&mut self, kind: u32) {
        match kind {
            0 | 1 | 7 => self.at += 1,
            2 | 3 => self.at += 2,
            4..=6 => self.at += 4,
            10..=12 => self.at += 8,
            8 => {
                let n = self.number(8) as usize;
                self.at += n;
            }
            9 => {
                let items = self.number(4) as u32;
                for _ in 0..self.number(8) {
                    self.skip(items);
                }
            }
            other => panic!("value type {other}"),
        }
    }
}

/// Splits the GGUF file at `path` into `parts` shards `{stem}-0000i-of-0000n.gguf` in `dir`, as
/// llama.cpp's `gguf-split` does: every metadata entry in the first only, the `split.*` keys in
/// each, the tensors shared out in order.
fn split_gguf(path: &std::path::Path, dir: &std::path::Path, stem: &str, parts: usize) {
    let bytes = std::fs::read(path).unwrap();
    let mut r = Cursor {
        bytes: &bytes,
        at: 0,
    };
    assert_eq!(r.take(4), b"GGUF");
    assert_eq!(r.number(4), 3, "a GGUF version 3 file");
    let tensors = r.number(8) as usize;
    let entries = r.number(8) as usize;
    let mut alignment = 32;
    let mut metadata = Vec::new();
    for _ in 0..entries {
        let start = r.at;
        let key_len = r.number(8) as usize;
        let key = r.take(key_len);
        let kind = r.number(4) as u32;
        if kind == 4 && key == b"general.alignment" {
            alignment = r.number(4) as usize;
        } else {
            r.skip(kind);
        }
        metadata.push(&bytes[start..r.at]);
    }
    // Each tensor's entry without its offset, and its offset.
    let mut table = Vec::new();
    for _ in 0..tensors {
        let start = r.at;
        let name_len = r.number(8) as usize;
        r.take(name_len);
        let dims = r.number(4) as usize;
        r.take(8 * dims + 4);
        let entry = &bytes[start..r.at];
        table.push((entry, r.number(8) as usize));
    }
    let data = r.at.div_ceil(alignment) * alignment;
    let mut offsets: Vec<usize> = table.iter().map(|(_, offset)| *offset).collect();
    offsets.sort_unstable();
    let size_of = |offset: usize| {
        let next = offsets.iter().find(|&&o| o > offset).copied();
        next.unwrap_or(bytes.len() - data) - offset
    };
    for (i, chunk) in table.chunks(tensors.div_ceil(parts)).enumerate() {
        let align = if i == 0 { alignment } else { 32 };
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend((chunk.len() as u64).to_le_bytes());
        let kept = if i == 0 { metadata.len() } else { 0 };
        out.extend((kept as u64 + 3).to_le_bytes());
        for entry in &metadata[..kept] {
            out.extend(*entry);
        }
        for (key, kind, value) in [
            ("split.no", 2u32, (i as u16).to_le_bytes().to_vec()),
            ("split.count", 2, (parts as u16).to_le_bytes().to_vec()),
            (
                "split.tensors.count",
                5,
                (tensors as i32).to_le_bytes().to_vec(),
            ),
        ] {
            out.extend((key.len() as u64).to_le_bytes());
            out.extend(key.as_bytes());
            out.extend(kind.to_le_bytes());
            out.extend(value);
        }
        let mut offset = 0usize;
        for (entry, old) in chunk {
            out.extend(*entry);
            out.extend((offset as u64).to_le_bytes());
            offset = (offset + size_of(*old)).div_ceil(align) * align;
        }
        out.resize(out.len().div_ceil(align) * align, 0);
        for (_, old) in chunk {
            out.extend(&bytes[data + old..data + old + size_of(*old)]);
            out.resize(out.len().div_ceil(align) * align, 0);
        }
        let name = format!("{stem}-{:05}-of-{parts:05}.gguf", i + 1);
        std::fs::write(dir.join(name), out).unwrap();
    }
}

/// A model split by `gguf-split` loads from its directory or its first shard (the others found
/// beside it), and writes what the whole file writes; the metadata lives in the first shard only,
/// so a later shard alone, or a first without all the others, is refused naming why.
#[test]
fn a_split_gguf_model_loads_from_its_directory_or_its_first_shard() {
    let whole = ponder::engine::models::builtin("smollm2-135m")
        .unwrap()
        .ensure()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    split_gguf(&whole, dir.path(), "smol", 3);
    let question = "What is 2 + 3?";
    let (_, expected) = block_on(greedy_text(smollm().as_ref(), question));
    let first = dir.path().join("smol-00001-of-00003.gguf");
    for source in [dir.path().to_path_buf(), first.clone()] {
        let source = ModelSource::parse(&source.to_string_lossy()).unwrap();
        let backend = block_on(MistralRsBackend::load(&source, &common::options())).unwrap();
        let (text, ids) = block_on(greedy_text(&backend, question));
        assert!(same_greedy(&expected, &ids), "{source}: {text:?}");
    }
    let second = dir.path().join("smol-00002-of-00003.gguf");
    let err = ModelSource::parse(&second.to_string_lossy()).unwrap_err();
    assert!(
        err.to_string()
            .contains("a shard after the first of a split model"),
        "{err}"
    );
    std::fs::remove_file(dir.path().join("smol-00003-of-00003.gguf")).unwrap();
    let source = ModelSource::parse(&first.to_string_lossy()).unwrap();
    let err = block_on(MistralRsBackend::load(&source, &common::options()))
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("a model split in 3") && err.to_string().contains("its shards 3"),
        "{err}"
    );
}
