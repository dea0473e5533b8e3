//! Embedding ponder as a library: load a model, build a strategy in code, solve, print usage.
//!
//! `cargo run --release --example solve -- "A farmer has 3 pens of 12 sheep. How many sheep?"`

use std::num::NonZeroUsize;

use ponder::engine::{Budget, ModelConfig};
use ponder::strategies::{Direct, DirectConfig, PromptStyle};
use ponder::Problem;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let question = std::env::args().nth(1).unwrap_or_else(|| {
        "Tom has 3 apples and buys 4 more. How many apples does he have?".into()
    });

    // The built-in SmolLM2-135M on CPU, fetched and checksummed on first use.
    let backend = ModelConfig::default().load().await?;

    let strategy = Direct::new(DirectConfig {
        style: PromptStyle::StepByStep,
        max_tokens: NonZeroUsize::new(192).unwrap_or(NonZeroUsize::MIN),
        ..DirectConfig::default()
    })?;
    let budget = Budget::unlimited().with_max_tokens(1024);
    let problem = Problem::new("example", question);

    let solution = ponder::engine::solve(&strategy, &problem, backend, budget).await?;
    println!("{}\n", solution.completion.trim());
    println!("answer: {}", solution.answer.as_deref().unwrap_or("(none)"));
    let usage = solution.usage;
    println!(
        "usage: {} prompt + {} completion tokens in {} call(s), {} ms; stop: {:?}",
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.calls,
        usage.elapsed_ms,
        solution.stop_reason
    );
    Ok(())
}
