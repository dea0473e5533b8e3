//! [`MistralRsBackend`]: a mistral.rs model in this process. The only module that names
//! `mistralrs` types.
//!
//! Every request goes to mistral.rs's engine thread over its channel as raw token ids
//! (`CompletionTokens`), so what the model sees is exactly what was asked for; chat prompts
//! are rendered through the model's own template first. Each request's reply channel is owned by
//! a task on a small runtime of the backend's own, which reads it to the end: dropping a
//! caller's future (a cancelled solve) therefore never drops a reply channel that the engine
//! still writes to, which in mistral.rs 0.8.1 fails every request in flight. mistral.rs cannot
//! cancel a non-streaming request either, so each request also carries a last logits processor
//! that, once its caller has given up (a wall-time budget ran out, a solve was dropped), forces
//! the end-of-sequence token: the request's sequences end at their next token instead of decoding
//! on to `max_tokens` in the background (and, on the CPU, holding the engine's only turn).
//!
//! Stop strings are matched here, not by mistral.rs, whose matching can panic its engine
//! thread (see `stop_strings.rs`): a processor before that last one ends a sequence at the token
//! after a stop string.
//!
//! Concurrency: any number of `generate` calls may be in flight. On CUDA mistral.rs batches their
//! sequences (up to `max_num_seqs`). On the CPU the engine decodes one sequence at a time: in
//! mistral.rs 0.8.1 the CPU attention kernel for decoding (`flash_attn_cpu_single_q` in
//! `attention/backends/cpu.rs`) keeps its per-tile scratch per head but not per batch row, so in a
//! batch of two or more different sequences every row attends with the last row's keys and values
//! and writes the last row's text (greedy "Explain why the sky is blue." batched with "What is
//! 2 + 3?" came out as "The sky + 3 = 5"). So on the CPU requests wait their turn, the `n`
//! choices of a request run one after another (the prompt is prefilled once per choice), and the
//! turn is held until the engine has let go of the request.
//! Completion tokens are counted per choice from the per-token log-probabilities (mistral.rs's
//! own `usage` covers one choice only).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mistralrs::core::{
    DefaultSchedulerMethod, DeviceMapSetting, GGUFLoaderBuilder, GGUFSpecificConfig,
    MistralRsBuilder, ModelDType, SchedulerConfig,
};
use mistralrs::{
    Constraint, CustomLogitsProcessor, Device, NormalRequest, Request, RequestMessage, Response,
    SamplingParams, StopTokens, Tensor, TokenSource,
};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::backend::{
    Backend, Capabilities, Choice, FinishReason, Generation, GenerationRequest, LogitsProcessor,
    Prompt, TokenLogprob, TokenizeInput, TopLogprob,
};
use crate::error::{Error, Result};
use crate::model_config::{Dequantize, DeviceSpec, KvPool, LoadOptions};
use crate::models::ModelSource;
use crate::seeded_draw::SeededDraw;
use crate::stop_strings::{StopStrings, TokenBytes};
use crate::usage::Usage;

/// A mistral.rs model loaded in this process.
pub struct MistralRsBackend {
    model: Arc<mistralrs::Model>,
    /// Runs the tasks that own reply channels; see the module docs.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    name: String,
    context_tokens: Option<usize>,
    eos_token_ids: Vec<u32>,
    requests: AtomicUsize,
    /// On the CPU: one sequence in the engine at a time (see the module docs).
    one_at_a_time: Option<Arc<Semaphore>>,
    /// The tokenizer decodes a token alone without the space it starts with (SentencePiece:
    /// Llama-2, Mistral, Gemma), so the tokens' texts cannot give a completion's leading space.
    drops_lead_space: bool,
    /// What each token adds to a completion, for matching stop strings here rather than in
    /// mistral.rs (see `stop_strings.rs`); without it (no `tokenizer.json` found for a
    /// safetensors model) mistral.rs matches them.
    token_bytes: Option<Arc<TokenBytes>>,
    /// The model has no chat template (a GGUF file without one, none given): mistral.rs 0.8.1
    /// panics its engine rendering chat messages then, so chat prompts are refused here.
    no_chat_template: bool,
    /// Token ids of pieces asked before.
    pieces: crate::piece_cache::PieceCache,
    /// The beginning-of-sequence token a raw text prompt starts with, where mistral.rs's
    /// tokenizer would leave it out (a GGUF file asking for it: Llama-2, Mistral).
    text_bos: Option<u32>,
}

/// What loading a model gives besides the model.
struct Loaded {
    model: mistralrs::Model,
    eos_token_ids: Vec<u32>,
    /// The KV pool's size in tokens, where it is known (GGUF on CUDA).
    pool_tokens: Option<usize>,
    token_bytes: Option<TokenBytes>,
    /// Whether `token_bytes` was read apart from the engine (a safetensors model's
    /// `tokenizer.json`), so is checked against it; a GGUF model's is the engine's own.
    token_bytes_read_apart: bool,
    /// Known to have no chat template (GGUF only; a safetensors model's is not looked at).
    no_chat_template: bool,
    /// The token a raw text prompt starts with (GGUF only: a safetensors model's
    /// `tokenizer.json` adds its own).
    text_bos: Option<u32>,
}

impl std::fmt::Debug for MistralRsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MistralRsBackend")
            .field("name", &self.name)
            .field("context_tokens", &self.context_tokens)
            .finish()
    }
}

impl Drop for MistralRsBackend {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn load_error(source: &str, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
    Error::ModelLoad {
        source_name: source.to_string(),
        source: e.into(),
    }
}

impl MistralRsBackend {
    /// Loads a model from `source` (fetching a built-in one first if needed).
    pub async fn load(source: &ModelSource, options: &LoadOptions) -> Result<Self> {
        let name = source.to_string();
        let device = match options.device {
            DeviceSpec::Cpu => Device::Cpu,
            DeviceSpec::Cuda(ordinal) => {
                if !cfg!(feature = "cuda") {
                    return Err(Error::ModelSource {
                        source_name: name,
                        reason: format!(
                            "device `{}` needs ponder built with the `cuda` feature",
                            options.device
                        ),
                    });
                }
                Device::new_cuda(ordinal).map_err(|e| load_error(&name, e))?
            }
        };
        let gguf = source.is_gguf();
        if let Some(dequantize) = options.dequantize {
            let refused = match (gguf, options.device) {
                (_, DeviceSpec::Cuda(_)) => Some(dequantize.on_cuda()),
                (true, DeviceSpec::Cpu) => dequantize.mismatch(Dequantize::in_effect()),
                (false, DeviceSpec::Cpu) => Some(format!(
                    "dequantize = \"{dequantize}\" is for GGUF models, whose weights are \
                     quantized"
                )),
            };
            if let Some(reason) = refused {
                return Err(Error::ModelSource {
                    source_name: name,
                    reason,
                });
            }
        } else if let (Some(way), DeviceSpec::Cuda(_), true) =
            (Dequantize::in_effect(), options.device, gguf)
        {
            tracing::warn!(
                model = %name,
                "{}=1 is set in the environment: candle dequantizes this model's weights to {way} \
                 on the GPU too, at several times their memory",
                way.variable()
            );
        }
        tracing::debug!(
            model = %name,
            dequantized = ?Dequantize::in_effect(),
            "loading in process"
        );
        let loaded = match source {
            ModelSource::Builtin(builtin) => {
                let builtin = *builtin;
                let path = tokio::task::spawn_blocking(move || builtin.ensure())
                    .await
                    .map_err(|e| load_error(&name, e))??;
                load_gguf_files(&name, &path, options, &device).await?
            }
            ModelSource::GgufFile(path) => load_gguf_files(&name, path, options, &device).await?,
            ModelSource::Directory(dir) if crate::models::has_gguf(dir) => {
                load_gguf_files(&name, dir, options, &device).await?
            }
            ModelSource::Directory(dir) => {
                let eos_token_ids = eos_ids_in(dir, options.chat_template.as_deref());
                Loaded {
                    model: load_text_model(&name, &dir.to_string_lossy(), options, &device).await?,
                    token_bytes: token_bytes_in(&name, dir, &eos_token_ids),
                    eos_token_ids,
                    pool_tokens: pool_tokens_asked(options, Some(dir)),
                    token_bytes_read_apart: true,
                    no_chat_template: !has_chat_template(dir, options.chat_template.as_deref()),
                    text_bos: None,
                }
            }
            ModelSource::Hub(id) => {
                let model = load_text_model(&name, id, options, &device).await?;
                let snapshot = hub_snapshot(id);
                let eos_token_ids = snapshot
                    .as_deref()
                    .map(|dir| eos_ids_in(dir, options.chat_template.as_deref()))
                    .unwrap_or_default();
                Loaded {
                    model,
                    token_bytes: snapshot
                        .as_deref()
                        .and_then(|dir| token_bytes_in(&name, dir, &eos_token_ids)),
                    eos_token_ids,
                    pool_tokens: pool_tokens_asked(options, snapshot.as_deref()),
                    // (Without the snapshot found, as mistral.rs would have the template.)
                    no_chat_template: snapshot.as_deref().is_some_and(|dir| {
                        !has_chat_template(dir, options.chat_template.as_deref())
                    }),
                    token_bytes_read_apart: true,
                    text_bos: None,
                }
            }
        };
        let Loaded {
            model,
            eos_token_ids,
            pool_tokens,
            token_bytes,
            token_bytes_read_apart,
            no_chat_template,
            text_bos,
        } = loaded;
        if eos_token_ids.is_empty() {
            tracing::warn!(
                model = %name,
                "no end-of-sequence token ids found (generation_config.json, tokenizer_config.json): \
                 budget forcing cannot hold back or force the end of sequence, and a request \
                 whose caller gave up decodes on to its max_tokens"
            );
        }
        if options.prefix_cache && options.device == DeviceSpec::Cpu {
            tracing::warn!(
                model = %name,
                "prefix cache on the CPU: mistral.rs 0.8.1 keeps every finished sequence's keys \
                 and values there and never evicts them, so memory grows with each request"
            );
        }
        let one_at_a_time = options.device == DeviceSpec::Cpu;
        let mut backend = Self::from_model(name, model, eos_token_ids, one_at_a_time, pool_tokens)?;
        backend.no_chat_template = no_chat_template;
        backend.text_bos = text_bos;
        backend.drops_lead_space = backend.decodes_tokens_without_their_space().await?;
        if let Some(table) = token_bytes {
            if !token_bytes_read_apart || backend.reads_like_the_engine(&table).await? {
                backend.token_bytes = Some(Arc::new(table));
            } else {
                tracing::warn!(
                    model = %backend.name,
                    "the token bytes read for matching stop strings do not decode as the \
                     engine's tokenizer does; stop strings are matched by mistral.rs, whose \
                     matching can panic its engine on a stop string after an unfinished \
                     character"
                );
            }
        }
        Ok(backend)
    }

