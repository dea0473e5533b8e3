//! [`BestOfN`]: sample N candidates, score them, pick one (search-and-learn, arXiv 2408.03314).
//!
//! Selection is naive (highest reward), weighted (highest summed reward per answer) or majority
//! (self-consistency). Rewards come from any [`Scorer`] (a PRM aggregated over steps, or an LLM
//! judge). With `adaptive`, samples are drawn in rounds and drawing stops once the vote is
//! decided: the leader cannot be overturned by the samples left, or it has reached the
//! configured agreement.
//!
//! Concurrency: a `direct` inner strategy is sampled with one request of `n` choices (mistral.rs
//! decodes them in lock-step); any other inner strategy runs `concurrency` solves at once in
//! this task (`buffered`: kept in the order drawn), each on a child context so its cost is
//! known. Cancellation: dropping the solve drops every inner solve. Budget: an exhausted budget
//! stops sampling; the selection is made among the candidates drawn so far.

use std::num::NonZeroUsize;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use ponder_engine::{
    solve_in_stages, Candidate, Context, Error, EventKind, Pending, Problem, Result, Scorer,
    Solution, Stage, Staged, StopReason, Strategy,
};
use ponder_prm::{Aggregate, ScorerConfig, Select};
use serde::{Deserialize, Serialize};

use crate::config::StrategyConfig;
use crate::direct::{candidate_of, Direct, DirectConfig};

/// Adaptive N: draw in rounds, stop when the vote is decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveConfig {
    /// Samples per round. Default 2.
    #[serde(default = "default_round")]
    pub round: NonZeroUsize,
    /// Stop once the leading answer holds this share of the votes (unanswered samples count
    /// against it; of the reward, for `weighted`; for `naive`, once the best reward reaches it),
    /// in (0, 1]. Default: only stop when the leader cannot be overturned.
    #[serde(default)]
    pub agreement: Option<f64>,
}

fn default_round() -> NonZeroUsize {
    NonZeroUsize::MIN.saturating_add(1)
}

/// Config of [`BestOfN`] (`kind = "best_of_n"`; `kind = "self_consistency"` is the majority preset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BestOfNConfig {
    /// Candidates to draw. Default 8.
    #[serde(default = "default_n")]
    pub n: NonZeroUsize,
    /// `naive`, `weighted` or `majority`. Default `weighted`.
    #[serde(default)]
    pub select: Select,
    /// The strategy that produces each candidate. Default `direct`, step by step, temperature 0.8.
    /// In a config file an inner `direct` or `budget_forcing` without a `temperature` samples at
    /// 0.8 too (their own default, greedy, would draw one completion n times).
    #[serde(default = "default_inner", deserialize_with = "sampled_inner")]
    pub inner: Box<StrategyConfig>,
    /// Rewards for the candidates. Default: none (required by `naive` and `weighted`).
    #[serde(default)]
    pub scorer: Option<ScorerConfig>,
    /// Step scores to one reward. Default `last`.
    #[serde(default)]
    pub aggregate: Aggregate,
    /// What separates steps for step scorers. Default a blank line.
    #[serde(default = "default_step_delimiter")]
    pub step_delimiter: String,
    /// Draw in rounds and stop early when decided. Default off.
    #[serde(default)]
    pub adaptive: Option<AdaptiveConfig>,
    /// Inner solves at once (when the inner strategy is not `direct`). Default: all of them.
    #[serde(default)]
    pub concurrency: Option<NonZeroUsize>,
}

fn default_n() -> NonZeroUsize {
    NonZeroUsize::MIN.saturating_add(7)
}

fn default_inner() -> Box<StrategyConfig> {
    Box::new(StrategyConfig::Direct(DirectConfig {
        temperature: INNER_TEMPERATURE,
        ..DirectConfig::default()
    }))
}

/// Temperature of a sampled inner strategy that names none.
const INNER_TEMPERATURE: f64 = 0.8;

/// The inner strategy, sampled at [`INNER_TEMPERATURE`] where it is one that would otherwise
/// decode greedily and names no temperature.
fn sampled_inner<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Box<StrategyConfig>, D::Error> {
    use serde::de::Error as _;
    let mut table = serde_json::Value::deserialize(deserializer)?;
    if let Some(map) = table.as_object_mut() {
        let sampled = matches!(
            map.get("kind").and_then(serde_json::Value::as_str),
            Some("direct" | "budget_forcing")
        );
        if sampled && !map.contains_key("temperature") {
            map.insert("temperature".into(), INNER_TEMPERATURE.into());
        }
    }
    StrategyConfig::deserialize(table)
        .map(Box::new)
        .map_err(|e| D::Error::custom(e.to_string()))
}

fn default_step_delimiter() -> String {
    "\n\n".into()
}

impl Default for BestOfNConfig {
    fn default() -> Self {
        Self {
            n: default_n(),
            select: Select::default(),
            inner: default_inner(),
            scorer: None,
            aggregate: Aggregate::default(),
            step_delimiter: default_step_delimiter(),
            adaptive: None,
            concurrency: None,
        }
    }
}

impl BestOfNConfig {
    /// The self-consistency preset: majority vote, no scorer.
    pub fn self_consistency(n: NonZeroUsize) -> Self {
        Self {
            n,
            select: Select::Majority,
            ..Self::default()
        }
    }

