//! [`BudgetForcing`] (s1, arXiv 2501.19393): control how long the model thinks.
//!
//! The strategy opens a thinking block itself (`<think>` after the chat template's assistant
//! prefix, so models without native thinking work too). Past `max_thinking_tokens` it forces the
//! end-of-thinking delimiter and the answer cue; when the model tries to end its thinking below
//! `min_thinking_tokens` (or while `max_waits` allows), it suppresses the delimiter and
//! end-of-sequence and appends a wait string ("Wait") instead.
//!
//! Two modes:
//! - `in_decode` (default where the backend takes logits processors): one request per sample, a
//!   [`ForcingProcessor`] steering the decode token by token. No prefix is ever resubmitted.
//! - `resubmit` (s1's own way; the fallback for backends without logits processors): stop at the
//!   delimiter, append the wait string, send the whole prefix again; then a last request for the
//!   answer. The prefix cache of the backend decides how much of that is recomputed.
//!
//! Concurrency: one sample is one sequential chain of requests; wrap it in `best_of_n` for many.
//! Cancellation: dropping the solve drops the in-flight request (see the backend's notes).

use std::num::NonZeroUsize;
use std::sync::Arc;

use async_trait::async_trait;
use ponder_engine::answer::{extract_answer, stated_answer};
use ponder_engine::{
    Backend, Candidate, Context, Error, EventKind, FinishReason, GenerationRequest,
    LogitsProcessor, Message, Problem, Prompt, Resource, Result, Sampling, Solution, StopReason,
    Strategy, TokenizeInput,
};
use serde::{Deserialize, Serialize};

use crate::prompt::ANSWER_CUE;
use crate::switch_penalty::SwitchPenaltyConfig;
use ponder_engine::turn::{still_to_write, template_tail};

mod processor;
#[cfg(test)]
mod tests;

pub use processor::{ForcingProcessor, ForcingTokens};

/// One wait string, or several used in turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, expecting = "a string or a list of strings")]
pub enum WaitStrings {
    /// Always this string.
    One(String),
    /// These strings in rotation.
    Many(Vec<String>),
}

impl WaitStrings {
    /// The strings, in order.
    pub fn as_list(&self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s.clone()],
            Self::Many(list) => list.clone(),
        }
    }
}

impl Default for WaitStrings {
    fn default() -> Self {
        Self::One("Wait".into())
    }
}

/// How the budget is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForcingMode {
    /// A logits processor inside one decode; falls back to `resubmit` on backends without
    /// logits processors.
    #[default]
    InDecode,
    /// Stop at the delimiter and resubmit the prefix with the wait string appended.
    Resubmit,
}

/// Config of [`BudgetForcing`] (`kind = "budget_forcing"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetForcingConfig {
    /// Opens the thinking block. Default `<think>`.
    #[serde(default = "default_think_open")]
    pub think_open: String,
    /// Ends the thinking block. Default `</think>`.
    #[serde(default = "default_think_close")]
    pub think_close: String,
    /// Thinking shorter than this is extended with the wait string. Default 0.
    #[serde(default)]
    pub min_thinking_tokens: usize,
    /// Thinking is cut here: the delimiter and the answer cue are forced. Default 1024.
    #[serde(default = "default_max_thinking_tokens")]
    pub max_thinking_tokens: usize,
    /// Appended where the model tries to stop thinking too early; a list is used in rotation
    /// (s1's ablations: "Hmm", "Alternatively"). Default "Wait".
    #[serde(default)]
    pub wait: WaitStrings,
    /// Waits in all up to which the end of thinking is ignored even past the minimum (s1's
    /// "ignore k times"): past the minimum, a wait is said only while fewer than `max_waits`
    /// were said, those said below the minimum included (below it, waits are always said, and
    /// `details.waits` reports them all). Default 0.
    #[serde(default)]
    pub max_waits: usize,
    /// Written after the thinking; the answer follows it. Default "Final Answer:".
    #[serde(default = "default_answer_cue")]
    pub answer_cue: String,
    /// Most tokens for the answer after the cue. Default 64.
    #[serde(default = "default_max_answer_tokens")]
    pub max_answer_tokens: NonZeroUsize,
    /// `in_decode` or `resubmit`. Default `in_decode`.
    #[serde(default)]
    pub mode: ForcingMode,
    /// Sampling temperature; 0 is greedy. Default 0.
    #[serde(default)]
    pub temperature: f64,
    /// Nucleus filter in (0, 1]. Default none.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// TIP's thought-switching penalty (arXiv 2501.18585) on "Alternatively" and the like early
    /// in the thinking; `in_decode` only. Default off.
    #[serde(default)]
    pub switch_penalty: Option<SwitchPenaltyConfig>,
}

fn default_think_open() -> String {
    "<think>".into()
}
fn default_think_close() -> String {
    "</think>".into()
}
fn default_max_thinking_tokens() -> usize {
    1024
}
fn default_answer_cue() -> String {
    ANSWER_CUE.into()
}
fn default_max_answer_tokens() -> NonZeroUsize {
    NonZeroUsize::MIN.saturating_add(63)
}

