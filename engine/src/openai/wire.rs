//! The wire: replies as servers send them, token counts and log-probabilities read from them,
//! and small helpers for messages and errors.

use std::sync::atomic::Ordering;

use serde::Deserialize;
use serde_json::{json, Value};

use super::OpenAiBackend;
use crate::backend::{Choice, FinishReason, Message, TokenLogprob, TopLogprob};
use crate::error::{Error, Result};

impl OpenAiBackend {
    /// Log-probabilities in either of the two shapes servers send: `{content: [...]}` (chat, and
    /// llama.cpp's completions) or `{tokens, token_logprobs, top_logprobs}` (legacy completions).
    /// `None` for anything else (`null`, `{}`, `{"content": null}`): no counts are read from it.
    /// `resolve_ids`: top alternatives given without ids get them from the tokenizer, which
    /// fails if the server cannot answer. Natural logs, whatever base the server wrote; a
    /// chosen token's log-probability the server left out (or sent as `null`) is negative
    /// infinity, as a missing alternative's is: not known, so never read as certain (0).
    pub(super) async fn logprobs(
        &self,
        value: &Value,
        resolve_ids: bool,
    ) -> Result<Option<Vec<TokenLogprob>>> {
        let mut out = Vec::new();
        if let Some(content) = value.get("content").and_then(Value::as_array) {
            // mistral.rs's server writes base-10 logs (`prob.log(10.0)` in mistralrs-core's
            // sampler), the chosen token's and its alternatives': made natural here, as the
            // in-process backend makes its engine's. Its reply is told by its shape (see
            // `from_mistral_rs`).
            let scale = if content.iter().any(from_mistral_rs) {
                std::f32::consts::LN_10
            } else {
                1.0
            };
            for entry in content {
                let mut top = Vec::new();
                for t in entry
                    .get("top_logprobs")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let (id, token, logprob) = top_alternative(t);
                    let id = match id {
                        Some(id) => Some(id),
                        None if resolve_ids => self.token_id(&token).await?,
                        None => None,
                    };
                    top.push(TopLogprob {
                        id: id.unwrap_or(u32::MAX),
                        token,
                        logprob: logprob * scale,
                    });
                }
                out.push(TokenLogprob {
                    token: entry
                        .get("token")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    logprob: chosen_logprob(entry.get("logprob")) * scale,
                    top,
                });
            }
            return Ok(Some(out));
        }
        let Some(tokens) = value.get("tokens").and_then(Value::as_array) else {
            return Ok(None);
        };
        let lps = value.get("token_logprobs").and_then(Value::as_array);
        let tops = value.get("top_logprobs").and_then(Value::as_array);
        for (i, token) in tokens.iter().enumerate() {
            let mut top = Vec::new();
            if let Some(map) = tops.and_then(|t| t.get(i)).and_then(Value::as_object) {
                for (text, lp) in map {
                    top.push(TopLogprob {
                        id: if resolve_ids {
                            self.token_id(text).await?.unwrap_or(u32::MAX)
                        } else {
                            u32::MAX
                        },
                        token: text.clone(),
                        logprob: lp.as_f64().unwrap_or(f64::MIN) as f32,
                    });
                }
                top.sort_by(|a, b| b.logprob.total_cmp(&a.logprob));
            }
            out.push(TokenLogprob {
                token: token.as_str().unwrap_or_default().to_string(),
                logprob: chosen_logprob(lps.and_then(|l| l.get(i))),
                top,
            });
        }
        Ok(Some(out))
    }

    /// Gives each choice its token count: the server's count where the reply holds one choice,
    /// else `max_tokens` for a choice cut by length (ponder keeps requests inside the window, so
    /// only `max_tokens` cuts them) or more if the log-probabilities show more, else the
    /// log-probabilities (asked for whenever n > 1) with what llama.cpp leaves out of them
    /// counted back, else the tokenizer on the text (a stop sequence the server cut is then not
    /// counted), else the server's total shared out.
    pub(super) async fn count_tokens(&self, reply: &mut Reply, max_tokens: usize) -> Result<()> {
        let single = reply.choices.len() == 1;
        let mut uncounted = Vec::new();
        for (i, choice) in reply.choices.iter_mut().enumerate() {
            choice.completion_tokens = match (single, reply.completion_tokens, &choice.logprobs) {
                (true, Some(n), _) => n as usize,
                (_, _, Some(l)) if choice.finish_reason == FinishReason::Length => {
                    l.len().max(max_tokens)
                }
                // No entries at all on llama.cpp: the stop dropped them (they are asked for
                // with n > 1).
                (_, _, l) if self.info.pieces && choice.finish_reason == FinishReason::Stop => {
                    self.llama_cpp_tokens(choice, l.as_ref().map_or(0, Vec::len))
                        .await
                }
                (_, _, Some(l)) => l.len(),
                _ if choice.finish_reason == FinishReason::Length => max_tokens,
                _ if self.info.tokenize => match self.server_tokenize(&choice.text, false).await {
                    Ok(ids) => ids.len(),
                    // The generation stands (it was paid for): its bytes bound its tokens.
                    Err(e) => {
                        tracing::warn!(error = %e, "counting a completion's tokens failed; counting its bytes");
                        choice.text.len().min(max_tokens)
                    }
                },
                // No count from the server at all: bytes bound tokens from above.
                _ if reply.completion_tokens.is_none() => choice.text.len().min(max_tokens),
                _ => {
                    uncounted.push(i);
                    0
                }
            };
        }
        if !uncounted.is_empty() {
            // No count of their own: what the server's total leaves, shared out evenly.
            let counted: u64 = reply
                .choices
                .iter()
                .map(|c| c.completion_tokens as u64)
                .sum();
            let left = reply.completion_tokens.unwrap_or(0).saturating_sub(counted);
            let n = uncounted.len() as u64;
            for (k, &i) in uncounted.iter().enumerate() {
                if let Some(choice) = reply.choices.get_mut(i) {
                    choice.completion_tokens =
                        (left / n + u64::from((k as u64) < left % n)) as usize;
                }
            }
        }
        Ok(())
    }

    /// The tokens of a stop-ended choice on llama.cpp, from its `entries` log-probabilities and
    /// what its server leaves out of them (read there): each token after which the text ended
    /// inside a character (it makes an entry only once the character is whole), and from the
    /// end as many entries as its tokenizer gives the stop sequence that ended the choice, or
    /// all there were. Tokens inside characters are read from the tokenizer's own cut of the
    /// text and the stop, which is the model's unless it wrote a character's bytes in pieces
    /// its tokenizer would not have cut; where no entries are left, that cut is the count.
    /// Where the server cannot answer, what it would tell goes uncounted (a warning says so,
    /// once).
    async fn llama_cpp_tokens(&self, choice: &Choice, entries: usize) -> usize {
        let stop = choice.stop_sequence.as_deref().unwrap_or_default();
        let written = format!("{}{stop}", choice.text);
        let warn = |e: Error| {
            if !self.warned_counts.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %e, "counting a completion's tokens through /tokenize failed: those its log-probabilities leave out go uncounted");
            }
        };
        let mut stop_tokens = 0;
        if !stop.is_empty() {
            let known = self
                .stop_lengths
                .lock()
                .ok()
                .and_then(|m| m.get(stop).copied());
            match known {
                Some(n) => stop_tokens = n,
                None => match self.tokenize_pieces(stop, false).await {
                    Ok(pieces) => {
                        stop_tokens = pieces.len();
                        if let Ok(mut m) = self.stop_lengths.lock() {
                            m.insert(stop.to_string(), stop_tokens);
                        }
                    }
                    Err(e) => warn(e),
                },
            }
        }
        let dropped_all = entries == 0 && !stop.is_empty();
        if written.is_ascii() && !dropped_all {
            return entries + stop_tokens;
        }
        match self.tokenize_pieces(&written, false).await {
            Ok(pieces) if dropped_all => pieces.len(),
            Ok(pieces) => {
                let bytes: Vec<Vec<u8>> = pieces.into_iter().map(|(_, piece)| piece).collect();
                entries + stop_tokens + inside_characters(&bytes)
            }
            Err(e) => {
                warn(e);
                entries + stop_tokens
            }
        }
    }
}

