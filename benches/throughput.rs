//! The throughput table, one run on one model and device: decode rate by the number of samples
//! decoded at once; best-of-N through ponder versus the same generations sent straight to
//! mistral.rs; budget forcing in the decode versus by resubmission. Sides alternate round by
//! round, so they share the machine's state.
//!
//! `cargo bench --bench throughput` (SmolLM2-135M on the CPU). On a GPU, see scripts/gpu/.
//! Environment (all optional):
//! - `PONDER_BENCH_MODEL`: a built-in name, a `.gguf`, or a model directory. Default `smollm2-135m`.
//! - `PONDER_BENCH_DEVICE`: `cpu` or `cuda:N`. Default `cpu`.
//! - `PONDER_BENCH_SECTIONS`: some of `decode,best_of_n,forcing,tokenize`. Default all four.
//! - `PONDER_BENCH_CONCURRENCY`: samples decoded at once. Default `1,8,32,64` (CPU: `1,8`).
//! - `PONDER_BENCH_N`: best-of-N sizes. Default `8,32` (CPU: `8`).
//! - `PONDER_BENCH_TOKENS`: max tokens per sample. Default 256 (CPU: 64).
//! - `PONDER_BENCH_ROUNDS`: rounds per row. Default 3 (CPU: 2).
//! - `PONDER_BENCH_MAX_NUM_SEQS`, `PONDER_BENCH_KV_TOKENS`: the engine's sequence limit and KV
//!   pool (default: ponder's defaults for the device).
//!
//! Samples stop at end-of-sequence or max tokens, so the sides of a comparison can generate
//! different numbers of tokens; rates are per generated token. With random weights (the GPU
//! recipe) end-of-sequence almost never comes and every sample runs to max tokens.
//!
//! Raw mistral.rs is driven the way a plain user would: one `NormalRequest` of `n_choices`, no
//! log-probabilities. ponder asks for per-token log-probabilities (how it counts tokens per
//! choice), meters, and runs the strategy (prompt rendering, answer extraction, the vote). Both
//! send the same prompt token ids.
//!
//! On the CPU ponder runs one sequence at a time (mistral.rs 0.8.1's batched CPU decoding mixes
//! the sequences of a batch; see the README's Known issues), so there the decode rows measure
//! requests taking turns, and the raw side of best-of-N is mistral.rs's own batched decoding,
//! faster by what batching gains but with mixed-up samples. The comparison is meant for CUDA.
//!
//! `tokenize` times what in-decode budget forcing asks the tokenizer before each solve (its
//! delimiter in every way a model may write it, cue and waits: some 45 pieces), with the engine
//! idle and while it decodes another request: the pieces asked one after another, all at once,
//! and kept by the backend from an earlier solve (what a solve now pays).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use mistralrs::{Constraint, NormalRequest, Request, RequestMessage, Response, SamplingParams};
use ponder::engine::models::ModelSource;
use ponder::engine::{
    solve, Backend, Budget, DeviceSpec, GenerationRequest, KvPool, LoadOptions, Metered,
    MistralRsBackend, Prompt, Sampling, TokenizeInput,
};
use ponder::strategies::{
    BestOfNConfig, BudgetForcing, BudgetForcingConfig, Direct, DirectConfig, ForcingDetails,
    ForcingMode, StrategyConfig,
};
use ponder::Problem;

const QUESTION: &str =
    "A train travels 60 km per hour for 3 hours, then 40 km per hour for 2 hours. How far does it go?";

const FORCING_QUESTIONS: [&str; 4] = [
    "What is 2 + 2?",
    "What is 7 times 6?",
    "Tom has 3 apples and buys 4 more. How many apples does he have?",
    "What is 15 minus 9?",
];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a valid value")),
        Err(_) => default,
    }
}

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .split(',')
            .map(|x| {
                x.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={v}: expected numbers, e.g. 1,8"))
            })
            .collect(),
        Err(_) => default.to_vec(),
    }
}

/// `n` samples of the prompt `ids` straight through mistral.rs: wall ms and the texts.
async fn raw(
    backend: &MistralRsBackend,
    ids: &[u32],
    n: usize,
    max_tokens: usize,
) -> anyhow::Result<(f64, Vec<(String, bool)>)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let request = NormalRequest {
        messages: RequestMessage::CompletionTokens(ids.to_vec()),
        sampling_params: SamplingParams {
            temperature: Some(0.8),
            max_len: Some(max_tokens),
            n_choices: n,
            ..SamplingParams::neutral()
        },
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
        match rx
            .recv()
            .await
            .context("the engine closed the reply channel")?
        {
            Response::CompletionDone(done) => {
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                // Each text, and whether it ran to max tokens.
                let texts = done
                    .choices
                    .into_iter()
                    .map(|c| (c.text, c.finish_reason == "length"))
                    .collect();
                return Ok((ms, texts));
            }
            Response::CompletionChunk(_) => continue,
            Response::CompletionModelError(e, _) | Response::ModelError(e, _) => {
                anyhow::bail!("mistral.rs: {e}")
            }
            _ => anyhow::bail!("unexpected response from mistral.rs"),
        }
    }
}

