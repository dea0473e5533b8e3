//! [`Metered`]: the one place where tokens, calls and time are counted and budgets enforced.
//!
//! Concurrency: any number of calls may be in flight through one `Metered`; each reserves its
//! worst case under a short mutex (never held across an `.await`) before it is sent and settles
//! to its real usage when it returns. A call that would be refused or shortened only because
//! of what calls in flight have reserved waits for them to settle (they rarely spend their
//! worst case) instead of being refused or shortened on their account; only what is spent, or
//! reserved by nobody, cuts a call. Cancellation: dropping a call's future releases its
//! reservation (an RAII guard); the tokens the backend spent on it are then not counted, nor
//! those of a call given up at its deadline (over HTTP: what the server wrote is not known).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::backend::{
    Backend, Capabilities, FinishReason, Generation, GenerationRequest, Prompt, TokenizeInput,
};
use crate::budget::{Budget, Resource};
use crate::error::{Error, Result};
use crate::events::{EventKind, Events};
use crate::usage::Usage;

/// Shared counters and the budget they are held to. Cheap to clone through `Arc`.
#[derive(Debug)]
pub struct Meter {
    budget: Budget,
    started: Instant,
    state: Mutex<MeterState>,
    /// Woken whenever a reservation is released.
    released: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct MeterState {
    used: Usage,
    reserved_tokens: u64,
    reserved_completion_tokens: u64,
    reserved_calls: u64,
    /// The budget that last shortened a call that then ran to its grant.
    cut_by: Option<Resource>,
    /// Calls a budget refused, and the budget that refused the last.
    refused: u64,
    refused_by: Option<Resource>,
}

impl Meter {
    /// A meter holding work to `budget`; its clock starts now.
    pub fn new(budget: Budget) -> Arc<Self> {
        Arc::new(Self {
            budget,
            started: Instant::now(),
            state: Mutex::new(MeterState::default()),
            released: tokio::sync::Notify::new(),
        })
    }

    /// The budget.
    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// The budget that last shortened a call made through this meter (fewer `max_tokens` than
    /// asked) which then ran to the tokens granted, or a logits processor of which re-planned for
    /// it, or that a deadline ended: a completion that "hit max_tokens" then hit the budget. It is
    /// this meter's budget or one further out (a nested context's meter learns of its parent's
    /// cuts of its own calls). None if none did.
    pub fn cut_by(&self) -> Option<Resource> {
        self.lock().cut_by
    }

    /// How many calls made through this meter a budget refused (this meter's or one further
    /// out), and the budget that refused the last: a caller whose calls fail one by one (a
    /// scorer's reads, each left unscored) learns from it that the budget stopped some.
    pub fn refused(&self) -> (u64, Option<Resource>) {
        let state = self.lock();
        (state.refused, state.refused_by)
    }

    /// Notes that `resource`'s budget cut a call short ([`Meter::cut_by`]) where no call it
    /// shortened showed it ([`crate::Context::note_budget_cut`]).
    pub(crate) fn note_cut(&self, resource: Resource) {
        self.lock().cut_by = Some(resource);
    }

    fn note_refusal(&self, resource: Resource) {
        let mut state = self.lock();
        state.refused += 1;
        state.refused_by = Some(resource);
    }

    /// What has been spent so far; `elapsed_ms` is the time since the meter was made.
    pub fn usage(&self) -> Usage {
        let mut used = self.lock().used;
        used.elapsed_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        used
    }

    /// Completion tokens that may still be spent (counting reservations), if limited.
    pub fn remaining_completion_tokens(&self) -> Option<u64> {
        let state = self.lock();
        let by_total = self
            .budget
            .max_tokens
            .map(|max| max.saturating_sub(state.used.total_tokens() + state.reserved_tokens));
        let by_completion = self.budget.max_completion_tokens.map(|max| {
            max.saturating_sub(state.used.completion_tokens + state.reserved_completion_tokens)
        });
        crate::budget::min_limit(by_total, by_completion)
    }

    /// What the budget of `resource` leaves unspent, if it is limited: [`Resource::Tokens`],
    /// prompt and completion tokens under `max_tokens`; [`Resource::CompletionTokens`],
    /// completion tokens under `max_completion_tokens` alone. Calls in flight are not counted
    /// (they may give back most of what they reserved, and a call sent now waits for them to
    /// settle before it is shortened: see [`Metered`]), so this is what a call planned now
    /// may be granted at most. Calls and wall time: `None`.
    pub fn remaining(&self, resource: Resource) -> Option<u64> {
        let state = self.lock();
        match resource {
            Resource::Tokens => self
                .budget
                .max_tokens
                .map(|max| max.saturating_sub(state.used.total_tokens())),
            Resource::CompletionTokens => self
                .budget
                .max_completion_tokens
                .map(|max| max.saturating_sub(state.used.completion_tokens)),
            Resource::Calls | Resource::WallTime => None,
        }
    }

    /// Completion tokens not yet spent (reservations not counted: calls in flight may give
    /// theirs back), if limited.
    pub fn unspent_completion_tokens(&self) -> Option<u64> {
        crate::budget::min_limit(
            self.remaining(Resource::Tokens),
            self.remaining(Resource::CompletionTokens),
        )
    }

