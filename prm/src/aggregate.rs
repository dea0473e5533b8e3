//! [`Aggregate`]: step scores to one reward.

use serde::{Deserialize, Serialize};

/// How per-step scores become one reward. Default `last` (as in search-and-learn).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// The last step's score.
    #[default]
    Last,
    /// The weakest step.
    Min,
    /// The product of all steps.
    Prod,
    /// The mean of all steps.
    Mean,
}

impl Aggregate {
    /// The reward of `steps`; `None` when there are no steps. A step score that is not a
    /// number (NaN, infinite: a scorer's bug) is left out, as if unscored.
    pub fn apply(self, steps: &[f64]) -> Option<f64> {
        let steps: Vec<f64> = steps.iter().copied().filter(|s| s.is_finite()).collect();
        if steps.is_empty() {
            return None;
        }
        Some(match self {
            Self::Last => steps.last().copied().unwrap_or(0.0),
            Self::Min => steps.iter().copied().fold(f64::INFINITY, f64::min),
            Self::Prod => steps.iter().product(),
            Self::Mean => steps.iter().sum::<f64>() / steps.len() as f64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_that_are_not_numbers_are_left_out() {
        let s = [0.9, f64::NAN, 0.5, f64::INFINITY];
        assert_eq!(Aggregate::Min.apply(&s), Some(0.5));
        assert_eq!(Aggregate::Last.apply(&s), Some(0.5));
        assert_eq!(Aggregate::Min.apply(&[f64::NAN]), None);
    }

    #[test]
    fn every_rule() {
        let s = [0.9, 0.5, 0.8];
        assert_eq!(Aggregate::Last.apply(&s), Some(0.8));
        assert_eq!(Aggregate::Min.apply(&s), Some(0.5));
        assert!((Aggregate::Prod.apply(&s).unwrap() - 0.36).abs() < 1e-12);
        assert!((Aggregate::Mean.apply(&s).unwrap() - 2.2 / 3.0).abs() < 1e-12);
        for rule in [
            Aggregate::Last,
            Aggregate::Min,
            Aggregate::Prod,
            Aggregate::Mean,
        ] {
            assert_eq!(rule.apply(&[]), None);
            assert_eq!(rule.apply(&[0.25]), Some(0.25));
        }
    }
}
