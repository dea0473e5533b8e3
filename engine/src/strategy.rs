//! The [`Strategy`] trait and the [`Context`] a solve runs in.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::budget::Budget;
use crate::error::Result;
use crate::events::{EventKind, Events};
use crate::metered::{Meter, Metered};
use crate::problem::Problem;
use crate::solution::{Solution, StopReason};

/// A way of spending inference compute on one problem.
///
/// Implementations must be safe to drop at any `.await` (cancellation is drop) and must turn
/// [`crate::Error::BudgetExhausted`] from the backend into a [`crate::StopReason`] with the best
/// answer so far.
#[async_trait]
pub trait Strategy: Send + Sync {
    /// The strategy's config `kind` (`direct`, `best_of_n`, ...).
    fn name(&self) -> &'static str;

    /// Solves `problem` with the backend (and budget) of `cx`.
    async fn solve(&self, problem: &Problem, cx: &Context) -> Result<Solution>;

    /// The strategy split in a cheap stage and a dear one, when it has that shape (the router:
    /// a short answer, then thinking). A run under [`crate::Allocation::Triage`] needs it.
    fn staged(&self) -> Option<&dyn Staged> {
        None
    }

    /// Whether `completion`, the text of a solution of this strategy, states its answer (in
    /// `\boxed{}` or behind an answer cue, after any thinking) rather than leaving it to be read
    /// from working cut off mid-way: an outer strategy that holds this one (best-of-N's vote,
    /// the router) asks it of a solution a budget or length limit cut. `thinking_opened`: the
    /// chat template opened a thinking block ([`crate::turn::opens_thinking`]). By default the
    /// text is read with `<think>`/`</think>` and the standard cues
    /// ([`crate::answer::stated_answer_in_turn`]); a strategy that writes its own delimiters or
    /// cue says so here.
    fn states_answer(&self, completion: &str, thinking_opened: bool) -> bool {
        crate::answer::stated_answer_in_turn(completion, thinking_opened).is_some()
    }
}

/// A strategy in stages: a cheap first one that settles some problems, and dearer ones for the
/// rest, each of which may ask for yet another. `solve` must be `first`, then `next` for as long
/// as the last stage asks for more, so a run that can afford every stage gives the same answers
/// as plain `solve`.
///
/// Under [`crate::Allocation::Triage`] a run does the first stage of every problem, then spends
/// what its budget has left on later stages, always on the least sure problem next: a strategy
/// that goes on in small stages (adaptive best-of-N: a round each) lets the run share its budget
/// by need, not in file order.
#[async_trait]
pub trait Staged: Send + Sync {
    /// The cheap stage.
    async fn first(&self, problem: &Problem, cx: &Context) -> Result<Stage>;

    /// The next stage, given the last stage's solution (as [`Stage::solution`] had it, after a
    /// round trip through JSON: no trace; its usage what the solve spent so far, its stop
    /// reason a budget's where one cut it). Its solution is final unless it asks for more. A
    /// stage that asks for more must have made a call: one that made none ends the solve.
    async fn next(&self, problem: &Problem, so_far: Solution, cx: &Context) -> Result<Stage>;
}

/// The seed base of stage `stage` (after the first) of a solve seeded from `base`.
pub(crate) fn stage_seed(base: u64, stage: usize) -> u64 {
    crate::seed_for(base, &format!("stage\u{0}{stage}"))
}

/// `staged`'s first stage, then its next ones for as long as they ask for more: a [`Staged`]
/// strategy's `solve`. Each later stage runs in [`Context::stage`] (seeded apart where `cx` is).
pub async fn solve_in_stages(
    staged: &dyn Staged,
    problem: &Problem,
    cx: &Context,
) -> Result<Solution> {
    let mut stage = staged.first(problem, cx).await?;
    let mut stages = 1;
    while stage.pending.is_some() {
        let calls = cx.meter().usage().calls;
        // As a triage run hands it on: the spend so far, a budget's cut said, no trace.
        let mut so_far = stage.solution;
        so_far.usage = cx.meter().usage();
        so_far.trace = None;
        mark_budget_stop(&mut so_far, cx);
        stage = staged.next(problem, so_far, &cx.stage(stages)).await?;
        stages += 1;
        if cx.meter().usage().calls == calls {
            // No call, no progress: asking again would not end.
            break;
        }
    }
    Ok(stage.solution)
}