    /// Checks the values that serde cannot, and the inner strategy.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Error::StrategyConfig {
            strategy: "best_of_n",
            reason,
        };
        if self.select != Select::Majority && self.scorer.is_none() {
            return Err(bad(format!(
                "select = \"{}\" needs a scorer (or use select = \"majority\")",
                match self.select {
                    Select::Naive => "naive",
                    _ => "weighted",
                }
            )));
        }
        if let Some(adaptive) = &self.adaptive {
            if let Some(a) = adaptive.agreement {
                if !(a > 0.0 && a <= 1.0) {
                    return Err(bad(format!(
                        "adaptive.agreement must be in (0, 1], got {a}"
                    )));
                }
            }
        }
        if self.step_delimiter.is_empty() {
            return Err(bad("step_delimiter must not be empty".into()));
        }
        // Greedy samples of one prompt are one sample n times over: n times the cost, no vote.
        if self.n.get() > 1 && self.inner.sampling_temperature() == Some(0.0) {
            return Err(bad(format!(
                "n = {} samples of an inner `{}` at temperature 0 are all the same greedy \
                 completion: give the inner strategy a temperature (0.6 to 1.0 is usual)",
                self.n,
                self.inner.kind()
            )));
        }
        self.inner.validate()
    }
}

enum Inner {
    /// Sampled with one request of n choices.
    Direct(Direct),
    /// Solved n times.
    Any(Box<dyn Strategy>),
}

/// Best-of-N over any inner strategy; see the module docs.
pub struct BestOfN {
    config: BestOfNConfig,
    inner: Inner,
    scorer: Option<Arc<dyn Scorer>>,
    /// `best_of_n`, or `self_consistency` for that preset: what lines and events call it.
    name: &'static str,
}

impl std::fmt::Debug for BestOfN {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BestOfN")
            .field("config", &self.config)
            .finish()
    }
}

/// One candidate in the details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateDetail {
    /// Its answer.
    pub answer: Option<String>,
    /// Its reward.
    pub score: Option<f64>,
    /// Completion tokens it cost.
    pub tokens: u64,
}

/// What best-of-N reports as `details`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestOfNDetails {
    /// Every candidate drawn.
    pub candidates: Vec<CandidateDetail>,
    /// The chosen one.
    pub selected: Option<usize>,
    /// Why.
    pub why: String,
    /// Samples not drawn because the vote was decided (adaptive N).
    pub samples_saved: usize,
    /// Samples drawn.
    pub samples: usize,
    /// How each sample stopped, in `candidates`' order.
    #[serde(default)]
    pub stops: Vec<StopReason>,
}

impl From<&Candidate> for CandidateDetail {
    fn from(c: &Candidate) -> Self {
        Self {
            answer: c.answer.clone(),
            score: c.score,
            tokens: c.tokens,
        }
    }
}

impl BestOfN {
    /// Builds best-of-N from its config (validating it and building the inner strategy).
    pub fn new(config: BestOfNConfig) -> Result<Self> {
        config.validate()?;
        let inner = match config.inner.as_ref() {
            StrategyConfig::Direct(direct) => Inner::Direct(Direct::new(direct.clone())),
            other => Inner::Any(other.build()?),
        };
        let scorer = config.scorer.as_ref().map(ScorerConfig::build);
        Ok(Self {
            config,
            inner,
            scorer,
            name: "best_of_n",
        })
    }

    /// The `self_consistency` preset: named so in results and events (`config` selects by
    /// majority vote).
    pub(crate) fn self_consistency(config: BestOfNConfig) -> Result<Self> {
        Ok(Self {
            name: "self_consistency",
            ..Self::new(config)?
        })
    }

    /// Replaces the inner strategy with one built in code (one of your own, say): each sample
    /// is one solve of it, in a context of its own whose calls count here. The config's
    /// `inner` is then unused.
    pub fn with_inner(mut self, inner: Box<dyn Strategy>) -> Self {
        self.inner = Inner::Any(inner);
        self
    }

    /// Replaces the scorer (for scorers built in code).
    pub fn with_scorer(mut self, scorer: Arc<dyn Scorer>) -> Self {
        self.scorer = Some(scorer);
        self
    }

    /// Draws `k` candidates, each with how it stopped; with an inner strategy, also the budget
    /// stop one of them hit (an inner strategy turns an exhausted budget into a solution, not an
    /// error).
    async fn draw(
        &self,
        problem: &Problem,
        cx: &Context,
        k: usize,
    ) -> Result<(Vec<(Candidate, StopReason)>, Option<StopReason>)> {
        let (mut drawn, stop) = self.draw_any(problem, cx, k).await?;
        // A program has no answer to vote on (the last number in it is not one): majority
        // keeps the first sample, the scorer's reward picks otherwise.
        if problem.code.is_some() {
            for (candidate, _) in &mut drawn {
                candidate.answer = None;
            }
        }
        Ok((drawn, stop))
    }

