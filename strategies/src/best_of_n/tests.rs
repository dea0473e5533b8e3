//! Unit tests of best-of-N on a scripted backend and a fixed scorer: selection, adaptive
//! rounds, staging, budget stops and the config rules.

use ponder_engine::scripted::ScriptedBackend;
use ponder_engine::{Backend, Budget, Choice, FinishReason, Generation, GenerationRequest};

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
            ..BestOfNConfig::default()
        };
        // A scorer built in code, with none in the config.
        let strategy = BestOfN::scored_by(config, FixedScorer::new(&[0.9, 0.5, 0.6, 0.2])).unwrap();
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

/// Scores candidate i (of each call) with `steps[i]`, a score per step.
struct StepScorer(Vec<Vec<f64>>);

#[async_trait]
impl Scorer for StepScorer {
    async fn score(
        &self,
        _: &Context,
        _: &str,
        candidates: &[Vec<String>],
    ) -> Result<Vec<Vec<f64>>> {
        Ok(self.0.iter().take(candidates.len()).cloned().collect())
    }
}

#[tokio::test]
async fn each_aggregate_ranks_the_steps_its_own_way() {
    // Two steps each; each rule picks another candidate: the last step (0.99), the weakest
    // (0.7), the product (0.57 against 0.56 and 0.49), the mean (0.78 against 0.775).
    let steps = vec![
        vec![0.1, 0.99],
        vec![0.7, 0.7],
        vec![0.6, 0.95],
        vec![1.0, 0.56],
    ];
    for (aggregate, expect) in [
        (Aggregate::Last, "1"),
        (Aggregate::Min, "2"),
        (Aggregate::Prod, "3"),
        (Aggregate::Mean, "4"),
    ] {
        let backend = Arc::new(ScriptedBackend::new(answers(&["1", "2", "3", "4"])));
        let config = BestOfNConfig {
            n: NonZeroUsize::new(4).unwrap(),
            select: Select::Naive,
            aggregate,
            ..BestOfNConfig::default()
        };
        let strategy = BestOfN::scored_by(config, Arc::new(StepScorer(steps.clone()))).unwrap();
        let solution = run(&strategy, backend, Budget::unlimited()).await;
        assert_eq!(solution.answer.as_deref(), Some(expect), "{aggregate:?}");
    }
}

#[tokio::test]
async fn the_share_of_a_weighted_vote_counts_the_unscored_in_its_total_too() {
    // Round one: "4" twice, unscored (their reads failed), "5" and "6" at 0.6. Counted at the
    // mean, "4" weighs 1.2 of 2.4: half, short of the agreement asked for, so the second round
    // is drawn. (Its weight over the scored total alone read 1.2 of 1.2, and the draw stopped.)
    let backend = Arc::new(ScriptedBackend::new(answers(&[
        "4", "4", "5", "6", "4", "4", "4", "4",
    ])));
    let config = BestOfNConfig {
        n: NonZeroUsize::new(8).unwrap(),
        select: Select::Weighted,
        adaptive: Some(AdaptiveConfig {
            round: NonZeroUsize::new(4).unwrap(),
            agreement: Some(0.75),
        }),
        ..BestOfNConfig::default()
    };
    let rewards = [f64::NAN, f64::NAN, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6];
    let strategy = BestOfN::scored_by(config, FixedScorer::new(&rewards)).unwrap();
    let solution = run(&strategy, backend, Budget::unlimited()).await;
    assert_eq!(details(&solution).samples, 8);
    assert_eq!(solution.answer.as_deref(), Some("4"));
}

