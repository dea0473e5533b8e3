//! [`TokenPrm`]: a causal-LM process reward model read from token probabilities.
//!
//! Two formats real PRMs use:
//! - Math-Shepherd: `question step1 ки\nstep2 ки\n...`; after each step tag, `P("+")` against
//!   `P("-")` is the step's score.
//! - RLHFlow: a conversation, the question and first step as the first user turn, each later
//!   step as a user turn, an assistant turn `+` after each; `P("+")` against `P("-")` where each
//!   assistant turn starts is the score.
//!
//! Math-Shepherd: one request per candidate reads all its steps: the text is teacher-forced
//! through a [`ScoreReader`] that reads the probabilities at the step positions. RLHFlow: one
//! request per step, read at its first generated token (forcing the conversation through would
//! force each assistant turn's end-of-turn token, which ends mistral.rs's decode). Candidates
//! and steps are scored concurrently. The model is the policy (the context's backend) unless
//! another is configured (a hub id or a local path that mistral.rs can load, or a `[model]`
//! table such as an OpenAI-compatible server's; loaded on first use).
//!
//! A backend without logits processors (a PRM served over HTTP, by vLLM say) is read from its
//! top log-probabilities instead: one request per step, cut where the label is predicted, one
//! token long, `P(good)` against `P(bad)` among the first token's top log-probabilities (a step
//! where neither is among them is left unscored, NaN).
//!
//! A step's score depends on the question and the steps up to it alone (the model reads the
//! text causally), so scores are remembered by those, and only steps not scored before are
//! read: a search that rescores a growing path reads its newest step, its prompt the path so
//! far (prefilled, not forced token by token).

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::try_join_all;
use ponder_engine::{
    Backend, Context, Error, GenerationRequest, LogitsProcessor, Message, ModelConfig, Prompt,
    Result, Scorer, TokenizeInput,
};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::capture::ScoreReader;
use crate::failed_reads::FailedReads;
use crate::judge::read_choice_probability;
use crate::score_cache::ScoreCache;

/// The layout the PRM was trained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrmFormat {
    /// A step tag after each step (Math-Shepherd).
    #[default]
    MathShepherd,
    /// Conversation turns with `+`/`-` assistant replies (RLHFlow).
    Rlhflow,
}

/// Config of [`TokenPrm`] (`kind = "prm"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrmConfig {
    /// `math_shepherd` or `rlhflow`. Default `math_shepherd`.
    #[serde(default)]
    pub format: PrmFormat,
    /// The PRM: a hub id or local path, or a `[model]` table (an OpenAI-compatible server:
    /// `{ backend = "openai", base_url = "...", model = "..." }`). Default: the policy model.
    #[serde(default)]
    pub model: Option<PrmModel>,
    /// Math-Shepherd's step tag. Default `ки`.
    #[serde(default = "default_step_tag")]
    pub step_tag: String,
    /// The "good step" token text. Default `+`.
    #[serde(default = "default_good")]
    pub good: String,
    /// The "bad step" token text. Default `-`.
    #[serde(default = "default_bad")]
    pub bad: String,
    /// Overrides the good token id read from the tokenizer.
    #[serde(default)]
    pub good_id: Option<u32>,
    /// Overrides the bad token id read from the tokenizer.
    #[serde(default)]
    pub bad_id: Option<u32>,
}

/// Where [`PrmConfig::model`] comes from: a source string, or a whole model table.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PrmModel {
    /// A hub id or local path, loaded in process by mistral.rs.
    Source(String),
    /// A model table, as `[model]` is written.
    Config(Box<ModelConfig>),
}

impl PrmModel {
    /// The model table this names.
    pub fn config(&self) -> ModelConfig {
        match self {
            PrmModel::Source(source) => ModelConfig {
                source: source.clone(),
                ..ModelConfig::default()
            },
            PrmModel::Config(config) => (**config).clone(),
        }
    }
}

