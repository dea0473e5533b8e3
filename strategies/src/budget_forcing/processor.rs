//! The in-decode controller of budget forcing: a logits processor that bans, forces and
//! counts tokens of one sequence.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use ponder_engine::LogitsProcessor;

use super::{BudgetForcingConfig, ForcingDetails, MAX_IDLE_WAITS};

/// Token ids of the strings the processor forces or watches for.
#[derive(Debug, Clone)]
pub struct ForcingTokens {
    /// The end-of-thinking delimiter, as it is forced.
    pub close: Vec<u32>,
    /// Other tokenizations of the delimiter that count when the model writes them (with a
    /// leading space or newline, say).
    pub close_variants: Vec<Vec<u32>>,
    /// The first token of a variant that holds what came before the delimiter too (Qwen2.5's
    /// ".</"), with that lead's own tokens: a wait said where the model picked it keeps the
    /// lead (`42.` then the wait, as resubmission writes it).
    pub leads: Vec<(u32, Vec<u32>)>,
    /// The answer cue (with its leading newline).
    pub cue: Vec<u32>,
    /// The wait strings (with their leading space), in rotation order.
    pub waits: Vec<Vec<u32>>,
    /// The wait strings as written after whitespace (no space of their own, as s1 appends
    /// "Wait" to the text), in the same order; where one is missing, its spaced form.
    pub bare_waits: Vec<Vec<u32>>,
    /// Tokens that are whitespace alone (a space, a newline, a blank line): written after a
    /// wait before the model ends, the wait still went unheeded.
    pub blanks: Vec<u32>,
    /// Tokens that end in whitespace after other text (Qwen2.5's ".\n\n"): a wait after one
    /// is written bare too.
    pub line_ends: Vec<u32>,
    /// End-of-sequence ids.
    pub eos: Vec<u32>,
}

impl ForcingTokens {
    fn closes(&self) -> impl Iterator<Item = &Vec<u32>> {
        std::iter::once(&self.close).chain(self.close_variants.iter())
    }
}

#[derive(Debug, Default)]
struct ForcingState {
    prompt_len: Option<usize>,
    seen: usize,
    /// Generated tokens up to and including the delimiter, once it is there.
    thinking_end: Option<usize>,
    /// Tokens still to force, in order.
    forcing: std::collections::VecDeque<u32>,
    /// Draws whether a sampled decode would have ended thinking where a wait is owed.
    rng: Option<fastrand::Rng>,
    /// Where the last wait said ended (generated tokens), and how many waits running the
    /// model would have ended its thinking at once after.
    wait_end: Option<usize>,
    idle_waits: usize,
    details: ForcingDetails,
}

/// The in-decode controller: one sequence per instance (send requests of `n = 1`).
///
/// Everything the sequence generated before the delimiter is thinking. On each call it notes
/// whether the delimiter (in any of its tokenizations) has just been completed, then bans or
/// forces tokens: below the minimum, or while waits remain, the delimiter's first tokens and
/// end-of-sequence are banned and the wait string is said where the model would have ended
/// thinking: decoding greedily, where one of them was the most likely token; sampling, with
/// the probability the model gave them at the sampling temperature, within the `top_p`
/// nucleus where one is set (the processor draws it,
/// from the solve's seed where it is seeded), as s1 says a wait where the sampled token ends
/// thinking; otherwise the token is drawn from the rest, as it would have been given that it
/// did not end. At the cap the delimiter is forced token by token from wherever a partial
/// match left it; after the delimiter the cue is forced; after `max_answer_tokens` of answer,
/// end-of-sequence is forced.
#[derive(Debug)]
pub struct ForcingProcessor {
    tokens: ForcingTokens,
    min_thinking: usize,
    max_thinking: usize,
    max_waits: usize,
    max_answer: usize,
    /// The sampling temperature (0: greedy).
    temperature: f64,
    /// The sampler's nucleus filter, if any.
    top_p: Option<f64>,
    /// What the draws of the endings are seeded from.
    seed: u64,
    /// The most tokens a budget granted the request (`usize::MAX`: as asked).
    granted: AtomicUsize,
    state: Mutex<ForcingState>,
}