#[tokio::test]
async fn a_weighted_lead_held_by_unscored_candidates_is_not_beyond_overturning() {
    // Round one: "4" scored 1.0 and "4" unscored (counted at the mean, 1.0): 2.0 against
    // nothing, with one sample left. Each sample scored later moves the mean every unscored
    // candidate counts at, so the bound of one sample adding at most 1 does not hold: the
    // draw goes on.
    let backend = Arc::new(ScriptedBackend::new(answers(&["4", "4", "5"])));
    let config = BestOfNConfig {
        n: NonZeroUsize::new(3).unwrap(),
        select: Select::Weighted,
        adaptive: Some(AdaptiveConfig {
            round: NonZeroUsize::new(2).unwrap(),
            agreement: None,
        }),
        ..BestOfNConfig::default()
    };
    let strategy = BestOfN::scored_by(config, FixedScorer::new(&[1.0, f64::NAN, 0.5])).unwrap();
    let solution = run(&strategy, backend, Budget::unlimited()).await;
    assert_eq!(details(&solution).samples, 3);
    assert_eq!(solution.answer.as_deref(), Some("4"));
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
    // are cut, so the answer is a cut sample's and the solution says so: cut by the budget.
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
    assert_eq!(solution.stop_reason, StopReason::TokenBudget);
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

#[tokio::test]
async fn samples_the_budget_cut_end_the_draw_and_do_not_vote_with_their_working() {
    // Round 1 splits 42 to 17; the budget leaves round 2 twenty tokens a sample, which cut
    // both at a number of their working (25). They stop the draw, and the vote is 42 to 17.
    let working = "So 17 + 8 = 25, and 25 - 8 = 17, so it is 17.";
    let backend = Arc::new(ScriptedBackend::new([
        "The answer is 42.",
        "The answer is 17.",
        working,
        working,
        "The answer is 17.",
        "The answer is 17.",
    ]));
    let config = BestOfNConfig {
        adaptive: Some(AdaptiveConfig {
            round: NonZeroUsize::new(2).unwrap(),
            agreement: None,
        }),
        ..BestOfNConfig::self_consistency(NonZeroUsize::new(8).unwrap())
    };
    let strategy = BestOfN::new(config).unwrap();
    let budget = Budget::unlimited().with_max_completion_tokens(2 * 17 + 2 * 20);
    let events = ponder_engine::scripted::Recorder::new();
    let cx = Context::with_events(
        Arc::clone(&backend) as Arc<dyn Backend>,
        budget,
        events.events_of("p"),
    );
    let solution = ponder_engine::solve_in(&strategy, &Problem::new("p", "Q?"), &cx)
        .await
        .unwrap();
    // The round's report counts the vote as the selection does: 42 leads, not 25.
    let rounds: Vec<EventKind> = events
        .decisions("p")
        .into_iter()
        .filter(|e| matches!(e, EventKind::Round { .. }))
        .collect();
    assert!(
        matches!(rounds.last(), Some(EventKind::Round { leader: Some(l), .. }) if l == "42"),
        "{rounds:?}"
    );
    assert_eq!(solution.stop_reason, StopReason::CompletionBudget);
    assert_eq!(backend.requests().len(), 2, "no round after the cut one");
    let d = details(&solution);
    assert_eq!(d.samples, 4);
    assert_eq!(
        d.stops,
        [
            StopReason::Completed,
            StopReason::Completed,
            StopReason::CompletionBudget,
            StopReason::CompletionBudget
        ]
    );
    assert_eq!(solution.candidates[2].answer.as_deref(), Some("25"));
    assert_eq!(solution.answer.as_deref(), Some("42"));

    // Every sample cut: their guesses are all there is, and the vote is among them.
    let backend = Arc::new(ScriptedBackend::new([working, working, working]));
    let config = BestOfNConfig::self_consistency(NonZeroUsize::new(3).unwrap());
    let strategy = BestOfN::new(config).unwrap();
    let budget = Budget::unlimited().with_max_completion_tokens(3 * 20);
    let solution = run(&strategy, backend, budget).await;
    assert_eq!(solution.stop_reason, StopReason::CompletionBudget);
    assert_eq!(solution.answer.as_deref(), Some("25"));
}

#[tokio::test]
async fn an_answer_tried_in_thinking_a_template_opened_and_the_budget_cut_does_not_vote() {
    // Round 1 splits 42 to 17, each stated after its thinking; the budget cuts both samples of
    // round 2 at an answer tried while thinking. Where the template opened the thinking, those
    // are not stated, and 42 (first drawn) wins; where it did not, they are, and 17 wins 3 to 1.
    let tried = "So it is \\boxed{17}? No, 17 + 8 = 25, and 25 - 8";
    for (opening, answer) in [("<think>\n", "42"), ("", "17")] {
        let backend = Arc::new(
            ScriptedBackend::new([
                "42.</think>The answer is 42.",
                "17.</think>The answer is 17.",
                tried,
                tried,
            ])
            .with_opening(opening),
        );
        let config = BestOfNConfig {
            adaptive: Some(AdaptiveConfig {
                round: NonZeroUsize::new(2).unwrap(),
                agreement: None,
            }),
            ..BestOfNConfig::self_consistency(NonZeroUsize::new(8).unwrap())
        };
        let strategy = BestOfN::new(config).unwrap();
        let budget = Budget::unlimited().with_max_completion_tokens(2 * 28 + 2 * 20);
        let solution = run(&strategy, backend, budget).await;
        assert_eq!(solution.stop_reason, StopReason::CompletionBudget);
        assert_eq!(solution.candidates.len(), 4, "{opening:?}");
        assert_eq!(solution.candidates[2].text, "So it is \\boxed{17}?");
        assert_eq!(solution.answer.as_deref(), Some(answer), "{opening:?}");
    }
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

/// Leaves out the first candidate's scores: a scorer that breaks its contract.
struct ShortScorer;

#[async_trait]
impl Scorer for ShortScorer {
    async fn score(
        &self,
        _: &Context,
        _: &str,
        candidates: &[Vec<String>],
    ) -> Result<Vec<Vec<f64>>> {
        Ok(candidates.iter().skip(1).map(|_| vec![0.5]).collect())
    }
}

/// Scores its first call's candidates 0.5, then finds the budget spent.
struct SpentAfterOne(std::sync::atomic::AtomicBool);

#[async_trait]
impl Scorer for SpentAfterOne {
    async fn score(
        &self,
        _: &Context,
        _: &str,
        candidates: &[Vec<String>],
    ) -> Result<Vec<Vec<f64>>> {
        if self.0.swap(true, std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::BudgetExhausted {
                resource: ponder_engine::Resource::Tokens,
            });
        }
        Ok(candidates.iter().map(|_| vec![0.5]).collect())
    }
}

#[tokio::test]
async fn a_round_the_budget_ends_while_scoring_is_reported_too() {
    let backend = Arc::new(ScriptedBackend::new(answers(&["5", "6", "6", "6"])));
    let config = BestOfNConfig {
        n: NonZeroUsize::new(4).unwrap(),
        select: Select::Weighted,
        adaptive: Some(AdaptiveConfig {
            round: NonZeroUsize::new(2).unwrap(),
            agreement: None,
        }),
        ..BestOfNConfig::default()
    };
    let strategy = BestOfN::scored_by(
        config,
        Arc::new(SpentAfterOne(std::sync::atomic::AtomicBool::new(false))),
    )
    .unwrap();
    let events = ponder_engine::scripted::Recorder::new();
    let cx = Context::with_events(
        Arc::clone(&backend) as Arc<dyn Backend>,
        Budget::unlimited(),
        events.events_of("p"),
    );
    let solution = ponder_engine::solve_in(&strategy, &Problem::new("p", "Q?"), &cx)
        .await
        .unwrap();
    assert_eq!(solution.stop_reason, StopReason::TokenBudget);
    assert_eq!(details(&solution).samples, 4);
    // Both rounds are told, the second with the four samples the selection is among.
    let samples: Vec<usize> = events
        .decisions("p")
        .iter()
        .filter_map(|e| match e {
            EventKind::Round { samples, .. } => Some(*samples),
            _ => None,
        })
        .collect();
    assert_eq!(samples, [2, 4]);
}

#[tokio::test]
async fn judgements_the_budget_refuses_leave_those_made_and_stop_the_draw() {
    // Four samples in one call, then the judge's four calls, of which the budget has room for
    // two: those two keep their scores (they were paid for) and the weighted vote reads them;
    // the budget is the stop. (Before, the refusal failed the judge's whole call and every
    // score of the round was dropped: the vote went by counts.)
    let mut replies = answers(&["5", "6", "7", "8"]);
    replies.extend(["Yes".to_string(), "Yes".to_string()]);
    let backend = Arc::new(ScriptedBackend::new(replies));
    let config = BestOfNConfig {
        n: NonZeroUsize::new(4).unwrap(),
        select: Select::Weighted,
        ..BestOfNConfig::default()
    };
    let judge = ponder_prm::LlmJudge::new(ponder_prm::JudgeConfig::default());
    let strategy = BestOfN::scored_by(config, Arc::new(judge)).unwrap();
    let solution = run(&strategy, backend, Budget::unlimited().with_max_calls(3)).await;
    assert_eq!(solution.stop_reason, StopReason::CallBudget);
    let details = details(&solution);
    let scored: Vec<f64> = details.candidates.iter().filter_map(|c| c.score).collect();
    assert_eq!(scored, [1.0, 1.0], "{details:?}");
    assert!(
        !details.why.contains("no candidate was scored"),
        "{}",
        details.why
    );
    assert_eq!(solution.usage.calls, 3);
}

#[tokio::test]
async fn a_scorer_that_leaves_out_candidates_is_an_error_not_shifted_rewards() {
    let backend = Arc::new(ScriptedBackend::new(answers(&["3", "4", "4"])));
    let config = BestOfNConfig {
        n: NonZeroUsize::new(3).unwrap(),
        select: Select::Naive,
        ..BestOfNConfig::default()
    };
    let strategy = BestOfN::scored_by(config, Arc::new(ShortScorer)).unwrap();
    let err = ponder_engine::solve(
        &strategy,
        &Problem::new("p", "Q?"),
        backend as Arc<dyn Backend>,
        Budget::unlimited(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "scorer failed: returned scores for 2 candidates, but was given 3"
    );
}

#[test]
fn config_rules() {
    let config = BestOfNConfig::default();
    assert!(config
        .validate()
        .unwrap_err()
        .to_string()
        .contains("needs a scorer"));
    // The preset built from code: only a majority vote is self-consistency.
    assert!(BestOfN::self_consistency(BestOfNConfig::default())
        .unwrap_err()
        .to_string()
        .contains("majority"));
    assert_eq!(
        BestOfN::self_consistency(BestOfNConfig::self_consistency(NonZeroUsize::MIN))
            .unwrap()
            .name(),
        "self_consistency"
    );
    let config = BestOfNConfig {
        adaptive: Some(AdaptiveConfig {
            round: NonZeroUsize::MIN,
            agreement: Some(1.5),
        }),
        ..BestOfNConfig::self_consistency(NonZeroUsize::new(4).unwrap())
    };
    assert!(config
        .validate()
        .unwrap_err()
        .to_string()
        .contains("agreement"));
    // A first round of all n samples leaves nothing to stop early.
    let config = BestOfNConfig {
        adaptive: Some(AdaptiveConfig {
            round: NonZeroUsize::new(8).unwrap(),
            agreement: None,
        }),
        ..BestOfNConfig::self_consistency(NonZeroUsize::new(4).unwrap())
    };
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        "at `adaptive.round`: adaptive.round (8; 2 when not given) must be at most n (4): a \
         round of n samples leaves none to save"
    );
}

/// Answers each sampled request with its seed (mod 1000) as the answer.
struct EchoSeed;

#[async_trait]
impl Backend for EchoSeed {
    async fn generate(&self, request: GenerationRequest) -> Result<Generation> {
        let seed = request.sampling.seed.expect("a seeded request");
        Ok(Generation {
            choices: vec![Choice {
                text: format!("Final Answer: {}", seed % 1000),
                completion_tokens: 1,
                finish_reason: FinishReason::Stop,
                stop_sequence: None,
                logprobs: None,
            }],
            usage: ponder_engine::Usage {
                prompt_tokens: 1,
                completion_tokens: 1,
                calls: 1,
                ..Default::default()
            },
            cut_by: None,
        })
    }

    fn capabilities(&self) -> ponder_engine::Capabilities {
        ponder_engine::Capabilities {
            backend: "echo_seed",
            native_n: true,
            ..Default::default()
        }
    }
}

/// A sampled direct answer, sent after the next of `waits` (in milliseconds): samples reach
/// the model in the order the waits give them.
struct After {
    waits: std::sync::Mutex<std::collections::VecDeque<u64>>,
    direct: Direct,
}

#[async_trait]
impl Strategy for After {
    fn name(&self) -> &'static str {
        "after"
    }

    async fn solve(&self, problem: &Problem, cx: &Context) -> Result<Solution> {
        let wait = self.waits.lock().unwrap().pop_front().unwrap_or(0);
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        self.direct.solve(problem, cx).await
    }
}

