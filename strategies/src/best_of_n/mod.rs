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
use futures::StreamExt;
use ponder_engine::answer::{THINK_CLOSE, THINK_OPEN};
use ponder_engine::turn::opens_thinking;
use ponder_engine::{
    solve_in_stages, Candidate, Context, Error, EventKind, Pending, Problem, Resource, Result,
    Scorer, Solution, Stage, Staged, StopReason, Strategy,
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
        self.check(self.scorer.is_some())
    }

    /// [`Self::validate`], with a scorer given in code (`scored`) standing in for `scorer`.
    fn check(&self, scored: bool) -> Result<()> {
        if self.select != Select::Majority && !scored {
            return Err(Error::config_value(
                "select",
                format!(
                    "select = \"{}\" needs a scorer (or use select = \"majority\")",
                    match self.select {
                        Select::Naive => "naive",
                        _ => "weighted",
                    }
                ),
            ));
        }
        if let Some(scorer) = &self.scorer {
            scorer.validate().map_err(|e| e.under("scorer"))?;
        }
        if let Some(adaptive) = &self.adaptive {
            // A round of more than n samples would draw n at once, nothing stopped early (a
            // round of n, as `n = 2` with the default round, only stops nothing).
            if adaptive.round > self.n {
                return Err(Error::config_value(
                    "adaptive.round",
                    format!(
                        "adaptive.round ({}; 2 when not given) must be at most n ({}): a round \
                         of n samples leaves none to save",
                        adaptive.round, self.n
                    ),
                ));
            }
            if let Some(a) = adaptive.agreement {
                if !(a > 0.0 && a <= 1.0) {
                    return Err(Error::config_value(
                        "adaptive.agreement",
                        format!("adaptive.agreement must be in (0, 1], got {a}"),
                    ));
                }
            }
        }
        if self.step_delimiter.is_empty() {
            return Err(Error::config_value(
                "step_delimiter",
                "step_delimiter must not be empty",
            ));
        }
        // Greedy samples of one prompt are one sample n times over: n times the cost, no vote.
        if self.n.get() > 1 && self.inner.greedy() {
            let (key, what) = match &*self.inner {
                StrategyConfig::Router(_) => (
                    "inner",
                    "its short answer's `temperature` and its `think` strategy's are 0",
                ),
                StrategyConfig::BestOfN(_) | StrategyConfig::SelfConsistency(_) => (
                    "inner.inner.temperature",
                    "its own inner strategy is greedy",
                ),
                _ => ("inner.temperature", "its temperature is 0"),
            };
            return Err(Error::config_value(
                key,
                format!(
                    "n = {} samples of an inner `{}` at temperature 0 are all the same greedy \
                     solution ({what}): give the inner strategy a temperature (0.6 to 1.0 is \
                     usual)",
                    self.n,
                    self.inner.kind()
                ),
            ));
        }
        // A router that samples its short answers but thinks greedily: every sample that thinks
        // writes the same thinking, n times the cost of one and one vote n times over.
        if let StrategyConfig::Router(router) = &*self.inner {
            if self.n.get() > 1 && router.think.greedy() {
                return Err(Error::config_value(
                    "inner.think",
                    format!(
                        "n = {} samples of an inner `router` whose `think` strategy (`{}`) is \
                         greedy think the same way in every sample that thinks: give `think` a \
                         temperature (0.6 to 1.0 is usual)",
                        self.n,
                        router.think.kind()
                    ),
                ));
            }
        }
        self.inner.validate().map_err(|e| e.under("inner"))
    }
}

enum Inner {
    /// Sampled with one request of n choices.
    Direct(Direct),
    /// Solved n times.
    Any(Box<dyn Strategy>),
}

