//! The [`Scorer`] trait: rewards for candidate solutions, per step.

use async_trait::async_trait;

use crate::error::Result;
use crate::strategy::Context;

/// Scores candidate solutions of one question.
///
/// Each candidate is given as its steps (a single step for outcome scorers). The result has one
/// entry per candidate, each with one score in `[0, 1]` per step; outcome scorers return one
/// score per candidate. A score the scorer could not read is NaN (a candidate with one has no
/// reward, so a weighted vote counts it at the mean reward of those scored; a search ranks its
/// partial paths by the steps scored). Aggregating steps into one reward is the caller's
/// choice; ponder's strategies check what comes back with [`score_checked`].
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

/// `scorer`'s scores of `candidates`, checked against the contract of [`Scorer::score`]: one
/// entry per candidate, one score per step (or one for the whole candidate), each in `[0, 1]`
/// or not a number (NaN: unread; see [`Scorer::score`]). A scorer that breaks it is
/// an error naming what it returned, rather than rewards shifted onto the wrong candidates.
pub async fn score_checked(
    scorer: &dyn Scorer,
    cx: &Context,
    question: &str,
    candidates: &[Vec<String>],
) -> Result<Vec<Vec<f64>>> {
    let scores = scorer.score(cx, question, candidates).await?;
    let broken = |message: String| crate::Error::Tool {
        tool: "scorer",
        message,
    };
    if scores.len() != candidates.len() {
        return Err(broken(format!(
            "returned scores for {} candidates, but was given {}",
            scores.len(),
            candidates.len()
        )));
    }
    for (i, (steps, scored)) in candidates.iter().zip(&scores).enumerate() {
        // A step scorer gives one per step (none for a candidate without steps: an empty
        // completion), an outcome scorer one whatever the steps.
        if scored.len() != steps.len() && scored.len() != 1 {
            return Err(broken(format!(
                "returned {} scores for candidate {i}, which has {} steps",
                scored.len(),
                steps.len()
            )));
        }
        if let Some(bad) = scored
            .iter()
            .find(|s| !s.is_nan() && !(0.0..=1.0).contains(*s))
        {
            return Err(broken(format!(
                "returned {bad} for candidate {i}: scores are rewards in [0, 1]"
            )));
        }
    }
    Ok(scores)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::budget::Budget;

    /// Returns what it was built with, whatever it is asked.
    struct Fixed(Vec<Vec<f64>>);

    #[async_trait]
    impl Scorer for Fixed {
        async fn score(&self, _: &Context, _: &str, _: &[Vec<String>]) -> Result<Vec<Vec<f64>>> {
            Ok(self.0.clone())
        }
    }

    #[tokio::test]
    async fn scores_that_break_the_contract_are_an_error_naming_what_came_back() {
        let backend = Arc::new(crate::scripted::ScriptedBackend::new(Vec::<String>::new()));
        let cx = Context::new(backend, Budget::unlimited());
        let two = [vec!["a".to_string(), "b".into()], vec!["c".into()]];
        let check = |scores: Vec<Vec<f64>>| {
            let cx = &cx;
            let two = &two;
            async move {
                score_checked(&Fixed(scores), cx, "q", two)
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        assert_eq!(
            check(vec![vec![0.5, 1.0], vec![0.0]]).await,
            Ok(vec![vec![0.5, 1.0], vec![0.0]])
        );
        // One score for a candidate of two steps: an outcome scorer's.
        assert!(check(vec![vec![0.5], vec![0.2]]).await.is_ok());
        let err = check(vec![vec![0.5, 1.0]]).await.unwrap_err();
        assert_eq!(
            err,
            "scorer failed: returned scores for 1 candidates, but was given 2"
        );
        let err = check(vec![vec![0.5, 1.0, 1.0], vec![0.0]])
            .await
            .unwrap_err();
        assert!(
            err.contains("3 scores for candidate 0, which has 2 steps"),
            "{err}"
        );
        let err = check(vec![vec![], vec![0.0]]).await.unwrap_err();
        assert!(err.contains("0 scores for candidate 0"), "{err}");
        let none = [vec![], vec!["c".to_string()]];
        assert!(
            score_checked(&Fixed(vec![vec![], vec![0.1]]), &cx, "q", &none)
                .await
                .is_ok()
        );
        // Unread, not wrong.
        assert!(check(vec![vec![0.5, f64::NAN], vec![0.0]]).await.is_ok());
        let err = check(vec![vec![0.5], vec![2.5]]).await.unwrap_err();
        assert!(err.contains("returned 2.5 for candidate 1"), "{err}");
        let err = check(vec![vec![0.5], vec![f64::INFINITY]])
            .await
            .unwrap_err();
        assert!(err.contains("returned inf for candidate 1"), "{err}");
    }
}
