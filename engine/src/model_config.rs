//! The `[model]` section of a config file, and loading the backend it names.

use std::num::NonZeroUsize;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::error::Result;
use crate::models::{ModelSource, DEFAULT_MODEL};
use crate::openai::{OpenAiBackend, OpenAiOptions};

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The CPU (default).
    #[default]
    Cpu,
    /// A CUDA device by ordinal (`cuda:0`); needs the `cuda` feature.
    Cuda(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| format!("`{s}` is not a device: expected `cpu` or `cuda:N`")),
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How to load a mistral.rs model.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    /// Device. Default CPU.
    pub device: DeviceSpec,
    /// Most sequences mistral.rs schedules at once. Default 32 on the CPU, 64 on CUDA
    /// ([`LoadOptions::for_device`]). The CPU backend sends one sequence at a time regardless
    /// (see the `mistralrs_backend` module docs).
    pub max_num_seqs: usize,
    /// mistral.rs's prefix cache: a request that starts with the tokens of an earlier one reuses
    /// their keys and values instead of computing them again. Default on CUDA, off on the CPU
    /// ([`LoadOptions::for_device`]). On CUDA it is PagedAttention's block cache, bounded by the KV
    /// pool (least recently used blocks go first). On the CPU mistral.rs 0.8.1 keeps every
    /// finished sequence's keys and values and never evicts them (its cap counts only GPU
    /// caches): about 23 MB more per finished sequence on SmolLM2-135M, without bound.
    pub prefix_cache: bool,
    /// The PagedAttention KV pool on CUDA (ignored on the CPU, which has no PagedAttention).
    pub kv_pool: KvPool,
    /// A Jinja chat template (a `.jinja` file) used instead of the model's own: for a GGUF
    /// whose template is missing or wrong. Default: the model's.
    pub chat_template: Option<std::path::PathBuf>,
    /// Dequantize a GGUF model's weights at load ([`Dequantize`]; process-wide, so this only
    /// checks that the environment asks for it). Default none: as stored.
    pub dequantize: Option<Dequantize>,
}

/// How large the PagedAttention KV pool is on CUDA. mistral.rs's own default is a pool of 4096
/// tokens shared by all sequences, which queues all but a few long samples; ponder sizes it
/// explicitly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KvPool {
    /// A pool of this many tokens over all sequences (`paged_attention_tokens`).
    Tokens(usize),
    /// This share of the device's memory for weights and pool together, the pool taking what
    /// the loaded weights leave (`gpu_memory_utilization`, as in vLLM). The default, at 0.9.
    Utilization(f32),
}

impl Default for KvPool {
    fn default() -> Self {
        Self::Utilization(DEFAULT_GPU_MEMORY_UTILIZATION)
    }
}

/// The share of GPU memory ponder sizes the KV pool to by default (vLLM's default too).
pub const DEFAULT_GPU_MEMORY_UTILIZATION: f32 = 0.9;

/// How a GGUF model's quantized weight matrices are multiplied (`dequantize`). By default
/// candle multiplies them as they are stored, one row of the input at a time: on the CPU a
/// prompt of many tokens then costs nearly as much per token as decoding (SmolLM2-135M Q4_1 on
/// 2 cores: ~90 prompt tokens a second). Dequantized once at load, they go through a blocked
/// matrix multiply: prompts several times faster, for more memory (the README's "Choosing
/// weights on CPU" has the figures).
///
/// It is candle's process-wide switch (`CANDLE_DEQUANTIZE_ALL_F16`, `CANDLE_DEQUANTIZE_ALL`,
/// read once per thread), so every GGUF model loaded in the process is loaded the same way: the
/// `ponder` CLI sets it before it starts, from the config; a program embedding ponder sets the
/// variable in its environment before it starts (loading a model that asks for it otherwise is
/// an error naming the variable). The check reads the environment as it is when the model
/// loads; candle keeps what each thread read first, so a variable changed while the program
/// runs may not take effect, and that the check cannot see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dequantize {
    /// To f16, multiplied in f16: prompts ~4x faster on the CPU, decoding as fast, memory
    /// about 1.4-1.8x. f16 tops out at 65504: a model whose activations grow past that (rare)
    /// writes nonsense; use `f32` for it.
    F16,
    /// To f32, multiplied in f32: prompts ~4.5x faster on the CPU, decoding 1.3-1.9x slower,
    /// memory about 1.6-2.1x.
    F32,
}

impl Dequantize {
    /// The environment variable that turns it on.
    pub fn variable(self) -> &'static str {
        match self {
            Self::F16 => "CANDLE_DEQUANTIZE_ALL_F16",
            Self::F32 => "CANDLE_DEQUANTIZE_ALL",
        }
    }

    /// What this process's environment asks candle for, as candle reads it (f32 first).
    pub fn in_effect() -> Option<Self> {
        [Self::F32, Self::F16].into_iter().find(|d| d.is_set())
    }

    /// Whether this way's variable is set as candle reads it: to anything but empty or `0`.
    pub fn is_set(self) -> bool {
        std::env::var(self.variable()).is_ok_and(|v| !v.is_empty() && v != "0")
    }

    /// Why `self` is refused for a model on a GPU.
    pub fn on_cuda(self) -> String {
        format!(
            "dequantize = \"{self}\" is for the CPU: on CUDA candle multiplies a prompt by \
             quantized weights with batched kernels already, and dequantized weights would take \
             several times the GPU memory (it is process-wide, so no model on a GPU can share a \
             process with it)"
        )
    }

    /// The error for a model that asks for `self` where the environment says `in_effect`.
    #[cfg(feature = "mistralrs")]
    pub(crate) fn mismatch(self, in_effect: Option<Self>) -> Option<String> {
        if in_effect == Some(self) {
            return None;
        }
        let (now, unset) = match in_effect {
            Some(other) => (
                format!("{}=1 asks for {other}", other.variable()),
                // candle looks at the f32 switch first.
                match other {
                    Self::F32 => format!(" and {} unset", other.variable()),
                    Self::F16 => String::new(),
                },
            ),
            None => ("it is not set".to_string(), String::new()),
        };
        Some(format!(
            "dequantize = \"{self}\" is process-wide (candle reads {var} once per thread): \
             the ponder command line sets it from the config, but here {now}; start the \
             program with {var}=1{unset} in its environment",
            var = self.variable()
        ))
    }
}

