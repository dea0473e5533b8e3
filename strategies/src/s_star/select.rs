//! Stage 2 of S*, selection by comparing pairs: the model writes inputs, the programs run on
//! them in the sandbox, and the judge rules where their outputs differ. Holds the paper's round
//! robin of output clusters (`adaptive_input_synthesis`) and the cheaper knockout.

use std::sync::Arc;

use futures::future::try_join_all;
use ponder_engine::{
    Backend, CodeTask, Context, Error, EventKind, GenerationRequest, Message, Prompt, Resource,
    Result, Strategy,
};
use ponder_prm::{
    assemble, choice_probability, extract_task_code, opposing_tokens, TestCase, TestRun, TestStatus,
};

use super::text::{calls_of, outputs};
use super::{sandboxed, Cluster, Comparison, SStar, SStarDetails, Sample};

/// `before`, and `e` after it.
fn joined(before: Option<String>, e: &Error) -> String {
    match before {
        Some(before) => format!("{before}; then {e}"),
        None => e.to_string(),
    }
}

/// An input as shown to the judge, with A's and B's outputs on it.
type Shown = (String, String, String);

/// How the judge is asked: the first-token ids of "A" and of "B", and what its turn starts
/// with (the close of the thinking block a reasoning model's template opens, so that its first
/// token is the letter).
struct Asking {
    a: Vec<u32>,
    b: Vec<u32>,
    opening: String,
    /// Why the judge's verdicts cannot be read (a server that leaves out the top
    /// log-probabilities), once a comparison found it: the comparisons after it ask nothing.
    unreadable: std::sync::Mutex<Option<String>>,
}

impl Asking {
    async fn of(judge: &dyn Backend) -> Result<Self> {
        let (a, b) = opposing_tokens(judge, &["A", " A"], &["B", " B"]).await?;
        let opening = ponder_engine::turn::answer_opening(judge).await?;
        Ok(Self {
            a,
            b,
            opening,
            unreadable: std::sync::Mutex::new(None),
        })
    }
}

