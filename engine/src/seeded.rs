//! [`Seeded`]: sampler seeds for requests that bring none, so that a run can be repeated (and two
//! versions of a strategy compared on the same random draws for as long as they ask the same
//! things) where the backend honours a per-request seed: OpenAI-compatible servers (vLLM,
//! llama-server) do, and so does the in-process backend (ponder draws the tokens; see
//! `seeded_draw.rs`), log-probabilities included.
//!
//! A seed follows from the base, the prompt and how many sampled requests of that same prompt
//! came through this `Seeded` before: the k-th request of a prompt gets a seed derived from the
//! base, the prompt and k. So requests made concurrently (a beam's expansions, whose order of
//! arrival depends on how long each took to tokenize) get the same seeds whatever order they
//! arrive in, and two `Seeded` on one base (a policy and its judge) do not share seeds unless
//! they send the same prompt. A batch run gives each problem its own base (from the run's seed
//! and the problem's id), so concurrency across problems does not change them either. Requests
//! of one prompt made at once take its seeds in their order of arrival (interchangeable draws),
//! unless each comes from a context of its own (`Context::sample`: best-of-N over an inner
//! strategy numbers its samples).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::backend::{Backend, Capabilities, Generation, GenerationRequest, Prompt, TokenizeInput};
use crate::Result;

/// Gives each sampled request without a seed of its own the next seed of its prompt's sequence.
pub struct Seeded {
    inner: Arc<dyn Backend>,
    base: u64,
    /// Sampled requests so far, by prompt (its digest under this base).
    drawn: Mutex<HashMap<u64, u64>>,
}

impl std::fmt::Debug for Seeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seeded")
            .field("backend", &self.inner.capabilities().backend)
            .field("base", &self.base)
            .finish()
    }
}

impl Seeded {
    /// `inner`, its sampled requests seeded from `base`.
    pub fn new(inner: Arc<dyn Backend>, base: u64) -> Self {
        Self {
            inner,
            base,
            drawn: Mutex::new(HashMap::new()),
        }
    }

    /// The next seed of `prompt`'s sequence.
    fn next_seed(&self, prompt: &Prompt) -> u64 {
        let key = prompt_base(self.base, prompt);
        let k = match self.drawn.lock() {
            Ok(mut drawn) => {
                let count = drawn.entry(key).or_insert(0);
                *count += 1;
                *count - 1
            }
            Err(_) => 0,
        };
        nth(key, k)
    }
}

/// The base of `prompt`'s seeds: a digest of `base` and the prompt, stable across builds.
fn prompt_base(base: u64, prompt: &Prompt) -> u64 {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(base.to_le_bytes());
    match prompt {
        Prompt::Chat {
            messages,
            assistant_prefix,
        } => {
            hasher.update(b"chat");
            for message in messages {
                hasher.update(message.role.as_str().as_bytes());
                hasher.update([0]);
                hasher.update(message.content.as_bytes());
                hasher.update([0]);
            }
            hasher.update(assistant_prefix.as_bytes());
        }
        Prompt::Text(text) => {
            hasher.update(b"text");
            hasher.update(text.as_bytes());
        }
        Prompt::Tokens(ids) => {
            hasher.update(b"tokens");
            for id in ids {
                hasher.update(id.to_le_bytes());
            }
        }
    }
    let digest = hasher.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
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
            request.sampling.seed = Some(self.next_seed(&request.prompt));
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
    async fn a_prompts_seeds_do_not_depend_on_the_order_prompts_arrive_in() {
        let prompt = |text: &str| {
            GenerationRequest::new(Prompt::Text(text.into()))
                .with_sampling(Sampling::with_temperature(0.8))
        };
        let run = |order: Vec<&'static str>| async move {
            let backend = Arc::new(ScriptedBackend::new(vec!["a"; order.len()]));
            let seeded = Seeded::new(Arc::clone(&backend) as Arc<dyn Backend>, 5);
            for text in &order {
                seeded.generate(prompt(text)).await.unwrap();
            }
            let mut seeds: Vec<(String, u64)> = backend
                .requests()
                .iter()
                .map(|r| (ScriptedBackend::render(&r.prompt), r.sampling.seed.unwrap()))
                .collect();
            seeds.sort();
            seeds
        };
        let a = run(vec!["beam 1", "beam 2", "beam 1"]).await;
        let b = run(vec!["beam 2", "beam 1", "beam 1"]).await;
        assert_eq!(a, b);
        // Two draws of one prompt differ; so do two prompts' first draws.
        assert_ne!(a[0].1, a[1].1);
        assert_ne!(a[0].1, a[2].1);
        // Another `Seeded` on the same base (a judge) with another prompt: other seeds.
        let judge = run(vec!["judge"]).await;
        assert!(a.iter().all(|(_, s)| *s != judge[0].1));
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