impl<'de> Deserialize<'de> for PrmModel {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = PrmModel;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a hub id or local path, or a model table")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PrmModel, E> {
                Ok(PrmModel::Source(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<PrmModel, A::Error> {
                let config =
                    ModelConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(PrmModel::Config(Box::new(config)))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

fn default_step_tag() -> String {
    "ки".into()
}
fn default_good() -> String {
    "+".into()
}
fn default_bad() -> String {
    "-".into()
}

impl Default for PrmConfig {
    fn default() -> Self {
        Self {
            format: PrmFormat::default(),
            model: None,
            step_tag: default_step_tag(),
            good: default_good(),
            bad: default_bad(),
            good_id: None,
            bad_id: None,
        }
    }
}

/// A token-probability PRM; see the module docs.
///
/// Step scores are remembered (by question and the steps up to each, up to
/// [`TokenPrm::CACHE_ENTRIES`]): one instance scores with one model.
pub struct TokenPrm {
    config: PrmConfig,
    model: OnceCell<Arc<dyn Backend>>,
    cache: ScoreCache,
}

impl std::fmt::Debug for TokenPrm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPrm")
            .field("config", &self.config)
            .finish()
    }
}

/// What to send for one candidate: the prompt, the forced rest, where to read.
struct Plan {
    prompt: Vec<u32>,
    target: Vec<u32>,
    reads: Vec<usize>,
}

impl TokenPrm {
    /// Most step scores remembered; the memory is cleared when full.
    pub const CACHE_ENTRIES: usize = 262_144;

    /// A PRM with `config`.
    pub fn new(config: PrmConfig) -> Self {
        Self {
            config,
            model: OnceCell::new(),
            cache: ScoreCache::new(Self::CACHE_ENTRIES),
        }
    }

    /// A PRM that runs on `backend` (instead of the policy or a configured model).
    pub fn with_backend(config: PrmConfig, backend: Arc<dyn Backend>) -> Self {
        Self {
            config,
            model: OnceCell::new_with(Some(backend)),
            cache: ScoreCache::new(Self::CACHE_ENTRIES),
        }
    }

    /// The key of each step's score: the question and the steps up to it (as the text is
    /// laid out: trimmed), with the labels read.
    fn keys(&self, question: &str, steps: &[String], labels: (u32, u32)) -> Vec<u64> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.config.format, &self.config.step_tag, labels).hash(&mut h);
        question.trim().hash(&mut h);
        steps
            .iter()
            .map(|step| {
                step.trim().hash(&mut h);
                h.finish()
            })
            .collect()
    }

    /// The scores remembered for `keys`, in order.
    fn remembered(&self, keys: &[u64]) -> Vec<Option<f64>> {
        self.cache.get_all(keys)
    }

    /// Remembers the scores read (unread ones, NaN, are not).
    fn remember(&self, keys: &[u64], scores: &[f64]) {
        self.cache.insert_all(keys, scores);
    }

    /// The model to score with: one given in code, the configured one, else the policy. A
    /// model of its own is metered as the policy is: its calls count against the solve's
    /// budgets.
    async fn backend(&self, cx: &Context) -> Result<Arc<dyn Backend>> {
        let model = match (self.model.get(), &self.config.model) {
            (Some(model), _) => Arc::clone(model),
            (None, None) => return Ok(Arc::clone(cx.backend())),
            (None, Some(model)) => Arc::clone(
                self.model
                    .get_or_try_init(|| async {
                        model
                            .config()
                            .load()
                            .await
                            .map_err(|e| e.of_table("scorer.model"))
                    })
                    .await?,
            ),
        };
        Ok(cx.metered(model))
    }

    async fn label_ids(&self, backend: &dyn Backend) -> Result<(u32, u32)> {
        let good = label_id(backend, &self.config.good, self.config.good_id).await?;
        let bad = label_id(backend, &self.config.bad, self.config.bad_id).await?;
        if good == bad {
            // Every step would score P(good) / (P(good) + P(bad)) = 0.5: no signal, silently.
            return Err(Error::StrategyConfig {
                strategy: "prm",
                reason: format!(
                    "labels `{}` and `{}` are the same token (id {good}) to this model: give \
                     labels it tells apart (good/bad, or good_id/bad_id)",
                    self.config.good, self.config.bad
                ),
            });
        }
        Ok((good, bad))
    }

