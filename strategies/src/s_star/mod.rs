//! S* (arXiv 2502.14382): test-time scaling for code generation, in two stages.
//!
//! 1. Generation: `n` samples in one request; each is run against the problem's public tests
//!    (HumanEval: the docstring examples) in the [`Sandbox`], and while some fail it goes through
//!    up to `debug_rounds` rounds of debugging: the model sees the failures (the call, what was
//!    expected, what came back or what was raised) and rewrites the function. `feedback = "all"`
//!    keeps every earlier round in the conversation, `"last"` only the latest attempt.
//! 2. Selection: `first` takes sample 0; `public_tests` the first sample passing the most public
//!    tests; the other two choose among the candidates, the distinct programs passing the most
//!    public tests, by comparing pairs: the model writes inputs that should tell the two apart,
//!    both programs run on them in the sandbox, and where the outputs differ the judge model,
//!    shown both programs' code and, on the inputs where they differ, both outputs (as in
//!    SkyThought's S* judge), says which is right, asked once with each program shown
//!    first. Its verdict is the probability of "A" against "B" read from its first token, never
//!    parsed prose.
//!    - `adaptive_input_synthesis` (the paper's): the model first writes inputs for the problem;
//!      every candidate runs on them and candidates with the same outputs form a cluster (they
//!      behave alike, so one comparison stands for all). Each pair of clusters is compared once,
//!      round robin, the inputs the two clusters disagree on shown with the pair's own. A cluster
//!      wins a comparison when the judge prefers it in both orders (a judge that prefers
//!      whichever comes first gives no win, as in SkyThought's code). The cluster with the most
//!      wins, then the largest (a majority vote over behaviours), then the earliest, gives its
//!      earliest sample. k clusters cost k(k-1)/2 comparisons.
//!    - `knockout`: a cheaper single-elimination tournament (m-1 comparisons for m candidates):
//!      the winner of each pair goes on (the mean verdict over both orders; A on an even verdict
//!      or when every output agrees).
//!
//! Everything runs locally: the judge is the policy model unless `judge` names another one
//! (a `[model]` table), whose calls count against the same budget.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use ponder_engine::{
    Backend, Candidate, CodeTask, Context, Error, EventKind, FinishReason, GenerationRequest,
    Message, ModelConfig, Problem, Prompt, Resource, Result, Sampling, Solution, StopReason,
    Strategy,
};
use ponder_prm::{
    assemble, docstring_tests, extract_task_code, CodeVerifier, Sandbox, SandboxError, TestCase,
};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

mod details;
mod select;
mod text;

pub use details::{Cluster, Comparison, Round, SStarDetails, SampleDetail, TestLine};
use text::{feedback_message, round};

use crate::config::check_sampling;
use crate::prompt::PromptStyle;

/// How much of the debugging history the model sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feedback {
    /// Every earlier attempt and its test results.
    #[default]
    All,
    /// Only the latest attempt and its test results.
    Last,
}

/// How the final program is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeSelection {
    /// Clusters by outputs on synthesised inputs, then a round robin of the clusters on inputs
    /// synthesised per pair, judged by the model (the paper's).
    #[default]
    AdaptiveInputSynthesis,
    /// A single-elimination tournament on inputs synthesised per pair, judged by the model.
    Knockout,
    /// The first sample passing the most public tests.
    PublicTests,
    /// Sample 0, whatever its tests say.
    First,
}

