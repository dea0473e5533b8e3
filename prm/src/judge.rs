//! [`LlmJudge`]: any chat model as a judge of answers or of steps.
//!
//! The score is the probability the judge puts on "Yes" against "No" for its first token, read
//! from the logits (a [`ScoreReader`]) where the backend takes logits processors, else from the
//! top log-probabilities. Never parsed from prose. Every judgement of a call is sent at once so
//! the backend batches them. The judge uses the context's (metered) backend. A judge whose
//! chat template opens a thinking block (a reasoning model) has it closed before its first
//! token ([`ponder_engine::turn::answer_opening`]): that token is read as the answer.

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::try_join_all;
use ponder_engine::{
    Backend, Context, GenerationRequest, LogitsProcessor, Message, Prompt, Result, Sampling,
    Scorer, TokenizeInput,
};
use serde::{Deserialize, Serialize};

use crate::capture::{good_probability, ScoreReader};
use crate::score_cache::ScoreCache;

/// What the judge looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JudgeMode {
    /// The whole solution, one score.
    #[default]
    Outcome,
    /// Every step: one score per prefix of the solution.
    Steps,
}

/// Config of [`LlmJudge`] (`kind = "llm_judge"`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeConfig {
    /// `outcome` or `steps`. Default `outcome`.
    #[serde(default)]
    pub mode: JudgeMode,
    /// The judge's prompt, with `{question}` and `{solution}` in it. Default: a yes/no question
    /// about correctness (about the last step in `steps` mode).
    #[serde(default)]
    pub prompt: Option<String>,
}

const OUTCOME_PROMPT: &str = "Question: {question}\n\nProposed solution:\n{solution}\n\nIs the proposed solution correct? Reply with Yes or No.";
const STEPS_PROMPT: &str = "Question: {question}\n\nPartial solution:\n{solution}\n\nIs the last step of the partial solution correct? Reply with Yes or No.";

/// A yes/no judge; see the module docs.
///
/// Judgements are remembered (by question and judged text, up to [`LlmJudge::CACHE_ENTRIES`]),
/// so a search that rescores a growing path pays only for its new step.
#[derive(Debug)]
pub struct LlmJudge {
    config: JudgeConfig,
    /// Joins a candidate's steps into the solution shown ([`LlmJudge::with_step_delimiter`]).
    step_delimiter: String,
    cache: ScoreCache,
    words: tokio::sync::OnceCell<(Vec<u32>, Vec<u32>)>,
    /// What the turn starts with ([`ponder_engine::turn::answer_opening`]).
    opening: tokio::sync::OnceCell<String>,
}

impl LlmJudge {
    /// Most judgements remembered; the memory is cleared when full.
    pub const CACHE_ENTRIES: usize = 65_536;

    /// A judge with `config`.
    pub fn new(config: JudgeConfig) -> Self {
        Self {
            config,
            step_delimiter: "\n\n".into(),
            cache: ScoreCache::new(Self::CACHE_ENTRIES),
            words: tokio::sync::OnceCell::new(),
            opening: tokio::sync::OnceCell::new(),
        }
    }

    /// Joins a candidate's steps with `delimiter` into the solution the judge is shown: the
    /// one a search split them at, so that the judge reads the text as it was written (the
    /// [`Scorer`] is given the steps alone). Default a blank line.
    pub fn with_step_delimiter(mut self, delimiter: impl Into<String>) -> Self {
        self.step_delimiter = delimiter.into();
        self
    }