struct Bench {
    backend: Arc<MistralRsBackend>,
    max_tokens: usize,
    rounds: usize,
}

impl Bench {
    /// `c` single-sample requests at once through ponder's metered backend.
    async fn decode(&self, concurrency: &[usize]) -> anyhow::Result<()> {
        let direct = Direct::new(DirectConfig {
            temperature: 0.8,
            ..DirectConfig::default()
        })?;
        let request = direct
            .request(&Problem::new("q", QUESTION))
            .with_max_tokens(self.max_tokens)
            .with_sampling(Sampling::with_temperature(0.8));
        let ponder = Metered::new(Arc::clone(&self.backend), Budget::unlimited());
        let prompt_tokens = self
            .backend
            .tokenize(TokenizeInput::Prompt(&request.prompt))
            .await?
            .len();
        println!(
            "### Decode rate by samples at once ({} max tokens, temperature 0.8, {} rounds; the wall time includes each prompt's prefill, {prompt_tokens} tokens)\n",
            self.max_tokens, self.rounds
        );
        println!("| samples at once | tokens | wall s | tok/s in total | tok/s per sample |");
        println!("|---|---|---|---|---|");
        for &c in concurrency {
            let (mut tokens, mut wall) = (0u64, 0f64);
            for _ in 0..self.rounds {
                let started = Instant::now();
                let all =
                    futures::future::join_all((0..c).map(|_| ponder.generate(request.clone())))
                        .await;
                wall += started.elapsed().as_secs_f64();
                for generation in all {
                    tokens += generation?.usage.completion_tokens;
                }
            }
            let rate = tokens as f64 / wall;
            println!(
                "| {c} | {tokens} | {wall:.1} | {rate:.1} | {:.1} |",
                rate / c as f64
            );
        }
        println!();
        Ok(())
    }