impl Inner {
    fn strategy(&self) -> &dyn Strategy {
        match self {
            Self::Direct(direct) => direct,
            Self::Any(strategy) => strategy.as_ref(),
        }
    }
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
    /// The errors of samples that failed (not candidates; their spend is in the usage): one
    /// per sample (a failed request of k choices, k), each drawn again until as many failed
    /// as `n`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
    /// The errors of scorer calls that failed: their rounds' candidates are unscored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scoring_failed: Vec<String>,
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
        Self::built(config)
    }

    /// Best-of-N whose rewards come from a scorer built in code (a reward model of your own,
    /// say) rather than the config's `scorer`, which may be left out: for `select = "weighted"`
    /// or `"naive"` (a majority vote reads no rewards, but they are still in the details).
    pub fn scored_by(config: BestOfNConfig, scorer: Arc<dyn Scorer>) -> Result<Self> {
        config.check(true)?;
        Ok(Self::built(config)?.with_scorer(scorer))
    }

    /// The strategy `config` describes, which has been checked.
    fn built(config: BestOfNConfig) -> Result<Self> {
        let inner = match config.inner.as_ref() {
            StrategyConfig::Direct(direct) => Inner::Direct(Direct::new(direct.clone())?),
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

    /// The `self_consistency` preset ([`BestOfNConfig::self_consistency`] builds its config):
    /// named so in results and events; `config` must select by majority vote, with no scorer
    /// (as a `self_consistency` table must: one would pay for a reward of every sample that
    /// only breaks ties).
    pub fn self_consistency(config: BestOfNConfig) -> Result<Self> {
        Self::self_consistency_config(&config)?;
        Ok(Self {
            name: "self_consistency",
            ..Self::new(config)?
        })
    }

    /// Checks that `config` is self-consistency's: majority vote, no scorer.
    pub(crate) fn self_consistency_config(config: &BestOfNConfig) -> Result<()> {
        if config.select != Select::Majority {
            return Err(Error::config_value(
                "select",
                "self-consistency selects by majority vote: give select = \"majority\" (or use \
                 kind = \"best_of_n\", BestOfN::new in code, to select by a scorer's rewards)",
            ));
        }
        if config.scorer.is_some() {
            return Err(Error::config_value(
                "scorer",
                "self-consistency is a plain majority vote, with no scorer to pay for: remove \
                 it, or use kind = \"best_of_n\" (BestOfN::new in code) with select = \
                 \"majority\" (a scorer's rewards break ties)",
            ));
        }
        Ok(())
    }

    /// Replaces the inner strategy with one built in code (one of your own, say): each sample
    /// is one solve of it, in a context of its own whose calls count here. The config's
    /// `inner` is then unused, though [`Self::new`] has already checked and built it (a greedy
    /// one with `n > 1` was refused there); the strategy given here is not checked: one that
    /// decodes greedily gives the same sample `n` times.
    pub fn with_inner(mut self, inner: Box<dyn Strategy>) -> Self {
        self.inner = Inner::Any(inner);
        self
    }

    /// Replaces the scorer (for scorers built in code; [`Self::scored_by`] builds best-of-N
    /// without one in the config).
    pub fn with_scorer(mut self, scorer: Arc<dyn Scorer>) -> Self {
        self.scorer = Some(scorer);
        self
    }

    /// Draws `k` candidates, samples `first`, `first + 1`, ..., each with how it stopped; with
    /// an inner strategy, also the budget stop one of them hit (an inner strategy turns an
    /// exhausted budget into a solution, not an error).
    async fn draw(&self, problem: &Problem, cx: &Context, first: usize, k: usize) -> Result<Drawn> {
        let mut drawn = self.draw_any(problem, cx, first, k).await?;
        // A program has no answer to vote on (the last number in it is not one): majority
        // keeps the first sample, the scorer's reward picks otherwise.
        if problem.code.is_some() {
            for (candidate, _) in &mut drawn.samples {
                candidate.answer = None;
            }
            if self.scorer.is_none() {
                // Said once a process: a batch of code problems would say it for each.
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    tracing::warn!(
                        problem = %problem.id,
                        "best-of-N by majority vote on a code problem: programs have no answer \
                         to vote on, so the first sample is kept and the others are spent for \
                         nothing; give best-of-N a scorer, or use s_star (which runs the \
                         public tests)"
                    );
                });
            }
        }
        Ok(drawn)
    }

    async fn draw_any(
        &self,
        problem: &Problem,
        cx: &Context,
        first: usize,
        k: usize,
    ) -> Result<Drawn> {
        match &self.inner {
            Inner::Direct(direct) => {
                let request = direct.request(problem).with_n(k);
                let generation = match cx.backend().generate(request).await {
                    Ok(generation) => generation,
                    // The request's own failure: its k samples failed, and are drawn again
                    // (see `draw_rounds`) as an inner strategy's failed samples are.
                    Err(e) if e.is_per_call() => {
                        tracing::warn!(problem = %problem.id, "a request of {k} samples failed: {e}");
                        return Ok(Drawn {
                            samples: Vec::new(),
                            budget_stop: None,
                            failed: vec![Failure {
                                error: e,
                                samples: k,
                            }],
                        });
                    }
                    Err(e) => return Err(e),
                };
                // The budget shortened the request: the samples it cut stopped by the budget
                // (and drawing stops), as an inner strategy's would.
                let budget_stop = generation.cut_by.map(StopReason::from);
                let got = generation.choices.len();
                let samples = generation
                    .choices
                    .into_iter()
                    .map(candidate_of)
                    .map(|(candidate, stop)| match (stop, budget_stop) {
                        (StopReason::MaxTokens, Some(budget)) => (candidate, budget),
                        _ => (candidate, stop),
                    })
                    .collect();
                // A reply with fewer choices than asked for, not cut by a budget (a server
                // that answered `"choices": []`): the missing samples failed, and count
                // towards giving up as failed requests do, or they would be asked for again
                // and again.
                let failed = if got < k && budget_stop.is_none() {
                    tracing::warn!(problem = %problem.id, "a request of {k} samples returned {got}");
                    vec![Failure {
                        error: Error::Inference {
                            message: format!(
                                "the backend returned {got} of the {k} completions asked for"
                            ),
                        },
                        samples: k - got,
                    }]
                } else {
                    Vec::new()
                };
                Ok(Drawn {
                    samples,
                    budget_stop,
                    failed,
                })
            }
            Inner::Any(strategy) => {
                let concurrency = self.config.concurrency.map_or(k, NonZeroUsize::get);
                let outcomes: Vec<Result<(Candidate, StopReason)>> =
                    futures::stream::iter(first..first + k)
                        .map(|index| async move {
                            // Seeds of its own where the run is seeded: the same draws whichever
                            // sample reaches the model first.
                            // (A last call the budget shortened says so, as a direct sample's does.)
                            let solution =
                                cx.solve_sample(strategy.as_ref(), problem, index).await?;
                            let candidate = Candidate {
                                answer: solution.answer,
                                text: solution.completion,
                                score: None,
                                tokens: solution.usage.completion_tokens,
                            };
                            Ok::<_, Error>((candidate, solution.stop_reason))
                        })
                        // In the order drawn, not finished: ties go to the earlier draw, as in
                        // one request of n, whichever sample is quickest.
                        .buffered(concurrency.max(1))
                        .collect()
                        .await;
                // A sample whose own call failed (a sampling error, a request a server
                // refused) leaves the others their candidates, as a failed choice of one
                // request of n does; the rounds draw another in its place (see
                // `draw_rounds`). A failure that is not one call's: the error.
                let mut solved = Vec::new();
                let mut failed = Vec::new();
                for outcome in outcomes {
                    match outcome {
                        Ok(sample) => solved.push(sample),
                        Err(error) if error.is_per_call() => {
                            tracing::warn!(problem = %problem.id, "a sample failed: {error}");
                            failed.push(Failure { error, samples: 1 });
                        }
                        Err(e) => return Err(e),
                    }
                }
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
                Ok(Drawn {
                    samples: drawn,
                    budget_stop,
                    failed,
                })
            }
        }
    }

    async fn score(
        &self,
        problem: &Problem,
        cx: &Context,
        candidates: &mut [Candidate],
    ) -> Result<Option<Resource>> {
        let Some(scorer) = &self.scorer else {
            return Ok(None);
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
        let (refused_before, _) = cx.meter().refused();
        let scores =
            ponder_engine::score_checked(scorer.as_ref(), cx, &problem.question, &steps).await?;
        for (candidate, steps) in candidates.iter_mut().zip(scores) {
            candidate.score = self.config.aggregate.apply(&steps);
        }
        // Reads the budget refused are unscored; those read stand, and the budget stops the
        // draw.
        let (refused, by) = cx.meter().refused();
        Ok(by.filter(|_| refused > refused_before))
    }

    /// Each answer's mass in the vote (its samples for `majority`, their summed reward
    /// otherwise), and the rewards that can decide it (as [`ballot`] counts them: of the
    /// candidates with an answer, where any has one). Where no candidate with an answer was
    /// scored, selection goes by votes ([`Select::apply`]), and so does this: `by_votes`.
    fn votes(&self, draw: &Draw) -> Votes {
        let (answers, rewards) = ballot(draw, self.inner.strategy());
        // A reward that is not a number is none, as `Select::apply` counts it.
        let rewards: Vec<Option<f64>> = rewards
            .into_iter()
            .map(|r| r.filter(|r| r.is_finite()))
            .collect();
        let by_votes = self.config.select.goes_by_votes(&answers, &rewards);
        // A weighted vote counts a candidate left unscored at the mean reward, as
        // `Select::apply` does: in its groups and in the total they are a share of.
        let weighed = match self.config.select {
            Select::Weighted => ponder_prm::unscored_at_mean(&answers, &rewards),
            _ => rewards.clone(),
        };
        let groups = ponder_prm::groups(&answers, &weighed);
        let answered = answers.iter().any(Option::is_some);
        let total_reward = weighed.iter().flatten().sum();
        let mass = match by_votes {
            true => groups.iter().map(|g| g.members.len() as f64).collect(),
            false => groups.iter().map(|g| g.weight).collect(),
        };
        let rewards = rewards
            .into_iter()
            .zip(&answers)
            .filter(|(_, answer)| answer.is_some() || !answered)
            .map(|(reward, _)| reward)
            .collect();
        Votes {
            mass,
            rewards,
            total_reward,
            by_votes,
        }
    }

    /// Whether the vote among `draw`'s candidates is settled with `left` samples still to draw.
    fn decided(&self, draw: &Draw, left: usize) -> bool {
        let Some(adaptive) = &self.config.adaptive else {
            return false;
        };
        let Votes {
            mass,
            rewards,
            by_votes,
            ..
        } = self.votes(draw);
        // A vote is 1, and a reward at most 1: one more sample adds at most 1 to a group.
        let per_sample = 1.0;
        let mut sorted = mass.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let leader = sorted.first().copied().unwrap_or(0.0);
        let second = sorted.get(1).copied().unwrap_or(0.0);
        let certain = match self.config.select {
            // The single best reward wins: only a perfect one cannot be beaten by a later sample.
            Select::Naive if !by_votes => left == 0 || rewards.iter().flatten().any(|&r| r >= 1.0),
            // Candidates left unscored count at the mean reward, which each later sample
            // scored moves, in every group at once: no lead is beyond overturning by `left`
            // samples then (the agreement share below still stops it).
            Select::Weighted if !by_votes && rewards.iter().any(Option::is_none) => left == 0,
            _ => leader > second + per_sample * left as f64,
        };
        if certain {
            return true;
        }
        // The share the round events report: for `majority` unanswered samples count against
        // the leader (one vote among two samples, the other unanswered, is no agreement).
        match adaptive.agreement {
            Some(share) => {
                self.vote_share(draw) >= share && draw.candidates.len() >= adaptive.round.get()
            }
            None => false,
        }
    }
}

