//! Adaptive thinking: decide per query whether to think at all (Thinkless, arXiv 2505.13379;
//! HiPO, arXiv 2509.23967), at inference time.
//!
//! - [`Router`] (`kind = "router"`): answer short first (one cheap request: `probes` short
//!   answers in one decode), and think (any inner strategy) only when cheap signals say the query
//!   is hard: no answer stated, a cut answer, probes that disagree, or low confidence (the probability
//!   the model gave its own answer tokens, read from the log-probabilities of the same request).
//! - [`ModeRouter`] (`kind = "mode_token"`): for models that emit their own mode token first
//!   (Thinkless's `<short>` / `<think>`). Either the model samples its mode, or, with
//!   `think_threshold`, a logits processor reads P(think) against P(short) at the first position
//!   and forces the mode in the same decode, so the think rate is tuned without retraining.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ponder_engine::answer::{extract_answer, THINK_CLOSE, THINK_OPEN};
use ponder_engine::solve_in_stages;
use ponder_engine::{
    Backend, Candidate, Choice, Context, Error, EventKind, FinishReason, GenerationRequest,
    LogitsProcessor, Pending, Problem, Prompt, Result, Sampling, Solution, Stage, Staged,
    StopReason, Strategy, TokenLogprob, TokenizeInput,
};
use serde::{Deserialize, Serialize};

use crate::config::{check_sampling, StrategyConfig};
use crate::direct::{candidate_of, DirectConfig};
use crate::prompt::{PromptStyle, ANSWER_CUE};
use ponder_engine::turn::{opens_thinking, still_to_write, template_tail};

/// Config of [`Router`] (`kind = "router"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// Prompt style of the short answer. Default `direct`.
    #[serde(default = "default_short_style")]
    pub style: PromptStyle,
    /// Most tokens of a short answer. Default 64.
    #[serde(default = "default_short_max_tokens")]
    pub max_tokens: NonZeroUsize,
    /// Short answers drawn, in one request. Default 1. With more, they must agree.
    #[serde(default = "default_probes")]
    pub probes: NonZeroUsize,
    /// Temperature of the short answers. Default 0 (greedy) for one probe, 0.7 for more.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Text the short answer's turn starts with. For a reasoning model that always thinks
    /// (DeepSeek-R1's distills, QwQ, Qwen3), `"<think>\n\n</think>\n\n"` closes its thinking
    /// before it starts, so it answers at once (NoThinking, arXiv 2504.09858; Qwen3's
    /// `enable_thinking = false` writes the same); what the chat template already wrote of it
    /// (`<think>\n`) is not written again. Default none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub short_prefix: String,
    /// With several probes: think unless the leading answer has at least this share of them
    /// (unanswered probes count against it), in (0, 1]. Default 1 (unanimous).
    #[serde(default = "default_min_agreement")]
    pub min_agreement: f64,
    /// Think when the short answer's confidence, the probability the model gave the tokens of
    /// its answer (after the answer cue), is below this, in [0, 1]; 0 turns the signal off, and
    /// 1 thinks about every answer but one whose tokens all had probability exactly 1. Above 0 the
    /// backend must return log-probabilities (`max_top_logprobs` > 0), or the router refuses
    /// before its first call.
    /// Default 0.2 (on 40 SVAMP problems with Qwen2.5-Coder-0.5B it thought on 24 and kept
    /// 40.0% against always-think's 47.5%; 0.3 matched always-think's accuracy for more tokens
    /// than always thinking, 332 a problem against 285: see the README). The probability of a multi-digit answer is a product over its
    /// digits, so the right value depends on the model and task: `scripts/router_svamp.sh`
    /// sweeps it. With several probes (sampled at `temperature`), it is the probability at that
    /// temperature, which sharpens it: a threshold calibrated on one greedy probe is lower
    /// than it reads.
    #[serde(default = "default_min_confidence")]
    pub min_confidence: f64,
    /// How to think when the short answer will not do. Default `direct` step by step (chain of
    /// thought, 512 tokens); any strategy (budget forcing, best-of-N, ...).
    #[serde(default = "default_think")]
    pub think: Box<StrategyConfig>,
}

fn default_short_style() -> PromptStyle {
    PromptStyle::Direct
}

fn default_short_max_tokens() -> NonZeroUsize {
    NonZeroUsize::MIN.saturating_add(63)
}

fn default_probes() -> NonZeroUsize {
    NonZeroUsize::MIN
}

fn default_min_agreement() -> f64 {
    1.0
}

fn default_min_confidence() -> f64 {
    0.2
}