    /// Best-of-N (majority vote over a direct inner strategy, one request of N choices) through
    /// ponder, against one request of N choices sent to mistral.rs directly.
    async fn best_of_n(&self, sizes: &[usize]) -> anyhow::Result<()> {
        let problem = Problem::new("q", QUESTION);
        let inner = DirectConfig {
            temperature: 0.8,
            max_tokens: self.max_tokens.try_into()?,
            ..DirectConfig::default()
        };
        let prompt = Direct::new(inner.clone())?.request(&problem).prompt;
        let ids = self
            .backend
            .tokenize(TokenizeInput::Prompt(&prompt))
            .await?;
        println!("### Best-of-N through ponder versus raw mistral.rs ({} prompt tokens, {} max tokens, temperature 0.8, {} rounds, sides alternating)\n", ids.len(), self.max_tokens, self.rounds);
        println!(
            "| N | path | tokens | wall s | ms / token | tok/s | ponder / raw (ms per token) |"
        );
        println!("|---|---|---|---|---|---|---|");
        for &n in sizes {
            let strategy = StrategyConfig::BestOfN(BestOfNConfig {
                n: n.try_into()?,
                select: ponder::prm::Select::Majority,
                inner: Box::new(StrategyConfig::Direct(inner.clone())),
                ..BestOfNConfig::default()
            })
            .build()?;
            let mut sides = [(0u64, 0f64); 2];
            for round in 0..self.rounds {
                for side in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
                    if side == 0 {
                        let started = Instant::now();
                        let backend: Arc<dyn Backend> = Arc::clone(&self.backend) as _;
                        let solution =
                            solve(strategy.as_ref(), &problem, backend, Budget::unlimited())
                                .await?;
                        sides[0].1 += started.elapsed().as_secs_f64() * 1000.0;
                        sides[0].0 += solution.usage.completion_tokens;
                    } else {
                        let (ms, texts) = raw(&self.backend, &ids, n, self.max_tokens).await?;
                        sides[1].1 += ms;
                        for (text, to_the_limit) in &texts {
                            // A text that ran to max tokens is that many (its text tokenized
                            // again may not be: random weights write token runs that merge);
                            // one that ended sooner is counted again, outside the timed span.
                            let count = if *to_the_limit {
                                self.max_tokens
                            } else {
                                self.backend
                                    .tokenize(TokenizeInput::Piece(text))
                                    .await?
                                    .len()
                                    .min(self.max_tokens)
                            };
                            sides[1].0 += count as u64;
                        }
                    }
                }
            }
            let per_token = |(tokens, ms): (u64, f64)| ms / tokens.max(1) as f64;
            let ratio = per_token(sides[0]) / per_token(sides[1]);
            for (name, side) in [("ponder", sides[0]), ("raw mistral.rs", sides[1])] {
                let cell = if name == "ponder" {
                    format!("**{ratio:.3}**")
                } else {
                    String::new()
                };
                println!(
                    "| {n} | {name} | {} | {:.1} | {:.2} | {:.1} | {cell} |",
                    side.0,
                    side.1 / 1000.0,
                    per_token(side),
                    1000.0 / per_token(side)
                );
            }
        }
        println!();
        Ok(())
    }

    /// Budget forcing with waits, in the decode (a logits processor) and by resubmission.
    async fn forcing(&self) -> anyhow::Result<()> {
        let modes = [
            ("in decode", ForcingMode::InDecode),
            ("resubmit", ForcingMode::Resubmit),
        ];
        let (min, max) = (self.max_tokens * 5 / 8, self.max_tokens * 5 / 4);
        #[derive(Default, Clone, Copy)]
        struct Row {
            wall_ms: f64,
            waits: usize,
            thinking: usize,
            completion: u64,
            prompt: u64,
            resent: u64,
            calls: u64,
        }
        let mut rows = [Row::default(); 2];
        for round in 0..self.rounds {
            for (q, question) in FORCING_QUESTIONS.iter().enumerate() {
                let problem = Problem::new(format!("q{q}"), *question);
                for k in 0..2 {
                    let i = (k + q + round) % 2;
                    let strategy = BudgetForcing::new(BudgetForcingConfig {
                        min_thinking_tokens: min,
                        max_thinking_tokens: max,
                        mode: modes[i].1,
                        ..BudgetForcingConfig::default()
                    })?;
                    let started = Instant::now();
                    let backend: Arc<dyn Backend> = Arc::clone(&self.backend) as _;
                    let solution = solve(&strategy, &problem, backend, Budget::unlimited()).await?;
                    let d: ForcingDetails = serde_json::from_value(solution.details.clone())?;
                    let row = &mut rows[i];
                    row.wall_ms += started.elapsed().as_secs_f64() * 1000.0;
                    row.waits += d.waits;
                    row.thinking += d.thinking_tokens;
                    row.resent += d.resubmitted_prompt_tokens;
                    row.prompt += solution.usage.prompt_tokens;
                    row.completion += solution.usage.completion_tokens;
                    row.calls += solution.usage.calls;
                }
            }
            // The table comes after the last round: what each round added so far, on stderr,
            // so that a run stopped sooner leaves something.
            eprintln!(
                "forcing: after round {} of {}: in decode {:.1} s, {} waits; resubmit {:.1} s, {} waits",
                round + 1,
                self.rounds,
                rows[0].wall_ms / 1000.0,
                rows[0].waits,
                rows[1].wall_ms / 1000.0,
                rows[1].waits
            );
        }
        let solves = self.rounds * FORCING_QUESTIONS.len();
        println!("### Budget forcing in the decode versus resubmission ({solves} solves each; min_thinking_tokens {min}, max_thinking_tokens {max}, greedy, sequential)\n");
        println!("| mode | wall s | ms / solve | waits | thinking tokens | completion tokens | prompt tokens sent | resent after a wait | calls | wall / in decode |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
        for ((name, _), row) in modes.iter().zip(&rows) {
            println!(
                "| {name} | {:.1} | {:.0} | {} | {} | {} | {} | {} | {} | {:.2} |",
                row.wall_ms / 1000.0,
                row.wall_ms / solves as f64,
                row.waits,
                row.thinking,
                row.completion,
                row.prompt,
                row.resent,
                row.calls,
                row.wall_ms / rows[0].wall_ms
            );
        }
        println!();
        Ok(())
    }

    /// Budget forcing's tokenizer pieces asked one after another, all at once, and kept.
    async fn tokenize(&self) -> anyhow::Result<()> {
        let strategy = BudgetForcing::new(BudgetForcingConfig::default())?;
        let pieces = strategy.pieces();
        let backend: &dyn Backend = self.backend.as_ref();
        // Pieces no earlier call asked (else the backend's kept ids would answer).
        let fresh =
            |tag: &str| -> Vec<String> { pieces.iter().map(|p| format!("{p}{tag}")).collect() };
        let mut tags = 0usize;
        let mut next_tag = move || {
            tags += 1;
            format!("#{tags}")
        };
        strategy.tokens(backend).await?;
        let mut table = Vec::new();
        for busy in [false, true] {
            // Another request decoding all the while (restarted should it end).
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let background = busy.then(|| {
                let (backend, stop) = (Arc::clone(&self.backend), Arc::clone(&stop));
                tokio::spawn(async move {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let request = GenerationRequest::new(Prompt::Text(
                            "Count from 1 to 1000, one number a line:\n1\n2\n".into(),
                        ))
                        .with_max_tokens(512)
                        .with_sampling(Sampling::greedy());
                        let _ = backend.generate(request).await;
                    }
                })
            });
            if busy {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            let (mut one_by_one, mut at_once, mut kept) = (0.0, 0.0, 0.0);
            for _ in 0..self.rounds {
                let started = Instant::now();
                for piece in fresh(&next_tag()) {
                    backend.tokenize(TokenizeInput::Piece(&piece)).await?;
                }
                one_by_one += started.elapsed().as_secs_f64() * 1000.0;
                let started = Instant::now();
                let pieces = fresh(&next_tag());
                futures::future::try_join_all(
                    pieces
                        .iter()
                        .map(|p| backend.tokenize(TokenizeInput::Piece(p))),
                )
                .await?;
                at_once += started.elapsed().as_secs_f64() * 1000.0;
                let started = Instant::now();
                strategy.tokens(backend).await?;
                kept += started.elapsed().as_secs_f64() * 1000.0;
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            if let Some(background) = background {
                background.await?;
            }
            let r = self.rounds as f64;
            table.push((busy, one_by_one / r, at_once / r, kept / r));
        }
        println!(
            "### Budget forcing's tokenizer pieces before a solve ({} pieces, mean of {} rounds)\n",
            pieces.len(),
            self.rounds
        );
        println!("| engine | one after another ms | all at once ms | kept ms | one after another / all at once |");
        println!("|---|---|---|---|---|");
        for (busy, one, all, kept) in table {
            println!(
                "| {} | {one:.1} | {all:.1} | {kept:.3} | {:.1} |",
                if busy {
                    "decoding another request"
                } else {
                    "idle"
                },
                one / all.max(1e-9)
            );
        }
        println!();
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    // Warnings, and the dtype mistral.rs picks for the model (`DType selected is BF16`), on
    // stderr (RUST_LOG to change).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,mistralrs_core::utils::normal=info")
            }),
        )
        .init();
    let device: DeviceSpec = env_or("PONDER_BENCH_DEVICE", DeviceSpec::Cpu);
    let gpu = device != DeviceSpec::Cpu;
    let source = std::env::var("PONDER_BENCH_MODEL").unwrap_or_else(|_| "smollm2-135m".into());
    let sections = std::env::var("PONDER_BENCH_SECTIONS")
        .unwrap_or_else(|_| "decode,best_of_n,forcing,tokenize".into());
    let concurrency = env_list(
        "PONDER_BENCH_CONCURRENCY",
        if gpu { &[1, 8, 32, 64] } else { &[1, 8] },
    );
    let sizes = env_list("PONDER_BENCH_N", if gpu { &[8, 32] } else { &[8] });
    let max_tokens = env_or("PONDER_BENCH_TOKENS", if gpu { 256 } else { 64 });
    let rounds = env_or("PONDER_BENCH_ROUNDS", if gpu { 3 } else { 2 });
    let mut options = LoadOptions::for_device(device);
    options.max_num_seqs = env_or("PONDER_BENCH_MAX_NUM_SEQS", options.max_num_seqs);
    if let Ok(tokens) = std::env::var("PONDER_BENCH_KV_TOKENS") {
        options.kv_pool = KvPool::Tokens(tokens.parse().context("PONDER_BENCH_KV_TOKENS")?);
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let loading = Instant::now();
        let backend =
            Arc::new(MistralRsBackend::load(&ModelSource::parse(&source)?, &options).await?);
        println!(
            "model {source} on {device} (max_num_seqs {}, KV pool {:?}), loaded in {:.1} s\n",
            options.max_num_seqs,
            if gpu { Some(options.kv_pool) } else { None },
            loading.elapsed().as_secs_f64()
        );
        let bench = Bench {
            backend,
            max_tokens,
            rounds,
        };
        // Warm up (first-call allocations, kernels compiled on first use).
        let warm = GenerationRequest::new(Prompt::Text("Hello".into())).with_max_tokens(8);
        Metered::new(Arc::clone(&bench.backend), Budget::unlimited())
            .generate(warm)
            .await?;
        for section in sections.split(',').map(str::trim) {
            match section {
                "decode" => bench.decode(&concurrency).await?,
                "best_of_n" => bench.best_of_n(&sizes).await?,
                "forcing" => bench.forcing().await?,
                "tokenize" => bench.tokenize().await?,
                other => anyhow::bail!(
                    "PONDER_BENCH_SECTIONS: unknown section `{other}` (decode, best_of_n, forcing, tokenize)"
                ),
            }
        }
        Ok(())
    })
}
