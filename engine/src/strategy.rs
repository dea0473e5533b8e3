//! The [`Strategy`] trait and the [`Context`] a solve runs in.

use std::sync::Arc;

use async_trait::async_trait;

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
}

#[async_trait]
impl<S: Strategy + ?Sized> Strategy for Arc<S> {
    fn name(&self) -> &'static str {
        (**self).name()
    }

    async fn solve(&self, problem: &Problem, cx: &Context) -> Result<Solution> {
        (**self).solve(problem, cx).await
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
