//! Best-of-8 through ponder on in-process mistral.rs versus ponder on llama.cpp's `llama-server`
//! (8 parallel slots) over the OpenAI HTTP backend: same GGUF files, same prompts, same
//! `max_tokens`, one run, backends taking turns question by question.
//!
//! `cargo bench --bench http_vs_in_process`. Environment: `PONDER_BENCH_MODELS` (comma-separated
//! built-in names, default `smollm2-135m,qwen2.5-coder-0.5b`), `PONDER_BENCH_QUESTIONS` (default
//! 4), `PONDER_BENCH_MAX_TOKENS` (default 128), `PONDER_LLAMA_SERVER` (else the binary that
//! `scripts/build_llama_server.sh` builds and caches).
//!
//! Every sample runs to `max_tokens` (a logits processor cannot be used over HTTP, so the
//! samples are not forced long; instead the tokens actually generated are counted and the rate
//! is tokens per second of wall time).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/llama_server.rs"]
mod llama_server;
#[path = "../tests/support/repo.rs"]
mod repo;

use std::sync::Arc;
use std::time::Instant;

use ponder::engine::models::{builtin, ModelSource};
use ponder::engine::{solve, Backend, Budget, LoadOptions, MistralRsBackend, ModelConfig};
use ponder::strategies::{BestOfNConfig, StrategyConfig};
use ponder::Problem;

const QUESTIONS: [&str; 8] = [
    "A baker made 24 muffins and sold 15. How many are left?",
    "Tom has 3 apples and buys 4 more bags of 5 apples each. How many apples does he have?",
    "A train travels 60 km per hour for 3 hours. How far does it go?",
    "Sara reads 12 pages a day. How many pages does she read in 9 days?",
    "There are 45 students split evenly into 5 groups. How many are in each group?",
    "A shirt costs $20 and is 25% off. What is the sale price?",
    "Jack had 50 marbles, lost 12, then won 7. How many does he have now?",
    "A rectangle is 8 m long and 5 m wide. What is its area?",
];

#[derive(Default, Clone, Copy)]
struct Row {
    wall_s: f64,
    completion: u64,
    prompt: u64,
    calls: u64,
}

fn main() -> anyhow::Result<()> {
    let models = std::env::var("PONDER_BENCH_MODELS")
        .unwrap_or_else(|_| "smollm2-135m,qwen2.5-coder-0.5b".into());
    let questions: usize = std::env::var("PONDER_BENCH_QUESTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
        .min(QUESTIONS.len());
    let max_tokens: usize = std::env::var("PONDER_BENCH_MAX_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let config: BestOfNConfig = serde_json::from_value(serde_json::json!({
        "n": 8,
        "select": "majority",
        "inner": { "kind": "direct", "temperature": 0.8, "max_tokens": max_tokens }
    }))?;
    let strategy = StrategyConfig::BestOfN(config).build()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let mut table = Vec::new();
    for name in models.split(',').map(str::trim) {
        let model = builtin(name).ok_or_else(|| anyhow::anyhow!("`{name}` is not built in"))?;
        let path = model.ensure()?;
        let server = llama_server::LlamaServer::start(&path, 8);
        let (in_process, http) = runtime.block_on(async {
            let in_process: Arc<dyn Backend> = Arc::new(
                MistralRsBackend::load(&ModelSource::parse(name)?, &LoadOptions::default()).await?,
            );
            let http = ModelConfig::openai(vec![server.url()], name).load().await?;
            anyhow::Ok((in_process, http))
        })?;
        let backends = [
            ("mistral.rs in process", &in_process),
            ("llama-server, 8 slots", &http),
        ];
        let mut rows = [Row::default(); 2];
        for (q, question) in QUESTIONS.iter().take(questions).enumerate() {
            let problem = Problem::new(format!("q{q}"), *question);
            // Alternate which backend goes first.
            for k in 0..2 {
                let b = (k + q) % 2;
                let started = Instant::now();
                let solution = runtime.block_on(solve(
                    strategy.as_ref(),
                    &problem,
                    Arc::clone(backends[b].1),
                    Budget::unlimited(),
                ))?;
                let row = &mut rows[b];
                row.wall_s += started.elapsed().as_secs_f64();
                row.completion += solution.usage.completion_tokens;
                row.prompt += solution.usage.prompt_tokens;
                row.calls += solution.usage.calls;
            }
        }
        drop(server);
        for (b, row) in rows.iter().enumerate() {
            table.push((name.to_string(), backends[b].0, *row));
        }
    }
    println!(
        "\nbest-of-8 (temperature 0.8, max_tokens {max_tokens}), {questions} questions per model, one run\n"
    );
    println!(
        "| model | backend | wall s | completion tokens | tok/s | s per question | speed-up |"
    );
    println!("|---|---|---|---|---|---|---|");
    for pair in table.chunks(2) {
        let base = pair[0].2.completion as f64 / pair[0].2.wall_s;
        for (name, backend, row) in pair {
            let rate = row.completion as f64 / row.wall_s;
            println!(
                "| {name} | {backend} | {:.1} | {} | {:.1} | {:.1} | {:.2}x |",
                row.wall_s,
                row.completion,
                rate,
                row.wall_s / questions as f64,
                rate / base
            );
        }
    }
    Ok(())
}