    /// Whether a token decoded alone loses its leading space: "a b" tokenized, its last token
    /// (" b") decoded alone reads "b" (SentencePiece's decoder strips one leading space; byte
    /// level BPE keeps it).
    async fn decodes_tokens_without_their_space(&self) -> Result<bool> {
        let ids = self.tokenize_text("a b", false).await?;
        match ids.as_slice() {
            [_, .., last] => Ok(self.detokenize(&[*last]).await? == "b"),
            _ => Ok(false),
        }
    }

    /// Whether `table` reads a text's tokens as the engine decodes them (a check that it is the
    /// engine's tokenizer: a hub model's newest local snapshot may not be the one loaded). The
    /// text is plain: a character some vocabularies write in byte tokens would differ anyway
    /// (mistral.rs 0.8.1 leaves those out of a GGUF SentencePiece model's completions).
    async fn reads_like_the_engine(&self, table: &TokenBytes) -> Result<bool> {
        const PROBE: &str = "Step 1: 12 + 7 = 19.\n\nWait,  the answer's (x) fine.\n";
        let ids = self.tokenize_text(PROBE, false).await?;
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| table.visible(id).iter().copied())
            .collect();
        let ours = String::from_utf8_lossy(&bytes);
        let engine = self.detokenize(&ids).await?;
        // A SentencePiece decoder drops the text's first space.
        Ok(ours.trim_start() == engine.trim_start())
    }

    /// Whether the engine leaves the vocabulary's byte tokens out of a completion's text (see
    /// [`TokenBytes::from_trie_tokens`]): they are put back from the generated ids.
    fn hides_bytes(&self) -> bool {
        self.token_bytes.as_ref().is_some_and(|t| t.hides_bytes())
    }

    /// A token's text, as its bytes in the vocabulary read (a special token's, its name; empty
    /// where the backend has no table of the vocabulary).
    fn token_text(&self, id: u32) -> String {
        self.token_bytes
            .as_ref()
            .map(|tokens| String::from_utf8_lossy(tokens.get(id)).into_owned())
            .unwrap_or_default()
    }

    /// The leading whitespace of generated `ids` (a completion's first tokens) written after
    /// `prompt`: what decoding them after the prompt's last token adds, up to its first
    /// non-space.
    async fn lead_after(&self, prompt: &[u32], ids: &[u32]) -> Result<String> {
        let Some(&last) = prompt.last() else {
            return Ok(String::new());
        };
        let alone = self.detokenize(&[last]).await?;
        let both = self.detokenize(&[&[last], ids].concat()).await?;
        let added = both.strip_prefix(alone.as_str()).unwrap_or_default();
        Ok(added[..added.len() - added.trim_start().len()].to_string())
    }

    fn from_model(
        name: String,
        model: mistralrs::Model,
        eos_token_ids: Vec<u32>,
        one_at_a_time: bool,
        pool_tokens: Option<usize>,
    ) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ponder-mistralrs-replies")
            .enable_all()
            .build()
            .map_err(|e| load_error(&name, e))?;
        let handle = runtime.handle().clone();
        let window = model
            .max_sequence_length()
            .map_err(|e| load_error(&name, e))?;
        // A sequence longer than the KV pool can never be scheduled (mistral.rs drops it
        // unanswered): the pool bounds the window, so calls are shortened to fit it instead.
        let context_tokens = match (window, pool_tokens) {
            (Some(window), Some(pool)) if pool < window => {
                tracing::warn!(
                    model = %name,
                    "the KV pool holds {pool} tokens, fewer than the model's {window}-token \
                     window: one sequence's prompt and completion are held to {pool}"
                );
                Some(pool)
            }
            (None, pool) => pool,
            (window, _) => window,
        };
        Ok(Self {
            model: Arc::new(model),
            runtime: Some(runtime),
            handle,
            name,
            context_tokens,
            eos_token_ids,
            requests: AtomicUsize::new(0),
            one_at_a_time: one_at_a_time.then(|| Arc::new(Semaphore::new(1))),
            drops_lead_space: false,
            token_bytes: None,
            no_chat_template: false,
            pieces: Default::default(),
            text_bos: None,
        })
    }

    /// The model's name (its source).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The underlying mistral.rs model, for callers that need to reach it directly
    /// (benchmarks comparing against raw mistral.rs).
    pub fn model(&self) -> &Arc<mistralrs::Model> {
        &self.model
    }

    /// Sends `request` to the engine and waits for its final response on a task that keeps the
    /// reply channel alive to the end, whatever happens to this future. `turn`, if any, is
    /// released only when the engine has let go of the request.
    async fn round_trip<T: Send + 'static>(
        &self,
        request: Request,
        mut replies: mpsc::Receiver<T>,
        is_final: fn(&T) -> bool,
        turn: Option<OwnedSemaphorePermit>,
    ) -> Result<T> {
        let sender = self.sender().await?;
        let (done_tx, done_rx) = oneshot::channel();
        self.handle.spawn(async move {
            if sender.send(request).await.is_err() {
                return;
            }
            drop(sender);
            // Read on past the final answer until the engine lets go of the channel: on a
            // forward error mistral.rs 0.8.1 answers once per sequence of the request and
            // unwraps each send, so a receiver gone after the first answer would panic its
            // engine thread (and fail every other request in flight).
            let mut done_tx = Some(done_tx);
            while let Some(reply) = replies.recv().await {
                if is_final(&reply) {
                    if let Some(tx) = done_tx.take() {
                        let _ = tx.send(reply);
                    }
                }
            }
            drop(turn);
        });
        // Not the end of the engine: mistral.rs restarts one whose thread died (a panic) for
        // the next request; and its PagedAttention scheduler drops a waiting sequence the KV
        // pool cannot take after 64 tries, with no reply.
        done_rx.await.map_err(|_| Error::Inference {
            message: "the engine closed the request without answering: its thread stopped \
                      (a panic, printed above; mistral.rs restarts it for the next request), or \
                      on CUDA the KV pool is too small for the sequences in flight (see \
                      paged_attention_tokens and max_num_seqs)"
                .into(),
        })
    }

    /// The engine's request channel. mistral.rs restarts an engine whose thread died (a
    /// panic) when its channel is next asked for, but until the dead thread has finished it
    /// still hands out the old channel, closed: then asked again, for up to ten seconds. Only
    /// an engine mistral.rs cannot give is [`Error::EngineGone`].
    async fn sender(&self) -> Result<mpsc::Sender<Request>> {
        const TRIES: usize = 1000;
        for _ in 0..TRIES {
            let sender = self
                .model
                .inner()
                .get_sender(None)
                .map_err(|e| Error::EngineGone {
                    context: match e {
                        mistralrs::core::MistralRsError::ModelNotFound(_) => {
                            "no engine for the default model"
                        }
                        _ => "mistral.rs could not restart the engine after its thread stopped",
                    },
                })?;
            if !sender.is_closed() {
                return Ok(sender);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(Error::EngineGone {
            context: "the engine's thread stopped and mistral.rs had not restarted it after 10 s",
        })
    }

    async fn prompt_ids(&self, prompt: &Prompt) -> Result<Vec<u32>> {
        match prompt {
            Prompt::Tokens(ids) => Ok(ids.clone()),
            Prompt::Text(text) => {
                let mut ids = self.tokenize_text(text, true).await?;
                if let Some(bos) = self.text_bos.filter(|&bos| ids.first() != Some(&bos)) {
                    ids.insert(0, bos);
                }
                Ok(ids)
            }
            Prompt::Chat { .. } if self.no_chat_template => Err(Error::ModelSource {
                source_name: self.name.clone(),
                reason: "the model has no chat template, so it cannot take chat messages: give \
                         it one (`chat_template = \"path.jinja\"` in [model]) or prompt it with \
                         raw text"
                    .into(),
            }),
            Prompt::Chat {
                messages,
                assistant_prefix,
            } => {
                let messages = messages
                    .iter()
                    .map(|m| {
                        let mut entry = indexmap::IndexMap::new();
                        entry.insert(
                            "role".to_string(),
                            either::Either::Left(m.role.as_str().to_string()),
                        );
                        entry.insert(
                            "content".to_string(),
                            either::Either::Left(m.content.clone()),
                        );
                        entry
                    })
                    .collect();
                let (tx, rx) = mpsc::channel(1);
                let request = Request::Tokenize(mistralrs::core::TokenizationRequest {
                    text: either::Either::Left(messages),
                    tools: None,
                    add_generation_prompt: true,
                    // The template writes the special tokens it wants (a Llama-3 one its
                    // `<|begin_of_text|>`), as Hugging Face's `apply_chat_template` reads it:
                    // a tokenizer adding its own would double them.
                    add_special_tokens: false,
                    enable_thinking: None,
                    reasoning_effort: None,
                    response: tx,
                });
                let mut ids = self
                    .round_trip(request, rx, |_| true, None)
                    .await?
                    .map_err(|e| Error::Inference {
                        message: format!("rendering the chat template: {e}"),
                    })?;
                if !assistant_prefix.is_empty() {
                    ids.extend(self.tokenize_text(assistant_prefix, false).await?);
                }
                Ok(ids)
            }
        }
    }

    async fn tokenize_text(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let (tx, rx) = mpsc::channel(1);
        let request = Request::Tokenize(mistralrs::core::TokenizationRequest {
            text: either::Either::Right(text.to_string()),
            tools: None,
            add_generation_prompt: false,
            add_special_tokens,
            enable_thinking: None,
            reasoning_effort: None,
            response: tx,
        });
        self.round_trip(request, rx, |_| true, None)
            .await?
            .map_err(|e| Error::Inference {
                message: format!("tokenizing: {e}"),
            })
    }
}

/// Whether `files` (names, sorted) are the shards of one model, `name-0000i-of-0000n.gguf` for
/// each `i` of `1..=n`.
fn shards_of_one_model(files: &[String]) -> bool {
    let Some(shards) = files
        .iter()
        .map(|f| crate::models::shard_of(f))
        .collect::<Option<Vec<_>>>()
    else {
        return false;
    };
    let mut indexes: Vec<usize> = shards.iter().map(|(_, i, _)| *i).collect();
    indexes.sort_unstable();
    shards
        .iter()
        .all(|(prefix, _, total)| *prefix == shards[0].0 && *total == files.len())
        && indexes == (1..=files.len()).collect::<Vec<_>>()
}

/// The `total` shards of the split model `prefix` in `dir` (names sorted), all of them or an
/// error naming those missing.
fn shards_beside(name: &str, dir: &Path, prefix: &str, total: usize) -> Result<Vec<String>> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|file| {
            crate::models::shard_of(file).is_some_and(|(p, _, t)| p == prefix && t == total)
        })
        .collect();
    files.sort();
    if shards_of_one_model(&files) {
        return Ok(files);
    }
    let present: Vec<usize> = files
        .iter()
        .filter_map(|f| crate::models::shard_of(f).map(|(_, index, _)| index))
        .collect();
    let missing: Vec<String> = (1..=total)
        .filter(|i| !present.contains(i))
        .map(|i| i.to_string())
        .collect();
    Err(Error::ModelSource {
        source_name: name.to_string(),
        reason: format!(
            "it is a shard of a model split in {total} ({prefix}-*-of-*.gguf), and {} lacks \
             its shards {}",
            dir.display(),
            if missing.is_empty() {
                "(some appear twice)".to_string()
            } else {
                missing.join(", ")
            }
        ),
    })
}