    async fn draw_any(
        &self,
        problem: &Problem,
        cx: &Context,
        k: usize,
    ) -> Result<(Vec<(Candidate, StopReason)>, Option<StopReason>)> {
        match &self.inner {
            Inner::Direct(direct) => {
                let request = direct.request(problem).with_n(k);
                let generation = cx.backend().generate(request).await?;
                let drawn = generation.choices.into_iter().map(candidate_of).collect();
                Ok((drawn, None))
            }
            Inner::Any(strategy) => {
                let concurrency = self.config.concurrency.map_or(k, NonZeroUsize::get);
                let solved: Vec<(Candidate, StopReason)> = futures::stream::iter(0..k)
                    .map(|_| async {
                        let child = cx.child();
                        let solution = strategy.solve(problem, &child).await?;
                        let candidate = Candidate {
                            answer: solution.answer,
                            text: solution.completion,
                            score: None,
                            tokens: child.meter().usage().completion_tokens,
                        };
                        Ok::<_, Error>((candidate, solution.stop_reason))
                    })
                    // In the order drawn, not finished: ties go to the earlier draw, as in
                    // one request of n, whichever sample is quickest.
                    .buffered(concurrency.max(1))
                    .try_collect()
                    .await?;
                let budget_stop = solved
                    .iter()
                    .map(|(_, reason)| *reason)
                    .find(|reason| reason.is_budget());
                // A sample the budget stopped before it wrote anything is not a candidate.
                let drawn = solved
                    .into_iter()
                    .filter(|(c, reason)| {
                        !(reason.is_budget() && c.answer.is_none() && c.text.is_empty())
                    })
                    .collect();
                Ok((drawn, budget_stop))
            }
        }
    }