fn default_think() -> Box<StrategyConfig> {
    Box::new(StrategyConfig::Direct(DirectConfig::default()))
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            style: default_short_style(),
            max_tokens: default_short_max_tokens(),
            probes: default_probes(),
            temperature: None,
            short_prefix: String::new(),
            min_agreement: default_min_agreement(),
            min_confidence: default_min_confidence(),
            think: default_think(),
        }
    }
}

impl RouterConfig {
    /// The probes' temperature.
    pub fn temperature(&self) -> f64 {
        self.temperature
            .unwrap_or(if self.probes.get() > 1 { 0.7 } else { 0.0 })
    }

    /// Checks the values that serde cannot, and the thinking strategy.
    pub fn validate(&self) -> Result<()> {
        check_sampling(self.temperature(), None)?;
        if self.probes.get() > 1 && self.temperature() == 0.0 {
            return Err(Error::config_value(
                "temperature",
                format!(
                    "probes = {} at temperature 0 would all be the same answer: set temperature > 0 or probes = 1",
                    self.probes
                ),
            ));
        }
        if !(self.min_agreement > 0.0 && self.min_agreement <= 1.0) {
            return Err(Error::config_value(
                "min_agreement",
                format!(
                    "min_agreement must be in (0, 1], got {}",
                    self.min_agreement
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return Err(Error::config_value(
                "min_confidence",
                format!(
                    "min_confidence must be in [0, 1], got {}",
                    self.min_confidence
                ),
            ));
        }
        self.think.validate().map_err(|e| e.under("think"))
    }
}

/// The cheap signals read from the short answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signals {
    /// The leading short answer (the majority's, the first on a tie, which thinks).
    pub answer: Option<String>,
    /// Whether the leading answer's probe was cut at `max_tokens`; with no answer, whether any
    /// probe was.
    pub cut: bool,
    /// The leading answer's share of the probes.
    pub agreement: f64,
    /// The probability the model gave the leading answer's tokens (its first probe), when
    /// log-probabilities were asked for.
    pub confidence: Option<f64>,
    /// Completion tokens of all probes.
    pub tokens: u64,
}

/// What [`Router`] reports as `details`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouterDetails {
    /// `short` or `think`.
    pub route: String,
    /// Why, in words.
    pub why: String,
    /// The short answers' signals (absent when the short answer was skipped).
    pub short: Option<Signals>,
    /// The thinking strategy's `kind`, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub think_strategy: Option<String>,
    /// The thinking strategy's own details, when it ran.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub think: serde_json::Value,
}

/// The signals router; see the module docs.
pub struct Router {
    config: RouterConfig,
    think: Box<dyn Strategy>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("config", &self.config)
            .finish()
    }
}

/// The probability of the answer's tokens, multiplied: the tokens that spell `answer` where it
/// stands alone (not inside a longer number or word) first after the last answer cue, else
/// where it last stands alone; where it does not appear as written (or is not given), the
/// tokens after the last answer cue up to the end of that line, and with no cue every token.
/// `None` without log-probabilities.
pub fn answer_confidence(logprobs: &[TokenLogprob], answer: Option<&str>) -> Option<f64> {
    if logprobs.is_empty() {
        return None;
    }
    let mut starts = Vec::with_capacity(logprobs.len());
    let mut text = String::new();
    for l in logprobs {
        starts.push(text.len());
        text.push_str(&l.token);
    }
    let lower = text.to_lowercase();
    // Lower-casing ASCII keeps byte offsets; anything else, read the whole completion.
    let cue = (lower.len() == text.len())
        .then(|| lower.rfind(&ANSWER_CUE.to_lowercase()))
        .flatten();
    let find = |a: &str| {
        let alone: Vec<usize> = text
            .match_indices(a)
            .map(|(at, _)| at)
            .filter(|&at| stands_alone(&text, at, at + a.len()))
            .collect();
        cue.and_then(|c| alone.iter().find(|&&at| at >= c + ANSWER_CUE.len()))
            .or(alone.last())
            .map(|&at| (at, at + a.len()))
    };
    // As extracted, or as the model wrote it with thousands separators ("1,200" read as 1200).
    let spelled = answer
        .filter(|a| !a.trim().is_empty())
        .and_then(|a| find(a).or_else(|| grouped(a).and_then(|g| find(&g))));
    let (begin, end) = match spelled {
        Some(span) => span,
        None => {
            match cue {
                Some(at) => {
                    let begin = at + ANSWER_CUE.len();
                    let rest = text.get(begin..).unwrap_or_default();
                    // The answer runs to the end of its line (leading blank lines skipped).
                    let skipped = rest.len() - rest.trim_start().len();
                    let end = rest
                        .get(skipped..)
                        .and_then(|r| r.find('\n'))
                        .map_or(text.len(), |at| begin + skipped + at);
                    (begin + skipped, end)
                }
                None => (0, text.len()),
            }
        }
    };
    let mut sum = 0.0f64;
    let mut counted = 0;
    for (i, l) in logprobs.iter().enumerate() {
        let start = starts.get(i).copied().unwrap_or(0);
        let stop = start + l.token.len();
        // Tokens overlapping the answer that carry more than whitespace.
        if stop > begin && start < end && !l.token.trim().is_empty() {
            sum += f64::from(l.logprob);
            counted += 1;
        }
    }
    (counted > 0).then(|| sum.exp())
}