/// Loads GGUF weights (a file, or every `.gguf` in a directory) with F32 activations on CPU:
/// the builder's automatic choice there is F16, which candle runs slower.
async fn load_gguf_files(
    name: &str,
    path: &Path,
    options: &LoadOptions,
    device: &Device,
) -> Result<Loaded> {
    let (dir, files) = if path.is_dir() {
        let mut files: Vec<String> = std::fs::read_dir(path)
            .map_err(|e| Error::io(path, e))?
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "gguf"))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        // Several files are one model's shards ("-00001-of-00002.gguf"), or models side by
        // side (ponder's own cache) that mistral.rs would load as one and fail on later.
        if files.len() > 1 && !shards_of_one_model(&files) {
            return Err(Error::ModelSource {
                source_name: name.to_string(),
                reason: format!(
                    "{} holds {} .gguf files that are not the shards of one model \
                     (name-00001-of-0000N.gguf, ...): give the file to load ({})",
                    path.display(),
                    files.len(),
                    files.join(", ")
                ),
            });
        }
        (path.to_path_buf(), files)
    } else {
        // A bare file name's parent is "", which mistral.rs reads as a hub repository.
        let dir = path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let files = match crate::models::shard_of(&file) {
            // A split model's shard loads with the others (as llama.cpp's `-m` does).
            Some((prefix, _, total)) if total > 1 => shards_beside(name, &dir, &prefix, total)?,
            _ => vec![file],
        };
        (dir, files)
    };
    // A text file named .gguf is told as such, not as mistral.rs's "unknown magic"; a file
    // cut short, or of an architecture mistral.rs does not run, before it aborts or panics.
    let paths: Vec<PathBuf> = files.iter().map(|file| dir.join(file)).collect();
    let facts = crate::models::check_gguf_files(&paths, name)?;
    let loader = GGUFLoaderBuilder::new(
        None,
        None,
        dir.to_string_lossy().into_owned(),
        files,
        GGUFSpecificConfig { topology: None },
        false,
        chat_template(name, options)?,
    )
    .build();
    let dtype = match options.device {
        DeviceSpec::Cpu => ModelDType::F32,
        DeviceSpec::Cuda(_) => {
            check_cuda_capability(name)?;
            ModelDType::Auto
        }
    };
    let paged = paged_attention_config(name, options)?;
    let pipeline = loader
        .load_model_from_hf(
            None,
            TokenSource::None,
            &dtype,
            device,
            true,
            // Every layer on `device`. (The automatic map lists every GPU from cuda:0 and sizes
            // against the first, so `cuda:1` loaded onto cuda:0, or split across both.)
            DeviceMapSetting::dummy(),
            None,
            paged,
        )
        .map_err(|e| load_error(name, e))?;
    let (eos_token_ids, pool_tokens, token_bytes, no_chat_template) = {
        let pipeline = pipeline.lock().await;
        let no_chat_template = pipeline
            .get_chat_template()
            .is_none_or(|t| !t.has_chat_template());
        let metadata = pipeline.get_metadata();
        // One block of the pool is PagedAttention's null block, never handed out
        // (paged_attention/block_pool.rs).
        let pool = metadata
            .cache_config
            .as_ref()
            .map(|c| c.num_gpu_blocks.saturating_sub(1) * c.block_size);
        // What mistral.rs appends to a completion for each token.
        let token_bytes = metadata.tok_env().map(|env| {
            let trie = env.tok_trie();
            let ids = 0..u32::try_from(trie.vocab_size()).unwrap_or(u32::MAX);
            TokenBytes::from_trie_tokens(ids.map(|id| trie.token(id)))
        });
        (
            metadata.eos_tok.clone(),
            pool,
            token_bytes,
            no_chat_template,
        )
    };
    let scheduler =
        scheduler_config(&pipeline, paged.is_some(), options.max_num_seqs, name).await?;
    let runner = MistralRsBuilder::new(pipeline, scheduler, false, None)
        .with_no_prefix_cache(!options.prefix_cache)
        .build()
        .await;
    Ok(Loaded {
        model: mistralrs::Model::new(runner),
        eos_token_ids,
        pool_tokens,
        token_bytes,
        token_bytes_read_apart: false,
        no_chat_template,
        text_bos: facts.text_bos(),
    })
}

async fn scheduler_config(
    pipeline: &Arc<tokio::sync::Mutex<dyn mistralrs::core::Pipeline + Send + Sync>>,
    paged: bool,
    max_num_seqs: usize,
    name: &str,
) -> Result<SchedulerConfig> {
    if paged {
        if let Some(config) = pipeline.lock().await.get_metadata().cache_config.clone() {
            return Ok(SchedulerConfig::PagedAttentionMeta {
                max_num_seqs,
                config,
            });
        }
    }
    let seqs = std::num::NonZeroUsize::new(max_num_seqs).ok_or_else(|| Error::ModelSource {
        source_name: name.to_string(),
        reason: "max_num_seqs must be at least 1".into(),
    })?;
    Ok(SchedulerConfig::DefaultScheduler {
        method: DefaultSchedulerMethod::Fixed(seqs),
    })
}

/// PagedAttention's block size as ponder asks for it (mistral.rs's default, 32).
const KV_BLOCK_TOKENS: usize = 32;

/// The tokens a KV pool sized in tokens holds, at least, for a safetensors model in `dir` (whose
/// pool is not read back after loading, as a GGUF's is): mistral.rs sizes it in whole MB of
/// the keys and values the tokens need (rounded down: up to a MB's worth of tokens fewer, read
/// from `config.json` at 2 bytes an element, the least the automatic cache type takes on CUDA),
/// then in whole blocks, one of them PagedAttention's null block. `None` on the CPU (no pool),
/// for a pool sized by memory, and where `config.json` does not say (or is a latent-attention
/// model's, whose cache is laid out otherwise).
fn pool_tokens_asked(options: &LoadOptions, dir: Option<&Path>) -> Option<usize> {
    let (DeviceSpec::Cuda(_), KvPool::Tokens(tokens)) = (options.device, options.kv_pool) else {
        return None;
    };
    let text = std::fs::read_to_string(dir?.join("config.json")).ok()?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    let config = config.get("text_config").unwrap_or(&config);
    let key = |k: &str| config[k].as_u64().and_then(|v| usize::try_from(v).ok());
    if config.get("kv_lora_rank").is_some() {
        return None;
    }
    let layers = key("num_hidden_layers")?;
    let heads = key("num_attention_heads")?;
    let kv_heads = key("num_key_value_heads").unwrap_or(heads);
    let head_dim = key("head_dim").or_else(|| Some(key("hidden_size")? / heads.max(1)))?;
    let bytes_per_token = (2 * layers * 2 * kv_heads * head_dim).max(1);
    let lost = (1 << 20) / bytes_per_token + 1;
    Some((tokens.saturating_sub(lost) / KV_BLOCK_TOKENS).saturating_sub(1) * KV_BLOCK_TOKENS)
}

fn paged_attention_config(
    name: &str,
    options: &LoadOptions,
) -> Result<Option<mistralrs::core::PagedAttentionConfig>> {
    if options.device == DeviceSpec::Cpu {
        return Ok(None);
    }
    let memory = match options.kv_pool {
        KvPool::Tokens(tokens) => mistralrs::core::MemoryGpuConfig::ContextSize(tokens),
        KvPool::Utilization(share) => mistralrs::core::MemoryGpuConfig::Utilization(share),
    };
    mistralrs::core::PagedAttentionConfig::new(
        Some(KV_BLOCK_TOKENS),
        memory,
        mistralrs::core::PagedCacheType::Auto,
    )
    .map(Some)
    .map_err(|e| load_error(name, e))
}

/// The token bytes of a safetensors model in `dir`, from its `tokenizer.json`; `None` (said)
/// where there is none or it cannot be read, or where no end-of-sequence id for ponder to force
/// at a stop string was found (`eos_ids`, from [`eos_ids_in`]: those the engine ends a sequence
/// on, not `config.json`'s): mistral.rs then matches stop strings itself.
fn token_bytes_in(name: &str, dir: &Path, eos_ids: &[u32]) -> Option<TokenBytes> {
    if eos_ids.is_empty() {
        tracing::warn!(
            model = %name,
            "no end-of-sequence id in {} or {}: stop strings are matched by mistral.rs, whose \
             matching can panic its engine on a stop string after an unfinished character",
            dir.join("generation_config.json").display(),
            dir.join("tokenizer_config.json").display()
        );
        return None;
    }
    let path = dir.join("tokenizer.json");
    match TokenBytes::from_tokenizer_json(&path) {
        Ok(table) => Some(table),
        Err(e) => {
            tracing::warn!(
                model = %name,
                "{}: {e}; stop strings are matched by mistral.rs, whose matching can panic its \
                 engine on a stop string after an unfinished character",
                path.display()
            );
            None
        }
    }
}

