//! Graders: was a solution right?

use async_trait::async_trait;

use crate::answer;
use crate::error::Result;
use crate::problem::Problem;
use crate::solution::Solution;

/// Decides whether a solution is correct; `Ok(None)` when there is nothing to grade against (no
/// reference, or a problem kind this grader does not handle), an error when grading itself
/// failed (the sandbox could not run the tests): a run records that problem as failed and
/// retries it on resume.
#[async_trait]
pub trait Grader: Send + Sync {
    /// Grades `solution` against `problem`.
    async fn grade(&self, problem: &Problem, solution: &Solution) -> Result<Option<bool>>;
}

/// Grades math answers by equivalence with the reference ([`answer::equivalent`]).
/// Code problems are left ungraded.
#[derive(Debug, Clone, Copy, Default)]
pub struct MathGrader;

#[async_trait]
impl Grader for MathGrader {
    async fn grade(&self, problem: &Problem, solution: &Solution) -> Result<Option<bool>> {
        if problem.code.is_some() {
            return Ok(None);
        }
        let Some(reference) = problem.reference.as_deref() else {
            return Ok(None);
        };
        Ok(Some(
            solution
                .answer
                .as_deref()
                .is_some_and(|a| answer::equivalent(a, reference)),
        ))
    }
}