    /// When this meter's wall-time budget runs out, if it has one. Work that is not a backend
    /// call (running code, say) should end at [`crate::Context::deadline`], which reads the
    /// budgets further out too.
    pub fn deadline(&self) -> Option<Instant> {
        self.budget
            .max_wall_ms
            .map(|ms| self.started + Duration::from_millis(ms))
    }

    fn lock(&self) -> MutexGuard<'_, MeterState> {
        // A poisoned meter only means a panic elsewhere; the counters are still meaningful.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reserves room for a call of `prompt_tokens` and `n` completions of up to `max_tokens`,
    /// made as `calls` requests (`n` where the backend fans out), returning the `max_tokens`
    /// that fits (at most the one asked for) and, when that is fewer, the budget that bound it.
    /// A call that does not fit whole while others hold reservations waits for them to be
    /// released (up to `deadline`: the call's, this meter's or a sooner one further out), then
    /// tries again.
    async fn reserve(
        self: &Arc<Self>,
        prompt_tokens: u64,
        n: u64,
        max_tokens: u64,
        calls: u64,
        deadline: Option<Instant>,
    ) -> Result<(Reservation, u64, Option<Resource>)> {
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::BudgetExhausted {
                    resource: Resource::WallTime,
                });
            }
            let released = self.released.notified();
            tokio::pin!(released);
            {
                let mut state = self.lock();
                let fits = self.fit(&state, prompt_tokens, n, max_tokens, calls);
                let whole = matches!(fits, Ok((_, None)));
                let others = state.reserved_tokens > 0
                    || state.reserved_completion_tokens > 0
                    || state.reserved_calls > 0;
                if whole || !others {
                    let (fit, bound) = fits?;
                    // Saturating: unlimited, a `max_tokens` near `usize::MAX` times `n` would
                    // wrap, and the call reserve next to nothing.
                    let completion_tokens = n.saturating_mul(fit);
                    let reservation = Reservation {
                        meter: Arc::clone(self),
                        tokens: prompt_tokens.saturating_add(completion_tokens),
                        completion_tokens,
                        calls,
                    };
                    state.reserved_tokens =
                        state.reserved_tokens.saturating_add(reservation.tokens);
                    state.reserved_completion_tokens = state
                        .reserved_completion_tokens
                        .saturating_add(reservation.completion_tokens);
                    state.reserved_calls = state.reserved_calls.saturating_add(calls);
                    return Ok((reservation, fit, bound));
                }
                // Registered before the lock is let go, so no release is missed.
                released.as_mut().enable();
            }
            match deadline {
                Some(d) => {
                    // At the deadline the loop's first check refuses it.
                    let _ = tokio::time::timeout_at(d.into(), released).await;
                }
                None => released.await,
            }
        }
    }

    /// The `max_tokens` that fits a call in what `state` leaves (at most the one asked for)
    /// and, when that is fewer, the budget that bound it; an error when nothing fits.
    fn fit(
        &self,
        state: &MeterState,
        prompt_tokens: u64,
        n: u64,
        max_tokens: u64,
        calls: u64,
    ) -> Result<(u64, Option<Resource>)> {
        if let Some(max) = self.budget.max_calls {
            if state
                .used
                .calls
                .saturating_add(state.reserved_calls)
                .saturating_add(calls)
                > max
            {
                return Err(Error::BudgetExhausted {
                    resource: Resource::Calls,
                });
            }
        }
        let mut fit = max_tokens;
        // The budget that shortened it, if one did.
        let mut bound = None;
        if let Some(max) = self.budget.max_tokens {
            let left = max.saturating_sub(
                state
                    .used
                    .total_tokens()
                    .saturating_add(state.reserved_tokens),
            );
            let for_completions = left.saturating_sub(prompt_tokens) / n.max(1);
            if left < prompt_tokens || for_completions == 0 {
                return Err(Error::BudgetExhausted {
                    resource: Resource::Tokens,
                });
            }
            if for_completions < fit {
                fit = for_completions;
                bound = Some(Resource::Tokens);
            }
        }
        if let Some(max) = self.budget.max_completion_tokens {
            let left = max.saturating_sub(
                state
                    .used
                    .completion_tokens
                    .saturating_add(state.reserved_completion_tokens),
            );
            let for_completions = left / n.max(1);
            if for_completions == 0 {
                return Err(Error::BudgetExhausted {
                    resource: Resource::CompletionTokens,
                });
            }
            if for_completions < fit {
                fit = for_completions;
                bound = Some(Resource::CompletionTokens);
            }
        }
        Ok((fit, bound))
    }
}

/// Room held for one call in flight; released on drop, settled by [`Reservation::settle`].
struct Reservation {
    meter: Arc<Meter>,
    tokens: u64,
    completion_tokens: u64,
    calls: u64,
}

impl Reservation {
    fn settle(self, usage: &Usage) {
        let mut state = self.meter.lock();
        // Saturating, as `Usage` adds: a count near 2^64 from a server would wrap, and a spent
        // budget look unspent.
        let used = &mut state.used;
        used.prompt_tokens = used.prompt_tokens.saturating_add(usage.prompt_tokens);
        used.cached_prompt_tokens = used
            .cached_prompt_tokens
            .saturating_add(usage.cached_prompt_tokens);
        used.completion_tokens = used
            .completion_tokens
            .saturating_add(usage.completion_tokens);
        // A backend that fans one generation out over several requests says so in its usage.
        used.calls = used.calls.saturating_add(usage.calls);
        // Drop runs next and releases the reservation.
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        {
            let mut state = self.meter.lock();
            state.reserved_tokens = state.reserved_tokens.saturating_sub(self.tokens);
            state.reserved_completion_tokens = state
                .reserved_completion_tokens
                .saturating_sub(self.completion_tokens);
            state.reserved_calls = state.reserved_calls.saturating_sub(self.calls);
        }
        self.meter.released.notify_waiters();
    }
}