impl SStar {
    /// How `judge` is asked; `None` where its answer tokens cannot be read (a server without a
    /// tokenizer endpoint, or the request failed): said in the details, and selection goes on
    /// without verdicts, as where a comparison gives none.
    async fn asking(judge: &dyn Backend, details: &mut SStarDetails) -> Result<Option<Asking>> {
        match Asking::of(judge).await {
            Ok(asking) => Ok(Some(asking)),
            Err(e) if e.is_per_call() || matches!(e, Error::Unsupported { .. }) => {
                tracing::warn!("S*: the judge cannot be asked, so no comparisons: {e}");
                details
                    .selection_errors
                    .push(format!("preparing the judge: {e}"));
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Asks the model (`ask`) for test inputs: up to `synthesized_inputs` calls of the entry
    /// point read from its reply. `Ok(Err(resource))` when the budget ran out; `Ok(Ok(None))`
    /// when `ask` is too long for the context window (the problem and, in a comparison, both
    /// programs): then nothing is told apart, and selection goes on as without a verdict.
    async fn synthesize(
        &self,
        cx: &Context,
        task: &CodeTask,
        ask: String,
    ) -> Result<std::result::Result<Option<Vec<String>>, Resource>> {
        let request = GenerationRequest::new(Prompt::chat(vec![Message::user(ask)]))
            .with_max_tokens(self.config.input_tokens.get());
        let generation = match cx.backend().generate(request).await {
            Ok(generation) => generation,
            Err(Error::BudgetExhausted { resource }) => return Ok(Err(resource)),
            Err(Error::PromptTooLong { .. }) => return Ok(Ok(None)),
            Err(e) => return Err(e),
        };
        let text = generation
            .choices
            .first()
            .map(|c| c.text.as_str())
            .unwrap_or_default();
        Ok(Ok(Some(calls_of(
            text,
            &task.entry_point,
            self.config.synthesized_inputs.get(),
        ))))
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
        asking: &Asking,
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
        let code = |s: &Sample| extract_task_code(task, &s.best.completion);
        let (code_a, code_b) = (code(sa), code(sb));
        let ask = format!(
            "Here is a Python function to write:\n\n```python\n{}\n```\n\nTwo implementations of `{entry}` follow.\n\nImplementation A:\n```python\n{code_a}```\n\nImplementation B:\n```python\n{code_b}```\n\nWrite {k} test inputs on which the two implementations may return different results. Write each as one call of `{entry}` on its own line, like this:\n>>> {entry}(...)",
            task.prompt.trim_end(),
            entry = task.entry_point,
            k = self.config.synthesized_inputs,
        );
        let mut failure: Option<String> = None;
        let inputs: Vec<String> = match self.synthesize(cx, task, ask).await {
            Ok(Ok(calls)) => calls
                .unwrap_or_default()
                .into_iter()
                .filter(|call| known.iter().all(|k| &k.0 != call))
                .collect(),
            Ok(Err(resource)) => return Ok(Err(resource)),
            // The request failed: as if no input could be read from its reply, and said.
            Err(e) if e.is_per_call() => {
                tracing::warn!("S*: asking for inputs to tell samples {a} and {b} apart: {e}");
                failure = Some(e.to_string());
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        let probes: Vec<TestCase> = inputs.iter().map(TestCase::probe).collect();
        let (program_a, program_b) = (
            assemble(task, &sa.best.completion),
            assemble(task, &sb.best.completion),
        );
        let mut kept = known.to_vec();
        let mut sandbox_ms = 0;
        let mut runs = None;
        // No new input (none written, or no room to ask for them): nothing to run.
        if !inputs.is_empty() {
            let both = sandboxed(cx, async {
                tokio::try_join!(
                    self.verifier.run_tests(&program_a, &probes),
                    self.verifier.run_tests(&program_b, &probes),
                )
            });
            runs = match both.await {
                Ok(runs) => Some(runs),
                Err(Error::BudgetExhausted { resource }) => return Ok(Err(resource)),
                // The sandbox could not run them: judged on the inputs known before.
                Err(e) if e.is_per_call() => {
                    tracing::warn!("S*: running samples {a} and {b} on new inputs: {e}");
                    failure = Some(joined(failure.take(), &e));
                    None
                }
                Err(e) => return Err(e),
            };
        }
        if let Some((run_a, run_b)) = runs {
            sandbox_ms = (run_a.report.wall + run_b.report.wall).as_millis() as u64;
            let (outputs_a, outputs_b) = (outputs(&run_a), outputs(&run_b));
            for (i, call) in inputs.iter().enumerate() {
                let skipped = |run: &TestRun| {
                    run.results
                        .get(i)
                        .is_some_and(|r| matches!(r.status, TestStatus::Skipped { .. }))
                };
                // An input one side could not run (a name the call uses that only the other
                // program binds, as `string` after `import string`) shows a "(not run)" beside
                // a value: no disagreement about the function, so not shown to the judge.
                if skipped(&run_a) || skipped(&run_b) {
                    continue;
                }
                let (oa, ob) = (
                    outputs_a.get(i).cloned().unwrap_or_default(),
                    outputs_b.get(i).cloned().unwrap_or_default(),
                );
                kept.push((call.clone(), oa, ob));
            }
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
            error: failure,
        };
        if differing.is_empty() {
            return Ok(Ok((comparison, sandbox_ms)));
        }
        // A judge whose verdicts could not be read before: no verdict, not paid for again.
        // (Comparisons started beside the one that found it out still pay theirs; and a single
        // reply without top log-probabilities stops the judging for the rest of the problem,
        // where before it failed the problem.)
        let unreadable = asking.unreadable.lock().ok().and_then(|u| u.clone());
        if let Some(why) = unreadable {
            comparison.error = Some(match comparison.error.take() {
                Some(earlier) => format!("{earlier}; {why}"),
                None => why,
            });
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
            Prompt::Chat {
                messages: vec![Message::user(format!(
                    "Here is a Python function to write:\n\n```python\n{}\n```\n\nImplementation A:\n```python\n{first}```\n\nImplementation B:\n```python\n{second}```\n\nThe two implementations were run on the same inputs and disagree:\n\n{shown}Which implementation is correct for the function described? Answer with one letter, A or B.",
                    task.prompt.trim_end(),
                ))],
                assistant_prefix: asking.opening.clone(),
            }
        };
        let (a_first, b_first) = match tokio::try_join!(
            choice_probability(judge, verdict(false), &asking.a, &asking.b),
            choice_probability(judge, verdict(true), &asking.a, &asking.b),
        ) {
            Ok(ps) => ps,
            Err(Error::BudgetExhausted { resource }) => return Ok(Err(resource)),
            // The two programs and their outputs do not fit the judge's context window: no
            // verdict (a knockout keeps A, a round robin counts no win).
            Err(Error::PromptTooLong { .. }) => return Ok(Ok((comparison, sandbox_ms))),
            // A request of the judge failed, or its probabilities cannot be read (a server that
            // leaves out the top log-probabilities): no verdict either, and said, rather than
            // the problem's error after every sample was paid for.
            Err(e) if e.is_per_call() || matches!(e, Error::Unsupported { .. }) => {
                tracing::warn!("S*: judging samples {a} and {b}: {e}");
                if matches!(e, Error::Unsupported { .. }) {
                    if let Ok(mut unreadable) = asking.unreadable.lock() {
                        unreadable.get_or_insert_with(|| e.to_string());
                    }
                }
                comparison.error = Some(joined(comparison.error.take(), &e));
                return Ok(Ok((comparison, sandbox_ms)));
            }
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
    /// problem, then a round robin of the clusters (see the S* module docs). `copies[k]`: the
    /// later samples that wrote `pool[k]`'s program, members of its cluster unrun.
    pub(super) async fn round_robin(
        &self,
        cx: &Context,
        task: &CodeTask,
        samples: &[Sample],
        pool: Vec<usize>,
        copies: &[Vec<usize>],
        details: &mut SStarDetails,
    ) -> Result<(usize, Option<Resource>)> {
        let Some(&earliest) = pool.first() else {
            return Ok((0, None));
        };
        if pool.len() == 1 {
            return Ok((earliest, None));
        }
        // Where selection cannot go on, the program the most samples wrote stands (the
        // largest cluster known without running anything), the earliest among equals.
        let most_written = pool
            .iter()
            .enumerate()
            .max_by_key(|&(k, _)| (copies.get(k).map_or(0, Vec::len), std::cmp::Reverse(k)))
            .map_or(earliest, |(_, &sample)| sample);
        let ask = format!(
            "Here is a Python function to write:\n\n```python\n{}\n```\n\nWrite {k} test inputs for `{entry}` that a wrong implementation would likely get wrong: edge cases, tricky cases, typical cases. Write each as one call of `{entry}` on its own line, like this:\n>>> {entry}(...)",
            task.prompt.trim_end(),
            entry = task.entry_point,
            k = self.config.synthesized_inputs,
        );
        let calls = match self.synthesize(cx, task, ask).await {
            Ok(Ok(Some(calls))) => calls,
            // Each pair's request shows the problem and two programs: none would fit either,
            // so there is no tournament.
            Ok(Ok(None)) => return Ok((most_written, None)),
            Ok(Err(resource)) => return Ok((most_written, Some(resource))),
            // The request failed: as if no input could be read from its reply (each pair is
            // compared on inputs of its own), and said.
            Err(e) if e.is_per_call() => {
                tracing::warn!("S*: asking for inputs to cluster the candidates by: {e}");
                details.selection_errors.push(e.to_string());
                Vec::new()
            }
            Err(e) => return Err(e),
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
        // No input (none written, or no room to ask for them): nothing to run, and each
        // candidate stands alone below.
        let runs = match calls.is_empty() {
            true => Vec::new(),
            false => match sandboxed(cx, all).await {
                Ok(runs) => runs,
                Err(Error::BudgetExhausted { resource }) => {
                    return Ok((most_written, Some(resource)))
                }
                // The sandbox could not run them on the inputs: no clusters, and no
                // tournament (each pair would run on inputs of its own).
                Err(e) if e.is_per_call() => {
                    tracing::warn!("S*: running the candidates on the synthesised inputs: {e}");
                    details.selection_errors.push(e.to_string());
                    return Ok((most_written, None));
                }
                Err(e) => return Err(e),
            },
        };
        details.sandbox_ms += runs
            .iter()
            .map(|r| r.report.wall.as_millis() as u64)
            .sum::<u64>();
        // Only inputs every program ran: one a program skipped (a name the call uses that
        // another program binds, as `string` after `import string`, and it does not) would
        // part two programs that agree on the function into two clusters. Not counting a
        // program that skipped them all (its entry point never bound): it would leave no input
        // to cluster any program by, and stands alone anyway.
        let skipped = |run: &TestRun, p: usize| {
            run.results
                .get(p)
                .is_some_and(|r| matches!(r.status, TestStatus::Skipped { .. }))
        };
        let ran_some: Vec<&TestRun> = runs
            .iter()
            .filter(|run| (0..calls.len()).any(|p| !skipped(run, p)))
            .collect();
        let ran: Vec<usize> = (0..calls.len())
            .filter(|&p| ran_some.iter().all(|run| !skipped(run, p)))
            .collect();
        details.probes = ran.iter().filter_map(|&p| calls.get(p).cloned()).collect();
        let mut clusters: Vec<Cluster> = Vec::new();
        for (k, &sample) in pool.iter().enumerate() {
            let all = runs.get(k).map(outputs).unwrap_or_default();
            let mine: Vec<String> = ran
                .iter()
                .map(|&p| all.get(p).cloned().unwrap_or_default())
                .collect();
            // Without a single input that ran, each candidate stands alone.
            let members =
                std::iter::once(sample).chain(copies.get(k).into_iter().flatten().copied());
            match clusters
                .iter_mut()
                .find(|c| !ran.is_empty() && c.outputs == mine)
            {
                Some(cluster) => cluster.samples.extend(members),
                None => clusters.push(Cluster {
                    samples: members.collect(),
                    outputs: mine,
                    wins: 0,
                }),
            }
        }
        // Earliest first: the first sample stands for its cluster in comparisons.
        for cluster in &mut clusters {
            cluster.samples.sort_unstable();
        }
        let mut exhausted = None;
        let judged = if clusters.len() > 1 {
            let judge = self.judge(cx).await?;
            Self::asking(judge.as_ref(), details)
                .await?
                .map(|asking| (judge, asking))
        } else {
            None
        };
        if let Some((judge, asking)) = judged {
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
                self.compare(cx, &judge, &asking, task, samples, *pair, known)
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
    pub(super) async fn knockout(
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
        let Some(asking) = Self::asking(judge.as_ref(), details).await? else {
            return Ok((pool.first().copied().unwrap_or(0), None));
        };
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
                    .map(|&pair| self.compare(cx, &judge, &asking, task, samples, pair, &[])),
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