/// Config of [`SStar`] (`kind = "s_star"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SStarConfig {
    /// Samples generated in parallel. Default 4.
    #[serde(default = "default_n")]
    pub n: NonZeroUsize,
    /// Most debugging rounds per sample (0: none). Default 2.
    #[serde(default = "default_debug_rounds")]
    pub debug_rounds: usize,
    /// `all` or `last`. Default `all`.
    #[serde(default)]
    pub feedback: Feedback,
    /// `adaptive_input_synthesis`, `knockout`, `public_tests` or `first`. Default
    /// `adaptive_input_synthesis`.
    #[serde(default)]
    pub selection: CodeSelection,
    /// Inputs the model is asked for per comparison (and for clustering). Default 3.
    #[serde(default = "default_inputs")]
    pub synthesized_inputs: NonZeroUsize,
    /// Sampling temperature of the samples and the rewrites. Default 0.7.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Nucleus filter. Default none.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Most tokens per sample or rewrite. Default 768.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: NonZeroUsize,
    /// Most tokens of a list of synthesised inputs. Default 256.
    #[serde(default = "default_input_tokens")]
    pub input_tokens: NonZeroUsize,
    /// Per-test time limit in seconds of CPU time (a test that waits ends after 3 times as
    /// much wall-clock time). Default 3.
    #[serde(default = "default_test_timeout")]
    pub test_timeout_secs: f64,
    /// The judge model (a `[model]` table); default the policy model.
    #[serde(default)]
    pub judge: Option<ModelConfig>,
    /// Run the model's code even where the sandbox cannot cut off the network or make the
    /// filesystem read-only (no usable `unshare`). Default false: such a machine is an error.
    #[serde(default)]
    pub allow_unisolated: bool,
}

fn default_n() -> NonZeroUsize {
    NonZeroUsize::MIN.saturating_add(3)
}
fn default_debug_rounds() -> usize {
    2
}
fn default_inputs() -> NonZeroUsize {
    NonZeroUsize::MIN.saturating_add(2)
}
fn default_temperature() -> f64 {
    0.7
}
fn default_max_tokens() -> NonZeroUsize {
    NonZeroUsize::MIN.saturating_add(767)
}
fn default_input_tokens() -> NonZeroUsize {
    NonZeroUsize::MIN.saturating_add(255)
}
fn default_test_timeout() -> f64 {
    3.0
}

impl Default for SStarConfig {
    fn default() -> Self {
        Self {
            n: default_n(),
            debug_rounds: default_debug_rounds(),
            feedback: Feedback::default(),
            selection: CodeSelection::default(),
            synthesized_inputs: default_inputs(),
            temperature: default_temperature(),
            top_p: None,
            max_tokens: default_max_tokens(),
            input_tokens: default_input_tokens(),
            test_timeout_secs: default_test_timeout(),
            judge: None,
            allow_unisolated: false,
        }
    }
}

impl SStarConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        check_sampling(self.temperature, self.top_p)?;
        if self.n.get() > 1 && self.temperature == 0.0 {
            return Err(Error::config_value(
                "temperature",
                format!(
                    "n = {} samples at temperature 0 are all the same program: set a \
                     temperature (0.6 to 1.0 is usual) or n = 1",
                    self.n
                ),
            ));
        }
        if !(self.test_timeout_secs > 0.0 && self.test_timeout_secs <= 3600.0) {
            return Err(Error::config_value(
                "test_timeout_secs",
                format!(
                    "test_timeout_secs must be a number of seconds in (0, 3600], got {}",
                    self.test_timeout_secs
                ),
            ));
        }
        Ok(())
    }

    fn sampling(&self) -> Sampling {
        Sampling {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: None,
            seed: None,
        }
    }
}

/// The S* strategy; see the module docs.
pub struct SStar {
    config: SStarConfig,
    verifier: CodeVerifier,
    judge: OnceCell<Arc<dyn Backend>>,
}

impl std::fmt::Debug for SStar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SStar")
            .field("config", &self.config)
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

/// A sample as it stands: the conversation that produced it and its latest completion.
#[derive(Debug)]
struct Sample {
    /// The latest attempt (what debugging continues from).
    completion: String,
    history: Vec<Message>,
    detail: SampleDetail,
    tokens: u64,
    /// The best attempt so far (what selection takes): a rewrite can be worse than its source.
    best: Attempt,
    /// The failure that ended its debugging, if one did (`detail.error` says it).
    failure: Option<Error>,
}

/// One attempt's text and how it did.
#[derive(Debug, Clone)]
struct Attempt {
    completion: String,
    finish: FinishReason,
    score: usize,
}