/// How long past the wall-time deadline a call is waited for before it is dropped: a backend
/// that ends decoding at the deadline returns within a token or two.
pub(crate) const DEADLINE_GRACE: Duration = Duration::from_secs(2);

/// A backend whose every call is counted by a [`Meter`] and held to its budget.
///
/// Prompts are tokenized here once (when the inner backend has a tokenizer) and passed on as
/// token ids, so the count is exact and the inner backend does not tokenize again.
#[derive(Debug, Clone)]
pub struct Metered<B> {
    inner: B,
    meter: Arc<Meter>,
    limited: Option<Arc<AtomicBool>>,
    events: Events,
    report_calls: bool,
}

impl<B: Backend> Metered<B> {
    /// Meters `inner` against a fresh meter holding `budget`.
    pub fn new(inner: B, budget: Budget) -> Self {
        Self {
            inner,
            meter: Meter::new(budget),
            limited: None,
            events: Events::off(),
            report_calls: false,
        }
    }

    /// Meters `inner` with an existing (shared) meter.
    pub fn with_meter(inner: B, meter: Arc<Meter>) -> Self {
        Self {
            inner,
            meter,
            limited: None,
            events: Events::off(),
            report_calls: false,
        }
    }

    /// Sets `flag` whenever this budget refuses a call, shortens one (fewer `max_tokens` than
    /// asked) that then runs to the shorter limit (or a logits processor of which re-planned for
    /// it, as budget forcing's does), or ends one at its deadline: how the batch runner tells a problem cut short by
    /// the run's budget from one that finished within its own.
    pub fn noting_limits(mut self, flag: Arc<AtomicBool>) -> Self {
        self.limited = Some(flag);
        self
    }

    /// Reports to `events` each call (what it cost, what this meter has counted) and each time
    /// this meter's budget refuses, shortens or ends one.
    pub fn with_events(mut self, events: Events) -> Self {
        self.events = events;
        self.report_calls = true;
        self
    }

    /// Reports to `events` only the times this meter's budget refuses, shortens or ends a call
    /// (a budget shared by many, whose calls a meter nearer the caller reports).
    pub fn with_limit_events(mut self, events: Events) -> Self {
        self.events = events;
        self.report_calls = false;
        self
    }

    fn limited(&self, resource: Resource, max_tokens: Option<usize>) {
        self.events.emit(
            "",
            EventKind::Limited {
                resource,
                max_tokens,
            },
        );
    }

    fn note_limit(&self) {
        if let Some(flag) = &self.limited {
            flag.store(true, Ordering::Relaxed);
        }
    }

    /// The meter.
    pub fn meter(&self) -> &Arc<Meter> {
        &self.meter
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }
}