    /// The requests that score `steps` from step `from` on (those before it are remembered):
    /// one for Math-Shepherd (its prompt the text up to the first tag read, every later tag
    /// read in one forced decode), one per step for RLHFlow (its label turns end with the chat
    /// template's end-of-turn token, which ends a decode even when forced, so each step's label
    /// is read at the start of its own request).
    async fn plans(
        &self,
        backend: &dyn Backend,
        question: &str,
        steps: &[String],
        from: usize,
    ) -> Result<Vec<Plan>> {
        let (mut reads, full) = self.layout(backend, question, steps).await?;
        reads.drain(..from.min(reads.len()));
        let upto = |at: usize| prefix_before(&full, at);
        Ok(match self.config.format {
            PrmFormat::MathShepherd => {
                let prompt = upto(reads.first().copied().unwrap_or(full.len()));
                let first = prompt.len();
                vec![Plan {
                    prompt: prompt.to_vec(),
                    target: full.get(first..).unwrap_or_default().to_vec(),
                    reads: reads.iter().map(|r| r.saturating_sub(first)).collect(),
                }]
            }
            PrmFormat::Rlhflow => reads
                .iter()
                .map(|&at| Plan {
                    prompt: upto(at).to_vec(),
                    target: Vec::new(),
                    reads: vec![0],
                })
                .collect(),
        })
    }

    /// The whole scored text as token ids, and where in it each step's label is predicted.
    async fn layout(
        &self,
        backend: &dyn Backend,
        question: &str,
        steps: &[String],
    ) -> Result<(Vec<usize>, Vec<u32>)> {
        Ok(match self.config.format {
            PrmFormat::MathShepherd => {
                // As its authors read it: `question step ки\nstep ки` tokenized whole, read at
                // each step tag (the last token of " ки"). Tokenized in pieces only when the
                // whole text does not show the tag once per step (a tag merged with its
                // neighbour, or one in the text): a SentencePiece tokenizer that prepends "▁"
                // to every text it is given would put a stray "▁" before every piece.
                let tag = step_tag_ids(backend, &self.config.step_tag).await?;
                let mut text = question.trim().to_string();
                for (i, step) in steps.iter().enumerate() {
                    text.push_str(if i == 0 { " " } else { "\n" });
                    text.push_str(step.trim());
                    text.push(' ');
                    text.push_str(&self.config.step_tag);
                }
                let whole = backend
                    .tokenize(TokenizeInput::Prompt(&Prompt::Text(text)))
                    .await?;
                let reads: Vec<usize> = match tag.last() {
                    Some(&tag_id) => whole
                        .iter()
                        .enumerate()
                        .filter(|&(_, &id)| id == tag_id)
                        .map(|(at, _)| at + 1)
                        .collect(),
                    None => Vec::new(),
                };
                if reads.len() == steps.len() {
                    return Ok((reads, whole));
                }
                tracing::debug!(
                    found = reads.len(),
                    steps = steps.len(),
                    "step tags not found once per step in the whole text: tokenizing in pieces"
                );
                let mut ids = backend
                    .tokenize(TokenizeInput::Prompt(&Prompt::Text(
                        question.trim().to_string(),
                    )))
                    .await?;
                let mut reads = Vec::new();
                for (i, step) in steps.iter().enumerate() {
                    let piece = if i == 0 {
                        format!(" {}", step.trim())
                    } else {
                        format!("\n{}", step.trim())
                    };
                    ids.extend(backend.tokenize(TokenizeInput::Piece(&piece)).await?);
                    ids.extend(tag.iter().copied());
                    // Math-Shepherd reads the logits computed at the tag token.
                    reads.push(ids.len());
                }
                (reads, ids)
            }
            PrmFormat::Rlhflow => {
                let mut messages = Vec::new();
                let mut reads = Vec::new();
                for (i, step) in steps.iter().enumerate() {
                    // The first turn is the question and first step joined by a space, as
                    // RLHFlow's prm_evaluate.py (and search-and-learn after it) wrote them.
                    let content = if i == 0 {
                        format!("{} {}", question.trim(), step.trim())
                    } else {
                        step.trim().to_string()
                    };
                    messages.push(Message::user(content));
                    // Where this assistant turn starts is where its label is predicted.
                    let upto = backend
                        .tokenize(TokenizeInput::Prompt(&Prompt::chat(messages.clone())))
                        .await?;
                    reads.push(upto.len());
                    messages.push(Message::assistant(self.config.good.clone()));
                }
                let full = backend
                    .tokenize(TokenizeInput::Prompt(&Prompt::chat(messages)))
                    .await?;
                (reads, full)
            }
        })
    }