impl Sample {
    fn new(
        completion: String,
        finish: FinishReason,
        history: Vec<Message>,
        first: Round,
        tokens: usize,
    ) -> Self {
        let best = Attempt {
            completion: completion.clone(),
            finish,
            score: first.score(),
        };
        Self {
            completion,
            history,
            detail: SampleDetail {
                passes_public: first.passes(),
                rounds: vec![first],
                best_round: 0,
                error: None,
            },
            tokens: tokens as u64,
            best,
            failure: None,
        }
    }

    /// Ends sample `index`'s debugging on `e`, a failure of one of its requests or runs: it
    /// keeps its best round, and says why it stopped.
    fn ended_by(&mut self, index: usize, e: Error) {
        tracing::warn!("S* sample {index}: debugging ended: {e}");
        self.detail.error = Some(e.to_string());
        self.failure = Some(e);
    }

    /// Whether its first round was never tested because the sandbox failed.
    fn untested_by_error(&self) -> bool {
        self.detail.error.is_some()
            && self.detail.rounds.len() == 1
            && self.detail.rounds.iter().all(|r| {
                r.tests.is_empty()
                    && r.load_error
                        .as_deref()
                        .is_some_and(|l| l.starts_with("not tested"))
            })
    }
}

/// Runs sandbox work, ended at the wall-time budget's deadline (the meter ends backend calls
/// there; code runs are not backend calls): past it, the budget error.
async fn sandboxed<T>(
    cx: &Context,
    work: impl std::future::Future<Output = std::result::Result<T, SandboxError>>,
) -> Result<T> {
    match cx.deadline() {
        Some(deadline) => match tokio::time::timeout_at(deadline.into(), work).await {
            Ok(done) => done.map_err(sandbox_error),
            Err(_) => Err(Error::BudgetExhausted {
                resource: Resource::WallTime,
            }),
        },
        None => work.await.map_err(sandbox_error),
    }
}

fn sandbox_error(e: SandboxError) -> Error {
    Error::Sandbox {
        doing: "running a candidate".into(),
        source: Box::new(e),
    }
}

impl SStar {
    /// S* with `config`, running code in a default [`Sandbox`] (unisolated only where the
    /// config allows it). As root its programs run as `nobody`, as a default grader's do, and
    /// runs under one user share its process limit: a candidate's fork bomb here can leave the
    /// grader busy until the run ends (it waits). [`SStar::with_sandbox`] with a sandbox of
    /// another user ([`Sandbox::with_user`]) keeps them apart.
    pub fn new(config: SStarConfig) -> Result<Self> {
        let sandbox = Sandbox::new().allow_unisolated(config.allow_unisolated);
        Self::with_sandbox(config, sandbox)
    }

    /// S* with `config`, running code in `sandbox`.
    pub fn with_sandbox(config: SStarConfig, sandbox: Sandbox) -> Result<Self> {
        config.validate()?;
        let verifier = CodeVerifier::new(sandbox)
            .with_test_timeout(Duration::from_secs_f64(config.test_timeout_secs));
        Ok(Self {
            config,
            verifier,
            judge: OnceCell::new(),
        })
    }

    /// Judges with `judge`, a model already loaded (one shared with other strategies, or a
    /// backend of your own), instead of the policy or the config's `judge` table.
    pub fn with_judge(mut self, judge: Arc<dyn Backend>) -> Self {
        self.judge = OnceCell::new_with(Some(judge));
        self
    }

    /// The judge: one given in code or the configured model, metered as the policy is (every
    /// budget over this solve counts its calls, which are reported with the others), else the
    /// policy.
    async fn judge(&self, cx: &Context) -> Result<Arc<dyn Backend>> {
        let inner = match (self.judge.get(), &self.config.judge) {
            (Some(judge), _) => judge,
            (None, None) => return Ok(Arc::clone(cx.backend())),
            (None, Some(model)) => {
                self.judge
                    .get_or_try_init(|| async {
                        model.load().await.map_err(|e| e.of_table("judge"))
                    })
                    .await?
            }
        };
        Ok(cx.metered(Arc::clone(inner)))
    }

    async fn test(
        &self,
        cx: &Context,
        task: &CodeTask,
        completion: &str,
        tests: &[TestCase],
    ) -> Result<Round> {
        let program = assemble(task, completion);
        let run = sandboxed(cx, self.verifier.run_tests(&program, tests)).await?;
        Ok(round(extract_task_code(task, completion), &run))
    }

