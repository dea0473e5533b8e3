//! [`ScriptedBackend`]: a deterministic backend for testing strategy control flow.
//!
//! Replies are consumed in order, one per completion (a request for `n` takes `n`); every
//! request is recorded; asking for more than the script holds is an error. Tokens are bytes:
//! a prompt costs its byte length (chat messages rendered as `role: content\n`), a completion
//! its byte length, cut at `max_tokens` bytes (then it finishes by length). Stop sequences cut
//! a reply before the first one. Asked for log-probabilities, it returns one entry per
//! character generated, the stop sequence included, as a real model would.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::backend::{
    Backend, Capabilities, Choice, FinishReason, Generation, GenerationRequest, Prompt,
    TokenLogprob, TokenizeInput, TopLogprob,
};
use crate::error::{Error, Result};
use crate::usage::Usage;

/// One scripted reply.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A completion with this text.
    Text(String),
    /// A completion with this text whose every token has this natural-log probability
    /// (`Text` replies are certain: 0).
    Unsure(String, f32),
    /// This choice fails with an inference error carrying this message: the call fails with
    /// it where no other choice of the call is written, else returns the others (as the real
    /// backends do).
    Fail(String),
    /// A completion with this text and no log-probabilities even when asked for them, like
    /// llama-server's reply whose only token ends inside a UTF-8 character (`"\u{FFFD}"`).
    /// Played whole, whatever `max_tokens`.
    Bare(String),
}

/// A backend that plays a script.
#[derive(Debug, Default)]
pub struct ScriptedBackend {
    script: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<GenerationRequest>>,
    /// Leaves the top log-probabilities out, like a server that ignores `top_logprobs`.
    no_top_logprobs: bool,
    /// How long each call takes before it plays its reply.
    delay: Option<std::time::Duration>,
    /// What the "chat template" starts the assistant turn with ([`ScriptedBackend::with_opening`]).
    opening: String,
    /// The context window ([`ScriptedBackend::with_context`]).
    context_tokens: Option<usize>,
}

impl ScriptedBackend {
    /// A backend that answers with `texts`, in order.
    pub fn new<I, S>(texts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::from_replies(texts.into_iter().map(|t| Reply::Text(t.into())))
    }

    /// A backend that plays `replies`, in order.
    pub fn from_replies(replies: impl IntoIterator<Item = Reply>) -> Self {
        Self {
            script: Mutex::new(replies.into_iter().collect()),
            requests: Mutex::new(Vec::new()),
            no_top_logprobs: false,
            delay: None,
            opening: String::new(),
            context_tokens: None,
        }
    }

    /// A context window of `tokens` (a byte a token): a request whose prompt and `max_tokens`
    /// do not fit is refused (`PromptTooLong`), unrecorded, as the in-process backend refuses
    /// it before sending.
    pub fn with_context(mut self, tokens: usize) -> Self {
        self.context_tokens = Some(tokens);
        self
    }

