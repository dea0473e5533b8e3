//! The [`Strategy`] trait and the [`Context`] a solve runs in.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::budget::Budget;
use crate::error::Result;
use crate::metered::{Meter, Metered};
use crate::problem::Problem;
use crate::solution::Solution;

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
}

/// A strategy in two stages: a cheap first one that settles some problems, and a dearer second
/// one for the rest. `solve` must be `first`, then `second` when the first asks for it, so a run
/// that can afford every second stage gives the same answers as plain `solve`.
///
/// Under [`crate::Allocation::Triage`] a run does the first stage of every problem, then spends
/// what its budget has left on second stages, the least sure first stage first.
#[async_trait]
pub trait Staged: Send + Sync {
    /// The cheap stage.
    async fn first(&self, problem: &Problem, cx: &Context) -> Result<FirstStage>;

    /// The dear stage, given the first stage's solution (as [`FirstStage::solution`] had it,
    /// after a round trip through JSON: no trace). Returns the final solution.
    async fn second(&self, problem: &Problem, first: Solution, cx: &Context) -> Result<Solution>;
}

/// `staged`'s first stage, then its second when the first asks for it: a [`Staged`] strategy's
/// `solve`.
pub async fn solve_in_stages(
    staged: &dyn Staged,
    problem: &Problem,
    cx: &Context,
) -> Result<Solution> {
    let first = staged.first(problem, cx).await?;
    match first.pending {
        None => Ok(first.solution),
        Some(_) => staged.second(problem, first.solution, cx).await,
    }
}

/// What the first stage of a [`Staged`] strategy found.
#[derive(Debug, Clone, PartialEq)]
pub struct FirstStage {
    /// Its solution: final when no second stage follows, and the answer to fall back on when one
    /// is wanted but the run cannot afford it.
    pub solution: Solution,
    /// Whether a second stage is wanted, and how badly (`None`: the first stage settled it).
    pub pending: Option<Pending>,
}

/// A first stage's request for the second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// How sure the first stage is of its answer, in [0, 1] (0 with no answer); the least sure
    /// get the second stage first.
    pub confidence: f64,
    /// Why the second stage is wanted, in words.
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
}

/// What a strategy solves with: a metered backend and its meter.
#[derive(Clone)]
pub struct Context {
    backend: Arc<dyn Backend>,
    meter: Arc<Meter>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("backend", &self.backend.capabilities().backend)
            .field("meter", &self.meter)
            .finish()
    }
}

impl Context {
    /// A context whose calls to `backend` are metered against `budget`.
    pub fn new(backend: Arc<dyn Backend>, budget: Budget) -> Self {
        let metered = Metered::new(backend, budget);
        let meter = Arc::clone(metered.meter());
        Self {
            backend: Arc::new(metered),
            meter,
        }
    }

    /// The (metered) backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The meter counting this context's calls.
    pub fn meter(&self) -> &Arc<Meter> {
        &self.meter
    }

    /// A nested context: its calls count here too, and also on a meter of its own (unlimited)
    /// so a composite strategy can tell what each inner solve cost.
    pub fn child(&self) -> Context {
        Context::new(Arc::clone(&self.backend), Budget::unlimited())
    }
}

/// Solves `problem` with `strategy` on `backend` under `budget`, and fills in the usage.
pub async fn solve(
    strategy: &dyn Strategy,
    problem: &Problem,
    backend: Arc<dyn Backend>,
    budget: Budget,
) -> Result<Solution> {
    let cx = Context::new(backend, budget);
    let mut solution = strategy.solve(problem, &cx).await?;
    solution.usage = cx.meter().usage();
    Ok(solution)
}
