//! The text-generation backend trait and its request and response types.
//!
//! A [`Backend`] turns a [`GenerationRequest`] into a [`Generation`]: `n` completions of one prompt,
//! each with its own token count. Backends are shared as `Arc<dyn Backend>`; wrappers such as
//! [`crate::Metered`] implement the same trait around another backend.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::usage::Usage;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: Role,
    /// The message text.
    pub content: String,
}

/// Who said a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// The role's name as chat templates spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

impl Message {
    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// What the model continues from.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Chat messages rendered through the model's own chat template, with the generation prompt,
    /// followed by `assistant_prefix` (text the assistant turn starts with, e.g. `<think>`).
    Chat {
        messages: Vec<Message>,
        assistant_prefix: String,
    },
    /// Raw text, tokenized as is (no chat template).
    Text(String),
    /// Exact token ids.
    Tokens(Vec<u32>),
}

impl Prompt {
    /// A chat prompt from messages, with no assistant prefix.
    pub fn chat(messages: Vec<Message>) -> Self {
        Self::Chat {
            messages,
            assistant_prefix: String::new(),
        }
    }
}

/// Sampling settings. Defaults: greedy (`temperature = 0`), no top-p or top-k filter.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Sampling {
    /// 0 is greedy.
    pub temperature: f64,
    /// Nucleus filter, in (0, 1].
    pub top_p: Option<f64>,
    /// Keep the k most likely tokens.
    pub top_k: Option<usize>,
    /// Seed of the sampler, where the backend takes one per request: OpenAI-compatible servers
    /// do; in process ponder draws the tokens of a request with a seed itself (mistral.rs 0.8.1
    /// has one generator for the engine), and reports the probabilities it drew from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl Sampling {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        Self::default()
    }

    /// Plain sampling at a temperature.
    pub fn with_temperature(temperature: f64) -> Self {
        Self {
            temperature,
            ..Self::default()
        }
    }
}

/// Changes the next-token logits of one sequence, given every token of its context so far.
///
/// Called once per generated token for every sequence of a request (the `n` choices share one
/// processor and are told apart by their context). `logits` are raw, before temperature and filters;
/// set an entry to `f32::NEG_INFINITY` to ban a token, or ban every other token to force one.
pub trait LogitsProcessor: Send + Sync {
    /// Edit `logits` in place for the sequence whose tokens (prompt and generated) are `context`.
    fn process(&self, logits: &mut [f32], context: &[u32]);

    /// Told before the request is sent when a budget, or the room the context window leaves
    /// after the prompt, grants fewer tokens than the request's `max_tokens` (possibly more
    /// than once, by nested budgets: keep the smallest). A processor
    /// that plans the whole completion (budget forcing) re-plans to fit. Default: ignored.
    fn limit_max_tokens(&self, _granted: usize) {}

    /// Asked after the call: the grant (the smallest it was told of) that made this completion
    /// end sooner than it would have, if one did (budget forcing: its thinking forced to end at
    /// a cap the grant lowered, or a wait it owed that fit only under the configured cap). A
    /// completion that then stopped within the grant was still cut by the budget that granted
    /// it. Default: `None`.
    fn shortened_by(&self) -> Option<usize> {
        None
    }
}

impl<F: Fn(&mut [f32], &[u32]) + Send + Sync> LogitsProcessor for F {
    fn process(&self, logits: &mut [f32], context: &[u32]) {
        self(logits, context);
    }
}

/// One request: `n` completions of `prompt`.
#[derive(Clone)]
pub struct GenerationRequest {
    /// What to continue.
    pub prompt: Prompt,
    /// Number of completions. Default 1.
    pub n: usize,
    /// Most tokens generated per completion. Default 256.
    pub max_tokens: usize,
    /// Stop sequences; the completion ends before the first one and excludes it. Default none.
    pub stop: Vec<String>,
    /// Sampling settings. Default greedy.
    pub sampling: Sampling,
    /// Return this many top log-probabilities per generated token. Default none.
    pub top_logprobs: Option<usize>,
    /// Per-request logits processors, applied in order. Default none.
    pub logits_processors: Vec<Arc<dyn LogitsProcessor>>,
    /// When the caller stops waiting (a wall-time budget: [`crate::Metered`] sets it). A
    /// backend that can ends decoding there and returns what it wrote, cut
    /// ([`FinishReason::Length`]) and counted; one that has not begun by then fails with
    /// [`crate::Error::BudgetExhausted`]. Default none.
    pub deadline: Option<std::time::Instant>,
}