impl std::str::FromStr for Dequantize {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f16" => Ok(Self::F16),
            "f32" => Ok(Self::F32),
            other => Err(format!("expected f16 or f32, got {other:?}")),
        }
    }
}

impl std::fmt::Display for Dequantize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F16 => "f16",
            Self::F32 => "f32",
        })
    }
}

/// Why a model (GGUF or not) cannot load on `device`, if it cannot: mistral.rs 0.8.1's builder
/// for safetensors models and hub ids ignores the device it is given and loads on cuda:0, so
/// another GPU would be silently left unused.
pub(crate) fn ordinal_refused(device: DeviceSpec, gguf: bool) -> Option<String> {
    match device {
        DeviceSpec::Cuda(ordinal @ 1..) if !gguf => Some(format!(
            "a safetensors model or hub id loads on cuda:0 whatever the ordinal (mistral.rs \
             0.8.1); to run it on GPU {ordinal}, set CUDA_VISIBLE_DEVICES={ordinal} and \
             device = \"cuda:0\" (GGUF files take any ordinal)"
        )),
        _ => None,
    }
}

impl LoadOptions {
    /// The defaults for `device`: 32 sequences at once on the CPU (where the backend sends one at a
    /// time anyway), 64 on CUDA (the KV pool, not this, bounds memory there); the prefix cache
    /// on CUDA only.
    pub fn for_device(device: DeviceSpec) -> Self {
        Self {
            device,
            max_num_seqs: default_max_num_seqs(device).get(),
            prefix_cache: default_prefix_cache(device),
            ..Self::default()
        }
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: DeviceSpec::Cpu,
            max_num_seqs: default_max_num_seqs(DeviceSpec::Cpu).get(),
            prefix_cache: default_prefix_cache(DeviceSpec::Cpu),
            kv_pool: KvPool::default(),
            chat_template: None,
            dequantize: None,
        }
    }
}

/// Which backend runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// mistral.rs in this process (default).
    #[default]
    Mistralrs,
    /// OpenAI-compatible HTTP servers (`base_url`, `model`).
    Openai,
}

/// One URL or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(untagged, expecting = "a URL string or a list of URL strings")]
pub enum Urls {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Urls {
    /// The URLs as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Self::None => Vec::new(),
            Self::One(url) => vec![url.clone()],
            Self::Many(urls) => urls.clone(),
        }
    }
}

/// The `[model]` table.
///
/// In process (default): `source`, `device`, `max_num_seqs`, `prefix_cache`, `chat_template`,
/// and on CUDA `paged_attention_tokens` or `gpu_memory_utilization`. Over HTTP (`backend = "openai"`): `base_url` (one or a list, used
/// round-robin), `model`, `api_key_env`, `timeout_secs`, `concurrency`, `retries`, `native_n`,
/// `context_tokens`, `max_top_logprobs`, `neutral_sampling`. A key of the other backend is an
/// error when the table is read (`model = "..."` without `backend = "openai"` would otherwise run
/// the default in-process model), as are an openai table without `base_url` and zero
/// `timeout_secs` or `context_tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Table")]
pub struct ModelConfig {
    /// `mistralrs` (default) or `openai`.
    pub backend: BackendKind,
    /// A built-in name, a local `.gguf`, a local directory, or a hub id. Default `smollm2-135m`.
    pub source: String,
    /// `cpu` or `cuda:N`. Default `cpu`.
    pub device: DeviceSpec,
    /// Most sequences decoded at once on CUDA. Default 64 (32 on the CPU, which decodes one
    /// sequence at a time: see the README's Known issues).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_num_seqs: Option<NonZeroUsize>,
    /// Reuse the keys and values of earlier requests' common prefixes. Default: on CUDA (bounded
    /// by the KV pool), off on the CPU, where mistral.rs 0.8.1 never evicts (memory grows with
    /// every finished sequence; see [`LoadOptions::prefix_cache`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix_cache: Option<bool>,
    /// CUDA: the PagedAttention KV pool in tokens, over all sequences. Default: sized by
    /// `gpu_memory_utilization`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paged_attention_tokens: Option<NonZeroUsize>,
    /// CUDA: the share of the GPU's memory (0 to 1] for the weights and the KV pool together;
    /// the pool takes what the weights leave. Default 0.9. Not with `paged_attention_tokens`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_memory_utilization: Option<f32>,
    /// A Jinja chat template file (`.jinja`) used instead of the model's own. Default: the
    /// model's. (Over HTTP the server's template applies: llama-server `--chat-template-file`.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<String>,
    /// A GGUF model's weights dequantized at load, `f16` or `f32` ([`Dequantize`]): prompts
    /// several times faster on the CPU, for more memory. Process-wide. Default: as stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dequantize: Option<Dequantize>,
    /// OpenAI backend: base URL(s) of the servers, e.g. `http://127.0.0.1:8080`.
    #[serde(skip_serializing_if = "is_none_urls")]
    pub base_url: Urls,
    /// OpenAI backend: the model name sent with each request. Default `default`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// OpenAI backend: the environment variable holding the API key (never the key itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// OpenAI backend: time limit of one HTTP request in seconds (at least 1). Default 600.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// OpenAI backend: most requests in flight over all servers. Default 64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<NonZeroUsize>,
    /// OpenAI backend: retries on connection errors, 429 and 5xx (and, with several servers,
    /// timeouts, on the next one). Default 10: about 90 s of waiting in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// OpenAI backend: whether the servers honour `n > 1`. Default: found out from the first
    /// reply, fanning out single-choice requests where they do not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub native_n: Option<bool>,
    /// OpenAI backend: context window in tokens (at least 1). Default: asked from the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_tokens: Option<usize>,
    /// OpenAI backend: most top log-probabilities to ask for. Default 20.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_top_logprobs: Option<usize>,
    /// OpenAI backend: send neutral `top_k`/`min_p`/`top_p` so servers' own sampling defaults
    /// do not apply. Default true; set false for APIs that reject `top_k` and `min_p`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub neutral_sampling: Option<bool>,
}

