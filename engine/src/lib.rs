//! The core of ponder: types, traits, backends, metering and the batch runner.
//!
//! - [`Backend`]: generates text ([`GenerationRequest`] -> [`Generation`]). Implemented by
//!   [`MistralRsBackend`] (a mistral.rs model in process, feature `mistralrs`, on by default),
//!   [`OpenAiBackend`] (OpenAI-compatible HTTP servers, one or a fleet) and, for tests, `ScriptedBackend` (feature `test-utils`).
//! - [`Metered`]: wraps any backend, counts tokens, calls and time in one place, and holds them to
//!   a [`Budget`] that is never exceeded.
//! - [`Strategy`]: solves a [`Problem`] in a [`Context`] and returns a [`Solution`]; running out of
//!   budget is a [`StopReason`], not an error.
//! - [`Scorer`]: per-step rewards for candidate solutions.
//! - [`events`]: what a solve does, live: each call and each strategy decision.
//! - [`answer`]: answer extraction and equivalence for math.
//! - [`Runner`]: a strategy over a problem set, concurrent, graded and resumable.
//!
//! ```no_run
//! use std::sync::Arc;
//! use ponder_engine::{Backend, GenerationRequest, Message, ModelConfig, Prompt};
//!
//! # async fn demo() -> ponder_engine::Result<()> {
//! let backend: Arc<dyn Backend> = ModelConfig::default().load().await?; // smollm2-135m, fetched
//! let request = GenerationRequest::new(Prompt::chat(vec![Message::user("What is 2+3?")]))
//!     .with_n(4)
//!     .with_max_tokens(64);
//! let generation = backend.generate(request).await?;
//! println!("{} choices, {} tokens", generation.choices.len(), generation.usage.completion_tokens);
//! # Ok(()) }
//! ```

pub mod answer;
mod backend;
mod budget;
pub mod config;
mod distribution;
mod error;
pub mod events;
mod grader;
mod metered;
mod model_config;
pub mod models;
mod openai;
mod piece_cache;
mod problem;
pub mod runner;
mod scorer;
mod seeded;
mod solution;
mod strategy;
pub mod turn;
mod usage;

#[cfg(feature = "mistralrs")]
mod mistralrs_backend;
#[cfg(any(test, feature = "test-utils"))]
pub mod scripted;
#[cfg(feature = "mistralrs")]
mod seeded_draw;
#[cfg(feature = "mistralrs")]
mod stop_strings;

pub use backend::{
    Backend, Capabilities, Choice, FinishReason, Generation, GenerationRequest, LogitsProcessor,
    Message, Prompt, Role, Sampling, TokenLogprob, TokenizeInput, TopLogprob,
};
pub use budget::{Budget, Resource};
pub use distribution::draw_probability;
pub use error::{Error, Result};
pub use events::{Event, EventKind, EventLog, EventSink, Events};
pub use grader::{grade_candidates, CandidateGrades, Grader, MathGrader};
pub use metered::{Meter, Metered};
#[cfg(feature = "mistralrs")]
pub use mistralrs_backend::MistralRsBackend;
pub use model_config::{
    model_identities, model_identity, BackendKind, Dequantize, DeviceSpec, KvPool, LoadOptions,
    ModelConfig, Urls, DEFAULT_GPU_MEMORY_UTILIZATION,
};
pub use openai::{OpenAiBackend, OpenAiOptions};
pub use problem::{CodeTask, Problem};
pub use runner::{Allocation, Halt, ResultLine, RunSummary, Runner, TriageNote};
pub use scorer::{score_checked, Scorer};
pub use seeded::{seed_for, Seeded};
pub use solution::{Candidate, Solution, StopReason, Trace};
pub use strategy::{
    solve, solve_in, solve_in_stages, BudgetCut, Context, Metering, Pending, Stage, Staged,
    Strategy,
};
pub use usage::Usage;