impl fmt::Debug for GenerationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenerationRequest")
            .field("prompt", &self.prompt)
            .field("n", &self.n)
            .field("max_tokens", &self.max_tokens)
            .field("stop", &self.stop)
            .field("sampling", &self.sampling)
            .field("top_logprobs", &self.top_logprobs)
            .field("logits_processors", &self.logits_processors.len())
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl GenerationRequest {
    /// One greedy completion of up to 256 tokens.
    pub fn new(prompt: Prompt) -> Self {
        Self {
            prompt,
            n: 1,
            max_tokens: 256,
            stop: Vec::new(),
            sampling: Sampling::greedy(),
            top_logprobs: None,
            logits_processors: Vec::new(),
            deadline: None,
        }
    }

    /// Sets the number of completions.
    pub fn with_n(mut self, n: usize) -> Self {
        self.n = n;
        self
    }

    /// Sets the most tokens per completion.
    pub fn with_max_tokens(mut self, max_tokens: usize) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// Sets when the caller stops waiting (see [`Self::deadline`]).
    pub fn with_deadline(mut self, deadline: std::time::Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Adds a stop sequence.
    pub fn with_stop(mut self, stop: impl Into<String>) -> Self {
        self.stop.push(stop.into());
        self
    }

    /// Sets the sampling settings.
    pub fn with_sampling(mut self, sampling: Sampling) -> Self {
        self.sampling = sampling;
        self
    }

    /// Asks for the top `k` log-probabilities of each generated token.
    pub fn with_top_logprobs(mut self, k: usize) -> Self {
        self.top_logprobs = Some(k);
        self
    }

    /// Adds a logits processor.
    pub fn with_logits_processor(mut self, processor: Arc<dyn LogitsProcessor>) -> Self {
        self.logits_processors.push(processor);
        self
    }
}

/// Why a completion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End of sequence, a stop token or a stop sequence.
    Stop,
    /// `max_tokens` reached.
    Length,
}

/// The log-probability of one generated token (natural log).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// The token as text.
    pub token: String,
    /// Its natural-log probability.
    pub logprob: f32,
    /// The most likely alternatives at this position: (token id, text, natural-log probability).
    pub top: Vec<TopLogprob>,
}

/// One alternative at a generated position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    /// Token id.
    pub id: u32,
    /// Token text, where the backend gives it.
    pub token: String,
    /// Natural-log probability.
    pub logprob: f32,
}

/// One completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// The generated text, without the stop sequence that ended it.
    pub text: String,
    /// Tokens generated for this completion.
    pub completion_tokens: usize,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// The stop sequence that ended it; `None` when it ended at an end-of-sequence token or by
    /// length. Over HTTP: the server's own word where it names it (vLLM's `stop_reason`), else
    /// read from the per-token log-probabilities, which the OpenAI backend asks for whenever a
    /// request has stop sequences (llama.cpp leaves the stop sequence's tokens out and ends an
    /// end-of-sequence stop with the end-of-sequence token). With several stop sequences and a
    /// server that does not name the one it matched, the first of the request's.
    #[serde(default)]
    pub stop_sequence: Option<String>,
    /// Per-token log-probabilities, when asked for.
    pub logprobs: Option<Vec<TokenLogprob>>,
}

/// The answer to one [`GenerationRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The completions, in order.
    pub choices: Vec<Choice>,
    /// Tokens and time for the whole request (prompt counted once, completions summed over choices).
    pub usage: Usage,
    /// The budget that shortened this call where that could have changed what it wrote (it
    /// ran to the tokens granted, a deadline ended it, or a logits processor re-planned for it):
    /// set by a meter ([`crate::Metered`]), so that the meters of nested contexts it came
    /// through learn it too. Backends leave it `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut_by: Option<crate::budget::Resource>,
}

impl Generation {
    /// The first completion (for requests of `n = 1`); an error if the backend sent none.
    pub fn into_first_choice(self) -> Result<Choice> {
        self.choices
            .into_iter()
            .next()
            .ok_or_else(|| crate::error::Error::Inference {
                message: "the backend returned no completion".into(),
            })
    }
}