    /// Scores on a backend without logits processors (a server): a one-token request per step,
    /// cut where its label is predicted, read from the top log-probabilities.
    async fn score_by_top_logprobs(
        &self,
        backend: &Arc<dyn Backend>,
        question: &str,
        candidates: &[Vec<String>],
        (good, bad): (u32, u32),
    ) -> Result<Vec<Vec<f64>>> {
        let all_reads = FailedReads::default();
        let failed = &all_reads;
        let reads = try_join_all(candidates.iter().map(|steps| async move {
            let keys = self.keys(question, steps, (good, bad));
            let known = self.remembered(&keys);
            let Some(from) = known.iter().position(Option::is_none) else {
                return Ok(known);
            };
            let (reads, full) = self.layout(backend.as_ref(), question, steps).await?;
            let read = try_join_all(reads.into_iter().skip(from).map(|at| {
                let prompt = Prompt::Tokens(prefix_before(&full, at).to_vec());
                async move {
                    match read_choice_probability(backend, prompt, &[good], &[bad]).await {
                        // A step past the model's context window: unscored, not 0.5.
                        Err(Error::PromptTooLong { .. }) => Ok(Some(f64::NAN)),
                        // A read that failed on its own call: unscored too.
                        read => failed.read(read, || Some(f64::NAN)),
                    }
                }
            }))
            .await?;
            let scores: Vec<Option<f64>> = known.into_iter().take(from).chain(read).collect();
            let remembered: Vec<f64> = scores.iter().map(|s| s.unwrap_or(f64::NAN)).collect();
            self.remember(&keys, &remembered);
            Ok(scores)
        }))
        .await?;
        all_reads.finish("the PRM")?;
        let (unread, steps) = reads
            .iter()
            .flatten()
            .fold((0, 0), |(u, n), r| (u + usize::from(r.is_none()), n + 1));
        if unread > 0 {
            tracing::warn!(
                unread,
                steps,
                top = backend.capabilities().max_top_logprobs,
                "neither PRM label among the server's top log-probabilities; unread steps are \
                 left unscored (are `good` and `bad` the PRM's own labels?)"
            );
        }
        Ok(reads
            .into_iter()
            .map(|r| r.into_iter().map(|s| s.unwrap_or(f64::NAN)).collect())
            .collect())
    }
}

/// The ids Math-Shepherd's step tag is written as after a step: what tokenizing `"x {tag}"`
/// adds to `"x"`. The tag alone with its space is not that on every tokenizer: Llama-2's
/// SentencePiece reads `" ки"` as `"▁▁", "ки"` but `"4 ки"` ends in `"▁ки"`, the token the PRM
/// was trained to read after (Mistral's reads both as ending in `"▁ки"`; byte-level BPE splits
/// at the space either way).
pub async fn step_tag_ids(backend: &dyn Backend, tag: &str) -> Result<Vec<u32>> {
    ponder_engine::turn::piece_after_text(backend, &format!(" {tag}")).await
}

