//! Shared set-up for the end-to-end tests: one runtime and one real SmolLM2-135M backend per
//! test binary (fetched on first use, like `ponder models fetch smollm2-135m`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, LazyLock, OnceLock};

#[path = "support/repo.rs"]
pub mod repo;

use ponder::engine::{Backend, DeviceSpec, KvPool, LoadOptions, MistralRsBackend, ModelConfig};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("test runtime")
});

static SMOLLM: OnceLock<Arc<MistralRsBackend>> = OnceLock::new();

/// Runs a future on the shared test runtime.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    RUNTIME.block_on(future)
}

/// The real SmolLM2-135M, loaded once per test binary.
pub fn smollm() -> Arc<MistralRsBackend> {
    Arc::clone(SMOLLM.get_or_init(|| {
        block_on(async {
            let config = ModelConfig::default();
            let source =
                ponder::engine::models::ModelSource::parse(&config.source).expect("source");
            Arc::new(
                MistralRsBackend::load(&source, &options())
                    .await
                    .expect("loading smollm2-135m"),
            )
        })
    }))
}

/// Load options for the shared backend: the defaults for the device, which
/// `PONDER_TEST_DEVICE=cuda:0` sets (a build with the `cuda` feature), and
/// `PONDER_TEST_PREFIX_CACHE=1` (or `0`) turns mistral.rs's prefix cache on (or off) whatever
/// the device's default.
///
/// On CUDA the KV pool is [`TEST_KV_TOKENS`] tokens, not the default share of the GPU: a test
/// binary loads several backends at once (the shared one, [`smollm_thinking`], a prefix-cache
/// one), and the first to take 90% of the memory would leave the others none.
pub fn options() -> LoadOptions {
    let mut options = LoadOptions::for_device(device());
    if matches!(options.device, DeviceSpec::Cuda(_)) {
        options.kv_pool = KvPool::Tokens(TEST_KV_TOKENS);
    }
    if let Ok(on) = std::env::var("PONDER_TEST_PREFIX_CACHE") {
        options.prefix_cache = matches!(on.as_str(), "1" | "true" | "on");
    }
    options
}

/// The KV pool of each backend the tests load on CUDA: 64 samples of 1024 tokens (SmolLM2-135M
/// keeps 23 KiB a token: 1.5 GiB).
pub const TEST_KV_TOKENS: usize = 65_536;

/// The device the end-to-end tests run on: `PONDER_TEST_DEVICE` (`cpu` or `cuda:N`), default CPU.
pub fn device() -> DeviceSpec {
    match std::env::var("PONDER_TEST_DEVICE") {
        Ok(device) => device.parse().expect("PONDER_TEST_DEVICE"),
        Err(_) => DeviceSpec::Cpu,
    }
}

/// Whether a request's arithmetic is the same each time it is made: on the CPU (one sequence at
/// a time) with the prefix cache off (a prompt it held is not evaluated again whole). On a GPU
/// a batch's kernels and the prefix cache round differently from one call to the next.
#[allow(dead_code)] // Not every test binary uses it.
pub fn repeats_exactly() -> bool {
    device() == DeviceSpec::Cpu && !options().prefix_cache
}

/// The same backend behind the trait.
pub fn smollm_dyn() -> Arc<dyn Backend> {
    smollm()
}