/// The candidates' answers and rewards as the vote counts them: a sample the budget cut off
/// before it stated an answer ends on a number of its working, not an answer, and is selected
/// from only where no other sample answered.
fn ballot(draw: &Draw, inner: &dyn Strategy) -> (Vec<Option<String>>, Vec<Option<f64>>) {
    let candidates = &draw.candidates;
    let mut answers: Vec<Option<String>> = candidates.iter().map(|c| c.answer.clone()).collect();
    let mut rewards: Vec<Option<f64>> = candidates.iter().map(|c| c.score).collect();
    let opened = draw.thinking_opened.unwrap_or(false);
    let guessed: Vec<bool> = candidates
        .iter()
        .zip(&draw.stops)
        .map(|(c, stop)| {
            stop.is_budget() && c.answer.is_some() && !inner.states_answer(&c.text, opened)
        })
        .collect();
    leave_out_guesses(&mut answers, &mut rewards, &guessed);
    (answers, rewards)
}

/// Takes the answers (and rewards) of the `guessed` candidates out of the vote (a number of
/// working the budget cut, not an answer stated), where another candidate stated one; with
/// none stated, the guesses are all there is.
pub(crate) fn leave_out_guesses(
    answers: &mut [Option<String>],
    rewards: &mut [Option<f64>],
    guessed: &[bool],
) {
    if answers.iter().zip(guessed).any(|(a, &g)| a.is_some() && !g) {
        for ((answer, reward), _) in answers
            .iter_mut()
            .zip(rewards.iter_mut())
            .zip(guessed)
            .filter(|(_, &g)| g)
        {
            *answer = None;
            *reward = None;
        }
    }
}

