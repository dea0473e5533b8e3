//! The [`Scorer`] trait: rewards for candidate solutions, per step.

use async_trait::async_trait;

use crate::error::Result;
use crate::strategy::Context;

/// Scores candidate solutions of one question.
///
/// Each candidate is given as its steps (a single step for outcome scorers). The result has one
/// entry per candidate, each with one score in `[0, 1]` per step; outcome scorers return one
/// score per candidate. Aggregating steps into one reward is the caller's choice.
#[async_trait]
pub trait Scorer: Send + Sync {
    /// Scores every candidate (batched where the scorer can). Scorers that use the policy
    /// model call it through `cx`, so their calls are metered with the strategy's.
    async fn score(
        &self,
        cx: &Context,
        question: &str,
        candidates: &[Vec<String>],
    ) -> Result<Vec<Vec<f64>>>;
}

#[async_trait]
impl<S: Scorer + ?Sized> Scorer for std::sync::Arc<S> {
    async fn score(
        &self,
        cx: &Context,
        question: &str,
        candidates: &[Vec<String>],
    ) -> Result<Vec<Vec<f64>>> {
        (**self).score(cx, question, candidates).await
    }
}
