//! Graders: was a solution right?

use async_trait::async_trait;

use crate::answer;
use crate::problem::Problem;
use crate::solution::Solution;

/// Decides whether a solution is correct; `None` when it cannot tell (no reference, or a
/// problem kind this grader does not handle).
#[async_trait]
pub trait Grader: Send + Sync {
    /// Grades `solution` against `problem`.
    async fn grade(&self, problem: &Problem, solution: &Solution) -> Option<bool>;
}

/// Grades math answers by equivalence with the reference ([`answer::equivalent`]).
/// Code problems are left ungraded.
#[derive(Debug, Clone, Copy, Default)]
pub struct MathGrader;

#[async_trait]
impl Grader for MathGrader {
    async fn grade(&self, problem: &Problem, solution: &Solution) -> Option<bool> {
        if problem.code.is_some() {
            return None;
        }
        let reference = problem.reference.as_deref()?;
        Some(
            solution
                .answer
                .as_deref()
                .is_some_and(|a| answer::equivalent(a, reference)),
        )
    }
}