#[tokio::test]
async fn seeded_samples_of_an_inner_strategy_draw_the_same_whichever_arrives_first() {
    // Three samples of one prompt at once, seeded: reaching the model first to last, then last
    // to first, each sample draws the same seeds (they were taken in order of arrival).
    let answers = |waits: [u64; 3]| async move {
        let inner = After {
            waits: std::sync::Mutex::new(waits.into_iter().collect()),
            direct: Direct::new(DirectConfig {
                temperature: 1.0,
                ..DirectConfig::default()
            })
            .unwrap(),
        };
        let strategy = BestOfN::new(BestOfNConfig {
            n: NonZeroUsize::new(3).unwrap(),
            select: Select::Majority,
            ..BestOfNConfig::default()
        })
        .unwrap()
        .with_inner(Box::new(inner));
        let cx = Context::new(Arc::new(EchoSeed), Budget::unlimited()).seeded(7);
        let solution = strategy
            .solve(&Problem::new("p", "What is 3 + 4?"), &cx)
            .await
            .unwrap();
        details(&solution)
            .candidates
            .into_iter()
            .map(|c| c.answer)
            .collect::<Vec<_>>()
    };
    let in_order = answers([0, 20, 40]).await;
    let reversed = answers([40, 20, 0]).await;
    assert_eq!(in_order.len(), 3);
    assert!(
        in_order[0] != in_order[1] && in_order[1] != in_order[2],
        "{in_order:?}"
    );
    assert_eq!(in_order, reversed);
}