impl Default for BudgetForcingConfig {
    fn default() -> Self {
        Self {
            think_open: default_think_open(),
            think_close: default_think_close(),
            min_thinking_tokens: 0,
            max_thinking_tokens: default_max_thinking_tokens(),
            wait: WaitStrings::default(),
            max_waits: 0,
            answer_cue: default_answer_cue(),
            max_answer_tokens: default_max_answer_tokens(),
            mode: ForcingMode::default(),
            temperature: 0.0,
            top_p: None,
            switch_penalty: None,
        }
    }
}

impl BudgetForcingConfig {
    /// Checks the values that serde cannot.
    pub fn validate(&self) -> Result<()> {
        if self.min_thinking_tokens > self.max_thinking_tokens {
            return Err(Error::config_value(
                "min_thinking_tokens",
                format!(
                    "min_thinking_tokens ({}) is above max_thinking_tokens ({})",
                    self.min_thinking_tokens, self.max_thinking_tokens
                ),
            ));
        }
        for (key, value) in [
            ("think_open", &self.think_open),
            ("think_close", &self.think_close),
            ("answer_cue", &self.answer_cue),
        ] {
            if value.trim().is_empty() {
                return Err(Error::config_value(key, format!("{key} must not be empty")));
            }
        }
        // One would read as the other: every opening a close.
        if self.think_open.trim() == self.think_close.trim() {
            return Err(Error::config_value(
                "think_close",
                format!(
                    "think_close {:?} is think_open too: the thinking could not be told closed",
                    self.think_close
                ),
            ));
        }
        let waits = self.wait.as_list();
        if waits.is_empty() || waits.iter().any(|w| w.trim().is_empty()) {
            return Err(Error::config_value(
                "wait",
                "wait must be a non-empty string or list of non-empty strings",
            ));
        }
        if let Some(penalty) = &self.switch_penalty {
            penalty.validate().map_err(|e| e.under("switch_penalty"))?;
            if self.mode == ForcingMode::Resubmit {
                return Err(Error::config_value(
                    "switch_penalty",
                    "switch_penalty works inside the decode: it needs mode = \"in_decode\"",
                ));
            }
        }
        crate::config::check_sampling(self.temperature, self.top_p)
    }
}

/// Per-sample details, reported as the solution's `details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForcingDetails {
    /// Tokens generated inside the thinking block (forced wait tokens included).
    pub thinking_tokens: usize,
    /// Wait strings inserted.
    pub waits: usize,
    /// Whether the cap forced the end of thinking.
    pub forced_end: bool,
    /// Tokens generated after the answer cue: up to `max_answer_tokens`, and one more where
    /// the cap forced the end-of-sequence token (in decode).
    pub answer_tokens: usize,
    /// Prompt tokens sent again because of resubmissions (0 in decode).
    pub resubmitted_prompt_tokens: u64,
    /// The mode that ran.
    pub mode: ForcingMode,
    /// In decode: the thinking cap a budget (or the room the context window left) imposed,
    /// where it granted fewer tokens than thinking up to `max_thinking_tokens` and answering
    /// needed (the stop reason says when it was a budget's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_thinking_cap: Option<usize>,
    /// Whether the model's chat template opened the thinking block itself (reasoning models'
    /// templates end with `<think>`), so that ponder did not open it again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub opened_by_template: bool,
    /// The model ended its thinking at once after each of two waits running (`MAX_IDLE_WAITS`):
    /// no more were said (more would only repeat the wait string, and in `resubmit` send the
    /// whole prefix again each time), though the minimum may be unmet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub waits_ignored: bool,
}

/// Waits running that the model may answer by ending its thinking at once before no more are
/// said ([`ForcingDetails::waits_ignored`]).
pub const MAX_IDLE_WAITS: usize = 2;

/// What may come before the delimiter and merge with its first piece (see
/// [`BudgetForcing::tokens`]).
const CLOSE_LEADS: [&str; 18] = [
    " ", "\n", "\n\n", ".", "!", "?", ",", ":", ";", ")", "]", "}", "\"", "'", "*", "`", "$", ">",
];

/// What may come after the delimiter and merge with its last piece.
const CLOSE_TRAILS: [&str; 5] = [" ", "\n", "\n\n", "\n\n\n", "\r\n"];

/// Whitespace a model writes that is a token of its own, besides the leads'.
const MORE_BLANKS: [&str; 5] = ["\n\n\n", "\n\n\n\n", " \n", " \n\n", "\r\n"];

/// What else ends a line merged with its newline, besides the leads (a bold heading's `**`,
/// a parenthesis after a full stop, display math).
const LINE_LEADS: [&str; 3] = ["**", ".)", "$$"];

/// What a line end is written as after a lead (`.\n`, `.\n\n`, `.\n\n\n`).
const LINE_BREAKS: [&str; 3] = ["\n", "\n\n", "\n\n\n"];

/// Budget forcing over one sample; see the module docs.
#[derive(Debug, Clone)]
pub struct BudgetForcing {
    config: BudgetForcingConfig,
}