/// `number` with commas between its groups of three integer digits (`-1234.5` as
/// `-1,234.5`), where it is a plain number of more than three of them.
fn grouped(number: &str) -> Option<String> {
    let (sign, unsigned) = match number.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", number),
    };
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if whole.len() <= 3 || !digits(whole) || fraction.is_some_and(|f| !digits(f)) {
        return None;
    }
    let mut out = String::from(sign);
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if let Some(fraction) = fraction {
        out.push('.');
        out.push_str(fraction);
    }
    Some(out)
}

/// Whether `text[begin..end]` is not part of a longer number or word: no letter or digit next
/// to it, nor a decimal point or separator followed by a digit ("5" in "15", "0.5" or "5,000").
fn stands_alone(text: &str, begin: usize, end: usize) -> bool {
    let before = text.get(..begin).unwrap_or_default();
    let after = text.get(end..).unwrap_or_default();
    let mut back = before.chars().rev();
    let joined_before = match back.next() {
        Some(c) if c.is_alphanumeric() => true,
        Some('.' | ',') => back.next().is_some_and(|c| c.is_ascii_digit()),
        _ => false,
    };
    let mut on = after.chars();
    let joined_after = match on.next() {
        Some(c) if c.is_alphanumeric() => true,
        Some('.' | ',') => on.next().is_some_and(|c| c.is_ascii_digit()),
        _ => false,
    };
    !joined_before && !joined_after
}

impl Router {
    /// Builds the router from its config (validating it and building the thinking strategy).
    pub fn new(config: RouterConfig) -> Result<Self> {
        config.validate()?;
        let think = config.think.build()?;
        Ok(Self { config, think })
    }

    /// Replaces the thinking strategy with one built in code (one of your own, say). The
    /// config's `think` is then unused, though [`Self::new`] has already checked and built it.
    pub fn with_think(mut self, think: Box<dyn Strategy>) -> Self {
        self.think = think;
        self
    }

    /// The short answers' request. Refused where the confidence it would read cannot be had:
    /// before the probes are paid for, not after.
    async fn request(&self, problem: &Problem, backend: &dyn Backend) -> Result<GenerationRequest> {
        let caps = backend.capabilities();
        if self.config.min_confidence > 0.0 && caps.max_top_logprobs == 0 {
            return Err(Error::Unsupported {
                backend: caps.backend,
                operation: LOGPROBS_FOR_CONFIDENCE,
            });
        }
        let messages = self.config.style.messages(problem);
        let prefix = &self.config.short_prefix;
        let assistant_prefix = if prefix.is_empty() {
            String::new()
        } else {
            still_to_write(&template_tail(backend, &messages).await?, prefix).to_string()
        };
        let mut request = GenerationRequest::new(Prompt::Chat {
            messages,
            assistant_prefix,
        })
        .with_n(self.config.probes.get())
        .with_max_tokens(self.config.max_tokens.get())
        .with_sampling(Sampling::with_temperature(self.config.temperature()));
        if self.config.min_confidence > 0.0 {
            request = request.with_top_logprobs(1);
        }
        Ok(request)
    }

