//! A backend over OpenAI-compatible HTTP servers: vLLM, SGLang, llama.cpp's `llama-server`,
//! mistral.rs's server, or a fleet of them.
//!
//! - Raw prefixes (`Prompt::Text`, `Prompt::Tokens`) go to `/v1/completions`. Chat prompts are
//!   rendered with the server's own template where it offers one (`/apply-template`, llama.cpp),
//!   so an assistant prefix continues exactly as in process; elsewhere they go to
//!   `/v1/chat/completions`, an assistant prefix sent as a final assistant message to continue.
//! - Several base URLs are used round-robin, one request each; a connection error, a 408, a 429
//!   or a 5xx is retried with jittered exponential backoff on the next URL (a longer
//!   `Retry-After` is honoured), another 4xx never: it is returned with the server's message. A
//!   timeout, ours or a proxy's (504, 524), is sent on only with several URLs, once to each;
//!   a 501 or 505 is returned at once. A status kept through every retry is returned as that
//!   status ([`Error::Http`]: one request's failure, a 500 for one prompt, say); servers never
//!   reached, or busy or down for every request (429, 502, 503, 529), as
//!   [`Error::Connection`]. After a request gave up on unreachable servers,
//!   requests try once until one answers.
//! - `n > 1` is sent as one request; a server that returns fewer choices is remembered as not
//!   honouring `n`, and the missing choices (then every later request) are fanned out as
//!   single-choice requests.
//! - Tokenization uses the server's `/tokenize` and `/detokenize` (llama.cpp and vLLM have them);
//!   without them [`Capabilities::tokenizer`] is false and the meter bounds prompts by bytes.
//! - No logits processors over HTTP: strategies take their fallbacks (budget forcing resubmits,
//!   judges read top log-probabilities).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::join_all;

use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::backend::{
    Backend, Capabilities, Choice, FinishReason, Generation, GenerationRequest, Message, Prompt,
    TokenizeInput,
};
use crate::error::{Error, Result};
use crate::usage::Usage;

mod options;
mod wire;

pub use options::OpenAiOptions;
use wire::{
    chat_messages, clip, error_chain, last_entry, piece_bytes, retry_after, server_message,
    token_ids, LastEntry, RawReply, Reply,
};

/// How long past a call's deadline the choices answered by then may take to be counted: less
/// than the meters' grace, after which the whole call would be dropped.
const AFTER_DEADLINE: Duration = Duration::from_secs(1);
const _: () = assert!(AFTER_DEADLINE.as_millis() < crate::metered::DEADLINE_GRACE.as_millis());
/// How long a server that timed out or could not be reached is passed over while others answer.
const SHUNNED_FOR: Duration = Duration::from_secs(30);
/// Most retries of a probe of an optional endpoint while connecting (see
/// `OpenAiBackend::probe_endpoint`).
const PROBE_RETRIES: u32 = 3;
/// Longest wait for one probe's answer (or the request timeout, if shorter): a probe's work is
/// a tokenization or a settings lookup.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server answering a probe 503 is waited for while connecting: llama.cpp answers
/// `/v1/models` while it loads its model and 503 everything else until it is done.
const PROBE_LOADING: Duration = Duration::from_secs(300);

/// The wait before the next try: `delay` jittered (±25%), or the server's `Retry-After` where
/// longer, at most `cap`; `delay` doubles for the try after (up to 15 s).
fn backoff(delay: &mut Duration, retry_after: Option<Duration>, cap: Duration) -> Duration {
    let jittered = delay.mul_f64(0.75 + fastrand::f64() / 2.0);
    *delay = (*delay * 2).min(Duration::from_secs(15));
    retry_after
        .map_or(jittered, |asked| asked.max(jittered))
        .min(cap)
}

/// What the server offers beyond the OpenAI API, found when connecting.
#[derive(Debug, Clone, Default)]
struct ServerInfo {
    tokenize: bool,
    /// llama.cpp's `/apply-template`: a chat prompt rendered to text.
    apply_template: bool,
    /// vLLM's `/tokenize` of chat messages: a chat prompt rendered to token ids through the
    /// server's template.
    tokenize_chat: bool,
    context_tokens: Option<usize>,
    eos_token_ids: Vec<u32>,
    /// llama.cpp's `/tokenize` with pieces. Its log-probabilities leave tokens out (those of
    /// the stop sequence that ended a choice, those that ended inside a character): with
    /// several choices in one reply, the only count of a choice's tokens, they are counted back
    /// through its tokenizer.
    pieces: bool,
    /// llama.cpp's slots (`/props`' `total_slots`): the most choices one request may ask for.
    slots: Option<usize>,
    /// Whether the server answered `/props` (llama.cpp's): fields only it reads are sent to it
    /// alone (vLLM warns of every field it ignores, each request).
    props: bool,
}

/// A backend over one or more OpenAI-compatible servers.
pub struct OpenAiBackend {
    client: reqwest::Client,
    /// Base URLs without the login any of them was written with (`user:pass@`), so that no
    /// error, log line or event shows a password.
    options: OpenAiOptions,
    /// Per base URL, the login its URL was written with: sent as basic auth.
    logins: Vec<Option<Login>>,
    next_url: AtomicUsize,
    /// Per base URL: until when it is passed over, after it timed out or could not be reached
    /// (a hung or dead member of a fleet would otherwise get its share of every request).
    shunned: Mutex<Vec<Option<Instant>>>,
    permits: Semaphore,
    /// The largest `n` the server answered in one request (1: none yet; `usize::MAX`: any, as
    /// configured). Every `n` up to it is sent as one request.
    n_taken: AtomicUsize,
    /// The smallest `n` > 1 it refused or answered with fewer choices (`usize::MAX`: none;
    /// 2: it takes no `n` at all). Every `n` from it is fanned out; one between the two is
    /// tried once (llama-server takes `n` up to its slots and refuses more).
    n_refused: AtomicUsize,
    /// Set once the server refused a field of ours beyond OpenAI's API (OpenAI's own API:
    /// "Unrecognized request argument supplied: separate_reasoning"): none is sent after.
    plain: AtomicBool,
    info: ServerInfo,
    /// Token text to id, for servers whose log-probabilities carry no ids.
    ids: Mutex<HashMap<String, Option<u32>>>,
    /// Token ids of pieces asked before.
    pieces: crate::piece_cache::PieceCache,
    /// Stop sequence to its number of tokens (see [`ServerInfo::pieces`]).
    stop_lengths: Mutex<HashMap<String, usize>>,
    /// Whether the warning that this server cannot tell a stop sequence from an end of
    /// sequence was given.
    warned_stops: AtomicBool,
    /// Whether the warning that counting tokens through `/tokenize` failed was given.
    warned_counts: AtomicBool,
    /// Whether the warning that this server writes past `max_tokens` was given.
    warned_overrun: AtomicBool,
    /// Set when a request gave up on servers that could not be reached through all its
    /// retries, cleared by the next answer: until then each request tries once, so a dead
    /// fleet fails the rest of a batch at once rather than a retry schedule per problem.
    unreachable: AtomicBool,
}

impl std::fmt::Debug for OpenAiBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiBackend")
            .field("base_urls", &self.options.base_urls)
            .field("model", &self.options.model)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// A user name and password written into a base URL.
#[derive(Clone, PartialEq, Eq)]
struct Login {
    user: String,
    password: Option<String>,
}

/// `url` without the login in its authority (`http://user:pass@host/v1` is `http://host/v1`),
/// and that login, percent-decoded. The login runs to the last `@` and the host from there to
/// the next `/` (a password may hold a `/`, `?` or `#` not percent-encoded; a base URL's path
/// holds no `@`). A URL that cannot be read so (no `://`, no host) keeps no login and shows
/// `***` for what would be one: such a URL fails, in an error that shows it.
fn split_login(url: &str) -> (String, Option<Login>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        let shown = url
            .rsplit_once('@')
            .map_or_else(|| url.to_string(), |(_, after)| format!("***@{after}"));
        return (shown, None);
    };
    let Some((userinfo, after)) = rest.rsplit_once('@') else {
        return (url.to_string(), None);
    };
    let (host, path) = after.split_at(after.find('/').unwrap_or(after.len()));
    if host.is_empty() {
        return (format!("{scheme}://***@{after}"), None);
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (decode(user), Some(decode(password))),
        None => (decode(userinfo), None),
    };
    (
        format!("{scheme}://{host}{path}"),
        Some(Login { user, password }),
    )
}