    async fn score(
        &self,
        problem: &Problem,
        cx: &Context,
        candidates: &mut [Candidate],
    ) -> Result<()> {
        let Some(scorer) = &self.scorer else {
            return Ok(());
        };
        let steps: Vec<Vec<String>> = candidates
            .iter()
            .map(|c| {
                c.text
                    .split(self.config.step_delimiter.as_str())
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .collect();
        let scores = scorer.score(cx, &problem.question, &steps).await?;
        for (candidate, steps) in candidates.iter_mut().zip(scores) {
            candidate.score = self.config.aggregate.apply(&steps);
        }
        Ok(())
    }

    /// Each answer's mass in the vote (its samples for `majority`, their summed reward
    /// otherwise), and every candidate's reward.
    fn votes(&self, candidates: &[Candidate]) -> (Vec<f64>, Vec<Option<f64>>) {
        let answers: Vec<Option<String>> = candidates.iter().map(|c| c.answer.clone()).collect();
        let rewards: Vec<Option<f64>> = candidates.iter().map(|c| c.score).collect();
        let groups = ponder_prm::groups(&answers, &rewards);
        let mass = match self.config.select {
            Select::Majority => groups.iter().map(|g| g.members.len() as f64).collect(),
            _ => groups.iter().map(|g| g.weight).collect(),
        };
        (mass, rewards)
    }

    /// Whether the vote among `candidates` is settled with `left` samples still to draw.
    fn decided(&self, candidates: &[Candidate], left: usize) -> bool {
        let Some(adaptive) = &self.config.adaptive else {
            return false;
        };
        let (mass, rewards) = self.votes(candidates);
        // A vote is 1, and a reward at most 1: one more sample adds at most 1 to a group.
        let per_sample = 1.0;
        let mut sorted = mass.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let leader = sorted.first().copied().unwrap_or(0.0);
        let second = sorted.get(1).copied().unwrap_or(0.0);
        let certain = match self.config.select {
            // The single best reward wins: only a perfect one cannot be beaten by a later sample.
            Select::Naive => left == 0 || rewards.iter().flatten().any(|&r| r >= 1.0),
            _ => leader > second + per_sample * left as f64,
        };
        if certain {
            return true;
        }
        // The share the round events report: for `majority` unanswered samples count against
        // the leader (one vote among two samples, the other unanswered, is no agreement).
        match adaptive.agreement {
            Some(share) => {
                self.vote_share(candidates) >= share && candidates.len() >= adaptive.round.get()
            }
            None => false,
        }
    }
}

/// The samples drawn so far.
#[derive(Debug)]
struct Draw {
    candidates: Vec<Candidate>,
    /// How each candidate stopped.
    stops: Vec<StopReason>,
    /// Why drawing stopped.
    stop_reason: StopReason,
}

impl Draw {
    fn new() -> Self {
        Self {
            candidates: Vec::new(),
            stops: Vec::new(),
            stop_reason: StopReason::Completed,
        }
    }
}

impl BestOfN {
    /// Draws rounds until `draw` holds `limit` samples, the budget stops it, or the vote is
    /// decided (with the config's `n` as the whole draw). Returns whether it was decided.
    async fn draw_rounds(
        &self,
        problem: &Problem,
        cx: &Context,
        draw: &mut Draw,
        limit: usize,
    ) -> Result<bool> {
        let n = self.config.n.get();
        let round = self.config.adaptive.as_ref().map_or(n, |a| a.round.get());
        while draw.candidates.len() < limit {
            let k = round.min(limit - draw.candidates.len());
            let (drawn, budget_stop) = match self.draw(problem, cx, k).await {
                Ok(drawn) => drawn,
                Err(Error::BudgetExhausted { resource }) => {
                    draw.stop_reason = resource.into();
                    return Ok(false);
                }
                Err(e) => return Err(e),
            };
            let (mut drawn, drawn_stops): (Vec<Candidate>, Vec<StopReason>) =
                drawn.into_iter().unzip();
            draw.stops.extend(drawn_stops);
            match self.score(problem, cx, &mut drawn).await {
                Ok(()) => {}
                Err(Error::BudgetExhausted { resource }) => {
                    draw.stop_reason = resource.into();
                    draw.candidates.extend(drawn);
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
            draw.candidates.extend(drawn);
            if let Some(reason) = budget_stop {
                draw.stop_reason = reason;
                self.report_round(cx, &draw.candidates, false);
                return Ok(false);
            }
            let decided = self.decided(&draw.candidates, n - draw.candidates.len());
            self.report_round(cx, &draw.candidates, decided);
            if decided {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Reports a round: how many samples, and how the vote stands.
    fn report_round(&self, cx: &Context, candidates: &[Candidate], decided: bool) {
        if !cx.events().is_on() {
            return;
        }
        let answers: Vec<Option<String>> = candidates.iter().map(|c| c.answer.clone()).collect();
        let rewards: Vec<Option<f64>> = candidates.iter().map(|c| c.score).collect();
        let leader = self
            .config
            .select
            .apply(&answers, &rewards)
            .index
            .and_then(|i| candidates.get(i))
            .and_then(|c| c.answer.clone());
        cx.emit(
            self.name(),
            EventKind::Round {
                samples: candidates.len(),
                of: self.config.n.get(),
                leader,
                share: self.vote_share(candidates),
                decided,
            },
        );
    }

    /// The leading answer's share of the vote (of the reward, for `weighted`; the best reward,
    /// for `naive`): how sure a draw is. 0 with no answer.
    fn vote_share(&self, candidates: &[Candidate]) -> f64 {
        let (mass, rewards) = self.votes(candidates);
        let leader = mass.iter().copied().fold(0.0, f64::max);
        let total = match self.config.select {
            Select::Naive => return rewards.iter().flatten().copied().fold(0.0, f64::max),
            // Unanswered samples count against the leader.
            Select::Majority => candidates.len() as f64,
            Select::Weighted => mass.iter().sum(),
        };
        if total > 0.0 {
            leader / total
        } else {
            0.0
        }
    }

    /// The selection among what was drawn, as the solution; reported to `cx`'s events when
    /// `fin` (final, not a first stage's answer to fall back on).
    fn select(&self, cx: &Context, draw: Draw, fin: bool) -> Result<Solution> {
        let n = self.config.n.get();
        let Draw {
            candidates,
            stops,
            mut stop_reason,
        } = draw;
        let answers: Vec<Option<String>> = candidates.iter().map(|c| c.answer.clone()).collect();
        let rewards: Vec<Option<f64>> = candidates.iter().map(|c| c.score).collect();
        let selection = self.config.select.apply(&answers, &rewards);
        let chosen = selection.index.and_then(|i| candidates.get(i)).cloned();
        if fin {
            cx.emit(
                self.name(),
                EventKind::Selected {
                    answer: chosen.as_ref().and_then(|c| c.answer.clone()),
                    candidates: candidates.len(),
                    why: selection.why.clone(),
                },
            );
        }
        // The chosen sample ran out of tokens (its own max_tokens, or what the budget left it):
        // say so, as a single sample would.
        let cut = stop_reason == StopReason::Completed
            && selection.index.and_then(|i| stops.get(i)) == Some(&StopReason::MaxTokens);
        let details = BestOfNDetails {
            candidates: candidates.iter().map(CandidateDetail::from).collect(),
            selected: selection.index,
            why: selection.why,
            samples_saved: if stop_reason.is_budget() {
                0
            } else {
                n.saturating_sub(candidates.len())
            },
            samples: candidates.len(),
            stops,
        };
        if cut {
            stop_reason = StopReason::MaxTokens;
        }
        let details = serde_json::to_value(details).map_err(|source| Error::Serialize {
            what: "best-of-N details",
            source,
        })?;
        Ok(Solution {
            strategy: self.name().to_string(),
            answer: chosen.as_ref().and_then(|c| c.answer.clone()),
            completion: chosen.map(|c| c.text).unwrap_or_default(),
            candidates,
            stop_reason,
            usage: Default::default(),
            details,
            trace: None,
        })
    }
}

#[async_trait]
impl Strategy for BestOfN {
    fn name(&self) -> &'static str {
        self.name
    }

    #[tracing::instrument(skip_all, fields(strategy = self.name, problem = %problem.id, n = self.config.n.get()))]
    async fn solve(&self, problem: &Problem, cx: &Context) -> Result<Solution> {
        if self.config.adaptive.is_some() {
            return solve_in_stages(self, problem, cx).await;
        }
        let mut draw = Draw::new();
        self.draw_rounds(problem, cx, &mut draw, self.config.n.get())
            .await?;
        self.select(cx, draw, true)
    }

    /// With `adaptive`: a stage per round, so a triage run draws the next round for the least
    /// decided vote of its set.
    fn staged(&self) -> Option<&dyn Staged> {
        self.config
            .adaptive
            .is_some()
            .then_some(self as &dyn Staged)
    }
}

impl BestOfN {
    /// A round drawn, as a stage: asking for another unless the vote is decided, the budget
    /// stopped it or all `n` are drawn.
    async fn round(&self, problem: &Problem, cx: &Context, mut draw: Draw) -> Result<Stage> {
        let n = self.config.n.get();
        let round = self.config.adaptive.as_ref().map_or(n, |a| a.round.get());
        let limit = (draw.candidates.len() + round).min(n);
        let decided = self.draw_rounds(problem, cx, &mut draw, limit).await?;
        let pending = (!decided && !draw.stop_reason.is_budget() && draw.candidates.len() < n)
            .then(|| {
                let share = self.vote_share(&draw.candidates);
                Pending {
                    confidence: share,
                    why: format!(
                        "undecided after {} of {n} samples (leader's share {share:.2})",
                        draw.candidates.len()
                    ),
                }
            });
        let mut solution = self.select(cx, draw, pending.is_none())?;
        if pending.is_some() {
            // Not saved: still to draw, should the run afford it.
            solution.details["samples_saved"] = 0.into();
        }
        Ok(Stage { solution, pending })
    }
}

#[async_trait]
impl Staged for BestOfN {
    async fn first(&self, problem: &Problem, cx: &Context) -> Result<Stage> {
        self.round(problem, cx, Draw::new()).await
    }

    async fn next(&self, problem: &Problem, so_far: Solution, cx: &Context) -> Result<Stage> {
        let details: BestOfNDetails =
            serde_json::from_value(so_far.details).map_err(|e| Error::StrategyConfig {
                strategy: "best_of_n",
                reason: format!(
                    "more samples were asked for after a stage that is not best-of-N's: {e}"
                ),
            })?;
        let mut draw = Draw {
            stops: details.stops,
            candidates: so_far.candidates,
            stop_reason: StopReason::Completed,
        };
        draw.stops
            .resize(draw.candidates.len(), StopReason::Completed);
        self.round(problem, cx, draw).await
    }
}

#[cfg(test)]
mod tests {
    use ponder_engine::scripted::ScriptedBackend;
    use ponder_engine::{Backend, Budget};

    use super::*;

    /// Scores candidate i (counting across calls) `[1.0, rewards[i]]`.
    struct FixedScorer(std::sync::Mutex<std::collections::VecDeque<f64>>);

    impl FixedScorer {
        fn new(rewards: &[f64]) -> Arc<Self> {
            Arc::new(Self(std::sync::Mutex::new(
                rewards.iter().copied().collect(),
            )))
        }
    }

    #[async_trait]
    impl Scorer for FixedScorer {
        async fn score(
            &self,
            _: &Context,
            _: &str,
            candidates: &[Vec<String>],
        ) -> Result<Vec<Vec<f64>>> {
            let mut rewards = self.0.lock().unwrap();
            Ok(candidates
                .iter()
                .map(|_| vec![1.0, rewards.pop_front().unwrap()])
                .collect())
        }
    }

    fn answers(xs: &[&str]) -> Vec<String> {
        xs.iter()
            .map(|x| format!("Some working.\n\nFinal Answer: {x}"))
            .collect()
    }

    async fn run(strategy: &BestOfN, backend: Arc<ScriptedBackend>, budget: Budget) -> Solution {
        ponder_engine::solve(
            strategy,
            &Problem::new("p", "Q?"),
            backend as Arc<dyn Backend>,
            budget,
        )
        .await
        .unwrap()
    }

    fn details(solution: &Solution) -> BestOfNDetails {
        serde_json::from_value(solution.details.clone()).unwrap()
    }

    #[tokio::test]
    async fn direct_inner_is_one_request_of_n_and_majority_wins() {
        let backend = Arc::new(ScriptedBackend::new(answers(&["4", "5", "4.0", "6"])));
        let config = BestOfNConfig {
            n: NonZeroUsize::new(4).unwrap(),
            ..BestOfNConfig::self_consistency(NonZeroUsize::new(4).unwrap())
        };
        let strategy = BestOfN::new(config).unwrap();
        let solution = run(&strategy, Arc::clone(&backend), Budget::unlimited()).await;
        let requests = backend.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].n, 4);
        assert_eq!(solution.answer.as_deref(), Some("4"));
        let d = details(&solution);
        assert_eq!(d.candidates.len(), 4);
        assert_eq!(d.selected, Some(0));
        assert_eq!(d.samples_saved, 0);
        assert_eq!(solution.usage.calls, 1);
    }

    #[tokio::test]
    async fn weighted_and_naive_use_the_scorer_with_the_aggregate() {
        for (select, aggregate, expect) in [
            // rewards per candidate (min over [1.0, r]) 0.9, 0.5, 0.6, 0.2: group "4" weighs 1.1.
            (Select::Weighted, Aggregate::Min, "4"),
            (Select::Naive, Aggregate::Min, "3"),
            // with `prod` the same numbers; with `mean` naive still picks the 0.9 candidate.
            (Select::Naive, Aggregate::Mean, "3"),
        ] {
            let backend = Arc::new(ScriptedBackend::new(answers(&["3", "4", "4", "5"])));
            let config = BestOfNConfig {
                n: NonZeroUsize::new(4).unwrap(),
                select,
                aggregate,
                scorer: Some(ScorerConfig::default()),
                ..BestOfNConfig::default()
            };
            let strategy = BestOfN::new(config)
                .unwrap()
                .with_scorer(FixedScorer::new(&[0.9, 0.5, 0.6, 0.2]));
            let solution = run(&strategy, backend, Budget::unlimited()).await;
            assert_eq!(
                solution.answer.as_deref(),
                Some(expect),
                "{select:?} {aggregate:?}"
            );
            assert!(details(&solution)
                .candidates
                .iter()
                .all(|c| c.score.is_some()));
        }
    }

    #[tokio::test]
    async fn adaptive_n_stops_when_the_vote_cannot_be_overturned() {
        let backend = Arc::new(ScriptedBackend::new(answers(&[
            "5", "5", "5", "5", "5", "5", "5", "5",
        ])));
        let config = BestOfNConfig {
            adaptive: Some(AdaptiveConfig {
                round: NonZeroUsize::new(2).unwrap(),
                agreement: None,
            }),
            ..BestOfNConfig::self_consistency(NonZeroUsize::new(8).unwrap())
        };
        let events = ponder_engine::scripted::Recorder::new();
        let problem = Problem::new("p", "Q?");
        let cx = Context::with_events(
            Arc::clone(&backend) as Arc<dyn Backend>,
            Budget::unlimited(),
            events.events_of("p"),
        );
        let solution = ponder_engine::solve_in(&BestOfN::new(config).unwrap(), &problem, &cx)
            .await
            .unwrap();
        let d = details(&solution);
        // After 6 votes for 5 with 2 left, nothing can overturn it (5 > 0 + 2 already at 6).
        assert_eq!((d.samples, d.samples_saved), (6, 2));
        assert_eq!(backend.requests().len(), 3);
        assert_eq!(backend.remaining(), 2);
        // Each round says how the vote stands; the last is decided.
        let round = |samples, decided| EventKind::Round {
            samples,
            of: 8,
            leader: Some("5".into()),
            share: 1.0,
            decided,
        };
        assert_eq!(
            events.decisions("p"),
            [
                round(2, false),
                round(4, false),
                round(6, true),
                EventKind::Selected {
                    answer: Some("5".into()),
                    candidates: 6,
                    why: d.why.clone()
                }
            ]
        );

        // With an agreement level, the first unanimous round is enough.
        let backend = Arc::new(ScriptedBackend::new(answers(&["5", "5", "5", "5"])));
        let config = BestOfNConfig {
            adaptive: Some(AdaptiveConfig {
                round: NonZeroUsize::new(2).unwrap(),
                agreement: Some(0.9),
            }),
            ..BestOfNConfig::self_consistency(NonZeroUsize::new(4).unwrap())
        };
        let solution = run(&BestOfN::new(config).unwrap(), backend, Budget::unlimited()).await;
        assert_eq!(details(&solution).samples_saved, 2);

        // One vote and one sample without an answer is half the votes, not all of them.
        let backend = Arc::new(ScriptedBackend::new([
            "The answer is 5.",
            "I cannot tell.",
            "The answer is 5.",
            "The answer is 5.",
        ]));
        let config = BestOfNConfig {
            adaptive: Some(AdaptiveConfig {
                round: NonZeroUsize::new(2).unwrap(),
                agreement: Some(0.7),
            }),
            ..BestOfNConfig::self_consistency(NonZeroUsize::new(6).unwrap())
        };
        let solution = run(&BestOfN::new(config).unwrap(), backend, Budget::unlimited()).await;
        // Stopped at 3 of 4 (0.75), not at 1 of 1 answered after the first round.
        assert_eq!(details(&solution).samples_saved, 2);
    }

    #[tokio::test]
    async fn adaptive_best_of_n_is_staged_a_round_at_a_time() {
        let config = BestOfNConfig {
            adaptive: Some(AdaptiveConfig {
                round: NonZeroUsize::new(2).unwrap(),
                agreement: None,
            }),
            ..BestOfNConfig::self_consistency(NonZeroUsize::new(6).unwrap())
        };
        let strategy = BestOfN::new(config.clone()).unwrap();
        let staged = strategy.staged().expect("adaptive best-of-N has stages");
        let problem = Problem::new("p", "Q?");
        let votes = ["7", "8", "7", "7", "7", "8"];
        let backend = Arc::new(ScriptedBackend::new(answers(&votes)));
        let cx = Context::new(
            Arc::clone(&backend) as Arc<dyn Backend>,
            Budget::unlimited(),
        );
        // A split first round asks for more, as sure as its leader's share.
        let first = staged.first(&problem, &cx).await.unwrap();
        let pending = first.pending.clone().expect("undecided after 7 and 8");
        assert_eq!(pending.confidence, 0.5);
        assert!(pending.why.contains("2 of 6"), "{}", pending.why);
        assert_eq!(details(&first.solution).samples_saved, 0);
        assert_eq!(backend.requests().len(), 1);
        // Each next stage is one round, from the last stage after a JSON round trip (as a
        // triage run keeps it): 3 to 1 with two samples left can still be overturned.
        let kept = |stage: &Stage| -> Solution {
            serde_json::from_str(&serde_json::to_string(&stage.solution).unwrap()).unwrap()
        };
        let second = staged.next(&problem, kept(&first), &cx).await.unwrap();
        let pending = second.pending.clone().expect("3 to 1, two samples left");
        assert_eq!(pending.confidence, 0.75);
        assert!(pending.why.contains("4 of 6"), "{}", pending.why);
        assert_eq!(backend.requests().len(), 2);
        let last = staged.next(&problem, kept(&second), &cx).await.unwrap();
        assert_eq!(last.pending, None, "all six drawn");
        let rest = last.solution;
        assert_eq!(rest.answer.as_deref(), Some("7"));
        let d = details(&rest);
        assert_eq!((d.samples, d.stops.len()), (6, 6));
        // The same as solving in one go.
        let backend = Arc::new(ScriptedBackend::new(answers(&votes)));
        let whole = run(&strategy, Arc::clone(&backend), Budget::unlimited()).await;
        assert_eq!(backend.requests().len(), 3);
        assert_eq!(whole.answer, rest.answer);
        assert_eq!(details(&whole), d);
        // A unanimous first round of 3 is decided (2 > 0 + 1): nothing more to ask for.
        let decided = BestOfN::new(BestOfNConfig {
            n: NonZeroUsize::new(3).unwrap(),
            ..config
        })
        .unwrap();
        let backend = Arc::new(ScriptedBackend::new(answers(&["7", "7"])));
        let cx = Context::new(backend as Arc<dyn Backend>, Budget::unlimited());
        let first = decided.first(&problem, &cx).await.unwrap();
        assert_eq!(first.pending, None);
        // Without adaptive N there is nothing to stage.
        assert!(BestOfN::new(BestOfNConfig::self_consistency(
            NonZeroUsize::new(4).unwrap()
        ))
        .unwrap()
        .staged()
        .is_none());
    }

    #[tokio::test]
    async fn a_chosen_sample_cut_at_max_tokens_says_so() {
        // Two samples of one request, their max_tokens shrunk by the budget to 8 bytes: both
        // are cut, so the answer is a cut sample's and the solution says so.
        let backend = Arc::new(ScriptedBackend::new(answers(&["7", "7"])));
        let strategy = BestOfN::new(BestOfNConfig::self_consistency(
            NonZeroUsize::new(2).unwrap(),
        ))
        .unwrap();
        let request = match &strategy.inner {
            Inner::Direct(direct) => direct.request(&Problem::new("p", "Q?")),
            Inner::Any(_) => panic!("self-consistency samples directly"),
        };
        let prompt = ScriptedBackend::render(&request.prompt).len() as u64;
        let budget = Budget::unlimited().with_max_tokens(prompt + 16);
        let solution = run(&strategy, Arc::clone(&backend), budget).await;
        assert_eq!(backend.requests()[0].max_tokens, 8);
        assert_eq!(solution.stop_reason, StopReason::MaxTokens);
        // Uncut, the same samples complete.
        let backend = Arc::new(ScriptedBackend::new(answers(&["7", "7"])));
        let solution = run(&strategy, backend, Budget::unlimited()).await;
        assert_eq!(solution.stop_reason, StopReason::Completed);
        assert_eq!(solution.answer.as_deref(), Some("7"));
    }

    #[tokio::test]
    async fn a_budget_stop_selects_among_what_was_drawn() {
        let backend = Arc::new(ScriptedBackend::new(answers(&[
            "7", "7", "8", "8", "8", "8",
        ])));
        let config = BestOfNConfig {
            adaptive: Some(AdaptiveConfig {
                round: NonZeroUsize::new(2).unwrap(),
                agreement: None,
            }),
            ..BestOfNConfig::self_consistency(NonZeroUsize::new(6).unwrap())
        };
        let strategy = BestOfN::new(config).unwrap();
        let budget = Budget::unlimited().with_max_calls(1);
        let solution = run(&strategy, backend, budget).await;
        assert_eq!(solution.stop_reason, StopReason::CallBudget);
        assert_eq!(solution.answer.as_deref(), Some("7"));
        assert_eq!(details(&solution).samples, 2);
        assert_eq!(solution.usage.calls, 1);
    }

    /// Best-of-3 over budget forcing (one at a time), and a script of a thinking reply and an
    /// answer reply per sample.
    fn forced_best_of_3(answers: [&str; 3]) -> (BestOfN, Arc<ScriptedBackend>) {
        let mut replies = Vec::new();
        for answer in answers {
            replies.push("I add them.</think>".to_string());
            replies.push(answer.to_string());
        }
        let inner = StrategyConfig::BudgetForcing(crate::BudgetForcingConfig {
            temperature: 0.7,
            ..crate::BudgetForcingConfig::default()
        });
        let config = BestOfNConfig {
            inner: Box::new(inner),
            concurrency: NonZeroUsize::new(1),
            ..BestOfNConfig::self_consistency(NonZeroUsize::new(3).unwrap())
        };
        (
            BestOfN::new(config).unwrap(),
            Arc::new(ScriptedBackend::new(replies)),
        )
    }

    /// Answers "A" at its first solve and "B" after, the first solve the slowest.
    struct SlowFirst(std::sync::atomic::AtomicUsize);

    #[async_trait]
    impl Strategy for SlowFirst {
        fn name(&self) -> &'static str {
            "slow_first"
        }

        async fn solve(&self, _: &Problem, _: &Context) -> Result<Solution> {
            let k = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (answer, wait) = if k == 0 { ("A", 60) } else { ("B", 0) };
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            let candidate = Candidate {
                answer: Some(answer.into()),
                text: answer.into(),
                score: None,
                tokens: 1,
            };
            Ok(Solution::single(
                "slow_first",
                candidate,
                StopReason::Completed,
            ))
        }
    }

    #[tokio::test]
    async fn programs_are_not_grouped_by_their_last_number() {
        // Two different programs that both end in `return 0`, and a third: no vote among them
        // (the last number of a program is not its answer), so majority keeps the first.
        let problem = Problem {
            code: Some(ponder_engine::CodeTask {
                prompt: "def f(x):\n".into(),
                entry_point: "f".into(),
                test: String::new(),
            }),
            ..Problem::new("f", "def f(x):\n")
        };
        let programs = [
            "def f(x):\n    return x + 1\n",
            "def f(x):\n    if x:\n        return 2\n    return 0\n",
            "def f(x):\n    print(x)\n    return 0\n",
        ];
        let backend = Arc::new(ScriptedBackend::new(programs));
        let strategy = BestOfN::new(BestOfNConfig::self_consistency(
            NonZeroUsize::new(3).unwrap(),
        ))
        .unwrap();
        let solution = ponder_engine::solve(
            &strategy,
            &problem,
            backend as Arc<dyn Backend>,
            Budget::unlimited(),
        )
        .await
        .unwrap();
        assert_eq!(solution.completion, programs[0]);
        assert_eq!(solution.answer, None);
        assert!(solution.candidates.iter().all(|c| c.answer.is_none()));
    }

    #[tokio::test]
    async fn a_tie_goes_to_the_earlier_draw_not_the_quicker() {
        let strategy = BestOfN::new(BestOfNConfig::self_consistency(
            NonZeroUsize::new(2).unwrap(),
        ))
        .unwrap()
        .with_inner(Box::new(SlowFirst(Default::default())));
        let backend = Arc::new(ScriptedBackend::new(Vec::<String>::new()));
        let solution = run(&strategy, backend, Budget::unlimited()).await;
        assert_eq!(solution.answer.as_deref(), Some("A"));
        let answers: Vec<_> = details(&solution)
            .candidates
            .iter()
            .map(|c| c.answer.clone())
            .collect();
        assert_eq!(answers, [Some("A".into()), Some("B".into())]);
    }

    #[tokio::test]
    async fn other_inner_strategies_are_solved_n_times() {
        // budget_forcing on a backend without logits processors resubmits: per sample, one
        // thinking request (stopped at the delimiter) and one answer request.
        let (strategy, backend) = forced_best_of_3(["2", "2", "3"]);
        let solution = run(&strategy, Arc::clone(&backend), Budget::unlimited()).await;
        assert_eq!(solution.answer.as_deref(), Some("2"));
        assert_eq!(backend.requests().len(), 6);
        assert!(details(&solution).candidates.iter().all(|c| c.tokens > 0));
    }

    #[tokio::test]
    async fn an_inner_strategys_budget_stop_ends_the_draw_and_empty_samples_are_dropped() {
        // Each budget-forcing sample takes two calls; three calls finish one sample, the second
        // stops after its thinking (kept: it was paid for), the third before writing anything
        // (a solution, not an error, and no candidate).
        let (strategy, backend) = forced_best_of_3(["2", "3", "3"]);
        let solution = run(&strategy, backend, Budget::unlimited().with_max_calls(3)).await;
        assert_eq!(solution.stop_reason, StopReason::CallBudget);
        assert_eq!(solution.answer.as_deref(), Some("2"));
        assert_eq!(details(&solution).samples, 2, "{:?}", details(&solution));
    }

    #[tokio::test]
    async fn adaptive_naive_selection_stops_only_at_a_perfect_reward() {
        // Rewards 0.6, 0.6 for "5", then 0.95 for "6": the vote mass would call it for "5"
        // after two samples, but naive selection takes the single best reward.
        let backend = Arc::new(ScriptedBackend::new(answers(&["5", "5", "6"])));
        let config = BestOfNConfig {
            n: NonZeroUsize::new(3).unwrap(),
            select: Select::Naive,
            aggregate: Aggregate::Min,
            scorer: Some(ScorerConfig::default()),
            adaptive: Some(AdaptiveConfig {
                round: NonZeroUsize::new(2).unwrap(),
                agreement: None,
            }),
            ..BestOfNConfig::default()
        };
        let strategy = BestOfN::new(config)
            .unwrap()
            .with_scorer(FixedScorer::new(&[0.6, 0.6, 0.95]));
        let solution = run(&strategy, backend, Budget::unlimited()).await;
        assert_eq!(details(&solution).samples, 3);
        assert_eq!(solution.answer.as_deref(), Some("6"));
    }

    #[test]
    fn config_rules() {
        let config = BestOfNConfig::default();
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("needs a scorer"));
        let config = BestOfNConfig {
            adaptive: Some(AdaptiveConfig {
                round: NonZeroUsize::MIN,
                agreement: Some(1.5),
            }),
            ..BestOfNConfig::self_consistency(NonZeroUsize::MIN)
        };
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("agreement"));
    }
}
