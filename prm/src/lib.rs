//! Scorers for ponder, each behind [`ponder_engine::Scorer`] and usable with any backend:
//!
//! - [`TokenPrm`]: process reward models read from token probabilities, in the Math-Shepherd and
//!   RLHFlow formats; Math-Shepherd reads all steps of a candidate in one teacher-forced
//!   request ([`ScoreReader`]), RLHFlow one request a step.
//! - [`LlmJudge`]: any chat model scoring answers or steps by its probability of "Yes".
//! - [`Aggregate`]: step scores to one reward (`last`, `min`, `prod`, `mean`).
//! - [`Select`]: naive, weighted and majority votes over answers grouped by equivalence.
//! - [`Sandbox`]: runs untrusted Python under time, CPU, memory, process, file-size and output
//!   limits, as an unprivileged user, in a throw-away directory, without network and on a
//!   read-only filesystem where `unshare` works; typed [`RunOutcome`]s (passed, failed
//!   assertion, error, timeout, memory limit, output limit).
//! - [`CodeVerifier`]: a candidate against a list of [`TestCase`]s in one sandbox run, per-test
//!   results; [`extract_code`] and [`assemble`] turn completions into programs, [`docstring_tests`]
//!   reads HumanEval's public tests; [`HumanEvalGrader`] grades with the hidden tests, and
//!   [`StandardGrader`] (what `ponder run` uses) picks it for code problems, answer equivalence
//!   for the rest.
//!
//! ```
//! use ponder_prm::{Aggregate, Select};
//!
//! let answers = vec![Some("4".to_string()), Some("4.0".to_string()), Some("5".to_string())];
//! let rewards = [Aggregate::Min.apply(&[0.9, 0.4]), Some(0.7), Some(0.8)];
//! assert_eq!(Select::Majority.apply(&answers, &rewards).index, Some(1));
//! ```

mod aggregate;
mod capture;
mod code;
pub mod config;
mod failed_reads;
mod grading;
mod judge;
mod sandbox;
mod score_cache;
mod token_prm;
mod vote;

pub use aggregate::Aggregate;
pub use capture::{good_probability, ScoreReader};
pub use code::{
    assemble, defines, docstring_tests, extract_code, extract_task_code, CodeVerifier, HiddenRun,
    HumanEvalGrader, TestCase, TestOrigin, TestResult, TestRun, TestStatus,
};
pub use config::ScorerConfig;
pub use grading::StandardGrader;
pub use judge::{
    choice_probability, first_tokens, opposing_tokens, JudgeConfig, JudgeMode, LlmJudge,
};
pub use sandbox::{
    Isolation, Limits, Program, RunOutcome, RunReport, Sandbox, SandboxError, SandboxUser,
    SelfCheck, Stream, Termination, UNSHARE_FULL, UNSHARE_USER,
};
pub use token_prm::{step_tag_ids, PrmConfig, PrmFormat, PrmModel, TokenPrm};
pub use vote::{groups, unscored_at_mean, Group, Select, Selection};