/// What a stage of a [`Staged`] strategy found.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// Its solution: final when no stage follows, and the answer to fall back on when one is
    /// wanted but the run cannot afford it.
    pub solution: Solution,
    /// Whether another stage is wanted, and how badly (`None`: settled).
    pub pending: Option<Pending>,
}

/// A stage's request for another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// How sure the stage is of its answer, in [0, 1] (0 with no answer); the least sure get
    /// the next stage first.
    pub confidence: f64,
    /// Why another stage is wanted, in words.
    pub why: String,
}

#[async_trait]
impl<S: Strategy + ?Sized> Strategy for Arc<S> {
    fn name(&self) -> &'static str {
        (**self).name()
    }

    async fn solve(&self, problem: &Problem, cx: &Context) -> Result<Solution> {
        (**self).solve(problem, cx).await
    }

    fn staged(&self) -> Option<&dyn Staged> {
        (**self).staged()
    }

    fn states_answer(&self, completion: &str, thinking_opened: bool) -> bool {
        (**self).states_answer(completion, thinking_opened)
    }
}

#[async_trait]
impl<S: Strategy + ?Sized> Strategy for Box<S> {
    fn name(&self) -> &'static str {
        (**self).name()
    }

    async fn solve(&self, problem: &Problem, cx: &Context) -> Result<Solution> {
        (**self).solve(problem, cx).await
    }

    fn staged(&self) -> Option<&dyn Staged> {
        (**self).staged()
    }

    fn states_answer(&self, completion: &str, thinking_opened: bool) -> bool {
        (**self).states_answer(completion, thinking_opened)
    }
}

/// How a backend is metered: the layers of [`Metered`] a call passes through.
pub type Metering = Arc<dyn Fn(Arc<dyn Backend>) -> Arc<dyn Backend> + Send + Sync>;

/// What a strategy solves with: a metered backend, its meter, and where its events go.
///
/// One problem's: its meter's usage, budget and budget stops ([`Meter::cut_by`]) accumulate
/// over every solve made in it, so a solve of another problem gets a context of its own
/// (a strategy's inner solves get [`Context::child`]s).
#[derive(Clone)]
pub struct Context {
    backend: Arc<dyn Backend>,
    meter: Arc<Meter>,
    events: Events,
    /// What [`Context::metered`] wraps another model in: every meter this context's calls
    /// pass through.
    metering: Metering,
    /// The base its sampled calls are seeded from, where a [`crate::Seeded`] in its backend
    /// seeds them ([`Context::seeded`]).
    seed: Option<u64>,
    /// The meters of budgets further out that its calls also count on (a parent context's,
    /// a run's): [`Context::remaining`] reads them with its own.
    outer: Vec<Outer>,
}

/// The budget of a resource that leaves a context the least, read once
/// ([`Context::budget_cut`]): what it leaves, to plan a call by, and which it is, to say later
/// that it cut the call. It names a meter of the context it was read from: given to another
/// ([`Context::note_budget_cut`]), it may name another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetCut {
    resource: crate::budget::Resource,
    /// What it leaves unspent (`None`: no budget limits the resource).
    left: Option<u64>,
    /// 0: the context's own meter; `i`: the `i`th further out.
    bound: usize,
}

impl BudgetCut {
    /// The budget's resource.
    pub fn resource(&self) -> crate::budget::Resource {
        self.resource
    }

    /// What it left unspent when read, as [`Context::remaining`] says (`None`: unlimited).
    pub fn left(&self) -> Option<u64> {
        self.left
    }
}

/// A meter further out, and the flag a batch run raises when that budget cuts a problem short
/// ([`Context::within_noting`]).
#[derive(Clone)]
struct Outer {
    meter: Arc<Meter>,
    cut: Option<Arc<AtomicBool>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("backend", &self.backend.capabilities().backend)
            .field("meter", &self.meter)
            .field("events", &self.events)
            .finish()
    }
}

/// `metering`, its sampled calls seeded from `base`.
fn seeded_metering(metering: Metering, base: u64) -> Metering {
    Arc::new(move |backend| {
        Arc::new(crate::Seeded::new(metering(backend), base)) as Arc<dyn Backend>
    })
}

/// `below`, then a meter that counts on `meter` (and reports to `events`).
fn layer(below: Option<Metering>, meter: Arc<Meter>, events: Events) -> Metering {
    Arc::new(move |backend| {
        let backend = match &below {
            Some(below) => below(backend),
            None => backend,
        };
        Arc::new(Metered::with_meter(backend, Arc::clone(&meter)).with_events(events.clone()))
    })
}