    /// The signals of the probes, the index of the leading probe, and why to think (`None`:
    /// the short answer will do).
    fn read(
        &self,
        choices: &[Choice],
        backend: &'static str,
    ) -> Result<(Signals, usize, Option<String>)> {
        let answers: Vec<Option<String>> = choices.iter().map(probe_answer).collect();
        let groups = ponder_prm::groups(&answers, &[]);
        let leader = groups
            .iter()
            .enumerate()
            .max_by(|(ia, a), (ib, b)| a.members.len().cmp(&b.members.len()).then(ib.cmp(ia)))
            .map(|(_, g)| g);
        let first = leader.and_then(|g| g.members.first().copied()).unwrap_or(0);
        let votes = leader.map_or(0, |g| g.members.len());
        // Another answer with as many probes: the leader leads only by coming first.
        let tied = groups.iter().filter(|g| g.members.len() == votes).count() > 1;
        let lead = choices.get(first).ok_or(Error::Inference {
            message: "the backend returned no completion".into(),
        })?;
        let confidence = if self.config.min_confidence > 0.0 {
            // A backend that said it returns them (`request` checked) but sent none.
            let logprobs = lead.logprobs.as_deref().ok_or(Error::Unsupported {
                backend,
                operation: LOGPROBS_FOR_CONFIDENCE,
            })?;
            let answer = answers.get(first).cloned().flatten();
            answer_confidence(logprobs, answer.as_deref())
        } else {
            None
        };
        let signals = Signals {
            answer: leader.map(|g| g.answer.clone()),
            // With no answer `lead` is only the first probe: one that said nothing beside one
            // the length cut is still a short answer cut, whose remedy is thinking room.
            cut: match leader {
                Some(_) => lead.finish_reason == FinishReason::Length,
                None => choices
                    .iter()
                    .any(|c| c.finish_reason == FinishReason::Length),
            },
            // Of the probes asked for: one that did not come back (a failure, the deadline)
            // did not agree.
            agreement: votes as f64 / choices.len().max(self.config.probes.get()) as f64,
            confidence,
            tokens: choices.iter().map(|c| c.completion_tokens as u64).sum(),
        };
        let mut reasons = Vec::new();
        if signals.answer.is_none() {
            reasons.push(if signals.cut {
                "the short answer was cut at max_tokens".to_string()
            } else {
                "no short answer".to_string()
            });
        } else {
            if signals.agreement < self.config.min_agreement {
                reasons.push(format!(
                    "agreement {votes}/{} < {}",
                    choices.len().max(self.config.probes.get()),
                    self.config.min_agreement
                ));
            }
            // Whatever share min_agreement accepts, a tie is no majority: which answer leads
            // is the order the probes came back in.
            if tied {
                reasons.push("answers tied for the lead".to_string());
            }
            match signals.confidence {
                Some(c) if c < self.config.min_confidence => reasons.push(format!(
                    "confidence {c:.3} < {}",
                    self.config.min_confidence
                )),
                // Asked for, but no token of the answer had a log-probability: not confident.
                None if self.config.min_confidence > 0.0 => {
                    reasons.push("no confidence for the answer".to_string());
                }
                _ => {}
            }
        }
        let why = (!reasons.is_empty()).then(|| reasons.join(", "));
        Ok((signals, first, why))
    }

    async fn think(
        &self,
        problem: &Problem,
        cx: &Context,
        short: Option<(Signals, Vec<Candidate>)>,
        why: String,
    ) -> Result<Solution> {
        let calls_before = cx.meter().usage().calls;
        let mut solution = self.think.solve(problem, cx).await?;
        // The budget refused thinking's first call: the short answer stands, as a triage run
        // that cannot pay for thinking records it (and the report counts it so).
        let refused = solution.stop_reason.is_budget() && cx.meter().usage().calls == calls_before;
        let (signals, mut candidates) = match short {
            Some((signals, candidates)) => (Some(signals), candidates),
            None => (None, Vec::new()),
        };
        // Thinking that ended without an answer, or cut off (its budget or its length ran out)
        // before it stated one: the short answer is better than none, and better than the
        // last number of unfinished working.
        // (Under a budget stop of a strategy of many samples the chosen one may have ended by
        // itself: its answer, unstated, still loses to the short one, which the model stated.)
        let cut = solution.stop_reason == StopReason::MaxTokens || solution.stop_reason.is_budget();
        let unstated = cut && {
            // Thinking a template opened, cut before its close: all of it is thinking.
            let opened = !solution.completion.contains(THINK_CLOSE)
                && !solution.completion.contains(THINK_OPEN)
                && opens_thinking(cx.backend()).await.unwrap_or(false);
            !self.think.states_answer(&solution.completion, opened)
        };
        if solution.answer.is_none() || unstated {
            if let Some(answer) = signals.as_ref().and_then(|s| s.answer.clone()) {
                tracing::debug!(problem = %problem.id, "thinking gave no answer; the short one stands");
                solution.answer = Some(answer);
                // The text the answer was taken from is the leading probe's (first of the short
                // candidates), not the unfinished thinking: whoever reads the solution (a vote
                // over samples asking whether an answer was stated, a reward model) reads the
                // answer's own text. The thinking stays among the candidates.
                if let Some(lead) = candidates.first() {
                    solution.completion = lead.text.clone();
                }
            }
        }
        candidates.append(&mut solution.candidates);
        let details = RouterDetails {
            route: if refused { NO_BUDGET_TO_THINK } else { "think" }.into(),
            why,
            short: signals,
            think_strategy: Some(self.think.name().to_string()),
            think: std::mem::take(&mut solution.details),
        };
        solution.strategy = self.name().to_string();
        solution.candidates = candidates;
        solution.details = to_value(&details)?;
        Ok(solution)
    }
}

