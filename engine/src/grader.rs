//! Graders: was a solution right?

use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use crate::answer;
use crate::error::Result;
use crate::problem::Problem;
use crate::solution::{Candidate, Solution};

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

/// How a solution's candidates grade, whichever it chose: whether its sampling found a right
/// answer at all (coverage, pass@N) and how many of its candidates are right. Set beside the
/// chosen answer's grade, it tells a selection that missed from a generation that never had it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateGrades {
    /// Candidates graded.
    pub graded: usize,
    /// Of them, graded right.
    pub right: usize,
}

/// Sandbox runs (or other gradings) of one solution's candidates at a time.
const CANDIDATES_AT_ONCE: usize = 4;

/// Grades each of `solution`'s candidates as if it were the answer: each distinct one once (by
/// its answer for a math problem, by its text for a code problem), a few at a time; one the
/// same as the solution's own answer takes `chosen`, the solution's grade. `Ok(None)` when it
/// has no candidates or the grader grades none of them (no reference).
pub async fn grade_candidates(
    grader: &dyn Grader,
    problem: &Problem,
    solution: &Solution,
    chosen: Option<bool>,
) -> Result<Option<CandidateGrades>> {
    let key = |c: &Candidate| -> String {
        if problem.code.is_some() {
            c.text.clone()
        } else {
            c.answer.clone().unwrap_or_default()
        }
    };
    let own = if problem.code.is_some() {
        solution.completion.clone()
    } else {
        solution.answer.clone().unwrap_or_default()
    };
    let mut right_by_key: Vec<(String, bool)> = Vec::new();
    if let Some(right) = chosen {
        right_by_key.push((own, right));
    }
    // Each distinct candidate not graded yet, the first of its kind standing for the others.
    let mut distinct: Vec<(String, &Candidate)> = Vec::new();
    for candidate in &solution.candidates {
        let k = key(candidate);
        if distinct.iter().all(|(d, _)| *d != k) && right_by_key.iter().all(|(g, _)| *g != k) {
            distinct.push((k, candidate));
        }
    }
    let grades: Vec<Result<Option<bool>>> = stream::iter(distinct.iter().map(|(_, c)| {
        let one = Solution {
            strategy: solution.strategy.clone(),
            answer: c.answer.clone(),
            completion: c.text.clone(),
            candidates: Vec::new(),
            stop_reason: solution.stop_reason,
            usage: Default::default(),
            details: serde_json::Value::Null,
            trace: None,
        };
        async move { grader.grade(problem, &one).await }
    }))
    .buffered(CANDIDATES_AT_ONCE)
    .collect()
    .await;
    for ((k, _), grade) in distinct.into_iter().zip(grades) {
        if let Some(right) = grade? {
            right_by_key.push((k, right));
        }
    }
    let mut grades = CandidateGrades {
        graded: 0,
        right: 0,
    };
    for candidate in &solution.candidates {
        let k = key(candidate);
        if let Some((_, right)) = right_by_key.iter().find(|(g, _)| *g == k) {
            grades.graded += 1;
            grades.right += usize::from(*right);
        }
    }
    Ok((grades.graded > 0).then_some(grades))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// [`MathGrader`], counting its calls.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    #[async_trait]
    impl Grader for Counting {
        async fn grade(&self, problem: &Problem, solution: &Solution) -> Result<Option<bool>> {
            self.0.fetch_add(1, Ordering::Relaxed);
            MathGrader.grade(problem, solution).await
        }
    }

    fn candidate(answer: Option<&str>) -> Candidate {
        Candidate {
            answer: answer.map(str::to_string),
            text: format!("... so the answer is {answer:?}"),
            score: None,
            tokens: 3,
        }
    }

    fn solution_of(chosen: Option<&str>, answers: &[Option<&str>]) -> Solution {
        Solution {
            answer: chosen.map(str::to_string),
            candidates: answers.iter().map(|a| candidate(*a)).collect(),
            ..Solution::exhausted("best_of_n", crate::Resource::Tokens)
        }
    }

    #[tokio::test]
    async fn each_distinct_candidate_is_graded_once_and_the_chosen_one_not_again() {
        let problem = Problem::new("p", "2 + 3?").with_reference("5");
        let solution = solution_of(
            Some("6"),
            &[
                Some("5"),
                Some("6"),
                Some("5.0"),
                Some("5"),
                None,
                Some("6"),
            ],
        );
        let grader = Counting::default();
        let grades = grade_candidates(&grader, &problem, &solution, Some(false))
            .await
            .unwrap();
        // "5", "5.0" and the answerless one graded; "6" is the chosen answer, graded already.
        assert_eq!(grader.0.load(Ordering::Relaxed), 3);
        assert_eq!(
            grades,
            Some(CandidateGrades {
                graded: 6,
                right: 3
            })
        );
        // Without the chosen answer's grade, "6" is graded too.
        let grader = Counting::default();
        let again = grade_candidates(&grader, &problem, &solution, None)
            .await
            .unwrap();
        assert_eq!(grader.0.load(Ordering::Relaxed), 4);
        assert_eq!(again, grades);
    }

    #[tokio::test]
    async fn nothing_to_grade_is_none() {
        let with_reference = Problem::new("p", "2 + 3?").with_reference("5");
        let none = solution_of(Some("5"), &[]);
        assert_eq!(
            grade_candidates(&MathGrader, &with_reference, &none, Some(true))
                .await
                .unwrap(),
            None
        );
        let without = Problem::new("p", "2 + 3?");
        let some = solution_of(Some("5"), &[Some("5"), Some("4")]);
        assert_eq!(
            grade_candidates(&MathGrader, &without, &some, None)
                .await
                .unwrap(),
            None
        );
    }
}