    /// Debugs one sample until it passes its public tests or runs out of rounds or budget.
    async fn debug(
        &self,
        cx: &Context,
        task: &CodeTask,
        tests: &[TestCase],
        index: usize,
        mut sample: Sample,
    ) -> Result<(Sample, Option<Resource>)> {
        let mut exhausted = None;
        for _ in 0..self.config.debug_rounds {
            let Some(last) = sample.detail.rounds.last() else {
                break;
            };
            if last.passes() {
                break;
            }
            let feedback = feedback_message(last, &task.entry_point);
            let code = last.code.trim_end();
            let attempt = Message::assistant(format!("```python\n{code}\n```"));
            let messages = match self.config.feedback {
                Feedback::All => {
                    let mut m = sample.history.clone();
                    m.push(attempt);
                    m.push(Message::user(feedback));
                    m
                }
                Feedback::Last => {
                    let mut m: Vec<Message> = sample.history.iter().take(1).cloned().collect();
                    m.push(attempt);
                    m.push(Message::user(feedback));
                    m
                }
            };
            let request = GenerationRequest::new(Prompt::chat(messages.clone()))
                .with_max_tokens(self.config.max_tokens.get())
                .with_sampling(self.config.sampling());
            let generation = match cx.backend().generate(request).await {
                Ok(generation) => generation,
                Err(Error::BudgetExhausted { resource }) => {
                    exhausted = Some(resource);
                    break;
                }
                // The conversation (attempts and feedback) outgrew the context window: this
                // sample's debugging ends with its best attempt so far, and says why.
                Err(e @ Error::PromptTooLong { .. }) => {
                    sample.detail.error = Some(e.to_string());
                    break;
                }
                // This rewrite's request failed: as above, and said.
                Err(e) if e.is_per_call() => {
                    sample.ended_by(index, e);
                    break;
                }
                Err(e) => return Err(e),
            };
            let Some(choice) = generation.choices.into_iter().next() else {
                sample.detail.error =
                    Some("the backend returned no completion for a rewrite".into());
                break;
            };
            // Paid for whether or not its tests run.
            sample.tokens += choice.completion_tokens as u64;
            let mut next = match self.test(cx, task, &choice.text, tests).await {
                Ok(next) => next,
                // The wall-time budget ran out while it ran: the rewrite stays untested, unused.
                Err(Error::BudgetExhausted { resource }) => {
                    exhausted = Some(resource);
                    break;
                }
                // The sandbox could not run it (its shared process count, say): the same.
                Err(e) if e.is_per_call() => {
                    sample.ended_by(index, e);
                    break;
                }
                Err(e) => return Err(e),
            };
            next.tokens = choice.completion_tokens;
            next.repeated = next.code.trim() == code.trim();
            self.report_test(cx, index, sample.detail.rounds.len(), &next);
            if next.score() > sample.best.score {
                sample.best = Attempt {
                    completion: choice.text.clone(),
                    finish: choice.finish_reason,
                    score: next.score(),
                };
                sample.detail.best_round = sample.detail.rounds.len();
                sample.detail.passes_public = next.passes();
            }
            sample.completion = choice.text;
            sample.history = messages;
            sample.detail.rounds.push(next);
        }
        Ok((sample, exhausted))
    }

    /// Reports sample `index`'s test run of round `round`.
    fn report_test(&self, cx: &Context, index: usize, round: usize, run: &Round) {
        cx.emit(
            self.name(),
            EventKind::Tested {
                sample: index,
                round,
                passed: run.passed,
                total: run.total,
            },
        );
    }
}