/// A short answer's answer: one the probe stated (after an answer cue, or boxed), or a reply
/// that is a value and nothing else (`7`, `37 * 43 = 1591`); not the last number of a reply that says none
/// ("37 times 43" would read as 43, copied from the question and likely, so kept), nor of one
/// cut at `max_tokens`.
fn probe_answer(choice: &Choice) -> Option<String> {
    match choice.finish_reason {
        FinishReason::Stop => {
            ponder_engine::answer::stated_answer(&choice.text).or_else(|| bare_value(&choice.text))
        }
        FinishReason::Length => None,
    }
}

/// The answer of a short probe's reply that is a value and nothing else (`7`, ` 1591.`), or
/// one line that works it out to one (`37 * 43 = 1591`): stated by being all there is.
fn bare_value(text: &str) -> Option<String> {
    let text = text.trim();
    let value = match text.rsplit_once('=') {
        Some((_, result)) if !text.contains('\n') => result,
        _ => text,
    };
    lone_value(value)
}

/// The answer of a text that is one value and nothing else (`7`, ` 1591.`): no working, not
/// even a line's (`3 * 3 = 9`).
fn lone_value(text: &str) -> Option<String> {
    let bare = text.trim().trim_end_matches('.');
    (!bare.is_empty() && !bare.contains(char::is_whitespace) && !bare.contains('='))
        .then(|| extract_answer(bare))
        .flatten()
}

/// What a router with `min_confidence` above 0 needs of its backend.
const LOGPROBS_FOR_CONFIDENCE: &str =
    "log-probabilities (the router's min_confidence; set min_confidence = 0 to route without them)";

/// The route of a solve that wanted to think but whose budget refused it: the short answer.
pub const NO_BUDGET_TO_THINK: &str = "short (no budget to think)";

fn to_value(details: &impl Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(details).map_err(|source| Error::Serialize {
        what: "router details",
        source,
    })
}

#[async_trait]
impl Strategy for Router {
    fn name(&self) -> &'static str {
        "router"
    }

    /// Stated as its thinking strategy reads it (a thinking answer behind budget forcing's own
    /// cue), or as a short answer is read: behind a cue, boxed, or a value that is the whole
    /// reply. Not a line that works a value out (`37 * 43 = 1591`): a short probe's answer
    /// where the probe ended by itself, but here only the text is seen, and thinking the
    /// length or the budget cut on its first line ends the same way.
    fn states_answer(&self, completion: &str, thinking_opened: bool) -> bool {
        self.think.states_answer(completion, thinking_opened)
            || ponder_engine::answer::stated_answer_in_turn(completion, thinking_opened).is_some()
            || lone_value(completion).is_some()
    }

    #[tracing::instrument(skip_all, fields(strategy = "router", problem = %problem.id))]
    async fn solve(&self, problem: &Problem, cx: &Context) -> Result<Solution> {
        let solution = solve_in_stages(self, problem, cx).await?;
        // The first stage said `think`, and the budget refused the thinking: what happened
        // instead is said too. (Here, where it is final: a triage run may defer a refused
        // stage and think after all; it records a stage kept its own way.)
        if let Ok(details) = serde_json::from_value::<RouterDetails>(solution.details.clone()) {
            if details.route == NO_BUDGET_TO_THINK {
                cx.emit(
                    self.name(),
                    EventKind::Routed {
                        route: details.route,
                        why: details.why,
                    },
                );
            }
        }
        Ok(solution)
    }

    fn staged(&self) -> Option<&dyn Staged> {
        Some(self)
    }
}

