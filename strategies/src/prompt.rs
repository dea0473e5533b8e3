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
    /// Chain of Draft (arXiv 2502.18600): terse drafts of at most five words per step, shown
    /// by three worked examples before the question, as the paper prompts (its zero-shot
    /// variant fell far behind; see [`ChainOfDraftZeroShot`](Self::ChainOfDraftZeroShot)).
    ChainOfDraft,
    /// Chain of Draft's instruction alone, without the worked examples. Small models tend to
    /// answer at once under it (measured in the README).
    ChainOfDraftZeroShot,
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
            Self::ChainOfDraft | Self::ChainOfDraftZeroShot => {
                "Think step by step, but keep only a minimal draft of each step, five words at most. Then give the final answer on its own line, in the form \"Final Answer: <answer>\"."
            }
        }
    }

    /// The worked examples put before the question (question, reply), as earlier turns of the
    /// conversation: Chain of Draft's drafts; none for the other styles.
    pub fn examples(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::ChainOfDraft => DRAFT_EXAMPLES,
            _ => &[],
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
            None => {
                let ask = |question: &str| format!("{question}\n\n{}", self.instruction());
                let mut messages = Vec::new();
                for (example, reply) in self.examples() {
                    messages.push(Message::user(ask(example)));
                    messages.push(Message::assistant(*reply));
                }
                messages.push(Message::user(ask(question)));
                return messages;
            }
        };
        vec![Message::user(text)]
    }
}

/// Chain of Draft's worked examples: a line of a few words per step, the arithmetic kept.
const DRAFT_EXAMPLES: &[(&str, &str)] = &[
    (
        "A baker made 48 cookies. She sold 3 boxes of 12 cookies each. How many cookies are left?",
        "Sold: 3 * 12 = 36\nLeft: 48 - 36 = 12\nFinal Answer: 12",
    ),
    (
        "Tom reads 15 pages a day. His book has 240 pages and he has read 90 of them. How many more days does he need to finish it?",
        "Pages left: 240 - 90 = 150\nDays: 150 / 15 = 10\nFinal Answer: 10",
    ),
    (
        "A shirt costs $20 and is on sale for 25% off. Sam buys 2 shirts. How much does he pay?",
        "Discount: 20 * 0.25 = 5\nSale price: 20 - 5 = 15\nTwo shirts: 2 * 15 = 30\nFinal Answer: 30",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use ponder_engine::Role;

    #[test]
    fn every_style_asks_for_the_cue() {
        let problem = Problem::new("p", "What is 2+3?");
        for style in [
            PromptStyle::Direct,
            PromptStyle::StepByStep,
            PromptStyle::ChainOfDraft,
            PromptStyle::ChainOfDraftZeroShot,
        ] {
            let messages = style.messages(&problem);
            let last = messages.last().expect("a message");
            assert_eq!(last.role, Role::User);
            assert!(last.content.starts_with("What is 2+3?"));
            assert!(last.content.contains(ANSWER_CUE));
        }
    }

    #[test]
    fn chain_of_draft_shows_worked_drafts_before_the_question() {
        let problem = Problem::new("p", "What is 2+3?");
        let messages = PromptStyle::ChainOfDraft.messages(&problem);
        assert_eq!(messages.len(), 7, "three examples and the question");
        for pair in messages[..6].chunks(2) {
            assert_eq!(pair[0].role, Role::User);
            assert!(pair[0]
                .content
                .ends_with(PromptStyle::ChainOfDraft.instruction()));
            assert_eq!(pair[1].role, Role::Assistant);
            // Each reply is drafts of a few words and the cue, as the model is asked to write.
            let (drafts, answer) = pair[1]
                .content
                .rsplit_once('\n')
                .expect("drafts and answer");
            assert!(answer.starts_with(ANSWER_CUE));
            for draft in drafts.lines() {
                let words = draft
                    .split_whitespace()
                    .filter(|w| w.chars().any(char::is_alphabetic));
                assert!(
                    words.count() <= 5,
                    "a draft of more than five words: {draft}"
                );
            }
            let said = ponder_engine::answer::extract_answer(&pair[1].content);
            assert_eq!(
                said.as_deref(),
                answer[ANSWER_CUE.len()..].split_whitespace().next()
            );
        }
        let zero = PromptStyle::ChainOfDraftZeroShot.messages(&problem);
        assert_eq!(zero.len(), 1);
        assert_eq!(zero[0].content, messages[6].content);
        // Code problems are asked as before, with no arithmetic examples.
        let mut code = problem.clone();
        code.code = Some(ponder_engine::CodeTask {
            prompt: "def f():\n    pass".into(),
            entry_point: "f".into(),
            test: "def check(candidate):\n    pass".into(),
        });
        assert_eq!(PromptStyle::ChainOfDraft.messages(&code).len(), 1);
    }
}