/// The chat templates of a safetensors model in `dir` whose `tokenizer_config.json` is
/// `tokenizer_config`: the template given in place of the model's, else the model's (a string,
/// or a list of named ones, and a `chat_template.jinja` beside).
fn templates_in(
    dir: &Path,
    tokenizer_config: &serde_json::Value,
    chat_template: Option<&Path>,
) -> Vec<String> {
    match chat_template {
        Some(path) => std::fs::read_to_string(path).ok().into_iter().collect(),
        None => match &tokenizer_config["chat_template"] {
            serde_json::Value::String(t) => vec![t.clone()],
            serde_json::Value::Array(named) => named
                .iter()
                .filter_map(|t| t["template"].as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
        .into_iter()
        .chain(std::fs::read_to_string(dir.join("chat_template.jinja")).ok())
        .collect(),
    }
}

/// Whether mistral.rs 0.8.1 finds a chat template for the safetensors model in `dir`
/// (`pipeline/paths.rs`, `get_chat_template`): one given in place of the model's, else the
/// model's in `tokenizer_config.json`, `chat_template.jinja`, `chat_template.json` or
/// `processor_config.json`. Without one it renders chat messages by unwrapping the template
/// it does not have, which panics its engine: such a model is prompted with raw text only.
fn has_chat_template(dir: &Path, chat_template: Option<&Path>) -> bool {
    let read = |file: &str| {
        std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .unwrap_or_default()
    };
    chat_template.is_some()
        || !templates_in(dir, &read("tokenizer_config.json"), None).is_empty()
        || dir.join("chat_template.json").is_file()
        || read("processor_config.json")["chat_template"].is_string()
}

/// Tokens mistral.rs 0.8.1 also ends a sequence on where they are in the vocabulary and the chat
/// template (`SUPPORTED_ALTERNATE_EOS` in its `pipeline/chat_template.rs`).
const ALTERNATE_EOS: &[&str] = &[
    "<|im_end|>",
    "<end_of_turn>",
    "<|end_of_text|>",
    "<|end|>",
    "<|eot_id|>",
    "<|message|>",
    "<|start|>",
    "<|channel|>",
];

/// The end-of-sequence ids of a safetensors model in `dir`, as mistral.rs reckons the ids its
/// engine ends a sequence on (`calculate_eos_tokens`): `eos_token_id` of its
/// `generation_config.json`, the `eos_token` of its `tokenizer_config.json`, and each of
/// [`ALTERNATE_EOS`] that is in the vocabulary and the chat template (a ChatML template's
/// `<|im_end|>` where the generation config names only `<|endoftext|>`), the template being
/// `chat_template` where one is given in its place. (Not `config.json`'s `eos_token_id`: the
/// engine does not end sequences on it, so forcing it would end nothing.)
fn eos_ids_in(dir: &Path, chat_template: Option<&Path>) -> Vec<u32> {
    let mut ids = eos_ids_of(&dir.join("generation_config.json"));
    let read = |file: &str| {
        std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
    };
    let vocab = read("tokenizer.json")
        .map(|t| vocabulary(&t))
        .unwrap_or_default();
    let tokenizer_config = read("tokenizer_config.json").unwrap_or_default();
    let token_text = |value: &serde_json::Value| {
        value
            .as_str()
            .or_else(|| value["content"].as_str())
            .map(str::to_string)
    };
    let templates = templates_in(dir, &tokenizer_config, chat_template);
    let named = token_text(&tokenizer_config["eos_token"])
        .into_iter()
        .chain(
            ALTERNATE_EOS
                .iter()
                .filter(|t| templates.iter().any(|template| template.contains(*t)))
                .map(|t| t.to_string()),
        );
    for token in named {
        if let Some(&id) = vocab.get(&token) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids
}

/// A `tokenizer.json`'s tokens and their ids: the model's vocabulary (a map for BPE and
/// WordPiece, a list of `[piece, score]` for Unigram) and the added tokens.
fn vocabulary(tokenizer: &serde_json::Value) -> std::collections::HashMap<String, u32> {
    let mut vocab = std::collections::HashMap::new();
    match &tokenizer["model"]["vocab"] {
        serde_json::Value::Object(map) => {
            for (token, id) in map {
                if let Some(id) = id.as_u64().and_then(|id| u32::try_from(id).ok()) {
                    vocab.insert(token.clone(), id);
                }
            }
        }
        serde_json::Value::Array(pieces) => {
            for (id, piece) in pieces.iter().enumerate() {
                if let (Some(token), Ok(id)) = (piece[0].as_str(), u32::try_from(id)) {
                    vocab.insert(token.to_string(), id);
                }
            }
        }
        _ => {}
    }
    for added in tokenizer["added_tokens"].as_array().into_iter().flatten() {
        if let (Some(token), Some(id)) = (
            added["content"].as_str(),
            added["id"].as_u64().and_then(|id| u32::try_from(id).ok()),
        ) {
            vocab.insert(token.to_string(), id);
        }
    }
    vocab
}

/// The `eos_token_id` (one id or a list) of a JSON file; none where it cannot be read.
fn eos_ids_of(path: &Path) -> Vec<u32> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    match &json["eos_token_id"] {
        serde_json::Value::Number(n) => n.as_u64().into_iter().collect(),
        serde_json::Value::Array(items) => items.iter().filter_map(|v| v.as_u64()).collect(),
        _ => Vec::new(),
    }
    .into_iter()
    .filter_map(|id| u32::try_from(id).ok())
    .collect()
}

/// The newest local snapshot of hub model `id` in the Hugging Face cache (`HF_HUB_CACHE`, else
/// `HF_HOME/hub`, else `~/.cache/huggingface/hub`), where mistral.rs downloaded it.
fn hub_snapshot(id: &str) -> Option<PathBuf> {
    let cache = std::env::var_os("HF_HUB_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
        })?;
    let snapshots = cache
        .join(format!("models--{}", id.replace('/', "--")))
        .join("snapshots");
    std::fs::read_dir(snapshots)
        .ok()?
        .filter_map(|entry| entry.ok())
        .max_by_key(|entry| entry.metadata().and_then(|m| m.modified()).ok())
        .map(|entry| entry.path())
}

async fn load_text_model(
    name: &str,
    id: &str,
    options: &LoadOptions,
    device: &Device,
) -> Result<mistralrs::Model> {
    // mistral.rs 0.8.1's TextModelBuilder ignores `with_device` and loads on its best device,
    // cuda:0: another GPU is refused rather than left silently unused.
    if let Some(reason) = crate::model_config::ordinal_refused(options.device, false) {
        return Err(Error::ModelSource {
            source_name: name.to_string(),
            reason,
        });
    }
    let mut builder = mistralrs::TextModelBuilder::new(id)
        .with_max_num_seqs(options.max_num_seqs)
        // `None` turns the cache off; the number is the CPU cache's nominal cap, which
        // mistral.rs 0.8.1 does not enforce on the CPU (PagedAttention on CUDA ignores it).
        .with_prefix_cache_n(options.prefix_cache.then_some(16));
    if options.device == DeviceSpec::Cpu {
        builder = builder.with_force_cpu().with_dtype(ModelDType::F32);
    } else {
        check_cuda_capability(name)?;
        builder = builder.with_device(device.clone());
    }
    if let Some(paged) = paged_attention_config(name, options)? {
        builder = builder.with_paged_attn(paged);
    }
    if let Some(template) = chat_template(name, options)? {
        builder = builder.with_jinja_explicit(template);
    }
    builder.build().await.map_err(|e| load_error(name, e))
}

/// Checks that mistral.rs's automatic choice of the activations' precision on CUDA (bf16 where
/// every GPU's compute capability is 8.0 or more and a bf16 product runs, else f16, else f32)
/// can read the capability: mistral.rs runs `nvidia-smi` itself and panics the loading thread
/// where it is missing (a container with the CUDA libraries and not the driver's tools) or
/// prints no capability. Run here first, a failure is an error naming it.
fn check_cuda_capability(name: &str) -> Result<()> {
    let query = ["--query-gpu=compute_cap", "--format=csv"];
    let read = std::process::Command::new("nvidia-smi")
        .args(query)
        .output()
        .map_err(|e| e.to_string())
        .and_then(|out| {
            if !out.status.success() {
                return Err(format!(
                    "it exited with {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            let text = String::from_utf8(out.stdout)
                .map_err(|_| "it printed text that is not UTF-8".to_string())?;
            lowest_capability(&text)
        });
    match read {
        Ok(lowest) => {
            tracing::debug!(model = %name, lowest, "GPUs' compute capability read");
            Ok(())
        }
        Err(problem) => Err(Error::ModelSource {
            source_name: name.to_string(),
            reason: format!(
                "on CUDA mistral.rs chooses the activations' precision from the GPUs' compute \
                 capability, read with `nvidia-smi {}`, and that failed: {problem}",
                query.join(" ")
            ),
        }),
    }
}

/// The lowest compute capability in `nvidia-smi`'s CSV (a header line, then one a GPU), read
/// as mistral.rs reads it: an error where it would panic.
fn lowest_capability(csv: &str) -> std::result::Result<f32, String> {
    let mut lowest: Option<f32> = None;
    for line in csv
        .split('\n')
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let capability: f32 = line
            .parse()
            .map_err(|_| format!("it printed `{line}` for a GPU's compute capability"))?;
        lowest = Some(lowest.map_or(capability, |l| l.min(capability)));
    }
    lowest.ok_or_else(|| format!("it listed no GPU: `{}`", csv.trim()))
}

/// The chat template file that replaces the model's own, checked here: mistral.rs panics on a
/// name that does not end in `.jinja` and on a file it cannot read.
fn chat_template(name: &str, options: &LoadOptions) -> Result<Option<String>> {
    let Some(path) = &options.chat_template else {
        return Ok(None);
    };
    let bad = |reason: String| Error::ModelSource {
        source_name: name.to_string(),
        reason,
    };
    if path.extension().is_none_or(|e| e != "jinja") {
        return Err(bad(format!(
            "chat_template {}: expected a Jinja template file whose name ends in `.jinja`",
            path.display()
        )));
    }
    if let Err(e) = std::fs::read_to_string(path) {
        return Err(bad(format!("chat_template {}: {e}", path.display())));
    }
    Ok(Some(path.to_string_lossy().into_owned()))
}

/// Bridges a ponder [`LogitsProcessor`] to mistral.rs's tensor interface.
///
/// It runs on mistral.rs's engine thread, which catches no panic: a processor that panics
/// there would stop the engine for every request in flight. So a panic, and logits that hold
/// NaN (a model whose arithmetic overflowed: a seeded draw would skip them, and mistral.rs's
/// greedy pick read them as the last token), are a [`Fault`] of the request instead, which ends
/// its sequences at their next token and fails it, naming what happened (the call fails where
/// no other choice was written). A request is one choice on the CPU and where ponder draws the
/// tokens; an unseeded CUDA call of `n` choices is one request, whose choices fail together.
/// Without an end-of-sequence id the sequences run on to `max_tokens` before the request fails.
struct ProcessorAdapter {
    processor: Arc<dyn LogitsProcessor>,
    /// The request's prompt ids: the whole context of a sequence's first token.
    prompt: Arc<[u32]>,
    /// Where the request's first fault is kept.
    fault: Arc<Fault>,
}

/// The first fault of a request's logits processing (see [`ProcessorAdapter`]), and the token
/// that ends its sequences once there is one.
#[derive(Debug, Default)]
struct Fault {
    what: Mutex<Option<String>>,
    eos: Option<u32>,
}

impl Fault {
    fn new(eos: Option<u32>) -> Arc<Self> {
        Arc::new(Self {
            what: Mutex::new(None),
            eos,
        })
    }

    /// Keeps `what` unless a fault was kept before.
    fn note(&self, what: String) {
        if let Ok(mut kept) = self.what.lock() {
            kept.get_or_insert(what);
        }
    }

    fn is_set(&self) -> bool {
        self.what.lock().map_or(true, |kept| kept.is_some())
    }

    /// The fault, as the call's error.
    fn error(&self) -> Option<Error> {
        let what = self.what.lock().ok()?.clone()?;
        Some(Error::Inference { message: what })
    }
}

impl ProcessorAdapter {
    /// The sequence's whole context. mistral.rs 0.8.1 passes a sequence's tokens as the context,
    /// but for the first token after a prefix-cache hit those are only the prompt tokens the cache
    /// did not hold (`Sequence::get_toks` returns the prefill remainder until the first token is
    /// added); every later call, and every call without a hit, gets the prompt and all generated
    /// tokens. A context shorter than the prompt is that first call: its whole context is the prompt.
    fn context<'a>(&'a self, context: &'a [u32]) -> &'a [u32] {
        if context.len() < self.prompt.len() {
            debug_assert!(self.prompt.ends_with(context));
            &self.prompt
        } else {
            context
        }
    }
}

impl CustomLogitsProcessor for ProcessorAdapter {
    fn apply(&self, logits: &Tensor, context: &[u32]) -> mistralrs::Result<Tensor> {
        let ended = |logits: &Tensor| match self.fault.eos {
            Some(eos) => Ok(only(logits, eos)?.unwrap_or_else(|| logits.clone())),
            None => Ok(logits.clone()),
        };
        if self.fault.is_set() {
            return ended(logits);
        }
        let dtype = logits.dtype();
        let mut values: Vec<f32> = logits.to_dtype(mistralrs::DType::F32)?.to_vec1()?;
        let at = context.len();
        if let Some(id) = values.iter().position(|v| v.is_nan()) {
            self.fault.note(format!(
                "the model's logits hold NaN (token {id}, at position {at}): its arithmetic \
                 overflowed (an f16 model dequantized to f16 can) or the weights are damaged"
            ));
            return ended(logits);
        }
        let processed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.processor.process(&mut values, self.context(context));
        }));
        if let Err(panic) = processed {
            let message = panic
                .downcast_ref::<&str>()
                .map(|m| m.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            self.fault.note(format!(
                "a logits processor panicked at position {at}: {message}"
            ));
            return ended(logits);
        }
        if let Some(id) = values.iter().position(|v| v.is_nan()) {
            self.fault.note(format!(
                "a logits processor left NaN among the logits (token {id}, at position {at})"
            ));
            return ended(logits);
        }
        Tensor::from_vec(values, logits.shape(), logits.device())?.to_dtype(dtype)
    }
}

/// The last processor of every request (but a seeded draw, which takes what it leaves): once
/// the request is abandoned, or its deadline has passed, it leaves the end-of-sequence token as
/// the only choice, so every sequence of the request ends at its next token. Until then it
/// passes the logits through untouched.
struct EndWhenAbandoned {
    abandoned: Arc<AtomicBool>,
    deadline: Option<Instant>,
    /// Set when it ended the request at its deadline: the text was cut there.
    timed_out: Arc<AtomicBool>,
    eos: u32,
}

impl CustomLogitsProcessor for EndWhenAbandoned {
    fn apply(&self, logits: &Tensor, _context: &[u32]) -> mistralrs::Result<Tensor> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.timed_out.store(true, Ordering::Relaxed);
        } else if !self.abandoned.load(Ordering::Relaxed) {
            return Ok(logits.clone());
        }
        Ok(only(logits, self.eos)?.unwrap_or_else(|| logits.clone()))
    }
}