/// [`ModelConfig`] as a file spells it, before [`ModelConfig::check`]: serde reads the keys
/// (strictly, with their defaults) into this, then the checks that need several keys run.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    #[serde(default)]
    backend: BackendKind,
    #[serde(default = "default_source")]
    source: String,
    #[serde(default)]
    device: DeviceSpec,
    #[serde(default)]
    max_num_seqs: Option<NonZeroUsize>,
    #[serde(default)]
    prefix_cache: Option<bool>,
    #[serde(default)]
    paged_attention_tokens: Option<NonZeroUsize>,
    #[serde(default)]
    gpu_memory_utilization: Option<f32>,
    #[serde(default)]
    chat_template: Option<String>,
    #[serde(default)]
    dequantize: Option<Dequantize>,
    #[serde(default)]
    base_url: Urls,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    api_key_env: Option<String>,
    #[serde(default)]
    timeout_secs: Option<u64>,
    #[serde(default)]
    concurrency: Option<NonZeroUsize>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    native_n: Option<bool>,
    #[serde(default)]
    context_tokens: Option<usize>,
    #[serde(default)]
    max_top_logprobs: Option<usize>,
    #[serde(default)]
    neutral_sampling: Option<bool>,
}

impl TryFrom<Table> for ModelConfig {
    type Error = String;

    fn try_from(t: Table) -> std::result::Result<Self, String> {
        let config = Self {
            backend: t.backend,
            source: t.source,
            device: t.device,
            max_num_seqs: t.max_num_seqs,
            prefix_cache: t.prefix_cache,
            paged_attention_tokens: t.paged_attention_tokens,
            gpu_memory_utilization: t.gpu_memory_utilization,
            chat_template: t.chat_template,
            dequantize: t.dequantize,
            base_url: t.base_url,
            model: t.model,
            api_key_env: t.api_key_env,
            timeout_secs: t.timeout_secs,
            concurrency: t.concurrency,
            retries: t.retries,
            native_n: t.native_n,
            context_tokens: t.context_tokens,
            max_top_logprobs: t.max_top_logprobs,
            neutral_sampling: t.neutral_sampling,
        };
        config.check_keyed().map_err(|(key, message)| match key {
            Some(key) => format!("at `{key}`: {message}"),
            None => message,
        })?;
        Ok(config)
    }
}

fn is_none_urls(urls: &Urls) -> bool {
    matches!(urls, Urls::None)
}

fn default_source() -> String {
    DEFAULT_MODEL.to_string()
}

fn default_max_num_seqs(device: DeviceSpec) -> NonZeroUsize {
    match device {
        DeviceSpec::Cpu => NonZeroUsize::MIN.saturating_add(31),
        DeviceSpec::Cuda(_) => NonZeroUsize::MIN.saturating_add(63),
    }
}

fn default_prefix_cache(device: DeviceSpec) -> bool {
    matches!(device, DeviceSpec::Cuda(_))
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            source: default_source(),
            device: DeviceSpec::Cpu,
            max_num_seqs: None,
            prefix_cache: None,
            paged_attention_tokens: None,
            gpu_memory_utilization: None,
            chat_template: None,
            dequantize: None,
            backend: BackendKind::Mistralrs,
            base_url: Urls::None,
            model: None,
            api_key_env: None,
            timeout_secs: None,
            concurrency: None,
            retries: None,
            native_n: None,
            context_tokens: None,
            max_top_logprobs: None,
            neutral_sampling: None,
        }
    }
}