/// What one round drew.
struct Drawn {
    /// The samples, with how each stopped, in the order drawn.
    samples: Vec<(Candidate, StopReason)>,
    /// Of an inner strategy, the budget stop one of them hit (it turns an exhausted budget
    /// into a solution, not an error).
    budget_stop: Option<StopReason>,
    /// The samples that failed (left out of `samples`).
    failed: Vec<Failure>,
}

/// A draw's vote as it stands ([`BestOfN::votes`]).
struct Votes {
    /// Each answer's mass: its votes, or its samples' summed reward.
    mass: Vec<f64>,
    /// The rewards that can decide the vote.
    rewards: Vec<Option<f64>>,
    /// Every candidate's reward summed (unanswered ones' too: they count against the leader).
    total_reward: f64,
    /// Whether the vote goes by votes (majority, or nothing with an answer scored).
    by_votes: bool,
}

/// A call that failed, and how many samples it was to draw.
struct Failure {
    error: Error,
    samples: usize,
}

/// The samples drawn so far.
#[derive(Debug)]
struct Draw {
    candidates: Vec<Candidate>,
    /// How each candidate stopped.
    stops: Vec<StopReason>,
    /// Why drawing stopped.
    stop_reason: StopReason,
    /// The errors of samples that failed, one per sample (each drawn again until as many
    /// failed as `n`).
    failed: Vec<String>,
    /// The errors of scorer calls that failed.
    scoring_failed: Vec<String>,
    /// Whether the chat template opens a thinking block at the start of the turn: asked only
    /// once a sample the budget cut has no `</think>` of its own ([`ballot`]).
    thinking_opened: Option<bool>,
}