#[tokio::test]
async fn a_sample_of_an_inner_strategy_that_fails_is_drawn_again_not_the_whole_draw() {
    use ponder_engine::scripted::Reply;
    let inner = || {
        Box::new(
            Direct::new(DirectConfig {
                temperature: 0.8,
                ..DirectConfig::default()
            })
            .unwrap(),
        )
    };
    // Three samples drawn one at a time.
    let strategy = BestOfN::new(BestOfNConfig {
        concurrency: NonZeroUsize::new(1),
        ..BestOfNConfig::self_consistency(NonZeroUsize::new(3).unwrap())
    })
    .unwrap()
    .with_inner(inner());
    let backend = Arc::new(ScriptedBackend::from_replies([
        Reply::Text("Final Answer: 4".into()),
        Reply::Fail("boom".into()),
        Reply::Text("Final Answer: 5".into()),
        Reply::Text("Final Answer: 4".into()),
    ]));
    let solution = run(&strategy, backend.clone(), Budget::unlimited()).await;
    assert_eq!(backend.remaining(), 0, "the failed sample is drawn again");
    assert_eq!(solution.answer.as_deref(), Some("4"));
    let drawn = details(&solution);
    assert_eq!(drawn.samples, 3);
    assert_eq!(drawn.failed.len(), 1);
    assert!(drawn.failed[0].contains("boom"), "{:?}", drawn.failed);

    // A redraw that fails too is drawn again; once as many failed as were asked for, the
    // vote is among those drawn.
    let backend = Arc::new(ScriptedBackend::from_replies([
        Reply::Text("Final Answer: 4".into()),
        Reply::Fail("one".into()),
        Reply::Text("Final Answer: 5".into()),
        Reply::Fail("two".into()),
        Reply::Fail("three".into()),
        Reply::Text("Final Answer: 6".into()),
    ]));
    let solution = run(&strategy, backend.clone(), Budget::unlimited()).await;
    assert_eq!(backend.remaining(), 1, "no sample after the third failure");
    let drawn = details(&solution);
    assert_eq!((drawn.samples, drawn.failed.len()), (2, 3));
    assert_eq!(solution.answer.as_deref(), Some("4"));

    // Every sample failing is the error.
    let backend = Arc::new(ScriptedBackend::from_replies([
        Reply::Fail("one".into()),
        Reply::Fail("two".into()),
        Reply::Fail("three".into()),
    ]));
    let strategy = BestOfN::new(BestOfNConfig::self_consistency(
        NonZeroUsize::new(3).unwrap(),
    ))
    .unwrap()
    .with_inner(inner());
    let cx = Context::new(backend as Arc<dyn Backend>, Budget::unlimited());
    let err = strategy
        .solve(&Problem::new("p", "What is 2 + 2?"), &cx)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("one"), "{err}");
}

