//! Beam search and DVTS on a scripted backend and a scripted scorer.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ponder_engine::scripted::{Recorder, ScriptedBackend};
use ponder_engine::{Backend, Budget, Context, Problem, Result, Scorer, Solution, StopReason};

use super::*;

/// Scores a step `sN` (anywhere in its text) as N/10; records what it was asked.
#[derive(Default)]
struct NumberScorer {
    seen: Mutex<Vec<Vec<String>>>,
}

fn value(step: &str) -> f64 {
    step.split(|c: char| !c.is_ascii_alphanumeric())
        .find_map(|w| w.strip_prefix('s').and_then(|n| n.parse::<f64>().ok()))
        .map_or(0.0, |n| n / 10.0)
}

#[async_trait]
impl Scorer for NumberScorer {
    async fn score(
        &self,
        _: &Context,
        _: &str,
        candidates: &[Vec<String>],
    ) -> Result<Vec<Vec<f64>>> {
        self.seen.lock().unwrap().extend(candidates.iter().cloned());
        Ok(candidates
            .iter()
            .map(|steps| steps.iter().map(|s| value(s)).collect())
            .collect())
    }
}

fn config(n: usize, m: usize, steps: usize) -> BeamSearchConfig {
    BeamSearchConfig {
        n: NonZeroUsize::new(n).unwrap(),
        beam_width: NonZeroUsize::new(m).unwrap(),
        max_steps: NonZeroUsize::new(steps).unwrap(),
        select: Select::Naive,
        ..BeamSearchConfig::default()
    }
}

/// A search of `kind` under `c`, scored by [`NumberScorer`].
fn numbered(c: BeamSearchConfig, kind: SearchKind) -> BeamSearch {
    BeamSearch::new(c, kind)
        .unwrap()
        .with_scorer(Arc::new(NumberScorer::default()))
}

async fn run(
    search: BeamSearch,
    replies: Vec<&str>,
    budget: Budget,
) -> (Solution, Arc<ScriptedBackend>, SearchTreeJson) {
    let (solution, backend, tree, _) = run_watched(search, replies, budget).await;
    (solution, backend, tree)
}

/// `run`, with the search's events.
async fn run_watched(
    search: BeamSearch,
    replies: Vec<&str>,
    budget: Budget,
) -> (
    Solution,
    Arc<ScriptedBackend>,
    SearchTreeJson,
    Arc<Recorder>,
) {
    let backend = Arc::new(ScriptedBackend::new(replies));
    let events = Recorder::new();
    let cx = Context::with_events(
        Arc::clone(&backend) as Arc<dyn Backend>,
        budget,
        events.events_of("p"),
    );
    let solution = ponder_engine::solve_in(&search, &Problem::new("p", "Q?"), &cx)
        .await
        .unwrap();
    let nodes = solution.trace.as_ref().unwrap().json["nodes"]
        .as_array()
        .unwrap()
        .clone();
    (solution, backend, SearchTreeJson(nodes), events)
}

struct SearchTreeJson(Vec<serde_json::Value>);

impl SearchTreeJson {
    fn state_of(&self, text: &str) -> String {
        self.0
            .iter()
            .find(|n| n["text"] == text)
            .map(|n| n["state"].as_str().unwrap().to_string())
            .unwrap_or_default()
    }
}

