//! [`BeamSearch`] and DVTS: step-level search guided by a process reward model
//! (search-and-learn, arXiv 2408.03314).
//!
//! A solution grows a step at a time (a step ends at `step_delimiter`). Each round every active
//! beam is expanded with `beam_width` (M) candidate next steps, the scorer scores the partial
//! solutions (aggregated over steps), and the best survive: `n / M` of them for beam search
//! (when fewer are left, each is expanded more, so a round still has `n` candidates), the best
//! one of each of the `n / M` independent subtrees for DVTS. Beams that end (end of
//! sequence, or an answer after the answer cue) are set aside; a DVTS subtree whose best
//! candidate of a round is one that ended is done (it goes on greedily, and that is its
//! solution), as search-and-learn prunes it. A step cut at `max_step_tokens`
//! is not a step: the next round continues it (no delimiter between), and it is scored as one
//! step with its continuation. The last round (`max_steps`) writes every beam still open to its
//! end, as search-and-learn's last iteration does (up to `max_final_tokens`), so the best open
//! beams are selected from with those that finished early. With `lookahead = k`, each
//! candidate is rolled forward k more steps at temperature 0 before it is scored (the roll-out
//! is scored, not kept). At the end the finished beams (or, if none finished, the active ones,
//! and the solution is the best-ranked of them, stopped with `max_tokens`) are selected from as
//! in best-of-N. A beam that finishes with the text of one finished before it in its subtree
//! (an answer step's next steps that came back empty, ending at once; two samples that wrote the
//! same last step) is that solution again: it is pruned, counts once towards the `n` finished
//! that stop beam search, and is a final candidate once; it votes as many times as its last
//! step was written (not counting empty ones), as search-and-learn's completions do, and DVTS's
//! independent subtrees that reach one text are each a vote of their own. The scorer sees a
//! solution's steps as its text split at the delimiter, empty steps left out (an LLM judge
//! built from the config shows them joined by the delimiter).
//!
//! A beam that fills the model's context window ends there (the last step before it is cut to
//! fit): a partial solution, selected from with the active ones only when none finished
//! (`out_of_context` counts them).
//!
//! Batching: all expansions of a round go out together (one request of M choices per beam,
//! all beams at once), and the round's scoring is one scorer call, so mistral.rs batches both.
//! Cancellation: dropping the solve drops every request of the round. Budget: an exhausted
//! budget ends the search with the best finished beam, else the best partial one.

mod tree;

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::join_all;
use ponder_engine::answer::extract_answer;
use ponder_engine::{
    Candidate, Context, Error, EventKind, FinishReason, GenerationRequest, Message, Problem,
    Prompt, Result, Sampling, Scorer, Solution, StopReason, Strategy,
};
use ponder_prm::{Aggregate, ScorerConfig, Select, Selection};
use serde::{Deserialize, Serialize};

pub use tree::{NodeId, NodeState, Rank, SearchNode, SearchTree};

#[cfg(test)]
mod tests;

use crate::prompt::{PromptStyle, ANSWER_CUE};

/// Config of [`BeamSearch`] (`kind = "beam_search"` or `kind = "dvts"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeamSearchConfig {
    /// Beams (candidates scored per round). Default 8.
    #[serde(default = "default_n")]
    pub n: NonZeroUsize,
    /// Candidate next steps per beam (M); `n` must be a multiple. Default 4.
    #[serde(default = "default_width")]
    pub beam_width: NonZeroUsize,
    /// Most steps. Default 8.
    #[serde(default = "default_max_steps")]
    pub max_steps: NonZeroUsize,
    /// Greedy roll-out steps before scoring. Default 0.
    #[serde(default)]
    pub lookahead: usize,
    /// Ends a step. Default a blank line.
    #[serde(default = "default_step_delimiter")]
    pub step_delimiter: String,
    /// Most tokens per step (a step cut here is continued by the next round). Default 128.
    #[serde(default = "default_step_tokens")]
    pub max_step_tokens: NonZeroUsize,
    /// Most tokens of the last round, which writes each open beam to its end. Default 512.
    #[serde(default = "default_final_tokens")]
    pub max_final_tokens: NonZeroUsize,
    /// Step scores to one score. Default `last`.
    #[serde(default)]
    pub aggregate: Aggregate,
    /// Final selection over finished beams. Default `weighted`.
    #[serde(default)]
    pub select: Select,
    /// Drop candidates whose text repeats another's in the same round. Default true.
    #[serde(default = "default_true")]
    pub filter_duplicates: bool,
    /// Sampling temperature of expansions. Default 0.8.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// The process reward. Default: an LLM judge of steps on the policy model (an `llm_judge`
    /// table without a `mode` judges steps here too, where the table is read as a
    /// [`StrategyConfig`](crate::StrategyConfig); this struct read alone takes the judge's own
    /// default, `outcome`).
    #[serde(default = "default_scorer")]
    pub scorer: ScorerConfig,
    /// Prompt style. Default `step_by_step`.
    #[serde(default)]
    pub style: PromptStyle,
}