/// Plays its solutions in order; states an answer only where the text ends with "." (its own
/// way of writing one, which the standard reading does not know).
struct OwnWay(std::sync::Mutex<std::collections::VecDeque<(&'static str, StopReason)>>);

#[async_trait]
impl Strategy for OwnWay {
    fn name(&self) -> &'static str {
        "own_way"
    }

    fn states_answer(&self, completion: &str, _: bool) -> bool {
        completion.ends_with('.')
    }

    async fn solve(&self, _: &Problem, _: &Context) -> Result<Solution> {
        let (text, stop) = self.0.lock().unwrap().pop_front().unwrap();
        let candidate = Candidate {
            answer: ponder_engine::answer::extract_answer(text),
            text: text.into(),
            score: None,
            tokens: 1,
        };
        Ok(Solution::single("own_way", candidate, stop))
    }
}

#[tokio::test]
async fn the_inner_strategy_says_whether_a_cut_sample_stated_its_answer() {
    // 42 and 17 stated; two samples the budget cut at "the answer is 17", which the standard
    // reading takes as stated (17 would win 3 to 1) but the inner strategy does not: they do
    // not vote, and 42, drawn first, wins the 1:1 split.
    let cut = "the answer is 17";
    let inner = OwnWay(std::sync::Mutex::new(
        [
            ("42.", StopReason::Completed),
            ("17.", StopReason::Completed),
            (cut, StopReason::CompletionBudget),
            (cut, StopReason::CompletionBudget),
        ]
        .into(),
    ));
    assert!(ponder_engine::answer::stated_answer(cut).is_some());
    let config = BestOfNConfig {
        concurrency: NonZeroUsize::new(1),
        ..BestOfNConfig::self_consistency(NonZeroUsize::new(4).unwrap())
    };
    let strategy = BestOfN::new(config).unwrap().with_inner(Box::new(inner));
    let backend = Arc::new(ScriptedBackend::new(Vec::<String>::new()));
    let solution = run(&strategy, backend, Budget::unlimited()).await;
    assert_eq!(solution.stop_reason, StopReason::CompletionBudget);
    assert_eq!(solution.candidates.len(), 4);
    assert_eq!(solution.answer.as_deref(), Some("42"));
    // Best-of-N asks its inner strategy in turn, for an outer one.
    assert!(!strategy.states_answer(cut, false));
    assert!(strategy.states_answer("17.", false));
}

#[tokio::test]
async fn a_failed_request_of_a_later_round_is_drawn_again_not_the_whole_draw() {
    use ponder_engine::scripted::Reply;
    let config = BestOfNConfig {
        adaptive: Some(AdaptiveConfig {
            round: NonZeroUsize::new(2).unwrap(),
            agreement: None,
        }),
        ..BestOfNConfig::self_consistency(NonZeroUsize::new(4).unwrap())
    };
    let strategy = BestOfN::new(config).unwrap();
    // Round 2's request of two fails: its two samples are drawn again.
    let backend = Arc::new(ScriptedBackend::from_replies([
        Reply::Text("Final Answer: 4".into()),
        Reply::Text("Final Answer: 5".into()),
        Reply::Fail("boom".into()),
        Reply::Fail("boom".into()),
        Reply::Text("Final Answer: 4".into()),
        Reply::Text("Final Answer: 4".into()),
    ]));
    let solution = run(&strategy, backend.clone(), Budget::unlimited()).await;
    assert_eq!(backend.remaining(), 0);
    assert_eq!(solution.answer.as_deref(), Some("4"));
    let drawn = details(&solution);
    assert_eq!((drawn.samples, drawn.failed.len()), (4, 2));
    assert!(drawn.failed[0].contains("boom"), "{:?}", drawn.failed);

    // Requests that fail until as many samples failed as were asked for: the vote is among
    // those drawn.
    let backend = Arc::new(ScriptedBackend::from_replies([
        Reply::Text("Final Answer: 4".into()),
        Reply::Text("Final Answer: 4".into()),
        Reply::Fail("one".into()),
        Reply::Fail("one".into()),
        Reply::Fail("two".into()),
        Reply::Fail("two".into()),
        Reply::Text("Final Answer: 6".into()),
    ]));
    let solution = run(&strategy, backend.clone(), Budget::unlimited()).await;
    assert_eq!(
        backend.remaining(),
        1,
        "no request after the fourth failed sample"
    );
    assert_eq!(solution.answer.as_deref(), Some("4"));
    let drawn = details(&solution);
    assert_eq!(
        (drawn.samples, drawn.failed.len(), drawn.samples_saved),
        (2, 4, 0)
    );

    // The first request failing with every sample in it is the error.
    let backend = Arc::new(ScriptedBackend::from_replies([
        Reply::Fail("all".into()),
        Reply::Fail("all".into()),
        Reply::Fail("all".into()),
        Reply::Fail("all".into()),
    ]));
    let strategy = BestOfN::new(BestOfNConfig::self_consistency(
        NonZeroUsize::new(4).unwrap(),
    ))
    .unwrap();
    let err = ponder_engine::solve(
        &strategy,
        &Problem::new("p", "Q?"),
        backend as Arc<dyn Backend>,
        Budget::unlimited(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("all"), "{err}");
}

/// A server that answers every request with no choices (`"choices": []`), counting them.
#[derive(Default)]
struct NoChoices(std::sync::atomic::AtomicUsize);

#[async_trait]
impl Backend for NoChoices {
    async fn generate(&self, _: GenerationRequest) -> Result<Generation> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Generation {
            choices: Vec::new(),
            usage: ponder_engine::Usage {
                prompt_tokens: 1,
                calls: 1,
                ..Default::default()
            },
            cut_by: None,
        })
    }

    fn capabilities(&self) -> ponder_engine::Capabilities {
        ponder_engine::Capabilities {
            backend: "no_choices",
            native_n: true,
            ..Default::default()
        }
    }
}