impl Draw {
    fn new() -> Self {
        Self {
            candidates: Vec::new(),
            stops: Vec::new(),
            stop_reason: StopReason::Completed,
            failed: Vec::new(),
            scoring_failed: Vec::new(),
            thinking_opened: None,
        }
    }

    /// Asks `cx`'s backend whether its template opens the thinking, where a sample the budget
    /// cut needs it to tell whether it stated its answer (not asked otherwise).
    async fn learn_template(&mut self, cx: &Context) {
        let needed = self.thinking_opened.is_none()
            && self.candidates.iter().zip(&self.stops).any(|(c, stop)| {
                // A sample that opened its own thinking says whether it closed it.
                stop.is_budget()
                    && c.answer.is_some()
                    && !c.text.contains(THINK_CLOSE)
                    && !c.text.contains(THINK_OPEN)
            });
        if needed {
            // Not learnt (a failed request): asked again after the next round.
            self.thinking_opened = match opens_thinking(cx.backend()).await {
                Ok(opened) => Some(opened),
                Err(e) => {
                    tracing::debug!(error = %e, "could not tell whether the template opens thinking");
                    None
                }
            };
        }
    }

    /// The number of the next sample (of an inner strategy: its seeds): one per sample
    /// drawn, the failed ones included.
    fn next_sample(&self) -> usize {
        self.candidates.len() + self.failed.len()
    }

