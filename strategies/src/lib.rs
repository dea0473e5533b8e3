//! Test-time scaling strategies for ponder.
//!
//! Each strategy implements [`ponder_engine::Strategy`] and has a config struct that mirrors its
//! `[strategy]` table; [`StrategyConfig`] picks one by `kind` and builds it.
//!
//! - [`Direct`]: one sample in a [`PromptStyle`] (direct, step by step, Chain of Draft).
//! - [`BudgetForcing`]: s1's control of thinking length, in the decode or by resubmission, with
//!   TIP's thought-switching penalty ([`SwitchPenaltyConfig`]) as an option.
//! - [`BeamSearch`]: PRM-guided step-level beam search and DVTS, with the search tree exported.
//! - [`BestOfN`]: N candidates, scored, selected by reward, weighted vote or majority; adaptive N.
//! - [`SStar`]: S* for code: samples debugged against public tests in the sandbox, then chosen by
//!   clusters and pairwise comparisons on model-synthesised inputs.
//! - [`Router`] and [`ModeRouter`]: adaptive thinking, deciding per query whether to think at
//!   all (by cheap signals from a short answer, or by the model's own mode token).
//!
//! ```
//! use ponder_strategies::{StrategyConfig, DirectConfig, PromptStyle};
//!
//! let config = StrategyConfig::Direct(DirectConfig { style: PromptStyle::ChainOfDraft, ..DirectConfig::default() });
//! let strategy = config.build().unwrap();
//! assert_eq!(strategy.name(), "direct");
//! ```

pub mod beam_search;
mod best_of_n;
mod budget_forcing;
pub mod config;
mod direct;
mod prompt;
mod router;
mod s_star;
mod switch_penalty;

pub use beam_search::{BeamSearch, BeamSearchConfig, SearchDetails, SearchKind};
pub use best_of_n::{AdaptiveConfig, BestOfN, BestOfNConfig, BestOfNDetails, CandidateDetail};
pub use budget_forcing::{
    BudgetForcing, BudgetForcingConfig, ForcingDetails, ForcingMode, ForcingProcessor,
    ForcingTokens, WaitStrings,
};
pub use config::StrategyConfig;
pub use direct::{Direct, DirectConfig};
pub use prompt::{PromptStyle, ANSWER_CUE};
pub use router::{
    answer_confidence, ModeDetails, ModeRouter, ModeRouterConfig, Router, RouterConfig,
    RouterDetails, Signals, NO_BUDGET_TO_THINK,
};
pub use s_star::{
    CodeSelection, Comparison, Feedback, Round, SStar, SStarConfig, SStarDetails, SampleDetail,
    TestLine,
};
pub use switch_penalty::{SwitchPenalty, SwitchPenaltyConfig};