#[async_trait]
impl Strategy for SStar {
    fn name(&self) -> &'static str {
        "s_star"
    }

    #[tracing::instrument(skip_all, fields(strategy = "s_star", problem = %problem.id))]
    async fn solve(&self, problem: &Problem, cx: &Context) -> Result<Solution> {
        let Some(task) = &problem.code else {
            return Err(Error::StrategyConfig {
                strategy: "s_star",
                reason: format!(
                    "problem `{}` is not a code problem (it needs `prompt`, `entry_point` and `test`)",
                    problem.id
                ),
            });
        };
        // A sandbox that cannot run code here fails before any sample is paid for (once per
        // sandbox: later problems find it checked).
        self.verifier
            .sandbox()
            .self_check()
            .await
            .map_err(|e| Error::Sandbox {
                doing: "checking it can run code here".into(),
                source: Box::new(e),
            })?;
        let tests = docstring_tests(&task.prompt, &task.entry_point);
        let history = PromptStyle::StepByStep.messages(problem);
        let request = GenerationRequest::new(Prompt::chat(history.clone()))
            .with_n(self.config.n.get())
            .with_max_tokens(self.config.max_tokens.get())
            .with_sampling(self.config.sampling());
        let generation = match cx.backend().generate(request).await {
            Ok(generation) => generation,
            Err(Error::BudgetExhausted { resource }) => {
                return Ok(Solution::exhausted(self.name(), resource))
            }
            Err(e) => return Err(e),
        };
        // Stage 1: every sample tested and debugged, all at once.
        let debugged = join_all(
            generation
                .choices
                .into_iter()
                .enumerate()
                .map(|(i, choice)| {
                    let history = history.clone();
                    let tests = &tests;
                    async move {
                        let untested = |why: String| Round {
                            code: extract_task_code(task, &choice.text),
                            tokens: choice.completion_tokens,
                            passed: 0,
                            total: tests.len(),
                            load_error: Some(format!("not tested: {why}")),
                            tests: Vec::new(),
                            sandbox_ms: 0,
                            repeated: false,
                        };
                        let mut first = match self.test(cx, task, &choice.text, tests).await {
                            Ok(first) => first,
                            // Out of wall time before its tests ran: kept, untested, last.
                            Err(Error::BudgetExhausted { resource }) => {
                                let round = untested(format!("the {resource} budget ran out"));
                                let sample = Sample::new(
                                    choice.text,
                                    choice.finish_reason,
                                    history,
                                    round,
                                    choice.completion_tokens,
                                );
                                return Ok((sample, Some(resource)));
                            }
                            // The sandbox could not run it: kept, untested, not debugged (its
                            // feedback would be the sandbox's failure, not the program's).
                            Err(e) if e.is_per_call() => {
                                let round = untested(e.to_string());
                                let mut sample = Sample::new(
                                    choice.text,
                                    choice.finish_reason,
                                    history,
                                    round,
                                    choice.completion_tokens,
                                );
                                sample.ended_by(i, e);
                                return Ok((sample, None));
                            }
                            Err(e) => return Err(e),
                        };
                        first.tokens = choice.completion_tokens;
                        self.report_test(cx, i, 0, &first);
                        let sample = Sample::new(
                            choice.text,
                            choice.finish_reason,
                            history,
                            first,
                            choice.completion_tokens,
                        );
                        self.debug(cx, task, tests, i, sample).await
                    }
                }),
        )
        .await;
        let mut samples = Vec::new();
        let mut exhausted_by = None;
        let mut details = SStarDetails {
            public_tests: tests.clone(),
            samples: Vec::new(),
            probes: Vec::new(),
            clusters: Vec::new(),
            comparisons: Vec::new(),
            selected: 0,
            selection: self.config.selection,
            sandbox_ms: 0,
            budget_exhausted: false,
            selection_errors: Vec::new(),
        };
        for outcome in debugged {
            let (sample, exhausted) = outcome?;
            exhausted_by = exhausted_by.or(exhausted);
            details.sandbox_ms += sample
                .detail
                .rounds
                .iter()
                .map(|r| r.sandbox_ms)
                .sum::<u64>();
            samples.push(sample);
        }
        if samples.is_empty() {
            return Err(Error::Inference {
                message: "the backend returned no completion".into(),
            });
        }
        // No sample could be tested at all: the sandbox is failing, not one run of it.
        if samples.iter().all(Sample::untested_by_error) {
            if let Some(e) = samples.iter_mut().find_map(|s| s.failure.take()) {
                return Err(e);
            }
        }
        // Stage 2: selection.
        let score = |s: &Sample| s.best.score;
        let best = samples.iter().map(score).max().unwrap_or(0);
        let selected = match self.config.selection {
            CodeSelection::First => 0,
            CodeSelection::PublicTests => {
                samples.iter().position(|s| score(s) == best).unwrap_or(0)
            }
            // Nothing loads: there is nothing to tell apart.
            CodeSelection::AdaptiveInputSynthesis | CodeSelection::Knockout if best == 0 => 0,
            CodeSelection::AdaptiveInputSynthesis | CodeSelection::Knockout => {
                // One of each program (the earliest) is compared; its copies, the later samples
                // that wrote the same program, count toward its cluster's size.
                let mut pool: Vec<usize> = Vec::new();
                let mut copies: Vec<Vec<usize>> = Vec::new();
                let mut seen: Vec<String> = Vec::new();
                for (i, s) in samples.iter().enumerate() {
                    if score(s) != best {
                        continue;
                    }
                    let code = extract_task_code(task, &s.best.completion);
                    let code = code.trim().to_string();
                    match seen.iter().position(|c| *c == code) {
                        Some(k) => copies[k].push(i),
                        None => {
                            seen.push(code);
                            pool.push(i);
                            copies.push(Vec::new());
                        }
                    }
                }
                let (winner, exhausted) = if self.config.selection == CodeSelection::Knockout {
                    self.knockout(cx, task, &samples, pool, &mut details)
                        .await?
                } else {
                    self.round_robin(cx, task, &samples, pool, &copies, &mut details)
                        .await?
                };
                exhausted_by = exhausted_by.or(exhausted);
                winner
            }
        };
        details.selected = selected;
        if cx.events().is_on() {
            let passed = samples
                .get(selected)
                .and_then(|s| s.detail.rounds.get(s.detail.best_round))
                .map_or(0, |r| r.passed);
            cx.emit(
                self.name(),
                EventKind::Selected {
                    answer: None,
                    candidates: samples.len(),
                    why: format!(
                        "sample {selected}, passing {passed} public test(s), by {:?}{}",
                        self.config.selection,
                        details
                            .clusters
                            .iter()
                            .find(|c| c.samples.contains(&selected))
                            .map(|c| format!(
                                " (its cluster: {} sample(s), {} win(s), of {} clusters)",
                                c.samples.len(),
                                c.wins,
                                details.clusters.len()
                            ))
                            .unwrap_or_default()
                    ),
                },
            );
        }
        details.samples = samples.iter().map(|s| s.detail.clone()).collect();
        let candidates: Vec<Candidate> = samples
            .iter()
            .map(|s| Candidate {
                answer: None,
                text: s.best.completion.clone(),
                score: s
                    .detail
                    .rounds
                    .get(s.detail.best_round)
                    // The share of public tests passed; with none to run, whether it loaded.
                    .map(|r| match (r.total, &r.load_error) {
                        (0, None) => 1.0,
                        (0, Some(_)) => 0.0,
                        (total, _) => r.passed as f64 / total as f64,
                    }),
                tokens: s.tokens,
            })
            .collect();
        let chosen = samples.get(selected).or(samples.first());
        details.budget_exhausted = exhausted_by.is_some();
        let stop_reason = if let Some(resource) = exhausted_by {
            StopReason::from(resource)
        } else if chosen.is_some_and(|s| s.best.finish == FinishReason::Length) {
            StopReason::MaxTokens
        } else {
            StopReason::Completed
        };
        let mut solution = Solution {
            strategy: self.name().into(),
            answer: None,
            completion: chosen
                .map(|s| s.best.completion.clone())
                .unwrap_or_default(),
            candidates,
            stop_reason,
            usage: Default::default(),
            details: serde_json::Value::Null,
            trace: None,
        };
        solution.details = serde_json::to_value(&details).map_err(|source| Error::Serialize {
            what: "S* details",
            source,
        })?;
        Ok(solution)
    }
}

#[cfg(test)]
#[path = "../../../tests/support/isolation.rs"]
mod isolation_check;
#[cfg(test)]
mod tests;
