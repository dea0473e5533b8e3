//! Budget forcing in the decode versus by resubmission: same prompts, same budgets, one run.
//!
//! `cargo bench --bench budget_forcing` (SmolLM2-135M). Environment: `PONDER_BENCH_MODEL`
//! (default `smollm2-135m`), `PONDER_BENCH_ROUNDS` (default 2).
//!
//! Every question is solved with `min_thinking_tokens = 160` (so waits are inserted) in three
//! set-ups, interleaved: in decode; resubmit with mistral.rs's prefix cache off (ponder's
//! default); resubmit with the prefix cache on (16 sequences; safe here because the bench is
//! sequential). Reported: wall time, waits, and prompt tokens sent again after the first
//! request (what resubmission costs; whether it is recomputed depends on the prefix cache).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Instant;

use ponder::engine::models::ModelSource;
use ponder::engine::{Backend, Budget, LoadOptions, MistralRsBackend};
use ponder::strategies::{BudgetForcing, BudgetForcingConfig, ForcingDetails, ForcingMode};
use ponder::Problem;

const QUESTIONS: [&str; 4] = [
    "What is 2 + 2?",
    "What is 7 times 6?",
    "Tom has 3 apples and buys 4 more. How many apples does he have?",
    "What is 15 minus 9?",
];

#[derive(Default)]
struct Row {
    wall_ms: f64,
    waits: usize,
    thinking: usize,
    resubmitted: u64,
    prompt: u64,
    completion: u64,
    calls: u64,
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let source = std::env::var("PONDER_BENCH_MODEL").unwrap_or_else(|_| "smollm2-135m".into());
        let rounds: usize = std::env::var("PONDER_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(2);
        let source = ModelSource::parse(&source)?;
        let plain: Arc<dyn Backend> = Arc::new(MistralRsBackend::load(&source, &LoadOptions::default()).await?);
        let cached: Arc<dyn Backend> = Arc::new(
            MistralRsBackend::load(&source, &LoadOptions { prefix_cache_seqs: 16, ..LoadOptions::default() }).await?,
        );
        let setups: [(&str, ForcingMode, &Arc<dyn Backend>); 3] = [
            ("in_decode", ForcingMode::InDecode, &plain),
            ("resubmit, prefix cache off", ForcingMode::Resubmit, &plain),
            ("resubmit, prefix cache on", ForcingMode::Resubmit, &cached),
        ];
        let mut rows: Vec<Row> = (0..setups.len()).map(|_| Row::default()).collect();
        for round in 0..rounds {
            for (q, question) in QUESTIONS.iter().enumerate() {
                let problem = Problem::new(format!("q{q}"), *question);
                let mut order: Vec<usize> = (0..setups.len()).collect();
                order.rotate_left((round + q) % setups.len());
                for i in order {
                    let (_, mode, backend) = setups[i];
                    let strategy = BudgetForcing::new(BudgetForcingConfig {
                        min_thinking_tokens: 160,
                        max_thinking_tokens: 320,
                        mode,
                        ..BudgetForcingConfig::default()
                    });
                    let started = Instant::now();
                    let solution = ponder::engine::solve(&strategy, &problem, Arc::clone(backend), Budget::unlimited()).await?;
                    let wall = started.elapsed().as_secs_f64() * 1000.0;
                    let d: ForcingDetails = serde_json::from_value(solution.details.clone())?;
                    let row = &mut rows[i];
                    row.wall_ms += wall;
                    row.waits += d.waits;
                    row.thinking += d.thinking_tokens;
                    row.resubmitted += d.resubmitted_prompt_tokens;
                    row.prompt += solution.usage.prompt_tokens;
                    row.completion += solution.usage.completion_tokens;
                    row.calls += solution.usage.calls;
                }
            }
        }
        let runs = rounds * QUESTIONS.len();
        println!("{runs} solves per set-up (min_thinking_tokens 160, max_thinking_tokens 320, greedy)");
        println!();
        println!("| set-up | wall s | ms/solve | waits | thinking tok | completion tok | prompt tok sent | resent after a wait | calls | wall / in_decode |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
        let base = rows[0].wall_ms;
        for ((name, _, _), row) in setups.iter().zip(&rows) {
            println!(
                "| {name} | {:.1} | {:.0} | {} | {} | {} | {} | {} | {} | {:.2} |",
                row.wall_ms / 1000.0,
                row.wall_ms / runs as f64,
                row.waits,
                row.thinking,
                row.completion,
                row.prompt,
                row.resubmitted,
                row.calls,
                row.wall_ms / base
            );
        }
        println!();
        println!("in_decode / resubmit (cache off): {:.2}x wall; in_decode / resubmit (cache on): {:.2}x wall", base / rows[1].wall_ms, base / rows[2].wall_ms);
        Ok(())
    })
}