/// Logits that leave `id` the only choice (`None` for an id out of them).
fn only(logits: &Tensor, id: u32) -> mistralrs::Result<Option<Tensor>> {
    let mut values = vec![f32::NEG_INFINITY; logits.elem_count()];
    let Some(value) = values.get_mut(id as usize) else {
        return Ok(None);
    };
    *value = 0.0;
    let forced = Tensor::from_vec(values, logits.shape(), logits.device())?;
    Ok(Some(forced.to_dtype(logits.dtype())?))
}

/// Ends each sequence of a request at its next token once what it generated holds one of the
/// request's stop strings (see `stop_strings.rs`); until then passes the logits through.
struct EndAtStop {
    stops: StopStrings,
    prompt_len: usize,
    eos: u32,
    /// The stop string it ended a sequence at (the first, for a request of several).
    found: Arc<Mutex<Option<String>>>,
}

impl CustomLogitsProcessor for EndAtStop {
    fn apply(&self, logits: &Tensor, context: &[u32]) -> mistralrs::Result<Tensor> {
        // A context shorter than the prompt is the first call after a prefix-cache hit: nothing
        // generated yet.
        let generated = context.get(self.prompt_len..).unwrap_or_default();
        if let Some(stop) = self.stops.found(generated) {
            if let Some(forced) = only(logits, self.eos)? {
                if let Ok(mut found) = self.found.lock() {
                    found.get_or_insert_with(|| stop.to_string());
                }
                return Ok(forced);
            }
        }
        Ok(logits.clone())
    }
}

/// Puts back the spaces a SentencePiece tokenizer's tokens lose decoded alone ("▁think" reads
/// "think"), walking the completion's `text` (decoded whole, spaces kept after its start): a
/// token found there after whitespace gets that whitespace. Stops at the first token not found
/// where expected (a byte token, part of a character; the end of sequence). The tokens' texts
/// then read as the completion does, for what finds spans by them (the router's answer tokens).
fn restore_spaces(logprobs: &mut [TokenLogprob], text: &str) {
    let mut rest = text;
    // Byte tokens still to come of a character the text shows whole.
    let mut bytes_left = 0;
    for l in logprobs {
        // A character written in byte tokens (each decoded alone as U+FFFD): the first gets
        // the character (and the whitespace before it), the others nothing.
        if l.token == "\u{FFFD}" {
            if bytes_left > 0 {
                bytes_left -= 1;
                l.token.clear();
                continue;
            }
            let trimmed = rest.trim_start();
            match trimmed.chars().next() {
                // Only characters outside the vocabulary are written in bytes (none ASCII).
                Some(c) if c.len_utf8() > 1 && c != '\u{FFFD}' => {
                    let end = rest.len() - trimmed.len() + c.len_utf8();
                    l.token = rest[..end].to_string();
                    rest = &rest[end..];
                    bytes_left = c.len_utf8() - 1;
                    continue;
                }
                _ => break,
            }
        }
        bytes_left = 0;
        if let Some(after) = rest.strip_prefix(l.token.as_str()) {
            rest = after;
            continue;
        }
        let trimmed = rest.trim_start();
        match trimmed.strip_prefix(l.token.as_str()) {
            Some(after) if !l.token.is_empty() => {
                l.token.insert_str(0, &rest[..rest.len() - trimmed.len()]);
                rest = after;
            }
            _ => break,
        }
    }
}

/// Keeps the first `keep` ids a one-choice request generates (each call's context is the prompt
/// and what was generated so far, all but the last token; the call after a prefix-cache hit,
/// shorter, is skipped). Passes the logits through.
struct FirstIds {
    prompt_len: usize,
    keep: usize,
    seen: Arc<Mutex<Vec<u32>>>,
}

/// How many first ids [`FirstIds`] keeps to read a completion's leading whitespace from: enough
/// to pass a few whitespace tokens.
const FIRST_IDS: usize = 8;

impl CustomLogitsProcessor for FirstIds {
    fn apply(&self, logits: &Tensor, context: &[u32]) -> mistralrs::Result<Tensor> {
        if let Some(generated) = context.get(self.prompt_len..) {
            let generated = &generated[..generated.len().min(self.keep)];
            if let Ok(mut seen) = self.seen.lock() {
                // One sequence: what it generated since, after what was seen.
                if let Some(new) = generated.get(seen.len()..) {
                    seen.extend_from_slice(new);
                }
            }
        }
        Ok(logits.clone())
    }
}