/// The short answer is the first stage; thinking the second. A first stage that asks for
/// thinking carries the short answer (route [`NO_BUDGET_TO_THINK`], `why` saying why it would
/// think), which a triage run records as it is when its budget cannot pay for the thinking
/// (and the second stage replaces when it can).
#[async_trait]
impl Staged for Router {
    async fn first(&self, problem: &Problem, cx: &Context) -> Result<Stage> {
        if problem.code.is_some() {
            let why = "a code problem: no short answer to read signals from".to_string();
            cx.emit(
                self.name(),
                EventKind::Routed {
                    route: "think".into(),
                    why: why.clone(),
                },
            );
            let solution = Solution {
                strategy: self.name().to_string(),
                answer: None,
                completion: String::new(),
                candidates: Vec::new(),
                stop_reason: StopReason::Completed,
                usage: Default::default(),
                details: to_value(&RouterDetails {
                    route: NO_BUDGET_TO_THINK.into(),
                    why: why.clone(),
                    short: None,
                    think_strategy: None,
                    think: serde_json::Value::Null,
                })?,
                trace: None,
            };
            return Ok(Stage {
                solution,
                pending: Some(Pending {
                    confidence: 0.0,
                    why,
                }),
            });
        }
        let request = self.request(problem, cx.backend().as_ref()).await?;
        let generation = match cx.backend().generate(request).await {
            Ok(generation) => generation,
            Err(Error::BudgetExhausted { resource }) => {
                return Ok(Stage {
                    solution: Solution::exhausted(self.name(), resource),
                    pending: None,
                })
            }
            Err(e) => return Err(e),
        };
        let backend = cx.backend().capabilities().backend;
        let (signals, lead, think_why) = self.read(&generation.choices, backend)?;
        // A probe's answer as `read` counts it: a number of a cut probe, or of one that stated
        // none, is not a candidate's either.
        let mut probes: Vec<(Candidate, StopReason)> = generation
            .choices
            .into_iter()
            .map(|choice| {
                let answer = probe_answer(&choice);
                let (mut candidate, stop) = candidate_of(choice);
                candidate.answer = answer;
                (candidate, stop)
            })
            .collect();
        // `read` found the leading probe among the choices; it goes first.
        let (candidate, stop_reason) = probes.remove(lead);
        let mut candidates = vec![candidate.clone()];
        candidates.extend(probes.into_iter().map(|(c, _)| c));
        let pending = think_why.as_ref().map(|why| {
            tracing::debug!(problem = %problem.id, %why, "thinking");
            Pending {
                // How likely the short answer is right: its probability where it was read (no
                // more than the probes' agreement: probes that split are unsure whatever the
                // leader's probability), the agreement where it was not asked for; nothing
                // without an answer or with a probability asked for but not found.
                confidence: match (&signals.answer, signals.confidence) {
                    (None, _) => 0.0,
                    (Some(_), Some(c)) => c.min(signals.agreement),
                    (Some(_), None) if self.config.min_confidence > 0.0 => 0.0,
                    (Some(_), None) => signals.agreement,
                },
                why: why.clone(),
            }
        });
        let why = match (think_why, signals.confidence, self.config.probes.get()) {
            (Some(why), _, _) => why,
            (None, Some(c), 1) => format!("answered with confidence {c:.3}"),
            (None, Some(c), n) => format!(
                "{} of {n} agree, confidence {c:.3}",
                (signals.agreement * n as f64).round()
            ),
            (None, None, 1) => "answered".to_string(),
            (None, None, n) => format!("{} of {n} agree", (signals.agreement * n as f64).round()),
        };
        cx.emit(
            self.name(),
            EventKind::Routed {
                route: if pending.is_some() { "think" } else { "short" }.into(),
                why: why.clone(),
            },
        );
        let mut solution = Solution::single(self.name(), candidate, stop_reason);
        // The answer is the majority's (equal to the leading probe's, up to how it is written);
        // none where no probe finished with one (a probe cut at max_tokens has none, as a
        // plain solve that could not think then records).
        solution.answer = signals.answer.clone();
        solution.candidates = candidates;
        solution.details = to_value(&RouterDetails {
            // Final as it is only where thinking went unpaid.
            route: if pending.is_some() {
                NO_BUDGET_TO_THINK
            } else {
                "short"
            }
            .into(),
            why,
            short: Some(signals),
            think_strategy: None,
            think: serde_json::Value::Null,
        })?;
        Ok(Stage { solution, pending })
    }

    /// Thinking: the last stage.
    async fn next(&self, problem: &Problem, first: Solution, cx: &Context) -> Result<Stage> {
        let details: RouterDetails =
            serde_json::from_value(first.details).map_err(|e| Error::StrategyConfig {
                strategy: "router",
                reason: format!("thinking was given a first stage that is not the router's: {e}"),
            })?;
        let short = details.short.map(|signals| (signals, first.candidates));
        Ok(Stage {
            solution: self.think(problem, cx, short, details.why).await?,
            pending: None,
        })
    }
}

/// Config of [`ModeRouter`] (`kind = "mode_token"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeRouterConfig {
    /// The token that starts a short answer. Default `<short>`.
    #[serde(default = "default_short_token")]
    pub short_token: String,
    /// The token that starts thinking. Default `<think>`.
    #[serde(default = "default_think_token")]
    pub think_token: String,
    /// Think when P(think) / (P(think) + P(short)) at the first position is at least this, in
    /// [0, 1] (0: always think, 1: think only when the short token has no probability). Read from
    /// the logits and forced in the same decode (backends with logits processors; both tokens
    /// must be single tokens). Default: none, the model samples its own mode.
    #[serde(default)]
    pub think_threshold: Option<f64>,
    /// Prompt style. Default `step_by_step`.
    #[serde(default)]
    pub style: PromptStyle,
    /// Most tokens generated. Default 4096.
    #[serde(default = "default_mode_max_tokens")]
    pub max_tokens: NonZeroUsize,
    /// Sampling temperature. Default 0.6 (what Thinkless evaluates with).
    #[serde(default = "default_mode_temperature")]
    pub temperature: f64,
    /// Nucleus filter in (0, 1]. Default none.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// The end-of-thinking delimiter; the answer is read after it. Default `</think>`.
    #[serde(default = "default_think_end")]
    pub think_end: String,
}

