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
    /// Checks what serde cannot: a judge's prompt shows it the solution (without
    /// `{solution}` every candidate would get the same prompt and the same score), and a
    /// PRM's labels and step tag are given and tell good from bad. The error's key is under the
    /// scorer's table ([`ponder_engine::Error::under`] puts it under the caller's).
    pub fn validate(&self) -> ponder_engine::Result<()> {
        let invalid =
            |key: &str, reason: String| Err(ponder_engine::Error::config_value(key, reason));
        match self {
            Self::LlmJudge(config) => match &config.prompt {
                Some(prompt) if !prompt.contains("{solution}") => invalid(
                    "prompt",
                    "the judge's prompt has no `{solution}`: every candidate would be shown the \
                     same prompt and get the same score (`{question}` and `{solution}` are \
                     filled in)"
                        .into(),
                ),
                _ => Ok(()),
            },
            Self::Prm(config) => {
                for (key, text) in [("good", &config.good), ("bad", &config.bad)] {
                    if text.is_empty() {
                        return invalid(key, format!("{key} must not be empty"));
                    }
                }
                if config.step_tag.is_empty()
                    && config.format == crate::token_prm::PrmFormat::MathShepherd
                {
                    return invalid(
                        "step_tag",
                        "step_tag must not be empty: a Math-Shepherd PRM reads its label after \
                         the tag that ends each step"
                            .into(),
                    );
                }
                let same_ids =
                    matches!((config.good_id, config.bad_id), (Some(g), Some(b)) if g == b);
                if same_ids
                    || (config.good == config.bad
                        && config.good_id.is_none()
                        && config.bad_id.is_none())
                {
                    let key = if same_ids { "bad_id" } else { "bad" };
                    return invalid(
                        key,
                        "good and bad are the same token: every step would score 0.5".into(),
                    );
                }
                Ok(())
            }
        }
    }

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