fn default_n() -> NonZeroUsize {
    NonZeroUsize::MIN.saturating_add(7)
}
fn default_width() -> NonZeroUsize {
    NonZeroUsize::MIN.saturating_add(3)
}
fn default_max_steps() -> NonZeroUsize {
    NonZeroUsize::MIN.saturating_add(7)
}
fn default_step_delimiter() -> String {
    "\n\n".into()
}
fn default_step_tokens() -> NonZeroUsize {
    NonZeroUsize::MIN.saturating_add(127)
}
fn default_final_tokens() -> NonZeroUsize {
    NonZeroUsize::MIN.saturating_add(511)
}
fn default_true() -> bool {
    true
}
fn default_temperature() -> f64 {
    0.8
}
fn default_scorer() -> ScorerConfig {
    ScorerConfig::LlmJudge(ponder_prm::JudgeConfig {
        mode: ponder_prm::JudgeMode::Steps,
        prompt: None,
    })
}

impl Default for BeamSearchConfig {
    fn default() -> Self {
        Self {
            n: default_n(),
            beam_width: default_width(),
            max_steps: default_max_steps(),
            lookahead: 0,
            step_delimiter: default_step_delimiter(),
            max_step_tokens: default_step_tokens(),
            max_final_tokens: default_final_tokens(),
            aggregate: Aggregate::default(),
            select: Select::default(),
            filter_duplicates: true,
            temperature: default_temperature(),
            scorer: default_scorer(),
            style: PromptStyle::default(),
        }
    }
}

impl BeamSearchConfig {
    /// Checks the values that serde cannot.
    pub fn validate(&self) -> Result<()> {
        if !self.n.get().is_multiple_of(self.beam_width.get()) {
            return Err(Error::config_value(
                "n",
                format!(
                    "n ({}) must be a multiple of beam_width ({})",
                    self.n, self.beam_width
                ),
            ));
        }
        if self.step_delimiter.is_empty() {
            return Err(Error::config_value(
                "step_delimiter",
                "step_delimiter must not be empty",
            ));
        }
        crate::config::check_sampling(self.temperature, None)?;
        self.scorer.validate().map_err(|e| e.under("scorer"))?;
        // Greedy expansions of one prefix are one step n times over.
        if self.n.get() > 1 && self.temperature == 0.0 {
            return Err(Error::config_value(
                "temperature",
                format!(
                    "n = {} beams expanded at temperature 0 are all the same step: set a \
                     temperature (0.6 to 1.0 is usual) or n = 1",
                    self.n
                ),
            ));
        }
        Ok(())
    }
}

/// How survivors are kept each round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchKind {
    /// One pool; the best `n / M` survive.
    Beam,
    /// `n / M` independent subtrees; the best one of each survives.
    Dvts,
}

/// Beam search or DVTS; see the module docs.
pub struct BeamSearch {
    config: BeamSearchConfig,
    kind: SearchKind,
    scorer: Arc<dyn Scorer>,
}

impl std::fmt::Debug for BeamSearch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BeamSearch")
            .field("kind", &self.kind)
            .field("config", &self.config)
            .finish()
    }
}

/// What the search reports as `details`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchDetails {
    /// Rounds run.
    pub rounds: usize,
    /// Nodes in the tree (root excluded).
    pub nodes: usize,
    /// Beams that finished, each solution once (one whose text repeats a finished one's is
    /// pruned, not counted).
    pub finished: usize,
    /// The chosen beam's score.
    pub score: Option<f64>,
    /// Why it was chosen.
    pub why: String,
    /// Candidates in the final selection: answer, score, tokens.
    pub candidates: Vec<crate::CandidateDetail>,
    /// Index of the chosen one among them.
    pub selected: Option<usize>,
    /// Prompt tokens of the expansions that extend a sequence sent or generated earlier: what
    /// a prefix cache can reuse.
    pub reusable_prompt_tokens: u64,
    /// Prompt tokens of the expansions (not of the roll-outs or the scorer's calls, which
    /// the usage counts).
    pub prompt_tokens: u64,
    /// Candidates identical to another of the same round, which shared its roll-out and score
    /// instead of being scored again.
    pub shared_scores: usize,
    /// Beams that ended because they filled the context window (not counted in `finished`:
    /// they are partial solutions, selected from only when none finished).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub out_of_context: usize,
    /// The errors of calls that failed on their own (a sampling error, a server's error for
    /// that request or its timeout): an expansion's (its beam stays a partial one), a
    /// roll-out's (its candidate is scored on its own steps) or the scorer's (its round's
    /// candidates go unscored).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
    /// The times each finished solution (by subtree and text) was written: its weight in the
    /// final vote.
    #[serde(skip)]
    pub written: HashMap<(usize, String), usize>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

struct Beam {
    node: NodeId,
    subtree: usize,
}

/// One generated step.
struct Expansion {
    text: String,
    tokens: u64,
    /// It ended the solution (end of sequence, the answer cue, an empty step, the last round).
    finished: bool,
    /// `max_step_tokens` cut it: the next step continues it.
    cut: bool,
    /// The last round's write ran to its token limit (`max_final_tokens`, the context window,
    /// or what the budget left): finished, but not by itself.
    cut_at_end: bool,
    /// Of those, one whose limit the budget had shortened.
    cut_by_budget: bool,
}