#[tokio::test]
async fn a_reply_without_its_choices_fails_them_and_is_not_asked_for_again_and_again() {
    let backend = Arc::new(NoChoices::default());
    let strategy = BestOfN::new(BestOfNConfig::self_consistency(
        NonZeroUsize::new(4).unwrap(),
    ))
    .unwrap();
    let err = ponder_engine::solve(
        &strategy,
        &Problem::new("p", "Q?"),
        Arc::clone(&backend) as Arc<dyn Backend>,
        Budget::unlimited(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("returned 0 of the 4 completions"),
        "{err}"
    );
    assert_eq!(backend.0.load(std::sync::atomic::Ordering::Relaxed), 1);
}

/// A reward model whose calls fail after the first `ok` rounds, as a server's 503 does.
struct FailingScorer(std::sync::Mutex<usize>);

#[async_trait]
impl Scorer for FailingScorer {
    async fn score(
        &self,
        _: &Context,
        _: &str,
        candidates: &[Vec<String>],
    ) -> Result<Vec<Vec<f64>>> {
        let mut ok = self.0.lock().unwrap();
        if *ok == 0 {
            return Err(Error::Inference {
                message: "the reward model's server answered 503".into(),
            });
        }
        *ok -= 1;
        Ok(candidates.iter().map(|_| vec![0.9]).collect())
    }
}

#[tokio::test]
async fn a_scorer_call_that_fails_after_a_round_was_scored_leaves_its_round_unscored() {
    // The first call failing: the scorer may never work, the problem's error.
    let backend = Arc::new(ScriptedBackend::new(answers(&["3", "4", "4"])));
    let config = BestOfNConfig {
        n: NonZeroUsize::new(3).unwrap(),
        select: Select::Weighted,
        ..BestOfNConfig::default()
    };
    let strategy = BestOfN::scored_by(config, Arc::new(FailingScorer(0.into()))).unwrap();
    let err = ponder_engine::solve(
        &strategy,
        &Problem::new("p", "Q?"),
        backend as Arc<dyn Backend>,
        Budget::unlimited(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");

    // Adaptive: the first round scored, the second not; the draw goes on.
    let backend = Arc::new(ScriptedBackend::new(answers(&["3", "4", "4", "4"])));
    let config = BestOfNConfig {
        n: NonZeroUsize::new(4).unwrap(),
        select: Select::Weighted,
        adaptive: Some(AdaptiveConfig {
            round: NonZeroUsize::new(2).unwrap(),
            agreement: None,
        }),
        ..BestOfNConfig::default()
    };
    let strategy = BestOfN::scored_by(config, Arc::new(FailingScorer(1.into()))).unwrap();
    let solution = run(&strategy, backend, Budget::unlimited()).await;
    let d = details(&solution);
    assert_eq!((d.samples, d.scoring_failed.len()), (4, 1));
    let scored: Vec<bool> = d.candidates.iter().map(|c| c.score.is_some()).collect();
    assert_eq!(scored, [true, true, false, false]);
}

#[tokio::test]
async fn a_weighted_agreement_counts_the_reward_of_samples_without_an_answer() {
    // Round 1: an answer of reward 0.3 and a sample without one of reward 0.95: the leader
    // holds 0.3 of 1.25, not all of it, and the draw goes on.
    let backend = Arc::new(ScriptedBackend::new([
        "Some working.\n\nFinal Answer: 5".to_string(),
        "Some working.\n\nI am not sure.".to_string(),
        "Some working.\n\nFinal Answer: 6".to_string(),
        "Some working.\n\nFinal Answer: 6".to_string(),
    ]));
    let config = BestOfNConfig {
        n: NonZeroUsize::new(4).unwrap(),
        select: Select::Weighted,
        adaptive: Some(AdaptiveConfig {
            round: NonZeroUsize::new(2).unwrap(),
            agreement: Some(0.9),
        }),
        ..BestOfNConfig::default()
    };
    let strategy = BestOfN::scored_by(config, FixedScorer::new(&[0.3, 0.95, 0.8, 0.8])).unwrap();
    let solution = run(&strategy, backend, Budget::unlimited()).await;
    let d = details(&solution);
    assert_eq!((d.samples, d.samples_saved), (4, 0));
    assert_eq!(solution.answer.as_deref(), Some("6"));
}

#[tokio::test]
async fn a_sample_of_an_inner_strategy_the_budget_cut_says_so_and_does_not_vote() {
    // The third sample's call is shortened to the 40 tokens the budget has left, cutting its
    // working at "so it i" (17): a guess, not a vote. 42, drawn first, wins the 1:1 split.
    let working = "So 17 + 8 = 25, and 25 - 8 = 17, so it is 17.";
    let strategy = BestOfN::new(BestOfNConfig {
        concurrency: NonZeroUsize::new(1),
        ..BestOfNConfig::self_consistency(NonZeroUsize::new(3).unwrap())
    })
    .unwrap()
    .with_inner(Box::new(
        Direct::new(DirectConfig {
            temperature: 0.8,
            ..DirectConfig::default()
        })
        .unwrap(),
    ));
    let backend = Arc::new(ScriptedBackend::new([
        "The answer is 42.",
        "The answer is 17.",
        working,
    ]));
    let budget = Budget::unlimited().with_max_completion_tokens(17 + 17 + 40);
    let solution = run(&strategy, backend, budget).await;
    let d = details(&solution);
    assert_eq!(d.stops[2], StopReason::CompletionBudget, "{:?}", d.stops);
    assert_eq!(solution.stop_reason, StopReason::CompletionBudget);
    assert_eq!(solution.answer.as_deref(), Some("42"));
}