/// A chosen token's log-probability as the server sent it; negative infinity where it is
/// missing or not a number (`null`). Not 0, which reads as certain (the router's confidence in
/// an answer is the product of its tokens' probabilities); not NaN either, which compares as
/// neither low nor high and would pass any threshold: a token whose probability is not known
/// leaves its answer unsure.
fn chosen_logprob(value: Option<&Value>) -> f32 {
    value
        .and_then(Value::as_f64)
        .map_or(f32::NEG_INFINITY, |l| l as f32)
}

/// Whether an entry of the `{content: [...]}` shape is mistral.rs's server's: an alternative
/// with its id under `token`, a number (every other server writes text there).
fn from_mistral_rs(entry: &Value) -> bool {
    entry
        .get("top_logprobs")
        .and_then(Value::as_array)
        .is_some_and(|top| {
            top.iter()
                .any(|t| t.get("token").is_some_and(Value::is_number))
        })
}

/// A top alternative of the `{content: [...]}` shape: its id where the server gives one, its
/// text and its log-probability. Most servers give the text under `token` and the id, if at
/// all, under `id` (llama.cpp); mistral.rs's server gives the id under `token`, a number, and
/// the text under `bytes` (`null` where it has no tokenizer to decode it). The log-probability
/// as the server wrote it (base 10 on mistral.rs: `OpenAiBackend::logprobs` makes it natural).
pub(super) fn top_alternative(t: &Value) -> (Option<u32>, String, f32) {
    let logprob = t.get("logprob").and_then(Value::as_f64).unwrap_or(f64::MIN) as f32;
    let id = |v: Option<&Value>| v?.as_u64().and_then(|id| u32::try_from(id).ok());
    match t.get("token") {
        Some(Value::String(token)) => (id(t.get("id")), token.clone(), logprob),
        token => {
            // (A list of byte values, OpenAI's form of `bytes`, is read too.)
            let text = t
                .get("bytes")
                .and_then(piece_bytes)
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default();
            (id(t.get("id")).or_else(|| id(token)), text, logprob)
        }
    }
}