impl Context {
    /// A context whose calls to `backend` are metered against `budget`; no events.
    pub fn new(backend: Arc<dyn Backend>, budget: Budget) -> Self {
        Self::with_events(backend, budget, Events::off())
    }

    /// A context whose calls to `backend` are metered against `budget` and reported, with the
    /// strategies' own events, to `events`.
    pub fn with_events(backend: Arc<dyn Backend>, budget: Budget, events: Events) -> Self {
        let meter = Meter::new(budget);
        let metering = layer(None, Arc::clone(&meter), events.clone());
        Self {
            backend: metering(backend),
            meter,
            events,
            metering,
            seed: None,
            outer: Vec::new(),
        }
    }

    /// Says that this context's calls also count on `meter` (a budget further out, as a batch
    /// run's whole-run budget is, in the backend it was given), so [`Context::remaining`]
    /// reads it too.
    pub fn within(mut self, meter: Arc<Meter>) -> Self {
        self.outer.push(Outer { meter, cut: None });
        self
    }

    /// [`Context::within`], and `cut` raised where a strategy says that budget ended a call of
    /// its sooner than it wanted ([`Context::note_budget_cut`]), as the meter wrapping the
    /// backend raises it for a call it shortened (a batch run's flag of a problem cut short).
    pub fn within_noting(mut self, meter: Arc<Meter>, cut: Arc<AtomicBool>) -> Self {
        self.outer.push(Outer {
            meter,
            cut: Some(cut),
        });
        self
    }

    /// The budget of `resource` that leaves this context the least now (its own, or one further
    /// out: the one [`Context::remaining`] reads), taken where a strategy plans a call smaller
    /// for it, to say later, should the call run to what it planned, that this budget cut it
    /// ([`Context::note_budget_cut`]). (Taken when planning: a run's budget shared by problems
    /// at once may leave less than this one's own by the time the call returns.)
    pub fn budget_cut(&self, resource: crate::budget::Resource) -> BudgetCut {
        let least = std::iter::once(self.meter.remaining(resource))
            .chain(self.outer.iter().map(|o| o.meter.remaining(resource)))
            .enumerate()
            .filter_map(|(at, left)| left.map(|left| (at, left)))
            // The innermost of those that leave the least.
            .min_by_key(|&(at, left)| (left, at));
        BudgetCut {
            resource,
            left: least.map(|(_, left)| left),
            bound: least.map_or(0, |(at, _)| at),
        }
    }

    /// Says that the budget `cut` names ended a completion of this context sooner than the
    /// strategy wanted: it asked for fewer tokens than it would have, planned from
    /// [`Context::remaining`] to keep room for a later call (thinking shortened to leave the
    /// answer its room), and the call ran to them, or a call it would have made was not made.
    /// The meters calls pass through do not see it (each call fitted), so this notes it as
    /// they note a call they shortened: on this context's meter ([`Meter::cut_by`]: the
    /// solve's stop reason says the budget), and on each further out up to the one that bound,
    /// raising a batch run's flag there (the problem is cut short and redone on a resumed run,
    /// not recorded as done).
    pub fn note_budget_cut(&self, cut: BudgetCut) {
        self.meter.note_cut(cut.resource);
        for outer in self.outer.iter().take(cut.bound) {
            outer.meter.note_cut(cut.resource);
            if let Some(flag) = &outer.cut {
                flag.store(true, Ordering::Relaxed);
            }
        }
    }

    /// What `resource`'s budget leaves this context's calls unspent: the least any of its
    /// budgets leaves (its own, its parents', the run's it was told of with
    /// [`Context::within`]); `None` where none limits it. Calls in flight, its own or other
    /// samples' and problems' sharing a budget, are not counted (see [`Meter::remaining`]). A
    /// strategy that plans more than one call (thinking, then answering) reads it to keep the
    /// later call its room; every call is shortened to fit in any case.
    pub fn remaining(&self, resource: crate::budget::Resource) -> Option<u64> {
        std::iter::once(&self.meter)
            .chain(self.outer.iter().map(|o| &o.meter))
            .filter_map(|meter| meter.remaining(resource))
            .min()
    }