impl BeamSearch {
    /// A search of `kind` with `config` (validated here).
    pub fn new(config: BeamSearchConfig, kind: SearchKind) -> Result<Self> {
        config.validate()?;
        let scorer: Arc<dyn Scorer> = match &config.scorer {
            // The judge shows a partial solution's steps joined as the search wrote them.
            ScorerConfig::LlmJudge(judge) => Arc::new(
                ponder_prm::LlmJudge::new(judge.clone())
                    .with_step_delimiter(config.step_delimiter.clone()),
            ),
            other => other.build(),
        };
        Ok(Self {
            config,
            kind,
            scorer,
        })
    }

    /// Replaces the scorer (for scorers built in code).
    pub fn with_scorer(mut self, scorer: Arc<dyn Scorer>) -> Self {
        self.scorer = scorer;
        self
    }

    /// The prompt that goes on from `text`: after a delimiter, or straight on when its last
    /// step was cut (`continues`).
    fn prompt(&self, problem: &Problem, text: &str, continues: bool) -> Prompt {
        let messages: Vec<Message> = self.config.style.messages(problem);
        let mut prefix = text.to_string();
        if !prefix.is_empty() && !continues {
            prefix.push_str(&self.config.step_delimiter);
        }
        Prompt::Chat {
            messages,
            assistant_prefix: prefix,
        }
    }

    /// Appends `piece` to a solution's `text`, after a delimiter unless its last step was cut.
    fn append(&self, text: &mut String, continues: bool, piece: &str) {
        if piece.is_empty() {
            return;
        }
        if !text.is_empty() && !continues {
            text.push_str(&self.config.step_delimiter);
        }
        text.push_str(piece);
    }

    /// The solution along the path to `id` and whether its last step was cut.
    fn text_of(&self, tree: &SearchTree, id: NodeId) -> (String, bool) {
        let mut text = String::new();
        let mut continues = false;
        for node in tree.path(id).into_iter().filter_map(|n| tree.node(n)) {
            self.append(&mut text, continues, &node.text);
            continues = node.continues;
        }
        (text, continues)
    }

