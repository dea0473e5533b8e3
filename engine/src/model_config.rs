//! The `[model]` section of a config file, and loading the backend it names.

use std::num::NonZeroUsize;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::error::Result;
use crate::models::{ModelSource, DEFAULT_MODEL};

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Device. Default CPU.
    pub device: DeviceSpec,
    /// Most sequences decoded at once. Default 32.
    pub max_num_seqs: usize,
    /// Finished sequences kept in mistral.rs's prefix cache (0 disables it). Default 0: in
    /// mistral.rs 0.8.1 the cache corrupts the outputs of concurrent requests on CPU.
    pub prefix_cache_seqs: usize,
    /// PagedAttention KV pool in tokens (CUDA only; `None` leaves it off). Default none.
    pub paged_attention_tokens: Option<usize>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: DeviceSpec::Cpu,
            max_num_seqs: default_max_num_seqs().get(),
            prefix_cache_seqs: default_prefix_cache_seqs(),
            paged_attention_tokens: None,
        }
    }
}

/// The `[model]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// A built-in name, a local `.gguf`, a local directory, or a hub id. Default `smollm2-135m`.
    #[serde(default = "default_source")]
    pub source: String,
    /// `cpu` or `cuda:N`. Default `cpu`.
    #[serde(default)]
    pub device: DeviceSpec,
    /// Most sequences decoded at once. Default 32.
    #[serde(default = "default_max_num_seqs")]
    pub max_num_seqs: NonZeroUsize,
    /// Finished sequences kept in mistral.rs's prefix cache; 0 disables it. Default 0: in
    /// mistral.rs 0.8.1 the cache corrupts the outputs of concurrent requests on CPU (greedy
    /// outputs change and mix text from other sequences); turn it on only for sequential work.
    #[serde(default = "default_prefix_cache_seqs")]
    pub prefix_cache_seqs: usize,
    /// PagedAttention KV pool in tokens (CUDA only). Default off.
    #[serde(default)]
    pub paged_attention_tokens: Option<NonZeroUsize>,
}

fn default_source() -> String {
    DEFAULT_MODEL.to_string()
}

fn default_max_num_seqs() -> NonZeroUsize {
    NonZeroUsize::MIN.saturating_add(31)
}

fn default_prefix_cache_seqs() -> usize {
    0
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            source: default_source(),
            device: DeviceSpec::Cpu,
            max_num_seqs: default_max_num_seqs(),
            prefix_cache_seqs: default_prefix_cache_seqs(),
            paged_attention_tokens: None,
        }
    }
}

impl ModelConfig {
    /// The load options this table describes.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            device: self.device,
            max_num_seqs: self.max_num_seqs.get(),
            prefix_cache_seqs: self.prefix_cache_seqs,
            paged_attention_tokens: self.paged_attention_tokens.map(NonZeroUsize::get),
        }
    }

    /// Loads the backend this table describes.
    #[cfg(feature = "mistralrs")]
    pub async fn load(&self) -> Result<Arc<dyn Backend>> {
        let source = ModelSource::parse(&self.source)?;
        let backend =
            crate::mistralrs_backend::MistralRsBackend::load(&source, &self.load_options()).await?;
        Ok(Arc::new(backend))
    }

    /// Loads the backend this table describes.
    #[cfg(not(feature = "mistralrs"))]
    pub async fn load(&self) -> Result<Arc<dyn Backend>> {
        let _ = ModelSource::parse(&self.source)?;
        Err(crate::Error::Unsupported {
            backend: "mistralrs",
            operation: "loading models (ponder-engine was built without the `mistralrs` feature)",
        })
    }
}