/// `url` without a login written into it (`http://user:pass@host` is `http://host`).
pub(crate) fn without_login(url: &str) -> String {
    split_login(url).0
}

/// What one HTTP attempt came to.
enum Attempt {
    Done(Value),
    /// Worth retrying: why (the server's message where it answered), the `Retry-After` the
    /// server asked for, and the HTTP status when the server answered (408, 429, 5xx) rather
    /// than failing to connect.
    Retry(String, Option<Duration>, Option<u16>),
    Fail(Error),
}

impl OpenAiBackend {
    /// Connects: checks the options and asks the first server what it offers (tokenizer, chat
    /// template, context size). A server that cannot be reached is an error here, not later.
    pub async fn connect(options: OpenAiOptions) -> Result<Self> {
        let mut options = options;
        if options.base_urls.is_empty() {
            return Err(Error::InvalidRequest {
                reason: "the openai backend needs at least one base_url",
            });
        }
        let mut logins = Vec::with_capacity(options.base_urls.len());
        for url in &mut options.base_urls {
            let (bare, login) = split_login(url);
            let trimmed = bare.trim_end_matches('/');
            let trimmed = trimmed.strip_suffix("/v1").unwrap_or(trimmed);
            if !(trimmed.starts_with("http://") || trimmed.starts_with("https://")) {
                return Err(Error::Connection {
                    url: bare.clone(),
                    attempts: 0,
                    reason: "a base_url must start with http:// or https://".into(),
                });
            }
            *url = trimmed.to_string();
            logins.push(login);
        }
        // One server listed twice with two logins (or with and without one) would take
        // either by chance. (Twice alike is a larger share of the requests.)
        let mut login_of: HashMap<&str, &Option<Login>> = HashMap::new();
        for (url, login) in options.base_urls.iter().zip(&logins) {
            if login_of
                .insert(url, login)
                .is_some_and(|other| other != login)
            {
                return Err(Error::Connection {
                    url: url.clone(),
                    attempts: 0,
                    reason: "listed twice in base_url with different logins: one server, one \
                             login"
                        .into(),
                });
            }
        }
        if options.api_key.is_some() && logins.iter().any(Option::is_some) {
            return Err(Error::Connection {
                url: options.base_urls.join(", "),
                attempts: 0,
                reason: "both an API key and a login in a base_url: give one (both would be \
                         the request's Authorization header)"
                    .into(),
            });
        }
        // Only redirects that keep the method are followed: a 301 or 302 would turn a POST into
        // a GET, and its 404 would be blamed on the URL asked.
        let redirects = reqwest::redirect::Policy::custom(|attempt| {
            let keeps_method = matches!(attempt.status().as_u16(), 307 | 308);
            if keeps_method && attempt.previous().len() < 5 {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(Duration::from_secs(10))
            .redirect(redirects)
            .build()
            .map_err(|e| Error::Connection {
                url: options.base_urls.join(", "),
                attempts: 0,
                reason: format!("building the HTTP client: {e}"),
            })?;
        let (n_taken, n_refused) = match options.native_n {
            None => (1, usize::MAX),
            Some(true) => (usize::MAX, usize::MAX),
            Some(false) => (1, 2),
        };
        let mut backend = Self {
            client,
            permits: Semaphore::new(options.concurrency.max(1)),
            options,
            logins,
            next_url: AtomicUsize::new(0),
            shunned: Mutex::new(Vec::new()),
            n_taken: AtomicUsize::new(n_taken),
            n_refused: AtomicUsize::new(n_refused),
            plain: AtomicBool::new(false),
            info: ServerInfo::default(),
            ids: Mutex::new(HashMap::new()),
            pieces: Default::default(),
            stop_lengths: Mutex::new(HashMap::new()),
            warned_stops: AtomicBool::new(false),
            warned_counts: AtomicBool::new(false),
            warned_overrun: AtomicBool::new(false),
            unreachable: AtomicBool::new(false),
        };
        backend.info = backend.probe().await?;
        tracing::info!(info = ?backend.info, urls = ?backend.options.base_urls, "connected");
        Ok(backend)
    }

    /// The options in use.
    pub fn options(&self) -> &OpenAiOptions {
        &self.options
    }

    async fn probe(&self) -> Result<ServerInfo> {
        // The model list answers on every OpenAI-compatible server: it proves the server is up.
        // The rest is asked of the server that answered (a fleet serves one model alike): one
        // that is down would read as a server without a tokenizer or a template.
        let (base, models) = self
            .request_from(reqwest::Method::GET, "/v1/models", None)
            .await?;
        let base = base.as_str();
        let mut info = ServerInfo {
            context_tokens: self.options.context_tokens,
            ..ServerInfo::default()
        };
        // The window the server serves (vLLM's max_model_len here, llama.cpp's below), never
        // the one the model was trained with (`meta.n_ctx_train`): requests are shortened to
        // fit it, and a server may serve more (rope scaling) or less.
        // A server or gateway listing several models: the entry of the one asked for.
        if info.context_tokens.is_none() {
            let listed = models.get("data").and_then(Value::as_array);
            let entry = listed.and_then(|list| {
                list.iter()
                    .find(|m| m.get("id").and_then(Value::as_str) == Some(&self.options.model))
                    // One model, or the server's default asked for: the first listed.
                    .or_else(|| {
                        list.first()
                            .filter(|_| list.len() == 1 || self.options.model == "default")
                    })
            });
            info.context_tokens = entry
                .and_then(|m| m.get("max_model_len"))
                .and_then(Value::as_u64)
                .map(|n| n as usize);
        }
        // llama.cpp: the serving context (per slot it is n_ctx / slots, which /props reports).
        let post = reqwest::Method::POST;
        if let Some(props) = self
            .probe_endpoint(base, reqwest::Method::GET, "/props", None)
            .await?
        {
            info.props = props.is_object();
            info.slots = props
                .get("total_slots")
                .and_then(Value::as_u64)
                .map(|n| n as usize);
            if self.options.context_tokens.is_none() {
                if let Some(n) = props
                    .pointer("/default_generation_settings/n_ctx")
                    .and_then(Value::as_u64)
                {
                    info.context_tokens = Some(n as usize);
                }
            }
            if let Some(eos) = props.get("eos_token").and_then(Value::as_str) {
                let body = self.tokenize_body(eos, false);
                let ids = self
                    .probe_endpoint(base, post.clone(), "/tokenize", Some(&body))
                    .await?
                    .and_then(|reply| read_ids(&reply).ok());
                if let Some(ids) = ids.filter(|ids| ids.len() == 1) {
                    // The model's own first, as in process.
                    info.eos_token_ids = ids;
                    for id in self.end_of_generation_ids(base).await? {
                        if !info.eos_token_ids.contains(&id) {
                            info.eos_token_ids.push(id);
                        }
                    }
                }
            }
        }
        let bare = self
            .probe_endpoint(
                base,
                post.clone(),
                "/tokenize",
                Some(&self.tokenize_body("ponder", false)),
            )
            .await?
            .and_then(|reply| read_ids(&reply).ok())
            .map_or(0, |ids| ids.len());
        info.tokenize = bare > 0;
        if info.tokenize {
            info.pieces = self
                .probe_endpoint(
                    base,
                    post.clone(),
                    "/tokenize",
                    Some(&pieces_body("ponder", false)),
                )
                .await?
                .and_then(|reply| read_pieces(&reply).ok())
                .is_some_and(|pieces| !pieces.is_empty());
        }
        info.apply_template = self
            .probe_endpoint(
                base,
                post.clone(),
                "/apply-template",
                Some(&json!({ "messages": [{ "role": "user", "content": "ponder" }] })),
            )
            .await?
            .is_some_and(|v| v.get("prompt").and_then(Value::as_str).is_some());
        if info.tokenize && !info.apply_template {
            // vLLM renders chat messages in `/tokenize`: more tokens than the bare word (the
            // template's roles). llama.cpp's `/tokenize` reads only `content`.
            info.tokenize_chat = self
                .probe_endpoint(
                    base,
                    post,
                    "/tokenize",
                    Some(&self.chat_tokenize_body(&[Message::user("ponder")])),
                )
                .await?
                .and_then(|v| token_ids(v.get("tokens")))
                .is_some_and(|ids| ids.len() > bare);
        }
        Ok(info)
    }

    /// The tokens besides `eos_token` that end a generation on llama.cpp, which knows them by
    /// their text (`special_eog_ids` in its `llama-vocab.cpp`: `<|endoftext|>` next to Qwen's
    /// and SmolLM2's `<|im_end|>`, Llama 3's `<|end_of_text|>` next to `<|eot_id|>`), where the
    /// model's vocabulary holds them: one `/tokenize` of them all with pieces, a special token
    /// coming back whole. Without them a completion that ended at one would read as ended by a
    /// stop sequence.
    async fn end_of_generation_ids(&self, base: &str) -> Result<Vec<u32>> {
        const ENDS: [&str; 14] = [
            "<|eot_id|>",
            "<|im_end|>",
            "<|end|>",
            "<|return|>",
            "<|call|>",
            "<end_of_turn>",
            "<|endoftext|>",
            "<|eom_id|>",
            "<EOT>",
            "<|end_of_text|>",
            "<end_of_utterance>",
            "<eos>",
            "</s>",
            "<｜end▁of▁sentence｜>",
        ];
        let body = pieces_body(&ENDS.join("\n"), true);
        let pieces = self
            .probe_endpoint(base, reqwest::Method::POST, "/tokenize", Some(&body))
            .await?
            .and_then(|reply| read_pieces(&reply).ok())
            .unwrap_or_default();
        Ok(pieces
            .into_iter()
            .filter(|(_, piece)| ENDS.iter().any(|end| end.as_bytes() == piece.as_slice()))
            .map(|(id, _)| id)
            .collect())
    }

    /// Asks the server at `base` for an optional endpoint while connecting (`/props`,
    /// `/tokenize`, `/apply-template`): its reply, or `None` where it has none (a 404, 405 or
    /// 501) or refuses the request for good (any other 4xx, a 505, a redirect, a reply that is
    /// not JSON: asked again it would answer the same). A server busy or failing for now (a
    /// 408, 429 or 5xx, a timeout, a lost connection) is asked again after a short backoff, up
    /// to `PROBE_RETRIES` times (no more than `retries`): read as absent, the endpoint would
    /// be off for the backend's whole life (no tokenizer, no end-of-sequence ids). A 503 (a
    /// model still loading) is asked again for up to `PROBE_LOADING`. Still failing, connecting
    /// fails, naming the endpoint and what it answered; except a 500 or another 5xx that is
    /// not a busy or unreachable server's (502, 503, 504, 529), read as absent with a warning:
    /// the endpoint fails on its own (a template the server cannot render, say). Each try
    /// waits at most `PROBE_TIMEOUT` (within the request timeout), so a hung server fails
    /// connecting in minutes, not a request timeout a try.
    async fn probe_endpoint(
        &self,
        base: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>> {
        let url = format!("{base}{path}");
        let tries = self.options.retries.min(PROBE_RETRIES) + 1;
        let limit = self.options.timeout.min(PROBE_TIMEOUT);
        let mut delay = self.options.backoff;
        let mut tried = 0;
        let first = Instant::now();
        loop {
            tried += 1;
            let attempt = self.attempt(method.clone(), base, &url, body);
            let mut loading = false;
            let (reason, retry_after) = match tokio::time::timeout(limit, attempt).await {
                Ok(Attempt::Done(value)) => return Ok(Some(value)),
                Ok(Attempt::Retry(message, retry_after, Some(status))) => {
                    if tried >= tries && status >= 500 && !matches!(status, 502..=504 | 529) {
                        tracing::warn!(%url, status, %message, "the server fails this endpoint on every try; going without it");
                        return Ok(None);
                    }
                    loading = status == 503;
                    (format!("HTTP {status}: {message}"), retry_after)
                }
                Ok(Attempt::Retry(reason, _, None)) => (reason, None),
                Ok(Attempt::Fail(e @ Error::Timeout { .. })) => (e.to_string(), None),
                Ok(Attempt::Fail(e)) => {
                    tracing::info!(%url, error = %e, "the server does not offer this endpoint; going without it");
                    return Ok(None);
                }
                Err(_) => (format!("no answer within {limit:?}"), None),
            };
            if tried >= tries && !(loading && first.elapsed() < PROBE_LOADING) {
                return Err(Error::Connection {
                    url,
                    attempts: tried,
                    reason: format!(
                        "asking what the server offers while connecting: {reason} (an endpoint \
                         taken for absent would stay off for good; try again once the server \
                         answers)"
                    ),
                });
            }
            let wait = backoff(&mut delay, retry_after, Duration::from_secs(15));
            tracing::warn!(%url, tried, %reason, ?wait, "probing an endpoint failed; asking again");
            tokio::time::sleep(wait).await;
        }
    }

    /// vLLM's `/tokenize` of chat messages, up to the start of the assistant's turn.
    fn chat_tokenize_body(&self, messages: &[Message]) -> Value {
        json!({
            "model": self.options.model,
            "messages": chat_messages(messages, ""),
            "add_generation_prompt": true,
            // Special tokens as the template writes them, none added on top (vLLM's default).
            "add_special_tokens": false,
        })
    }

    /// A chat prompt as token ids through the server's template (vLLM's chat `/tokenize`), the
    /// assistant prefix tokenized after it: as in process, and as llama.cpp's
    /// `/apply-template` text is continued. A prefix is not sent as a message to continue:
    /// templates that rewrite an assistant message (reasoning models' drop its thinking)
    /// refuse that, and a reasoning parser would read the continuation without its opening.
    async fn chat_ids(&self, messages: &[Message], assistant_prefix: &str) -> Result<Vec<u32>> {
        let body = self.chat_tokenize_body(messages);
        let reply = self
            .request(reqwest::Method::POST, "/tokenize", Some(&body))
            .await?;
        let mut ids = token_ids(reply.get("tokens")).ok_or_else(|| Error::Inference {
            message: format!(
                "/tokenize of chat messages answered without token ids: {}",
                clip(&reply.to_string())
            ),
        })?;
        if !assistant_prefix.is_empty() {
            ids.extend(self.server_tokenize(assistant_prefix, false).await?);
        }
        Ok(ids)
    }

    /// Base URL `wanted`, or where it is passed over (it timed out or could not be reached
    /// lately), the next one that is not; `wanted` if all are.
    fn pick(&self, wanted: usize) -> usize {
        let n = self.options.base_urls.len();
        let Ok(shunned) = self.shunned.lock() else {
            return wanted;
        };
        let now = Instant::now();
        (0..n)
            .map(|k| (wanted + k) % n)
            .find(|&i| {
                shunned
                    .get(i)
                    .copied()
                    .flatten()
                    .is_none_or(|until| until <= now)
            })
            .unwrap_or(wanted)
    }

    /// Passes base URL `index` over for `how_long` (`None`: no longer).
    fn shun(&self, index: usize, how_long: Option<Duration>) {
        if self.options.base_urls.len() < 2 {
            return;
        }
        if let Ok(mut shunned) = self.shunned.lock() {
            if shunned.len() <= index {
                shunned.resize(index + 1, None);
            }
            if let Some(slot) = shunned.get_mut(index) {
                *slot = how_long.map(|d| Instant::now() + d);
            }
        }
    }

    /// The login base URL `base` was written with, if any (base URLs are distinct: see
    /// [`Self::connect`]).
    fn login_for(&self, base: &str) -> Option<&Login> {
        let bases = self.options.base_urls.iter().zip(&self.logins);
        bases
            .filter(|(b, _)| b.as_str() == base)
            .find_map(|(_, login)| login.as_ref())
    }

    /// One HTTP request to `url`, a path on the server at `base`.
    async fn attempt(
        &self,
        method: reqwest::Method,
        base: &str,
        url: &str,
        body: Option<&Value>,
    ) -> Attempt {
        let _permit = self.permits.acquire().await;
        let mut builder = self.client.request(method, url);
        if let Some(key) = &self.options.api_key {
            builder = builder.bearer_auth(key);
        }
        if let Some(login) = self.login_for(base) {
            builder = builder.basic_auth(&login.user, login.password.as_ref());
        }
        if let Some(body) = body {
            builder = builder.json(body);
        }
        // A connection that cannot be made is retried (on the next URL); a request that ran
        // out of time is not (it would only run as long again).
        let timed_out = |e: &reqwest::Error| {
            Attempt::Fail(Error::Timeout {
                url: url.to_string(),
                after: self.options.timeout,
                reason: error_chain(e),
            })
        };
        let sent = Instant::now();
        let response = match builder.send().await {
            Ok(response) => response,
            Err(e) if e.is_connect() => return Attempt::Retry(error_chain(&e), None, None),
            Err(e) if e.is_timeout() => return timed_out(&e),
            // Not sent: every request would fail the same way (a header that cannot be one).
            Err(e) if e.is_builder() => {
                return Attempt::Fail(Error::Connection {
                    url: url.to_string(),
                    attempts: 1,
                    reason: format!("the request could not be built: {}", error_chain(&e)),
                })
            }
            Err(e) => return Attempt::Retry(error_chain(&e), None, None),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, std::time::SystemTime::now()));
        let headers_location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = match response.text().await {
            Ok(text) => text,
            Err(e) if e.is_timeout() => return timed_out(&e),
            Err(e) => return Attempt::Retry(error_chain(&e), None, None),
        };
        if status.is_success() {
            return match serde_json::from_str::<Value>(&text) {
                // An error in a success reply (some servers answer a failed generation so):
                // its message, not "no completion".
                Ok(value) if value.get("error").is_some_and(|e| !e.is_null()) => {
                    Attempt::Fail(Error::Http {
                        url: url.to_string(),
                        status: status.as_u16(),
                        message: server_message(&text),
                    })
                }
                Ok(value) => Attempt::Done(value),
                Err(e) => Attempt::Fail(Error::Http {
                    url: url.to_string(),
                    status: status.as_u16(),
                    message: format!("the reply is not JSON ({e}): {}", clip(&text)),
                }),
            };
        }
        if status.is_redirection() {
            let to = headers_location.unwrap_or_else(|| "(no Location)".into());
            return Attempt::Fail(Error::Http {
                url: url.to_string(),
                status: status.as_u16(),
                message: format!(
                    "redirected to {to}: point base_url at where the server now is (a {} \
                     would turn the POST into a GET, so it is not followed)",
                    status.as_u16()
                ),
            });
        }
        let message = server_message(&text);
        // A prompt the server says does not fit its window (vLLM's 400 "This model's maximum
        // context length is ...", llama-server's `exceed_context_size_error`, OpenAI's
        // `context_length_exceeded`): the error strategies answer from what they have.
        if status.is_client_error()
            && (about_context(&message)
                || text.contains("exceed_context_size_error")
                || text.contains("context_length_exceeded"))
        {
            tracing::debug!(%url, %message, "the server says the prompt does not fit");
            let reply: Option<Value> = serde_json::from_str(&text).ok();
            let field = |name: &str| {
                let reply = reply.as_ref()?;
                reply
                    .get("error")
                    .and_then(|e| e.get(name))
                    .or_else(|| reply.get(name))
                    .and_then(Value::as_u64)
                    .and_then(|n| usize::try_from(n).ok())
            };
            let asked = body
                .and_then(|b| b.get("max_tokens"))
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok());
            return Attempt::Fail(Error::PromptTooLong {
                prompt_tokens: field("n_prompt_tokens").unwrap_or(0),
                max_tokens: asked.unwrap_or(0),
                context_tokens: field("n_ctx").or(self.info.context_tokens).unwrap_or(0),
            });
        }
        // A 5xx about the request itself (llama-server fails the requests in flight with "Context
        // size has been exceeded." when together they fill its KV cache): sent again at once it
        // would decode as far and fail the same way, and after the retries read as a server
        // lost. That call's failure, for its strategy to handle.
        if status.is_server_error() && about_context(&message) {
            return Attempt::Fail(Error::Http {
                url: url.to_string(),
                status: status.as_u16(),
                message,
            });
        }
        // A proxy that gave up waiting on the server (nginx's 504 after `proxy_read_timeout`,
        // Cloudflare's 524): the request ran out of time, as when our own timeout ends it, and
        // is handled as that is: not resent to one server (it would only run as long again),
        // passed on to the next of a fleet. The proxy answered, so the servers are reachable.
        // (A 408 is a server closing a connection it waited on for a request: sent again.)
        if matches!(status.as_u16(), 504 | 524) {
            self.unreachable.store(false, Ordering::Relaxed);
            return Attempt::Fail(Error::Timeout {
                url: url.to_string(),
                after: sent.elapsed(),
                reason: format!("HTTP {status}: {message}"),
            });
        }
        // Not implemented (llama-server's `not_supported_error`) or an HTTP version not
        // supported: never temporary, so the server's words at once rather than after the
        // retries.
        if matches!(status.as_u16(), 501 | 505) {
            return Attempt::Fail(Error::Http {
                url: url.to_string(),
                status: status.as_u16(),
                message,
            });
        }
        if matches!(status.as_u16(), 408 | 429) || status.is_server_error() {
            return Attempt::Retry(message, retry_after, Some(status.as_u16()));
        }
        Attempt::Fail(Error::Http {
            url: url.to_string(),
            status: status.as_u16(),
            message,
        })
    }

    /// One request with retries on connection errors, 429 and 5xx (not those that say it timed
    /// out or will never be served: see [`Self::attempt`]), each retry on the next URL.
    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        Ok(self.request_from(method, path, body).await?.1)
    }

    /// [`Self::request`], and the base URL of the server that answered.
    ///
    /// Waits double from `backoff` up to 15 s, jittered by a quarter either way so that
    /// requests that failed together do not come back together; a server's `Retry-After` is
    /// waited for when longer (up to a minute). With several servers a request that timed out
    /// is sent to the next one, as many times as there are servers (on one server it would
    /// only run as long again; on each in turn, a request too long for the timeout would run
    /// out its time on every one, again and again). A proxy's 504 in front of a server is such
    /// a timeout.
    async fn request_from(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(String, Value)> {
        let mut delay = self.options.backoff;
        let mut attempts = 0;
        // While the servers are known to be unreachable, one try.
        let retries = if self.unreachable.load(Ordering::Relaxed) {
            0
        } else {
            self.options.retries
        };
        // Each retry on the next server after the last one tried (the shared round-robin
        // counter could send it back to the same one).
        let urls = &self.options.base_urls;
        let mut wanted = self.next_url.fetch_add(1, Ordering::Relaxed) % urls.len().max(1);
        let mut timeouts = 0;
        loop {
            let index = self.pick(wanted);
            // The next try goes to the server after this one (not after the one wanted, which
            // may have been passed over for this one).
            wanted = (index + 1) % urls.len().max(1);
            let base = urls.get(index).cloned().unwrap_or_default();
            let url = format!("{base}{path}");
            attempts += 1;
            match self.attempt(method.clone(), &base, &url, body).await {
                Attempt::Done(value) => {
                    self.unreachable.store(false, Ordering::Relaxed);
                    self.shun(index, None);
                    return Ok((base, value));
                }
                Attempt::Fail(Error::Timeout { after, reason, .. })
                    if urls.len() > 1 && attempts <= retries && {
                        timeouts += 1;
                        timeouts < urls.len()
                    } =>
                {
                    tracing::warn!(%url, attempts, %reason, "no answer within {after:?}; sending it to the next server");
                    self.shun(index, Some(SHUNNED_FOR));
                    continue;
                }
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry(reason, retry_after, status) => {
                    // A server that answered (503 while loading, say) is reachable.
                    if status.is_some() {
                        self.unreachable.store(false, Ordering::Relaxed);
                    } else {
                        self.shun(index, Some(SHUNNED_FOR));
                    }
                    if attempts > retries {
                        // A server that answered every try with an error status (a 500 for
                        // this prompt alone, say) failed this request: its status, which a
                        // strategy may drop as one call's failure. Not one that says the server
                        // is busy or down for every request (429, 502, 503, 529: rate limits,
                        // a dead backend behind a proxy): a sample dropped for it would leave
                        // a vote smaller than asked, the problem recorded as answered. Those,
                        // and servers that could not be reached at all, are lost to every call.
                        return Err(match status {
                            Some(status @ (429 | 502 | 503 | 529)) => Error::Connection {
                                url,
                                attempts,
                                reason: format!("HTTP {status}: {reason}"),
                            },
                            Some(status) => Error::Http {
                                url,
                                status,
                                message: format!("{reason} (after {attempts} attempt(s))"),
                            },
                            None => {
                                self.unreachable.store(true, Ordering::Relaxed);
                                Error::Connection {
                                    url,
                                    attempts,
                                    reason,
                                }
                            }
                        });
                    }
                    // A server's own wait is kept to, up to a minute.
                    let wait = backoff(&mut delay, retry_after, Duration::from_secs(60));
                    tracing::warn!(%url, attempts, ?status, %reason, ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One attempt on the next server, no retries (a 429 or 5xx comes back as
    /// [`Error::Http`]), and the base URL of that server.
    async fn request_once(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(String, Value)> {
        let urls = &self.options.base_urls;
        let index = self.pick(self.next_url.fetch_add(1, Ordering::Relaxed) % urls.len().max(1));
        let base = urls.get(index).cloned().unwrap_or_default();
        let value = self.request_once_at(&base, method, path, body).await?;
        Ok((base, value))
    }

    /// One attempt on the server at `base`, no retries.
    async fn request_once_at(
        &self,
        base: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let url = format!("{base}{path}");
        match self.attempt(method, base, &url, body).await {
            Attempt::Done(value) => Ok(value),
            Attempt::Fail(e) => Err(e),
            Attempt::Retry(reason, _, Some(status)) => Err(Error::Http {
                url,
                status,
                message: reason,
            }),
            Attempt::Retry(reason, _, None) => Err(Error::Connection {
                url,
                attempts: 1,
                reason,
            }),
        }
    }

    /// `/tokenize`, with retries.
    async fn server_tokenize(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let body = self.tokenize_body(text, add_special);
        let reply = self
            .request(reqwest::Method::POST, "/tokenize", Some(&body))
            .await?;
        read_ids(&reply)
    }

    /// llama.cpp's `/tokenize` with pieces, with retries: each token's id and bytes (see
    /// [`pieces_body`]).
    async fn tokenize_pieces(
        &self,
        text: &str,
        parse_special: bool,
    ) -> Result<Vec<(u32, Vec<u8>)>> {
        let body = pieces_body(text, parse_special);
        let reply = self
            .request(reqwest::Method::POST, "/tokenize", Some(&body))
            .await?;
        read_pieces(&reply)
    }

    /// A `/tokenize` body, in the dialects of llama.cpp (`content`, `add_special`) and vLLM
    /// (`prompt`, `add_special_tokens`).
    fn tokenize_body(&self, text: &str, add_special: bool) -> Value {
        json!({
            "model": self.options.model,
            "content": text,
            "prompt": text,
            "add_special": add_special,
            "add_special_tokens": add_special,
        })
    }

    /// The chat prompt as text, through the server's template.
    async fn render_chat(&self, messages: &[Message], assistant_prefix: &str) -> Result<String> {
        let body = json!({ "messages": chat_messages(messages, "") });
        let reply = self
            .request(reqwest::Method::POST, "/apply-template", Some(&body))
            .await?;
        let prompt =
            reply
                .get("prompt")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::Inference {
                    message: "/apply-template answered without a prompt".into(),
                })?;
        Ok(format!("{prompt}{assistant_prefix}"))
    }

    /// The stop sequence that ended a choice on a server that does not name it (llama.cpp):
    /// its log-probabilities (asked for whenever there are stops) end with the end-of-sequence
    /// token when that ended the text, and leave a stop sequence's tokens out: none are left
    /// where the stop was all the choice wrote (seen: `null`). Without the end-of-sequence ids
    /// (no /props) or the ids of the tokens it cannot tell, and says so once.
    fn stop_from_log_probabilities(
        &self,
        logprobs: Option<&Value>,
        stops: &[String],
    ) -> Option<String> {
        let eos = &self.info.eos_token_ids;
        match last_entry(logprobs) {
            LastEntry::Id(id) if !eos.is_empty() => {
                if eos.contains(&id) {
                    None
                } else {
                    stops.first().cloned()
                }
            }
            LastEntry::None if !eos.is_empty() => stops.first().cloned(),
            _ => {
                if !self.warned_stops.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "this server says neither which stop ended a completion (vLLM's \
                         stop_reason, SGLang's matched_stop) nor its end-of-sequence ids and \
                         token ids (llama.cpp): stops read as end of sequence, so step-wise \
                         search ends every beam at its first step"
                    );
                }
                None
            }
        }
    }

    /// The id of a token given as text, through the tokenizer; `None` where it is not one token
    /// (or the server has no tokenizer). A server that failed to answer (after the retries) is
    /// an error, not "not a token": a judge reading "Yes" without its id would score the answer
    /// 0 and the problem would be recorded as done. Nothing is remembered then.
    async fn token_id(&self, text: &str) -> Result<Option<u32>> {
        if !self.info.tokenize {
            return Ok(None);
        }
        if let Some(id) = self.ids.lock().ok().and_then(|m| m.get(text).copied()) {
            return Ok(id);
        }
        let id = match self.server_tokenize(text, false).await {
            Ok(ids) if ids.len() == 1 => ids.first().copied(),
            Ok(_) => None,
            Err(e) => {
                return Err(Error::Inference {
                    message: format!(
                        "reading the token id of {text:?} in the reply's top log-probabilities \
                         failed: {e}"
                    ),
                })
            }
        };
        if let Ok(mut map) = self.ids.lock() {
            map.insert(text.to_string(), id);
        }
        Ok(id)
    }

    /// The JSON body and path of one request for `choices` completions.
    async fn body(
        &self,
        request: &GenerationRequest,
        choices: usize,
        seed_offset: u64,
    ) -> Result<(String, Value)> {
        let mut body = json!({
            "model": self.options.model,
            "n": choices,
            "max_tokens": request.max_tokens,
            "temperature": request.sampling.temperature,
            "stream": false,
        });
        let object = body.as_object_mut().ok_or(Error::InvalidRequest {
            reason: "request body",
        })?;
        let plain = self.plain.load(Ordering::Relaxed);
        let neutral = self.options.neutral_sampling && !plain;
        match request.sampling.top_p {
            Some(top_p) => _ = object.insert("top_p".into(), json!(top_p)),
            None if neutral => _ = object.insert("top_p".into(), json!(1.0)),
            None => {}
        }
        match request.sampling.top_k {
            Some(top_k) if !plain => _ = object.insert("top_k".into(), json!(top_k)),
            None if neutral => _ = object.insert("top_k".into(), json!(-1)),
            // Refused by the server.
            Some(_) | None => {}
        }
        if neutral {
            object.insert("min_p".into(), json!(0.0));
            // No repetition penalty, as in process: vLLM takes one from the model's
            // generation_config.json (Qwen2.5-Instruct's is 1.05), llama-server from its
            // operator's --repeat-penalty (its own name for it).
            object.insert("repetition_penalty".into(), json!(1.0));
            if self.info.props {
                object.insert("repeat_penalty".into(), json!(1.0));
            }
        }
        if let Some(seed) = request.sampling.seed {
            object.insert("seed".into(), json!(seed.wrapping_add(seed_offset)));
        }
        if !request.stop.is_empty() {
            object.insert("stop".into(), json!(request.stop));
        }
        // Servers report usage for one choice only when n > 1 (llama.cpp does): the per-token
        // log-probabilities count each choice's tokens exactly, so they are asked for then.
        // They also tell whether a stop sequence or the end-of-sequence token ended a choice
        // (see `Choice::stop_sequence`), so they are asked for whenever there are stops.
        let k = request
            .top_logprobs
            .map(|k| k.clamp(1, self.options.max_top_logprobs.max(1)))
            .or((choices > 1 || !request.stop.is_empty()).then_some(1));
        // Everything but a chat prompt the server cannot render goes to /v1/completions.
        let prompt = match &request.prompt {
            Prompt::Tokens(ids) => json!(ids),
            Prompt::Text(text) => json!(text),
            Prompt::Chat {
                messages,
                assistant_prefix,
            } if self.info.apply_template => {
                json!(self.render_chat(messages, assistant_prefix).await?)
            }
            Prompt::Chat {
                messages,
                assistant_prefix,
            } if self.info.tokenize_chat => json!(self.chat_ids(messages, assistant_prefix).await?),
            Prompt::Chat {
                messages,
                assistant_prefix,
            } => {
                object.insert(
                    "messages".into(),
                    json!(chat_messages(messages, assistant_prefix)),
                );
                if !assistant_prefix.is_empty() {
                    if plain {
                        // A final assistant message would be read as a turn of its own, the
                        // reply a new one: not the continuation asked for.
                        return Err(Error::Unsupported {
                            backend: "openai",
                            operation: "continuing an assistant message on a server that \
                                        refuses continue_final_message (OpenAI's API)",
                        });
                    }
                    // vLLM continues a final assistant message with these; llama.cpp does so
                    // by itself and ignores them.
                    object.insert("continue_final_message".into(), json!(true));
                    object.insert("add_generation_prompt".into(), json!(false));
                }
                // SGLang: the text as written, thinking not taken out (vLLM has no such switch;
                // see `RawMessage::text` for what is made of its split).
                if !plain {
                    object.insert("separate_reasoning".into(), json!(false));
                }
                if let Some(k) = k {
                    object.insert("logprobs".into(), json!(true));
                    object.insert("top_logprobs".into(), json!(k));
                }
                return Ok(("/v1/chat/completions".into(), body));
            }
        };
        object.insert("prompt".into(), prompt);
        if let Some(k) = k {
            object.insert("logprobs".into(), json!(k));
        }
        Ok(("/v1/completions".into(), body))
    }

    /// One HTTP request for up to `choices` completions; `once`: without retries. Fanned-out
    /// requests offset the seed by their index so they do not repeat one another.
    async fn call(
        &self,
        request: &GenerationRequest,
        choices: usize,
        seed_offset: u64,
        once: bool,
    ) -> Result<Reply> {
        // Given up at the request's deadline (its connection closed, which stops the server
        // decoding it): the other requests of a fanned-out call keep what they answered.
        let call = self.call_now(request, choices, seed_offset, once);
        match request.deadline {
            Some(deadline) => tokio::time::timeout_at(deadline.into(), call)
                .await
                .map_err(|_| Error::out_of_time())?,
            None => call.await,
        }
    }

    async fn call_now(
        &self,
        request: &GenerationRequest,
        choices: usize,
        seed_offset: u64,
        once: bool,
    ) -> Result<Reply> {
        let (mut path, mut body) = self.body(request, choices, seed_offset).await?;
        let send = |path: String, body: Value| async move {
            if once {
                self.request_once(reqwest::Method::POST, &path, Some(&body))
                    .await
            } else {
                self.request_from(reqwest::Method::POST, &path, Some(&body))
                    .await
            }
        };
        let had_extensions = EXTENSIONS.iter().any(|field| body.get(*field).is_some());
        let (base, value) = match send(path.clone(), body.clone()).await {
            // A field of ours that only open servers read, refused: sent again without any
            // (OpenAI's API refuses each it does not know, one at a time), as is every
            // request after (and any in flight with them, refused the same).
            Err(Error::Http {
                status: 400 | 422,
                message,
                ..
            }) if had_extensions && refuses_an_extension(&message) => {
                if !self.plain.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        %message,
                        "the server refuses fields beyond OpenAI's API: sending none from now \
                         on (neutral sampling disabled: the server's own sampling defaults \
                         apply; a request's top_k is dropped; chat prompts cannot continue an \
                         assistant prefix)"
                    );
                }
                (path, body) = self.body(request, choices, seed_offset).await?;
                send(path.clone(), body).await?
            }
            sent => sent?,
        };
        // Named by server: of a fleet, the one that answered so.
        let reply: RawReply =
            serde_json::from_value(value.clone()).map_err(|e| Error::Inference {
                message: format!(
                    "unexpected reply from {base}{path} ({e}): {}",
                    clip(&value.to_string())
                ),
            })?;
        // A chat reply that continues an assistant prefix: its reasoning parser saw only the
        // continuation.
        let continued = matches!(
            &request.prompt,
            Prompt::Chat { assistant_prefix, .. } if !assistant_prefix.is_empty()
        );
        let mut out = Vec::with_capacity(reply.choices.len());
        let mut aborted = Vec::new();
        let mut raw = reply.choices;
        raw.sort_by_key(|c| c.index);
        let several = raw.len() > 1;
        for c in raw {
            let text = c
                .text
                .or_else(|| c.message.and_then(|m| m.text(continued)))
                .unwrap_or_default();
            let finish_reason = match c.finish_reason.as_deref() {
                // (`model_length`: the Mistral API's, cut at the model's window.)
                Some("length" | "model_length") => FinishReason::Length,
                // SGLang and vLLM end a request they aborted (shutting down, out of memory,
                // evicted) with a choice like any other: cut where it stood, not ended. Among
                // several, the others are answers still: it is counted and left out.
                // (`error`: a server's failure of that choice, likewise; `canceled`,
                // mistral.rs's; `content_filter`, an API's that withheld the rest.)
                Some("abort" | "error" | "canceled" | "cancelled" | "content_filter")
                    if several =>
                {
                    aborted.push(out.len());
                    FinishReason::Stop
                }
                Some(
                    reason @ ("abort" | "error" | "canceled" | "cancelled" | "content_filter"),
                ) => {
                    return Err(Error::Inference {
                        message: format!(
                            "{base} ended the completion with finish_reason \"{reason}\" \
                             after {} characters",
                            text.len()
                        ),
                    })
                }
                _ => FinishReason::Stop,
            };
            let stop_sequence = match (&finish_reason, c.stop_reason.or(c.matched_stop)) {
                (FinishReason::Length, _) => None,
                _ if request.stop.is_empty() => None,
                // The server names it (vLLM, SGLang): a string, or a token id / null for an
                // end-of-sequence token.
                (_, Some(Value::String(s))) => Some(s),
                (_, Some(_)) => None,
                (_, None) => self.stop_from_log_probabilities(c.logprobs.as_ref(), &request.stop),
            };
            let logprobs = match c.logprobs {
                Some(l) => self.logprobs(&l, request.top_logprobs.is_some()).await?,
                None => None,
            };
            out.push(Choice {
                text,
                completion_tokens: 0,
                finish_reason,
                stop_sequence,
                logprobs,
            });
        }
        Ok(Reply {
            choices: out,
            prompt_tokens: reply
                .usage
                .as_ref()
                .and_then(|u| u.prompt_tokens)
                .unwrap_or(0),
            cached_prompt_tokens: reply
                .usage
                .as_ref()
                .and_then(|u| u.prompt_tokens_details.as_ref())
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            completion_tokens: reply.usage.and_then(|u| u.completion_tokens),
            aborted,
        })
    }
}

impl OpenAiBackend {
    /// Fans out every `n` from `from` on: none of them is sent as one request again (until a
    /// refusal turns out to have been of the request, not its `n`).
    fn rule_out_n_from(&self, from: usize) {
        self.n_refused.fetch_min(from, Ordering::Relaxed);
        self.n_taken.fetch_min(from - 1, Ordering::Relaxed);
    }

    /// [`Backend::generate`], without a deadline.
    async fn generate_now(&self, mut request: GenerationRequest) -> Result<Generation> {
        // An empty stop string stops nothing, as in process: not sent (a server may refuse it,
        // or stop at once), and not read as the stop that ended a choice.
        request.stop.retain(|stop| !stop.is_empty());
        if request.n == 0 {
            return Err(Error::InvalidRequest {
                reason: "n must be at least 1",
            });
        }
        if !request.logits_processors.is_empty() {
            return Err(Error::Unsupported {
                backend: "openai",
                operation: "logits processors",
            });
        }
        let n = request.n;
        if n > 1 && request.sampling.temperature <= 0.0 {
            // Greedy choices are one text: it is asked for once and copied. vLLM refuses n > 1
            // at temperature 0 (which would read as a server without n, for good), and a fan
            // out would compute the same text n times. Usage is the one request's.
            let mut one = request;
            one.n = 1;
            // Boxed: a call of itself (the deadline, if any, is already being kept).
            let mut generation = Box::pin(self.generate_now(one)).await?;
            if let Some(first) = generation.choices.first().cloned() {
                generation.choices.resize(n, first);
            }
            return Ok(generation);
        }
        let started = Instant::now();
        let mut replies = Vec::new();
        let mut calls = 0u64;
        let taken = self.n_taken.load(Ordering::Relaxed);
        let mut refused = false;
        if n == 1 {
            replies.push(self.call(&request, n, 0, false).await?);
            calls += 1;
        } else if n <= taken {
            match self.call(&request, n, 0, false).await {
                Ok(reply) => replies.push(reply),
                // Taken before, refused now for its `n` (a server restarted with fewer
                // slots): this request fans out, and so does every `n` from it.
                Err(Error::Http {
                    status: status @ 400..=499,
                    message,
                    ..
                }) if about_n(&message) && self.options.native_n != Some(true) => {
                    tracing::warn!(status, %message, n, "the server refused an n it took before; fanning out");
                    self.rule_out_n_from(refused_from(&message, n, self.info.slots));
                    refused = true;
                }
                Err(e) => return Err(e),
            }
            calls += 1;
        } else if n < self.n_refused.load(Ordering::Relaxed) {
            // Not tried yet: one try without retries tells whether the server takes it (some
            // refuse with a 4xx or a 500, some answer with fewer choices).
            let first = match self.call(&request, n, 0, true).await {
                Ok(reply) => Some(reply),
                // Busy or a gateway hiccup says nothing about n: this request fans out (with
                // retries) and the next n > 1 asks again. (A gateway's timeout is a timeout,
                // below.)
                Err(Error::Http {
                    status: status @ (408 | 429 | 502 | 503),
                    message,
                    ..
                }) => {
                    tracing::warn!(status, %message, "the server is busy; fanning out this request");
                    None
                }
                // A 5xx is a refusal of `n` only where it says so (old llama.cpp: "Only one
                // completion choice is allowed"); any other may be a hiccup.
                Err(Error::Http {
                    status: status @ 500..=599,
                    message,
                    ..
                }) if !about_n(&message) => {
                    tracing::warn!(status, %message, "the server failed n > 1; fanning out this request");
                    None
                }
                Err(Error::Http {
                    status, message, ..
                }) => {
                    // A refusal naming a limit on `n` is of the `n`s past it only (llama-server:
                    // "Value must be between 1 <= value <= 4"): smaller ones are still tried.
                    // Any other refusal is of `n` itself.
                    let from = if about_n(&message) {
                        refused_from(&message, n, self.info.slots)
                    } else {
                        2
                    };
                    tracing::warn!(status, %message, n, "the server refused this n; fanning out");
                    self.rule_out_n_from(from);
                    refused = true;
                    None
                }
                // Not reached: the same request again, with retries. One that timed out is not
                // sent again (it would only run as long again).
                Err(Error::Connection { .. }) => Some(self.call(&request, n, 0, false).await?),
                // With several servers, the next one may answer.
                Err(Error::Timeout { .. }) if self.options.base_urls.len() > 1 => {
                    Some(self.call(&request, n, 0, false).await?)
                }
                Err(e) => return Err(e),
            };
            // The request was sent, taken or not.
            calls += 1;
            if let Some(reply) = first {
                replies.push(reply);
            }
            let got = replies.first().map_or(0, |r| r.choices.len());
            if got >= n {
                self.n_taken.fetch_max(n, Ordering::Relaxed);
            } else if got > 0 {
                // Fewer choices than asked: the server ignores `n`.
                tracing::warn!(asked = n, got, "the server does not honour n; fanning out");
                self.rule_out_n_from(2);
            }
        }
        let have: usize = replies.iter().map(|r| r.choices.len()).sum();
        if have < n {
            let fanned = join_all((have..n).map(|i| self.call(&request, 1, i as u64, false)));
            let mut failed: Option<Error> = None;
            for reply in fanned.await {
                calls += 1;
                match reply {
                    Ok(reply) => replies.push(reply),
                    Err(e) => {
                        failed = Some(match failed {
                            Some(f) => f.or_more_telling(e),
                            None => e,
                        })
                    }
                }
            }
            match failed {
                Some(e) if replies.is_empty() => {
                    // (Not where every request was only given up at the deadline.)
                    if refused && !e.is_out_of_time() && self.options.native_n.is_none() {
                        // Single requests fail too: the request was bad, not its n.
                        self.n_refused.store(usize::MAX, Ordering::Relaxed);
                    }
                    return Err(e);
                }
                // The choices answered are the reply, with what they spent, as in process (a
                // request given up at the deadline is a cut, not a failure).
                Some(e) if e.is_out_of_time() => {}
                Some(e) => tracing::warn!(
                    asked = n,
                    answered = replies.iter().map(|r| r.choices.len()).sum::<usize>(),
                    error = %e,
                    "a request of a fanned-out call failed; the call returns the choices answered"
                ),
                None => {}
            }
        }
        let mut usage = Usage {
            calls,
            ..Usage::default()
        };
        let mut choices = Vec::with_capacity(n);
        let mut dropped = 0;
        for (i, mut reply) in replies.into_iter().enumerate() {
            self.count_tokens(&mut reply, request.max_tokens).await?;
            let longest = reply.choices.iter().map(|c| c.completion_tokens).max();
            if longest > Some(request.max_tokens)
                && !self.warned_overrun.swap(true, Ordering::Relaxed)
            {
                tracing::warn!(
                    max_tokens = request.max_tokens,
                    completion_tokens = longest,
                    "the server wrote more tokens than asked: it does not honour max_tokens, and \
                     token budgets can be overrun by what it writes past them"
                );
            }
            if request.top_logprobs.is_none() {
                for choice in &mut reply.choices {
                    choice.logprobs = None;
                }
            }
            // The prompt is counted once per request whatever its n, as in process (and its
            // cache hits with it: those of the first request when fanned out).
            if i == 0 {
                usage.prompt_tokens = reply.prompt_tokens;
                usage.cached_prompt_tokens = reply.cached_prompt_tokens.min(reply.prompt_tokens);
            }
            usage.completion_tokens += reply
                .choices
                .iter()
                .map(|c| c.completion_tokens as u64)
                .sum::<u64>();
            let aborted = std::mem::take(&mut reply.aborted);
            dropped += aborted.len();
            choices.extend(
                reply
                    .choices
                    .into_iter()
                    .enumerate()
                    .filter(|(k, _)| !aborted.contains(k))
                    .map(|(_, choice)| choice),
            );
        }
        if dropped > 0 {
            if choices.is_empty() {
                return Err(Error::Inference {
                    message: format!(
                        "the server ended all {dropped} completions without an answer \
                         (finish_reason \"abort\" or \"error\")"
                    ),
                });
            }
            tracing::warn!(
                asked = n,
                aborted = dropped,
                "the server aborted some completions (finish_reason \"abort\"); the call returns the others"
            );
        }
        choices.truncate(n);
        usage.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(Generation {
            choices,
            usage,
            cut_by: None,
        })
    }
}

#[async_trait]
impl Backend for OpenAiBackend {
    async fn generate(&self, request: GenerationRequest) -> Result<Generation> {
        // A server's reply holds nothing until it is whole: at the deadline each request is
        // given up (`call`), and what was answered comes back; counting its tokens (a
        // `/tokenize` call) may take a little past it, no more than `AFTER_DEADLINE`.
        match request.deadline {
            Some(deadline) => tokio::time::timeout_at(
                (deadline + AFTER_DEADLINE).into(),
                self.generate_now(request),
            )
            .await
            .map_err(|_| Error::out_of_time())?,
            None => self.generate_now(request).await,
        }
    }

    fn capabilities(&self) -> Capabilities {
        let taken = self.n_taken.load(Ordering::Relaxed);
        Capabilities {
            backend: "openai",
            context_tokens: self.info.context_tokens,
            logits_processors: false,
            max_top_logprobs: self.options.max_top_logprobs,
            // Only once the server is known to honour it (and up to the largest it took):
            // past that an `n` may fan out, after a try, and a meter must hold room for every
            // request it may make.
            native_n: taken > 1,
            max_native_n: Some(taken).filter(|&taken| taken < usize::MAX),
            tries_n: self.n_refused.load(Ordering::Relaxed) > taken.saturating_add(1),
            eos_token_ids: self.info.eos_token_ids.clone(),
            tokenizer: self.info.tokenize,
        }
    }

    async fn tokenize(&self, input: TokenizeInput<'_>) -> Result<Vec<u32>> {
        if !self.info.tokenize {
            return Err(Error::Unsupported {
                backend: "openai",
                operation: "tokenize (the server has no /tokenize endpoint)",
            });
        }
        match input {
            TokenizeInput::Piece(text) => {
                self.pieces
                    .get_or_tokenize(text, || self.server_tokenize(text, false))
                    .await
            }
            TokenizeInput::Prompt(Prompt::Tokens(ids)) => Ok(ids.clone()),
            TokenizeInput::Prompt(Prompt::Text(text)) => self.server_tokenize(text, true).await,
            TokenizeInput::Prompt(Prompt::Chat {
                messages,
                assistant_prefix,
            }) => {
                if self.info.tokenize_chat {
                    return self.chat_ids(messages, assistant_prefix).await;
                }
                if !self.info.apply_template {
                    return Err(Error::Unsupported {
                        backend: "openai",
                        operation: "tokenizing chat prompts (the server renders chat messages \
                                    neither with /apply-template nor in /tokenize)",
                    });
                }
                let text = self.render_chat(messages, "").await?;
                let mut ids = self.server_tokenize(&text, true).await?;
                if !assistant_prefix.is_empty() {
                    ids.extend(self.server_tokenize(assistant_prefix, false).await?);
                }
                Ok(ids)
            }
        }
    }

    async fn detokenize(&self, ids: &[u32]) -> Result<String> {
        if !self.info.tokenize {
            return Err(Error::Unsupported {
                backend: "openai",
                operation: "detokenize (the server has no /detokenize endpoint)",
            });
        }
        // SGLang drops special tokens unless told not to; the others keep them.
        let body = json!({
            "model": self.options.model,
            "tokens": ids,
            "skip_special_tokens": false,
        });
        let reply = self
            .request(reqwest::Method::POST, "/detokenize", Some(&body))
            .await?;
        // llama.cpp: `content`; vLLM: `prompt`; SGLang: `text`.
        reply
            .get("content")
            .or_else(|| reply.get("prompt"))
            .or_else(|| reply.get("text"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| Error::Inference {
                message: "/detokenize answered without text".into(),
            })
    }
}

/// A body for llama.cpp's `/tokenize` with pieces: each token's id and bytes come back (sent
/// as a string where they are whole characters, else as an array of byte values).
/// `parse_special`: special tokens' text makes special tokens (llama.cpp's default), else it is
/// text, as llama.cpp reads a stop sequence.
fn pieces_body(text: &str, parse_special: bool) -> Value {
    json!({
        "content": text,
        "add_special": false,
        "parse_special": parse_special,
        "with_pieces": true,
    })
}

/// The token ids of a `/tokenize` reply.
fn read_ids(reply: &Value) -> Result<Vec<u32>> {
    token_ids(reply.get("tokens")).ok_or_else(|| Error::Inference {
        message: format!(
            "/tokenize answered without token ids: {}",
            clip(&reply.to_string())
        ),
    })
}

/// The ids and bytes of a `/tokenize` reply with pieces ([`pieces_body`]).
fn read_pieces(reply: &Value) -> Result<Vec<(u32, Vec<u8>)>> {
    reply
        .get("tokens")
        .and_then(Value::as_array)
        .and_then(|tokens| {
            tokens
                .iter()
                .map(|t| {
                    let id = u32::try_from(t.get("id")?.as_u64()?).ok()?;
                    Some((id, piece_bytes(t.get("piece")?)?))
                })
                .collect()
        })
        .ok_or_else(|| Error::Inference {
            message: format!(
                "/tokenize answered without pieces: {}",
                clip(&reply.to_string())
            ),
        })
}

/// The smallest `n` a refusal of `n` (`about_n`) rules out: past the largest limit it names
/// below `n` (llama-server: "Value must be between 1 <= value <= 4, but got 8": from 5); where
/// it names none but the server's slots are known (llama-server since 2025: "n_cmpl cannot be
/// greater than the number of slots, please increase -np"), past them; else every `n` above 1
/// (old llama.cpp: "Only one completion choice is allowed").
fn refused_from(message: &str, n: usize, slots: Option<usize>) -> usize {
    let below = |limit: &usize| *limit >= 2 && *limit < n;
    message
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|number| number.parse::<usize>().ok())
        .filter(below)
        .max()
        .or_else(|| {
            slots
                .filter(below)
                .filter(|_| message.to_ascii_lowercase().contains("slots"))
        })
        .map_or(2, |limit| limit + 1)
}

/// Whether a server's error message is about the request's context (its size or length).
fn about_context(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    [
        "context size",
        "context length",
        "context window",
        "context shift",
    ]
    .iter()
    .any(|phrase| lower.contains(phrase))
}

/// The request fields of ours beyond OpenAI's API (open servers read them).
const EXTENSIONS: [&str; 7] = [
    "separate_reasoning",
    "continue_final_message",
    "add_generation_prompt",
    "top_k",
    "min_p",
    "repetition_penalty",
    "repeat_penalty",
];

/// Whether a server's error message refuses a request field of ours beyond OpenAI's API: one
/// part of it (an error of a list, between braces) names the field and says it is refused
/// (OpenAI's "Unrecognized request argument supplied: top_k", pydantic's "extra fields not
/// permitted" and "Extra inputs are not permitted"). A field named as a key (`'top_k': 0`) is
/// the request echoed back (vLLM's validation errors carry the whole body, whatever they are
/// about), and a complaint about a value ("top_k must be -1 (disable), or at least 1, got 0")
/// is not a refusal: either would otherwise turn neutral sampling off for good.
fn refuses_an_extension(message: &str) -> bool {
    const REFUSALS: [&str; 9] = [
        "unrecognized",
        "unrecognised",
        "unknown",
        "extra",
        "unexpected",
        "not permitted",
        "not allowed",
        "not supported",
        "unsupported",
    ];
    let lower = message.to_ascii_lowercase();
    let in_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    lower.split(['{', '}']).any(|part| {
        let named = EXTENSIONS.iter().any(|&field| {
            part.match_indices(field).any(|(at, _)| {
                let before = part.get(..at).unwrap_or_default();
                let after = part.get(at + field.len()..).unwrap_or_default();
                !before.ends_with(in_name)
                    && !after.starts_with(in_name)
                    && !after.starts_with("':")
                    && !after.starts_with("\":")
            })
        });
        named && REFUSALS.iter().any(|word| part.contains(word))
    })
}

/// Whether a server's error message is about the `n` parameter (a word `n`, or "choice").
fn about_n(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("choice")
        || lower
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| w == "n")
}

#[cfg(test)]
mod tests {
    use super::refuses_an_extension;

    #[test]
    fn only_words_of_refusal_next_to_a_field_of_ours_refuse_it() {
        // OpenAI's; pydantic v1's and v2's (FastAPI's list of errors, in Python's or JSON's
        // notation); Groq's.
        for refusal in [
            "Unrecognized request argument supplied: top_k",
            "[{'loc': ('body', 'min_p'), 'msg': 'extra fields not permitted', 'type': \
             'value_error.extra'}]",
            r#"[{"type":"extra_forbidden","loc":["body","repetition_penalty"],"msg":"Extra inputs are not permitted","input":1.0}]"#,
            "property 'top_k' is unsupported",
        ] {
            assert!(refuses_an_extension(refusal), "{refusal}");
        }
        // vLLM's validation error echoing the body, whose prompt says anything, about a value
        // of top_k; old vLLM's words for it alone; a missing field with the body echoed as
        // JSON; refusals of fields not ours (one whose name starts with one of ours).
        for other in [
            "[{'type': 'value_error', 'loc': ('body',), 'msg': 'Value error, top_k must be -1 \
             (disable), or at least 1, got 0.', 'input': {'model': 'm', 'prompt': 'an \
             unknown, extra number', 'top_k': 0, 'min_p': 0.0, 'repetition_penalty': 1.0}, \
             'ctx': {'error': ValueError('top_k must be -1 (disable), or at least 1, got \
             0.')}}]",
            "top_k must be -1 (disable), or at least 1, got 0.",
            r#"[{"type":"missing","loc":["body","prompt"],"msg":"Field required","input":{"model":"m","top_k":-1,"note":"unknown"}}]"#,
            "Unrecognized request argument supplied: logit_bias",
            "Unrecognized request argument supplied: min_pixels",
        ] {
            assert!(!refuses_an_extension(other), "{other}");
        }
    }
}