fn default_short_token() -> String {
    "<short>".into()
}

fn default_think_token() -> String {
    "<think>".into()
}

fn default_think_end() -> String {
    "</think>".into()
}

fn default_mode_max_tokens() -> NonZeroUsize {
    NonZeroUsize::MIN.saturating_add(4095)
}

fn default_mode_temperature() -> f64 {
    0.6
}

impl Default for ModeRouterConfig {
    fn default() -> Self {
        Self {
            short_token: default_short_token(),
            think_token: default_think_token(),
            think_threshold: None,
            style: PromptStyle::default(),
            max_tokens: default_mode_max_tokens(),
            temperature: default_mode_temperature(),
            top_p: None,
            think_end: default_think_end(),
        }
    }
}

impl ModeRouterConfig {
    /// Checks the values that serde cannot.
    pub fn validate(&self) -> Result<()> {
        check_sampling(self.temperature, self.top_p)?;
        if self.short_token.is_empty() || self.think_token.is_empty() {
            return Err(Error::config_value(
                if self.short_token.is_empty() {
                    "short_token"
                } else {
                    "think_token"
                },
                "short_token and think_token must not be empty",
            ));
        }
        if self.think_end.trim().is_empty() {
            return Err(Error::config_value(
                "think_end",
                "think_end must not be empty: the answer is read after it",
            ));
        }
        if self.short_token == self.think_token {
            return Err(Error::config_value(
                "think_token",
                format!(
                    "short_token and think_token are both `{}`",
                    self.short_token
                ),
            ));
        }
        if let Some(t) = self.think_threshold {
            if !(0.0..=1.0).contains(&t) {
                return Err(Error::config_value(
                    "think_threshold",
                    format!("think_threshold must be in [0, 1], got {t}"),
                ));
            }
        }
        Ok(())
    }
}

/// What [`ModeRouter`] reports as `details`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModeDetails {
    /// `short`, `think`, or `none` (the model started with neither token).
    pub mode: String,
    /// P(think) / (P(think) + P(short)) at the first position, where the logits were read.
    pub think_probability: Option<f64>,
    /// Whether the mode was forced by the threshold (otherwise sampled by the model).
    pub forced: bool,
}

/// The mode-token router; see the module docs.
#[derive(Debug, Clone)]
pub struct ModeRouter {
    config: ModeRouterConfig,
}

/// What the first-position processor saw.
#[derive(Debug, Default)]
struct FirstPosition {
    prompt_len: Option<usize>,
    think_probability: Option<f64>,
    /// The token generated first (seen on the next call).
    first: Option<u32>,
}

/// Reads the two mode tokens' logits at the first generated position and, with a threshold,
/// forces one; then records the first token and passes everything through.
#[derive(Debug)]
struct ModeProcessor {
    short: u32,
    think: u32,
    threshold: Option<f64>,
    seen: Mutex<FirstPosition>,
}

impl LogitsProcessor for ModeProcessor {
    fn process(&self, logits: &mut [f32], context: &[u32]) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        let prompt_len = *seen.prompt_len.get_or_insert(context.len());
        if context.len() > prompt_len {
            if seen.first.is_none() {
                seen.first = context.get(prompt_len).copied();
            }
            return;
        }
        let (Some(&s), Some(&t)) = (
            logits.get(self.short as usize),
            logits.get(self.think as usize),
        ) else {
            return;
        };
        // P(think) / (P(think) + P(short)) = sigmoid(t - s), the softmax's normaliser cancelling.
        let p = 1.0 / (1.0 + f64::from(s - t).exp());
        let p = if p.is_nan() { 0.5 } else { p };
        seen.think_probability = Some(p);
        if let Some(threshold) = self.threshold {
            let keep = if p >= threshold {
                self.think
            } else {
                self.short
            } as usize;
            for (i, logit) in logits.iter_mut().enumerate() {
                if i != keep {
                    *logit = f32::NEG_INFINITY;
                }
            }
            // A model that gives the kept token no probability at all still gets it.
            if let Some(l) = logits.get_mut(keep) {
                if !l.is_finite() {
                    *l = 0.0;
                }
            }
        }
    }
}