    fn key(question: &str, solution: &str) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        question.hash(&mut h);
        solution.hash(&mut h);
        h.finish()
    }

    fn remembered(&self, key: u64) -> Option<f64> {
        self.cache.get(key)
    }

    fn remember(&self, key: u64, score: f64) {
        self.cache.insert(key, score);
    }

    fn prompt(&self, question: &str, solution: &str, opening: &str) -> Prompt {
        let template = self
            .config
            .prompt
            .as_deref()
            .unwrap_or(match self.config.mode {
                JudgeMode::Outcome => OUTCOME_PROMPT,
                JudgeMode::Steps => STEPS_PROMPT,
            });
        Prompt::Chat {
            messages: vec![Message::user(fill(
                template,
                question.trim(),
                solution.trim(),
            ))],
            assistant_prefix: opening.to_string(),
        }
    }

    /// The judgement, `None` where neither answer could be read.
    async fn judge(
        &self,
        backend: &Arc<dyn Backend>,
        words: &(Vec<u32>, Vec<u32>),
        prompt: Prompt,
    ) -> Result<Option<f64>> {
        read_choice_probability(backend, prompt, &words.0, &words.1).await
    }
}

impl Default for LlmJudge {
    fn default() -> Self {
        Self::new(JudgeConfig::default())
    }
}