#[async_trait]
impl<B: Backend> Backend for Metered<B> {
    async fn generate(&self, mut request: GenerationRequest) -> Result<Generation> {
        let caps = self.inner.capabilities();
        // Prompts are tokenized once here and sent as token ids; a backend that can tokenize
        // text but not this kind of prompt (a chat prompt on a server without its template)
        // gets the prompt as it is, bounded by bytes below.
        // The call ends at this meter's deadline, or the request's own if sooner.
        let deadline = self.meter.deadline();
        if let Some(deadline) = deadline {
            request.deadline = Some(request.deadline.map_or(deadline, |d| d.min(deadline)));
        }
        let out_of_time = || {
            self.note_limit();
            self.limited(Resource::WallTime, None);
            self.meter.note_refusal(Resource::WallTime);
            Error::BudgetExhausted {
                resource: Resource::WallTime,
            }
        };
        if caps.tokenizer && !matches!(request.prompt, Prompt::Tokens(_)) {
            // Within the call's time, as the call is: a tokenizer behind a slow server (or an
            // engine busy with another prompt) is no way around the deadline.
            let tokenized = self.inner.tokenize(TokenizeInput::Prompt(&request.prompt));
            let tokenized = match request.deadline {
                Some(by) => match tokio::time::timeout_at(by.into(), tokenized).await {
                    Ok(tokenized) => tokenized,
                    Err(_) if deadline == Some(by) => return Err(out_of_time()),
                    Err(_) => {
                        self.meter.note_refusal(Resource::WallTime);
                        return Err(Error::out_of_time());
                    }
                },
                None => tokenized.await,
            };
            match tokenized {
                Ok(ids) => request.prompt = Prompt::Tokens(ids),
                Err(Error::Unsupported { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        // The context window bounds a call as a budget does: a completion that would not fit
        // after the prompt is asked for what fits, and ends there (`Length`) rather than failing
        // the call; logits processors (budget forcing) are told, to end their thinking in time.
        // A prompt that leaves no room is `PromptTooLong`, from every backend alike (a server
        // would answer it with an HTTP error of its own words).
        if let (Some(context), Prompt::Tokens(ids)) = (caps.context_tokens, &request.prompt) {
            let room = context.saturating_sub(ids.len());
            if room == 0 {
                return Err(Error::PromptTooLong {
                    prompt_tokens: ids.len(),
                    max_tokens: request.max_tokens,
                    context_tokens: context,
                });
            }
            if request.max_tokens > room {
                tracing::debug!(
                    prompt_tokens = ids.len(),
                    asked = request.max_tokens,
                    room,
                    "max_tokens shortened to the context window"
                );
                request.max_tokens = room;
                for processor in &request.logits_processors {
                    processor.limit_max_tokens(room);
                }
            }
        }
        let prompt_tokens = match &request.prompt {
            Prompt::Tokens(ids) => ids.len() as u64,
            // No tokenizer: a token is at least one byte, so bytes bound the count from above.
            Prompt::Text(text) => text.len() as u64,
            Prompt::Chat {
                messages,
                assistant_prefix,
            } => {
                messages
                    .iter()
                    .map(|m| m.content.len() as u64 + 8)
                    .sum::<u64>()
                    + assistant_prefix.len() as u64
            }
        };
        let past = |deadline: Option<Instant>| deadline.is_some_and(|d| Instant::now() >= d);
        let (reservation, fit, bound) = self
            .meter
            .reserve(
                prompt_tokens,
                request.n as u64,
                request.max_tokens as u64,
                // A backend that fans `n` out makes `n` requests (after one that tried them
                // all, where it may).
                if request.n <= 1
                    || (caps.native_n && caps.max_native_n.is_none_or(|max| request.n <= max))
                {
                    1
                } else {
                    request.n as u64 + u64::from(caps.tries_n)
                },
                request.deadline,
            )
            .await
            // Its only errors are exhausted budgets.
            .inspect_err(|e| {
                if let Error::BudgetExhausted { resource } = e {
                    self.meter.note_refusal(*resource);
                }
                // Out of time at a sooner deadline further out (waiting for this budget's
                // reservations) is that meter's to note.
                if e.is_out_of_time() && !past(deadline) {
                    return;
                }
                self.note_limit();
                if let Error::BudgetExhausted { resource } = e {
                    self.limited(*resource, None);
                }
            })?;
        let granted = usize::try_from(fit).unwrap_or(usize::MAX);
        // A shortened call limits its problem only if the limit could have changed what it
        // wrote: it ran to the tokens granted, or its logits processors (budget forcing) were
        // told to end sooner. One that stopped of itself within the grant is whole.
        // The processors told of this budget's grant, asked after the call whether it made
        // their completion end sooner.
        let mut told = Vec::new();
        if let Some(resource) = bound {
            self.limited(resource, Some(granted));
            for processor in &request.logits_processors {
                processor.limit_max_tokens(granted);
                told.push(Arc::clone(processor));
            }
        }
        request.max_tokens = granted;
        let n = request.n;
        // The deadline the call was sent with: this meter's, or sooner one further out.
        let call_deadline = request.deadline;
        let sent = Instant::now();
        let call = self.inner.generate(request);
        // The backend ends the call at the deadline and returns what it wrote (in process), or
        // gives up there (over HTTP); one that does neither is stopped a little later, and what
        // it wrote is lost uncounted. (Not charged what it reserved: an error at the deadline
        // may come from a call never sent, waiting for its turn or a reservation, and nested
        // meters reserved different amounts.)
        let outcome = match deadline {
            Some(deadline) => {
                match tokio::time::timeout_at((deadline + DEADLINE_GRACE).into(), call).await {
                    Ok(outcome) => outcome,
                    Err(_) => return Err(out_of_time()),
                }
            }
            None => call.await,
        };
        let mut generation = match outcome {
            // The backend gave up at this meter's deadline. (At a deadline an outer meter set,
            // it is that meter's to note: a run's meter passes a problem's own out-of-time on.)
            Err(Error::BudgetExhausted {
                resource: Resource::WallTime,
            }) if past(deadline) => return Err(out_of_time()),
            // Refused further out (a parent context's budget).
            Err(Error::BudgetExhausted { resource }) => {
                self.meter.note_refusal(resource);
                return Err(Error::BudgetExhausted { resource });
            }
            outcome => outcome?,
        };
        // No prompt has 0 tokens: a backend that says so could not count them (a server reply
        // without usage). The estimate above (exact for token ids, an upper bound otherwise)
        // stands in, so the prompt is not spent for free. A backend that left the completion
        // tokens out of its usage (one of a library user's own) is charged its choices' own.
        // Every generation is at least one call. The usage returned is the usage counted.
        if generation.usage.prompt_tokens == 0 {
            generation.usage.prompt_tokens = prompt_tokens;
        }
        if generation.usage.completion_tokens == 0 {
            generation.usage.completion_tokens = generation
                .choices
                .iter()
                .map(|c| c.completion_tokens as u64)
                .sum();
        }
        generation.usage.calls = generation.usage.calls.max(1);
        reservation.settle(&generation.usage);
        // Cut at the deadline (a text ended there, or choices not begun): what it wrote is the
        // problem's best so far, stopped by wall time.
        let timed_out = past(deadline)
            && (generation.choices.len() < n
                || generation
                    .choices
                    .iter()
                    .any(|c| c.finish_reason == FinishReason::Length));
        if timed_out {
            self.note_limit();
            self.limited(Resource::WallTime, None);
            self.meter.lock().cut_by = Some(Resource::WallTime);
            generation.cut_by = Some(Resource::WallTime);
        } else if let Some(resource) = bound.filter(|_| {
            // A text that ended at a deadline further out (a problem's own wall time, above a
            // run's meter) ran short of the grant: that deadline's cut, not this budget's. A
            // processor that ended its completion sooner for a grant says whose (the smallest
            // it was told of: a budget further in may have granted less).
            let ended_by_deadline = past(call_deadline);
            told.iter().any(|p| p.shortened_by() == Some(granted))
                || generation.choices.iter().any(|c| {
                    c.finish_reason == FinishReason::Length
                        && (!ended_by_deadline || c.completion_tokens >= granted)
                })
        }) {
            self.note_limit();
            self.meter.lock().cut_by = Some(resource);
            generation.cut_by = Some(resource);
        } else if let Some(resource) = generation.cut_by {
            // A budget further out (a parent context's) cut this call: it cut this context's
            // solve too, which a strategy reads from this meter.
            self.meter.lock().cut_by = Some(resource);
        }
        if self.report_calls && self.events.is_on() {
            self.events.emit(
                "",
                EventKind::Call {
                    n,
                    prompt_tokens: generation.usage.prompt_tokens,
                    completion_tokens: generation.usage.completion_tokens,
                    call_ms: u64::try_from(sent.elapsed().as_millis()).unwrap_or(u64::MAX),
                    spent: self.meter.usage().total_tokens(),
                },
            );
        }
        Ok(generation)
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
    use super::*;
    use crate::scripted::ScriptedBackend;

    /// A scripted backend that says it fans `n` out over `n` requests.
    #[derive(Debug)]
    struct FanOut(ScriptedBackend);

    #[async_trait]
    impl Backend for FanOut {
        async fn generate(&self, request: GenerationRequest) -> Result<Generation> {
            let n = request.n as u64;
            let mut generation = self.0.generate(request).await?;
            generation.usage.calls = n;
            Ok(generation)
        }

        fn capabilities(&self) -> Capabilities {
            Capabilities {
                native_n: false,
                ..self.0.capabilities()
            }
        }

        async fn tokenize(&self, input: TokenizeInput<'_>) -> Result<Vec<u32>> {
            self.0.tokenize(input).await
        }

        async fn detokenize(&self, ids: &[u32]) -> Result<String> {
            self.0.detokenize(ids).await
        }
    }

    /// A scripted backend that returns its choices with an empty usage, as a library user's
    /// own backend may.
    #[derive(Debug)]
    struct NoUsage(ScriptedBackend);

    #[async_trait]
    impl Backend for NoUsage {
        async fn generate(&self, request: GenerationRequest) -> Result<Generation> {
            let mut generation = self.0.generate(request).await?;
            generation.usage = Usage::default();
            Ok(generation)
        }

        fn capabilities(&self) -> Capabilities {
            self.0.capabilities()
        }

        async fn tokenize(&self, input: TokenizeInput<'_>) -> Result<Vec<u32>> {
            self.0.tokenize(input).await
        }

        async fn detokenize(&self, ids: &[u32]) -> Result<String> {
            self.0.detokenize(ids).await
        }
    }

    #[tokio::test]
    async fn a_backend_that_leaves_usage_empty_is_charged_its_choices_tokens() {
        let backend = Metered::new(
            NoUsage(ScriptedBackend::new(vec!["abcdef", "ghij"])),
            Budget::unlimited().with_max_completion_tokens(100),
        );
        let request = GenerationRequest::new(Prompt::Text("q".into()))
            .with_n(2)
            .with_max_tokens(8);
        let generation = backend.generate(request).await.unwrap();
        assert_eq!(generation.usage.completion_tokens, 10);
        assert_eq!(generation.usage.prompt_tokens, 1);
        assert_eq!(generation.usage.calls, 1);
        assert_eq!(backend.meter().usage().completion_tokens, 10);
    }

    /// Keeps the grant it was told of.
    #[derive(Default)]
    struct Granted(std::sync::atomic::AtomicUsize);

    impl crate::backend::LogitsProcessor for Granted {
        fn process(&self, _: &mut [f32], _: &[u32]) {}
        fn limit_max_tokens(&self, granted: usize) {
            self.0.store(granted, Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn processors_learn_when_the_budget_shortens_a_request() {
        let granted = Arc::new(Granted::default());
        let backend = Metered::new(
            ScriptedBackend::new(vec!["abcdefgh"]),
            Budget::unlimited().with_max_completion_tokens(5),
        );
        let request =
            GenerationRequest::new(Prompt::Text("q".into()))
                .with_max_tokens(10)
                .with_logits_processor(
                    Arc::clone(&granted) as Arc<dyn crate::backend::LogitsProcessor>
                );
        let generation = backend.generate(request).await.unwrap();
        assert_eq!(granted.0.load(Ordering::Relaxed), 5);
        assert_eq!(generation.choices[0].text, "abcde");
    }

    #[tokio::test]
    async fn a_completion_is_shortened_to_the_room_the_context_window_leaves() {
        // A window of 20 tokens (a byte a token): the 12-byte prompt leaves 8.
        let prompt = Prompt::Text("abcdefghijkl".into());
        let scripted = || ScriptedBackend::new(vec!["0123456789"]).with_context(20);
        let ask = || GenerationRequest::new(prompt.clone()).with_max_tokens(10);
        // The backend itself refuses what does not fit.
        assert!(matches!(
            scripted().generate(ask()).await,
            Err(Error::PromptTooLong { .. })
        ));
        let granted = Arc::new(Granted::default());
        let metered = Metered::new(scripted(), Budget::unlimited());
        let generation = metered
            .generate(ask().with_logits_processor(
                Arc::clone(&granted) as Arc<dyn crate::backend::LogitsProcessor>
            ))
            .await
            .unwrap();
        let choice = &generation.choices[0];
        assert_eq!(
            (choice.text.as_str(), choice.finish_reason),
            ("01234567", FinishReason::Length)
        );
        assert_eq!(granted.0.load(Ordering::Relaxed), 8);
        // Not the budget's doing: nothing says it was.
        assert_eq!(metered.meter().cut_by(), None);
        // A prompt that fills the window is refused unsent.
        let full = GenerationRequest::new(Prompt::Text("x".repeat(20))).with_max_tokens(10);
        assert!(matches!(
            Metered::new(scripted(), Budget::unlimited())
                .generate(full)
                .await,
            Err(Error::PromptTooLong { .. })
        ));
    }

    #[tokio::test]
    async fn the_deadline_ends_a_call_in_flight_and_refuses_the_next_and_says_so() {
        let events = crate::scripted::Recorder::new();
        let flag = Arc::new(AtomicBool::new(false));
        let backend = Metered::new(
            ScriptedBackend::new(vec!["a"; 2]).with_delay(Duration::from_secs(10)),
            Budget::unlimited().with_max_wall(Duration::from_millis(50)),
        )
        .with_events(events.events_of("p"))
        .noting_limits(Arc::clone(&flag));
        let request = || GenerationRequest::new(Prompt::Text("q".into()));
        let sent = Instant::now();
        let wall = |result: Result<Generation>| {
            matches!(
                result,
                Err(Error::BudgetExhausted {
                    resource: Resource::WallTime
                })
            )
        };
        // Ended at its deadline (with a grace for a backend that does not end it there
        // itself), not waited for.
        assert!(wall(backend.generate(request()).await));
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "{:?}",
            sent.elapsed()
        );
        assert!(flag.load(Ordering::Relaxed), "the limit is noted");
        // Past the deadline a call is refused before it is sent.
        assert!(wall(backend.generate(request()).await));
        let limited = EventKind::Limited {
            resource: Resource::WallTime,
            max_tokens: None,
        };
        assert_eq!(events.kinds("p"), [limited.clone(), limited]);
        let usage = backend.meter().usage();
        assert_eq!(
            (usage.total_tokens(), usage.calls),
            (0, 0),
            "nothing came back"
        );
    }

    /// A library user's backend that takes no notice of a request's deadline: each call
    /// takes 10 s.
    struct IgnoresDeadline(ScriptedBackend);

    #[async_trait]
    impl Backend for IgnoresDeadline {
        async fn generate(&self, mut request: GenerationRequest) -> Result<Generation> {
            request.deadline = None;
            tokio::time::sleep(Duration::from_secs(10)).await;
            self.0.generate(request).await
        }

        fn capabilities(&self) -> crate::Capabilities {
            self.0.capabilities()
        }

        async fn tokenize(&self, input: TokenizeInput<'_>) -> Result<Vec<u32>> {
            self.0.tokenize(input).await
        }
    }

    #[tokio::test]
    async fn a_backend_that_ignores_the_deadline_is_given_up_a_grace_after_it() {
        let backend = Metered::new(
            IgnoresDeadline(ScriptedBackend::new(vec!["a"])),
            Budget::unlimited().with_max_wall(Duration::from_millis(50)),
        );
        let sent = Instant::now();
        let result = backend
            .generate(GenerationRequest::new(Prompt::Text("q".into())))
            .await;
        let waited = sent.elapsed();
        assert!(
            matches!(
                result,
                Err(Error::BudgetExhausted {
                    resource: Resource::WallTime
                })
            ),
            "{result:?}"
        );
        // Waited for the grace past the deadline (the backend's reply may be on its way), no
        // longer.
        assert!(
            waited >= Duration::from_millis(50) + DEADLINE_GRACE - Duration::from_millis(20)
                && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        let usage = backend.meter().usage();
        assert_eq!(
            (usage.total_tokens(), usage.calls),
            (0, 0),
            "nothing came back"
        );
    }

    /// A backend that ends each call at its deadline with what it wrote by then (its whole
    /// scripted reply, stopped `Length`), as the in-process engine does.
    struct EndsAtDeadline(ScriptedBackend);

    #[async_trait]
    impl Backend for EndsAtDeadline {
        async fn generate(&self, request: GenerationRequest) -> Result<Generation> {
            if let Some(deadline) = request.deadline {
                tokio::time::sleep_until(deadline.into()).await;
            }
            let mut generation = self.0.generate(request).await?;
            for choice in &mut generation.choices {
                choice.finish_reason = FinishReason::Length;
            }
            Ok(generation)
        }

        fn capabilities(&self) -> crate::Capabilities {
            self.0.capabilities()
        }

        async fn tokenize(&self, input: TokenizeInput<'_>) -> Result<Vec<u32>> {
            self.0.tokenize(input).await
        }
    }

    #[tokio::test]
    async fn a_text_ended_at_a_deadline_further_out_is_not_this_budgets_cut() {
        // A run's meter (completion tokens: the call is granted 20 of its 50) below a
        // problem's (wall time). The text ends at the problem's deadline after 3 tokens: the
        // problem's wall time cut it, not the run's tokens.
        let run_cut = Arc::new(AtomicBool::new(false));
        let run = Metered::new(
            EndsAtDeadline(ScriptedBackend::new(vec!["abc"])),
            Budget::unlimited().with_max_completion_tokens(20),
        )
        .noting_limits(Arc::clone(&run_cut));
        let problem = Metered::new(
            run,
            Budget::unlimited().with_max_wall(Duration::from_millis(100)),
        );
        let generation = problem
            .generate(GenerationRequest::new(Prompt::Text("q".into())).with_max_tokens(50))
            .await
            .unwrap();
        assert_eq!(generation.choices[0].completion_tokens, 3);
        assert_eq!(generation.cut_by, Some(Resource::WallTime));
        assert!(
            !run_cut.load(Ordering::Relaxed),
            "the run's budget did not cut it"
        );
        assert_eq!(problem.inner().meter().cut_by(), None);
        assert_eq!(problem.meter().cut_by(), Some(Resource::WallTime));
    }

    #[tokio::test]
    async fn a_call_waiting_for_reservations_gives_up_at_a_sooner_deadline_further_out() {
        // A run's meter (15 tokens) holds 11 for a slow call in flight; another problem's call
        // (wall time 100 ms) does not fit whole beside it and waits. It ends at its problem's
        // deadline, not the grace after it, and the run's budget is not said to have cut it.
        let run_cut = Arc::new(AtomicBool::new(false));
        let run: Arc<dyn Backend> = Arc::new(
            Metered::new(
                ScriptedBackend::new(vec!["a", "b"]).with_delay(Duration::from_secs(3)),
                Budget::unlimited().with_max_tokens(15),
            )
            .noting_limits(Arc::clone(&run_cut)),
        );
        let ask = || GenerationRequest::new(Prompt::Text("q".into())).with_max_tokens(10);
        let slow = tokio::spawn({
            let run = Arc::clone(&run);
            async move { run.generate(ask()).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let problem = Metered::new(
            Arc::clone(&run),
            Budget::unlimited().with_max_wall(Duration::from_millis(100)),
        );
        let started = Instant::now();
        let result = problem.generate(ask()).await;
        assert!(
            result.as_ref().is_err_and(Error::is_out_of_time),
            "{result:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
        assert!(!run_cut.load(Ordering::Relaxed));
        assert!(slow.await.unwrap().is_ok());
    }

    /// Says the smallest grant it was told of ended its completion sooner, as budget forcing
    /// does where the grant lowered its thinking cap and thinking was forced to end there.
    #[derive(Default)]
    struct EndsSooner(std::sync::atomic::AtomicUsize);

    impl crate::backend::LogitsProcessor for EndsSooner {
        fn process(&self, _: &mut [f32], _: &[u32]) {}
        fn limit_max_tokens(&self, granted: usize) {
            self.0
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |g| {
                    Some(if g == 0 { granted } else { g.min(granted) })
                })
                .ok();
        }
        fn shortened_by(&self) -> Option<usize> {
            Some(self.0.load(Ordering::Relaxed)).filter(|&g| g > 0)
        }
    }

    #[tokio::test]
    async fn a_completion_ended_sooner_for_a_grant_is_the_cut_of_the_budget_that_granted_it() {
        // The problem's budget grants 30 of 50, the run's (below it) 20: the 2-token reply
        // ended sooner for the run's grant, which cut it; the problem's did not.
        let run_cut = Arc::new(AtomicBool::new(false));
        let problem_cut = Arc::new(AtomicBool::new(false));
        let run = Metered::new(
            ScriptedBackend::new(vec!["ab"]),
            Budget::unlimited().with_max_completion_tokens(20),
        )
        .noting_limits(Arc::clone(&run_cut));
        let problem = Metered::new(run, Budget::unlimited().with_max_completion_tokens(30))
            .noting_limits(Arc::clone(&problem_cut));
        let request = GenerationRequest::new(Prompt::Text("q".into()))
            .with_max_tokens(50)
            .with_logits_processor(Arc::new(EndsSooner::default()));
        let generation = problem.generate(request).await.unwrap();
        assert_eq!(generation.choices[0].text, "ab");
        assert_eq!(generation.cut_by, Some(Resource::CompletionTokens));
        assert!(run_cut.load(Ordering::Relaxed));
        assert!(!problem_cut.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn a_processor_that_ignores_a_grant_does_not_make_it_a_cut() {
        // Shortened to 5 of 10 tokens, with a processor that does not plan the completion (a
        // mode token's, a switch penalty's): the 2-token reply that stops within the grant is
        // whole.
        struct Ignores;
        impl crate::backend::LogitsProcessor for Ignores {
            fn process(&self, _: &mut [f32], _: &[u32]) {}
        }
        let limited = Arc::new(AtomicBool::new(false));
        let backend = Metered::new(
            ScriptedBackend::new(vec!["ab"]),
            Budget::unlimited().with_max_completion_tokens(5),
        )
        .noting_limits(Arc::clone(&limited));
        let request = GenerationRequest::new(Prompt::Text("q".into()))
            .with_max_tokens(10)
            .with_logits_processor(Arc::new(Ignores));
        let generation = backend.generate(request).await.unwrap();
        assert_eq!(generation.choices[0].text, "ab");
        assert_eq!(generation.cut_by, None);
        assert_eq!(backend.meter().cut_by(), None);
        assert!(!limited.load(Ordering::Relaxed));
    }

    /// A backend whose tokenizer takes ten seconds (behind a slow server, or an engine busy
    /// with another prompt).
    struct SlowTokenizer(ScriptedBackend);

    #[async_trait]
    impl Backend for SlowTokenizer {
        async fn generate(&self, request: GenerationRequest) -> Result<Generation> {
            self.0.generate(request).await
        }

        fn capabilities(&self) -> crate::Capabilities {
            self.0.capabilities()
        }

        async fn tokenize(&self, input: TokenizeInput<'_>) -> Result<Vec<u32>> {
            tokio::time::sleep(Duration::from_secs(10)).await;
            self.0.tokenize(input).await
        }
    }

    #[tokio::test]
    async fn the_deadline_holds_while_the_prompt_is_tokenized() {
        let backend = Metered::new(
            SlowTokenizer(ScriptedBackend::new(vec!["a"])),
            Budget::unlimited().with_max_wall(Duration::from_millis(50)),
        );
        let sent = Instant::now();
        let result = backend
            .generate(GenerationRequest::new(Prompt::Text("q".into())))
            .await;
        assert!(
            matches!(
                result,
                Err(Error::BudgetExhausted {
                    resource: Resource::WallTime
                })
            ),
            "{result:?}"
        );
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "{:?}",
            sent.elapsed()
        );
        // A request's own deadline too.
        let backend = Metered::new(
            SlowTokenizer(ScriptedBackend::new(vec!["a"])),
            Budget::unlimited(),
        );
        let request = GenerationRequest::new(Prompt::Text("q".into()))
            .with_deadline(std::time::Instant::now() + Duration::from_millis(50));
        let result = backend.generate(request).await;
        assert!(
            matches!(&result, Err(e) if e.is_out_of_time()),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_call_that_fits_only_without_others_reservations_waits_for_them() {
        let flag = Arc::new(AtomicBool::new(false));
        // Ten completion tokens; each call asks for eight, the first spends two.
        let backend = Metered::new(
            ScriptedBackend::new(vec!["ab", "cdefgh", "ijklmnop"])
                .with_delay(Duration::from_millis(100)),
            Budget::unlimited().with_max_completion_tokens(10),
        )
        .noting_limits(Arc::clone(&flag));
        let request = || GenerationRequest::new(Prompt::Text("q".into())).with_max_tokens(8);
        let first = backend.generate(request());
        let second = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            backend.generate(request()).await
        };
        let (first, second) = tokio::join!(first, second);
        // Not shortened to the two tokens the first call's reservation left: it waited.
        assert_eq!(first.unwrap().choices[0].text, "ab");
        assert_eq!(second.unwrap().choices[0].text, "cdefgh");
        assert!(!flag.load(Ordering::Relaxed));
        assert_eq!(backend.meter().usage().completion_tokens, 8);
        // What is spent does cut: two tokens are left, and the call runs to them.
        let third = backend.generate(request()).await.unwrap();
        assert_eq!(third.choices[0].text, "ij");
        assert!(flag.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn a_shortened_call_that_stops_within_its_grant_is_not_cut() {
        let flag = Arc::new(AtomicBool::new(false));
        let backend = Metered::new(
            ScriptedBackend::new(vec!["abc", "abcdefgh"]),
            Budget::unlimited().with_max_completion_tokens(10),
        )
        .noting_limits(Arc::clone(&flag));
        let request = || GenerationRequest::new(Prompt::Text("q".into())).with_max_tokens(20);
        // Granted ten of twenty, it stopped after three: whole.
        let generation = backend.generate(request()).await.unwrap();
        assert_eq!(generation.choices[0].finish_reason, FinishReason::Stop);
        assert!(!flag.load(Ordering::Relaxed));
        assert_eq!(backend.meter().cut_by(), None);
        // Granted seven, it ran to them: cut.
        let generation = backend.generate(request()).await.unwrap();
        assert_eq!(generation.choices[0].text, "abcdefg");
        assert!(flag.load(Ordering::Relaxed));
        assert_eq!(backend.meter().cut_by(), Some(Resource::CompletionTokens));
    }

    #[tokio::test]
    async fn a_fanned_out_request_counts_and_reserves_its_requests() {
        let backend = Metered::new(
            FanOut(ScriptedBackend::new(vec!["a"; 8])),
            Budget::unlimited().with_max_calls(3),
        );
        let request = |n| GenerationRequest::new(Prompt::Text("q".into())).with_n(n);
        // Eight requests do not fit in three calls: refused before any is sent.
        assert!(matches!(
            backend.generate(request(8)).await,
            Err(Error::BudgetExhausted {
                resource: Resource::Calls
            })
        ));
        backend.generate(request(2)).await.unwrap();
        assert_eq!(backend.meter().usage().calls, 2);
        backend.generate(request(1)).await.unwrap();
        assert!(backend.generate(request(1)).await.is_err());
        assert_eq!(backend.meter().usage().calls, 3);
    }
}
