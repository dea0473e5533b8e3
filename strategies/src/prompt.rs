//! Prompt styles: how a problem is put to the model.

use ponder_engine::{Message, Problem};
use serde::{Deserialize, Serialize};

/// How to ask. Default `step_by_step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptStyle {
    /// Answer at once, no working shown.
    Direct,
    /// Chain of thought: reason step by step, then the answer.
    #[default]
    StepByStep,
    /// Chain of Draft (arXiv 2502.18600): terse drafts of at most five words per step.
    ChainOfDraft,
}

/// The cue every style asks the model to put before its final answer.
pub const ANSWER_CUE: &str = "Final Answer:";

impl PromptStyle {
    /// The instruction appended to the question.
    pub fn instruction(self) -> &'static str {
        match self {
            Self::Direct => {
                "Give only the final answer, on one line, in the form \"Final Answer: <answer>\"."
            }
            Self::StepByStep => {
                "Solve the problem step by step. Then give the final answer on its own line, in the form \"Final Answer: <answer>\"."
            }
            Self::ChainOfDraft => {
                "Think step by step, but keep only a minimal draft of each step, five words at most. Then give the final answer on its own line, in the form \"Final Answer: <answer>\"."
            }
        }
    }

    /// The chat messages for `problem`.
    pub fn messages(self, problem: &Problem) -> Vec<Message> {
        let question = problem.question.trim();
        let text = match &problem.code {
            Some(code) => format!(
                "Complete the following Python function. Reply with the whole function in one ```python code block.\n\n```python\n{}\n```",
                code.prompt.trim_end()
            ),
            None => format!("{question}\n\n{}", self.instruction()),
        };
        vec![Message::user(text)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_style_asks_for_the_cue() {
        let problem = Problem::new("p", "What is 2+3?");
        for style in [
            PromptStyle::Direct,
            PromptStyle::StepByStep,
            PromptStyle::ChainOfDraft,
        ] {
            let messages = style.messages(&problem);
            assert_eq!(messages.len(), 1);
            assert!(messages[0].content.starts_with("What is 2+3?"));
            assert!(messages[0].content.contains(ANSWER_CUE));
        }
    }
}