/// What of a model table, as [`ModelConfig`] serializes it, changes results: which model (the
/// backend and its source; a server's model name, or where a server asked for its default
/// model is), and, where set, what changes every prompt or draw (a chat template of its own,
/// the server's own sampling) or which tokens a call may write or a judge may read
/// (`context_tokens`, `max_top_logprobs`). Not where or how fast it runs (device, URLs of a
/// named model, timeouts, retries, concurrency, KV pool). Idempotent, so a recorded identity
/// reads as itself.
pub fn model_identity(table: &serde_json::Value) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let get = |key: &str| table.get(key).filter(|v| !v.is_null());
    let mut out = Map::new();
    let backend = get("backend").cloned().unwrap_or(json!("mistralrs"));
    let openai = backend == "openai";
    out.insert("backend".into(), backend);
    if openai {
        match get("model") {
            Some(model) => {
                out.insert("model".into(), model.clone());
            }
            None => {
                out.insert("model".into(), Value::Null);
                // One URL is a list of one (`"http://a"` and `["http://a"]` are one server);
                // a login written into one is no part of it (nor written to a record).
                let bare = |url: &Value| match url.as_str() {
                    Some(url) => Value::String(crate::openai::without_login(url)),
                    None => url.clone(),
                };
                let urls = match get("base_url") {
                    Some(Value::Array(urls)) => Value::Array(urls.iter().map(bare).collect()),
                    Some(url) => json!([bare(url)]),
                    None => json!([]),
                };
                out.insert("base_url".into(), urls);
            }
        }
    } else {
        let source = get("source").cloned().unwrap_or(json!(DEFAULT_MODEL));
        out.insert("source".into(), source);
    }
    if let Some(template) = get("chat_template") {
        out.insert("chat_template".into(), template.clone());
    }
    if get("neutral_sampling") == Some(&json!(false)) {
        out.insert("neutral_sampling".into(), json!(false));
    }
    for key in ["context_tokens", "max_top_logprobs"] {
        if let Some(value) = get(key) {
            out.insert(key.into(), value.clone());
        }
    }
    Value::Object(out)
}

/// Replaces every model table inside `value` (an object with a `backend` of `mistralrs` or
/// `openai`: `[model]`, a PRM's, an S* judge's) with its [`model_identity`].
pub fn model_identities(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            let is_model = map
                .get("backend")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|b| matches!(b, "mistralrs" | "openai"));
            if is_model {
                *value = model_identity(value);
            } else {
                map.values_mut().for_each(model_identities);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(model_identities),
        _ => {}
    }
}

impl ModelConfig {
    /// A config for OpenAI-compatible servers at `base_urls` serving `model`.
    pub fn openai(base_urls: Vec<String>, model: impl Into<String>) -> Self {
        Self {
            backend: BackendKind::Openai,
            base_url: Urls::Many(base_urls),
            model: Some(model.into()),
            ..Self::default()
        }
    }

