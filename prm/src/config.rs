//! [`ScorerConfig`]: the `scorer` table of a strategy.

use std::sync::Arc;

use ponder_engine::Scorer;
use serde::{Deserialize, Serialize};

use crate::judge::{JudgeConfig, LlmJudge};
use crate::token_prm::{PrmConfig, TokenPrm};

/// A scorer as a config file describes it; `kind` picks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ScorerConfig {
    /// A chat model answering yes or no.
    LlmJudge(JudgeConfig),
    /// A token-probability process reward model.
    Prm(PrmConfig),
}

impl Default for ScorerConfig {
    fn default() -> Self {
        Self::LlmJudge(JudgeConfig::default())
    }
}

impl ScorerConfig {
    /// Builds the scorer (a configured PRM model loads on first use).
    pub fn build(&self) -> Arc<dyn Scorer> {
        match self {
            Self::LlmJudge(config) => Arc::new(LlmJudge::new(config.clone())),
            Self::Prm(config) => Arc::new(TokenPrm::new(config.clone())),
        }
    }
}