impl ForcingProcessor {
    /// A controller for one sequence, drawing where sampling would have ended thinking from
    /// `seed` (decoding greedily, it draws nothing).
    pub fn new(tokens: ForcingTokens, config: &BudgetForcingConfig, seed: u64) -> Self {
        Self {
            tokens,
            min_thinking: config.min_thinking_tokens,
            max_thinking: config.max_thinking_tokens,
            max_waits: config.max_waits,
            max_answer: config.max_answer_tokens.get(),
            temperature: config.temperature,
            top_p: config.top_p.filter(|&p| p < 1.0),
            seed,
            granted: AtomicUsize::new(usize::MAX),
            state: Mutex::new(ForcingState::default()),
        }
    }

    /// Tokens generated after thinking at most: the delimiter, the cue, the answer and the
    /// end of sequence.
    pub fn after_thinking(&self) -> usize {
        // The longest form of the delimiter the model may write.
        let close = self.tokens.closes().map(Vec::len).max().unwrap_or(0);
        (close + self.tokens.cue.len() + 1).saturating_add(self.max_answer)
    }

    /// The thinking cap: the configured one, lowered so that what follows thinking still fits
    /// in what a budget granted.
    fn thinking_cap(&self) -> usize {
        let granted = self.granted.load(Ordering::Relaxed);
        self.max_thinking
            .min(granted.saturating_sub(self.after_thinking()))
    }

    /// What happened so far. `thinking_tokens` counts what the controller saw; the strategy
    /// completes the picture once the request returns.
    pub fn details(&self) -> ForcingDetails {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut details = state.details;
        if state.thinking_end.is_none() {
            details.thinking_tokens = state.seen;
        }
        details
    }

    /// Whether the controller saw thinking close (the last token, sampled after its final call,
    /// it never sees).
    pub fn saw_thinking_close(&self) -> bool {
        self.thinking_end().is_some()
    }