    /// The keys of the openai backend this table gives.
    fn openai_keys(&self) -> Vec<&'static str> {
        let given = [
            ("base_url", !is_none_urls(&self.base_url)),
            ("model", self.model.is_some()),
            ("api_key_env", self.api_key_env.is_some()),
            ("timeout_secs", self.timeout_secs.is_some()),
            ("concurrency", self.concurrency.is_some()),
            ("retries", self.retries.is_some()),
            ("native_n", self.native_n.is_some()),
            ("context_tokens", self.context_tokens.is_some()),
            ("max_top_logprobs", self.max_top_logprobs.is_some()),
            ("neutral_sampling", self.neutral_sampling.is_some()),
        ];
        given.iter().filter(|(_, g)| *g).map(|(k, _)| *k).collect()
    }

    /// The keys of the mistralrs backend this table gives. `source` and `device` count only
    /// when they differ from their defaults, which a table written back from a [`ModelConfig`]
    /// (a results file's recorded strategy) always carries.
    fn mistralrs_keys(&self) -> Vec<&'static str> {
        let given = [
            ("source", self.source != DEFAULT_MODEL),
            ("device", self.device != DeviceSpec::Cpu),
            ("max_num_seqs", self.max_num_seqs.is_some()),
            ("prefix_cache", self.prefix_cache.is_some()),
            (
                "paged_attention_tokens",
                self.paged_attention_tokens.is_some(),
            ),
            (
                "gpu_memory_utilization",
                self.gpu_memory_utilization.is_some(),
            ),
            ("chat_template", self.chat_template.is_some()),
            ("dequantize", self.dequantize.is_some()),
        ];
        given.iter().filter(|(_, g)| *g).map(|(k, _)| *k).collect()
    }

    /// The rules between keys, checked when a table is read (and again before loading, for
    /// tables built in code): no key of the other backend, and for `backend = "openai"` a
    /// `base_url` and nonzero `timeout_secs` and `context_tokens`. Whether `api_key_env` names
    /// a set variable is left to [`ModelConfig::openai_options`].
    fn check(&self) -> std::result::Result<(), String> {
        self.check_keyed().map_err(|(_, message)| message)
    }

    /// [`ModelConfig::check`], with the key an error is about where it is about one (the
    /// first of several): a file's error then names that key's line, not the table's.
    fn check_keyed(&self) -> std::result::Result<(), (Option<&'static str>, String)> {
        fn named(keys: &[&str]) -> String {
            let keys: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
            match keys.as_slice() {
                [one] => format!("{one} is a key"),
                [rest @ .., last] => format!("{} and {last} are keys", rest.join(", ")),
                [] => String::new(),
            }
        }
        match self.backend {
            BackendKind::Mistralrs => {
                let keys = self.openai_keys();
                if !keys.is_empty() {
                    let source = if keys.contains(&"model") && keys.len() == 1 {
                        " (or, for a model run in process, name it with `source`)"
                    } else {
                        ""
                    };
                    return Err((
                        keys.first().copied(),
                        format!(
                            "{} of the openai backend, but the backend here is mistralrs, \
                             which runs `source` in process: add backend = \"openai\"{source}",
                            named(&keys)
                        ),
                    ));
                }
                // The KV pool given two ways, or a share of GPU memory out of range: named when
                // the file is read (a PRM's or judge's table too), not when its model loads.
                // With the key it is about, so a file's error names its line.
                if let Err((key, message)) = self.keyed_load_options() {
                    return Err((Some(key), message));
                }
            }
            BackendKind::Openai => {
                let keys = self.mistralrs_keys();
                if !keys.is_empty() {
                    let mut model = if keys.contains(&"source") {
                        "; over HTTP, `model` names the model the server serves"
                    } else {
                        ""
                    }
                    .to_string();
                    if keys.contains(&"chat_template") {
                        model.push_str(
                            "; over HTTP the server's chat template applies \
                             (llama-server --jinja --chat-template-file FILE)",
                        );
                    }
                    return Err((
                        keys.first().copied(),
                        format!(
                            "{} of the mistralrs backend (models run in process), not of \
                             backend = \"openai\": remove {}{model}",
                            named(&keys),
                            if keys.len() == 1 { "it" } else { "them" }
                        ),
                    ));
                }
                if self.base_url.to_vec().is_empty() {
                    return Err((
                        None,
                        "backend = \"openai\" needs base_url, e.g. \
                         base_url = \"http://127.0.0.1:8080\""
                            .into(),
                    ));
                }
                // An http(s) URL with a host, as written (the client does not trim it).
                let usable = |u: &str| {
                    u.trim() == u
                        && u.split_once("://").is_some_and(|(scheme, rest)| {
                            matches!(scheme, "http" | "https") && !rest.starts_with('/')
                        })
                        && reqwest::Url::parse(u)
                            .is_ok_and(|url| url.host_str().is_some_and(|h| !h.is_empty()))
                };
                if let Some(url) = self.base_url.to_vec().into_iter().find(|u| !usable(u)) {
                    let bare = url
                        .trim()
                        .trim_start_matches("http://")
                        .trim_start_matches("https://");
                    // No host: the usual one, with the path given.
                    let example = if bare.trim_start_matches('/').is_empty()
                        || bare.starts_with(':')
                        || bare.contains("://")
                    {
                        "127.0.0.1:8080".to_string()
                    } else if bare.starts_with('/') {
                        format!("127.0.0.1:8080/{}", bare.trim_start_matches('/'))
                    } else {
                        bare.to_string()
                    };
                    return Err((
                        Some("base_url"),
                        format!(
                            "base_url {url:?}: expected an http:// or https:// URL with a host \
                             and no spaces around it, e.g. \"http://{example}\""
                        ),
                    ));
                }
                if self.timeout_secs == Some(0) {
                    return Err((
                        Some("timeout_secs"),
                        "timeout_secs = 0: expected the seconds one HTTP request may take, at \
                         least 1, e.g. 600"
                            .into(),
                    ));
                }
                if self.max_top_logprobs == Some(0) {
                    return Err((
                        Some("max_top_logprobs"),
                        "max_top_logprobs = 0: expected how many top log-probabilities the \
                         server returns, at least 1 (OpenAI's and vLLM's default 20)"
                            .into(),
                    ));
                }
                if self.context_tokens == Some(0) {
                    return Err((
                        Some("context_tokens"),
                        "context_tokens = 0: expected the servers' context window in tokens, \
                         e.g. 4096, or no context_tokens to ask the server"
                            .into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks what can be checked without loading, so that a batch job stops before it starts
    /// (a model can take minutes to load; a scorer's or judge's loads at its first problem):
    /// the keys, the source (a GGUF file that is there, a directory, a built-in name or a hub
    /// id), the chat template file, and that `api_key_env` names a set variable. The error is
    /// the message alone; the caller names the table.
    pub fn preflight(&self) -> std::result::Result<(), String> {
        let message = |e: crate::Error| match e {
            crate::Error::Config { message, .. } => message,
            e => e.to_string(),
        };
        self.check()?;
        let options = self.load_options().map_err(message)?;
        match self.backend {
            BackendKind::Openai => self.api_key().map(drop),
            BackendKind::Mistralrs => {
                let source = ModelSource::parse(&self.source).map_err(message)?;
                let gguf = source.is_gguf();
                if let Some(refused) = ordinal_refused(self.device, gguf) {
                    return Err(refused);
                }
                if let (Some(dequantize), DeviceSpec::Cuda(_)) = (self.dequantize, self.device) {
                    return Err(Dequantize::on_cuda(dequantize));
                }
                if let (Some(dequantize), false) = (self.dequantize, gguf) {
                    return Err(format!(
                        "dequantize = \"{dequantize}\" is for GGUF models, whose weights are \
                         quantized; {} is a safetensors model or hub id",
                        self.source
                    ));
                }
                match &options.chat_template {
                    Some(path) => match std::fs::metadata(path) {
                        Ok(meta) if meta.is_dir() => Err(format!(
                            "chat_template {}: a directory, not a Jinja file",
                            path.display()
                        )),
                        Ok(_) => Ok(()),
                        Err(e) => Err(format!("chat_template {}: {e}", path.display())),
                    },
                    None => Ok(()),
                }
            }
        }
    }

    /// Whether this build can run the table: a model in process on a GPU needs the `cuda`
    /// feature. The error is the message alone; the caller names the table.
    pub fn check_build(&self) -> std::result::Result<(), String> {
        if self.backend == BackendKind::Mistralrs
            && matches!(self.device, DeviceSpec::Cuda(_))
            && !cfg!(feature = "cuda")
        {
            return Err(format!(
                "device = \"{}\" needs ponder built with the `cuda` feature (cargo build \
                 --release --features cuda, or scripts/gpu/build.sh); this build runs models \
                 on the CPU only: device = \"cpu\"",
                self.device
            ));
        }
        Ok(())
    }

    /// The API key, from the variable `api_key_env` names, without the whitespace around it
    /// (a key read from a file with its line's end).
    fn api_key(&self) -> std::result::Result<Option<String>, String> {
        let Some(var) = &self.api_key_env else {
            return Ok(None);
        };
        let key = std::env::var(var).map_err(|_| {
            format!("api_key_env names `{var}`, which is not set in the environment")
        })?;
        let key = key.trim();
        if key.is_empty() || key.chars().any(char::is_control) {
            // (The key itself is not shown.)
            return Err(format!(
                "api_key_env names `{var}`, whose value is {}: an HTTP header cannot carry it",
                if key.is_empty() {
                    "empty"
                } else {
                    "a key with control characters inside it"
                }
            ));
        }
        Ok(Some(key.to_string()))
    }

    /// The HTTP options this table describes (`backend = "openai"`); reads the API key from the
    /// variable `api_key_env` names.
    pub fn openai_options(&self) -> Result<OpenAiOptions> {
        let urls = self.base_url.to_vec();
        let bad = |message: String| crate::Error::Config {
            path: "[model]".into(),
            message,
        };
        self.check().map_err(bad)?;
        let mut options = OpenAiOptions::new(
            String::new(),
            self.model.clone().unwrap_or("default".into()),
        );
        options.base_urls = urls;
        options.api_key = self.api_key().map_err(bad)?;
        if let Some(secs) = self.timeout_secs {
            options.timeout = std::time::Duration::from_secs(secs);
        }
        if let Some(n) = self.concurrency {
            options.concurrency = n.get();
        }
        if let Some(n) = self.retries {
            options.retries = n;
        }
        options.native_n = self.native_n;
        options.context_tokens = self.context_tokens;
        if let Some(k) = self.max_top_logprobs {
            options.max_top_logprobs = k;
        }
        if let Some(neutral) = self.neutral_sampling {
            options.neutral_sampling = neutral;
        }
        Ok(options)
    }

    /// Loads (or connects to) the backend this table describes.
    pub async fn load(&self) -> Result<Arc<dyn Backend>> {
        self.check().map_err(|message| crate::Error::Config {
            path: "[model]".into(),
            message,
        })?;
        match self.backend {
            BackendKind::Openai => Ok(Arc::new(
                OpenAiBackend::connect(self.openai_options()?).await?,
            )),
            BackendKind::Mistralrs => self.load_in_process().await,
        }
    }

    /// The load options this table describes; an error names a KV pool given two ways or a
    /// utilization outside (0, 1].
    pub fn load_options(&self) -> Result<LoadOptions> {
        self.keyed_load_options()
            .map_err(|(_, message)| crate::Error::Config {
                path: "[model]".into(),
                message,
            })
    }

    /// [`Self::load_options`], an error with the key it is about.
    fn keyed_load_options(&self) -> std::result::Result<LoadOptions, (&'static str, String)> {
        let kv_pool = match (self.paged_attention_tokens, self.gpu_memory_utilization) {
            // Both given: the pool's share is the second way.
            (Some(_), Some(_)) => {
                return Err((
                    "gpu_memory_utilization",
                    "paged_attention_tokens and gpu_memory_utilization both size \
                     the KV pool: give one"
                        .into(),
                ))
            }
            (Some(tokens), None) => KvPool::Tokens(tokens.get()),
            (None, Some(share)) if share > 0.0 && share <= 1.0 => KvPool::Utilization(share),
            (None, Some(share)) => {
                return Err((
                    "gpu_memory_utilization",
                    format!(
                        "gpu_memory_utilization = {share}: expected a share of the GPU's memory \
                         above 0 and at most 1, e.g. 0.9"
                    ),
                ))
            }
            (None, None) => KvPool::default(),
        };
        // mistral.rs takes a template file only by a name ending `.jinja` (and panics on any
        // other); whether the file is there is checked when the model loads.
        let chat_template = match &self.chat_template {
            Some(path) if !path.ends_with(".jinja") => {
                return Err((
                    "chat_template",
                    format!(
                        "chat_template = {path:?}: expected a Jinja template file whose name \
                         ends in `.jinja`"
                    ),
                ))
            }
            Some(path) => Some(std::path::PathBuf::from(path)),
            None => None,
        };
        Ok(LoadOptions {
            device: self.device,
            max_num_seqs: self
                .max_num_seqs
                .unwrap_or_else(|| default_max_num_seqs(self.device))
                .get(),
            prefix_cache: self
                .prefix_cache
                .unwrap_or_else(|| default_prefix_cache(self.device)),
            kv_pool,
            chat_template,
            dequantize: self.dequantize,
        })
    }

    #[cfg(feature = "mistralrs")]
    async fn load_in_process(&self) -> Result<Arc<dyn Backend>> {
        let source = ModelSource::parse(&self.source)?;
        if self.device == DeviceSpec::Cpu {
            let pool = [
                (
                    "paged_attention_tokens",
                    self.paged_attention_tokens.is_some(),
                ),
                (
                    "gpu_memory_utilization",
                    self.gpu_memory_utilization.is_some(),
                ),
            ];
            if let Some((key, _)) = pool.iter().find(|(_, set)| *set) {
                tracing::warn!(
                    "{key} sizes PagedAttention's KV pool on a GPU; {} runs on the CPU, \
                     where it does not apply",
                    self.source
                );
            }
        }
        let backend =
            crate::mistralrs_backend::MistralRsBackend::load(&source, &self.load_options()?)
                .await?;
        Ok(Arc::new(backend))
    }

    #[cfg(not(feature = "mistralrs"))]
    async fn load_in_process(&self) -> Result<Arc<dyn Backend>> {
        let _ = ModelSource::parse(&self.source)?;
        let _ = self.load_options()?;
        Err(crate::Error::Unsupported {
            backend: "mistralrs",
            operation: "loading models (ponder-engine was built without the `mistralrs` feature)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_str, Format};

    fn options(toml: &str) -> Result<LoadOptions> {
        parse_str::<ModelConfig>(toml, Format::Toml)
            .map_err(|e| crate::Error::Config {
                path: "test".into(),
                message: e,
            })?
            .load_options()
    }

    #[test]
    fn the_defaults_follow_the_device() {
        let cpu = options("").unwrap();
        assert_eq!((cpu.device, cpu.max_num_seqs), (DeviceSpec::Cpu, 32));
        let cuda = options("device = \"cuda:1\"").unwrap();
        assert_eq!((cuda.device, cuda.max_num_seqs), (DeviceSpec::Cuda(1), 64));
        assert_eq!(cuda.kv_pool, KvPool::Utilization(0.9));
        assert_eq!(
            LoadOptions::for_device(DeviceSpec::Cuda(0)).max_num_seqs,
            64
        );
        let set = options("device = \"cuda:0\"\nmax_num_seqs = 8").unwrap();
        assert_eq!(set.max_num_seqs, 8);
    }

    #[test]
    fn the_kv_pool_is_sized_one_way() {
        let tokens = options("device = \"cuda:0\"\npaged_attention_tokens = 65536").unwrap();
        assert_eq!(tokens.kv_pool, KvPool::Tokens(65536));
        let share = options("device = \"cuda:0\"\ngpu_memory_utilization = 0.5").unwrap();
        assert_eq!(share.kv_pool, KvPool::Utilization(0.5));
        let both = options("paged_attention_tokens = 1024\ngpu_memory_utilization = 0.5")
            .unwrap_err()
            .to_string();
        assert!(both.contains("give one"), "{both}");
        for bad in ["0.0", "1.5", "-0.2"] {
            let err = options(&format!("gpu_memory_utilization = {bad}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("gpu_memory_utilization"), "{err}");
        }
    }

    #[test]
    fn a_chat_template_is_a_jinja_file() {
        let set = options("chat_template = \"templates/r1.jinja\"").unwrap();
        assert_eq!(set.chat_template, Some("templates/r1.jinja".into()));
        assert_eq!(options("").unwrap().chat_template, None);
        // mistral.rs would panic on any other name.
        let err = read("chat_template = \"tokenizer_config.json\"").unwrap_err();
        assert!(
            err.contains("chat_template = \"tokenizer_config.json\"") && err.contains(".jinja"),
            "{err}"
        );
    }

    fn read(toml: &str) -> std::result::Result<ModelConfig, String> {
        parse_str::<ModelConfig>(toml, Format::Toml)
    }

    #[test]
    fn keys_of_the_openai_backend_need_backend_openai() {
        // Without `backend`, `model` and `base_url` would be ignored and smollm2-135m would run.
        let err = read("model = \"Qwen/Qwen2.5-7B-Instruct\"").unwrap_err();
        assert!(
            err.contains("`model` is a key of the openai backend")
                && err.contains("add backend = \"openai\"")
                && err.contains("`source`"),
            "{err}"
        );
        let err = read("base_url = \"http://127.0.0.1:8080\"\nmodel = \"qwen\"").unwrap_err();
        assert!(
            err.contains("`base_url` and `model` are keys of the openai backend")
                && err.contains("mistralrs")
                && err.contains("add backend = \"openai\""),
            "{err}"
        );
        for key in [
            "api_key_env = \"KEY\"",
            "timeout_secs = 60",
            "concurrency = 4",
            "retries = 1",
            "native_n = false",
            "context_tokens = 4096",
            "max_top_logprobs = 5",
            "neutral_sampling = false",
        ] {
            let err = read(&format!("backend = \"mistralrs\"\n{key}")).unwrap_err();
            let name = key.split(' ').next().unwrap();
            assert!(
                err.contains(&format!("`{name}` is a key of the openai backend")),
                "{err}"
            );
        }
        // Inside a file the error names the key and its line; one about no key, the table.
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct File {
            model: ModelConfig,
        }
        let err =
            parse_str::<File>("[model]\nbase_url = \"http://a:1\"\n", Format::Toml).unwrap_err();
        assert!(
            err.starts_with("at `model.base_url` (line 2): `base_url` is a key"),
            "{err}"
        );
        let err = parse_str::<File>(
            "[model]\nbackend = \"openai\"\nmodel = \"m\"\n",
            Format::Toml,
        )
        .unwrap_err();
        assert!(
            err.starts_with("at `model` (line 1): backend = \"openai\" needs base_url"),
            "{err}"
        );
        // A table built in code is checked before it loads.
        let code = ModelConfig {
            model: Some("qwen".into()),
            ..ModelConfig::default()
        };
        assert!(code.check().unwrap_err().contains("`model`"));
    }

    #[test]
    fn keys_of_the_mistralrs_backend_are_errors_over_http() {
        let openai = "backend = \"openai\"\nbase_url = \"http://127.0.0.1:8080\"\n";
        let err = read(&format!("{openai}source = \"Qwen/Qwen2.5-7B-Instruct\"")).unwrap_err();
        assert!(
            err.contains("`source` is a key of the mistralrs backend")
                && err.contains("not of backend = \"openai\": remove it")
                && err.contains("`model` names the model"),
            "{err}"
        );
        let err = read(&format!(
            "{openai}device = \"cuda:0\"\nprefix_cache = true\npaged_attention_tokens = 1024"
        ))
        .unwrap_err();
        assert!(
            err.contains("`device`, `prefix_cache` and `paged_attention_tokens` are keys of the mistralrs backend")
                && err.contains("remove them"),
            "{err}"
        );
        for key in ["max_num_seqs = 8", "gpu_memory_utilization = 0.5"] {
            let err = read(&format!("{openai}{key}")).unwrap_err();
            let name = key.split(' ').next().unwrap();
            assert!(err.contains(&format!("`{name}` is a key")), "{err}");
        }
        let err = read("backend = \"openai\"\nbase_url = [\"http://a:1\", \"127.0.0.1:8080\"]")
            .unwrap_err();
        assert!(
            err.contains("base_url \"127.0.0.1:8080\"") && err.contains("http://127.0.0.1:8080"),
            "{err}"
        );
        let err = read(&format!("{openai}chat_template = \"t.jinja\"")).unwrap_err();
        assert!(
            err.contains("`chat_template` is a key of the mistralrs backend")
                && err.contains("--chat-template-file"),
            "{err}"
        );
        // An openai table written back (a recorded strategy's PRM or judge) carries the in-process
        // defaults and reads again.
        let written =
            serde_json::to_value(ModelConfig::openai(vec!["http://a:1".into()], "m")).unwrap();
        assert_eq!(written["source"], DEFAULT_MODEL, "{written}");
        let again: ModelConfig = serde_json::from_value(written).unwrap();
        assert_eq!(again, ModelConfig::openai(vec!["http://a:1".into()], "m"));
        let config = read(&format!("{openai}model = \"qwen\"\ntimeout_secs = 5")).unwrap();
        assert_eq!(
            config.openai_options().unwrap().base_urls,
            ["http://127.0.0.1:8080"]
        );
    }

    #[test]
    fn an_openai_table_is_checked_when_read() {
        for toml in [
            "backend = \"openai\"",
            "backend = \"openai\"\nbase_url = []",
        ] {
            let err = read(toml).unwrap_err();
            assert!(err.contains("needs base_url"), "{err}");
        }
        // A base_url the client could not use: no host, spaces around it, another scheme.
        for (url, example) in [
            ("http://:8080", "http://127.0.0.1:8080"),
            ("http:///v1", "http://127.0.0.1:8080/v1"),
            ("https:///", "http://127.0.0.1:8080"),
            (" http://127.0.0.1:9 ", "http://127.0.0.1:9"),
            ("127.0.0.1:9", "http://127.0.0.1:9"),
            ("ftp://127.0.0.1:9", "http://127.0.0.1:8080"),
        ] {
            let err = read(&format!("backend = \"openai\"\nbase_url = {url:?}")).unwrap_err();
            assert!(
                err.contains(&format!(
                    "base_url {url:?}: expected an http:// or https:// URL"
                )) && err.contains(&format!("e.g. \"{example}\"")),
                "{url}: {err}"
            );
        }
        let openai = "backend = \"openai\"\nbase_url = \"http://127.0.0.1:8080\"\n";
        assert!(read(openai).is_ok());
        let err = read(&format!("{openai}timeout_secs = 0")).unwrap_err();
        assert!(
            err.contains("timeout_secs = 0") && err.contains("at least 1"),
            "{err}"
        );
        let err = read(&format!("{openai}context_tokens = 0")).unwrap_err();
        assert!(err.contains("context_tokens = 0"), "{err}");
        let err = read(&format!("{openai}max_top_logprobs = 0")).unwrap_err();
        assert!(err.contains("max_top_logprobs = 0"), "{err}");
        // Whether the key's variable is set is known where the model loads, not where the file is.
        let config = read(&format!(
            "{openai}api_key_env = \"PONDER_TEST_SURELY_UNSET_KEY\""
        ))
        .unwrap();
        let err = config.openai_options().unwrap_err().to_string();
        assert!(err.contains("PONDER_TEST_SURELY_UNSET_KEY"), "{err}");
        // The error names the file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.toml");
        std::fs::write(&path, "backend = \"openai\"\n").unwrap();
        let err = crate::config::load_file::<ModelConfig>(&path).unwrap_err();
        let crate::Error::Config {
            path: named,
            message,
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(named, &path);
        assert!(message.contains("needs base_url"), "{message}");
    }

    #[test]
    fn a_kv_pool_given_two_ways_is_named_when_read() {
        let err = read(
            "paged_attention_tokens = 8192
gpu_memory_utilization = 0.9",
        )
        .unwrap_err();
        assert!(err.contains("give one"), "{err}");
        let err = read("gpu_memory_utilization = 1.5").unwrap_err();
        assert!(err.contains("gpu_memory_utilization = 1.5"), "{err}");
        read("gpu_memory_utilization = 0.5").unwrap();
    }

    #[test]
    fn a_safetensors_model_on_a_second_gpu_is_refused_before_loading() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let table = |source: &str, device: usize| ModelConfig {
            source: source.into(),
            device: DeviceSpec::Cuda(device),
            ..ModelConfig::default()
        };
        let safetensors = dir.path().to_string_lossy().into_owned();
        for source in ["org/model", safetensors.as_str()] {
            let err = table(source, 1).preflight().unwrap_err();
            assert!(
                err.contains("set CUDA_VISIBLE_DEVICES=1"),
                "{source}: {err}"
            );
            table(source, 0).preflight().unwrap();
        }
        // GGUF weights take any ordinal.
        table("smollm2-135m", 1).preflight().unwrap();
        std::fs::write(dir.path().join("model.gguf"), "").unwrap();
        table(&safetensors, 1).preflight().unwrap();
    }
}