impl BudgetForcing {
    /// A budget-forcing strategy with `config`, validated ([`BudgetForcingConfig::validate`]).
    pub fn new(config: BudgetForcingConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The chat messages each sample of `problem` is asked with (the assistant turn then opens
    /// the thinking block, unless the chat template does).
    pub fn messages(&self, problem: &Problem) -> Vec<Message> {
        let c = &self.config;
        vec![Message::user(format!(
            "{}\n\nThink it through step by step between {} and {}. Then give the final answer on its own line, in the form \"{} <answer>\".",
            problem.question.trim(),
            c.think_open,
            c.think_close,
            c.answer_cue
        ))]
    }

    fn sampling(&self) -> Sampling {
        Sampling {
            temperature: self.config.temperature,
            top_p: self.config.top_p,
            top_k: None,
            seed: None,
        }
    }

    /// What ponder writes to open the thinking block: `think_open`, less what the chat template
    /// already wrote (DeepSeek-R1's distills and QwQ end their generation prompt with
    /// `<think>\n`: opening it again would show the model a block opened twice); see
    /// [`still_to_write`].
    async fn opening(&self, backend: &dyn Backend, messages: &[Message]) -> Result<&str> {
        let tail = template_tail(backend, messages).await?;
        Ok(still_to_write(&tail, &self.config.think_open))
    }

    /// The pieces [`Self::tokens`] asks the tokenizer, in the order it reads them: the
    /// delimiter; each lead before it and the lead alone; the delimiter with each trail; the
    /// cue on its line; each wait after a space; each wait on a line of its own; each lead that
    /// is not whitespace, and more that end lines, before one, two and three newlines; more
    /// whitespace.
    pub fn pieces(&self) -> Vec<String> {
        let c = &self.config;
        let mut pieces = vec![c.think_close.clone()];
        for lead in CLOSE_LEADS {
            pieces.push(format!("{lead}{}", c.think_close));
            pieces.push(lead.to_string());
        }
        pieces.extend(
            CLOSE_TRAILS
                .iter()
                .map(|trail| format!("{}{trail}", c.think_close)),
        );
        pieces.push(format!("\n{}", c.answer_cue));
        pieces.extend(c.wait.as_list().iter().map(|wait| format!(" {wait}")));
        pieces.extend(c.wait.as_list().iter().map(|wait| format!("\n{wait}")));
        for lead in line_leads() {
            pieces.extend(LINE_BREAKS.iter().map(|br| format!("{lead}{br}")));
        }
        pieces.extend(MORE_BLANKS.iter().map(|blank| blank.to_string()));
        pieces
    }

    /// Token ids of the delimiter, cue and waits on `backend`.
    pub async fn tokens(&self, backend: &dyn Backend) -> Result<ForcingTokens> {
        let waits = self.config.wait.as_list().len();
        let pieces = self.pieces();
        // Each as it is written after the thinking's text (SentencePiece tokenizes a piece
        // alone with a space before it). Asked all at once: in process each is a round trip
        // to the engine, which answers between decode steps (one step each, asked one after
        // another), and backends keep what they were asked.
        let ids = futures::future::try_join_all(
            pieces
                .iter()
                .map(|piece| ponder_engine::turn::piece_after_text(backend, piece)),
        )
        .await?;
        let mut ids = ids.into_iter();
        // Read in the order asked: a piece read that was not asked, or one asked and not
        // read, is a slip between `pieces` and this.
        let mut read = 0usize;
        let mut next = || {
            read += 1;
            ids.next().unwrap_or_default()
        };
        let close = next();
        // BPE merges the delimiter's first piece with what comes before it: Qwen2.5 writes
        // "market.</think>" as ".</" "think" ">", so a model that closes its own thinking after
        // a full stop would go unseen (and get a second delimiter forced after it). Each lead
        // that merges gives a variant that starts with the merged token.
        let mut close_variants = Vec::new();
        let mut leads: Vec<(u32, Vec<u32>)> = Vec::new();
        // Whitespace tokens (the leads that are whitespace alone), and a newline's.
        let mut blanks: Vec<u32> = Vec::new();
        let mut newline: Vec<u32> = Vec::new();
        for lead in CLOSE_LEADS {
            let with_lead = next();
            let lead_ids = next();
            if lead.trim().is_empty() {
                for &id in &lead_ids {
                    if !blanks.contains(&id) {
                        blanks.push(id);
                    }
                }
                if lead == "\n" {
                    newline.clone_from(&lead_ids);
                }
            }
            // Where the lead stays a token of its own, the rest is the plain delimiter again;
            // so where it ends in the plain delimiter after tokens of its own that differ from
            // the lead's alone (GPT-2's pre-tokenizer writes "\n\n" alone as one token and
            // before "</" as two): those are no start of the delimiter.
            let variant = match with_lead.strip_prefix(lead_ids.as_slice()) {
                Some(rest) => rest.to_vec(),
                None if with_lead.ends_with(&close) => close.clone(),
                None => {
                    // Its first token holds the lead.
                    if let Some(&start) = with_lead.first() {
                        if start != close.first().copied().unwrap_or(u32::MAX)
                            && !leads.iter().any(|(s, _)| *s == start)
                        {
                            leads.push((start, lead_ids.clone()));
                        }
                    }
                    with_lead
                }
            };
            if variant != close && !close_variants.contains(&variant) {
                close_variants.push(variant);
            }
        }
        // And its last piece with what follows it: Qwen2.5 writes "</think>\n\n" as "</"
        // "think" ">\n\n", so a model that closes its thinking and starts a new paragraph would
        // go unseen (its answer counted as thinking, its end of sequence taken for one that
        // skipped the delimiter). Each trail that merges gives every form another last token.
        let with_trails: Vec<Vec<u32>> = CLOSE_TRAILS.iter().map(|_| next()).collect();
        if let Some((last, head)) = close.split_last() {
            let mut lasts = Vec::new();
            for with_trail in with_trails {
                let merged = with_trail
                    .strip_prefix(head)
                    .and_then(|rest| rest.first())
                    .filter(|&merged| merged != last);
                if let Some(&merged) = merged {
                    if !lasts.contains(&merged) {
                        lasts.push(merged);
                    }
                }
            }
            let forms: Vec<Vec<u32>> = std::iter::once(close.clone())
                .chain(close_variants.iter().cloned())
                .filter(|form| form.last() == Some(last))
                .collect();
            for form in forms {
                for &merged in &lasts {
                    let mut variant = form.clone();
                    if let Some(end) = variant.last_mut() {
                        *end = merged;
                    }
                    if !close_variants.contains(&variant) {
                        close_variants.push(variant);
                    }
                }
            }
        }
        let cue = next();
        let waits: Vec<Vec<u32>> = (0..waits).map(|_| next()).collect();
        // After whitespace a wait is written as it starts a line: its ids after a newline,
        // the newline's left out (none where they merge: the spaced form serves).
        let bare_waits = waits
            .iter()
            .map(|_| {
                let on_line = next();
                bare_on_line(&newline, &on_line).unwrap_or_default()
            })
            .collect();
        // Punctuation merged with the newline after it (Qwen2.5's ".\n\n"): a wait after it
        // starts a line too.
        let mut line_ends = Vec::new();
        for _ in line_leads() {
            for _ in LINE_BREAKS {
                if let [merged] = next().as_slice() {
                    if !line_ends.contains(merged) {
                        line_ends.push(*merged);
                    }
                }
            }
        }
        for _ in MORE_BLANKS {
            for id in next() {
                if !blanks.contains(&id) {
                    blanks.push(id);
                }
            }
        }
        if read != pieces.len() {
            return Err(Error::Inference {
                message: format!(
                    "budget forcing read {read} tokenizer pieces of the {} it asked for (a slip \
                     in ponder: please report it)",
                    pieces.len()
                ),
            });
        }
        Ok(ForcingTokens {
            close,
            close_variants,
            leads,
            cue,
            waits,
            bare_waits,
            blanks,
            line_ends,
            eos: backend.capabilities().eos_token_ids,
        })
    }

    /// Warns (once a process) where waits are owed and the delimiter is more than a token on
    /// this model: its first token (Qwen2.5's "</" of "</think>") starts other text too, a
    /// closing tag, and the decode cannot tell which the model meant when it picks it.
    fn warn_of_a_shared_start(&self, tokens: &ForcingTokens) {
        static WARNED: std::sync::Once = std::sync::Once::new();
        let c = &self.config;
        if tokens.close.len() > 1 && (c.min_thinking_tokens > 0 || c.max_waits > 0) {
            WARNED.call_once(|| {
                tracing::warn!(
                    think_close = %c.think_close,
                    tokens = tokens.close.len(),
                    "budget forcing in the decode: the end of thinking is several tokens on \
                     this model, and while a wait is owed its first is read as the model ending \
                     its thinking wherever it is written (\"</\" of a closing tag, say); \
                     mode = \"resubmit\" matches the whole delimiter"
                );
            });
        }
    }

    async fn in_decode(&self, problem: &Problem, cx: &Context) -> Result<Outcome> {
        let backend = cx.backend();
        let tokens = self.tokens(backend.as_ref()).await?;
        self.warn_of_a_shared_start(&tokens);
        // Where a sampled decode would have ended, drawn from the solve's seed where it is
        // seeded (the same solve draws the same), else afresh.
        let seed = cx.seed().map_or_else(
            || fastrand::u64(..),
            |base| ponder_engine::seed_for(base, "budget forcing"),
        );
        let processor = Arc::new(ForcingProcessor::new(tokens.clone(), &self.config, seed));
        let c = &self.config;
        let messages = self.messages(problem);
        let open = self.opening(backend.as_ref(), &messages).await?;
        // Thinking, waits included, is capped by max_thinking_tokens; then the delimiter, the
        // cue and the answer.
        let max_tokens = c
            .max_thinking_tokens
            .saturating_add(processor.after_thinking());
        let mut request = GenerationRequest::new(Prompt::Chat {
            messages,
            assistant_prefix: open.to_string(),
        })
        .with_max_tokens(max_tokens)
        .with_sampling(self.sampling());
        // The penalty first: a token the forcing processor forces stays forced.
        if let Some(penalty) = &c.switch_penalty {
            let penalty = penalty.processor(backend.as_ref()).await?;
            request = request.with_logits_processor(Arc::new(penalty));
        }
        let request =
            request.with_logits_processor(Arc::clone(&processor) as Arc<dyn LogitsProcessor>);
        let generation = backend.generate(request).await?;
        let choice = generation.into_first_choice()?;
        let mut details = processor.details();
        details.mode = ForcingMode::InDecode;
        // The budget granted fewer tokens than max_thinking_tokens and answering need, and
        // the thinking ran to the lower cap: the budget ended it, whatever the answer.
        let budget_stop = if details.forced_end && details.budget_thinking_cap.is_some() {
            cx.meter().cut_by()
        } else {
            None
        };
        details.opened_by_template = open.len() < c.think_open.len();
        // The processor does not see the last token (it is sampled after its final call): when
        // it saw no delimiter, every completion token was thinking, less a delimiter the last
        // token completed.
        if !processor.saw_thinking_close() {
            details.thinking_tokens = if choice.text.contains(&c.think_close) {
                choice.completion_tokens.saturating_sub(tokens.close.len())
            } else {
                choice.completion_tokens
            };
        }
        let (thinking, answer) = split(&choice.text, &c.think_close, &c.answer_cue);
        // After the delimiter (the form the model wrote, where seen) and the cue.
        let thinking_end = processor
            .thinking_end()
            .unwrap_or(details.thinking_tokens + tokens.close.len());
        details.answer_tokens = choice
            .completion_tokens
            .saturating_sub(thinking_end + tokens.cue.len());
        Ok(Outcome {
            text: choice.text.clone(),
            thinking,
            answer,
            details,
            tokens: choice.completion_tokens as u64,
            finish: choice.finish_reason,
            budget_stop,
        })
    }

    async fn resubmit(&self, problem: &Problem, cx: &Context) -> Result<Outcome> {
        let backend = cx.backend();
        let c = &self.config;
        let messages = self.messages(problem);
        let open = self.opening(backend.as_ref(), &messages).await?;
        let waits = c.wait.as_list();
        let mut details = ForcingDetails {
            mode: ForcingMode::Resubmit,
            opened_by_template: open.len() < c.think_open.len(),
            ..ForcingDetails::default()
        };
        let mut thinking = String::new();
        let mut tokens = 0u64;
        // Every call after the first sends its prompt again (resubmits it).
        let mut sent_before = false;
        // The wait last appended (the thinking's length before it, its tokens): the next call
        // continues after it, or is refused and it is taken back.
        let mut pending_wait: Option<(usize, usize)> = None;
        // The delimiter's length in tokens, once a call stopped at it.
        let mut close_tokens: Option<usize> = None;
        // Waits running the model answered by ending at once.
        let mut idle_waits = 0;
        // Thinking that would fill the context window leaves no room to answer: where the
        // window and the prompt's length are known, it ends in time for the delimiter, the cue
        // (at most a token a byte) and max_answer_tokens.
        let answer_room = (c.think_close.len() + 1 + c.answer_cue.len())
            .saturating_add(c.max_answer_tokens.get());
        // A budget of all tokens counts every call's prompt: the answer's call sends the
        // question and the thinking again.
        let counts_prompts = cx.remaining(Resource::Tokens).is_some();
        let context = backend.capabilities().context_tokens;
        let prompt_len = if context.is_some() || counts_prompts {
            let prompt = Prompt::Chat {
                messages: messages.clone(),
                assistant_prefix: open.to_string(),
            };
            // Without its length (no tokenizer, a failed request) the meter still shortens
            // each call to the window and the budget; only the answer's room is not kept.
            match backend.tokenize(TokenizeInput::Prompt(&prompt)).await {
                Ok(ids) => Some(ids.len()),
                Err(e) => {
                    tracing::debug!(error = %e, "no prompt length: thinking keeps no room to answer");
                    None
                }
            }
        } else {
            None
        };
        let room_to_think = context
            .zip(prompt_len)
            .map(|(context, prompt)| context.saturating_sub(prompt + answer_room));
        let cap = room_to_think.map_or(c.max_thinking_tokens, |room| {
            room.min(c.max_thinking_tokens)
        });
        // The thinking the budget leaves room for after `thought` tokens of it, keeping the
        // answer's call what it costs (as in decode, where the processor is told the grant):
        // its completion, and under a budget of all tokens its prompt too, which grows by
        // each token thought (so a token thought costs two).
        // With the budget whose room it is, read once (which budget it was is said should it
        // cut the thinking).
        let budget_room = |thought: usize| -> Option<(usize, ponder_engine::BudgetCut)> {
            let left = |resource| {
                let cut = cx.budget_cut(resource);
                cut.left()
                    .map(|left| (usize::try_from(left).unwrap_or(usize::MAX), cut))
            };
            let by_all = left(Resource::Tokens).map(|(left, cut)| {
                let asked = prompt_len.unwrap_or(0) + thought;
                (left.saturating_sub(2 * asked + answer_room) / 2, cut)
            });
            let by_completion = left(Resource::CompletionTokens).map(|(left, cut)| {
                let room = left.saturating_sub(c.max_answer_tokens.get());
                (room, cut)
            });
            by_all
                .into_iter()
                .chain(by_completion)
                .min_by_key(|(room, _)| *room)
        };
        // The budget that ended the thinking before the cap, if one did: the stop, as in
        // decode (whatever the answer).
        // With the budget that bound it, taken as the call was planned.
        let mut budget_stop: Option<ponder_engine::BudgetCut>;
        // The budget that refused a wait the minimum asked for, if one did.
        let mut short_of_minimum: Option<ponder_engine::BudgetCut> = None;
        loop {
            let to_cap = cap.saturating_sub(details.thinking_tokens);
            let left = match budget_room(details.thinking_tokens) {
                Some((room, cut)) if room < to_cap => {
                    details.budget_thinking_cap = Some(details.thinking_tokens + room);
                    budget_stop = Some(cut);
                    room
                }
                _ => {
                    budget_stop = None;
                    to_cap
                }
            };
            if left == 0 {
                details.forced_end = true;
                break;
            }
            let request = GenerationRequest::new(Prompt::Chat {
                messages: messages.clone(),
                assistant_prefix: format!("{open}{thinking}"),
            })
            .with_max_tokens(left)
            .with_stop(c.think_close.clone())
            .with_sampling(self.sampling());
            let generation = match backend.generate(request).await {
                Ok(generation) => generation,
                // Out of budget after some thinking, or of room in the context window (its
                // length unknown here, so the cap did not keep it): keep what was paid for,
                // less a wait the model never continued after.
                Err(e @ (Error::BudgetExhausted { .. } | Error::PromptTooLong { .. }))
                    if !thinking.is_empty() =>
                {
                    if let Some((before, wait_tokens)) = pending_wait {
                        thinking.truncate(before);
                        details.waits -= 1;
                        details.thinking_tokens -= wait_tokens;
                    }
                    details.forced_end = true;
                    let resource = match e {
                        Error::BudgetExhausted { resource } => Some(resource),
                        _ => None,
                    };
                    return Ok(Outcome::thinking_only(
                        open, thinking, details, tokens, resource,
                    ));
                }
                Err(e) => return Err(e),
            };
            if sent_before {
                details.resubmitted_prompt_tokens += generation.usage.prompt_tokens;
            }
            sent_before = true;
            let choice = generation.into_first_choice()?;
            // The delimiter that stopped it was generated and is paid for, but is not
            // thinking (in decode it is not counted as thinking either).
            let mut thought = choice.completion_tokens;
            if choice.stop_sequence.as_deref() == Some(c.think_close.as_str()) {
                if close_tokens.is_none() {
                    let piece = ponder_engine::turn::piece_after_text(backend, &c.think_close);
                    close_tokens = Some(match piece.await {
                        Ok(ids) => ids.len(),
                        // A server without a tokenizer endpoint: about four bytes a token.
                        Err(Error::Unsupported { .. }) => c.think_close.len().div_ceil(4),
                        Err(e) => return Err(e),
                    });
                }
                thought = thought.saturating_sub(close_tokens.unwrap_or(0));
            }
            tokens += choice.completion_tokens as u64;
            // Nothing written before the delimiter (the tokens counted may still hold an
            // end-of-sequence token the backend generated after it: mistral.rs's, vLLM's).
            let wrote_nothing = choice.text.trim().is_empty();
            let mut written = choice.text.as_str();
            let cut = choice.finish_reason == FinishReason::Length;
            if cut {
                // Cut inside the delimiter the model had begun ("</th"): the forced one
                // follows, so the part written goes (its tokens were spent all the same).
                // (Two characters at least: a lone "<" may be the thinking's own.)
                let ends: Vec<usize> = c.think_close.char_indices().map(|(at, _)| at).collect();
                let begun = ends
                    .iter()
                    .skip(2)
                    .rev()
                    .filter_map(|&n| c.think_close.get(..n))
                    .find(|part| written.ends_with(part));
                if let Some(part) = begun {
                    written = &written[..written.len() - part.len()];
                }
            }
            // The thinking is the tokens of the text kept, as decode counts it: not an
            // end-of-sequence token the backend counted after the delimiter or in its place
            // (mistral.rs, vLLM), nor a delimiter begun and cut. (No more than the call's count
            // less the delimiter's; that count where the backend cannot tokenize.)
            let exact = cut && written.len() == choice.text.len();
            if written.is_empty() {
                thought = 0;
            } else if !exact {
                // Best effort: the thinking was paid for, and the call's own count stands
                // where the text cannot be tokenized.
                if let Ok(ids) = ponder_engine::turn::piece_after_text(backend, written).await {
                    thought = thought.min(ids.len());
                }
            }
            details.thinking_tokens += thought;
            thinking.push_str(written);
            if cut {
                details.forced_end = true;
                break;
            }
            let may_wait =
                details.thinking_tokens < c.min_thinking_tokens || details.waits < c.max_waits;
            if !may_wait {
                break;
            }
            // Ended at once after the wait: after MAX_IDLE_WAITS of those running, no more.
            if pending_wait.is_some() && wrote_nothing {
                idle_waits += 1;
                if idle_waits >= MAX_IDLE_WAITS {
                    details.waits_ignored = true;
                    break;
                }
            } else {
                idle_waits = 0;
            }
            let wait = waits
                .get(details.waits % waits.len().max(1))
                .cloned()
                .unwrap_or_default();
            // The wait string counts as thinking, as in decode. After whitespace it is
            // written without a space of its own, as s1 appends it.
            let after_blank = thinking.ends_with(char::is_whitespace);
            let piece = if after_blank {
                wait.clone()
            } else {
                format!(" {wait}")
            };
            let wait_tokens = match wait_ids(backend, &wait, after_blank).await {
                Ok(ids) => ids.len(),
                // A server without a tokenizer endpoint: about four bytes a token.
                Err(Error::Unsupported { .. }) => piece.len().div_ceil(4),
                Err(e) => return Err(e),
            };
            // As in decode: a wait that would leave no room to think after it (within the cap,
            // the room the context window leaves, or the budget's) is not said.
            let after = details.thinking_tokens + wait_tokens;
            let refused_by = budget_room(after)
                .filter(|&(room, _)| room == 0)
                .map(|(_, cut)| cut);
            if after >= cap || refused_by.is_some() {
                // Short of the minimum, the budget (not the model) ended the thinking: its
                // stop, as in decode, where the thinking runs on to the cap the budget lowered.
                if after < cap && details.thinking_tokens < c.min_thinking_tokens {
                    short_of_minimum = refused_by;
                    details.budget_thinking_cap = Some(details.thinking_tokens);
                }
                // A wait the budget refused that the cap had room for cut the thinking short,
                // as in decode (the processor says a grant that refused one shortened it).
                if let Some(cut) = refused_by.filter(|_| after < cap) {
                    cx.note_budget_cut(cut);
                }
                break;
            }
            pending_wait = Some((thinking.len(), wait_tokens));
            thinking.push_str(&piece);
            details.waits += 1;
            details.thinking_tokens += wait_tokens;
        }
        let cue_prefix = format!("{open}{thinking}{}\n{}", c.think_close, c.answer_cue);
        let request = GenerationRequest::new(Prompt::Chat {
            messages,
            assistant_prefix: cue_prefix,
        })
        .with_max_tokens(c.max_answer_tokens.get())
        .with_sampling(self.sampling());
        let generation = match backend.generate(request).await {
            Ok(generation) => generation,
            // No budget left for the answer: the answer is read from the thinking.
            Err(Error::BudgetExhausted { resource }) => {
                return Ok(Outcome::thinking_only(
                    open,
                    thinking,
                    details,
                    tokens,
                    Some(resource),
                ));
            }
            // Nor room in the context window (its length unknown here): the same.
            Err(Error::PromptTooLong { .. }) if !thinking.is_empty() => {
                return Ok(Outcome::thinking_only(
                    open, thinking, details, tokens, None,
                ));
            }
            Err(e) => return Err(e),
        };
        // The answer's call sends the thinking's prompt again.
        details.resubmitted_prompt_tokens += generation.usage.prompt_tokens;
        let shortened = generation.cut_by.is_some();
        let choice = generation.into_first_choice()?;
        details.answer_tokens = choice.completion_tokens;
        tokens += choice.completion_tokens as u64;
        let text = format!(
            "{thinking}{}\n{} {}",
            c.think_close,
            c.answer_cue,
            choice.text.trim_start()
        );
        let budget_stop = budget_stop
            .filter(|_| details.forced_end)
            .or(short_of_minimum);
        // The thinking was planned shorter for the budget, so no meter saw a call cut: said
        // here, as decode's meters see it (a batch run redoes a problem its budget cut).
        if let Some(cut) = budget_stop {
            cx.note_budget_cut(cut);
        }
        let budget_stop = budget_stop.map(|cut| cut.resource());
        Ok(Outcome {
            thinking,
            answer: choice.text.clone(),
            text,
            details,
            tokens,
            // An answer that ran to `max_answer_tokens` ended where this strategy ends it (in
            // decode the processor ends it there too), not cut off; unless a budget shortened
            // the call, or something else (the context window) ended it sooner.
            finish: match choice.finish_reason {
                FinishReason::Length
                    if !shortened && choice.completion_tokens >= c.max_answer_tokens.get() =>
                {
                    FinishReason::Stop
                }
                finish => finish,
            },
            budget_stop,
        })
    }

    /// Runs the configured mode, falling back to `resubmit` where the backend cannot run logits
    /// processors.
    pub fn effective_mode(&self, backend: &dyn Backend) -> ForcingMode {
        match self.config.mode {
            ForcingMode::InDecode if backend.capabilities().logits_processors => {
                ForcingMode::InDecode
            }
            _ => ForcingMode::Resubmit,
        }
    }
}

/// What may end a line merged with the newline after it: each lead that is not whitespace, and
/// [`LINE_LEADS`].
fn line_leads() -> impl Iterator<Item = &'static str> {
    CLOSE_LEADS
        .into_iter()
        .filter(|lead| !lead.trim().is_empty())
        .chain(LINE_LEADS)
}

/// The ids of `wait` as said after the thinking: after a space of its own, or where the
/// thinking ends in whitespace, as it starts a line (its ids after a newline, the newline's
/// left out; the spaced form where they merge).
async fn wait_ids(backend: &dyn Backend, wait: &str, after_blank: bool) -> Result<Vec<u32>> {
    let spaced = format!(" {wait}");
    if !after_blank {
        return ponder_engine::turn::piece_after_text(backend, &spaced).await;
    }
    let newline = ponder_engine::turn::piece_after_text(backend, "\n").await?;
    let on_line = ponder_engine::turn::piece_after_text(backend, &format!("\n{wait}")).await?;
    match bare_on_line(&newline, &on_line) {
        Some(bare) => Ok(bare),
        None => ponder_engine::turn::piece_after_text(backend, &spaced).await,
    }
}

/// A piece as it starts a line, from its ids after a newline (`on_line`): the newline's left
/// out; none where they merge (or either is empty), and the spaced form serves.
fn bare_on_line(newline: &[u32], on_line: &[u32]) -> Option<Vec<u32>> {
    match on_line.strip_prefix(newline) {
        Some(bare) if !newline.is_empty() && !bare.is_empty() => Some(bare.to_vec()),
        _ => None,
    }
}

/// What one forced sample produced.
#[derive(Debug, Clone)]
struct Outcome {
    text: String,
    thinking: String,
    answer: String,
    details: ForcingDetails,
    tokens: u64,
    finish: FinishReason,
    /// The budget that ended the sample before its answer phase, if one did.
    budget_stop: Option<Resource>,
}

impl Outcome {
    /// A sample stopped before its answer, by the budget (`budget_stop`) or the context
    /// window: the thinking is all there is. Its text starts with the `open` ponder wrote
    /// (none where the chat template opened the block), so that it reads as thinking never
    /// closed, and an answer tried in it as not stated
    /// ([`ponder_engine::answer::stated_answer`]).
    fn thinking_only(
        open: &str,
        thinking: String,
        details: ForcingDetails,
        tokens: u64,
        budget_stop: Option<Resource>,
    ) -> Self {
        Self {
            text: format!("{open}{thinking}"),
            thinking,
            answer: String::new(),
            details,
            tokens,
            finish: FinishReason::Length,
            budget_stop,
        }
    }
}

/// The answer: what follows the cue is read as the text after an answer cue (its first line or
/// sentence, a `\boxed{}` anywhere), so working the model writes after the answer does not
/// replace it; without a cue, the answer phase as a whole; else the thinking.
fn final_answer(outcome: &Outcome, cue: &str) -> Option<String> {
    let after_thinking = if outcome.text.contains(cue) {
        extract_answer(&format!("{ANSWER_CUE} {}", outcome.answer.trim_start()))
    } else {
        extract_answer(&outcome.answer)
    };
    after_thinking.or_else(|| extract_answer(&outcome.thinking))
}

/// Splits a completion into the thinking and what follows the cue.
fn split(text: &str, close: &str, cue: &str) -> (String, String) {
    match text.find(close) {
        Some(at) => {
            let thinking = text.get(..at).unwrap_or_default().to_string();
            let rest = text.get(at + close.len()..).unwrap_or_default();
            let answer = rest
                .find(cue)
                .map_or(rest, |i| rest.get(i + cue.len()..).unwrap_or_default());
            (thinking, answer.to_string())
        }
        None => (text.to_string(), String::new()),
    }
}

#[async_trait]
impl Strategy for BudgetForcing {
    fn name(&self) -> &'static str {
        "budget_forcing"
    }

