//! The engine's overhead: the same generations through ponder (`Metered<MistralRsBackend>`)
//! and sent straight to mistral.rs, interleaved in one run, on one model and prompt.
//!
//! `cargo bench -p ponder-engine --bench overhead` (SmolLM2-135M). Environment:
//! `PONDER_BENCH_MODEL` (a built-in name or a .gguf path), `PONDER_BENCH_ROUNDS` (default 3),
//! `PONDER_BENCH_TOKENS` (max tokens per sample, default 128).
//!
//! Raw mistral.rs is driven the way a plain user would: one `NormalRequest` with `n_choices`,
//! no log-probabilities. ponder asks for per-token log-probabilities (that is how it counts
//! tokens per choice), renders nothing (the prompt is given as token ids to both), and meters.
//! Samples end at end-of-sequence or max tokens, so the two sides generate different numbers
//! of tokens; the comparison is milliseconds per generated token.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use mistralrs::{Constraint, NormalRequest, Request, RequestMessage, Response, SamplingParams};
use ponder_engine::models::ModelSource;
use ponder_engine::{
    Backend, Budget, GenerationRequest, LoadOptions, Message, Metered, MistralRsBackend, Prompt,
    Sampling, TokenizeInput,
};

const PROMPT: &str = "Write a long story about a robot who learns to paint.";

#[derive(Default, Clone)]
struct Sample {
    wall_ms: Vec<f64>,
    tokens: Vec<u64>,
}

impl Sample {
    fn add(&mut self, ms: f64, tokens: u64) {
        self.wall_ms.push(ms);
        self.tokens.push(tokens);
    }
    fn ms_per_token(&self) -> f64 {
        self.wall_ms.iter().sum::<f64>() / self.tokens.iter().sum::<u64>().max(1) as f64
    }
    fn tok_s(&self) -> f64 {
        1000.0 / self.ms_per_token()
    }
}

async fn raw(
    backend: &MistralRsBackend,
    ids: &[u32],
    n: usize,
    max_tokens: usize,
) -> anyhow::Result<(f64, Vec<String>)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let sampling = SamplingParams {
        temperature: Some(0.8),
        max_len: Some(max_tokens),
        n_choices: n,
        ..SamplingParams::neutral()
    };
    let request = NormalRequest {
        messages: RequestMessage::CompletionTokens(ids.to_vec()),
        sampling_params: sampling,
        response: tx,
        return_logprobs: false,
        is_streaming: false,
        id: 1_000_000,
        constraint: Constraint::None,
        suffix: None,
        tools: None,
        tool_choice: None,
        logits_processors: None,
        return_raw_logits: false,
        web_search_options: None,
        model_id: None,
        truncate_sequence: false,
    };
    let started = Instant::now();
    backend
        .model()
        .inner()
        .get_sender(None)?
        .send(Request::Normal(Box::new(request)))
        .await?;
    loop {
        match rx.recv().await.context("engine closed")? {
            Response::CompletionDone(done) => {
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                return Ok((ms, done.choices.into_iter().map(|c| c.text).collect()));
            }
            Response::CompletionChunk(_) => continue,
            _ => anyhow::bail!("unexpected response"),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let source = std::env::var("PONDER_BENCH_MODEL").unwrap_or_else(|_| "smollm2-135m".into());
        let rounds: usize = std::env::var("PONDER_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
        let max_tokens: usize = std::env::var("PONDER_BENCH_TOKENS").ok().and_then(|r| r.parse().ok()).unwrap_or(128);
        let backend = Arc::new(MistralRsBackend::load(&ModelSource::parse(&source)?, &LoadOptions::default()).await?);
        let prompt = Prompt::chat(vec![Message::user(PROMPT)]);
        let ids = backend.tokenize(TokenizeInput::Prompt(&prompt)).await?;
        let ponder = Metered::new(Arc::clone(&backend), Budget::unlimited());
        // Warm up both paths (first-call allocations, prefix cache state).
        raw(&backend, &ids, 1, 8).await?;
        ponder.generate(GenerationRequest::new(Prompt::Tokens(ids.clone())).with_max_tokens(8)).await?;

        println!("model: {source}, prompt: {} tokens, max_tokens {max_tokens}, temperature 0.8, {rounds} rounds (order alternates)", ids.len());
        println!();
        println!("| n | path | runs | tokens | wall ms (sum) | ms/token | tok/s |");
        println!("|---|---|---|---|---|---|---|");
        for n in [1usize, 8] {
            let mut through = Sample::default();
            let mut direct = Sample::default();
            for round in 0..rounds {
                for side in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
                    if side == 0 {
                        let request = GenerationRequest::new(Prompt::Tokens(ids.clone()))
                            .with_n(n)
                            .with_max_tokens(max_tokens)
                            .with_sampling(Sampling::with_temperature(0.8));
                        let started = Instant::now();
                        let generation = ponder.generate(request).await?;
                        through.add(started.elapsed().as_secs_f64() * 1000.0, generation.usage.completion_tokens);
                    } else {
                        let (ms, texts) = raw(&backend, &ids, n, max_tokens).await?;
                        let mut tokens = 0u64;
                        for text in &texts {
                            // Re-tokenized outside the timed span; at most max_tokens each.
                            let count = backend.tokenize(TokenizeInput::Piece(text)).await?.len();
                            tokens += count.min(max_tokens) as u64;
                        }
                        direct.add(ms, tokens);
                    }
                }
            }
            for (name, s) in [("ponder", &through), ("raw mistral.rs", &direct)] {
                println!(
                    "| {n} | {name} | {} | {} | {:.0} | {:.2} | {:.1} |",
                    s.wall_ms.len(),
                    s.tokens.iter().sum::<u64>(),
                    s.wall_ms.iter().sum::<f64>(),
                    s.ms_per_token(),
                    s.tok_s()
                );
            }
            println!(
                "| {n} | **ratio ponder / raw (ms per token)** | | | | **{:.3}** | |",
                through.ms_per_token() / direct.ms_per_token()
            );
        }
        Ok(())
    })
}
