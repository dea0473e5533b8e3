//! The start of the assistant's turn: what a chat template writes there itself, and what is
//! left of a prefix to write after it.
//!
//! The templates of reasoning models that always think (DeepSeek-R1's distills, QwQ) end their
//! generation prompt with `<think>\n`. A strategy that opens the thinking block itself (budget
//! forcing), closes it at once (a router's short answer), or reads the first token of the turn
//! as an answer (a yes/no judge) has to know, or the model sees a block opened twice, or is
//! asked for "Yes" where it expects to think.

use crate::answer::THINK_OPEN;
use crate::backend::{Backend, Message, Prompt, TokenizeInput};
use crate::error::{Error, Result};

/// The ids `piece` is written as after other text: what tokenizing `"x" + piece` adds to
/// `"x"`. A piece tokenized alone is not that on every tokenizer: SentencePiece (Llama-2's,
/// Mistral's) puts a space before the text it tokenizes, so `" Wait"` alone is `"▁▁", "Wait"`
/// and `"</think>"` alone `"▁</", ...`, never what a model writes mid-text (byte-level BPE
/// splits at the letter either way, and reads both the same). Where `"x"` merges with what
/// follows it, the piece alone.
pub async fn piece_after_text(backend: &dyn Backend, piece: &str) -> Result<Vec<u32>> {
    let word = backend.tokenize(TokenizeInput::Piece("x")).await?;
    let written = backend
        .tokenize(TokenizeInput::Piece(&format!("x{piece}")))
        .await?;
    match written.strip_prefix(word.as_slice()) {
        Some(added) if !added.is_empty() => Ok(added.to_vec()),
        _ => backend.tokenize(TokenizeInput::Piece(piece)).await,
    }
}

/// An empty thinking block: written at the start of the turn, a reasoning model answers at
/// once (NoThinking, arXiv 2504.09858; Qwen3's `enable_thinking = false` writes the same).
pub const NO_THINKING: &str = "<think>\n\n</think>\n\n";

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

/// What to write at the start of the turn so that its first token is the answer: nothing, or,
/// where the template opens a thinking block, what closes it ([`NO_THINKING`] less what the
/// template wrote). Read from the template's rendering of a one-message conversation.
pub async fn answer_opening(backend: &dyn Backend) -> Result<String> {
    let tail = template_tail(backend, &[Message::user(ANY_QUESTION)]).await?;
    Ok(if tail.trim_end().ends_with(THINK_OPEN) {
        still_to_write(&tail, NO_THINKING).to_string()
    } else {
        String::new()
    })
}

/// Whether `backend`'s chat template opens a thinking block at the start of the assistant's
/// turn, so that a completion is thinking until it writes `</think>` (reasoning models that
/// always think: DeepSeek-R1's distills, QwQ). False where the backend cannot render a chat
/// prompt to tokens.
pub async fn opens_thinking(backend: &dyn Backend) -> Result<bool> {
    let tail = template_tail(backend, &[Message::user(ANY_QUESTION)]).await?;
    Ok(tail.trim_end().ends_with(THINK_OPEN))
}

/// The question a template is rendered with to see how it starts the assistant's turn.
const ANY_QUESTION: &str = "Is 2 + 2 = 4?";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_judge_closes_the_thinking_its_template_opens() {
        use crate::scripted::ScriptedBackend;
        let r1 = ScriptedBackend::new(Vec::<String>::new()).with_opening("<think>\n");
        assert_eq!(answer_opening(&r1).await.unwrap(), "\n</think>\n\n");
        let plain = ScriptedBackend::new(Vec::<String>::new());
        assert_eq!(answer_opening(&plain).await.unwrap(), "");
    }

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
}
