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
    /// The reward of `steps`; `None` when there are no steps, or a step the rule reads is
    /// unscored (NaN: past the context window, or a read the budget refused; infinite: a
    /// scorer's bug): the last for `last`, any for the others. A reward read from the scored
    /// steps alone would be a prefix's, ranked as the whole solution's: the last steps are the
    /// ones left unscored, and `last` would read a middle step, `min` and `prod` leave out the
    /// factors that could only lower them. (`last` needs no middle step: one left unscored, a
    /// step judge's read of a prefix the budget refused, costs it nothing.)
    pub fn apply(self, steps: &[f64]) -> Option<f64> {
        let all_scored = !steps.is_empty() && steps.iter().all(|s| s.is_finite());
        match self {
            Self::Last => steps.last().copied().filter(|s| s.is_finite()),
            _ if !all_scored => None,
            Self::Min => Some(steps.iter().copied().fold(f64::INFINITY, f64::min)),
            Self::Prod => Some(steps.iter().product()),
            Self::Mean => Some(steps.iter().sum::<f64>() / steps.len() as f64),
        }
    }

    /// The reward of the steps that were scored, leaving out those that were not: a prefix's
    /// reward where the last steps went unscored. What a search ranks partial paths by (a
    /// path whose newest step is past the scorer's window still ranks by the rest), never a
    /// final reward. `None` when no step was scored.
    pub fn apply_scored(self, steps: &[f64]) -> Option<f64> {
        let scored: Vec<f64> = steps.iter().copied().filter(|s| s.is_finite()).collect();
        self.apply(&scored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_left_unscored_leaves_the_solution_unscored() {
        for rule in [
            Aggregate::Last,
            Aggregate::Min,
            Aggregate::Prod,
            Aggregate::Mean,
        ] {
            assert_eq!(rule.apply(&[0.9, f64::NAN]), None, "{rule:?}");
            let middle = (rule == Aggregate::Last).then_some(0.9);
            assert_eq!(rule.apply(&[f64::NAN, 0.9]), middle, "{rule:?}");
            assert_eq!(rule.apply(&[0.5, f64::INFINITY]), None, "{rule:?}");
            assert_eq!(rule.apply(&[f64::NAN]), None, "{rule:?}");
            assert_eq!(rule.apply_scored(&[f64::NAN]), None, "{rule:?}");
            assert_eq!(rule.apply_scored(&[0.5, f64::NAN]), Some(0.5), "{rule:?}");
        }
        assert_eq!(
            Aggregate::Min.apply_scored(&[0.9, f64::NAN, 0.5]),
            Some(0.5)
        );
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
