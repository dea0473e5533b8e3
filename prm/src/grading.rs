//! [`StandardGrader`]: what `ponder run` grades with. Code problems (HumanEval shape) run their
//! hidden tests in the [`Sandbox`]; math problems compare answers by equivalence.

use async_trait::async_trait;
use ponder_engine::{Grader, MathGrader, Problem, Result, Solution};

use crate::code::HumanEvalGrader;
use crate::sandbox::Sandbox;

/// Code problems by hidden tests in the sandbox, the rest by answer equivalence.
#[derive(Debug)]
pub struct StandardGrader {
    code: HumanEvalGrader,
}

impl StandardGrader {
    /// Grades code in `sandbox`.
    pub fn new(sandbox: Sandbox) -> Self {
        Self {
            code: HumanEvalGrader::new(sandbox),
        }
    }
}

impl Default for StandardGrader {
    fn default() -> Self {
        Self::new(Sandbox::new())
    }
}

#[async_trait]
impl Grader for StandardGrader {
    async fn grade(&self, problem: &Problem, solution: &Solution) -> Result<Option<bool>> {
        if problem.code.is_some() {
            self.code.grade(problem, solution).await
        } else {
            MathGrader.grade(problem, solution).await
        }
    }
}