/// The path of the model a fixture script of the repository writes (given `args`) and prints.
#[allow(dead_code)] // Not every test binary uses it.
pub fn fixture_path(script: &str, args: &[&std::path::Path]) -> std::path::PathBuf {
    let out = std::process::Command::new(repo::repo(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8(out.stdout).expect("a UTF-8 path");
    path.trim().into()
}

/// A chat template like SmolLM2's own whose assistant turn starts `<think>\n`, as the templates
/// of DeepSeek-R1's distills and QwQ do: `tests/support/thinking.jinja`, found from where the
/// tests run (scripts/gpu/run.sh runs them in a checkout on another machine, where the path
/// they were compiled at does not exist).
#[allow(dead_code)] // Not every test binary uses it.
pub fn thinking_template() -> std::path::PathBuf {
    repo::repo("tests/support/thinking.jinja")
}

/// The real SmolLM2-135M with a context window of `tokens` (8192 in the file): a copy of the
/// GGUF in `dir` with only its `llama.context_length` changed, which mistral.rs reads as the
/// model's window. A prompt at the edge of so small a window prefills in a second on a CPU,
/// where one near 8192 tokens takes minutes. A backend of its own, loaded per call.
#[allow(dead_code)] // Not every test binary uses it.
pub fn smollm_with_window(dir: &std::path::Path, tokens: u32) -> Arc<dyn Backend> {
    let file = ponder::engine::models::builtin("smollm2-135m")
        .expect("built-in smollm2-135m")
        .ensure()
        .expect("fetching smollm2-135m");
    let mut bytes = std::fs::read(&file).expect("reading the GGUF");
    // The key as GGUF writes it (a u64 length, its bytes), then the value's type: 4, a u32.
    const KEY: &[u8] = b"llama.context_length";
    let mut entry = (KEY.len() as u64).to_le_bytes().to_vec();
    entry.extend_from_slice(KEY);
    entry.extend_from_slice(&4u32.to_le_bytes());
    let at = bytes
        .windows(entry.len())
        .position(|w| w == entry.as_slice())
        .expect("a u32 llama.context_length in the GGUF")
        + entry.len();
    let value = bytes.get_mut(at..at + 4).expect("the value after its key");
    assert_eq!(value, 8192u32.to_le_bytes(), "SmolLM2's window as fetched");
    value.copy_from_slice(&tokens.to_le_bytes());
    let copy = dir.join(format!("SmolLM2-135M-Instruct.window-{tokens}.gguf"));
    std::fs::write(&copy, &bytes).expect("writing the copy");
    let source = ponder::engine::models::ModelSource::parse(copy.to_str().expect("a UTF-8 path"))
        .expect("source");
    Arc::new(block_on(MistralRsBackend::load(&source, &options())).expect("loading the copy"))
}

/// What a context window of 256 tokens must leave working on `backend`: budget forcing asked
/// for 400 tokens of thinking (by each of `modes`) thinks what leaves room to answer, then
/// answers; a beam search whose steps outgrow the window ends its beams there. Both used to
/// fail their problem (a request whose prompt and max_tokens pass the window is refused).
#[allow(dead_code)] // Not every test binary uses it.
pub fn thinking_and_search_end_at_a_256_token_window(
    backend: Arc<dyn Backend>,
    modes: &[ponder::strategies::ForcingMode],
) {
    use ponder::strategies::{BudgetForcingConfig, ForcingDetails, StrategyConfig};
    assert_eq!(backend.capabilities().context_tokens, Some(256));
    let solve = |config: StrategyConfig, backend: Arc<dyn Backend>, question: &str| {
        let strategy = config.build().unwrap();
        let problem = ponder::Problem::new("p", question);
        block_on(ponder::engine::solve(
            strategy.as_ref(),
            &problem,
            backend,
            ponder::engine::Budget::unlimited(),
        ))
        .unwrap()
    };
    for &mode in modes {
        let forcing = BudgetForcingConfig {
            min_thinking_tokens: 400,
            max_thinking_tokens: 400,
            max_waits: 100,
            mode,
            ..BudgetForcingConfig::default()
        };
        let solution = solve(
            StrategyConfig::BudgetForcing(forcing),
            Arc::clone(&backend),
            "Explain step by step how to multiply 17 by 23.",
        );
        let details: ForcingDetails = serde_json::from_value(solution.details.clone()).unwrap();
        assert_eq!(details.mode, mode);
        assert!(details.forced_end, "{mode:?}: {details:?}");
        assert!(
            details.thinking_tokens > 50 && details.thinking_tokens < 256,
            "{mode:?}: {details:?}"
        );
        assert!(
            solution.completion.contains("Final Answer:") && details.answer_tokens >= 1,
            "{mode:?}: {:?}",
            solution.completion
        );
    }
    let beam: StrategyConfig = ponder::engine::config::parse_str(
        "kind = \"beam_search\"\nn = 2\nbeam_width = 2\nmax_steps = 40\nmax_step_tokens = 48\n\
         temperature = 0.8\nscorer = { kind = \"llm_judge\", mode = \"outcome\" }\n",
        ponder::engine::config::Format::Toml,
    )
    .unwrap();
    // Seeded, so that the same beams grow each time (one of them to the window).
    let seeded = Arc::new(ponder::engine::Seeded::new(backend, 7)) as Arc<dyn Backend>;
    let solution = solve(
        beam,
        seeded,
        "Write a long story about a dragon, one paragraph at a time.",
    );
    assert!(
        solution.details["out_of_context"].as_u64() >= Some(1) && !solution.completion.is_empty(),
        "{}",
        solution.details
    );
}

/// The real SmolLM2-135M under [`thinking_template`] (a backend of its own, loaded per call).
#[allow(dead_code)] // Not every test binary uses it.
pub fn smollm_thinking() -> Arc<dyn Backend> {
    let source =
        ponder::engine::models::ModelSource::parse(&ModelConfig::default().source).expect("source");
    let options = LoadOptions {
        chat_template: Some(thinking_template()),
        ..options()
    };
    Arc::new(block_on(MistralRsBackend::load(&source, &options)).expect("loading smollm2-135m"))
}

/// A logits processor that bans end-of-sequence (`eos`) and takes `per_token` over each token:
/// a text no faster than that, and ended only by its limit or its deadline. What a test of a
/// deadline needs on any device: a GPU writes SmolLM2's 2000 tokens in seconds, before a
/// deadline set to leave a CPU time to start (it slows the engine's other sequences too).
#[allow(dead_code)] // Not every test binary uses it.
pub fn paced(
    eos: Vec<u32>,
    per_token: std::time::Duration,
) -> Arc<dyn ponder::engine::LogitsProcessor> {
    Arc::new(move |logits: &mut [f32], _context: &[u32]| {
        ban(logits, &eos);
        std::thread::sleep(per_token);
    })
}

/// Takes `ids` out of a logits processor's choice (end-of-sequence, say).
#[allow(dead_code)] // Not every test binary uses it.
pub fn ban(logits: &mut [f32], ids: &[u32]) {
    for &id in ids {
        if let Some(l) = logits.get_mut(id as usize) {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// A backend whose every request is [`paced`]: for a strategy, which makes its own requests.
#[allow(dead_code)] // Not every test binary uses it.
pub struct Paced {
    inner: Arc<dyn Backend>,
    per_token: std::time::Duration,
}

impl std::fmt::Debug for Paced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paced")
            .field("per_token", &self.per_token)
            .finish_non_exhaustive()
    }
}

#[allow(dead_code)]
impl Paced {
    /// `inner`'s requests at `per_token` each, end-of-sequence banned.
    pub fn wrap(inner: Arc<dyn Backend>, per_token: std::time::Duration) -> Arc<dyn Backend> {
        Arc::new(Self { inner, per_token })
    }
}

#[ponder::async_trait]
impl Backend for Paced {
    async fn generate(
        &self,
        request: ponder::GenerationRequest,
    ) -> ponder::Result<ponder::Generation> {
        let eos = self.inner.capabilities().eos_token_ids;
        let request = request.with_logits_processor(paced(eos, self.per_token));
        self.inner.generate(request).await
    }

    fn capabilities(&self) -> ponder::Capabilities {
        self.inner.capabilities()
    }

    async fn tokenize(&self, input: ponder::TokenizeInput<'_>) -> ponder::Result<Vec<u32>> {
        self.inner.tokenize(input).await
    }

    async fn detokenize(&self, ids: &[u32]) -> ponder::Result<String> {
        self.inner.detokenize(ids).await
    }
}