    /// When the soonest of this context's wall-time budgets runs out (its own, its parents',
    /// the run's it was told of with [`Context::within`]), if any limits it: work that is not a
    /// backend call (running code, say) should end there too. The meter's own
    /// [`Meter::deadline`] is its budget's alone, and a nested context's meter is unlimited
    /// (its calls are held to the parents' budgets by their meters).
    pub fn deadline(&self) -> Option<std::time::Instant> {
        std::iter::once(&self.meter)
            .chain(self.outer.iter().map(|o| &o.meter))
            .filter_map(|meter| meter.deadline())
            .min()
    }

    /// The base this context's sampled calls are seeded from, where they are
    /// ([`Context::seeded`]): what a strategy that draws random numbers of its own (not
    /// through the model) seeds them from, so that a seeded solve stays a function of its seed.
    pub fn seed(&self) -> Option<u64> {
        self.seed
    }

    /// Seeds this context's sampled calls from `base`: its backend, and every other model it
    /// meters ([`Context::metered`]: a judge), wrapped in a [`crate::Seeded`], and
    /// the base kept for [`Context::sample`] and [`Context::stage`]. (After [`Context::metered_below`], which replaces how other
    /// models are metered.)
    pub fn seeded(self, base: u64) -> Self {
        Context {
            backend: Arc::new(crate::Seeded::new(self.backend, base)),
            metering: seeded_metering(self.metering, base),
            seed: Some(base),
            ..self
        }
    }

    /// The context of stage `stage` (1, 2, ...: the stages after the first) of a [`Staged`]
    /// solve: this one, its sampled calls, where it is seeded ([`Context::seeded`]), taking
    /// seeds of their own from `base` and `stage`, as a batch run's triage seeds each stage it
    /// runs apart: a plain solve then draws what a triage run does.
    pub fn stage(&self, stage: usize) -> Context {
        let Some(base) = self.seed else {
            return self.clone();
        };
        let base = stage_seed(base, stage);
        Context {
            backend: Arc::new(crate::Seeded::new(Arc::clone(&self.backend), base)),
            meter: Arc::clone(&self.meter),
            events: self.events.clone(),
            metering: seeded_metering(Arc::clone(&self.metering), base),
            seed: Some(base),
            outer: self.outer.clone(),
        }
    }

    /// The nested context of sample `index` of several solved at once (best-of-N over an inner
    /// strategy): a [`Self::child`] whose sampled calls, where this context is seeded
    /// ([`Context::seeded`]), take seeds of their own from `base` and `index`. Samples that
    /// send the same prompts at once then draw the same whichever reaches the model first, and
    /// sample `i` draws the same however many others are drawn beside it.
    pub fn sample(&self, index: usize) -> Context {
        let mut child = self.child();
        if let Some(base) = self.seed {
            let base = crate::seed_for(base, &format!("sample\u{0}{index}"));
            child.backend = Arc::new(crate::Seeded::new(child.backend, base));
            child.metering = seeded_metering(child.metering, base);
            child.seed = Some(base);
        }
        child
    }

    /// Says how `backend` (as given to [`Context::with_events`]) was itself metered, so that
    /// calls to another model ([`Context::metered`]) are metered the same way: `below` wraps
    /// a backend in those meters (a batch run's shared budget, say).
    pub fn metered_below(mut self, below: Metering) -> Self {
        self.metering = layer(Some(below), Arc::clone(&self.meter), self.events.clone());
        self
    }

    /// The (metered) backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// `other` (another model: a separate judge or reward model) metered as this context's
    /// backend is: its calls count against every budget this context's count against, and are
    /// reported to its events.
    pub fn metered(&self, other: Arc<dyn Backend>) -> Arc<dyn Backend> {
        (self.metering)(other)
    }

    /// The meter counting this context's calls.
    pub fn meter(&self) -> &Arc<Meter> {
        &self.meter
    }

    /// Where this context's events go.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Reports what `strategy` did (see [`crate::events`]); nothing when events are off.
    pub fn emit(&self, strategy: &str, kind: EventKind) {
        self.events.emit(strategy, kind);
    }