    /// Each call takes `delay` before it is recorded and plays its reply (calls in flight
    /// together, a slow model). A request whose deadline comes first gives up there, as a
    /// server's does (`BudgetExhausted`), unrecorded.
    pub fn with_delay(mut self, delay: std::time::Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Replies without top log-probabilities (each generated token is otherwise its own only,
    /// certain, alternative), like a server that ignores `top_logprobs`.
    pub fn without_top_logprobs(mut self) -> Self {
        self.no_top_logprobs = true;
        self
    }

    /// Chat prompts render with `opening` at the start of the assistant turn, before the
    /// prompt's assistant prefix, as a reasoning model's template opens `<think>` itself.
    pub fn with_opening(mut self, opening: impl Into<String>) -> Self {
        self.opening = opening.into();
        self
    }

    /// The prompt as this backend sees it: [`ScriptedBackend::render`], with the assistant
    /// turn's opening.
    fn rendered(&self, prompt: &Prompt) -> String {
        match prompt {
            Prompt::Chat {
                messages,
                assistant_prefix,
            } => Self::render(&Prompt::Chat {
                messages: messages.clone(),
                assistant_prefix: format!("{}{assistant_prefix}", self.opening),
            }),
            _ => Self::render(prompt),
        }
    }

    /// The tokens `prompt` is to this backend (a byte a token), as a request's usage and its
    /// context window ([`ScriptedBackend::with_context`]) count them.
    pub fn prompt_tokens(&self, prompt: &Prompt) -> usize {
        self.rendered(prompt).len()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<GenerationRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Replies not yet consumed.
    pub fn remaining(&self) -> usize {
        self.script.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// The prompt as text, the way this backend counts it.
    pub fn render(prompt: &Prompt) -> String {
        match prompt {
            Prompt::Text(text) => text.clone(),
            Prompt::Tokens(ids) => ids
                .iter()
                .map(|&b| char::from(u8::try_from(b).unwrap_or(b'?')))
                .collect(),
            Prompt::Chat {
                messages,
                assistant_prefix,
            } => {
                let mut text: String = messages
                    .iter()
                    .map(|m| format!("{}: {}\n", m.role.as_str(), m.content))
                    .collect();
                text.push_str("assistant: ");
                text.push_str(assistant_prefix);
                text
            }
        }
    }
}

fn cut_at_char_boundary(text: &str, max_bytes: usize) -> &str {
    let mut end = max_bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

#[async_trait]
impl Backend for ScriptedBackend {
    async fn generate(&self, request: GenerationRequest) -> Result<Generation> {
        if let Some(delay) = self.delay {
            let done = std::time::Instant::now() + delay;
            match request.deadline {
                Some(deadline) if deadline < done => {
                    tokio::time::sleep_until(deadline.into()).await;
                    return Err(Error::BudgetExhausted {
                        resource: crate::budget::Resource::WallTime,
                    });
                }
                _ => tokio::time::sleep(delay).await,
            }
        }
        let prompt_tokens = self.prompt_tokens(&request.prompt) as u64;
        if let Some(context_tokens) = self.context_tokens {
            let prompt_tokens = prompt_tokens as usize;
            if prompt_tokens + request.max_tokens > context_tokens {
                return Err(Error::PromptTooLong {
                    prompt_tokens,
                    max_tokens: request.max_tokens,
                    context_tokens,
                });
            }
        }
        let mut replies = Vec::with_capacity(request.n);
        {
            let mut script = self.script.lock().map_err(|_| Error::EngineGone {
                context: "scripted backend poisoned",
            })?;
            for _ in 0..request.n {
                replies.push(script.pop_front().ok_or(Error::Inference {
                    message: "the script is exhausted".into(),
                })?);
            }
        }
        if let Ok(mut requests) = self.requests.lock() {
            requests.push(request.clone());
        }
        let mut choices = Vec::with_capacity(replies.len());
        let mut failed = None;
        for reply in replies {
            let (text, logprob, bare) = match reply {
                Reply::Text(text) => (text, 0.0, false),
                Reply::Unsure(text, logprob) => (text, logprob, false),
                Reply::Bare(text) => (text, 0.0, true),
                Reply::Fail(message) => {
                    failed.get_or_insert(Error::Inference { message });
                    continue;
                }
            };
            let stop_at = request
                .stop
                .iter()
                .filter_map(|s| text.find(s.as_str()).map(|at| (at, s.len())))
                .min()
                // A stop string past max_tokens was never written whole: the reply is cut
                // there instead (a bare reply is never cut).
                .filter(|(at, len)| bare || at + len <= request.max_tokens);
            // Like a real model, the generated tokens include the stop sequence; one per byte.
            let generated_len = stop_at.map_or(text.len(), |(at, len)| at + len);
            let logprobs = request.top_logprobs.filter(|_| !bare).map(|_| {
                text.get(..generated_len.min(request.max_tokens))
                    .unwrap_or_default()
                    .chars()
                    .map(|c| TokenLogprob {
                        token: c.to_string(),
                        logprob,
                        // The token written is the only alternative (id: its first byte).
                        top: (!self.no_top_logprobs && request.top_logprobs != Some(0))
                            .then(|| TopLogprob {
                                id: c.to_string().bytes().next().map_or(0, u32::from),
                                token: c.to_string(),
                                logprob,
                            })
                            .into_iter()
                            .collect(),
                    })
                    .collect()
            });
            let mut stop_sequence = stop_at
                .and_then(|(at, len)| text.get(at..at + len))
                .map(String::from);
            let stopped = stop_at.map(|(at, _)| text.get(..at).unwrap_or_default().to_string());
            let (text, mut finish) = match stopped {
                Some(cut) => (cut, FinishReason::Stop),
                None => (text, FinishReason::Stop),
            };
            let kept = match bare {
                true => text.clone(),
                false => cut_at_char_boundary(&text, request.max_tokens).to_string(),
            };
            if kept.len() < text.len() {
                finish = FinishReason::Length;
                stop_sequence = None;
            }
            // A stop string the model wrote was generated, and counts (it is cut from the text).
            let stop_tokens = stop_sequence.as_ref().map_or(0, String::len);
            choices.push(Choice {
                completion_tokens: kept.len() + stop_tokens,
                text: kept,
                finish_reason: finish,
                stop_sequence,
                logprobs,
            });
        }
        if let (Some(e), true) = (failed, choices.is_empty()) {
            return Err(e);
        }
        let completion_tokens = choices.iter().map(|c| c.completion_tokens as u64).sum();
        Ok(Generation {
            choices,
            usage: Usage {
                prompt_tokens,
                completion_tokens,
                calls: 1,
                elapsed_ms: 0,
                ..Usage::default()
            },
            cut_by: None,
        })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            backend: "scripted",
            context_tokens: self.context_tokens,
            logits_processors: false,
            // Asked for them, each token written comes with its log-probability and itself as
            // its one alternative.
            max_top_logprobs: 1,
            native_n: true,
            max_native_n: None,
            tries_n: false,
            eos_token_ids: Vec::new(),
            tokenizer: true,
        }
    }

    async fn tokenize(&self, input: TokenizeInput<'_>) -> Result<Vec<u32>> {
        let text = match input {
            TokenizeInput::Prompt(prompt) => self.rendered(prompt),
            TokenizeInput::Piece(text) => text.to_string(),
        };
        Ok(text.bytes().map(u32::from).collect())
    }

    async fn detokenize(&self, ids: &[u32]) -> Result<String> {
        Ok(Self::render(&Prompt::Tokens(ids.to_vec())))
    }
}

/// An [`EventSink`](crate::EventSink) that keeps every event, for tests.
#[derive(Debug, Default)]
pub struct Recorder(Mutex<Vec<crate::Event>>);

impl Recorder {
    /// A recorder, shared.
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::default()
    }

    /// Events of `problem`, sent to this recorder.
    pub fn events_of(self: &std::sync::Arc<Self>, problem: &str) -> crate::Events {
        crate::Events::new(
            std::sync::Arc::clone(self) as std::sync::Arc<dyn crate::EventSink>,
            problem,
        )
    }

    /// Everything kept so far.
    pub fn events(&self) -> Vec<crate::Event> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// What happened to `problem`, in order, with call times zeroed (they vary).
    pub fn kinds(&self, problem: &str) -> Vec<crate::EventKind> {
        self.events()
            .into_iter()
            .filter(|e| e.problem == problem)
            .map(|e| match e.kind {
                crate::EventKind::Call {
                    n,
                    prompt_tokens,
                    completion_tokens,
                    spent,
                    ..
                } => crate::EventKind::Call {
                    n,
                    prompt_tokens,
                    completion_tokens,
                    call_ms: 0,
                    spent,
                },
                kind => kind,
            })
            .collect()
    }

    /// The tokens (prompt and completion) of `problem`'s reported calls, summed.
    pub fn call_tokens(&self, problem: &str) -> u64 {
        self.kinds(problem)
            .iter()
            .map(|k| match k {
                crate::EventKind::Call {
                    prompt_tokens,
                    completion_tokens,
                    ..
                } => prompt_tokens + completion_tokens,
                _ => 0,
            })
            .sum()
    }

    /// What strategies did to `problem` (calls and limits left out).
    pub fn decisions(&self, problem: &str) -> Vec<crate::EventKind> {
        self.kinds(problem)
            .into_iter()
            .filter(|k| {
                !matches!(
                    k,
                    crate::EventKind::Call { .. } | crate::EventKind::Limited { .. }
                )
            })
            .collect()
    }
}

impl crate::EventSink for Recorder {
    fn emit(&self, event: &crate::Event) {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(event.clone());
    }
}