/// The tokens before `at`, where a label is predicted (at least one, at most all of `full`).
fn prefix_before(full: &[u32], at: usize) -> &[u32] {
    full.get(..at.min(full.len()).max(1)).unwrap_or_default()
}

/// The id of a one-token label, or the override.
async fn label_id(backend: &dyn Backend, text: &str, over: Option<u32>) -> Result<u32> {
    if let Some(id) = over {
        return Ok(id);
    }
    let ids = backend.tokenize(TokenizeInput::Piece(text)).await?;
    match ids.as_slice() {
        [one] => Ok(*one),
        _ => Err(Error::StrategyConfig {
            strategy: "prm",
            reason: format!(
                "label `{text}` is {} tokens on this model; set good_id/bad_id",
                ids.len()
            ),
        }),
    }
}

#[async_trait]
impl Scorer for TokenPrm {
    async fn score(
        &self,
        cx: &Context,
        question: &str,
        candidates: &[Vec<String>],
    ) -> Result<Vec<Vec<f64>>> {
        let backend = self.backend(cx).await?;
        let (good, bad) = self.label_ids(backend.as_ref()).await?;
        if !backend.capabilities().logits_processors {
            return self
                .score_by_top_logprobs(&backend, question, candidates, (good, bad))
                .await;
        }
        let all_reads = FailedReads::default();
        let failed = &all_reads;
        let jobs = candidates.iter().map(|steps| {
            let backend = Arc::clone(&backend);
            async move {
                let keys = self.keys(question, steps, (good, bad));
                let known = self.remembered(&keys);
                let Some(from) = known.iter().position(Option::is_none) else {
                    return Ok(known.into_iter().flatten().collect());
                };
                let plans = self.plans(backend.as_ref(), question, steps, from).await?;
                let reads = try_join_all(plans.into_iter().map(|plan| {
                    let backend = Arc::clone(&backend);
                    async move {
                        let reader = Arc::new(ScoreReader::new(
                            plan.target,
                            plan.reads,
                            vec![good],
                            vec![bad],
                        ));
                        let request = GenerationRequest::new(Prompt::Tokens(plan.prompt))
                            .with_max_tokens(reader.tokens_needed())
                            .with_logits_processor(Arc::clone(&reader) as Arc<dyn LogitsProcessor>);
                        let outcome = backend.generate(request).await;
                        if let Some((id, vocabulary)) = reader.out_of_vocabulary() {
                            let key = if id == good { "good_id" } else { "bad_id" };
                            return Err(Error::StrategyConfig {
                                strategy: "prm",
                                reason: format!(
                                    "{key} = {id} is not a token of this model (its vocabulary \
                                     has {vocabulary}): every step would score {}; give an id \
                                     below {vocabulary}, or leave it out to tokenize the label",
                                    if key == "good_id" { 0 } else { 1 }
                                ),
                            });
                        }
                        match outcome {
                            Ok(_) => failed.read(Ok(reader.scores()), Vec::new),
                            // Steps past the model's context window cannot be read (a beam
                            // that filled it).
                            Err(Error::PromptTooLong { .. }) => Ok(reader.scores()),
                            // A decode that failed on its own call: its steps unread.
                            Err(e) => failed.read(Err(e), || reader.scores()),
                        }
                    }
                }))
                .await?;
                let scores: Vec<Option<f64>> = known
                    .into_iter()
                    .take(from)
                    .chain(reads.into_iter().flatten())
                    .collect();
                if scores.iter().any(Option::is_none) {
                    tracing::warn!(
                        read = scores.iter().flatten().count(),
                        steps = scores.len(),
                        "the PRM's decode ended before every step was read (a budget, or the \
                         context window, cut it); unread steps are left unscored"
                    );
                }
                let scores: Vec<f64> = scores.into_iter().map(|s| s.unwrap_or(f64::NAN)).collect();
                self.remember(&keys, &scores);
                Ok::<_, Error>(scores)
            }
        });
        let scores = try_join_all(jobs).await?;
        all_reads.finish("the PRM")?;
        Ok(scores)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use ponder_engine::config::{parse_str, Format};
    use ponder_engine::scripted::ScriptedBackend;
    use ponder_engine::{BackendKind, Budget};

    use super::*;

    #[tokio::test]
    async fn a_model_table_of_its_own_that_cannot_load_is_named_as_the_scorers() {
        let model = ModelConfig {
            api_key_env: Some("PONDER_TEST_SURELY_UNSET_KEY".into()),
            ..ModelConfig::openai(vec!["http://127.0.0.1:9".to_string()], "prm")
        };
        let config = PrmConfig {
            model: Some(PrmModel::Config(Box::new(model))),
            ..PrmConfig::default()
        };
        let cx = Context::new(
            Arc::new(ScriptedBackend::new(["+"])) as Arc<dyn Backend>,
            Budget::unlimited(),
        );
        let err = TokenPrm::new(config)
            .score(&cx, "q", &[vec!["a".to_string()]])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ponder_engine::Error::Config { path, message } if path == std::path::Path::new("scorer.model") && message.contains("PONDER_TEST_SURELY_UNSET_KEY")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn labels_the_model_reads_as_one_token_are_refused_before_any_read() {
        let scripted = Arc::new(ScriptedBackend::new(["+"]));
        let cx = Context::new(
            Arc::clone(&scripted) as Arc<dyn Backend>,
            Budget::unlimited(),
        );
        let config = PrmConfig {
            good_id: Some(43),
            bad: "+".into(),
            ..PrmConfig::default()
        };
        let err = TokenPrm::new(config)
            .score(&cx, "q", &[vec!["a".to_string()]])
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("labels `+` and `+` are the same token (id 43)"),
            "{err}"
        );
        assert!(scripted.requests().is_empty());
    }

    #[tokio::test]
    async fn a_step_past_the_context_window_is_left_unscored() {
        let steps = [vec!["3 + 4 = 7.".to_string(), "So 7 apples.".to_string()]];
        let score = |backend: Arc<ScriptedBackend>| {
            let steps = steps.clone();
            async move {
                let cx = Context::new(backend as Arc<dyn Backend>, Budget::unlimited());
                TokenPrm::new(PrmConfig::default())
                    .score(&cx, "Tom has 3 apples and buys 4. How many?", &steps)
                    .await
                    .unwrap()
            }
        };
        // Each step is read from a prompt cut after its tag: the second's is the longer.
        let measure = Arc::new(ScriptedBackend::new(["+", "+"]));
        score(Arc::clone(&measure)).await;
        let second = measure.prompt_tokens(&measure.requests()[1].prompt);
        // A window the first read fits and the second's prompt fills.
        let windowed = Arc::new(ScriptedBackend::new(["+"]).with_context(second));
        let scores = score(Arc::clone(&windowed)).await;
        assert_eq!(scores[0][0], 1.0);
        assert!(scores[0][1].is_nan(), "{scores:?}");
        assert_eq!(windowed.requests().len(), 1);
    }

    #[tokio::test]
    async fn a_backend_without_logits_processors_is_read_from_top_logprobs() {
        // The scripted backend has no logits processors; each reply's first character is its
        // only top log-probability (id: its byte, as its tokenizer gives "+" and "-").
        let scripted = Arc::new(ScriptedBackend::new(["+", "-", "-", "x", "+"]));
        let cx = Context::new(
            Arc::clone(&scripted) as Arc<dyn Backend>,
            Budget::unlimited(),
        );
        let prm = TokenPrm::new(PrmConfig::default());
        let candidates = [
            vec!["3 + 4 = 7.".to_string(), "So 7 apples.".to_string()],
            vec!["3 + 4 = 9.".to_string()],
            // Its reply's top log-probabilities hold neither label: unread, NaN.
            vec!["Hmm.".to_string()],
            // The tag in a step's own text: read at the step's tag all the same.
            vec!["Read ки here.".to_string()],
        ];
        let scores = prm
            .score(&cx, "Tom has 3 apples and buys 4. How many?", &candidates)
            .await
            .unwrap();
        assert_eq!(scores[..2], [vec![1.0, 0.0], vec![0.0]]);
        assert!(scores[2].len() == 1 && scores[2][0].is_nan(), "{scores:?}");
        assert_eq!(scores[3], [1.0]);
        // One token a step, its prompt cut right after the step's tag.
        let mut prompts = Vec::new();
        for request in scripted.requests() {
            assert_eq!(request.max_tokens, 1);
            assert!(request.top_logprobs.is_some());
            let Prompt::Tokens(ids) = &request.prompt else {
                panic!("{:?}", request.prompt);
            };
            // The scripted tokenizer's ids are the text's bytes.
            let bytes = ids.iter().map(|&id| u8::try_from(id).unwrap()).collect();
            prompts.push(String::from_utf8(bytes).unwrap());
        }
        let question = "Tom has 3 apples and buys 4. How many?";
        assert_eq!(
            prompts,
            [
                format!("{question} 3 + 4 = 7. ки"),
                format!("{question} 3 + 4 = 7. ки\nSo 7 apples. ки"),
                format!("{question} 3 + 4 = 9. ки"),
                format!("{question} Hmm. ки"),
                format!("{question} Read ки here. ки"),
            ]
        );
        // Every request was metered.
        assert_eq!(cx.meter().usage().calls, 5);
    }

    #[tokio::test]
    async fn rlhflow_turns_join_the_question_and_first_step_with_a_space() {
        let scripted = Arc::new(ScriptedBackend::new(["+", "-"]));
        let cx = Context::new(
            Arc::clone(&scripted) as Arc<dyn Backend>,
            Budget::unlimited(),
        );
        let prm = TokenPrm::new(PrmConfig {
            format: PrmFormat::Rlhflow,
            ..PrmConfig::default()
        });
        let steps = vec!["3 + 4 = 7.".to_string(), "So 7 apples.".to_string()];
        let scores = prm.score(&cx, "How many?", &[steps]).await.unwrap();
        assert_eq!(scores, vec![vec![1.0, 0.0]]);
        let prompts: Vec<String> = scripted
            .requests()
            .iter()
            .map(|r| ScriptedBackend::render(&r.prompt))
            .collect();
        // Each label is read where its assistant turn starts, after the user turn it judges.
        assert_eq!(
            prompts,
            [
                "user: How many? 3 + 4 = 7.\nassistant: ",
                "user: How many? 3 + 4 = 7.\nassistant: +\nuser: So 7 apples.\nassistant: ",
            ]
        );
    }

    #[test]
    fn the_model_is_a_source_or_a_table() {
        let parse = |text: &str| parse_str::<PrmConfig>(text, Format::Toml);
        let config = parse("model = \"org/math-shepherd-prm\"").unwrap();
        assert_eq!(
            config.model,
            Some(PrmModel::Source("org/math-shepherd-prm".into()))
        );
        let config = parse(
            "format = \"rlhflow\"\nmodel = { backend = \"openai\", base_url = \"http://127.0.0.1:8000\", model = \"prm\" }",
        )
        .unwrap();
        let Some(PrmModel::Config(model)) = &config.model else {
            panic!("{config:?}");
        };
        assert_eq!(model.backend, BackendKind::Openai);
        assert_eq!(model.model.as_deref(), Some("prm"));
        // Written back (a results file's recorded config) as it was read.
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["model"]["base_url"], "http://127.0.0.1:8000");
        let again: PrmConfig = serde_json::from_value(json).unwrap();
        assert_eq!(again, config);
        // A wrong key inside the table is named.
        let err = parse("model = { backend = \"openai\", base_ur = \"x\" }").unwrap_err();
        assert!(err.contains("base_ur"), "{err}");
        let err = parse("model = 3").unwrap_err();
        assert!(
            err.contains("hub id or local path, or a model table"),
            "{err}"
        );
    }
}