impl ModeRouter {
    /// A mode-token router with `config` (validate it first, or build it through config loading).
    pub fn new(config: ModeRouterConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    async fn single_token(&self, cx: &Context, text: &str) -> Result<u32> {
        let ids = cx.backend().tokenize(TokenizeInput::Piece(text)).await?;
        match ids.as_slice() {
            [id] => Ok(*id),
            _ => Err(Error::StrategyConfig {
                strategy: "mode_token",
                reason: format!(
                    "`{text}` is {} tokens in this model's vocabulary, not one: the mode is read from one position (use the tokens the model was trained to emit, or leave think_threshold out)",
                    ids.len()
                ),
            }),
        }
    }

    /// The mode the completion started with, by its text.
    /// The mode a completion took: its first token, where it is one of the mode tokens
    /// (`ids`: short's and think's); else its text (a completion of one token, a backend
    /// without logits processors, or whitespace before the mode token).
    fn mode_of(&self, ids: Option<(u32, u32)>, first: Option<u32>, text: &str) -> &'static str {
        match (ids, first) {
            (Some((_, think)), Some(id)) if id == think => "think",
            (Some((short, _)), Some(id)) if id == short => "short",
            _ => self.mode_of_text(text),
        }
    }

    fn mode_of_text(&self, text: &str) -> &'static str {
        let start = text.trim_start();
        if start.starts_with(&self.config.think_token) {
            "think"
        } else if start.starts_with(&self.config.short_token) {
            "short"
        } else {
            "none"
        }
    }
}

#[async_trait]
impl Strategy for ModeRouter {
    fn name(&self) -> &'static str {
        "mode_token"
    }

    #[tracing::instrument(skip_all, fields(strategy = "mode_token", problem = %problem.id))]
    async fn solve(&self, problem: &Problem, cx: &Context) -> Result<Solution> {
        let caps = cx.backend().capabilities();
        let threshold = self.config.think_threshold;
        if threshold.is_some() && !caps.logits_processors {
            return Err(Error::Unsupported {
                backend: caps.backend,
                operation: "logits processors (mode_token's think_threshold; leave it out to let the model pick its mode)",
            });
        }
        // The mode tokens' ids come from the tokenizer: without one the threshold could not
        // be applied, and the model would pick its mode while the details said it was forced.
        if threshold.is_some() && !caps.tokenizer {
            return Err(Error::Unsupported {
                backend: caps.backend,
                operation: "a tokenizer (mode_token's think_threshold reads the mode tokens' ids; leave it out to let the model pick its mode)",
            });
        }
        let processor = if caps.logits_processors && caps.tokenizer {
            let short = self.single_token(cx, &self.config.short_token).await;
            let think = self.single_token(cx, &self.config.think_token).await;
            match (short, think) {
                (Ok(short), Ok(think)) => Some(Arc::new(ModeProcessor {
                    short,
                    think,
                    threshold,
                    seen: Mutex::new(FirstPosition::default()),
                })),
                // Without a threshold, a multi-token mode marker is still read from the text.
                (Err(e), _) | (_, Err(e)) if threshold.is_some() => return Err(e),
                _ => None,
            }
        } else {
            None
        };
        let mut request = GenerationRequest::new(Prompt::chat(self.config.style.messages(problem)))
            .with_max_tokens(self.config.max_tokens.get())
            .with_sampling(Sampling {
                temperature: self.config.temperature,
                top_p: self.config.top_p,
                top_k: None,
                seed: None,
            });
        if let Some(p) = &processor {
            request = request.with_logits_processor(Arc::clone(p) as Arc<dyn LogitsProcessor>);
        }
        let generation = match cx.backend().generate(request).await {
            Ok(generation) => generation,
            Err(Error::BudgetExhausted { resource }) => {
                return Ok(Solution::exhausted(self.name(), resource))
            }
            Err(e) => return Err(e),
        };
        let (mut candidate, stop_reason) = candidate_of(generation.into_first_choice()?);
        let seen = processor
            .as_ref()
            .and_then(|p| p.seen.lock().ok().map(|s| (s.think_probability, s.first)));
        let (think_probability, first) = seen.unwrap_or((None, None));
        let ids = processor.as_ref().map(|p| (p.short, p.think));
        let mode = self.mode_of(ids, first, &candidate.text);
        // The answer comes after the thinking, where the model closed it.
        let after = candidate
            .text
            .rfind(&self.config.think_end)
            .map(|at| at + self.config.think_end.len());
        if let Some(at) = after {
            if let Some(rest) = candidate.text.get(at..) {
                candidate.answer = extract_answer(rest).or(candidate.answer);
            }
        }
        cx.emit(
            self.name(),
            EventKind::Routed {
                route: mode.into(),
                why: match think_probability {
                    Some(p) => format!("the model's mode token (P(think) {p:.3})"),
                    None => "the model's mode token".into(),
                },
            },
        );
        let mut solution = Solution::single(self.name(), candidate, stop_reason);
        solution.details = to_value(&ModeDetails {
            mode: mode.into(),
            think_probability,
            forced: threshold.is_some(),
        })?;
        Ok(solution)
    }
}

#[cfg(test)]
mod tests;