/// What the assistant turn of a request started with (the meter hands the backend token ids;
/// the scripted tokenizer is bytes).
fn assistant_prefix(request: &ponder_engine::GenerationRequest) -> String {
    let text = ScriptedBackend::render(&request.prompt);
    text.rsplit("assistant: ")
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn survivors_of_each_round_are_exactly_the_top_n_over_m() {
    // n = 4, M = 2: two beams, each expanded twice per round; the best two survive.
    let replies = vec![
        // round 1: beam 0 -> s3, s9; beam 1 -> s5, s1
        "s3\n\n",
        "s9\n\n",
        "s5\n\n",
        "s1\n\n",
        // round 2: expansions of the survivors s9 and s5 (in score order)
        "s2\n\n",
        "s8\n\n",
        "s7\n\n",
        "s4\n\n",
        // round 3, the last: s8's and s7's beams written to their ends
        "s6\n\nFinal Answer: 6",
        "s1",
        "s3",
        "s2",
    ];
    let search = numbered(config(4, 2, 3), SearchKind::Beam);
    let (solution, backend, tree, events) = run_watched(search, replies, Budget::unlimited()).await;
    let requests = backend.requests();
    assert_eq!(requests.len(), 6);
    assert!(requests.iter().all(|r| r.n == 2));
    // The last round does not stop at the step delimiter.
    assert!(requests[..4].iter().all(|r| r.stop == ["\n\n"]));
    assert!(requests[4..]
        .iter()
        .all(|r| r.stop.is_empty() && r.max_tokens == 512));
    // Each step reports what it expanded and kept, and the best score so far.
    let step = |step, kept, finished, best| EventKind::Step {
        step,
        of: 3,
        expanded: 4,
        kept,
        finished,
        best_score: Some(best),
    };
    let decisions = events.decisions("p");
    assert_eq!(
        decisions[..3],
        [step(1, 2, 0, 0.9), step(2, 2, 0, 0.8), step(3, 0, 4, 0.3)]
    );
    assert!(
        matches!(&decisions[3..], [EventKind::Selected { answer, candidates: 4, .. }]
            if *answer == solution.answer),
        "{decisions:?}"
    );
    assert_eq!(tree.state_of("s3"), "pruned");
    assert_eq!(tree.state_of("s1"), "pruned");
    // Round 2 expanded s9 and s5 (their prompts end with those steps).
    let prefixes: Vec<String> = requests[2..4].iter().map(assistant_prefix).collect();
    assert_eq!(prefixes, vec!["s9\n\n".to_string(), "s5\n\n".to_string()]);
    // Last-step scores: s9/s8 -> 0.8, s5/s7 -> 0.7 survive.
    assert_eq!(tree.state_of("s2"), "pruned");
    assert_eq!(tree.state_of("s4"), "pruned");
    assert_eq!(tree.state_of("s8"), "expanded");
    // The last round's ends are scored step by step (split at the delimiter): s6's beam ends
    // on a step of its own, "Final Answer: 6", worth 0; the best last step is s3's (0.3).
    assert_eq!(tree.state_of("s6\n\nFinal Answer: 6"), "finished");
    assert_eq!(solution.completion, "s5\n\ns7\n\ns3");
    assert_eq!(solution.stop_reason, StopReason::Completed);
    assert!(solution.trace.unwrap().dot.contains("penwidth=3"));
}

#[tokio::test]
async fn lookahead_extends_before_scoring() {
    let scorer = Arc::new(NumberScorer::default());
    let mut c = config(2, 2, 2);
    c.lookahead = 1;
    // One beam, two candidates, then one greedy roll-out step for each; the last round goes
    // on from the survivor.
    let replies = vec![
        "s1\n\n",
        "s2\n\n",
        "s6\n\n",
        "s3\n\n",
        "s4 Final Answer: 4",
        "s5 Final Answer: 5",
    ];
    let search = BeamSearch::new(c, SearchKind::Beam)
        .unwrap()
        .with_scorer(Arc::clone(&scorer) as Arc<dyn Scorer>);
    let (solution, backend, _) = run(search, replies, Budget::unlimited()).await;
    let seen = scorer.seen.lock().unwrap().clone();
    assert_eq!(
        seen[..2],
        [
            vec!["s1".to_string(), "s6".to_string()],
            vec!["s2".to_string(), "s3".to_string()]
        ]
    );
    assert_eq!(
        backend.requests()[1].sampling.temperature,
        0.0,
        "roll-outs are greedy"
    );
    // s1 rolled out to s6 scores 0.6 (last) and beats s2 -> s3 (0.3); the roll-out is not
    // kept: the last round goes on from s1 alone.
    assert_eq!(assistant_prefix(&backend.requests()[3]), "s1\n\n");
    assert_eq!(solution.completion, "s1\n\ns5 Final Answer: 5");
}

#[tokio::test]
async fn dvts_subtrees_stay_independent() {
    // n = 4, M = 2: two subtrees. Subtree 0 gets the best scores everywhere, but subtree 1
    // still keeps its own best beam each round.
    let replies = vec![
        "s9\n\n",
        "s8\n\n",
        "s2\n\n",
        "s1\n\n",
        "s9 s9\n\n",
        "s9 s7\n\n",
        "s2 s3\n\n",
        "s2 s2\n\n",
    ];
    let search = numbered(config(4, 2, 2), SearchKind::Dvts);
    let (_, backend, tree) = run(search, replies, Budget::unlimited()).await;
    let requests = backend.requests();
    let prefixes: Vec<String> = requests[2..].iter().map(assistant_prefix).collect();
    assert_eq!(
        prefixes,
        vec!["s9\n\n".to_string(), "s2\n\n".to_string()],
        "one survivor per subtree"
    );
    assert_eq!(tree.state_of("s8"), "pruned");
    for node in &tree.0[1..] {
        let parent = node["parent"].as_u64().unwrap() as usize;
        if parent != 0 {
            assert_eq!(
                node["subtree"], tree.0[parent]["subtree"],
                "children stay in their parent's subtree"
            );
        }
    }
}

#[tokio::test]
async fn beam_search_keeps_n_expansions_a_round_when_fewer_beams_survive() {
    // n = 4, M = 2. Three of round 1's four candidates finish: the one beam left is expanded
    // four times, not two (search-and-learn duplicates its active beams back to n).
    let replies = vec![
        "s5\n\n",
        "Final Answer: 1",
        "Final Answer: 2",
        "Final Answer: 3",
        "s6 Final Answer: 6",
        "s7 Final Answer: 7",
        "s8 Final Answer: 8",
        "s9 Final Answer: 9",
    ];
    let search = numbered(config(4, 2, 3), SearchKind::Beam);
    let (solution, backend, _) = run(search, replies, Budget::unlimited()).await;
    let widths: Vec<usize> = backend.requests().iter().map(|r| r.n).collect();
    assert_eq!(widths, [2, 2, 4]);
    assert_eq!(assistant_prefix(&backend.requests()[2]), "s5\n\n");
    let details: SearchDetails = serde_json::from_value(solution.details.clone()).unwrap();
    assert_eq!((details.rounds, details.finished), (2, 7));
    assert_eq!(solution.answer.as_deref(), Some("9"));
}

#[test]
fn n_expansions_are_spread_over_the_beams_left() {
    assert_eq!(spread(8, 2), [4, 4]);
    assert_eq!(spread(8, 3), [3, 3, 2]);
    assert_eq!(spread(8, 1), [8]);
    assert!(spread(8, 0).is_empty());
}

#[tokio::test]
async fn a_dvts_subtree_whose_best_candidate_finished_is_done() {
    // n = 4, M = 2. Subtree 0's best candidate finished (0.9 over an open 0.8): it is done.
    // Subtree 1's finished candidate scored below its open one (0.1 < 0.2): it goes on.
    let replies = vec![
        "s9 Final Answer: 9",
        "s8\n\n",
        "s1 Final Answer: 1",
        "s2\n\n",
        "s3 Final Answer: 3",
        "s2 Final Answer: 2",
    ];
    let search = numbered(config(4, 2, 3), SearchKind::Dvts);
    let (solution, backend, tree) = run(search, replies, Budget::unlimited()).await;
    let prefixes: Vec<String> = backend.requests()[2..]
        .iter()
        .map(assistant_prefix)
        .collect();
    assert_eq!(
        prefixes,
        vec!["s2\n\n".to_string()],
        "only subtree 1 goes on"
    );
    assert_eq!(tree.state_of("s8"), "pruned");
    assert_eq!(tree.state_of("s9 Final Answer: 9"), "finished");
    assert_eq!(tree.state_of("s1 Final Answer: 1"), "finished");
    let details: SearchDetails = serde_json::from_value(solution.details.clone()).unwrap();
    assert_eq!((details.rounds, details.finished), (2, 4));
    assert_eq!(solution.answer.as_deref(), Some("9"));
}

#[tokio::test]
async fn dvts_subtrees_go_on_whatever_other_subtrees_finished() {
    // n = 4, M = 2. Subtree 0 finishes both candidates in round 1; subtree 1 finishes a weak
    // one each round beside a better open one. Four finished after round 2 end nothing: subtree
    // 1 goes on to its own end in round 3.
    let replies = vec![
        "s1 Final Answer: 1",
        "s2 Final Answer: 2",
        "s0 Final Answer: 0",
        "s5\n\n",
        "s0 Final Answer: 0",
        "s6\n\n",
        "s9 Final Answer: 9",
        "s8 Final Answer: 8",
    ];
    let search = numbered(config(4, 2, 3), SearchKind::Dvts);
    let (solution, backend, _) = run(search, replies, Budget::unlimited()).await;
    assert_eq!(backend.requests().len(), 4);
    let details: SearchDetails = serde_json::from_value(solution.details.clone()).unwrap();
    assert_eq!((details.rounds, details.finished), (3, 6));
    assert_eq!(solution.answer.as_deref(), Some("9"));
}

/// A process reward that scores each step on its own with a function of its text.
struct PerStep(fn(&str) -> f64);

#[async_trait]
impl Scorer for PerStep {
    async fn score(
        &self,
        _: &Context,
        _: &str,
        candidates: &[Vec<String>],
    ) -> Result<Vec<Vec<f64>>> {
        Ok(candidates
            .iter()
            .map(|steps| steps.iter().map(|s| (self.0)(s)).collect())
            .collect())
    }
}

/// Reads nothing: every step score is NaN.
fn unreadable() -> Arc<PerStep> {
    Arc::new(PerStep(|_| f64::NAN))
}

/// [`NumberScorer`]'s scores, but a step with an `x` in it is past the scorer's window: NaN.
fn past_window() -> Arc<PerStep> {
    Arc::new(PerStep(
        |s| if s.contains('x') { f64::NAN } else { value(s) },
    ))
}

#[tokio::test]
async fn a_path_whose_newest_step_went_unscored_ranks_below_its_scored_siblings() {
    // One beam: s9 beats s3; then s9's children are `x1` (unscored) and s2 (0.2). Ranked on its
    // scored steps alone, x1 would be s9's 0.9 under `min`, above every sibling that scored:
    // the one step nobody could read would win (helper-124).
    let replies = vec![
        "s9\n\n",
        "s3\n\n",
        "x1\n\n",
        "s2\n\n",
        "Final Answer: 5",
        "Final Answer: 6",
    ];
    let search = BeamSearch::new(
        BeamSearchConfig {
            aggregate: Aggregate::Min,
            ..config(2, 2, 3)
        },
        SearchKind::Beam,
    )
    .unwrap()
    .with_scorer(past_window());
    let (solution, _, tree) = run(search, replies, Budget::unlimited()).await;
    assert_eq!(tree.state_of("s3"), "pruned");
    assert_eq!(tree.state_of("x1"), "pruned");
    assert_eq!(tree.state_of("s2"), "expanded");
    assert_eq!(solution.candidates.len(), 2);
    assert!(solution.candidates.iter().all(|c| c.score.is_some()));
}

#[tokio::test]
async fn a_path_with_an_earlier_step_unscored_ranks_by_its_newest_scored_step() {
    // Round 1 keeps s1 and x1 (unscored, first of the rest). Round 2: s1's children s2 and s3
    // against x1's s8 and s4, each newest step scored: under `last` the 0.8 and 0.4 win; the
    // step x1 nobody could read does not sink its path for the rest of the search
    // (helper-126).
    let replies = vec![
        "x1\n\n",
        "x2\n\n",
        "s1\n\n",
        "x3\n\n",
        "s2\n\n",
        "s3\n\n",
        "s8\n\n",
        "s4\n\n",
        "Final Answer: 5",
        "Final Answer: 6",
        "Final Answer: 7",
        "Final Answer: 8",
    ];
    let search = BeamSearch::new(config(4, 2, 3), SearchKind::Beam)
        .unwrap()
        .with_scorer(past_window());
    let (_, backend, tree) = run(search, replies, Budget::unlimited()).await;
    assert_eq!(backend.requests().len(), 6);
    for (step, state) in [
        ("s1", "expanded"),
        ("x1", "expanded"),
        ("s8", "expanded"),
        ("s4", "expanded"),
        ("s2", "pruned"),
        ("s3", "pruned"),
    ] {
        assert_eq!(tree.state_of(step), state, "{step}");
    }
}

#[tokio::test]
async fn paths_whose_newest_steps_all_went_unscored_rank_by_the_steps_scored() {
    // n = 4, M = 2: s9 and s5 survive round 1; every child of theirs is past the scorer's
    // window, so they rank by the steps scored: s9's two children (0.9) over s5's (0.5).
    let replies = vec![
        "s3\n\n",
        "s9\n\n",
        "s5\n\n",
        "s1\n\n",
        "x1\n\n",
        "x2\n\n",
        "x3\n\n",
        "x4\n\n",
        "Final Answer: 5",
        "Final Answer: 6",
        "Final Answer: 7",
        "Final Answer: 8",
    ];
    let search = BeamSearch::new(config(4, 2, 3), SearchKind::Beam)
        .unwrap()
        .with_scorer(past_window());
    let (solution, backend, tree) = run(search, replies.clone(), Budget::unlimited()).await;
    assert_eq!(backend.requests().len(), 6);
    for (step, state) in [
        ("x1", "expanded"),
        ("x2", "expanded"),
        ("x3", "pruned"),
        ("x4", "pruned"),
    ] {
        assert_eq!(tree.state_of(step), state, "{step}");
    }
    // Under `last` a finished path's reward is its last step's score, read whatever its middle
    // steps' were (0 here: "Final Answer" names no `s`); under `min` it keeps none.
    assert_eq!(solution.candidates.len(), 4);
    assert!(
        solution.candidates.iter().all(|c| c.score == Some(0.0)),
        "{:?}",
        solution.candidates
    );
    let search = BeamSearch::new(
        BeamSearchConfig {
            aggregate: Aggregate::Min,
            ..config(4, 2, 3)
        },
        SearchKind::Beam,
    )
    .unwrap()
    .with_scorer(past_window());
    let (solution, _, _) = run(search, replies, Budget::unlimited()).await;
    assert_eq!(solution.candidates.len(), 4);
    assert!(solution.candidates.iter().all(|c| c.score.is_none()));
}

#[tokio::test]
async fn a_dvts_subtree_without_scores_goes_on_while_nothing_in_it_finished() {
    let replies = vec!["a\n\n", "b\n\n", "Final Answer: 3", "Final Answer: 4"];
    let search = BeamSearch::new(config(2, 2, 2), SearchKind::Dvts)
        .unwrap()
        .with_scorer(unreadable());
    let (solution, backend, _) = run(search, replies, Budget::unlimited()).await;
    assert_eq!(
        backend.requests().len(),
        2,
        "round 2 expands an unscored beam"
    );
    assert!(matches!(solution.answer.as_deref(), Some("3" | "4")));
}

#[tokio::test]
async fn finished_beams_are_set_aside_and_selected() {
    // Round 1: "Final Answer: 42" ends its beam; only s1 is expanded in round 2, where both
    // candidates finish. With n = 2 finished beams reached, the search stops.
    let replies = vec![
        "s1\n\n",
        "Final Answer: 42",
        "s2 Final Answer: 41",
        "s0 Final Answer: 40",
    ];
    let mut c = config(2, 2, 5);
    c.select = Select::Weighted;
    let search = numbered(c, SearchKind::Beam);
    let (solution, backend, tree) = run(search, replies, Budget::unlimited()).await;
    assert_eq!(backend.requests().len(), 2);
    assert_eq!(tree.state_of("Final Answer: 42"), "finished");
    assert_eq!(tree.state_of("s2 Final Answer: 41"), "finished");
    let details: SearchDetails = serde_json::from_value(solution.details.clone()).unwrap();
    assert_eq!(details.finished, 3);
    assert_eq!(details.candidates.len(), 3);
    assert_eq!(
        solution.answer.as_deref(),
        Some("41"),
        "the 0.2-scored finished beam"
    );
    assert_eq!(solution.stop_reason, StopReason::Completed);
}

#[tokio::test]
async fn a_solution_finished_twice_is_one_candidate_and_one_of_the_n() {
    // n = 4, M = 2. Round 1 finishes two answers and keeps "s5 so it is 5" and s4. Round 2:
    // both next steps of the answer step come back empty (end of sequence at once), each a
    // finished path with its text: one solution, counted once. Counted twice, the four
    // finished would stop the search here, and 5 would win the weighted vote (0.5 twice).
    let replies = vec![
        "Final Answer: 1",
        "Final Answer: 2",
        "s5 so it is 5\n\n",
        "s4\n\n",
        // round 2: "s5 so it is 5"'s next steps, then s4's
        "",
        "",
        "s6\n\n",
        "s3\n\n",
        // round 3, the last: s6's and s3's beams written to their ends
        "s7 Final Answer: 7",
        "s8 Final Answer: 8",
        "s2 Final Answer: 2",
        "s1 Final Answer: 1",
    ];
    let mut c = config(4, 2, 3);
    c.select = Select::Weighted;
    let search = numbered(c, SearchKind::Beam);
    let (solution, backend, tree) = run(search, replies, Budget::unlimited()).await;
    assert_eq!(backend.requests().len(), 6, "the search went on to round 3");
    let repeats: Vec<&str> = tree
        .0
        .iter()
        .filter(|n| n["text"] == "" && n["depth"] == 2)
        .map(|n| n["state"].as_str().unwrap())
        .collect();
    assert_eq!(repeats, ["finished", "pruned"]);
    let details: SearchDetails = serde_json::from_value(solution.details.clone()).unwrap();
    assert_eq!(details.finished, 7, "{details:?}");
    assert_eq!(details.candidates.len(), 7, "{details:?}");
    assert_eq!(
        solution
            .candidates
            .iter()
            .filter(|c| c.text == "s5 so it is 5")
            .count(),
        1
    );
    assert_eq!(solution.answer.as_deref(), Some("8"), "{details:?}");
}

#[tokio::test]
async fn dvts_subtrees_that_finish_one_text_are_a_vote_each() {
    // Every expansion of both subtrees writes the same answer: within a subtree the repeat is
    // one solution (pruned), across the independent subtrees each is a vote of its own, as
    // best-of-N's samples are.
    let replies = vec!["Final Answer: 5"; 4];
    let mut c = config(4, 2, 2);
    c.select = Select::Majority;
    let search = numbered(c, SearchKind::Dvts);
    let (solution, _, tree) = run(search, replies, Budget::unlimited()).await;
    let details: SearchDetails = serde_json::from_value(solution.details.clone()).unwrap();
    assert_eq!(details.finished, 2, "{details:?}");
    assert_eq!(solution.candidates.len(), 2, "{:?}", solution.candidates);
    let mut states: Vec<(u64, &str)> = tree
        .0
        .iter()
        .filter(|n| n["depth"] == 1)
        .map(|n| (n["subtree"].as_u64().unwrap(), n["state"].as_str().unwrap()))
        .collect();
    states.sort_unstable();
    assert_eq!(
        states,
        [
            (0, "finished"),
            (0, "pruned"),
            (1, "finished"),
            (1, "pruned")
        ]
    );
    assert_eq!(solution.answer.as_deref(), Some("5"));
}

#[tokio::test]
async fn the_budget_stop_returns_a_best_beam() {
    let replies = vec!["s3\n\n", "s7\n\n", "s2\n\n", "s1\n\n"];
    let search = numbered(config(2, 2, 4), SearchKind::Beam);
    let (solution, _, _) = run(search, replies, Budget::unlimited().with_max_calls(1)).await;
    assert_eq!(solution.stop_reason, StopReason::CallBudget);
    assert_eq!(solution.completion, "s7", "the best partial beam");
}

#[tokio::test]
async fn a_budget_stop_with_no_beam_finished_takes_the_best_partial_beam_not_a_vote() {
    // No beam stated an answer: the numbers their working ends on are no votes (two beams
    // ending on 30 outweighed the best-scored one under the weighted vote).
    let replies = vec!["s6 gives 12\n\n", "s4 gives 30\n\n", "s3 gives 30\n\n"];
    let search = numbered(
        BeamSearchConfig {
            select: Select::Weighted,
            ..config(6, 3, 4)
        },
        SearchKind::Beam,
    );
    let (solution, _, _) = run(search, replies, Budget::unlimited().with_max_calls(1)).await;
    assert_eq!(solution.stop_reason, StopReason::CallBudget);
    assert_eq!(solution.completion, "s6 gives 12", "the best partial beam");
    // Nor, with no beam scored (a stop in the first round's reads), a majority of them: the
    // first drawn, as the search would have kept it.
    let replies = vec!["s6 gives 12\n\n", "s4 gives 30\n\n", "s3 gives 30\n\n"];
    let search = BeamSearch::new(config(6, 3, 4), SearchKind::Beam)
        .unwrap()
        .with_scorer(unreadable());
    let (solution, _, _) = run(search, replies, Budget::unlimited().with_max_calls(1)).await;
    assert_eq!(solution.completion, "s6 gives 12");
}

#[tokio::test]
async fn a_solution_written_twice_is_one_candidate_and_two_votes() {
    // s8's two expansions write the same last step: one candidate, but two samples of the
    // model's that agree, as search-and-learn's vote counts them: 5 weighs 0.8 + 0.8 against
    // 6's 0.6 + 0.6 (counted once, 6 won).
    let replies = vec![
        "s8\n\n",
        "s6\n\n",
        "s1\n\n",
        "s2\n\n",
        "s8 Final Answer: 5",
        "s8 Final Answer: 5",
        "s6 so Final Answer: 6",
        "s6 thus Final Answer: 6",
    ];
    let search = numbered(
        BeamSearchConfig {
            select: Select::Weighted,
            ..config(4, 2, 2)
        },
        SearchKind::Beam,
    );
    let (solution, backend, _) = run(search, replies, Budget::unlimited()).await;
    assert_eq!(backend.requests().len(), 4);
    assert_eq!(solution.candidates.len(), 3, "{:?}", solution.candidates);
    assert_eq!(
        solution.answer.as_deref(),
        Some("5"),
        "{}",
        solution.details
    );
}

#[tokio::test]
async fn a_first_step_that_came_back_empty_is_no_solution_over_a_partial_beam() {
    // The model ended at once in one expansion of the root: that path holds nothing, and the
    // budget stop leaves s7, partial, as the solution.
    let replies = vec!["", "s7\n\n", "s2\n\n", "s1\n\n"];
    let search = numbered(config(2, 2, 4), SearchKind::Beam);
    let (solution, _, _) = run(search, replies, Budget::unlimited().with_max_calls(1)).await;
    assert_eq!(solution.stop_reason, StopReason::CallBudget);
    assert_eq!(solution.completion, "s7");
}

#[tokio::test]
async fn a_budget_stop_in_a_round_keeps_the_expansions_that_came_back() {
    // n = 4, M = 2: round 1 expands the root twice (calls 1-2), s5 and s3 survive. Round 2:
    // s5's expansion (call 3) finishes a solution; s3's is refused. The finished answer is
    // kept and chosen, s5's open child stays a partial beam, and s3 is still one.
    let replies = vec![
        "s3\n\n",
        "s5\n\n",
        "s1\n\n",
        "s2\n\n",
        "Final Answer: 7",
        "s4\n\n",
    ];
    let search = numbered(config(4, 2, 4), SearchKind::Beam);
    let (solution, backend, tree) =
        run(search, replies, Budget::unlimited().with_max_calls(3)).await;
    assert_eq!(backend.requests().len(), 3);
    assert_eq!(solution.stop_reason, StopReason::CallBudget);
    assert_eq!(tree.state_of("Final Answer: 7"), "finished");
    assert_eq!(tree.state_of("s4"), "active");
    assert_eq!(tree.state_of("s5"), "expanded");
    assert_eq!(tree.state_of("s3"), "active", "its expansion was refused");
    assert_eq!(solution.answer.as_deref(), Some("7"));
    assert_eq!(solution.completion, "s5\n\nFinal Answer: 7");
}

#[tokio::test]
async fn identical_candidates_are_scored_once() {
    // One beam, four candidates: s5 twice and s2 twice. Two texts go to the scorer; the
    // duplicates share the score and are pruned; one beam (n / M) survives.
    let scorer = Arc::new(NumberScorer::default());
    let replies = vec![
        "s5\n\n", "s2\n\n", "s5\n\n", "s2\n\n", // the last round: s5's ends
        "s1", "s4", "s3", "s2",
    ];
    let search = BeamSearch::new(config(4, 4, 2), SearchKind::Beam)
        .unwrap()
        .with_scorer(Arc::clone(&scorer) as Arc<dyn Scorer>);
    let (solution, _, tree) = run(search, replies, Budget::unlimited()).await;
    let seen = scorer.seen.lock().unwrap().clone();
    assert_eq!(seen[..2], [vec!["s5".to_string()], vec!["s2".to_string()]]);
    let details: SearchDetails = serde_json::from_value(solution.details.clone()).unwrap();
    assert_eq!(details.shared_scores, 2);
    let scores: Vec<(String, f64, String)> = tree.0[1..5]
        .iter()
        .map(|n| {
            (
                n["text"].as_str().unwrap().to_string(),
                n["score"].as_f64().unwrap(),
                n["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        scores,
        vec![
            ("s5".to_string(), 0.5, "expanded".to_string()),
            ("s2".to_string(), 0.2, "pruned".to_string()),
            ("s5".to_string(), 0.5, "pruned".to_string()),
            ("s2".to_string(), 0.2, "pruned".to_string()),
        ]
    );
    assert_eq!(solution.completion, "s5\n\ns4");
}

#[tokio::test]
async fn dvts_keeps_a_subtree_whose_steps_repeat_another_subtrees() {
    // Both subtrees sample the same two first steps (as at a low temperature). Each keeps its
    // own best: duplicates count only within a subtree.
    let replies = vec![
        "s9\n\n", "s8\n\n", "s9\n\n", "s8\n\n", "s1", "s2", "s3", "s4",
    ];
    let search = numbered(config(4, 2, 2), SearchKind::Dvts);
    let (_, _, tree) = run(search, replies, Budget::unlimited()).await;
    let active: Vec<(String, u64)> = tree
        .0
        .iter()
        .filter(|n| n["state"] == "expanded" && n["depth"] == 1)
        .map(|n| {
            (
                n["text"].as_str().unwrap().to_string(),
                n["subtree"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(active, vec![("s9".to_string(), 0), ("s9".to_string(), 1)]);
}

#[tokio::test]
async fn a_budget_stop_while_scoring_the_first_round_keeps_its_unscored_steps() {
    // Lookahead 1: the expansion (call 1) and one roll-out (call 2) fit; the second roll-out
    // is refused, so nothing is scored and no step is finished.
    let mut c = config(2, 2, 3);
    c.lookahead = 1;
    let replies = vec!["s1\n\n", "s2\n\n", "s6\n\n", "s3\n\n"];
    let search = numbered(c, SearchKind::Beam);
    let (solution, _backend, tree) =
        run(search, replies, Budget::unlimited().with_max_calls(2)).await;
    assert_eq!(solution.stop_reason, StopReason::CallBudget);
    assert_eq!(tree.state_of("s1"), "active", "kept, unscored");
    assert_eq!(solution.candidates.len(), 2, "{:?}", solution.candidates);
    assert!(
        ["s1", "s2"].contains(&solution.completion.as_str()),
        "{}",
        solution.completion
    );
}

#[tokio::test]
async fn a_budget_stop_while_scoring_keeps_finished_beams_and_sets_the_rest_aside() {
    // Lookahead 1. Round 1: s1, s2 (calls 1-3: expansion and two roll-outs); s1 survives.
    // Round 2: s4 and a finished answer (call 4); s4's roll-out is refused (4 calls).
    let mut c = config(2, 2, 3);
    c.lookahead = 1;
    let replies = vec![
        "s1\n\n",
        "s2\n\n",
        "s6\n\n",
        "s3\n\n",
        "s4\n\n",
        "Final Answer: 7",
    ];
    let search = numbered(c, SearchKind::Beam);
    let (solution, backend, tree) =
        run(search, replies, Budget::unlimited().with_max_calls(4)).await;
    assert_eq!(backend.requests().len(), 4);
    assert_eq!(solution.stop_reason, StopReason::CallBudget);
    assert_eq!(tree.state_of("s4"), "pruned", "never scored");
    assert_eq!(tree.state_of("Final Answer: 7"), "finished");
    assert_eq!(solution.answer.as_deref(), Some("7"));
    assert_eq!(solution.completion, "s1\n\nFinal Answer: 7");
}

#[tokio::test]
async fn a_last_round_whose_reads_the_budget_refused_in_part_is_a_budget_stop() {
    // Both candidates of the first round finish (call 1); a judgement of each follows, and the
    // budget has room for one. The one read keeps its score, nothing is left to search, and
    // the budget stopped the search (it read as completed: its reads' refusal was unseen).
    let judge = ponder_prm::LlmJudge::new(ponder_prm::JudgeConfig::default());
    let search = BeamSearch::new(config(2, 2, 3), SearchKind::Beam)
        .unwrap()
        .with_scorer(Arc::new(judge));
    let replies = vec!["Final Answer: 1", "Final Answer: 2", "Yes", "Yes"];
    let (solution, backend, _) = run(search, replies, Budget::unlimited().with_max_calls(2)).await;
    assert_eq!(backend.requests().len(), 2);
    assert_eq!(solution.stop_reason, StopReason::CallBudget);
    assert!(solution.answer.is_some());
}

#[tokio::test]
async fn a_step_cut_at_the_step_limit_is_continued_and_scored_as_one_step() {
    // Steps of at most 4 tokens (bytes): "s1 ab" is cut after "s1 a"; the next round goes on
    // from there with no delimiter, and the scorer sees "s1 abc" as one step.
    let scorer = Arc::new(NumberScorer::default());
    let mut c = config(1, 1, 3);
    c.max_step_tokens = NonZeroUsize::new(4).unwrap();
    let replies = vec!["s1 ab\n\n", "bc\n\n", "s2 Final Answer: 2"];
    let search = BeamSearch::new(c, SearchKind::Beam)
        .unwrap()
        .with_scorer(Arc::clone(&scorer) as Arc<dyn Scorer>);
    let (solution, backend, tree) = run(search, replies, Budget::unlimited()).await;
    let prefixes: Vec<String> = backend.requests().iter().map(assistant_prefix).collect();
    assert_eq!(prefixes, ["", "s1 a", "s1 abc\n\n"]);
    let seen = scorer.seen.lock().unwrap().clone();
    let steps = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        seen,
        [
            steps(&["s1 a"]),
            steps(&["s1 abc"]),
            steps(&["s1 abc", "s2 Final Answer: 2"])
        ]
    );
    assert!(tree.0[1]["continues"] == true && tree.0[2].get("continues").is_none());
    assert_eq!(solution.completion, "s1 abc\n\ns2 Final Answer: 2");
    assert_eq!(solution.answer.as_deref(), Some("2"));
}

#[tokio::test]
async fn an_empty_last_step_is_not_scored() {
    // The second round ends at once (end of sequence): the beam ends with its first step, and
    // the scorer is not asked about an empty one.
    let scorer = Arc::new(NumberScorer::default());
    let replies = vec!["s3 Then\n\n", ""];
    let search = BeamSearch::new(config(1, 1, 3), SearchKind::Beam)
        .unwrap()
        .with_scorer(Arc::clone(&scorer) as Arc<dyn Scorer>);
    let (solution, _, _) = run(search, replies, Budget::unlimited()).await;
    let seen = scorer.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [vec!["s3 Then".to_string()], vec!["s3 Then".to_string()]]
    );
    assert_eq!(solution.completion, "s3 Then");
    assert_eq!(solution.stop_reason, StopReason::Completed);
}

#[test]
fn a_step_ends_the_solution_when_an_answer_follows_the_cue() {
    assert!(answered("So 2 + 2 = 4. Final Answer: 4"));
    assert!(answered("Final Answer: $\\boxed{x}$"));
    // The cue alone (bold, or a step cut right after it) leaves the answer to the next step.
    assert!(!answered("**Final Answer:**"));
    assert!(!answered("Adding up. Final Answer: "));
    assert!(!answered("No cue here: 4"));
    // In any case, and with emphasis between the words and the colon.
    assert!(answered("**Final Answer**: 5"));
    assert!(answered("__Final Answer__: 5"));
    assert!(answered("**Final Answer:** 5"));
    assert!(answered("So the final answer: 5"));
    assert!(answered("So 2 + 3 = 5.\nfinal answer: 5"));
    assert!(answered("FINAL ANSWER: 5"));
    assert!(answered("## final answer: 5"));
    assert!(!answered("**Final Answer**:"));
    assert!(!answered("**final answer**: **"));
    // The last cue counts: an answer left to the next step after an earlier one.
    assert!(!answered("Final Answer: 4, or is it? **Final Answer**:"));
    // Words that are not the cue.
    assert!(!answered("The final answer is near: we add 2 and 2"));
}

#[tokio::test]
async fn a_beam_that_fills_the_context_window_ends_there_and_is_selected() {
    let mut c = config(2, 2, 5);
    c.max_step_tokens = NonZeroUsize::new(8).unwrap();
    let search = numbered(c, SearchKind::Beam);
    let problem = Problem::new("p", "Q?");
    // A window six tokens (bytes) past the question's prompt.
    let question = ScriptedBackend::new(Vec::<String>::new())
        .prompt_tokens(&search.prompt(&problem, "", false));
    let backend = Arc::new(
        ScriptedBackend::new(vec!["s5 abcdefg\n\n", "s1 abcdefg\n\n"]).with_context(question + 6),
    );
    let cx = Context::new(
        Arc::clone(&backend) as Arc<dyn Backend>,
        Budget::unlimited(),
    );
    let solution = ponder_engine::solve_in(&search, &problem, &cx)
        .await
        .unwrap();
    // The first round's steps are cut to the six tokens left; the survivor then has no room
    // to go on: it ends, the solution, instead of an error for the whole search.
    assert_eq!(backend.requests().len(), 1);
    assert_eq!(backend.requests()[0].max_tokens, 6);
    let details: SearchDetails = serde_json::from_value(solution.details.clone()).unwrap();
    assert_eq!(
        (details.finished, details.out_of_context),
        (0, 1),
        "{details:?}"
    );
    assert_eq!(solution.completion, "s5 abc");
    // It did not end by itself.
    assert_eq!(solution.stop_reason, StopReason::MaxTokens);
}

#[tokio::test]
async fn an_answer_cut_by_the_step_limit_is_continued_not_taken() {
    // The step is cut inside its answer ("Final Answer: 4" of "42"): the next round continues
    // it, and the answer is the whole one.
    let mut c = config(1, 1, 3);
    c.max_step_tokens = NonZeroUsize::new(15).unwrap();
    let (solution, backend, _) = run(
        numbered(c, SearchKind::Beam),
        vec!["Final Answer: 42\n\n", "2"],
        Budget::unlimited(),
    )
    .await;
    assert_eq!(backend.requests().len(), 2);
    assert_eq!(solution.answer.as_deref(), Some("42"));
    assert_eq!(solution.stop_reason, StopReason::Completed);

    // Cut right at the cue, the answer comes in the continuation: read with the cut step, it
    // ends the beam there.
    let mut c = config(1, 1, 3);
    c.max_step_tokens = NonZeroUsize::new(13).unwrap();
    let (solution, backend, _) = run(
        numbered(c, SearchKind::Beam),
        vec!["Final Answer: 42\n\n", " 42\n\n", "x"],
        Budget::unlimited(),
    )
    .await;
    assert_eq!(backend.requests().len(), 2);
    assert_eq!(solution.completion, "Final Answer: 42");
    assert_eq!(solution.answer.as_deref(), Some("42"));
}

#[tokio::test]
async fn a_last_write_cut_at_its_limit_is_not_a_completed_solution() {
    // Cut by max_final_tokens.
    let mut c = config(1, 1, 1);
    c.max_final_tokens = NonZeroUsize::new(5).unwrap();
    let (solution, _, tree) = run(
        numbered(c, SearchKind::Beam),
        vec!["s1 abcdefgh"],
        Budget::unlimited(),
    )
    .await;
    assert_eq!(solution.completion, "s1 ab");
    assert_eq!(solution.stop_reason, StopReason::MaxTokens);
    assert_eq!(tree.0.iter().filter(|n| n["cut_at_end"] == true).count(), 1);
    let dot = &solution.trace.as_ref().unwrap().dot;
    assert!(
        dot.lines()
            .any(|l| l.contains("s1 ab") && l.contains("peripheries=2 style=dashed")),
        "{dot}"
    );
    // Cut by what the budget left: the budget says so.
    let (solution, _, _) = run(
        numbered(config(1, 1, 1), SearchKind::Beam),
        vec!["s1 abcdefgh"],
        Budget::unlimited().with_max_completion_tokens(5),
    )
    .await;
    assert_eq!(solution.stop_reason, StopReason::CompletionBudget);
    // Written to its end: completed.
    let (solution, _, _) = run(
        numbered(config(1, 1, 1), SearchKind::Beam),
        vec!["s1 abcdefgh"],
        Budget::unlimited(),
    )
    .await;
    assert_eq!(solution.stop_reason, StopReason::Completed);
}

/// A scripted backend whose `empty`th call (from 0) comes back with no choices.
struct NoChoicesOnce {
    inner: ScriptedBackend,
    calls: Mutex<usize>,
    empty: usize,
}

#[async_trait]
impl Backend for NoChoicesOnce {
    async fn generate(
        &self,
        request: ponder_engine::GenerationRequest,
    ) -> Result<ponder_engine::Generation> {
        let call = {
            let mut calls = self.calls.lock().unwrap();
            *calls += 1;
            *calls - 1
        };
        if call == self.empty {
            return Ok(ponder_engine::Generation {
                choices: Vec::new(),
                usage: ponder_engine::Usage {
                    prompt_tokens: 1,
                    calls: 1,
                    ..Default::default()
                },
                cut_by: None,
            });
        }
        self.inner.generate(request).await
    }

    fn capabilities(&self) -> ponder_engine::Capabilities {
        self.inner.capabilities()
    }
}

#[tokio::test]
async fn a_beam_whose_expansion_came_back_empty_stays_a_partial_solution() {
    let backend = Arc::new(NoChoicesOnce {
        inner: ScriptedBackend::new(vec!["s3\n\n", "s7\n\n"]),
        calls: Mutex::new(0),
        empty: 1,
    });
    let cx = Context::new(backend as Arc<dyn Backend>, Budget::unlimited());
    let search = numbered(config(2, 2, 3), SearchKind::Beam);
    let solution = ponder_engine::solve_in(&search, &Problem::new("p", "Q?"), &cx)
        .await
        .unwrap();
    // Round 1's survivor (s7) got no next step: it is the best partial beam, not lost.
    assert_eq!(solution.completion, "s7");
    assert_eq!(solution.stop_reason, StopReason::MaxTokens);
}

#[tokio::test]
async fn a_beam_that_filled_the_window_is_not_framed_as_a_final_candidate() {
    let mut c = config(2, 1, 5);
    c.max_step_tokens = NonZeroUsize::new(8).unwrap();
    let search = numbered(c, SearchKind::Dvts);
    let problem = Problem::new("p", "Q?");
    let question = ScriptedBackend::new(Vec::<String>::new())
        .prompt_tokens(&search.prompt(&problem, "", false));
    let backend =
        Arc::new(ScriptedBackend::new(vec!["s1 ok", "s5 abcdefg\n\n"]).with_context(question + 6));
    let cx = Context::new(
        Arc::clone(&backend) as Arc<dyn Backend>,
        Budget::unlimited(),
    );
    let solution = ponder_engine::solve_in(&search, &problem, &cx)
        .await
        .unwrap();
    let details: SearchDetails = serde_json::from_value(solution.details.clone()).unwrap();
    assert_eq!(
        (details.finished, details.out_of_context),
        (1, 1),
        "{details:?}"
    );
    let dot = &solution.trace.as_ref().unwrap().dot;
    let filled = dot
        .lines()
        .find(|l| l.contains("s5 abc"))
        .unwrap_or_else(|| panic!("{dot}"));
    assert!(
        !filled.contains("peripheries=2") && filled.contains("filled the context window"),
        "{filled}"
    );
    assert!(
        dot.lines()
            .any(|l| l.contains("s1 ok") && l.contains("peripheries=2")),
        "{dot}"
    );
}

/// Scores as [`NumberScorer`], but its call number `fail` fails on its own (a reward model's
/// server refusing it).
struct FailsOnce {
    calls: Mutex<usize>,
    fail: usize,
}

#[async_trait]
impl Scorer for FailsOnce {
    async fn score(
        &self,
        cx: &Context,
        question: &str,
        candidates: &[Vec<String>],
    ) -> Result<Vec<Vec<f64>>> {
        let call = {
            let mut calls = self.calls.lock().unwrap();
            *calls += 1;
            *calls - 1
        };
        if call == self.fail {
            return Err(Error::Inference {
                message: "the reward model's server answered 503".into(),
            });
        }
        NumberScorer::default()
            .score(cx, question, candidates)
            .await
    }
}

#[tokio::test]
async fn a_call_that_fails_on_its_own_leaves_the_search_what_it_found() {
    use ponder_engine::scripted::Reply;
    // Round 1 finishes one beam (5); round 2's expansion of the other fails: the finished
    // beam is the answer, not an error.
    let backend = Arc::new(ScriptedBackend::from_replies([
        Reply::Text("s5 Final Answer: 5".into()),
        Reply::Text("s3\n\n".into()),
        Reply::Fail("boom".into()),
        Reply::Fail("boom".into()),
    ]));
    let cx = Context::new(
        Arc::clone(&backend) as Arc<dyn Backend>,
        Budget::unlimited(),
    );
    let search = numbered(config(2, 1, 3), SearchKind::Beam);
    let solution = ponder_engine::solve_in(&search, &Problem::new("p", "Q?"), &cx)
        .await
        .unwrap();
    assert_eq!(solution.answer.as_deref(), Some("5"));
    let details: SearchDetails = serde_json::from_value(solution.details.clone()).unwrap();
    assert_eq!(details.failed.len(), 1, "{details:?}");
    assert!(details.failed[0].contains("boom"), "{details:?}");

    // The first round failing whole is the error.
    let backend = Arc::new(ScriptedBackend::from_replies([
        Reply::Fail("first".into()),
        Reply::Fail("first".into()),
    ]));
    let cx = Context::new(backend as Arc<dyn Backend>, Budget::unlimited());
    let search = numbered(config(2, 2, 3), SearchKind::Beam);
    let err = ponder_engine::solve_in(&search, &Problem::new("p", "Q?"), &cx)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("first"), "{err}");

    // The scorer failing in round 2: its candidates go unscored and the search goes on.
    let backend = Arc::new(ScriptedBackend::new(vec![
        "s5 Final Answer: 5",
        "s3\n\n",
        "s4\n\n",
        "s6\n\n",
        "s7 Final Answer: 7",
        "s8 Final Answer: 8",
    ]));
    let cx = Context::new(
        Arc::clone(&backend) as Arc<dyn Backend>,
        Budget::unlimited(),
    );
    let search = BeamSearch::new(config(2, 1, 3), SearchKind::Beam)
        .unwrap()
        .with_scorer(Arc::new(FailsOnce {
            calls: Mutex::new(0),
            fail: 1,
        }));
    let solution = ponder_engine::solve_in(&search, &Problem::new("p", "Q?"), &cx)
        .await
        .unwrap();
    assert_eq!(
        backend.remaining(),
        0,
        "the search went on to its last round"
    );
    assert_eq!(solution.answer.as_deref(), Some("8"));
    let details: SearchDetails = serde_json::from_value(solution.details.clone()).unwrap();
    assert_eq!(details.rounds, 3);
    assert!(
        details.failed.len() == 1 && details.failed[0].starts_with("scoring: "),
        "{details:?}"
    );
}

#[tokio::test]
async fn failures_of_every_call_of_a_kind_are_the_problems_error() {
    use ponder_engine::scripted::Reply;
    let solve = |search: BeamSearch, replies: Vec<Reply>| async move {
        let backend = Arc::new(ScriptedBackend::from_replies(replies));
        let cx = Context::new(backend as Arc<dyn Backend>, Budget::unlimited());
        ponder_engine::solve_in(&search, &Problem::new("p", "Q?"), &cx).await
    };
    let refused = || Reply::Fail("continuations refused".into());
    // Round 2's every expansion fails and no path has finished: a server that refuses every
    // continuation, not bad luck.
    let err = solve(
        numbered(config(2, 1, 3), SearchKind::Beam),
        vec![
            Reply::Text("s3\n\n".into()),
            Reply::Text("s4\n\n".into()),
            refused(),
            refused(),
            refused(),
            refused(),
        ],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("continuations refused"), "{err}");

    // Every roll-out of a round fails.
    let mut c = config(2, 1, 3);
    c.lookahead = 1;
    let err = solve(
        numbered(c, SearchKind::Beam),
        vec![
            Reply::Text("s3\n\n".into()),
            Reply::Text("s4\n\n".into()),
            refused(),
            refused(),
        ],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("continuations refused"), "{err}");
    // But a path finished this round: the failed roll-out's candidate is scored without it.
    let mut c = config(2, 1, 2);
    c.lookahead = 1;
    let solution = solve(
        numbered(c, SearchKind::Beam),
        vec![
            Reply::Text("s5 Final Answer: 5".into()),
            Reply::Text("s3\n\n".into()),
            refused(),
            Reply::Text("s7 Final Answer: 7".into()),
            Reply::Text("s8 Final Answer: 8".into()),
        ],
    )
    .await
    .unwrap();
    let details: SearchDetails = serde_json::from_value(solution.details.clone()).unwrap();
    assert_eq!(details.rounds, 2, "{details:?}");
    assert!(
        details.failed.len() == 1 && details.failed[0].starts_with("a roll-out: "),
        "{details:?}"
    );

    // The scorer fails before any round was scored: it may never work.
    let search = BeamSearch::new(config(2, 1, 3), SearchKind::Beam)
        .unwrap()
        .with_scorer(Arc::new(FailsOnce {
            calls: Mutex::new(0),
            fail: 0,
        }));
    let err = solve(
        search,
        vec![Reply::Text("s3\n\n".into()), Reply::Text("s4\n\n".into())],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
}

#[tokio::test]
async fn a_last_write_the_budget_cut_does_not_answer_with_a_number_of_its_working() {
    // Round 1 finishes "1" (reward 0.1) and opens s2; the budget leaves the last write ten
    // tokens a choice, cutting it at "s9 so 7 bo": 7 is a guess, and 1 (stated) is chosen
    // though the cut path scores higher.
    let (solution, _, _) = run(
        numbered(config(2, 1, 2), SearchKind::Beam),
        vec![
            "s1 Final Answer: 1",
            "s2\n\n",
            "s9 so 7 bo and more",
            "s9 so 7 bo and more",
        ],
        Budget::unlimited().with_max_completion_tokens(18 + 4 + 2 * 10),
    )
    .await;
    // The two cut writes are one text: one candidate.
    let details: SearchDetails = serde_json::from_value(solution.details.clone()).unwrap();
    assert_eq!(details.candidates.len(), 2, "{details:?}");
    assert_eq!(solution.answer.as_deref(), Some("1"), "{details:?}");
}
