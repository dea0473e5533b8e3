//! [`Seeded`]: sampler seeds for requests that bring none, so that a run can be repeated (and two
//! versions of a strategy compared on the same random draws for as long as they ask the same
//! things) where the backend honours a per-request seed: OpenAI-compatible servers (vLLM,
//! llama-server) do; mistral.rs 0.8.1 has one engine-wide generator and ignores it.
//!
//! The seeds follow the order requests are made in: the k-th sampled request through one
//! `Seeded` gets a seed derived from its base and k. A batch run gives each problem its own base
//! (from the run's seed and the problem's id), so concurrency does not reorder them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use crate::backend::{Backend, Capabilities, Generation, GenerationRequest, TokenizeInput};
use crate::Result;

/// Gives each sampled request without a seed of its own the next seed of a sequence.
pub struct Seeded {
    inner: Arc<dyn Backend>,
    base: u64,
    next: AtomicU64,
}

impl std::fmt::Debug for Seeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seeded")
            .field("backend", &self.inner.capabilities().backend)
            .field("base", &self.base)
            .field("next", &self.next.load(Ordering::Relaxed))
            .finish()
    }
}

impl Seeded {
    /// `inner`, its sampled requests seeded from `base`.
    pub fn new(inner: Arc<dyn Backend>, base: u64) -> Self {
        Self {
            inner,
            base,
            next: AtomicU64::new(0),
        }
    }
}

/// The base seed of `name` (a problem id, say) in a run seeded with `seed`.
pub fn seed_for(seed: u64, name: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update(name.as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

/// The k-th seed after `base`: 31 bits, which every server reads as a plain non-negative
/// integer (llama-server takes the all-ones 32-bit seed to mean "random").
fn nth(base: u64, k: u64) -> u64 {
    base.wrapping_add(k.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .rotate_left(17)
        & 0x7FFF_FFFF
}

#[async_trait]
impl Backend for Seeded {
    async fn generate(&self, mut request: GenerationRequest) -> Result<Generation> {
        // Greedy requests draw nothing: they take no seed, and leave the sequence alone.
        if request.sampling.seed.is_none() && request.sampling.temperature > 0.0 {
            let k = self.next.fetch_add(1, Ordering::Relaxed);
            request.sampling.seed = Some(nth(self.base, k));
        }
        self.inner.generate(request).await
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn tokenize(&self, input: TokenizeInput<'_>) -> Result<Vec<u32>> {
        self.inner.tokenize(input).await
    }

    async fn detokenize(&self, ids: &[u32]) -> Result<String> {
        self.inner.detokenize(ids).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::scripted::ScriptedBackend;
    use crate::{Prompt, Sampling};

    fn request(temperature: f64) -> GenerationRequest {
        GenerationRequest::new(Prompt::Text("Q".into()))
            .with_sampling(Sampling::with_temperature(temperature))
    }

    async fn seeds(base: u64, temperatures: &[f64]) -> Vec<Option<u64>> {
        let backend = Arc::new(ScriptedBackend::new(vec!["a"; temperatures.len()]));
        let seeded = Seeded::new(Arc::clone(&backend) as Arc<dyn Backend>, base);
        for &t in temperatures {
            seeded.generate(request(t)).await.unwrap();
        }
        backend.requests().iter().map(|r| r.sampling.seed).collect()
    }

    #[tokio::test]
    async fn sampled_requests_get_a_repeatable_sequence_of_seeds() {
        let a = seeds(seed_for(7, "p1"), &[0.8, 0.0, 0.8, 0.8]).await;
        assert_eq!(a[1], None, "a greedy request takes no seed");
        let drawn: Vec<u64> = a.iter().flatten().copied().collect();
        assert_eq!(drawn.len(), 3);
        assert!(drawn[0] != drawn[1] && drawn[1] != drawn[2] && drawn[0] != drawn[2]);
        assert!(drawn.iter().all(|&s| s <= 0x7FFF_FFFF));
        // The same run seed and problem: the same seeds; another problem or run: others.
        assert_eq!(seeds(seed_for(7, "p1"), &[0.8, 0.0, 0.8, 0.8]).await, a);
        assert_ne!(seeds(seed_for(7, "p2"), &[0.8]).await[0], a[0]);
        assert_ne!(seeds(seed_for(8, "p1"), &[0.8]).await[0], a[0]);
    }

    #[tokio::test]
    async fn a_request_with_its_own_seed_keeps_it() {
        let backend = Arc::new(ScriptedBackend::new(vec!["a"]));
        let seeded = Seeded::new(Arc::clone(&backend) as Arc<dyn Backend>, 1);
        let mut own = request(0.8);
        own.sampling.seed = Some(42);
        seeded.generate(own).await.unwrap();
        assert_eq!(backend.requests()[0].sampling.seed, Some(42));
    }
}
