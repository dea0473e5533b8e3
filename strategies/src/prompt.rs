//! Prompt styles: how a problem is put to the model.

use ponder_engine::{Backend, Error, Message, Problem, Prompt, Result, TokenizeInput};
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

/// The last text of `messages` rendered through `backend`'s chat template, up to where the
/// assistant's turn begins: what the template starts that turn with (reasoning models' templates
/// end with `<think>\n`). Empty where the backend cannot render a chat prompt to tokens (a
/// server without `/tokenize` or `/apply-template`, which then gets an assistant prefix as a
/// message of its own, not after the template's text).
pub async fn template_tail(backend: &dyn Backend, messages: &[Message]) -> Result<String> {
    let prompt = Prompt::Chat {
        messages: messages.to_vec(),
        assistant_prefix: String::new(),
    };
    let ids = match backend.tokenize(TokenizeInput::Prompt(&prompt)).await {
        Ok(ids) => ids,
        Err(Error::Unsupported { .. }) => return Ok(String::new()),
        Err(e) => return Err(e),
    };
    // Enough tokens for a tag spelt out piece by piece, and what follows it.
    let tail = ids.get(ids.len().saturating_sub(32)..).unwrap_or_default();
    match backend.detokenize(tail).await {
        Ok(text) => Ok(text),
        Err(Error::Unsupported { .. }) => Ok(String::new()),
        Err(e) => Err(e),
    }
}

/// What of `prefix`, the text an assistant turn is to start with, is still to be written after
/// the template's `tail` ([`template_tail`]): the template may have written its start already
/// (`<think>\n`, where `prefix` is `<think>` or `<think>\n\n</think>\n\n`). Where `prefix`
/// starts with a tag (its first word starts with a mark, like `<`), the longest leading part of
/// it that covers that word and that the tail ends with (trailing whitespace aside) is left
/// out, and so is whitespace at the start of the rest that the tail already ends with. A
/// prefix that starts with a word of text is written whole.
pub fn still_to_write<'a>(tail: &str, prefix: &'a str) -> &'a str {
    let body = tail.trim_end();
    let spaces = tail.get(body.len()..).unwrap_or_default();
    let first_word = prefix.split_whitespace().next().unwrap_or("");
    let min = prefix.len() - prefix.trim_start().len() + first_word.len();
    if !first_word.starts_with(|c: char| !c.is_alphanumeric()) {
        return prefix;
    }
    let overlap = (min..=prefix.len())
        .rev()
        .filter(|&k| prefix.is_char_boundary(k))
        .find(|&k| {
            let part = prefix.get(..k).unwrap_or_default();
            !part.ends_with(char::is_whitespace) && body.ends_with(part)
        });
    let Some(k) = overlap else {
        return prefix;
    };
    let rest = prefix.get(k..).unwrap_or_default();
    let shared = rest
        .char_indices()
        .zip(spaces.chars())
        .take_while(|((_, a), b)| a == b)
        .last()
        .map_or(0, |((i, c), _)| i + c.len_utf8());
    rest.get(shared..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_template_wrote_is_not_written_again() {
        let r1 = "<|im_start|>assistant\n<think>\n";
        assert_eq!(still_to_write(r1, "<think>"), "");
        assert_eq!(still_to_write(r1, "<think>\n"), "");
        // No thinking after a template that opened it: the block is closed at once.
        assert_eq!(
            still_to_write(r1, "<think>\n\n</think>\n\n"),
            "\n</think>\n\n"
        );
        // A template that opens nothing: all of it.
        let chatml = "<|im_start|>assistant\n";
        assert_eq!(still_to_write(chatml, "<think>"), "<think>");
        assert_eq!(
            still_to_write(chatml, "<think>\n\n</think>\n\n"),
            "<think>\n\n</think>\n\n"
        );
        // s1's way of opening: the whole tag, or nothing of it.
        assert_eq!(
            still_to_write(
                "<|im_start|>assistant\n<|im_start|>think\n",
                "<|im_start|>think"
            ),
            ""
        );
        assert_eq!(
            still_to_write("<|im_start|>", "<|im_start|>think"),
            "<|im_start|>think"
        );
        // Only tags: text is written whole, whatever the template ends with.
        assert_eq!(
            still_to_write("x\nassistant\n", "assistant said"),
            "assistant said"
        );
        assert_eq!(still_to_write("x\nassistant", "sistant"), "sistant");
        assert_eq!(still_to_write(r1, ""), "");
        assert_eq!(still_to_write("", "<think>"), "<think>");
    }

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