/// `template` with `{question}` and `{solution}` filled in one pass: a question that itself
/// says `{solution}` (an f-string, a template) keeps it.
fn fill(template: &str, question: &str, solution: &str) -> String {
    let mut out = String::with_capacity(template.len() + question.len() + solution.len());
    let mut rest = template;
    while let Some(at) = rest.find('{') {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let (value, len) = if from.starts_with("{question}") {
            (question, "{question}".len())
        } else if from.starts_with("{solution}") {
            (solution, "{solution}".len())
        } else {
            ("{", 1)
        };
        out.push_str(value);
        rest = from.get(len..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

/// The probability the model puts on its first token being one of `yes` rather than one of `no`
/// (token ids, see [`first_tokens`]) after `prompt`: read from the logits where the backend takes
/// logits processors, else from its top log-probabilities (0.5 when neither shows up there: no
/// preference, as a comparison of two takes it; a scorer leaves such a read unscored).
///
/// # Errors
///
/// The backend's errors, and [`ponder_engine::Error::Unsupported`] when a backend without logits
/// processors replies with no top log-probabilities at all (a server that ignores
/// `top_logprobs`): every answer would then score the same.
pub async fn choice_probability(
    backend: &Arc<dyn Backend>,
    prompt: Prompt,
    yes: &[u32],
    no: &[u32],
) -> Result<f64> {
    Ok(read_choice_probability(backend, prompt, yes, no)
        .await?
        .unwrap_or(0.5))
}

/// How many one-token draws in a row may end inside a UTF-8 character (and so carry no
/// log-probabilities on llama-server) before the answer counts as unreadable.
const CUT_CHARACTER_DRAWS: usize = 3;

/// [`choice_probability`], `None` where neither answer could be read (not among the top
/// log-probabilities, or a decode that ended before its first token).
pub(crate) async fn read_choice_probability(
    backend: &Arc<dyn Backend>,
    prompt: Prompt,
    yes: &[u32],
    no: &[u32],
) -> Result<Option<f64>> {
    let caps = backend.capabilities();
    if caps.logits_processors {
        let reader = Arc::new(ScoreReader::new(
            Vec::new(),
            vec![0],
            yes.to_vec(),
            no.to_vec(),
        ));
        let request = GenerationRequest::new(prompt)
            .with_max_tokens(1)
            .with_logits_processor(Arc::clone(&reader) as Arc<dyn LogitsProcessor>);
        backend.generate(request).await?;
        return Ok(reader.scores().first().copied().flatten());
    }
    // As many as the backend returns (a server's `max_top_logprobs`, vLLM's `--max-logprobs`).
    let asked = caps.max_top_logprobs.max(1);
    let request = GenerationRequest::new(prompt)
        .with_max_tokens(1)
        .with_sampling(Sampling::with_temperature(1.0))
        .with_top_logprobs(asked);
    // llama-server sends no log-probabilities for a token that ends inside a UTF-8 character
    // (one byte of an emoji, say; the text is then "\u{FFFD}"), and a one-token decode that
    // samples one has nothing else to show. Rare for a question asked of its labels at
    // temperature 1: draw again (a new seed where the backend is seeded), a few times.
    let mut top = Vec::new();
    let mut cut_characters = 0;
    while cut_characters < CUT_CHARACTER_DRAWS {
        let generation = backend.generate(request.clone()).await?;
        let Some(choice) = generation.choices.into_iter().next() else {
            break;
        };
        match choice.logprobs.and_then(|l| l.into_iter().next()) {
            Some(first) if !first.top.is_empty() => {
                top = first.top;
                break;
            }
            None if choice.text.contains('\u{FFFD}') => cut_characters += 1,
            _ => break,
        }
    }
    if top.is_empty() && cut_characters == CUT_CHARACTER_DRAWS {
        tracing::debug!(
            backend = caps.backend,
            draws = CUT_CHARACTER_DRAWS,
            "every draw ended inside a UTF-8 character, which carries no log-probabilities"
        );
        return Ok(None);
    }
    // Without them every answer would score the same: an error, not a silent 0.5.
    if top.is_empty() {
        return Err(ponder_engine::Error::Unsupported {
            backend: caps.backend,
            operation: "replying with top log-probabilities (`top_logprobs`), which a judge \
                        or a PRM without logits processors needs to score",
        });
    }
    let mut logits = Vec::new();
    let mut ids = (Vec::new(), Vec::new());
    for t in &top {
        let slot = logits.len() as u32;
        logits.push(t.logprob);
        if yes.contains(&t.id) {
            ids.0.push(slot);
        } else if no.contains(&t.id) {
            ids.1.push(slot);
        }
    }
    // One answer listed and the other not, in a list as long as asked for: each spelling of
    // the other is at most as likely as the k-th most likely listed (a server may list the
    // sampled token past the k), not impossible. The side is read as one such token: its
    // spellings together could be up to that many times as likely (the read errs towards the
    // listed answer), but rarely are, one or two spellings holding nearly all of it. Bounded so, a "Yes" listed fifth behind "The" and "**" reads as
    // a lean (0.71 against the fifth's 0.02), not as 1.0, which would outrank a "Yes" at 0.9
    // beside a "No" at 0.08. (With one asked for, the one listed is the bound: every read
    // would be 0.5, so there the list is read as it stands.)
    if asked >= 2 && top.len() >= asked && ids.0.is_empty() != ids.1.is_empty() {
        let mut listed: Vec<f32> = top
            .iter()
            .map(|t| t.logprob)
            .filter(|l| l.is_finite())
            .collect();
        listed.sort_by(|a, b| b.total_cmp(a));
        if let Some(&least) = listed.get(asked - 1).or(listed.last()) {
            let slot = logits.len() as u32;
            logits.push(least);
            match ids.0.is_empty() {
                true => ids.0.push(slot),
                false => ids.1.push(slot),
            }
        }
    }
    let read = good_probability(&logits, &ids.0, &ids.1);
    if read.is_none() {
        let shown: Vec<&str> = top.iter().map(|t| t.token.as_str()).collect();
        tracing::debug!(
            backend = caps.backend,
            ?shown,
            "neither answer among the top log-probabilities"
        );
    }
    Ok(read)
}

/// Ids of the first token of each spelling of `words` on `backend`.
pub async fn first_tokens(backend: &dyn Backend, words: &[&str]) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    for word in words {
        if let Some(&first) = backend.tokenize(TokenizeInput::Piece(word)).await?.first() {
            if !ids.contains(&first) {
                ids.push(first);
            }
        }
    }
    Ok(ids)
}

/// First-token ids of two opposing answers (`Yes`/`No`, `A`/`B`), without the ids both share:
/// on a SentencePiece tokenizer `" Yes"` and `" No"` can both start with a bare `▁`, which would
/// count for both sides and pull every probability toward 0.5.
pub async fn opposing_tokens(
    backend: &dyn Backend,
    first: &[&str],
    second: &[&str],
) -> Result<(Vec<u32>, Vec<u32>)> {
    let mut a = first_tokens(backend, first).await?;
    let mut b = first_tokens(backend, second).await?;
    let shared: Vec<u32> = a.iter().copied().filter(|id| b.contains(id)).collect();
    a.retain(|id| !shared.contains(id));
    b.retain(|id| !shared.contains(id));
    if a.is_empty() || b.is_empty() {
        return Err(ponder_engine::Error::Unsupported {
            backend: backend.capabilities().backend,
            operation: "telling the two answers apart by their first token",
        });
    }
    Ok((a, b))
}

#[async_trait]
impl Scorer for LlmJudge {
    async fn score(
        &self,
        cx: &Context,
        question: &str,
        candidates: &[Vec<String>],
    ) -> Result<Vec<Vec<f64>>> {
        let backend = cx.backend();
        // The yes/no ids are read once: a judge instance serves one model.
        let words = self
            .words
            .get_or_try_init(|| async {
                opposing_tokens(
                    backend.as_ref(),
                    &["Yes", " Yes", "yes", " yes", "YES"],
                    &["No", " No", "no", " no", "NO"],
                )
                .await
            })
            .await?;
        let opening = self
            .opening
            .get_or_try_init(|| ponder_engine::turn::answer_opening(backend.as_ref()))
            .await?;
        // One judgement per (candidate, scored prefix), all in flight together.
        let mut jobs = Vec::new();
        for (c, steps) in candidates.iter().enumerate() {
            match self.config.mode {
                // Nothing written, nothing to judge: no score (as a PRM gives none).
                JudgeMode::Outcome if steps.is_empty() => {}
                JudgeMode::Outcome => jobs.push((c, steps.join(self.step_delimiter.as_str()))),
                JudgeMode::Steps => {
                    for i in 1..=steps.len() {
                        let prefix = steps.get(..i).unwrap_or_default();
                        jobs.push((c, prefix.join(self.step_delimiter.as_str())));
                    }
                }
            }
        }
        let failed = crate::failed_reads::FailedReads::default();
        let unread = std::sync::atomic::AtomicUsize::new(0);
        let scores = try_join_all(jobs.iter().map(|(_, solution)| {
            let key = Self::key(question, solution);
            let words = &*words;
            let failed = &failed;
            let unread = &unread;
            async move {
                // (A judgement remembered was read: it counts.)
                if let Some(score) = self.remembered(key) {
                    return failed.read(Ok(score), || f64::NAN);
                }
                let score = match self
                    .judge(backend, words, self.prompt(question, solution, opening))
                    .await
                {
                    Ok(Some(score)) => score,
                    // Neither answer readable (not among a server's top log-probabilities, or
                    // every draw ended inside a character): unscored, as the Scorer contract
                    // says, not a 0.5 that would pass for a verdict; not remembered (a cut
                    // character is chance).
                    Ok(None) => {
                        unread.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        return failed.read(Ok(f64::NAN), || f64::NAN);
                    }
                    // A solution too long to judge within the model's context window (a beam
                    // that filled it, read with the judge's own prompt around it): unread.
                    Err(ponder_engine::Error::PromptTooLong {
                        prompt_tokens,
                        context_tokens,
                        ..
                    }) => {
                        tracing::warn!(
                            prompt_tokens,
                            context_tokens,
                            "a solution too long to judge within the context window is left \
                             unscored"
                        );
                        return Ok(f64::NAN);
                    }
                    // One judgement's own failure leaves its candidate unscored (unless every
                    // judgement failed: see `finish`), not remembered.
                    Err(e) => return failed.read(Err(e), || f64::NAN),
                };
                self.remember(key, score);
                failed.read(Ok(score), || f64::NAN)
            }
        }))
        .await?;
        failed.finish("the judge")?;
        let unread = unread.into_inner();
        if unread > 0 {
            tracing::warn!(
                unread,
                judgements = jobs.len(),
                "neither Yes nor No readable in the judge's reply (not among a server's top \
                 log-probabilities: does the judge answer with another word first?); those \
                 candidates are left unscored"
            );
        }
        let mut out = vec![Vec::new(); candidates.len()];
        for ((c, _), score) in jobs.iter().zip(scores) {
            if let Some(v) = out.get_mut(*c) {
                v.push(score);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use ponder_engine::scripted::ScriptedBackend;
    use ponder_engine::{
        Budget, Capabilities, Choice, Error, FinishReason, Generation, TokenLogprob, TopLogprob,
        Usage,
    };

    use super::*;

    const YES: u32 = 7;
    const NO: u32 = 8;

    /// Replies with one token whose top log-probabilities are `top`, like an HTTP server.

    #[tokio::test]
    async fn a_reasoning_judge_answers_with_its_thinking_closed() {
        let scripted = Arc::new(ScriptedBackend::new(["Yes"]).with_opening("<think>\n"));
        let judge = LlmJudge::new(JudgeConfig::default());
        let cx = Context::new(
            Arc::clone(&scripted) as Arc<dyn Backend>,
            Budget::unlimited(),
        );
        let scores = judge
            .score(&cx, "What is 2 + 2?", &[vec!["4".into()]])
            .await
            .unwrap();
        assert_eq!(scores, [[1.0]]);
        let requests = scripted.requests();
        let prompt = ScriptedBackend::render(&requests[0].prompt);
        assert!(
            prompt.ends_with("Reply with Yes or No.\nassistant: <think>\n\n</think>\n\n"),
            "{prompt:?}"
        );
    }

    #[tokio::test]
    async fn a_judge_of_steps_shows_them_joined_by_the_searchs_delimiter() {
        let scripted = Arc::new(ScriptedBackend::new(["Yes", "No"]));
        let judge = LlmJudge::new(JudgeConfig {
            mode: JudgeMode::Steps,
            prompt: None,
        })
        .with_step_delimiter("\n");
        let cx = Context::new(
            Arc::clone(&scripted) as Arc<dyn Backend>,
            Budget::unlimited(),
        );
        let scores = judge
            .score(&cx, "What is 2 + 2?", &[vec!["2 + 2".into(), "= 4".into()]])
            .await
            .unwrap();
        assert_eq!(scores[0].len(), 2);
        let prompts: Vec<String> = scripted
            .requests()
            .iter()
            .map(|r| ScriptedBackend::render(&r.prompt))
            .collect();
        assert!(
            prompts
                .iter()
                .any(|p| p.contains("Partial solution:\n2 + 2\n= 4\n\nIs the last step")),
            "{prompts:?}"
        );
    }

    #[tokio::test]
    async fn a_solution_too_long_for_the_context_window_is_left_unscored() {
        // The judge's prompt around the long solution passes a 300-token window (a token a
        // byte); the short one fits.
        let scripted = Arc::new(ScriptedBackend::new(["Yes"]).with_context(300));
        let judge = LlmJudge::new(JudgeConfig::default());
        let cx = Context::new(
            Arc::clone(&scripted) as Arc<dyn Backend>,
            Budget::unlimited(),
        );
        let scores = judge
            .score(
                &cx,
                "What is 2 + 2?",
                &[vec!["4".repeat(400)], vec!["4".into()]],
            )
            .await
            .unwrap();
        assert!(scores[0][0].is_nan(), "{scores:?}");
        assert_eq!(scores[1], [1.0]);
        assert_eq!(scripted.requests().len(), 1, "the long one is not sent");
    }

    #[tokio::test]
    async fn a_judgement_that_fails_on_its_own_is_unscored_unless_every_one_failed() {
        use ponder_engine::scripted::Reply;
        let judge = LlmJudge::new(JudgeConfig::default());
        let solve = |replies: Vec<Reply>, solutions: &[&str]| {
            let scripted = Arc::new(ScriptedBackend::from_replies(replies));
            let cx = Context::new(scripted as Arc<dyn Backend>, Budget::unlimited());
            let candidates: Vec<Vec<String>> =
                solutions.iter().map(|s| vec![s.to_string()]).collect();
            let judge = &judge;
            async move { judge.score(&cx, "What is 2 + 2?", &candidates).await }
        };
        let scores = solve(
            vec![Reply::Text("Yes".into()), Reply::Fail("refused".into())],
            &["4", "5"],
        )
        .await
        .unwrap();
        assert_eq!(scores[0], [1.0]);
        assert!(scores[1][0].is_nan(), "{scores:?}");
        // Not remembered: judged again.
        let scores = solve(vec![Reply::Text("No".into())], &["5"]).await.unwrap();
        assert_eq!(scores, [[0.0]]);
        // Every judgement failing is the judge's error.
        let err = solve(
            vec![Reply::Fail("refused".into()), Reply::Fail("refused".into())],
            &["6", "7"],
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("refused"), "{err}");
    }

    #[tokio::test]
    async fn judgements_the_budget_refuses_are_unscored_and_those_made_kept() {
        // Room for one call of two: its verdict stands, the other is unread, and the meter
        // tells of the refusal. With room for none, the budget's stop is the error.
        let judge = LlmJudge::new(JudgeConfig::default());
        let scripted = Arc::new(ScriptedBackend::new(["Yes", "Yes"]));
        let cx = Context::new(
            scripted as Arc<dyn Backend>,
            Budget::unlimited().with_max_calls(1),
        );
        let candidates = [vec!["4".to_string()], vec!["5".to_string()]];
        let scores = judge
            .score(&cx, "What is 2 + 2?", &candidates)
            .await
            .unwrap();
        let read: Vec<f64> = scores
            .iter()
            .flatten()
            .copied()
            .filter(|s| !s.is_nan())
            .collect();
        assert_eq!(read, [1.0], "{scores:?}");
        assert_eq!(
            cx.meter().refused(),
            (1, Some(ponder_engine::Resource::Calls))
        );
        let scripted = Arc::new(ScriptedBackend::new(["Yes"]));
        let cx = Context::new(
            scripted as Arc<dyn Backend>,
            Budget::unlimited().with_max_calls(0),
        );
        let err = judge
            .score(&cx, "What is 6 + 1?", &candidates)
            .await
            .unwrap_err();
        assert!(err.is_budget(), "{err}");
    }

    #[tokio::test]
    async fn a_verdict_neither_yes_nor_no_is_unscored_and_asked_again() {
        // The scripted backend's top log-probability is its reply's first character: "M" is
        // neither answer (helper-124: it read 0.5, a verdict, and was remembered).
        let judge = LlmJudge::new(JudgeConfig::default());
        let solve = |reply: &'static str| {
            let scripted = Arc::new(ScriptedBackend::new([reply]));
            let cx = Context::new(scripted as Arc<dyn Backend>, Budget::unlimited());
            let judge = &judge;
            async move {
                judge
                    .score(&cx, "What is 2 + 2?", &[vec!["4".into()]])
                    .await
            }
        };
        let scores = solve("Maybe").await.unwrap();
        assert!(scores[0][0].is_nan(), "{scores:?}");
        assert_eq!(solve("Yes").await.unwrap(), [[1.0]]);
    }

    #[derive(Debug)]
    struct TopLogprobs {
        top: Vec<TopLogprob>,
    }

    impl TopLogprobs {
        fn backend(top: &[(u32, f32)]) -> Arc<dyn Backend> {
            let top = top
                .iter()
                .map(|&(id, p)| TopLogprob {
                    id,
                    token: format!("<{id}>"),
                    logprob: p.ln(),
                })
                .collect();
            Arc::new(Self { top })
        }
    }

    #[async_trait]
    impl Backend for TopLogprobs {
        async fn generate(&self, request: GenerationRequest) -> Result<Generation> {
            assert_eq!(request.top_logprobs, Some(5));
            let first = TokenLogprob {
                token: "x".into(),
                logprob: 0.0,
                top: self.top.clone(),
            };
            let choice = Choice {
                text: "x".into(),
                completion_tokens: 1,
                finish_reason: FinishReason::Length,
                stop_sequence: None,
                logprobs: Some(vec![first]),
            };
            Ok(Generation {
                choices: vec![choice],
                usage: Usage::default(),
                cut_by: None,
            })
        }

        fn capabilities(&self) -> Capabilities {
            Capabilities {
                backend: "top-logprobs",
                context_tokens: None,
                logits_processors: false,
                max_top_logprobs: 5,
                native_n: false,
                eos_token_ids: Vec::new(),
                tokenizer: false,
                ..Capabilities::default()
            }
        }
    }

    fn prompt() -> Prompt {
        Prompt::chat(vec![Message::user("Is 2 + 2 = 4? Reply with Yes or No.")])
    }

    #[tokio::test]
    async fn the_probability_is_read_from_the_top_logprobs() {
        let backend = TopLogprobs::backend(&[(YES, 0.6), (3, 0.15), (NO, 0.2)]);
        let p = choice_probability(&backend, prompt(), &[YES], &[NO])
            .await
            .unwrap();
        assert!((p - 0.75).abs() < 1e-6, "{p}");
        // Log-probabilities, but neither answer among them: an even score.
        let backend = TopLogprobs::backend(&[(3, 0.9), (4, 0.05)]);
        let p = choice_probability(&backend, prompt(), &[YES], &[NO])
            .await
            .unwrap();
        assert_eq!(p, 0.5);
        // One answer in a full list (five asked): the other is at most the least listed.
        let backend =
            TopLogprobs::backend(&[(3, 0.6), (4, 0.3), (YES, 0.05), (5, 0.03), (6, 0.02)]);
        let p = choice_probability(&backend, prompt(), &[YES], &[NO])
            .await
            .unwrap();
        assert!((p - 0.05 / 0.07).abs() < 1e-6, "{p}");
        let backend = TopLogprobs::backend(&[(3, 0.6), (4, 0.3), (NO, 0.05), (5, 0.03), (6, 0.02)]);
        let p = choice_probability(&backend, prompt(), &[YES], &[NO])
            .await
            .unwrap();
        assert!((p - 0.02 / 0.07).abs() < 1e-6, "{p}");
        // Past the five asked for, a sixth listed (the sampled token) is not the bound.
        let backend = TopLogprobs::backend(&[
            (3, 0.6),
            (4, 0.3),
            (YES, 0.05),
            (5, 0.03),
            (6, 0.02),
            (9, 0.001),
        ]);
        let p = choice_probability(&backend, prompt(), &[YES], &[NO])
            .await
            .unwrap();
        assert!((p - 0.05 / 0.07).abs() < 1e-6, "{p}");
        // A list shorter than asked holds every token there was: the other answer had none.
        let backend = TopLogprobs::backend(&[(YES, 0.7), (3, 0.3)]);
        let p = choice_probability(&backend, prompt(), &[YES], &[NO])
            .await
            .unwrap();
        assert_eq!(p, 1.0);
    }

    #[tokio::test]
    async fn an_empty_candidate_is_not_judged_in_outcome_mode() {
        let scripted = Arc::new(ScriptedBackend::new(["Yes"]));
        let cx = Context::new(
            Arc::clone(&scripted) as Arc<dyn Backend>,
            Budget::unlimited(),
        );
        let judge = LlmJudge::new(JudgeConfig::default());
        assert_eq!(judge.config.mode, JudgeMode::Outcome);
        let scored = judge.score(&cx, "What is 2 + 2?", &[vec![]]).await.unwrap();
        assert_eq!(scored, vec![Vec::<f64>::new()]);
        assert!(scripted.requests().is_empty());
    }

    #[test]
    fn the_prompt_is_filled_in_one_pass() {
        assert_eq!(
            fill(
                "Q: {question}\nA: {solution} {x}",
                "f\"{solution}\"?",
                "42 {question}"
            ),
            "Q: f\"{solution}\"?\nA: 42 {question} {x}"
        );
        assert_eq!(fill("{{question}}{", "q", "s"), "{q}{");
    }

    #[tokio::test]
    async fn a_draw_cut_inside_a_character_is_drawn_again() {
        use ponder_engine::scripted::Reply;
        let (yes, no) = (u32::from(b'Y'), u32::from(b'N'));
        // llama-server's reply for a token that ends inside a UTF-8 character: no
        // log-probabilities. The next draw reads.
        let scripted = Arc::new(ScriptedBackend::from_replies([
            Reply::Bare("\u{FFFD}".into()),
            Reply::Text("Y".into()),
        ]));
        let backend: Arc<dyn Backend> = Arc::clone(&scripted) as Arc<dyn Backend>;
        let p = choice_probability(&backend, prompt(), &[yes], &[no])
            .await
            .unwrap();
        assert_eq!(p, 1.0);
        assert_eq!(scripted.requests().len(), 2);

        // Three cut draws in a row: unreadable (0.5), not a backend without log-probabilities.
        let scripted = Arc::new(ScriptedBackend::from_replies(
            std::iter::repeat_with(|| Reply::Bare("\u{FFFD}".into())).take(4),
        ));
        let backend: Arc<dyn Backend> = Arc::clone(&scripted) as Arc<dyn Backend>;
        let p = choice_probability(&backend, prompt(), &[yes], &[no])
            .await
            .unwrap();
        assert_eq!(p, 0.5);
        assert_eq!(scripted.requests().len(), CUT_CHARACTER_DRAWS);

        // A whole token without log-probabilities is a server that sends none: no second draw.
        let scripted = Arc::new(ScriptedBackend::from_replies([
            Reply::Bare("Y".into()),
            Reply::Text("Y".into()),
        ]));
        let backend: Arc<dyn Backend> = Arc::clone(&scripted) as Arc<dyn Backend>;
        let error = choice_probability(&backend, prompt(), &[yes], &[no])
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Unsupported { .. }), "{error:?}");
        assert_eq!(scripted.requests().len(), 1);
    }

    #[tokio::test]
    async fn a_reply_without_top_logprobs_is_an_error() {
        // The scripted backend, like a server that ignores `top_logprobs`, sends none.
        let scripted = Arc::new(ScriptedBackend::new(["Yes"]).without_top_logprobs());
        let backend: Arc<dyn Backend> = Arc::clone(&scripted) as Arc<dyn Backend>;
        let error = choice_probability(&backend, prompt(), &[YES], &[NO])
            .await
            .unwrap_err();
        match &error {
            Error::Unsupported { backend, operation } => {
                assert_eq!(*backend, "scripted");
                assert!(operation.contains("top_logprobs"), "{operation}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(scripted.requests()[0].top_logprobs, Some(1));
        assert!(error.to_string().contains("judge"), "{error}");

        // And through the scorer: no candidate gets a made-up score.
        let scripted = Arc::new(ScriptedBackend::new(["Yes", "No"]).without_top_logprobs());
        let cx = Context::new(scripted as Arc<dyn Backend>, Budget::unlimited());
        let judge = LlmJudge::new(JudgeConfig::default());
        let candidates = [vec!["4".to_string()], vec!["5".to_string()]];
        let scored = judge.score(&cx, "What is 2 + 2?", &candidates).await;
        assert!(
            matches!(scored, Err(Error::Unsupported { operation, .. }) if operation.contains("top_logprobs")),
            "{scored:?}"
        );
    }
}