    /// Stated where the text has an answer after its (configured) close: behind its cue, read
    /// as the answer is read for the solution, or, without the cue, as any text is. A sample stopped
    /// before its close is thinking only.
    fn states_answer(&self, completion: &str, _thinking_opened: bool) -> bool {
        let c = &self.config;
        let Some((_, rest)) = completion.split_once(c.think_close.as_str()) else {
            return false;
        };
        match rest.split_once(c.answer_cue.as_str()) {
            Some((_, answer)) => {
                extract_answer(&format!("{ANSWER_CUE} {}", answer.trim_start())).is_some()
            }
            None => stated_answer(rest).is_some(),
        }
    }

    #[tracing::instrument(skip_all, fields(strategy = "budget_forcing", problem = %problem.id))]
    async fn solve(&self, problem: &Problem, cx: &Context) -> Result<Solution> {
        let outcome = match self.effective_mode(cx.backend().as_ref()) {
            ForcingMode::InDecode => self.in_decode(problem, cx).await,
            ForcingMode::Resubmit if self.config.switch_penalty.is_some() => {
                return Err(Error::Unsupported {
                    backend: cx.backend().capabilities().backend,
                    operation: "logits processors (budget forcing's switch_penalty)",
                })
            }
            ForcingMode::Resubmit => self.resubmit(problem, cx).await,
        };
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(Error::BudgetExhausted { resource }) => {
                return Ok(Solution::exhausted(self.name(), resource))
            }
            Err(e) => return Err(e),
        };
        cx.emit(
            self.name(),
            EventKind::Thought {
                thinking_tokens: outcome.details.thinking_tokens,
                waits: outcome.details.waits,
                forced_end: outcome.details.forced_end,
            },
        );
        let answer = final_answer(&outcome, &self.config.answer_cue);
        let stop_reason = match (outcome.budget_stop, outcome.finish) {
            (Some(resource), _) => resource.into(),
            (None, FinishReason::Length) => StopReason::MaxTokens,
            (None, FinishReason::Stop) => StopReason::Completed,
        };
        let candidate = Candidate {
            answer,
            text: outcome.text,
            score: None,
            tokens: outcome.tokens,
        };
        let mut solution = Solution::single(self.name(), candidate, stop_reason);
        solution.details =
            serde_json::to_value(outcome.details).map_err(|source| Error::Serialize {
                what: "budget forcing details",
                source,
            })?;
        Ok(solution)
    }
}