    /// A nested context: its calls count here too, and also on a meter of its own (unlimited)
    /// so a composite strategy can tell what each inner solve cost. Its strategy events go where
    /// this context's go; its calls are reported once, by this context's meter.
    pub fn child(&self) -> Context {
        let meter = Meter::new(Budget::unlimited());
        let parent = Arc::clone(&self.metering);
        let own = Arc::clone(&meter);
        let metering: Metering = Arc::new(move |backend| {
            Arc::new(Metered::with_meter(parent(backend), Arc::clone(&own)))
        });
        Context {
            backend: Arc::new(Metered::with_meter(
                Arc::clone(&self.backend),
                Arc::clone(&meter),
            )),
            meter,
            events: self.events.clone(),
            metering,
            seed: self.seed,
            outer: std::iter::once(Outer {
                meter: Arc::clone(&self.meter),
                cut: None,
            })
            .chain(self.outer.iter().cloned())
            .collect(),
        }
    }

    /// Solves `problem` with `strategy` in a [`Self::child`] context, as a strategy of your own
    /// runs one of ponder's inside it: the solution's usage is what that solve cost, and a last
    /// completion that hit a `max_tokens` this context's budget had shortened (for one of that
    /// solve's calls) says it hit the budget, as [`solve_in`] tells for a whole solve.
    /// `strategy.solve(problem, cx)` called directly leaves both to the caller.
    pub async fn solve_child(
        &self,
        strategy: &dyn Strategy,
        problem: &Problem,
    ) -> Result<Solution> {
        solve_as_child(strategy, problem, &self.child()).await
    }

    /// As [`Self::solve_child`], in the context of sample `index` ([`Self::sample`]: seeds of
    /// its own where the run is seeded): one sample of many, as best-of-N draws them.
    pub async fn solve_sample(
        &self,
        strategy: &dyn Strategy,
        problem: &Problem,
        index: usize,
    ) -> Result<Solution> {
        solve_as_child(strategy, problem, &self.sample(index)).await
    }
}

/// Solves `problem` in `child` (a child context), with what that solve cost and how the budget
/// stopped it.
async fn solve_as_child(
    strategy: &dyn Strategy,
    problem: &Problem,
    child: &Context,
) -> Result<Solution> {
    let mut solution = strategy.solve(problem, child).await?;
    solution.usage = child.meter().usage();
    // The child's meter learns of the cuts of its own calls only (a budget here cut them):
    // none made before it, by another solve in this context, counts.
    mark_budget_stop(&mut solution, child);
    Ok(solution)
}

/// Solves `problem` with `strategy` on `backend` under `budget`, and fills in the usage.
pub async fn solve(
    strategy: &dyn Strategy,
    problem: &Problem,
    backend: Arc<dyn Backend>,
    budget: Budget,
) -> Result<Solution> {
    solve_in(strategy, problem, &Context::new(backend, budget)).await
}

/// Solves `problem` with `strategy` in a context made by hand (with [`Context::with_events`],
/// say), and fills in the usage from its meter.
///
/// ```no_run
/// use std::sync::Arc;
/// use ponder_engine::{Budget, Context, Event, Events, ModelConfig, Problem, Strategy};
///
/// # async fn demo(strategy: &dyn Strategy) -> ponder_engine::Result<()> {
/// let backend = ModelConfig::default().load().await?;
/// let problem = Problem::new("q1", "What is 12 * 7?");
/// let print = |event: &Event| eprintln!("{event}");
/// let cx = Context::with_events(backend, Budget::unlimited(), Events::new(Arc::new(print), &problem.id));
/// let solution = ponder_engine::solve_in(strategy, &problem, &cx).await?;
/// # Ok(()) }
/// ```
pub async fn solve_in(
    strategy: &dyn Strategy,
    problem: &Problem,
    cx: &Context,
) -> Result<Solution> {
    let mut solution = strategy.solve(problem, cx).await?;
    solution.usage = cx.meter().usage();
    mark_budget_stop(&mut solution, cx);
    Ok(solution)
}

/// A final completion that "hit its max_tokens" where `cx`'s budget had granted fewer than the
/// strategy asked for hit the budget: its stop reason says so. So does a solve a call of which
/// the wall-time budget cut (its text ended at the deadline, or fewer choices than asked came
/// back): whatever it made of that, it had less than it asked for.
pub(crate) fn mark_budget_stop(solution: &mut Solution, cx: &Context) {
    let cut_by = cx.meter().cut_by();
    match (solution.stop_reason, cut_by) {
        (StopReason::MaxTokens, Some(resource)) => solution.stop_reason = resource.into(),
        (StopReason::Completed, Some(resource @ crate::budget::Resource::WallTime)) => {
            solution.stop_reason = resource.into();
        }
        _ => {}
    }
}