/// How many of a text's tokens, written one after another, leave it ending inside a character,
/// as llama.cpp's server tells (a lead byte in the last four whose character is not whole).
pub(super) fn inside_characters(pieces: &[Vec<u8>]) -> usize {
    let mut tail: Vec<u8> = Vec::new();
    let mut inside = 0;
    for piece in pieces {
        tail.extend_from_slice(piece);
        let keep = tail.len().saturating_sub(4);
        tail.drain(..keep);
        let cut = (1..=tail.len()).any(|back| {
            let byte = tail[tail.len() - back];
            let width = match byte {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                _ => 0,
            };
            back < width
        });
        inside += usize::from(cut);
    }
    inside
}

/// A token's bytes from llama.cpp's `/tokenize` piece: a string, or an array of byte values.
pub(super) fn piece_bytes(piece: &Value) -> Option<Vec<u8>> {
    match piece {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Array(bytes) => bytes
            .iter()
            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect(),
        _ => None,
    }
}

/// A parsed reply.
#[derive(Debug)]
pub(super) struct Reply {
    pub(super) choices: Vec<Choice>,
    pub(super) prompt_tokens: u64,
    /// Of those, the ones the server's prefix cache held (0 when it does not say).
    pub(super) cached_prompt_tokens: u64,
    /// The server's count (for one choice only, on llama.cpp, whatever `n`).
    pub(super) completion_tokens: Option<u64>,
    /// Indices of the choices the server aborted (`finish_reason: "abort"`): counted, not
    /// answers.
    pub(super) aborted: Vec<usize>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawReply {
    #[serde(default)]
    pub(super) choices: Vec<RawChoice>,
    pub(super) usage: Option<RawUsage>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawChoice {
    #[serde(default)]
    pub(super) index: usize,
    pub(super) text: Option<String>,
    pub(super) message: Option<RawMessage>,
    pub(super) finish_reason: Option<String>,
    pub(super) logprobs: Option<Value>,
    /// vLLM: the stop string (or token id) that ended the choice; `null` for end-of-sequence.
    /// Absent on servers that do not say (llama.cpp).
    #[serde(default, deserialize_with = "present")]
    pub(super) stop_reason: Option<Value>,
    /// SGLang's name for the same (a string, a token id, or `null`).
    #[serde(default, deserialize_with = "present")]
    pub(super) matched_stop: Option<Value>,
}

/// Tells a field sent as `null` (`Some(Value::Null)`) from one not sent (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// The last generated token in log-probabilities of the `{content: [...]}` shape (llama.cpp
/// gives ids).
pub(super) fn last_entry(logprobs: Option<&Value>) -> LastEntry {
    let entries = match logprobs {
        None | Some(Value::Null) => return LastEntry::None,
        Some(l) => l.get("content").and_then(Value::as_array),
    };
    match entries.map(|e| e.last()) {
        Some(None) => LastEntry::None,
        Some(Some(last)) => last
            .get("id")
            .and_then(Value::as_u64)
            .and_then(|id| u32::try_from(id).ok())
            .map_or(LastEntry::Unknown, LastEntry::Id),
        None => LastEntry::Unknown,
    }
}

/// The last entry of a choice's log-probabilities, as llama.cpp gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LastEntry {
    /// No entries (`null`, or none in `content`).
    None,
    /// The token id of the last one.
    Id(u32),
    /// Entries in another shape, or without ids.
    Unknown,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawMessage {
    pub(super) content: Option<String>,
    /// The thinking a server's reasoning parser took out of the content (vLLM's and
    /// llama.cpp's `reasoning_content`).
    #[serde(default)]
    pub(super) reasoning_content: Option<String>,
    /// The same, as newer vLLM names it. Not an alias of `reasoning_content`: vLLM releases
    /// from late 2025 send both keys (one a copy of the other, or both `null`), which serde
    /// refuses as a duplicate field for an alias.
    #[serde(default)]
    pub(super) reasoning: Option<String>,
}

impl RawMessage {
    /// The text as the model wrote it: the thinking a reasoning parser took out put back in
    /// its block (left open where the content is missing: the turn was cut while thinking),
    /// so that answers are read after it as in process.
    ///
    /// `continued`: the reply continues an assistant prefix. The parser then saw only the
    /// continuation, which has no opening tag (the prefix holds it, or closed the block
    /// already, or never opened one): what it took for thinking is text up to the end of the
    /// block where the content follows it, and the whole continuation where no content does
    /// (a parser that finds no end of thinking gives everything as thinking).
    pub(super) fn text(self, continued: bool) -> Option<String> {
        let thinking = self
            .reasoning_content
            .filter(|r| !r.is_empty())
            .or(self.reasoning.filter(|r| !r.is_empty()));
        match (thinking, self.content) {
            (Some(thinking), Some(content)) if continued => {
                Some(format!("{thinking}\n</think>\n\n{content}"))
            }
            (Some(thinking), None) if continued => Some(thinking),
            (Some(thinking), Some(content)) => {
                Some(format!("<think>\n{thinking}\n</think>\n\n{content}"))
            }
            (Some(thinking), None) => Some(format!("<think>\n{thinking}")),
            (None, content) => content,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawUsage {
    #[serde(default)]
    pub(super) prompt_tokens: Option<u64>,
    /// Absent or `null` (vLLM's type allows it): counted as where there is no usage at all.
    #[serde(default)]
    pub(super) completion_tokens: Option<u64>,
    #[serde(default)]
    pub(super) prompt_tokens_details: Option<RawPromptDetails>,
}

/// OpenAI's breakdown of the prompt; llama.cpp's server and vLLM (with
/// `--enable-prompt-tokens-details`) fill in the prefix-cache hits.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawPromptDetails {
    #[serde(default)]
    pub(super) cached_tokens: Option<u64>,
}

pub(super) fn chat_messages(messages: &[Message], assistant_prefix: &str) -> Vec<Value> {
    let mut out: Vec<Value> = messages
        .iter()
        .map(|m| json!({ "role": m.role.as_str(), "content": m.content }))
        .collect();
    if !assistant_prefix.is_empty() {
        out.push(json!({ "role": "assistant", "content": assistant_prefix }));
    }
    out
}

pub(super) fn token_ids(value: Option<&Value>) -> Option<Vec<u32>> {
    value?
        .as_array()?
        .iter()
        // llama.cpp answers `{id, piece}` objects when asked for pieces, bare ids otherwise.
        .map(|t| t.as_u64().or_else(|| t.get("id").and_then(Value::as_u64)))
        .map(|id| id.and_then(|id| u32::try_from(id).ok()))
        .collect()
}

/// The server's own words from an error body (`{"error": {"message": ...}}` and variants).
pub(super) fn server_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    parsed
        .as_ref()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("message"))
                .or_else(|| v.get("detail"))
                .or_else(|| v.get("error"))
        })
        .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_string))
        .unwrap_or_else(|| clip(body))
}