    /// Tokens generated up to the end of the delimiter (whichever form of it), once seen.
    pub fn thinking_end(&self) -> Option<usize> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.thinking_end
    }

    /// Tokens in the longest suffix of `generated` that is a proper prefix of `pattern`.
    fn partial_match(generated: &[u32], pattern: &[u32]) -> usize {
        (1..pattern.len())
            .rev()
            .find(|&k| generated.ends_with(pattern.get(..k).unwrap_or_default()))
            .unwrap_or(0)
    }

    /// Notes the delimiter when `generated` (everything so far) has just completed it.
    fn observe(&self, state: &mut ForcingState, generated: &[u32]) {
        if state.thinking_end.is_some() {
            return;
        }
        if let Some(close) = self
            .tokens
            .closes()
            .find(|c| !c.is_empty() && generated.ends_with(c))
        {
            state.thinking_end = Some(generated.len());
            state.details.thinking_tokens = generated.len() - close.len();
            state.forcing = self.tokens.cue.iter().copied().collect();
        }
    }

    fn decide(&self, state: &mut ForcingState, logits: &mut [f32], generated: &[u32]) {
        if let Some(next) = state.forcing.pop_front() {
            force(logits, next);
            return;
        }
        match state.thinking_end {
            None => self.decide_thinking(state, logits, generated),
            Some(end) => {
                let answered = generated.len().saturating_sub(end + self.tokens.cue.len());
                if answered >= self.max_answer {
                    if let Some(&eos) = self.tokens.eos.first() {
                        force(logits, eos);
                    }
                }
            }
        }
    }

    fn decide_thinking(&self, state: &mut ForcingState, logits: &mut [f32], generated: &[u32]) {
        let thought = generated.len();
        let close = &self.tokens.close;
        let matched = Self::partial_match(generated, close);
        let cap = self.thinking_cap();
        if cap < self.max_thinking {
            state.details.budget_thinking_cap = Some(cap);
        }
        if thought >= cap {
            state.details.forced_end = true;
            // Finish whichever form of the delimiter the model has begun ("done.</" of a
            // variant), else write the delimiter whole.
            let (form, begun) = self
                .tokens
                .closes()
                .map(|form| (form, Self::partial_match(generated, form)))
                .fold(
                    (close, matched),
                    |best, form| if form.1 > best.1 { form } else { best },
                );
            state.forcing = form.iter().skip(begun).copied().collect();
            if let Some(next) = state.forcing.pop_front() {
                force(logits, next);
            }
            return;
        }
        let top = argmax(logits);
        let mut starts: Vec<u32> = self
            .tokens
            .closes()
            .filter_map(|c| c.first().copied())
            .collect();
        // (Counted once each where they are summed.)
        starts.sort_unstable();
        starts.dedup();
        let wants_to_end = starts.contains(&top) || self.tokens.eos.contains(&top);
        // A wait must leave room to think after it (one that fills the cap is cut at once).
        let wait = self.wait(state, false);
        let fits = !wait.is_empty() && thought + wait.len() < cap;
        // Below the minimum the model thinks on, waits or not; past it, a wait owed that no
        // longer fits lets it end.
        let may_wait = !state.details.waits_ignored
            && (thought < self.min_thinking || (state.details.waits < self.max_waits && fits));
        if may_wait {
            // While a wait is owed, the model may neither start the delimiter nor stop.
            let ends: Vec<u32> = starts
                .iter()
                .filter(|_| matched == 0)
                .chain(&self.tokens.eos)
                .copied()
                .collect();
            // Where the model would have ended, a wait: greedily, where ending was its first
            // choice; sampling, as often as it would have drawn an ending.
            let ends_here = if self.temperature > 0.0 {
                let max = logits
                    .get(top as usize)
                    .copied()
                    .unwrap_or(f32::NEG_INFINITY);
                let p = probability_of(logits, &ends, max, self.temperature, self.top_p);
                let seed = self.seed;
                let rng = state
                    .rng
                    .get_or_insert_with(|| fastrand::Rng::with_seed(seed));
                p > 0.0 && rng.f64() < p
            } else {
                wants_to_end
            };
            // The ending the model picked (the likeliest, sampling).
            let likeliest = ends.iter().copied().max_by(|&a, &b| {
                let logit = |id: u32| logits.get(id as usize).copied().unwrap_or(f32::MIN);
                logit(a).total_cmp(&logit(b))
            });
            // What it held before the delimiter ("." of ".</"), said before the wait.
            let lead = if ends_here {
                self.tokens
                    .leads
                    .iter()
                    .find(|(start, _)| Some(*start) == likeliest)
                    .map(|(_, lead)| lead.clone())
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            // After whitespace (the model's, or the lead's: "\n" of "\n</"), the wait is
            // written without a space of its own, as resubmission writes it.
            let after_blank = lead.last().or(generated.last()).is_some_and(|id| {
                self.tokens.blanks.contains(id) || self.tokens.line_ends.contains(id)
            });
            let wait = self.wait(state, after_blank);
            let fits = fits && thought + lead.len() + wait.len() < cap;
            // Ending at once after the wait (nothing but whitespace between), after
            // MAX_IDLE_WAITS of those running: the model will not think on, and it is let end.
            let idle = ends_here
                && state.wait_end.is_some_and(|end| {
                    generated
                        .get(end..)
                        .is_some_and(|since| since.iter().all(|id| self.tokens.blanks.contains(id)))
                });
            if idle && state.idle_waits + 1 >= MAX_IDLE_WAITS {
                state.details.waits_ignored = true;
                // It ends here, as drawn: the ending written whole (sampling, the sampler
                // would draw again, and might think on under a minimum no longer kept).
                let form = likeliest
                    .filter(|id| !self.tokens.eos.contains(id))
                    .and_then(|id| self.tokens.closes().find(|c| c.first() == Some(&id)));
                state.forcing = match form {
                    Some(form) => form.iter().copied().collect(),
                    None => close.iter().skip(matched).copied().collect(),
                };
                if let Some(next) = state.forcing.pop_front() {
                    force(logits, next);
                }
                return;
            }
            ends.iter().for_each(|&id| ban(logits, id));
            if ends_here && fits {
                state.idle_waits = if idle { state.idle_waits + 1 } else { 0 };
                state.wait_end = Some(thought + lead.len() + wait.len());
                state.details.waits += 1;
                state.forcing = lead.into_iter().chain(wait).collect();
                if let Some(next) = state.forcing.pop_front() {
                    force(logits, next);
                }
            }
            return;
        }
        if self.temperature <= 0.0 && self.tokens.eos.contains(&top) {
            // Stopping without the delimiter would lose the answer: close the thinking instead
            // (sampling, the end of sequence's probability goes to the delimiter below).
            state.forcing = close.iter().skip(matched).copied().collect();
            if let Some(next) = state.forcing.pop_front() {
                force(logits, next);
            }
        } else if let Some(&next) = close.get(matched) {
            // An end of sequence the model might sample would lose the answer too: its
            // probability goes to the delimiter's next token instead.
            move_probability(logits, &self.tokens.eos, next, self.temperature);
        }
    }

    /// The wait string said next (they are said in rotation), as written after whitespace
    /// where `after_blank`.
    fn wait(&self, state: &ForcingState, after_blank: bool) -> Vec<u32> {
        let at = state.details.waits % self.tokens.waits.len().max(1);
        let bare = after_blank
            .then(|| self.tokens.bare_waits.get(at))
            .flatten()
            .filter(|bare| !bare.is_empty());
        bare.or_else(|| self.tokens.waits.get(at))
            .cloned()
            .unwrap_or_default()
    }
}

