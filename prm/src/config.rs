//! [`ScorerConfig`]: the `scorer` table of a strategy.

use std::sync::Arc;

use ponder_engine::config::{from_table, from_tagged};
use ponder_engine::Scorer;
use serde::{Deserialize, Deserializer, Serialize};

use crate::judge::{JudgeConfig, LlmJudge};
use crate::token_prm::{PrmConfig, TokenPrm};

/// A scorer as a config file describes it; `kind` picks it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ScorerConfig {
    /// A chat model answering yes or no.
    LlmJudge(JudgeConfig),
    /// A token-probability process reward model.
    Prm(PrmConfig),
}

impl<'de> Deserialize<'de> for ScorerConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // By hand rather than serde's tagged enum, so errors inside name their key.
        from_tagged(deserializer, &["llm_judge", "prm"], |kind, table| {
            Ok(match kind {
                "llm_judge" => Self::LlmJudge(from_table(table)?),
                "prm" => Self::Prm(from_table(table)?),
                other => return Err(format!("unknown kind `{other}`")),
            })
        })
    }
}

impl Default for ScorerConfig {
    fn default() -> Self {
        Self::LlmJudge(JudgeConfig::default())
    }
}

impl ScorerConfig {
    /// The model of its own it loads (a PRM's `model`), if any; the others use the policy.
    pub fn model(&self) -> Option<ponder_engine::ModelConfig> {
        match self {
            Self::LlmJudge(_) => None,
            Self::Prm(config) => config.model.as_ref().map(|model| model.config()),
        }
    }

    /// Builds the scorer (a configured PRM model loads on first use).
    pub fn build(&self) -> Arc<dyn Scorer> {
        match self {
            Self::LlmJudge(config) => Arc::new(LlmJudge::new(config.clone())),
            Self::Prm(config) => Arc::new(TokenPrm::new(config.clone())),
        }
    }
}