pub(super) fn clip(text: &str) -> String {
    let mut end = text.len().min(400);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default().to_string()
}

pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A `Retry-After` header's wait: seconds, or an HTTP date (RFC 9110), from `now`; a date
/// already past is no wait.
pub(super) fn retry_after(value: &str, now: std::time::SystemTime) -> Option<std::time::Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(std::time::Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use serde_json::json;

    use super::{inside_characters, piece_bytes, retry_after, top_alternative, RawChoice};

    #[test]
    fn thinking_a_reasoning_parser_took_out_is_put_back() {
        let read = |json: &str, continued: bool| {
            serde_json::from_str::<super::RawMessage>(json)
                .unwrap()
                .text(continued)
        };
        let message = |json: &str| read(json, false);
        assert_eq!(
            message(r#"{"content": "7", "reasoning_content": "3 + 4"}"#).as_deref(),
            Some("<think>\n3 + 4\n</think>\n\n7")
        );
        assert_eq!(
            message(r#"{"content": null, "reasoning": "3 +"}"#).as_deref(),
            Some("<think>\n3 +")
        );
        assert_eq!(message(r#"{"content": "7"}"#).as_deref(), Some("7"));
        // vLLM from late 2025 sends both names, a copy or both null.
        assert_eq!(
            message(r#"{"content": "7", "reasoning": "3 + 4", "reasoning_content": "3 + 4"}"#)
                .as_deref(),
            Some("<think>\n3 + 4\n</think>\n\n7")
        );
        assert_eq!(
            message(r#"{"content": "7", "reasoning": null, "reasoning_content": null}"#).as_deref(),
            Some("7")
        );
        // Continuing a prefix: the parser saw no opening tag. Thinking closed in the
        // continuation, then the answer; or a continuation it took whole for thinking (the
        // prefix had closed the block, or opened none).
        assert_eq!(
            read(r#"{"content": "7", "reasoning": "so 3 + 4"}"#, true).as_deref(),
            Some("so 3 + 4\n</think>\n\n7")
        );
        assert_eq!(
            read(r#"{"content": null, "reasoning": " 7."}"#, true).as_deref(),
            Some(" 7.")
        );
        assert_eq!(read(r#"{"content": " 7."}"#, true).as_deref(), Some(" 7."));
    }

    #[test]
    fn tokens_that_end_inside_a_character_are_counted_as_llama_cpp_leaves_them_out() {
        // llama-server's `/tokenize` of "🌿 🔥 日本語" for SmolLM2, with pieces.
        let reply = json!([
            [240, 159],
            [140],
            [191],
            [32, 240, 159],
            [148],
            [165],
            [32, 230],
            [151],
            [165],
            "本",
            [232],
            [170],
            [158]
        ]);
        let pieces: Vec<Vec<u8>> = reply
            .as_array()
            .unwrap()
            .iter()
            .map(|p| piece_bytes(p).unwrap())
            .collect();
        assert_eq!(String::from_utf8(pieces.concat()).unwrap(), "🌿 🔥 日本語");
        // Two of each character's three tokens end inside it; "本" is one token.
        assert_eq!(inside_characters(&pieces), 8);
        assert_eq!(inside_characters(&[b"plain text".to_vec()]), 0);
        // A token that ends a character and starts the next ends inside one; one that writes
        // a whole 4-byte character after a cut one does not (the cut lead byte is 5 back, out
        // of the server's sight).
        assert_eq!(
            inside_characters(&[vec![0xC3], vec![0xA9, 0xE6], vec![0x97, 0xA5]]),
            2
        );
        assert_eq!(
            inside_characters(&[vec![0xE6], "🌿".as_bytes().to_vec()]),
            1
        );
        assert_eq!(piece_bytes(&json!([256])), None);
        assert_eq!(piece_bytes(&json!(7)), None);
    }

    #[test]
    fn top_alternatives_are_read_in_each_servers_shape() {
        // mistral.rs's server (0.8.1): each alternative's id under `token`, its text under
        // `bytes` (`null` without a tokenizer); the chosen token's text under `token`.
        let choice: RawChoice = serde_json::from_value(json!({
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Yes"},
            "logprobs": {"content": [{
                "token": "Yes",
                "logprob": -0.05,
                "bytes": [89, 101, 115],
                "top_logprobs": [
                    {"token": 9642, "logprob": -0.05, "bytes": "Yes"},
                    {"token": 2822, "logprob": -3.2, "bytes": "No"},
                    {"token": 17, "logprob": -9.0, "bytes": null}
                ]
            }]}
        }))
        .unwrap();
        let logprobs = choice.logprobs.unwrap();
        let top: Vec<_> = logprobs["content"][0]["top_logprobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(top_alternative)
            .collect();
        assert_eq!(
            top,
            [
                (Some(9642), "Yes".to_string(), -0.05),
                (Some(2822), "No".to_string(), -3.2),
                (Some(17), String::new(), -9.0),
            ]
        );
        // llama.cpp's (text under `token`, id under `id`), OpenAI's (no id, byte values).
        assert_eq!(
            top_alternative(&json!({"id": 7, "token": "No", "logprob": -1.5, "bytes": [78, 111]})),
            (Some(7), "No".to_string(), -1.5)
        );
        assert_eq!(
            top_alternative(&json!({"token": "No", "logprob": -1.5, "bytes": [78, 111]})),
            (None, "No".to_string(), -1.5)
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after(" 10 ", now), Some(Duration::from_secs(10)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(retry_after(&later, now), Some(Duration::from_secs(30)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(retry_after("soon", now), None);
    }
}