/// What a backend can do; strategies choose their path from it. The default is a backend that
/// can do nothing past plain completions (no window known, no logits processors, no
/// log-probabilities, `n` made by one request a choice, no tokenizer): a backend of your own
/// sets what it has,
/// `Capabilities { backend: "mine", native_n: true, ..Capabilities::default() }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// A name for messages and reports (`mistralrs`, `openai`, `scripted`).
    pub backend: &'static str,
    /// Context window in tokens, where known.
    pub context_tokens: Option<usize>,
    /// Whether per-request [`LogitsProcessor`]s are honoured.
    pub logits_processors: bool,
    /// Largest `top_logprobs` honoured (0: none).
    pub max_top_logprobs: usize,
    /// Whether `n > 1` is generated in one request (up to `max_native_n`).
    pub native_n: bool,
    /// Where `native_n`, the largest `n` generated in one request (`None`: any); a larger one
    /// is fanned out over `n` requests.
    pub max_native_n: Option<usize>,
    /// Whether an `n` that is not generated in one request may first be tried in one (an
    /// HTTP server whose limit is not known yet): a request more.
    pub tries_n: bool,
    /// End-of-sequence token ids.
    pub eos_token_ids: Vec<u32>,
    /// Whether [`Backend::tokenize`] and [`Backend::detokenize`] work. A backend that says so
    /// is sent its prompts as token ids ([`Prompt::Tokens`]): the meter tokenizes text and
    /// chat prompts once, to count them exactly (a chat prompt where `tokenize` says
    /// [`crate::Error::Unsupported`] for it is sent as it is).
    pub tokenizer: bool,
}

/// Something to tokenize.
#[derive(Debug, Clone, Copy)]
pub enum TokenizeInput<'a> {
    /// A prompt as [`Backend::generate`] would see it (chat template applied for chat prompts).
    Prompt(&'a Prompt),
    /// A bare piece of text, no special tokens added (e.g. `"Wait"` or `"</think>"`).
    Piece(&'a str),
}

/// A text-generation backend.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Generates `request.n` completions of `request.prompt` (all of them, one request or
    /// several: `native_n` only says how many calls that was), each at most
    /// `request.max_tokens` long and ended at the first of `request.stop`.
    ///
    /// What a backend of your own fills in: each choice's `completion_tokens` and
    /// `finish_reason`, and `usage` (the meter counts a prompt of 0 tokens as its own
    /// estimate, completion tokens of 0 as the choices' sum, and at least one call). Where
    /// `request.deadline` passes, end the call and return what was written (finish reason
    /// `Length`), or fail with [`crate::Error::BudgetExhausted`] of
    /// [`crate::Resource::WallTime`]; a call that does neither is given up a little later,
    /// uncounted. Logits processors and `top_logprobs` are honoured only where
    /// [`Capabilities`] says so. A backend with a tokenizer gets token ids
    /// ([`Capabilities::tokenizer`]). A failure of this one call that another might not share
    /// (a sampling error, a server's error or silence for one request) should be an error
    /// that [`crate::Error::is_per_call`] says is one ([`crate::Error::Inference`], say): a
    /// strategy holding other samples drops it and goes on.
    async fn generate(&self, request: GenerationRequest) -> Result<Generation>;

    /// What this backend supports.
    fn capabilities(&self) -> Capabilities;

    /// Token ids of `input`. Default: unsupported.
    async fn tokenize(&self, input: TokenizeInput<'_>) -> Result<Vec<u32>> {
        let _ = input;
        Err(crate::Error::Unsupported {
            backend: self.capabilities().backend,
            operation: "tokenize",
        })
    }

    /// Text of `ids`, special tokens kept. Default: unsupported.
    async fn detokenize(&self, ids: &[u32]) -> Result<String> {
        let _ = ids;
        Err(crate::Error::Unsupported {
            backend: self.capabilities().backend,
            operation: "detokenize",
        })
    }
}

#[async_trait]
impl<B: Backend + ?Sized> Backend for Arc<B> {
    async fn generate(&self, request: GenerationRequest) -> Result<Generation> {
        (**self).generate(request).await
    }

    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }

    async fn tokenize(&self, input: TokenizeInput<'_>) -> Result<Vec<u32>> {
        (**self).tokenize(input).await
    }

    async fn detokenize(&self, ids: &[u32]) -> Result<String> {
        (**self).detokenize(ids).await
    }
}
