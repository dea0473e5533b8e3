//! How to reach the servers: [`OpenAiOptions`].

use std::time::Duration;

/// How to reach the servers. (Its `Debug` leaves the API key out.)
#[derive(Clone, PartialEq, Eq)]
pub struct OpenAiOptions {
    /// Base URLs, each up to and excluding `/v1` (e.g. `http://127.0.0.1:8080`); a trailing
    /// `/v1` is accepted and dropped.
    pub base_urls: Vec<String>,
    /// The `model` field of every request.
    pub model: String,
    /// The API key, sent as a bearer token.
    pub api_key: Option<String>,
    /// Time limit of one HTTP request.
    pub timeout: Duration,
    /// Most HTTP requests in flight at once, over all URLs.
    pub concurrency: usize,
    /// Retries after the first attempt on connection errors, 408, 429 and 5xx. A timeout (a
    /// proxy's 504 or 524 among them) is sent on only to other servers, once to each; a 501 or
    /// 505 never. A status the server kept answering is then that request's error
    /// (`Error::Http`); servers never reached, `Error::Connection`. While connecting, the
    /// optional endpoints (`/props`, `/tokenize`, `/apply-template`) are asked again at most 3
    /// times.
    pub retries: u32,
    /// First backoff; doubled on each retry, capped at 15 s, jittered by a quarter.
    pub backoff: Duration,
    /// Whether the servers honour `n > 1`; `None` finds out from the first reply.
    pub native_n: Option<bool>,
    /// Context window in tokens; `None` asks the server (`/props` or `/v1/models`).
    pub context_tokens: Option<usize>,
    /// Largest `top_logprobs` to ask for.
    pub max_top_logprobs: usize,
    /// Send `top_k = -1`, `min_p = 0` and `top_p = 1` unless the request sets them, and no
    /// repetition penalty (`repetition_penalty = 1`, `repeat_penalty = 1`), so servers with
    /// sampling defaults of their own (llama.cpp: top-k 40, top-p 0.95, min-p 0.05; vLLM: the
    /// model's generation_config.json) sample as mistral.rs does in process. Turn off for APIs
    /// that reject `top_k` and `min_p`.
    pub neutral_sampling: bool,
}

impl std::fmt::Debug for OpenAiOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiOptions")
            .field(
                "base_urls",
                &self
                    .base_urls
                    .iter()
                    .map(|url| super::without_login(url))
                    .collect::<Vec<_>>(),
            )
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "(set)"))
            .field("timeout", &self.timeout)
            .field("concurrency", &self.concurrency)
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .field("native_n", &self.native_n)
            .field("context_tokens", &self.context_tokens)
            .field("max_top_logprobs", &self.max_top_logprobs)
            .field("neutral_sampling", &self.neutral_sampling)
            .finish()
    }
}

impl OpenAiOptions {
    /// Options for one server with the defaults: no key, 10 minute timeout, 64 requests in
    /// flight, 10 retries from 0.5 s (about 90 s in all: a server restarting or loading its
    /// model is waited for), `n` support detected, at most 20 top log-probabilities.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_urls: vec![base_url.into()],
            model: model.into(),
            api_key: None,
            timeout: Duration::from_secs(600),
            concurrency: 64,
            retries: 10,
            backoff: Duration::from_millis(500),
            native_n: None,
            context_tokens: None,
            max_top_logprobs: 20,
            neutral_sampling: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_leaves_the_api_key_and_logins_out() {
        let mut options = OpenAiOptions::new("http://user:secret-pass@127.0.0.1:8080", "m");
        options.api_key = Some("sk-secret-key".into());
        let shown = format!("{options:?}");
        assert!(
            !shown.contains("secret") && shown.contains("(set)") && shown.contains("127.0.0.1"),
            "{shown}"
        );
    }

    #[test]
    fn a_login_in_a_url_without_a_scheme_is_not_shown() {
        // A URL that cannot be read as one (no `://`, no host) keeps no login, and fails in an
        // error that shows it: what would be the login is shown as `***`.
        for (url, shown) in [
            ("user:xyzzy@host:8080", "***@host:8080"),
            ("user:xy/zzy@host:8080/v1", "***@host:8080/v1"),
            ("http:/user:xyzzy@host", "***@host"),
            ("http://user:xyzzy@/v1", "http://***@/v1"),
            ("host:8080/v1", "host:8080/v1"),
        ] {
            let (bare, login) = super::super::split_login(url);
            assert_eq!(bare, shown);
            assert!(login.is_none(), "{url}");
            let debug = format!("{:?}", OpenAiOptions::new(url, "m"));
            assert!(!debug.contains("zzy") && debug.contains(shown), "{debug}");
        }
    }
}