    /// A solution's steps as the scorer sees them: split at the delimiter, empty ones left out.
    fn steps_of(&self, text: &str) -> Vec<String> {
        text.split(self.config.step_delimiter.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    /// Generates `k` next steps after `text` (whose last step `continues` when it was cut), or
    /// in the `last` round `k` ends of the solution; with the round's prompt tokens.
    #[allow(clippy::too_many_arguments)]
    async fn expand(
        &self,
        problem: &Problem,
        cx: &Context,
        text: &str,
        continues: bool,
        k: usize,
        sampling: Sampling,
        last: bool,
    ) -> Result<(Vec<Expansion>, u64)> {
        let prior = text;
        let request = GenerationRequest::new(self.prompt(problem, text, continues))
            .with_n(k)
            .with_sampling(sampling);
        let request = if last {
            request.with_max_tokens(self.config.max_final_tokens.get())
        } else {
            request
                .with_max_tokens(self.config.max_step_tokens.get())
                .with_stop(self.config.step_delimiter.clone())
        };
        let generation = cx.backend().generate(request).await?;
        let steps = generation
            .choices
            .into_iter()
            .map(|c| {
                let cut = !last && c.finish_reason == FinishReason::Length;
                // A cut step keeps its trailing space and a continuation its leading one: the
                // two are one text.
                let raw = c.text.as_str();
                let raw = if continues { raw } else { raw.trim_start() };
                let text = if cut { raw } else { raw.trim_end() }.to_string();
                // Ended by the delimiter (a step), or by the end of sequence (the solution)?
                let ended = c.finish_reason == FinishReason::Stop && c.stop_sequence.is_none();
                // A continuation that stops at the delimiter at once ends the cut step; any
                // other empty step ends the solution.
                let empty = text.trim().is_empty() && (!continues || ended);
                // The answer is read from the whole step: a cut one's continuation with what
                // it continues. A step cut after the cue may have cut its answer short: the
                // next round continues it.
                let answers = !cut
                    && if continues {
                        answered(&format!(
                            "{}{text}",
                            last_step(prior, &self.config.step_delimiter)
                        ))
                    } else {
                        answered(&text)
                    };
                let finished = last || ended || answers || empty;
                let cut_at_end = last && c.finish_reason == FinishReason::Length;
                Expansion {
                    text,
                    tokens: c.completion_tokens as u64,
                    finished,
                    cut: cut && !finished,
                    cut_at_end,
                    cut_by_budget: cut_at_end && generation.cut_by.is_some(),
                }
            })
            .collect();
        Ok((steps, generation.usage.prompt_tokens))
    }

    /// The steps to score for a candidate: its own, plus a greedy roll-out of `lookahead` steps.
    async fn rolled_out(
        &self,
        problem: &Problem,
        cx: &Context,
        mut text: String,
        mut continues: bool,
    ) -> Result<Vec<String>> {
        for _ in 0..self.config.lookahead {
            let next = self
                .expand(problem, cx, &text, continues, 1, Sampling::greedy(), false)
                .await;
            let (next, _) = match next {
                Ok(next) => next,
                // No room left in the context window: the roll-out ends where it is.
                Err(Error::PromptTooLong { .. }) => break,
                Err(e) => return Err(e),
            };
            let Some(step) = next.into_iter().next() else {
                break;
            };
            self.append(&mut text, continues, &step.text);
            continues = step.cut;
            if step.finished {
                break;
            }
        }
        Ok(self.steps_of(&text))
    }

    /// Rolls out (with lookahead) and scores a round's candidates, setting each node's step
    /// score and aggregate score. Returns each candidate's slot: identical candidates share one.
    async fn score_round(
        &self,
        problem: &Problem,
        cx: &Context,
        tree: &mut SearchTree,
        children: &[(NodeId, usize, bool)],
        round: usize,
        details: &mut SearchDetails,
    ) -> Result<Vec<usize>> {
        // A small model often samples the same step twice: identical candidates are rolled
        // out and scored once and share the score (duplicates are pruned below anyway).
        let mut distinct: Vec<(String, bool, bool)> = Vec::new();
        let mut slot_of: Vec<usize> = Vec::with_capacity(children.len());
        let mut index: HashMap<(String, bool, bool), usize> = HashMap::new();
        for (child, _, finished) in children {
            let (text, continues) = self.text_of(tree, *child);
            let key = (text, continues, *finished);
            let slot = *index.entry(key.clone()).or_insert_with(|| {
                distinct.push(key);
                distinct.len() - 1
            });
            slot_of.push(slot);
        }
        details.shared_scores += children.len() - distinct.len();
        let own_steps: Vec<usize> = distinct
            .iter()
            .map(|(text, _, _)| self.steps_of(text).len())
            .collect();
        let rolled = join_all(
            distinct
                .iter()
                .map(|(text, continues, finished)| async move {
                    if *finished {
                        Ok(self.steps_of(text))
                    } else {
                        self.rolled_out(problem, cx, text.clone(), *continues).await
                    }
                }),
        )
        .await;
        let mut to_score = Vec::with_capacity(rolled.len());
        let rolled_out = distinct.iter().filter(|(_, _, finished)| !finished).count();
        let mut failed = Vec::new();
        for ((text, _, _), steps) in distinct.iter().zip(rolled) {
            match steps {
                Ok(steps) => to_score.push(steps),
                // A roll-out whose call failed on its own: the candidate is scored on its own
                // steps, as one without lookahead.
                Err(e) if e.is_per_call() => {
                    tracing::warn!(problem = %problem.id, "a roll-out failed: {e}");
                    details.failed.push(format!("a roll-out: {e}"));
                    to_score.push(self.steps_of(text));
                    failed.push(e);
                }
                Err(e) => return Err(e),
            }
        }
        // Every roll-out failed and no path finished (earlier, or in this round): not one
        // request's bad luck (a server that refuses every continuation, say), the problem's
        // error.
        let finished_now = children.iter().any(|(_, _, finished)| *finished);
        if self.config.lookahead > 0
            && failed.len() == rolled_out
            && !finished_now
            && !any_finished(tree)
        {
            if let Some(e) = failed.into_iter().next() {
                return Err(e);
            }
        }
        let scores = match ponder_engine::score_checked(
            self.scorer.as_ref(),
            cx,
            &problem.question,
            &to_score,
        )
        .await
        {
            Ok(scores) => scores,
            // The scorer's call failed on its own (a reward model's server refused it, timed
            // out) after an earlier round was scored: this round's candidates go unscored,
            // kept in the order drawn (the search goes on, rather than losing what it found).
            // Before any round was scored, the scorer may never work: the problem's error.
            // (Past round 0 a scorer call worked: one failing in round 0 ends the search.)
            Err(e) if e.is_per_call() && round > 0 => {
                tracing::warn!(problem = %problem.id, "scoring failed: {e}");
                details.failed.push(format!("scoring: {e}"));
                return Ok(slot_of);
            }
            Err(e) => return Err(e),
        };
        for ((child, _, _), &slot) in children.iter().zip(&slot_of) {
            let (Some(step_scores), Some(&own)) = (scores.get(slot), own_steps.get(slot)) else {
                continue;
            };
            // Scores of the candidate's own steps (a roll-out's extra steps count for the
            // aggregate, as search-and-learn scores the rolled-out text).
            let step_score = step_scores.get(own.saturating_sub(1)).copied();
            let score = self.config.aggregate.apply(step_scores);
            let rank = self
                .config
                .aggregate
                .apply_scored(step_scores)
                .map(|reward| Rank {
                    newest_scored: step_scores.last().is_some_and(|s| s.is_finite()),
                    reward,
                });
            if let Some(node) = tree.node_mut(*child) {
                node.step_score = step_score;
                node.score = score;
                node.rank = rank;
            }
        }
        Ok(slot_of)
    }

    async fn search(
        &self,
        problem: &Problem,
        cx: &Context,
        tree: &mut SearchTree,
        details: &mut SearchDetails,
    ) -> Result<()> {
        let n = self.config.n.get();
        let m = self.config.beam_width.get();
        let groups = n / m;
        let sampling = Sampling::with_temperature(self.config.temperature);
        // Round 0 expands the root: n / M beams of M candidates each, as every later round.
        let mut active: Vec<Beam> = (0..groups)
            .map(|g| Beam {
                node: tree.root(),
                subtree: match self.kind {
                    SearchKind::Beam => 0,
                    SearchKind::Dvts => g,
                },
            })
            .collect();
        let mut seen_prefix_tokens: u64 = 0;
        for round in 0..self.config.max_steps.get() {
            if active.is_empty() {
                break;
            }
            details.rounds += 1;
            // The last round writes each open beam to its end.
            let last = round + 1 == self.config.max_steps.get();
            let widths = match self.kind {
                SearchKind::Beam => spread(n, active.len()),
                SearchKind::Dvts => vec![m; active.len()],
            };
            // Every beam's expansion runs to its end: one refused by the budget does not throw
            // away the steps the others paid for.
            let expansions = join_all(active.iter().zip(widths).map(|(beam, k)| {
                let (text, continues) = self.text_of(tree, beam.node);
                async move {
                    self.expand(problem, cx, &text, continues, k, sampling, last)
                        .await
                }
            }))
            .await;
            // The budget stop, if a beam's expansion was refused: the round's other candidates
            // are scored and kept, then the search stops. An expansion that failed on its own
            // call leaves its beam a partial one; any other error ends the search at once.
            let mut stopped: Option<Error> = None;
            let mut failed: Option<Error> = None;
            let mut expanded: Vec<(&Beam, Vec<Expansion>, u64)> = Vec::new();
            for (beam, expansion) in active.iter().zip(expansions) {
                match expansion {
                    Ok((steps, prompt_tokens)) => expanded.push((beam, steps, prompt_tokens)),
                    Err(e @ Error::BudgetExhausted { .. }) => {
                        stopped.get_or_insert(e);
                    }
                    // The beam fills the context window: it cannot go on, so it ends as it
                    // is (scored last round), a partial solution (see `finalists`).
                    Err(Error::PromptTooLong { .. }) if beam.node != tree.root() => {
                        if let Some(node) = tree.node_mut(beam.node) {
                            node.state = NodeState::Finished;
                            node.out_of_context = true;
                        }
                        details.out_of_context += 1;
                    }
                    Err(e) if e.is_per_call() => {
                        tracing::warn!(problem = %problem.id, "an expansion failed: {e}");
                        details.failed.push(format!("an expansion: {e}"));
                        failed.get_or_insert(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            if expanded.is_empty() {
                if let Some(e) = stopped {
                    return Err(e);
                }
                // Every expansion of the round failed and no path finished: not one request's
                // bad luck (a server that refuses every continuation, say), the problem's error.
                if let Some(e) = failed.filter(|_| !any_finished(tree)) {
                    return Err(e);
                }
                break;
            }
            // Parents whose expansion came back with steps are inner nodes now; a refused one
            // (or one that came back empty) stays a partial beam, scored last round.
            let parents: Vec<NodeId> = expanded
                .iter()
                .filter(|(_, steps, _)| !steps.is_empty())
                .map(|(beam, _, _)| beam.node)
                .collect();
            let mut children: Vec<(NodeId, usize, bool)> = Vec::new();
            for (beam, steps, prompt_tokens) in expanded {
                details.prompt_tokens += prompt_tokens;
                details.reusable_prompt_tokens += prompt_tokens.min(seen_prefix_tokens);
                for step in steps {
                    let child = tree.add(beam.node, step.text, step.tokens, beam.subtree);
                    if let Some(node) = tree.node_mut(child) {
                        node.continues = step.cut;
                        node.cut_at_end = step.cut_at_end;
                        node.cut_by_budget = step.cut_by_budget;
                    }
                    children.push((child, beam.subtree, step.finished));
                }
            }
            let expanded_now = children.len();
            // After the first round every expansion extends a prompt already sent.
            seen_prefix_tokens = u64::MAX;
            let slots = match self
                .score_round(problem, cx, tree, &children, round, details)
                .await
            {
                Ok(slots) => slots,
                Err(e) => {
                    // Stopped (the budget, most often) before this round's candidates were
                    // scored: the finished ones stay as solutions, the rest are set aside, and
                    // their parents, scored last round, remain the best partial beams. In the
                    // first round the parent is the empty root, so the unscored first steps
                    // stay: they are all the search has.
                    for &(child, _, finished) in &children {
                        if finished {
                            self.finish(tree, child, details);
                        } else if let Some(node) = tree.node_mut(child) {
                            node.state = if round == 0 {
                                NodeState::Active
                            } else {
                                NodeState::Pruned
                            };
                        }
                    }
                    return Err(e);
                }
            };
            // Paths rank by the steps scored ([`Rank`]): one whose newest step went unscored
            // (past the scorer's window) by the rest, below those whose newest step scored.
            // (Its final reward stays unscored.)
            let score_of = |tree: &SearchTree, id: NodeId| tree.node(id).and_then(|n| n.rank);
            // Finished candidates leave the pool; the rest compete for survival.
            let mut pool: Vec<(NodeId, usize)> = Vec::new();
            // The best score of a candidate that finished this round, per subtree (none while
            // no finished candidate has a score).
            let mut best_finished: Vec<Option<Rank>> = vec![None; groups.max(1)];
            // (subtree, slot) of the candidates kept: identical candidates share a slot.
            let mut kept: HashSet<(usize, usize)> = HashSet::new();
            for ((child, subtree, finished), slot) in children.into_iter().zip(slots) {
                if finished {
                    let score = tree.node(child).and_then(|n| n.rank);
                    if let (Some(best), Some(score)) = (best_finished.get_mut(subtree), score) {
                        *best = Some(best.map_or(score, |b| {
                            if Rank::cmp(Some(score), Some(b)).is_gt() {
                                score
                            } else {
                                b
                            }
                        }));
                    }
                    // A repeat of a solution finished before still gives its DVTS subtree
                    // that solution (its score counts above).
                    self.finish(tree, child, details);
                    continue;
                }
                // DVTS's subtrees are independent, so a duplicate counts only within its own
                // (at a low temperature every subtree's first steps may be alike); beam
                // search has one subtree, 0.
                if self.config.filter_duplicates && !kept.insert((subtree, slot)) {
                    if let Some(node) = tree.node_mut(child) {
                        node.state = NodeState::Pruned;
                    }
                    continue;
                }
                pool.push((child, subtree));
            }
            pool.sort_by(|a, b| Rank::cmp(score_of(tree, b.0), score_of(tree, a.0)));
            let mut survivors: Vec<Beam> = Vec::new();
            let mut per_subtree = vec![0usize; groups.max(1)];
            for (child, subtree) in pool {
                let keep =
                    match self.kind {
                        SearchKind::Beam => survivors.len() < groups,
                        // A subtree goes on greedily with its best candidate: when that one
                        // finished (it scored at least as well as every open one), the subtree
                        // has its solution and ends, as in search-and-learn.
                        SearchKind::Dvts => {
                            per_subtree.get(subtree).is_some_and(|&k| k == 0)
                                && best_finished.get(subtree).copied().flatten().is_none_or(
                                    |best| Rank::cmp(score_of(tree, child), Some(best)).is_gt(),
                                )
                        }
                    };
                if keep {
                    if let Some(k) = per_subtree.get_mut(subtree) {
                        *k += 1;
                    }
                    survivors.push(Beam {
                        node: child,
                        subtree,
                    });
                } else if let Some(node) = tree.node_mut(child) {
                    node.state = NodeState::Pruned;
                }
            }
            for &parent in &parents {
                if parent != tree.root() {
                    if let Some(node) = tree.node_mut(parent) {
                        if node.state == NodeState::Active {
                            node.state = NodeState::Expanded;
                        }
                    }
                }
            }
            if cx.events().is_on() {
                let score = |id: NodeId| tree.node(id).and_then(|n| n.rank).map(|r| r.reward);
                let best_score = survivors
                    .iter()
                    .map(|b| b.node)
                    .chain(self.finalists(tree))
                    .filter_map(score)
                    .reduce(f64::max);
                cx.emit(
                    self.name(),
                    EventKind::Step {
                        step: round + 1,
                        of: self.config.max_steps.get(),
                        expanded: expanded_now,
                        kept: survivors.len(),
                        finished: details.finished,
                        best_score,
                    },
                );
            }
            if let Some(e) = stopped {
                return Err(e);
            }
            active = survivors;
            // Beam search stops at n finished beams (n solutions: a repeat is not counted,
            // see `finish`). DVTS's subtrees end themselves: another subtree's finished
            // candidates say nothing of one still going.
            if self.kind == SearchKind::Beam && details.finished >= n {
                break;
            }
        }
        Ok(())
    }

    /// Marks `id`, a candidate that ended its solution, finished and counts it in
    /// `details.finished`, unless its subtree and text are those of a path finished before it:
    /// then it is that solution again (an answer step's next steps that came back empty, at
    /// the end of sequence at once, all end with its text; two samples that wrote the same
    /// last step), and is pruned, as a repeated open candidate is, so that it is neither
    /// counted again towards `n` nor a candidate twice. The times each solution's last step
    /// was written are kept (`details.written`; an empty one is no second writing): it weighs
    /// that many in the final vote, as that many samples of it would.
    fn finish(&self, tree: &mut SearchTree, id: NodeId, details: &mut SearchDetails) {
        let (text, _) = self.text_of(tree, id);
        let subtree = tree.node(id).map_or(0, |n| n.subtree);
        let key = (subtree, text);
        let first = !details.written.contains_key(&key);
        // An expansion that came back empty (the end of sequence at once) sampled no step: its
        // path is the one that finished before, not a second sample agreeing with it.
        let wrote = tree.node(id).is_some_and(|n| !n.text.is_empty());
        if first || wrote {
            *details.written.entry(key).or_insert(0) += 1;
        }
        if let Some(node) = tree.node_mut(id) {
            node.state = if first {
                NodeState::Finished
            } else {
                NodeState::Pruned
            };
        }
        details.finished += usize::from(first);
    }

    /// Leaves of the tree to select from: those that ended by themselves with something
    /// written, else the partial ones (still active, or ended by filling the context window);
    /// one per solution text in a subtree, the first by id. (A first step that came back empty ended its
    /// path with nothing in it: no solution over the partial ones.)
    fn finalists(&self, tree: &SearchTree) -> Vec<NodeId> {
        let leaves = |keep: &dyn Fn(&tree::SearchNode) -> bool| -> Vec<NodeId> {
            (1..tree.len())
                .map(NodeId)
                .filter(|&id| tree.node(id).is_some_and(keep))
                .collect()
        };
        let wrote = |id: &NodeId| {
            tree.path(*id)
                .iter()
                .any(|&step| tree.node(step).is_some_and(|n| !n.text.trim().is_empty()))
        };
        let finished: Vec<NodeId> = leaves(&ended_by_itself).into_iter().filter(wrote).collect();
        let picked = if finished.is_empty() {
            leaves(&|n| n.state == NodeState::Active || n.out_of_context)
        } else {
            finished
        };
        // The same text twice in a subtree is one solution (a repeated finished one is pruned
        // as it ends; partial ones may repeat with `filter_duplicates` off).
        let mut seen: HashSet<(usize, String)> = HashSet::new();
        picked
            .into_iter()
            .filter(|&id| {
                let subtree = tree.node(id).map_or(0, |n| n.subtree);
                seen.insert((subtree, self.text_of(tree, id).0))
            })
            .collect()
    }
}

#[async_trait]
impl Strategy for BeamSearch {
    fn name(&self) -> &'static str {
        match self.kind {
            SearchKind::Beam => "beam_search",
            SearchKind::Dvts => "dvts",
        }
    }

    #[tracing::instrument(skip_all, fields(strategy = self.name(), problem = %problem.id, n = self.config.n.get()))]
    async fn solve(&self, problem: &Problem, cx: &Context) -> Result<Solution> {
        let mut tree = SearchTree::new();
        let mut details = SearchDetails::default();
        let (refused_before, _) = cx.meter().refused();
        let mut stop_reason = match self.search(problem, cx, &mut tree, &mut details).await {
            // The budget refused some of its calls that leave no trace in the search (reads
            // left unscored, in any round): it cut the search short, however it ended.
            Ok(()) => match cx.meter().refused() {
                (refused, Some(resource)) if refused > refused_before => resource.into(),
                _ => StopReason::Completed,
            },
            Err(Error::BudgetExhausted { resource }) => resource.into(),
            Err(e) => return Err(e),
        };
        let finalists = self.finalists(&tree);
        let candidates: Vec<Candidate> = finalists
            .iter()
            .map(|&id| {
                let (text, _) = self.text_of(&tree, id);
                Candidate {
                    // A program has no answer to vote on: the reward picks among programs.
                    answer: problem
                        .code
                        .is_none()
                        .then(|| extract_answer(&text))
                        .flatten(),
                    score: tree.node(id).and_then(|n| n.score),
                    tokens: tree
                        .path(id)
                        .iter()
                        .filter_map(|&p| tree.node(p))
                        .map(|n| n.tokens)
                        .sum(),
                    text,
                }
            })
            .collect();
        let mut answers: Vec<Option<String>> =
            candidates.iter().map(|c| c.answer.clone()).collect();
        for (&id, answer) in finalists.iter().zip(&answers) {
            if let Some(node) = tree.node_mut(id) {
                node.answer.clone_from(answer);
            }
        }
        let mut rewards: Vec<Option<f64>> = candidates.iter().map(|c| c.score).collect();
        // A last write the budget cut before it stated an answer ends on a number of its
        // working, not an answer: selected from only where no other finalist answered (as
        // best-of-N's vote counts a sample the budget cut).
        let guessed: Vec<bool> = finalists
            .iter()
            .zip(&candidates)
            .map(|(&id, c)| {
                tree.node(id).is_some_and(|n| n.cut_by_budget)
                    && c.answer.is_some()
                    && !self.states_answer(&c.text, false)
            })
            .collect();
        crate::best_of_n::leave_out_guesses(&mut answers, &mut rewards, &guessed);
        // With no path finished (a budget stop before any did, or every beam filled the
        // window), the finalists are partial beams, whose "answers" are numbers of their
        // working: no votes. The solution is the best of them as the search ranked them (by
        // the steps scored, a path whose newest step was scored first), the first on a tie.
        let none_finished = finalists
            .iter()
            .all(|&id| tree.node(id).is_none_or(|n| !ended_by_itself(n)));
        let selection = if none_finished {
            let rank = |id: NodeId| tree.node(id).and_then(|n| n.rank);
            let best = (0..finalists.len()).reduce(|best, i| {
                match Rank::cmp(rank(finalists[i]), rank(finalists[best])) {
                    std::cmp::Ordering::Greater => i,
                    _ => best,
                }
            });
            Selection {
                index: best,
                groups: Vec::new(),
                why: "no path finished: the best-ranked partial beam".into(),
            }
        } else {
            // A solution written k times votes k times (as k samples of it would under
            // best-of-N, and as search-and-learn's final vote counts its completions): the
            // repeats are pruned from the candidates, not from the vote.
            let owner: Vec<usize> = finalists
                .iter()
                .zip(&candidates)
                .enumerate()
                .flat_map(|(i, (&id, candidate))| {
                    let subtree = tree.node(id).map_or(0, |n| n.subtree);
                    let times = details
                        .written
                        .get(&(subtree, candidate.text.clone()))
                        .copied()
                        .unwrap_or(1)
                        .max(1);
                    std::iter::repeat_n(i, times)
                })
                .collect();
            let votes: Vec<Option<String>> = owner.iter().map(|&i| answers[i].clone()).collect();
            let weights: Vec<Option<f64>> = owner.iter().map(|&i| rewards[i]).collect();
            let mut selection = self.config.select.apply(&votes, &weights);
            selection.index = selection.index.and_then(|i| owner.get(i).copied());
            // Its groups' members are indexes of the candidates, as everywhere else.
            for group in &mut selection.groups {
                for member in &mut group.members {
                    *member = owner[*member];
                }
                group.members.dedup();
            }
            if owner.len() > finalists.len() {
                selection.why = format!(
                    "{} (over {} written solutions, a solution written twice counted twice)",
                    selection.why,
                    owner.len()
                );
            }
            selection
        };
        if let Some(&id) = selection.index.and_then(|i| finalists.get(i)) {
            // No beam finished within max_steps, or the chosen one filled the context window
            // or its last round's write ran to its limit: the answer is a partial one, and
            // says so (as `max_tokens`, or the budget that shortened the write).
            let unfinished = tree
                .node(id)
                .is_some_and(|n| n.state == NodeState::Active || n.out_of_context || n.cut_at_end);
            if unfinished && stop_reason == StopReason::Completed {
                stop_reason = StopReason::MaxTokens;
            }
            tree.choose(id);
        }
        let chosen = selection.index.and_then(|i| candidates.get(i)).cloned();
        // The answer as the vote read it (a guess of a cut write is none).
        let answer = selection
            .index
            .and_then(|i| answers.get(i))
            .cloned()
            .flatten();
        cx.emit(
            self.name(),
            EventKind::Selected {
                answer: answer.clone(),
                candidates: candidates.len(),
                why: selection.why.clone(),
            },
        );
        details.nodes = tree.len().saturating_sub(1);
        details.score = chosen.as_ref().and_then(|c| c.score);
        details.why = selection.why;
        details.selected = selection.index;
        details.candidates = candidates
            .iter()
            .map(crate::CandidateDetail::from)
            .collect();
        let trace = tree.trace();
        Ok(Solution {
            strategy: self.name().to_string(),
            answer,
            completion: chosen.map(|c| c.text).unwrap_or_default(),
            candidates,
            stop_reason,
            usage: Default::default(),
            details: serde_json::to_value(details).map_err(|source| Error::Serialize {
                what: "search details",
                source,
            })?,
            trace: Some(trace),
        })
    }
}

/// Whether `node` ended its path by itself (not by filling the context window).
fn ended_by_itself(node: &tree::SearchNode) -> bool {
    node.state == NodeState::Finished && !node.out_of_context
}

/// Whether a path of `tree` finished by itself.
fn any_finished(tree: &SearchTree) -> bool {
    (1..tree.len()).any(|i| tree.node(NodeId(i)).is_some_and(ended_by_itself))
}

/// Beam search's `n` expansions a round over the `beams` that survived: `n / M` beams get M
/// each, and when fewer survive (the others finished, or repeated one another) those left get
/// more, as search-and-learn duplicates its active beams back to `n`.
fn spread(n: usize, beams: usize) -> Vec<usize> {
    (0..beams)
        .map(|i| n / beams + usize::from(i < n % beams))
        .collect()
}

/// The last step of `text` (after its last delimiter): with the cut step it ends in, the text
/// a continuation continues.
fn last_step<'a>(text: &'a str, delimiter: &str) -> &'a str {
    text.rsplit(delimiter).next().unwrap_or(text)
}

/// Whether `step` gives the final answer: the cue with something after it ("**Final Answer:**"
/// alone, a step cut at the cue, leave the answer to the next step). The last cue counts, in
/// any case and with emphasis between its words and its colon (`**Final Answer**: 5`,
/// `final answer: 5`), as the answer extractor reads a final answer (a step the grader reads
/// an answer from ends the beam).
fn answered(step: &str) -> bool {
    // ASCII lower-casing keeps byte offsets.
    let lower = step.to_ascii_lowercase();
    let words = ANSWER_CUE.trim_end_matches(':').to_ascii_lowercase();
    lower
        .rmatch_indices(words.as_str())
        .find_map(|(at, cue)| {
            lower
                .get(at + cue.len()..)?
                .trim_start_matches(['*', '_'])
                .strip_prefix(':')
        })
        .is_some_and(|answer| answer.chars().any(char::is_alphanumeric))
}
