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
use futures::future::{join_all, try_join_all};
use ponder_engine::{
    Backend, Candidate, CodeTask, Context, Error, EventKind, FinishReason, GenerationRequest,
    Message, ModelConfig, Problem, Prompt, Resource, Result, Sampling, Solution, StopReason,
    Strategy,
};
use ponder_prm::{
    assemble, choice_probability, docstring_tests, extract_code, opposing_tokens, CodeVerifier,
    Sandbox, SandboxError, TestCase, TestRun, TestStatus,
};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

mod details;
mod text;

pub use details::{Cluster, Comparison, Round, SStarDetails, SampleDetail, TestLine};
use text::{calls_of, feedback_message, outputs, round};

use crate::config::check_sampling;
use crate::prompt::PromptStyle;

/// An input as shown to the judge, with A's and B's outputs on it.
type Shown = (String, String, String);

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
    /// Per-test time limit in seconds. Default 3.
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
        check_sampling("s_star", self.temperature, self.top_p)?;
        if !(self.test_timeout_secs > 0.0 && self.test_timeout_secs <= 3600.0) {
            return Err(Error::StrategyConfig {
                strategy: "s_star",
                reason: format!(
                    "test_timeout_secs must be a number of seconds in (0, 3600], got {}",
                    self.test_timeout_secs
                ),
            });
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
#[derive(Debug, Clone)]
struct Sample {
    /// The latest attempt (what debugging continues from).
    completion: String,
    history: Vec<Message>,
    detail: SampleDetail,
    tokens: u64,
    /// The best attempt so far (what selection takes): a rewrite can be worse than its source.
    best: Attempt,
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
            },
            tokens: tokens as u64,
            best,
        }
    }
}

