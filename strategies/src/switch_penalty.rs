//! TIP (arXiv 2501.18585): a thought-switching penalty. Models that "underthink" abandon a line
//! of reasoning for another ("Alternatively, ...") before following it through; TIP lowers the
//! logits of the tokens that open such a switch during the first tokens of each thought (from
//! the start of thinking, and again from each switch the model makes all the same), so each
//! thought is explored longer. A logits-level change, inside the decode.

use std::sync::Mutex;

use ponder_engine::{Backend, Error, LogitsProcessor, Result, TokenizeInput};
use serde::{Deserialize, Serialize};

/// Config of the penalty (`switch_penalty = { ... }` in `budget_forcing`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchPenaltyConfig {
    /// Words that open a new thought. Their first token is penalised, as written at the start
    /// of a text, after a space and after a newline. Default `["Alternatively", "alternatively"]`.
    #[serde(default = "default_words")]
    pub words: Vec<String>,
    /// Subtracted from those tokens' logits (TIP's alpha). Default 3.
    #[serde(default = "default_alpha")]
    pub alpha: f32,
    /// For this many tokens from the start of each thought: of the generation, or of its last
    /// switch token (TIP's beta). Default 600.
    #[serde(default = "default_duration")]
    pub duration: usize,
}

fn default_words() -> Vec<String> {
    vec!["Alternatively".into(), "alternatively".into()]
}

fn default_alpha() -> f32 {
    3.0
}

fn default_duration() -> usize {
    600
}

impl Default for SwitchPenaltyConfig {
    fn default() -> Self {
        Self {
            words: default_words(),
            alpha: default_alpha(),
            duration: default_duration(),
        }
    }
}

impl SwitchPenaltyConfig {
    /// Checks the values that serde cannot (keys relative to the `switch_penalty` table).
    pub fn validate(&self) -> Result<()> {
        if self.words.is_empty() || self.words.iter().any(|w| w.trim().is_empty()) {
            return Err(Error::config_value(
                "words",
                "switch_penalty.words must be a non-empty list of non-empty words",
            ));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(Error::config_value(
                "alpha",
                format!(
                    "switch_penalty.alpha must be a number > 0, got {}",
                    self.alpha
                ),
            ));
        }
        if self.duration == 0 {
            return Err(Error::config_value(
                "duration",
                "switch_penalty.duration must be at least 1",
            ));
        }
        Ok(())
    }

    /// The penalty as a processor, with the words' first tokens on `backend`.
    pub async fn processor(&self, backend: &dyn Backend) -> Result<SwitchPenalty> {
        let mut leads = Vec::new();
        for lead in ["", " ", "\n"] {
            leads.push((lead, backend.tokenize(TokenizeInput::Piece(lead)).await?));
        }
        let mut ids = Vec::new();
        for word in &self.words {
            for (lead, lead_ids) in &leads {
                let with_lead = backend
                    .tokenize(TokenizeInput::Piece(&format!("{lead}{word}")))
                    .await?;
                // Where the lead stays a token of its own, the word starts after it.
                let rest = with_lead
                    .strip_prefix(lead_ids.as_slice())
                    .filter(|_| !lead_ids.is_empty())
                    .unwrap_or(&with_lead);
                let Some(&first) = rest.first() else { continue };
                // A tokenizer that merges the lead into a token of its own (SentencePiece's
                // "▁") must not have that whitespace penalised.
                if ids.contains(&first) || backend.detokenize(&[first]).await?.trim().is_empty() {
                    continue;
                }
                ids.push(first);
            }
        }
        if ids.is_empty() {
            return Err(Error::StrategyConfig {
                strategy: "budget_forcing",
                reason: format!(
                    "switch_penalty.words {:?} start with no token to penalise in this model's vocabulary",
                    self.words
                ),
            });
        }
        Ok(SwitchPenalty {
            ids,
            alpha: self.alpha,
            duration: self.duration,
            prompt_len: Mutex::new(None),
        })
    }
}

/// The penalty of one request (its sequences share a prompt length).
#[derive(Debug)]
pub struct SwitchPenalty {
    ids: Vec<u32>,
    alpha: f32,
    duration: usize,
    prompt_len: Mutex<Option<usize>>,
}

impl SwitchPenalty {
    /// The penalised token ids.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}

impl LogitsProcessor for SwitchPenalty {
    fn process(&self, logits: &mut [f32], context: &[u32]) {
        let Ok(mut prompt_len) = self.prompt_len.lock() else {
            return;
        };
        let start = *prompt_len.get_or_insert(context.len());
        let generated = context.get(start..).unwrap_or_default();
        // The current thought starts at the last switch the model made, or at the start.
        let thought = generated
            .iter()
            .rposition(|id| self.ids.contains(id))
            .unwrap_or(0);
        if generated.len().saturating_sub(thought) >= self.duration {
            return;
        }
        for &id in &self.ids {
            if let Some(logit) = logits.get_mut(id as usize) {
                *logit -= self.alpha;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ponder_engine::scripted::ScriptedBackend;

    use super::*;

    #[tokio::test]
    async fn the_first_tokens_of_each_thought_are_penalised_for_the_duration_only() {
        // Scripted tokens are bytes: "Alternatively" and "alternatively" start with 'A' and 'a',
        // after a space or newline too (the lead is a token of its own).
        let config = SwitchPenaltyConfig {
            alpha: 2.0,
            duration: 2,
            ..SwitchPenaltyConfig::default()
        };
        let penalty = config.processor(&ScriptedBackend::default()).await.unwrap();
        assert_eq!(penalty.ids(), &[u32::from(b'A'), u32::from(b'a')]);
        let fresh = || {
            let mut logits = vec![1.0f32; 128];
            logits[0] = 5.0;
            logits
        };
        // Generated 0 and 1 tokens: penalised; from 2 on: untouched, until the model switches
        // all the same ('A'): a new thought, whose first 2 tokens (from 'A') are penalised again.
        let a = u32::from(b'A');
        for (context, penalised) in [
            (&[1u32, 2][..], true),
            (&[1, 2, 3], true),
            (&[1, 2, 3, 4], false),
            (&[1, 2, 3, 4, 5], false),
            (&[1, 2, 3, 4, 5, a], true),
            (&[1, 2, 3, 4, 5, a, 6], false),
        ] {
            let mut logits = fresh();
            penalty.process(&mut logits, context);
            let expected = if penalised { -1.0 } else { 1.0 };
            assert_eq!(logits[usize::from(b'A')], expected, "{context:?}");
            assert_eq!(logits[usize::from(b'a')], expected, "{context:?}");
            assert_eq!(logits[usize::from(b'B')], 1.0);
            assert_eq!(logits[0], 5.0);
        }
        let bad = SwitchPenaltyConfig {
            alpha: f32::NAN,
            ..SwitchPenaltyConfig::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("alpha"));
        let bad = SwitchPenaltyConfig {
            duration: 0,
            ..SwitchPenaltyConfig::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("duration"));
        let bad = SwitchPenaltyConfig {
            words: vec![" ".into()],
            ..SwitchPenaltyConfig::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("words"));
    }
}
