//! [`Direct`]: one sample, one prompt style. The baseline every other strategy is measured against.

use async_trait::async_trait;
use ponder_engine::answer::extract_answer;
use ponder_engine::{
    Candidate, Choice, Context, GenerationRequest, Problem, Prompt, Result, Sampling, Solution,
    StopReason, Strategy,
};
use serde::{Deserialize, Serialize};

use crate::prompt::PromptStyle;

/// A sampled completion as a candidate, and how it stopped.
pub(crate) fn candidate_of(choice: Choice) -> (Candidate, StopReason) {
    let stop_reason = StopReason::from(choice.finish_reason);
    let candidate = Candidate {
        answer: extract_answer(&choice.text),
        tokens: choice.completion_tokens as u64,
        text: choice.text,
        score: None,
    };
    (candidate, stop_reason)
}

/// Config of [`Direct`] (`kind = "direct"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectConfig {
    /// Prompt style. Default `step_by_step`.
    #[serde(default)]
    pub style: PromptStyle,
    /// Most tokens generated. Default 512.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: std::num::NonZeroUsize,
    /// Sampling temperature; 0 is greedy. Default 0.
    #[serde(default)]
    pub temperature: f64,
    /// Nucleus filter in (0, 1]. Default none.
    #[serde(default)]
    pub top_p: Option<f64>,
}

fn default_max_tokens() -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::MIN.saturating_add(511)
}

impl Default for DirectConfig {
    fn default() -> Self {
        Self {
            style: PromptStyle::default(),
            max_tokens: default_max_tokens(),
            temperature: 0.0,
            top_p: None,
        }
    }
}

impl DirectConfig {
    /// Checks the values that serde cannot.
    pub fn validate(&self) -> Result<()> {
        crate::config::check_sampling(self.temperature, self.top_p)
    }

    /// The sampling settings.
    pub fn sampling(&self) -> Sampling {
        Sampling {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: None,
            seed: None,
        }
    }
}

/// One sample in a prompt style; the answer is extracted from it.
#[derive(Debug, Clone)]
pub struct Direct {
    config: DirectConfig,
}

impl Direct {
    /// A direct strategy with `config`, validated ([`DirectConfig::validate`]).
    pub fn new(config: DirectConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The request this strategy sends for `problem`.
    pub fn request(&self, problem: &Problem) -> GenerationRequest {
        GenerationRequest::new(Prompt::chat(self.config.style.messages(problem)))
            .with_max_tokens(self.config.max_tokens.get())
            .with_sampling(self.config.sampling())
    }
}

#[async_trait]
impl Strategy for Direct {
    fn name(&self) -> &'static str {
        "direct"
    }

    #[tracing::instrument(skip_all, fields(strategy = "direct", problem = %problem.id))]
    async fn solve(&self, problem: &Problem, cx: &Context) -> Result<Solution> {
        let generation = match cx.backend().generate(self.request(problem)).await {
            Ok(generation) => generation,
            Err(ponder_engine::Error::BudgetExhausted { resource }) => {
                return Ok(Solution::exhausted(self.name(), resource))
            }
            Err(e) => return Err(e),
        };
        let (candidate, stop_reason) = candidate_of(generation.into_first_choice()?);
        Ok(Solution::single(self.name(), candidate, stop_reason))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ponder_engine::scripted::ScriptedBackend;
    use ponder_engine::{Backend, Budget};

    use super::*;

    #[tokio::test]
    async fn extracts_the_answer_and_counts_usage() {
        let backend = Arc::new(ScriptedBackend::new(["2 + 3 = 5.\nFinal Answer: 5"]));
        let strategy = Direct::new(DirectConfig::default()).unwrap();
        let problem = Problem::new("p", "What is 2+3?");
        let solution = ponder_engine::solve(
            &strategy,
            &problem,
            Arc::clone(&backend) as Arc<dyn Backend>,
            Budget::unlimited(),
        )
        .await
        .unwrap();
        assert_eq!(solution.answer.as_deref(), Some("5"));
        assert_eq!(solution.stop_reason, StopReason::Completed);
        assert_eq!(solution.usage.calls, 1);
        assert_eq!(solution.usage.completion_tokens, 26);
        let requests = backend.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].max_tokens, 512);
    }

    #[tokio::test]
    async fn budget_exhaustion_is_an_outcome() {
        let backend: Arc<dyn Backend> = Arc::new(ScriptedBackend::new(["Final Answer: 5"]));
        let strategy = Direct::new(DirectConfig::default()).unwrap();
        let problem = Problem::new("p", "What is 2+3?");
        // The prompt alone is longer than 10 tokens (bytes, for the scripted backend).
        let solution = ponder_engine::solve(
            &strategy,
            &problem,
            backend,
            Budget::unlimited().with_max_tokens(10),
        )
        .await
        .unwrap();
        assert_eq!(solution.stop_reason, StopReason::TokenBudget);
        assert_eq!(solution.answer, None);
        assert_eq!(solution.usage.calls, 0);
    }

    #[tokio::test]
    async fn a_tight_budget_shrinks_max_tokens_and_is_never_exceeded() {
        let backend = Arc::new(ScriptedBackend::new([
            "a long reply that will not fit at all",
        ]));
        let strategy = Direct::new(DirectConfig::default()).unwrap();
        let problem = Problem::new("p", "Q?");
        let prompt_len = ScriptedBackend::render(&strategy.request(&problem).prompt).len() as u64;
        let budget = Budget::unlimited().with_max_tokens(prompt_len + 6);
        let solution = ponder_engine::solve(
            &strategy,
            &problem,
            Arc::clone(&backend) as Arc<dyn Backend>,
            budget,
        )
        .await
        .unwrap();
        assert_eq!(backend.requests()[0].max_tokens, 6);
        assert_eq!(solution.usage.total_tokens(), prompt_len + 6);
        // It ran to the six tokens the budget left, not to its own max_tokens.
        assert_eq!(solution.stop_reason, StopReason::TokenBudget);
    }

    #[tokio::test]
    async fn backend_errors_pass_through_typed() {
        let backend: Arc<dyn Backend> = Arc::new(ScriptedBackend::from_replies([
            ponder_engine::scripted::Reply::Fail("boom".into()),
        ]));
        let strategy = Direct::new(DirectConfig::default()).unwrap();
        let err = ponder_engine::solve(
            &strategy,
            &Problem::new("p", "Q?"),
            backend,
            Budget::unlimited(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, ponder_engine::Error::Inference { ref message } if message == "boom")
        );
    }
}