/// The probability a sampler at `temperature` (positive) within `top_p` draws one of the `ids`
/// from `logits` ([`ponder_engine::draw_probability`]); `max` is the largest logit (the caller
/// found it with the most likely token), for a first look that needs no pass over them.
pub(super) fn probability_of(
    logits: &[f32],
    ids: &[u32],
    max: f32,
    temperature: f64,
    top_p: Option<f64>,
) -> f64 {
    if !max.is_finite() {
        return 0.0;
    }
    // Most steps the endings are far below the favourite (e^-40 of it at most): nothing to
    // draw, and no pass of exponentials over the vocabulary.
    let best_end = ids
        .iter()
        .filter_map(|&id| logits.get(id as usize))
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    if f64::from(best_end - max) / temperature < -40.0 {
        return 0.0;
    }
    ponder_engine::draw_probability(logits, ids, temperature, None, top_p)
}

/// Moves the probability the `from` tokens have at `temperature` (the one the sampler applies
/// after the logits processors) onto `to`, as if drawing any of them drew `to`, and bans them.
/// Decoding greedily (temperature 0) they are only banned: the most likely token stays so.
fn move_probability(logits: &mut [f32], from: &[u32], to: u32, temperature: f64) {
    if temperature > 0.0 {
        let t = temperature as f32;
        let mass = from
            .iter()
            .filter(|&&id| id != to)
            .filter_map(|&id| logits.get(id as usize).map(|l| l / t))
            .fold(f32::NEG_INFINITY, log_add_exp);
        if mass.is_finite() {
            if let Some(l) = logits.get_mut(to as usize) {
                *l = t * log_add_exp(*l / t, mass);
            }
        }
    }
    for &id in from.iter().filter(|&&id| id != to) {
        ban(logits, id);
    }
}

pub(super) fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_value = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_value {
            best_value = v;
            best = i;
        }
    }
    u32::try_from(best).unwrap_or(0)
}

/// `ln(e^a + e^b)`, exact when either is minus infinity.
fn log_add_exp(a: f32, b: f32) -> f32 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if lo == f32::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

fn ban(logits: &mut [f32], id: u32) {
    if let Some(l) = logits.get_mut(id as usize) {
        *l = f32::NEG_INFINITY;
    }
}

fn force(logits: &mut [f32], id: u32) {
    for (i, l) in logits.iter_mut().enumerate() {
        if i != id as usize {
            *l = f32::NEG_INFINITY;
        }
    }
    if let Some(l) = logits.get_mut(id as usize) {
        if !l.is_finite() {
            *l = 0.0;
        }
    }
}

impl LogitsProcessor for ForcingProcessor {
    fn process(&self, logits: &mut [f32], context: &[u32]) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let prompt_len = *state.prompt_len.get_or_insert(context.len());
        let generated = context.get(prompt_len..).unwrap_or_default();
        while state.seen < generated.len() {
            state.seen += 1;
            let upto = generated.get(..state.seen).unwrap_or_default();
            self.observe(&mut state, upto);
        }
        self.decide(&mut state, logits, generated);
    }

    fn limit_max_tokens(&self, granted: usize) {
        self.granted.fetch_min(granted, Ordering::Relaxed);
    }

    /// The grant, where it lowered the thinking cap and that mattered: thinking was forced to
    /// end at the lowered cap, or ended with a wait still owed that would have fit under the
    /// configured cap. Thinking that ended of itself (no wait owed, or waits given up on an
    /// idle model) was not shortened.
    fn shortened_by(&self) -> Option<usize> {
        let granted = self.granted.load(Ordering::Relaxed);
        if self.thinking_cap() >= self.max_thinking {
            return None;
        }
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let details = &state.details;
        let wait_refused = state.thinking_end.is_some()
            && details.waits < self.max_waits
            && !details.waits_ignored
            && details.thinking_tokens + self.wait(&state, false).len() < self.max_thinking;
        (details.forced_end || wait_refused).then_some(granted)
    }
}