    /// Whether as many samples failed as `n` were asked for: no more are drawn.
    fn gave_up(&self, n: usize) -> bool {
        self.failed.len() >= n
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
            let Drawn {
                samples: drawn,
                budget_stop,
                failed,
            } = match self.draw(problem, cx, draw.next_sample(), k).await {
                Ok(drawn) => drawn,
                Err(Error::BudgetExhausted { resource }) => {
                    draw.stop_reason = resource.into();
                    return Ok(false);
                }
                Err(e) => return Err(e),
            };
            for failure in &failed {
                let error = failure.error.to_string();
                draw.failed
                    .extend(std::iter::repeat_n(error, failure.samples));
            }
            // Failed samples are drawn again, until as many have failed as samples were
            // asked for: then the vote is among those drawn, or, with none, the failure is
            // the error.
            let given_up = draw.gave_up(n);
            if given_up && draw.candidates.is_empty() && drawn.is_empty() {
                if let Some(failure) = failed.into_iter().next() {
                    return Err(failure.error);
                }
            }
            let (mut drawn, drawn_stops): (Vec<Candidate>, Vec<StopReason>) =
                drawn.into_iter().unzip();
            draw.stops.extend(drawn_stops);
            match self.score(problem, cx, &mut drawn).await {
                Ok(None) => {}
                // Some reads refused, some made: the candidates keep the scores read.
                Ok(Some(resource)) | Err(Error::BudgetExhausted { resource }) => {
                    draw.stop_reason = resource.into();
                    draw.candidates.extend(drawn);
                    draw.learn_template(cx).await;
                    self.report_round(cx, draw, false);
                    return Ok(false);
                }
                // A judge's or reward model's call failed on its own after an earlier round
                // was scored: this round's candidates stay unscored (and the vote counts them
                // as such) rather than lost. Before any was scored, the scorer may never
                // work: the problem's error. (Candidates of earlier rounds went through a
                // scorer call that worked: the first round's failing is the error.)
                Err(e) if e.is_per_call() && !draw.candidates.is_empty() => {
                    tracing::warn!(problem = %problem.id, "scoring failed: {e}");
                    draw.scoring_failed.push(e.to_string());
                }
                Err(e) => return Err(e),
            }
            draw.candidates.extend(drawn);
            draw.learn_template(cx).await;
            if let Some(reason) = budget_stop {
                draw.stop_reason = reason;
                self.report_round(cx, draw, false);
                return Ok(false);
            }
            let decided = self.decided(draw, n - draw.candidates.len());
            self.report_round(cx, draw, decided);
            if decided {
                return Ok(true);
            }
            if given_up {
                return Ok(false);
            }
        }
        Ok(false)
    }

    /// Reports a round: how many samples, and how the vote stands.
    fn report_round(&self, cx: &Context, draw: &Draw, decided: bool) {
        if !cx.events().is_on() {
            return;
        }
        let (answers, rewards) = ballot(draw, self.inner.strategy());
        let leader = self
            .config
            .select
            .apply(&answers, &rewards)
            .index
            .and_then(|i| answers.get(i).cloned().flatten());
        cx.emit(
            self.name(),
            EventKind::Round {
                samples: draw.candidates.len(),
                of: self.config.n.get(),
                leader,
                share: self.vote_share(draw),
                decided,
            },
        );
    }

    /// The leading answer's share of the vote (of the reward, for `weighted`; the best reward,
    /// for `naive`): how sure a draw is. 0 with no answer.
    fn vote_share(&self, draw: &Draw) -> f64 {
        let Votes {
            mass,
            rewards,
            total_reward,
            by_votes,
        } = self.votes(draw);
        let leader = mass.iter().copied().fold(0.0, f64::max);
        let total = match self.config.select {
            // Unanswered samples count against the leader: their votes, or their rewards.
            _ if by_votes => draw.candidates.len() as f64,
            Select::Naive => return rewards.iter().flatten().copied().fold(0.0, f64::max),
            Select::Majority => draw.candidates.len() as f64,
            Select::Weighted => total_reward,
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
        let (answers, rewards) = ballot(&draw, self.inner.strategy());
        let Draw {
            candidates,
            stops,
            mut stop_reason,
            failed,
            scoring_failed,
            ..
        } = draw;
        let selection = self.config.select.apply(&answers, &rewards);
        let chosen = selection.index.and_then(|i| candidates.get(i)).cloned();
        let answer = selection
            .index
            .and_then(|i| answers.get(i))
            .cloned()
            .flatten();
        if fin {
            cx.emit(
                self.name(),
                EventKind::Selected {
                    answer: answer.clone(),
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
            // Not drawn because too many failed: not saved.
            samples_saved: if stop_reason.is_budget() || failed.len() >= n {
                0
            } else {
                n.saturating_sub(candidates.len())
            },
            samples: candidates.len(),
            stops,
            failed,
            scoring_failed,
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
            answer,
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

    /// As its inner strategy, which wrote the chosen sample's text.
    fn states_answer(&self, completion: &str, thinking_opened: bool) -> bool {
        self.inner
            .strategy()
            .states_answer(completion, thinking_opened)
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
        let pending = (!decided
            && !draw.stop_reason.is_budget()
            && draw.candidates.len() < n
            && !draw.gave_up(n))
        .then(|| {
            let share = self.vote_share(&draw);
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
            failed: details.failed,
            scoring_failed: details.scoring_failed,
            thinking_opened: None,
        };
        draw.stops
            .resize(draw.candidates.len(), StopReason::Completed);
        self.round(problem, cx, draw).await
    }
}

#[cfg(test)]
mod tests;