/// Marks a request abandoned when the future waiting for it is dropped.
struct AbandonOnDrop(Arc<AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

const LN_10: f32 = std::f32::consts::LN_10;

/// A mistral.rs choice as ponder's: the text with its leading whitespace (`lead` where read
/// from the generated ids, else from the tokens' texts), cut at the first stop string (none
/// empty).
fn convert_choice(
    choice: mistralrs::core::CompletionChoice,
    stop: &[String],
    drops_lead_space: bool,
    lead: Option<&str>,
) -> Choice {
    let mut logprobs: Vec<TokenLogprob> = choice
        .logprobs
        .and_then(|l| l.content)
        .unwrap_or_default()
        .into_iter()
        .map(|l| TokenLogprob {
            token: l.token,
            logprob: l.logprob * LN_10,
            top: l
                .top_logprobs
                .into_iter()
                // Tokens a filter (top-k) left no probability.
                .filter(|t| t.logprob.is_finite())
                .map(|t| TopLogprob {
                    id: t.token,
                    token: t.bytes.unwrap_or_default(),
                    logprob: t.logprob * LN_10,
                })
                .collect(),
        })
        .collect();
    // mistral.rs trims leading whitespace from completions; put it back, so a continuation
    // glued onto its prefix reads as generated: from the tokens, unless read from the ids.
    let mut text = match lead {
        Some(lead) => format!("{lead}{}", choice.text),
        None => {
            let generated: String = logprobs.iter().map(|l| l.token.as_str()).collect();
            let lead = &generated[..generated.len() - generated.trim_start().len()];
            if !lead.is_empty() && !choice.text.starts_with(lead) {
                format!("{lead}{}", choice.text)
            } else {
                choice.text
            }
        }
    };
    if drops_lead_space {
        restore_spaces(&mut logprobs, &text);
    }
    let generated: String = logprobs.iter().map(|l| l.token.as_str()).collect();
    let mut finish_reason = match choice.finish_reason.as_str() {
        "length" | "model_length" => FinishReason::Length,
        _ => FinishReason::Stop,
    };
    // mistral.rs 0.8.1 turns a stop string that is one token into a stop *token id*, which
    // misses the same word with a leading space (another token): generation then runs past it.
    // Cut the text at the first stop string here so callers always see stop semantics; the
    // tokens generated past it were spent, and are counted.
    // Which stop sequence ended it: the first in the text (when mistral.rs ran past it), else
    // the one the generated tokens end with (mistral.rs leaves it out of the text).
    let mut stop_sequence = None;
    if let Some((at, s)) = stop
        .iter()
        .filter_map(|s| text.find(s.as_str()).map(|at| (at, s)))
        .min_by_key(|(at, _)| *at)
    {
        text.truncate(at);
        finish_reason = FinishReason::Stop;
        stop_sequence = Some(s.clone());
    } else if finish_reason == FinishReason::Stop {
        stop_sequence = stop
            .iter()
            .filter_map(|s| generated.rfind(s.as_str()).map(|at| (at, s)))
            .max_by_key(|(at, _)| *at)
            .map(|(_, s)| s.clone());
    }
    if finish_reason == FinishReason::Length {
        // Cut inside a character, whose bytes mistral.rs decodes lossily as U+FFFD: the text
        // ends with the characters it finished (the model writes that one again when it is
        // continued, rather than a continuation carrying the broken one on).
        let finished = text.trim_end_matches('\u{FFFD}').len();
        text.truncate(finished);
    }
    Choice {
        text,
        completion_tokens: logprobs.len(),
        finish_reason,
        stop_sequence,
        logprobs: Some(logprobs),
    }
}

impl MistralRsBackend {
    /// On the CPU, waits for the engine to be free of other sequences and returns the turn;
    /// elsewhere `None` at once.
    async fn take_turn(&self) -> Result<Option<OwnedSemaphorePermit>> {
        let Some(turns) = &self.one_at_a_time else {
            return Ok(None);
        };
        let turn = Arc::clone(turns)
            .acquire_owned()
            .await
            .map_err(|_| Error::EngineGone {
                context: "the backend's request queue closed",
            })?;
        Ok(Some(turn))
    }

    /// One completion request of `n` choices of `prompt` to the engine, holding `turn` (if any)
    /// until the engine lets go of it.
    async fn complete(
        &self,
        request: &GenerationRequest,
        prompt: &Arc<[u32]>,
        n: usize,
        turn: Option<OwnedSemaphorePermit>,
        draw: Option<SeededDraw>,
    ) -> Result<Vec<Choice>> {
        // This request's own: a processor's panic or NaN ends its sequences, not another
        // request's of the same call (the CPU's choices, sent one after another).
        let fault = &Fault::new(self.eos_token_ids.first().copied());
        // An empty stop string stops nothing.
        let stop: Vec<String> = request
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect();
        let stops = match (&self.token_bytes, self.eos_token_ids.first()) {
            (Some(tokens), Some(&eos)) => {
                StopStrings::new(&stop, Arc::clone(tokens)).map(|stops| EndAtStop {
                    stops,
                    prompt_len: prompt.len(),
                    eos,
                    found: Arc::new(Mutex::new(None)),
                })
            }
            _ => None,
        };
        // Drawn by ponder: mistral.rs takes the one token left, greedily.
        let drawn = draw.is_some();
        let sampling = SamplingParams {
            // mistral.rs reads a missing temperature as 1.0 (sampling); greedy needs an explicit 0.
            temperature: Some(if drawn {
                0.0
            } else {
                request.sampling.temperature
            }),
            top_k: request.sampling.top_k.filter(|_| !drawn),
            top_p: request.sampling.top_p.filter(|_| !drawn),
            min_p: None,
            top_n_logprobs: request.top_logprobs.unwrap_or(0),
            frequency_penalty: None,
            presence_penalty: None,
            repetition_penalty: None,
            // Matched here where the token bytes and an end-of-sequence id are known (see
            // `stop_strings.rs`), else by mistral.rs.
            stop_toks: (stops.is_none() && !stop.is_empty())
                .then(|| StopTokens::Seqs(stop.clone())),
            max_len: Some(request.max_tokens),
            logits_bias: None,
            n_choices: n,
            dry_params: None,
        };
        // A caller that stops waiting drops `_abandon`, and the request ends at its next token.
        let abandoned = Arc::new(AtomicBool::new(false));
        let _abandon = AbandonOnDrop(Arc::clone(&abandoned));
        let timed_out = Arc::new(AtomicBool::new(false));
        let mut processors: Vec<Arc<dyn CustomLogitsProcessor>> = request
            .logits_processors
            .iter()
            .map(|p| {
                Arc::new(ProcessorAdapter {
                    processor: Arc::clone(p),
                    prompt: Arc::clone(prompt),
                    fault: Arc::clone(fault),
                }) as Arc<dyn CustomLogitsProcessor>
            })
            .collect();
        // A one-choice request to a tokenizer whose tokens' texts lose their leading space:
        // its first generated ids, to read the completion's leading whitespace from; all of
        // them where the engine leaves byte tokens out of the text, to put them back.
        let hides_bytes = self.hides_bytes();
        let first_ids = ((self.drops_lead_space || hides_bytes) && n == 1).then(|| {
            let seen = Arc::new(Mutex::new(Vec::new()));
            processors.push(Arc::new(FirstIds {
                prompt_len: prompt.len(),
                keep: if hides_bytes { usize::MAX } else { FIRST_IDS },
                seen: Arc::clone(&seen),
            }) as Arc<dyn CustomLogitsProcessor>);
            seen
        });
        let stop_found = stops.as_ref().map(|s| Arc::clone(&s.found));
        if let Some(stops) = stops {
            processors.push(Arc::new(stops));
        }
        if let Some(&eos) = self.eos_token_ids.first() {
            processors.push(Arc::new(EndWhenAbandoned {
                abandoned,
                deadline: request.deadline,
                timed_out: Arc::clone(&timed_out),
                eos,
            }));
        }
        // Last of all: it draws from what the others leave, recording what it drew where
        // log-probabilities are asked for (mistral.rs, greedy, reports the token it leaves by
        // its logit, 0: log-probability minus infinity).
        let (draw, record) = match (draw, request.top_logprobs) {
            (Some(draw), Some(top_n)) => {
                let (draw, record) = draw.recording(prompt.len(), top_n);
                (Some(draw), Some(record))
            }
            (draw, _) => (draw, None),
        };
        if let Some(draw) = draw {
            processors.push(Arc::new(ProcessorAdapter {
                processor: Arc::new(draw),
                prompt: Arc::clone(prompt),
                fault: Arc::clone(fault),
            }));
        }
        let (tx, rx) = mpsc::channel(8);
        let id = self.requests.fetch_add(1, Ordering::Relaxed);
        let normal = NormalRequest {
            messages: RequestMessage::CompletionTokens(prompt.to_vec()),
            sampling_params: sampling,
            response: tx,
            // Always on: the per-token entries are how tokens are counted per choice.
            return_logprobs: true,
            is_streaming: false,
            id,
            constraint: Constraint::None,
            suffix: None,
            tools: None,
            tool_choice: None,
            logits_processors: (!processors.is_empty()).then_some(processors),
            return_raw_logits: false,
            web_search_options: None,
            model_id: None,
            truncate_sequence: false,
        };
        let response = self
            .round_trip(
                Request::Normal(Box::new(normal)),
                rx,
                |r| !matches!(r, Response::CompletionChunk(_) | Response::Chunk(_)),
                turn,
            )
            .await?;
        // A processor that panicked, or NaN logits: the sequences were ended there.
        if let Some(e) = fault.error() {
            return Err(e);
        }
        let completion = match response {
            Response::CompletionDone(done) => done,
            Response::CompletionModelError(message, _) => return Err(Error::Inference { message }),
            Response::ValidationError(e) | Response::InternalError(e) => {
                return Err(Error::Inference {
                    message: e.to_string(),
                })
            }
            _ => {
                return Err(Error::Inference {
                    message: "unexpected response kind to a completion request".into(),
                })
            }
        };
        let mut ordered = completion.choices;
        ordered.sort_by_key(|c| c.index);
        // mistral.rs trims the completion's leading whitespace and these tokens' texts do not
        // hold it: read it from the first ids, so a continuation glued onto its prefix (" I
        // think" after "Wait") keeps its space. Best effort: without it (an error, the
        // deadline) the lead is read from the tokens, as elsewhere.
        let ids = match (first_ids, ordered.as_slice()) {
            (Some(seen), [_]) => seen.lock().map(|ids| ids.clone()).unwrap_or_default(),
            _ => Vec::new(),
        };
        // Byte tokens the engine left out of the text (a GGUF's SentencePiece vocabulary: its
        // newlines) put back from the ids; the text then keeps its own leading whitespace.
        let restored = match (&self.token_bytes, ordered.as_mut_slice()) {
            (Some(tokens), [choice]) if hides_bytes => {
                let entries = choice.logprobs.as_ref().and_then(|l| l.content.as_ref());
                // Every token but the last was seen. The last, where the completion was cut at
                // its length (not ended by the end of sequence), may be a byte token: its text
                // alone, one character.
                let seen_all = entries.is_some_and(|e| e.len() == ids.len() + 1);
                let cut = matches!(choice.finish_reason.as_str(), "length" | "model_length");
                let last = entries
                    .and_then(|e| e.last())
                    .map(|l| l.token.as_str())
                    .filter(|t| cut && t.chars().count() == 1);
                let restored = seen_all
                    .then(|| tokens.restore_bytes(&choice.text, &ids, last))
                    .flatten();
                restored.map(|text| choice.text = text).is_some()
            }
            _ => false,
        };
        let first = &ids[..ids.len().min(FIRST_IDS)];
        let lead = match (ids.is_empty(), request.deadline) {
            _ if restored => Some(String::new()),
            (true, _) => None,
            (false, Some(deadline)) => {
                tokio::time::timeout_at(deadline.into(), self.lead_after(&prompt[..], first))
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
            (false, None) => self.lead_after(&prompt[..], first).await.ok(),
        };
        let mut choices: Vec<Choice> = ordered
            .into_iter()
            .map(|c| convert_choice(c, &stop, self.drops_lead_space, lead.as_deref()))
            .collect();
        // A drawn choice's probabilities, from the draw's record.
        if let (Some(record), [choice]) = (record, choices.as_mut_slice()) {
            let entries = choice.logprobs.iter_mut().flatten();
            for (entry, drawn) in entries.zip(record.drawn()) {
                let Some(drawn) = drawn else { continue };
                entry.logprob = drawn.logprob;
                entry.top = drawn
                    .top
                    .into_iter()
                    .map(|(id, logprob)| TopLogprob {
                        id,
                        token: self.token_text(id),
                        logprob,
                    })
                    .collect();
            }
        }
        // One choice that ended at a stop string its text does not show (its leading space lost
        // with the completion's, a stop read across a special token): it stopped there all the
        // same. (Of several at once, which one ended where is not known.)
        let found = stop_found.and_then(|f| f.lock().ok().and_then(|f| f.clone()));
        if let ([choice], Some(stop)) = (choices.as_mut_slice(), found) {
            if choice.stop_sequence.is_none() {
                choice.finish_reason = FinishReason::Stop;
                choice.stop_sequence = Some(stop);
            }
        }
        // Ended at the deadline: cut there, not finished. Of several sequences, those still
        // decoding then ended on the forced end-of-sequence token, whose probability was 1 (log
        // 0) with every other token ruled out (greedy, mistral.rs reads log10 of its logit, 0:
        // minus infinity); one that had ended by itself keeps its reason.
        if timed_out.load(Ordering::Relaxed) {
            let single = choices.len() == 1;
            for choice in &mut choices {
                let forced = single
                    || choice
                        .logprobs
                        .as_ref()
                        .and_then(|l| l.last())
                        .is_some_and(|last| {
                            last.logprob == 0.0 || last.logprob == f32::NEG_INFINITY
                        });
                if forced
                    && choice.finish_reason == FinishReason::Stop
                    && choice.stop_sequence.is_none()
                {
                    choice.finish_reason = FinishReason::Length;
                    // Cut inside a character, as a length cut can be (see `convert_choice`).
                    let finished = choice.text.trim_end_matches('\u{FFFD}').len();
                    choice.text.truncate(finished);
                }
            }
        }
        Ok(choices)
    }
}

/// How long past its deadline a call of several choices on the CPU waits for a later choice
/// before it returns those written: less than the meters' grace, after which the whole call
/// would be dropped. (What the choice given up spent, its prefill and the one token that ends
/// it, is not known, so not counted.)
const LATER_CHOICE_GRACE: Duration = Duration::from_secs(1);
const _: () = assert!(LATER_CHOICE_GRACE.as_millis() < crate::metered::DEADLINE_GRACE.as_millis());

/// A call of `asked` choices where some failed (`e`, the first): the choices written are its
/// reply, with what they spent, as those written by a deadline are; with none written, the
/// error. An engine gone is the error whatever was written: every later call would fail the
/// same way, and a run stops at it.
fn choices_written_despite(e: Error, choices: &[Choice], asked: usize) -> Result<()> {
    if choices.is_empty() || matches!(e, Error::EngineGone { .. }) {
        return Err(e);
    }
    if !e.is_out_of_time() {
        tracing::warn!(
            asked,
            written = choices.len(),
            error = %e,
            "a choice failed; the call returns the choices written"
        );
    }
    Ok(())
}

/// The choices of requests sent together, in order. Each ends at its next token after the
/// `deadline`; one still in a step a little after it (waiting for its prefill behind other
/// sequences: its forced end comes only with its first token) is given up, as on the CPU
/// (`LATER_CHOICE_GRACE`), so those written come back before a meter stops waiting for the
/// whole call. A request that fails or is given up leaves the others the reply; with none
/// written, its error (a wall-time stop where all were given up).
async fn gather<F>(
    requests: impl IntoIterator<Item = F>,
    deadline: Option<Instant>,
) -> Result<Vec<Choice>>
where
    F: std::future::Future<Output = Result<Vec<Choice>>>,
{
    let written = futures::future::join_all(requests.into_iter().map(|request| async move {
        match deadline {
            Some(deadline) => {
                tokio::time::timeout_at((deadline + LATER_CHOICE_GRACE).into(), request)
                    .await
                    .unwrap_or_else(|_| Err(Error::out_of_time()))
            }
            None => request.await,
        }
    }))
    .await;
    let asked = written.len();
    let mut choices = Vec::new();
    let mut failed: Option<Error> = None;
    for written in written {
        match written {
            Ok(written) => choices.extend(written),
            Err(e) => {
                failed = Some(match failed {
                    Some(f) => f.or_more_telling(e),
                    None => e,
                })
            }
        }
    }
    if let Some(e) = failed {
        choices_written_despite(e, &choices, asked)?;
    }
    Ok(choices)
}

/// The most alternatives a token's log-probabilities list in process.
const MAX_TOP_LOGPROBS: usize = 20;

#[async_trait]
impl Backend for MistralRsBackend {
    async fn generate(&self, request: GenerationRequest) -> Result<Generation> {
        if request.n == 0 {
            return Err(Error::InvalidRequest {
                reason: "n must be at least 1",
            });
        }
        if request.max_tokens == 0 {
            return Err(Error::InvalidRequest {
                reason: "max_tokens must be at least 1",
            });
        }
        // As `capabilities` says (a draw's top list is built on the engine's thread, token by
        // token: one as long as the vocabulary would stall every request).
        if request.top_logprobs.is_some_and(|k| k > MAX_TOP_LOGPROBS) {
            return Err(Error::InvalidRequest {
                reason: "top_logprobs is at most 20 in process",
            });
        }
        let started = Instant::now();
        let ids = self.prompt_ids(&request.prompt).await?;
        if ids.is_empty() {
            return Err(Error::InvalidRequest {
                reason: "empty prompt",
            });
        }
        if let Some(context_tokens) = self.context_tokens {
            if ids.len().saturating_add(request.max_tokens) > context_tokens {
                return Err(Error::PromptTooLong {
                    prompt_tokens: ids.len(),
                    max_tokens: request.max_tokens,
                    context_tokens,
                });
            }
        }
        let prompt_tokens = ids.len();
        let prompt: Arc<[u32]> = Arc::from(ids);
        // A sampled request with a seed is drawn by ponder, each choice from a seed of its own
        // (`seeded_draw.rs`): a request of its own.
        let seed = request
            .sampling
            .seed
            .filter(|_| request.sampling.temperature >= 1e-7);
        // mistral.rs 0.8.1's greedy path reports log10 of the raw *logit* as a token's
        // log-probability (sampler.rs, `sample_argmax`). A greedy request that asks for
        // log-probabilities is drawn by ponder too, taking the most likely token, with the
        // probabilities at temperature 1 recorded as a sampled token's are. (mistral.rs decodes
        // any temperature below 1e-7 greedily.)
        let greedy_logprobs = request.sampling.temperature < 1e-7 && request.top_logprobs.is_some();
        let draw = |choice: usize| match seed {
            Some(seed) => Some(SeededDraw::for_choice(seed, choice, &request.sampling)),
            None => greedy_logprobs.then(SeededDraw::most_likely),
        };
        // On the CPU, one request of one choice per turn; elsewhere one request of all `n`, or
        // of each drawn choice, sent together. A tokenizer whose tokens' texts lose their
        // leading space has it read from a one-choice request's first ids, and a vocabulary
        // whose byte tokens the engine hides has them put back from a one-choice request's
        // ids: one request a choice there too (else every choice of a CUDA request lost them).
        let drawn = seed.is_some() || greedy_logprobs;
        let (requests, per_request) = match (&self.one_at_a_time, drawn) {
            (None, false) if !self.drops_lead_space && !self.hides_bytes() => (1, request.n),
            _ => (request.n, 1),
        };
        let mut choices = Vec::with_capacity(request.n);
        let together = self.one_at_a_time.is_none() && requests > 1;
        // Past its deadline already: nothing is sent (each would pay its prefill for a forced
        // end). One by one, each choice's turn checks it.
        if together && request.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Error::BudgetExhausted {
                resource: crate::budget::Resource::WallTime,
            });
        }
        if together {
            choices = gather(
                (0..requests).map(|choice| self.complete(&request, &prompt, 1, None, draw(choice))),
                request.deadline,
            )
            .await?;
        }
        // Else one after another, each in its turn; one that fails leaves the others to try.
        let one_by_one = if together { 0 } else { requests };
        let mut failed = None;
        for choice in 0..one_by_one {
            // Past the deadline, or waiting for the engine until it: the choices written so far
            // are the reply; none yet is a wall-time stop that decoded nothing.
            let turn = match request.deadline {
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline.into(), self.take_turn()).await {
                        Ok(turn) if Instant::now() < deadline => turn?,
                        _ if !choices.is_empty() => break,
                        _ => {
                            return Err(Error::BudgetExhausted {
                                resource: crate::budget::Resource::WallTime,
                            })
                        }
                    }
                }
                None => self.take_turn().await?,
            };
            let completing = self.complete(&request, &prompt, per_request, turn, draw(choice));
            let written = match request.deadline {
                // A later choice still in a step at the deadline (a long prefill: the deadline's
                // forced end comes only with its first token) is given up a little after it, so
                // the choices already written come back, cut and counted, before a meter stops
                // waiting for the whole call (`metered::DEADLINE_GRACE`) and loses them all.
                Some(deadline) if !choices.is_empty() => {
                    match tokio::time::timeout_at(
                        (deadline + LATER_CHOICE_GRACE).into(),
                        completing,
                    )
                    .await
                    {
                        Ok(written) => written,
                        Err(_) => break,
                    }
                }
                _ => completing.await,
            };
            match written {
                Ok(written) => choices.extend(written),
                Err(e @ Error::EngineGone { .. }) => return Err(e),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            choices_written_despite(e, &choices, request.n)?;
        }
        let completion_tokens: usize = choices.iter().map(|c| c.completion_tokens).sum();
        if request.top_logprobs.is_none() {
            for choice in &mut choices {
                choice.logprobs = None;
            }
        }
        Ok(Generation {
            choices,
            usage: Usage {
                prompt_tokens: prompt_tokens as u64,
                completion_tokens: completion_tokens as u64,
                calls: 1,
                elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                ..Usage::default()
            },
            cut_by: None,
        })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            backend: "mistralrs",
            context_tokens: self.context_tokens,
            logits_processors: true,
            max_top_logprobs: MAX_TOP_LOGPROBS,
            native_n: true,
            max_native_n: None,
            tries_n: false,
            eos_token_ids: self.eos_token_ids.clone(),
            tokenizer: true,
        }
    }

    async fn tokenize(&self, input: TokenizeInput<'_>) -> Result<Vec<u32>> {
        match input {
            TokenizeInput::Prompt(prompt) => self.prompt_ids(prompt).await,
            TokenizeInput::Piece(text) => {
                self.pieces
                    .get_or_tokenize(text, || self.tokenize_text(text, false))
                    .await
            }
        }
    }

    async fn detokenize(&self, ids: &[u32]) -> Result<String> {
        let (tx, rx) = mpsc::channel(1);
        let request = Request::Detokenize(mistralrs::core::DetokenizationRequest {
            tokens: ids.to_vec(),
            skip_special_tokens: false,
            response: tx,
        });
        self.round_trip(request, rx, |_| true, None)
            .await?
            .map_err(|e| Error::Inference {
                message: format!("detokenizing: {e}"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completion_cut_inside_a_character_ends_with_the_characters_it_finished() {
        let choice = |text: &str, finish_reason: &str| mistralrs::core::CompletionChoice {
            finish_reason: finish_reason.into(),
            index: 0,
            text: text.into(),
            logprobs: None,
        };
        let cut = convert_choice(choice("1. 🍌🍌\u{FFFD}", "length"), &[], false, None);
        assert_eq!(cut.text, "1. 🍌🍌");
        assert_eq!(cut.finish_reason, FinishReason::Length);
        // Ended by the model: its text is its own.
        let ended = convert_choice(choice("odd \u{FFFD}", "stop"), &[], false, None);
        assert_eq!(ended.text, "odd \u{FFFD}");
    }

    #[test]
    fn the_gpus_compute_capability_is_read_as_mistral_rs_reads_it_and_a_bad_reading_is_an_error() {
        assert_eq!(lowest_capability("compute_cap\n9.0\n"), Ok(9.0));
        assert_eq!(lowest_capability("compute_cap\n9.0\n7.5\n"), Ok(7.5));
        assert_eq!(lowest_capability("compute_cap\r\n8.0\r\n"), Ok(8.0));
        let err = lowest_capability("compute_cap\n[N/A]\n").unwrap_err();
        assert!(err.contains("printed `[N/A]`"), "{err}");
        let err = lowest_capability("No devices were found\n").unwrap_err();
        assert!(
            err.contains("listed no GPU: `No devices were found`"),
            "{err}"
        );
    }

    #[test]
    fn only_the_shards_of_one_model_load_from_one_directory() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(shards_of_one_model(&names(&[
            "m-00001-of-00002.gguf",
            "m-00002-of-00002.gguf"
        ])));
        for not_one in [
            &["a.gguf", "b.gguf"][..],
            &["m-00001-of-00003.gguf", "m-00002-of-00003.gguf"],
            &["m-00001-of-00002.gguf", "n-00002-of-00002.gguf"],
            &["m-00001-of-00002.gguf", "m-00001-of-00002.gguf"],
        ] {
            assert!(!shards_of_one_model(&names(not_one)), "{not_one:?}");
        }
    }

    #[tokio::test]
    async fn a_directory_of_two_models_is_refused_with_their_names() {
        let dir = tempfile::tempdir().unwrap();
        for file in ["smol.gguf", "qwen.gguf"] {
            std::fs::write(dir.path().join(file), b"GGUF").unwrap();
        }
        let options = LoadOptions::for_device(crate::model_config::DeviceSpec::Cpu);
        let err = load_gguf_files("cache", dir.path(), &options, &Device::Cpu)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("not the shards of one model") && err.contains("qwen.gguf, smol.gguf"),
            "{err}"
        );
    }

    fn written(text: &str) -> Vec<Choice> {
        vec![Choice {
            text: text.into(),
            completion_tokens: 1,
            finish_reason: FinishReason::Stop,
            stop_sequence: None,
            logprobs: None,
        }]
    }

    fn texts(choices: &[Choice]) -> Vec<&str> {
        choices.iter().map(|c| c.text.as_str()).collect()
    }

    #[tokio::test]
    async fn requests_sent_together_leave_those_written_when_one_fails_or_runs_past_the_deadline() {
        type Call = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<Choice>>>>>;
        let after = |ms: u64, reply: Result<Vec<Choice>>| -> Call {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                reply
            })
        };
        let failure = || Error::Inference {
            message: "NaN".into(),
        };
        // In order, whatever order they finished in; a failure leaves the others.
        let got = gather(
            [after(30, Ok(written("a"))), after(0, Ok(written("b")))],
            None,
        )
        .await
        .unwrap();
        assert_eq!(texts(&got), ["a", "b"]);
        let got = gather(
            [after(0, Err(failure())), after(10, Ok(written("b")))],
            None,
        )
        .await
        .unwrap();
        assert_eq!(texts(&got), ["b"]);
        let all_failed = gather([after(0, Err(failure())), after(0, Err(failure()))], None).await;
        assert!(
            matches!(all_failed, Err(Error::Inference { .. })),
            "{all_failed:?}"
        );
        // One still running a little after the deadline is given up; the other is the reply,
        // long before the request given up would have ended.
        let deadline = Instant::now() + Duration::from_millis(50);
        let started = Instant::now();
        let got = gather(
            [
                after(60, Ok(written("a"))),
                after(60_000, Ok(written("late"))),
            ],
            Some(deadline),
        )
        .await
        .unwrap();
        assert_eq!(texts(&got), ["a"]);
        assert!(started.elapsed() < Duration::from_secs(10));
        // A failure says more than a choice given up; an engine gone is the error whatever
        // was written (a run stops at it).
        let deadline = Instant::now() + Duration::from_millis(10);
        let failed = gather(
            [after(60_000, Ok(written("late"))), after(0, Err(failure()))],
            Some(deadline),
        )
        .await;
        assert!(matches!(failed, Err(Error::Inference { .. })), "{failed:?}");
        let gone = || Error::EngineGone { context: "test" };
        let failed = gather(
            [
                after(0, Ok(written("a"))),
                after(0, Err(failure())),
                after(10, Err(gone())),
            ],
            None,
        )
        .await;
        assert!(
            matches!(failed, Err(Error::EngineGone { .. })),
            "{failed:?}"
        );
        // None written by then: a wall-time stop.
        let deadline = Instant::now() + Duration::from_millis(10);
        let none = gather([after(60_000, Ok(written("late")))], Some(deadline)).await;
        assert!(
            matches!(
                none,
                Err(Error::BudgetExhausted {
                    resource: crate::budget::Resource::WallTime
                })
            ),
            "{none:?}"
        );
    }

    #[test]
    fn a_pool_sized_in_tokens_bounds_the_window_on_cuda_only() {
        let options = |device, kv_pool| LoadOptions {
            kv_pool,
            ..LoadOptions::for_device(device)
        };
        let cuda = DeviceSpec::Cuda(0);
        let dir = tempfile::tempdir().unwrap();
        let at = Some(dir.path());
        let tokens = |n| options(cuda, KvPool::Tokens(n));
        assert_eq!(pool_tokens_asked(&tokens(4096), at), None, "no config.json");
        // Qwen2.5-7B's shape: 28 layers of 4 key-value heads of 128, 57,344 bytes a token in
        // bf16, so a MB is 18 tokens: 4096 - 19 = 4077 tokens fill 127 whole blocks, one of
        // them null. (mistral.rs makes 128 of them, 224 MB exactly: 4064 usable, at least this.)
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4, "hidden_size": 3584}"#,
        )
        .unwrap();
        assert_eq!(pool_tokens_asked(&tokens(4096), at), Some(126 * 32));
        assert_eq!(
            pool_tokens_asked(&options(cuda, KvPool::Utilization(0.9)), at),
            None
        );
        assert_eq!(
            pool_tokens_asked(&options(DeviceSpec::Cpu, KvPool::Tokens(4096)), at),
            None
        );
    }

    #[test]
    fn eos_ids_come_from_generation_config_not_config() {
        let dir = tempfile::tempdir().unwrap();
        assert!(eos_ids_in(dir.path(), None).is_empty());
        // mistral.rs does not end sequences on `config.json`'s id.
        std::fs::write(dir.path().join("config.json"), r#"{"eos_token_id": 2}"#).unwrap();
        assert!(eos_ids_in(dir.path(), None).is_empty());
        std::fs::write(
            dir.path().join("generation_config.json"),
            r#"{"eos_token_id": [151645, 151643]}"#,
        )
        .unwrap();
        assert_eq!(eos_ids_in(dir.path(), None), vec![151645, 151643]);
    }

    #[test]
    fn eos_ids_are_those_mistral_rs_ends_on_the_templates_end_of_turn_among_them() {
        // A base checkpoint's generation config names `<|endoftext|>` only; its ChatML
        // template ends turns with `<|im_end|>`, which mistral.rs ends sequences on too.
        let dir = tempfile::tempdir().unwrap();
        let write = |file: &str, text: &str| std::fs::write(dir.path().join(file), text).unwrap();
        write("generation_config.json", r#"{"eos_token_id": 151643}"#);
        write(
            "tokenizer.json",
            r#"{"model": {"type": "BPE", "vocab": {"a": 0, "<|end|>": 7}},
                "added_tokens": [{"id": 151643, "content": "<|endoftext|>"},
                                 {"id": 151645, "content": "<|im_end|>"},
                                 {"id": 151646, "content": "<|eot_id|>"}]}"#,
        );
        write(
            "tokenizer_config.json",
            r#"{"eos_token": {"content": "<|endoftext|>"},
                "chat_template": "{% for m in messages %}<|im_start|>{{ m.content }}<|im_end|>{% endfor %}"}"#,
        );
        // `<|eot_id|>` and `<|end|>` are in the vocabulary, not the template.
        assert_eq!(eos_ids_in(dir.path(), None), vec![151643, 151645]);
        // A template given in place of the model's is the one read.
        write("llama3.jinja", "{{ m }}<|eot_id|>");
        let given = dir.path().join("llama3.jinja");
        assert_eq!(eos_ids_in(dir.path(), Some(&given)), vec![151643, 151646]);
        // The tokenizer's `eos_token` counts without a generation config (and `config.json`'s
        // ids then do not).
        std::fs::remove_file(dir.path().join("generation_config.json")).unwrap();
        write("config.json", r#"{"eos_token_id": 2}"#);
        assert_eq!(eos_ids_in(dir.path(), None), vec![151643, 151645]);
        // A Unigram vocabulary is a list of pieces, each id its index; templates may be named.
        write(
            "tokenizer.json",
            r#"{"model": {"type": "Unigram", "vocab": [["<pad>", 0.0], ["</s>", 0.0], ["<end_of_turn>", 0.0]]}}"#,
        );
        write(
            "tokenizer_config.json",
            r#"{"eos_token": "</s>", "chat_template": [{"name": "default", "template": "{{ m }}<end_of_turn>"}]}"#,
        );
        assert_eq!(eos_ids_in(dir.path(), None), vec![1, 2]);
    }
}