/// Runs sandbox work, ended at the wall-time budget's deadline (the meter ends backend calls
/// there; code runs are not backend calls): past it, the budget error.
async fn sandboxed<T>(
    cx: &Context,
    work: impl std::future::Future<Output = std::result::Result<T, SandboxError>>,
) -> Result<T> {
    match cx.meter().deadline() {
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
    Error::Tool {
        tool: "sandbox",
        message: e.to_string(),
    }
}

impl SStar {
    /// S* with `config`, running code in a default [`Sandbox`] (unisolated only where the
    /// config allows it).
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

    /// The judge: the configured model, metered as the policy is (every budget over this
    /// solve counts its calls, which are reported with the others), else the policy.
    async fn judge(&self, cx: &Context) -> Result<Arc<dyn Backend>> {
        let Some(model) = &self.config.judge else {
            return Ok(Arc::clone(cx.backend()));
        };
        let inner = self.judge.get_or_try_init(|| model.load()).await?;
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
        Ok(round(
            extract_code(completion, Some(&task.entry_point)),
            &run,
        ))
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
                Err(e) => return Err(e),
            };
            let Some(choice) = generation.choices.into_iter().next() else {
                break;
            };
            let mut next = match self.test(cx, task, &choice.text, tests).await {
                Ok(next) => next,
                // The wall-time budget ran out while it ran: the rewrite stays untested, unused.
                Err(Error::BudgetExhausted { resource }) => {
                    exhausted = Some(resource);
                    break;
                }
                Err(e) => return Err(e),
            };
            next.tokens = choice.completion_tokens;
            next.repeated = next.code.trim() == code.trim();
            self.report_test(cx, index, sample.detail.rounds.len(), &next);
            sample.tokens += choice.completion_tokens as u64;
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

    /// Asks the model (`ask`) for test inputs: up to `synthesized_inputs` calls of the entry
    /// point read from its reply. `Ok(Err(resource))` when the budget ran out.
    async fn synthesize(
        &self,
        cx: &Context,
        task: &CodeTask,
        ask: String,
    ) -> Result<std::result::Result<Vec<String>, Resource>> {
        let request = GenerationRequest::new(Prompt::chat(vec![Message::user(ask)]))
            .with_max_tokens(self.config.input_tokens.get());
        let generation = match cx.backend().generate(request).await {
            Ok(generation) => generation,
            Err(Error::BudgetExhausted { resource }) => return Ok(Err(resource)),
            Err(e) => return Err(e),
        };
        let text = generation
            .choices
            .first()
            .map(|c| c.text.as_str())
            .unwrap_or_default();
        Ok(Ok(calls_of(
            text,
            &task.entry_point,
            self.config.synthesized_inputs.get(),
        )))
    }

    /// Plays one comparison: inputs from the model, both programs on them, the judge on the
    /// differences, with `known` (inputs already run, with A's and B's outputs) shown first.
    /// The comparison's `winner` is left to the caller. `Ok(Err(resource))` when the budget ran
    /// out.
    #[allow(clippy::too_many_arguments)]
    async fn compare(
        &self,
        cx: &Context,
        judge: &Arc<dyn Backend>,
        words: &(Vec<u32>, Vec<u32>),
        task: &CodeTask,
        samples: &[Sample],
        (a, b): (usize, usize),
        known: &[Shown],
    ) -> Result<std::result::Result<(Comparison, u64), Resource>> {
        let (Some(sa), Some(sb)) = (samples.get(a), samples.get(b)) else {
            return Err(Error::InvalidRequest {
                reason: "comparison of a sample that does not exist",
            });
        };
        let code = |s: &Sample| extract_code(&s.best.completion, Some(&task.entry_point));
        let (code_a, code_b) = (code(sa), code(sb));
        let ask = format!(
            "Here is a Python function to write:\n\n```python\n{}\n```\n\nTwo implementations of `{entry}` follow.\n\nImplementation A:\n```python\n{code_a}```\n\nImplementation B:\n```python\n{code_b}```\n\nWrite {k} test inputs on which the two implementations may return different results. Write each as one call of `{entry}` on its own line, like this:\n>>> {entry}(...)",
            task.prompt.trim_end(),
            entry = task.entry_point,
            k = self.config.synthesized_inputs,
        );
        let inputs: Vec<String> = match self.synthesize(cx, task, ask).await? {
            Ok(calls) => calls
                .into_iter()
                .filter(|call| known.iter().all(|k| &k.0 != call))
                .collect(),
            Err(resource) => return Ok(Err(resource)),
        };
        let probes: Vec<TestCase> = inputs.iter().map(TestCase::probe).collect();
        let (program_a, program_b) = (
            assemble(task, &sa.best.completion),
            assemble(task, &sb.best.completion),
        );
        let both = sandboxed(cx, async {
            tokio::try_join!(
                self.verifier.run_tests(&program_a, &probes),
                self.verifier.run_tests(&program_b, &probes),
            )
        });
        let (run_a, run_b) = match both.await {
            Ok(runs) => runs,
            Err(Error::BudgetExhausted { resource }) => return Ok(Err(resource)),
            Err(e) => return Err(e),
        };
        let sandbox_ms = (run_a.report.wall + run_b.report.wall).as_millis() as u64;
        let (outputs_a, outputs_b) = (outputs(&run_a), outputs(&run_b));
        let mut kept = known.to_vec();
        for (i, call) in inputs.iter().enumerate() {
            let skipped = |run: &TestRun| {
                run.results
                    .get(i)
                    .is_some_and(|r| matches!(r.status, TestStatus::Skipped { .. }))
            };
            if skipped(&run_a) && skipped(&run_b) {
                continue;
            }
            let (oa, ob) = (
                outputs_a.get(i).cloned().unwrap_or_default(),
                outputs_b.get(i).cloned().unwrap_or_default(),
            );
            kept.push((call.clone(), oa, ob));
        }
        let differing: Vec<&Shown> = kept.iter().filter(|(_, oa, ob)| oa != ob).collect();
        let mut comparison = Comparison {
            a,
            b,
            inputs: kept.iter().map(|k| k.0.clone()).collect(),
            outputs_a: kept.iter().map(|k| k.1.clone()).collect(),
            outputs_b: kept.iter().map(|k| k.2.clone()).collect(),
            differing: differing.len(),
            p_a: None,
            p_a_by_order: None,
            winner: None,
        };
        if differing.is_empty() {
            return Ok(Ok((comparison, sandbox_ms)));
        }
        // Asked twice, each program shown first once: small judges favour whichever comes first,
        // and averaging the two orders cancels that. The judge sees both programs' code and
        // their outputs where they disagree (as in S*: code and execution results together).
        let verdict = |swapped: bool| {
            let mut shown = String::new();
            for (call, oa, ob) in &differing {
                let (first, second) = if swapped { (ob, oa) } else { (oa, ob) };
                shown.push_str(&format!(
                    "Input: {call}\nOutput of A: {first}\nOutput of B: {second}\n\n"
                ));
            }
            let (first, second) = if swapped {
                (&code_b, &code_a)
            } else {
                (&code_a, &code_b)
            };
            Prompt::chat(vec![Message::user(format!(
                "Here is a Python function to write:\n\n```python\n{}\n```\n\nImplementation A:\n```python\n{first}```\n\nImplementation B:\n```python\n{second}```\n\nThe two implementations were run on the same inputs and disagree:\n\n{shown}Which implementation is correct for the function described? Answer with one letter, A or B.",
                task.prompt.trim_end(),
            ))])
        };
        let (a_first, b_first) = match tokio::try_join!(
            choice_probability(judge, verdict(false), &words.0, &words.1),
            choice_probability(judge, verdict(true), &words.0, &words.1),
        ) {
            Ok(ps) => ps,
            Err(Error::BudgetExhausted { resource }) => return Ok(Err(resource)),
            Err(e) => return Err(e),
        };
        let by_order = (a_first, 1.0 - b_first);
        let p_a = (by_order.0 + by_order.1) / 2.0;
        comparison.p_a_by_order = Some(by_order);
        comparison.p_a = Some(p_a);
        Ok(Ok((comparison, sandbox_ms)))
    }

    /// Records a played comparison in `details` and the events.
    fn played(&self, cx: &Context, comparison: Comparison, ms: u64, details: &mut SStarDetails) {
        cx.emit(
            self.name(),
            EventKind::Compared {
                a: comparison.a,
                b: comparison.b,
                differing: comparison.differing,
                winner: comparison.winner,
            },
        );
        details.sandbox_ms += ms;
        details.comparisons.push(comparison);
    }

    /// The paper's selection among `pool`: clusters by outputs on inputs written for the
    /// problem, then a round robin of the clusters (see the module docs).
    async fn round_robin(
        &self,
        cx: &Context,
        task: &CodeTask,
        samples: &[Sample],
        pool: Vec<usize>,
        details: &mut SStarDetails,
    ) -> Result<(usize, Option<Resource>)> {
        let Some(&earliest) = pool.first() else {
            return Ok((0, None));
        };
        if pool.len() == 1 {
            return Ok((earliest, None));
        }
        let ask = format!(
            "Here is a Python function to write:\n\n```python\n{}\n```\n\nWrite {k} test inputs for `{entry}` that a wrong implementation would likely get wrong: edge cases, tricky cases, typical cases. Write each as one call of `{entry}` on its own line, like this:\n>>> {entry}(...)",
            task.prompt.trim_end(),
            entry = task.entry_point,
            k = self.config.synthesized_inputs,
        );
        let calls = match self.synthesize(cx, task, ask).await? {
            Ok(calls) => calls,
            Err(resource) => return Ok((earliest, Some(resource))),
        };
        let probes: Vec<TestCase> = calls.iter().map(TestCase::probe).collect();
        let all = try_join_all(pool.iter().map(|&i| {
            let program = samples
                .get(i)
                .map(|s| assemble(task, &s.best.completion))
                .unwrap_or_default();
            let probes = &probes;
            async move { self.verifier.run_tests(&program, probes).await }
        }));
        let runs = match sandboxed(cx, all).await {
            Ok(runs) => runs,
            Err(Error::BudgetExhausted { resource }) => return Ok((earliest, Some(resource))),
            Err(e) => return Err(e),
        };
        details.sandbox_ms += runs
            .iter()
            .map(|r| r.report.wall.as_millis() as u64)
            .sum::<u64>();
        // Inputs no program could run (the sandbox refused the call) tell nothing apart.
        let ran: Vec<usize> = (0..calls.len())
            .filter(|&p| {
                runs.iter().any(|run| {
                    !run.results
                        .get(p)
                        .is_some_and(|r| matches!(r.status, TestStatus::Skipped { .. }))
                })
            })
            .collect();
        details.probes = ran.iter().filter_map(|&p| calls.get(p).cloned()).collect();
        let mut clusters: Vec<Cluster> = Vec::new();
        for (&sample, run) in pool.iter().zip(&runs) {
            let all = outputs(run);
            let mine: Vec<String> = ran
                .iter()
                .map(|&p| all.get(p).cloned().unwrap_or_default())
                .collect();
            // Without a single input that ran, each candidate stands alone.
            match clusters
                .iter_mut()
                .find(|c| !ran.is_empty() && c.outputs == mine)
            {
                Some(cluster) => cluster.samples.push(sample),
                None => clusters.push(Cluster {
                    samples: vec![sample],
                    outputs: mine,
                    wins: 0,
                }),
            }
        }
        let mut exhausted = None;
        if clusters.len() > 1 {
            let judge = self.judge(cx).await?;
            let words = opposing_tokens(judge.as_ref(), &["A", " A"], &["B", " B"]).await?;
            let mut pairs = Vec::new();
            for i in 0..clusters.len() {
                for j in i + 1..clusters.len() {
                    pairs.push((i, j));
                }
            }
            let matches: Vec<((usize, usize), Vec<Shown>)> = pairs
                .iter()
                .filter_map(|&(i, j)| {
                    let (ci, cj) = (clusters.get(i)?, clusters.get(j)?);
                    let known = details
                        .probes
                        .iter()
                        .zip(ci.outputs.iter().zip(&cj.outputs))
                        .filter(|(_, (oi, oj))| oi != oj)
                        .map(|(call, (oi, oj))| (call.clone(), oi.clone(), oj.clone()))
                        .collect();
                    Some(((*ci.samples.first()?, *cj.samples.first()?), known))
                })
                .collect();
            let outcomes = try_join_all(matches.iter().map(|(pair, known)| {
                self.compare(cx, &judge, &words, task, samples, *pair, known)
            }))
            .await?;
            for (&(i, j), outcome) in pairs.iter().zip(outcomes) {
                match outcome {
                    Ok((mut comparison, ms)) => {
                        comparison.winner = match comparison.p_a_by_order {
                            Some((first, second)) if first > 0.5 && second > 0.5 => {
                                Some((i, comparison.a))
                            }
                            Some((first, second)) if first < 0.5 && second < 0.5 => {
                                Some((j, comparison.b))
                            }
                            _ => None,
                        }
                        .map(|(cluster, sample)| {
                            if let Some(c) = clusters.get_mut(cluster) {
                                c.wins += 1;
                            }
                            sample
                        });
                        self.played(cx, comparison, ms, details);
                    }
                    Err(resource) => exhausted = exhausted.or(Some(resource)),
                }
            }
        }
        // Most wins, then the largest, then the earliest (clusters are in order of their
        // first sample).
        let best = clusters
            .iter()
            .enumerate()
            .max_by(|(x, a), (y, b)| {
                (a.wins, a.samples.len(), std::cmp::Reverse(*x)).cmp(&(
                    b.wins,
                    b.samples.len(),
                    std::cmp::Reverse(*y),
                ))
            })
            .and_then(|(_, c)| c.samples.first().copied())
            .unwrap_or(earliest);
        details.clusters = clusters;
        Ok((best, exhausted))
    }

    /// The knockout among `pool`: rounds of pairs played together, byes for odd ones out.
    async fn knockout(
        &self,
        cx: &Context,
        task: &CodeTask,
        samples: &[Sample],
        mut pool: Vec<usize>,
        details: &mut SStarDetails,
    ) -> Result<(usize, Option<Resource>)> {
        let mut exhausted = None;
        if pool.len() <= 1 {
            return Ok((pool.first().copied().unwrap_or(0), None));
        }
        let judge = self.judge(cx).await?;
        let words = opposing_tokens(judge.as_ref(), &["A", " A"], &["B", " B"]).await?;
        while pool.len() > 1 {
            let pairs: Vec<(usize, usize)> = pool
                .chunks(2)
                .filter_map(|c| match c {
                    [a, b] => Some((*a, *b)),
                    _ => None,
                })
                .collect();
            let played = try_join_all(
                pairs
                    .iter()
                    .map(|&pair| self.compare(cx, &judge, &words, task, samples, pair, &[])),
            )
            .await?;
            let (mut next, mut unjudged) = (Vec::new(), Vec::new());
            for (pair, outcome) in pairs.iter().zip(played) {
                match outcome {
                    Ok((mut comparison, ms)) => {
                        let winner = if comparison.p_a.unwrap_or(1.0) >= 0.5 {
                            comparison.a
                        } else {
                            comparison.b
                        };
                        comparison.winner = Some(winner);
                        next.push(winner);
                        self.played(cx, comparison, ms, details);
                    }
                    Err(resource) => {
                        exhausted = exhausted.or(Some(resource));
                        unjudged.push(pair.0);
                    }
                }
            }
            // Winners of a comparison go before samples whose comparison the budget stopped.
            next.extend(unjudged);
            if pool.len() % 2 == 1 {
                next.extend(pool.last().copied());
            }
            pool = next;
            if exhausted.is_some() {
                // No budget for more judging: the earliest survivor stands.
                pool.truncate(1);
            }
        }
        Ok((pool.first().copied().unwrap_or(0), exhausted))
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
            .map_err(sandbox_error)?;
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
                        let mut first = match self.test(cx, task, &choice.text, tests).await {
                            Ok(first) => first,
                            // Out of wall time before its tests ran: kept, untested, last.
                            Err(Error::BudgetExhausted { resource }) => {
                                let untested = Round {
                                    code: extract_code(&choice.text, Some(&task.entry_point)),
                                    tokens: choice.completion_tokens,
                                    passed: 0,
                                    total: tests.len(),
                                    load_error: Some(format!(
                                        "not tested: the {resource} budget ran out"
                                    )),
                                    tests: Vec::new(),
                                    sandbox_ms: 0,
                                    repeated: false,
                                };
                                let sample = Sample::new(
                                    choice.text,
                                    choice.finish_reason,
                                    history,
                                    untested,
                                    choice.completion_tokens,
                                );
                                return Ok((sample, Some(resource)));
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
                let mut pool: Vec<usize> = Vec::new();
                let mut seen: Vec<String> = Vec::new();
                for (i, s) in samples.iter().enumerate() {
                    let code = extract_code(&s.best.completion, Some(&task.entry_point));
                    let code = code.trim().to_string();
                    if score(s) == best && !seen.contains(&code) {
                        seen.push(code);
                        pool.push(i);
                    }
                }
                let (winner, exhausted) = if self.config.selection == CodeSelection::Knockout {
                    self.knockout(cx, task, &samples, pool, &mut details)
                        .await?
                } else {
                    self.round_robin(cx, task, &samples, pool, &mut details)
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
                    .map(|r| r.passed as f64 / r.total.max(1) as f64),
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
