//! Scorers for ponder, each behind [`ponder_engine::Scorer`] and usable with any backend:
//!
//! - [`TokenPrm`]: process reward models read from token probabilities, in the Math-Shepherd and
//!   RLHFlow formats; all steps of a candidate in one teacher-forced request ([`ScoreReader`]).
//! - [`LlmJudge`]: any chat model scoring answers or steps by its probability of "Yes".
//! - [`Aggregate`]: step scores to one reward (last, min, product, mean).
//! - [`Select`]: naive, weighted and majority votes over answers grouped by equivalence.
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
pub mod config;
mod judge;
mod token_prm;
mod vote;

pub use aggregate::Aggregate;
pub use capture::{good_probability, ScoreReader};
pub use config::ScorerConfig;
pub use judge::{first_tokens, JudgeConfig, JudgeMode, LlmJudge};
pub use token_prm::{PrmConfig, PrmFormat, TokenPrm};
pub use vote::{groups, Group, Select, Selection};
