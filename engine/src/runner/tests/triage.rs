//! Triage runs: first stages, then later stages in order of need on what the budget has left.

use super::*;

#[tokio::test]
async fn triage_thinks_about_the_least_sure_first_and_the_rest_keep_their_first_answer() {
    // Tokens are bytes. First stages: 3 prompt + 5 completion = 8 each, 32 for four. One
    // second stage: 9 prompt ("think Q3?") + 10 = 19. A run of 51 pays for exactly one and
    // leaves nothing; one of 56 leaves 5, less than the next second stage's prompt.
    for budget in [51, 56] {
        triage_pays_for_one_second_stage(budget).await;
    }
}

async fn triage_pays_for_one_second_stage(budget: u64) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let backend = Arc::new(crate::scripted::ScriptedBackend::new([
        "x:0.9",
        "y:0.2",
        "z:0.1",
        "w:0.4",
        "0123456789",
    ]));
    let events = crate::scripted::Recorder::new();
    let (sink, missing) = line_before_end(&events, &out);
    let summary = Runner::new(
        Arc::new(TWO_STAGE),
        Arc::clone(&backend) as Arc<dyn Backend>,
    )
    .with_run_budget(Budget::unlimited().with_max_tokens(budget))
    .with_allocation(Allocation::Triage)
    .with_events(sink)
    .run(&numbered(4), &out, |_| {})
    .await
    .unwrap();
    assert_eq!(
        prompts(&backend),
        ["Q1?", "Q2?", "Q3?", "Q4?", "think Q3?"],
        "every first stage, then the least sure problem's second"
    );
    assert_eq!(
        (summary.solved, summary.second_stage, summary.first_only),
        (4, 1, 2),
        "run budget {budget}"
    );
    let lines = by_id(&out);
    assert_eq!(lines["p1"].answer.as_deref(), Some("x"));
    assert_eq!(lines["p1"].triage, None, "settled by its first stage");
    let thought = &lines["p3"];
    assert_eq!(thought.answer.as_deref(), Some("0123456789"));
    assert_eq!(thought.usage.total_tokens(), 8 + 19, "both stages");
    assert_eq!(thought.usage.calls, 2);
    assert!(thought
        .triage
        .as_ref()
        .is_some_and(|t| t.second_stage && t.confidence == 0.1));
    for (id, answer) in [("p2", "y"), ("p4", "w")] {
        let line = &lines[id];
        assert_eq!(line.answer.as_deref(), Some(answer));
        assert_eq!(line.stop_reason, Some(StopReason::TokenBudget));
        assert!(
            line.triage.as_ref().is_some_and(|t| !t.second_stage),
            "{id}"
        );
    }
    // Every line names the attempt that ran its last stage, as the spend ledger names its calls.
    assert!(lines.values().all(|l| l.attempt.is_some()), "{lines:?}");
    let total: u64 = lines.values().map(|l| l.usage.total_tokens()).sum();
    assert_eq!(total, 51);
    assert_eq!(summary.usage.total_tokens(), 51);

    // The events tell the same story: every problem ends as its line says, having spent in
    // calls what its line records; the unsure were deferred, p3 started again to think.
    for (id, line) in &lines {
        let kinds = events.kinds(id);
        assert_eq!(
            events.call_tokens(id),
            line.usage.total_tokens(),
            "{id}: {kinds:?}"
        );
        assert_eq!(kinds.first(), Some(&EventKind::Started), "{id}");
        assert!(
            matches!(kinds.last(), Some(EventKind::Finished { answer, stop_reason, .. })
                if *answer == line.answer && Some(*stop_reason) == line.stop_reason),
            "{id}: {kinds:?}"
        );
        let deferred = kinds
            .iter()
            .any(|k| matches!(k, EventKind::Deferred { .. }));
        assert_eq!(deferred, line.triage.is_some(), "{id}: {kinds:?}");
    }
    let p3 = events.kinds("p3");
    assert!(
        matches!(p3.as_slice(), [EventKind::Started, EventKind::Call { .. }, EventKind::Deferred { confidence, .. }, EventKind::Started, EventKind::Call { .. }, EventKind::Finished { .. }] if *confidence == 0.1),
        "{p3:?}"
    );
    assert!(missing.lock().unwrap().is_empty(), "{missing:?}");
}

#[tokio::test]
async fn a_resumed_triage_run_keeps_its_first_stages_and_redoes_only_a_cut_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let problems = numbered(4);
    let run = |replies: Vec<crate::scripted::Reply>| {
        let backend = Arc::new(crate::scripted::ScriptedBackend::from_replies(replies));
        let runner = Runner::new(
            Arc::new(TWO_STAGE),
            Arc::clone(&backend) as Arc<dyn Backend>,
        )
        .with_allocation(Allocation::Triage)
        .with_identity(serde_json::json!({ "strategy": "two_stage" }));
        (backend, runner)
    };
    use crate::scripted::Reply::Text;
    let text = |t: &str| Text(t.into());
    // Every second stage fails: three error lines, three first stages kept beside them.
    let (_, runner) = run(undecided_then_failing());
    let summary = runner.run(&problems, &out, |_| {}).await.unwrap();
    // Failed, not answers kept from their first stages.
    assert_eq!(
        (summary.solved, summary.errors, summary.first_only),
        (1, 3, 0)
    );
    let side = triage_path(&out);
    let kept = std::fs::read_to_string(&side).unwrap();
    assert_eq!(kept.lines().count(), 3);
    // A kill while p4's first stage was being written leaves half of its line.
    let (before, p4) = kept.trim_end().rsplit_once('\n').unwrap();
    assert!(p4.contains("\"p4\""));
    std::fs::write(&side, format!("{before}\n{}", &p4[..p4.len() / 2])).unwrap();

    // The resumed run redoes p4's first stage only, then every second stage in order.
    let (backend, runner) = run(vec![text("w:0.4"), text("Z"), text("Y"), text("W")]);
    let summary = runner.run(&problems, &out, |_| {}).await.unwrap();
    assert_eq!(
        prompts(&backend),
        ["Q4?", "think Q3?", "think Q2?", "think Q4?"]
    );
    assert_eq!(
        (summary.resumed, summary.solved, summary.second_stage),
        (1, 3, 3)
    );
    // Its lines carry the first stages of p2 and p3 the first run paid for; what this run
    // spent is its four calls.
    assert_eq!((summary.usage.calls, summary.spent.calls), (6, 4));
    let lines = by_id(&out);
    assert_eq!(lines["p2"].answer.as_deref(), Some("Y"));
    // Its first stage (from the first run) and its second: 8 + 10.
    assert_eq!(lines["p2"].usage.total_tokens(), 8 + 10);
    // Nothing left: a third run makes no call, whatever the side file still holds.
    let (backend, runner) = run(Vec::new());
    let summary = runner.run(&problems, &out, |_| {}).await.unwrap();
    assert_eq!((summary.resumed, summary.solved), (4, 0));
    assert!(backend.requests().is_empty());
    assert_eq!(summary.spent, Usage::default());

    // Results and their record deleted to start over: the stale first stages are refused.
    std::fs::remove_file(&out).unwrap();
    std::fs::remove_file(config_path(&out)).unwrap();
    let (_, runner) = run(Vec::new());
    let err = runner
        .run(&problems, &out, |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("r.jsonl.triage.jsonl") && err.contains("delete"),
        "{err}"
    );
}

#[tokio::test]
async fn a_resumed_triage_run_counts_what_its_files_record_against_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let problems = numbered(4);
    use crate::scripted::Reply::Text;
    let text = |t: &str| Text(t.into());
    let (_, runner) = triage_runner(None, undecided_then_failing());
    runner.run(&problems, &out, |_| {}).await.unwrap();
    // As if p2's second stage had finished in a run killed right after: its line counts
    // both stages (8 + 10), so its kept first stage must not count again.
    let p2 = ResultLine {
        id: "p2".into(),
        strategy: "two_stage".into(),
        answer: Some("Y".into()),
        reference: None,
        correct: None,
        usage: Usage {
            prompt_tokens: 12,
            completion_tokens: 6,
            calls: 2,
            ..Usage::default()
        },
        stop_reason: Some(StopReason::Completed),
        details: serde_json::Value::Null,
        completion: "Y".into(),
        error: None,
        allotted: None,
        triage: None,
        question_sha: None,
        cut_short: false,
        candidates: None,
        attempt: None,
        to_grade: None,
        grade_retried: false,
    };
    let mut text_out = std::fs::read_to_string(&out).unwrap();
    text_out.push_str(&serde_json::to_string(&p2).unwrap());
    text_out.push('\n');
    std::fs::write(&out, text_out).unwrap();
    // What the run below counts against its budget, as `ponder run`'s progress shows it.
    let recorded = recorded_spend(&out, &read_results(&out).unwrap(), Allocation::Triage).unwrap();
    assert_eq!(recorded.total_tokens(), 8 + 18 + 8 + 8);
    // Recorded: p1 8, p2 18, the first stages of p3 and p4 8 each; 19 more pay for exactly
    // p3's second stage. (Not counting the kept first stages would leave room for p4's
    // too; counting p2's twice would cut p3's.)
    let (backend, runner) = triage_runner(Some(8 + 18 + 8 + 8 + 19), vec![text("0123456789")]);
    let summary = runner.run(&problems, &out, |_| {}).await.unwrap();
    assert_eq!(prompts(&backend), ["think Q3?"]);
    assert_eq!((summary.second_stage, summary.first_only), (1, 1));
    let lines = by_id(&out);
    assert_eq!(lines["p3"].answer.as_deref(), Some("0123456789"));
    assert_eq!(lines["p3"].stop_reason, Some(StopReason::Completed));
    assert_eq!(lines["p4"].answer.as_deref(), Some("w"));
    assert_eq!(lines["p4"].stop_reason, Some(StopReason::TokenBudget));
}

#[tokio::test]
async fn a_triage_first_stage_the_run_budget_cuts_records_its_spend_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let problems = numbered(4);
    // First stages cost 3 prompt + 5 completion tokens. 22 pay for two and shorten the
    // third to 3 completion tokens ("z:0"): it is cut, the fourth never starts.
    let (backend, runner) = triage_runner(Some(22), texts(&["x:0.9", "y:0.2", "z:0.1"]));
    let summary = runner.run(&problems, &out, |_| {}).await.unwrap();
    assert_eq!(prompts(&backend), ["Q1?", "Q2?", "Q3?"]);
    assert_eq!(
        (summary.solved, summary.first_only, summary.cut_short),
        (2, 1, 1),
        "p2 keeps its first answer: the run cannot pay for its second stage"
    );
    let lines = read_results(&out).unwrap();
    let cut: Vec<(&str, bool, u64)> = lines
        .iter()
        .map(|l| (l.id.as_str(), l.cut_short, l.usage.total_tokens()))
        .collect();
    assert_eq!(cut, [("p1", false, 8), ("p3", true, 6), ("p2", false, 8)]);
    let recorded = recorded_spend(&out, &read_results(&out).unwrap(), Allocation::Triage).unwrap();
    assert_eq!(recorded.total_tokens(), 22);

    // The same budget again: all 22 are spent (8 + 8 + 6 cut), so no call is made.
    let (backend, runner) = triage_runner(Some(22), Vec::new());
    let summary = runner.run(&problems, &out, |_| {}).await.unwrap();
    assert!(backend.requests().is_empty());
    assert_eq!(
        (summary.resumed, summary.solved, summary.not_started),
        (2, 0, 2)
    );

    // Unlimited: p3 and p4 from their first stages, thinking where unsure.
    let (backend, runner) = triage_runner(None, texts(&["z:0.9", "w:0.9"]));
    let summary = runner.run(&problems, &out, |_| {}).await.unwrap();
    assert_eq!(prompts(&backend), ["Q3?", "Q4?"]);
    assert_eq!((summary.resumed, summary.solved), (2, 2));
    let lines = by_id(&out);
    assert_eq!(lines["p3"].answer.as_deref(), Some("z"));
    assert!(!lines["p3"].cut_short);
}

#[tokio::test]
async fn a_triage_first_stage_the_run_budget_refuses_is_neither_started_nor_recorded() {
    // First stages cost 3 prompt + 5 completion = 8. 19 pay for two and leave 3, less than
    // the next prompt and a token: the third and fourth are refused at their first call, and
    // so not started, as under the other allocations. (They were recorded as cut short with
    // nothing spent, and every rerun recorded them again.)
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let problems = numbered(4);
    let (backend, runner) = triage_runner(Some(19), texts(&["x:0.9", "y:0.9"]));
    let summary = runner.run(&problems, &out, |_| {}).await.unwrap();
    assert_eq!(prompts(&backend), ["Q1?", "Q2?"]);
    assert_eq!(
        (summary.solved, summary.cut_short, summary.not_started),
        (2, 0, 2)
    );
    assert_eq!(by_id(&out).keys().collect::<Vec<_>>(), ["p1", "p2"]);
    // The same command again, twice: nothing to call, nothing written.
    for _ in 0..2 {
        let (backend, runner) = triage_runner(Some(19), Vec::new());
        let summary = runner.run(&problems, &out, |_| {}).await.unwrap();
        assert!(backend.requests().is_empty());
        assert_eq!((summary.resumed, summary.not_started), (2, 2));
        assert_eq!(read_results(&out).unwrap().len(), 2);
    }
}

#[tokio::test]
async fn a_later_stage_its_problems_budget_refuses_leaves_the_first_stage_as_the_only_one() {
    // A problem budget of 12: the first stage spends 8, and the second ("think Q1?", 9 tokens)
    // cannot be sent. Nothing ran after the first stage, and the line says so.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let (backend, runner) = triage_runner(None, texts(&["y:0.2"]));
    let summary = runner
        .with_problem_budget(Budget::unlimited().with_max_tokens(12))
        .run(&numbered(1), &out, |_| {})
        .await
        .unwrap();
    assert_eq!(prompts(&backend), ["Q1?"]);
    assert_eq!((summary.second_stage, summary.first_only), (0, 1));
    let line = &by_id(&out)["p1"];
    assert_eq!(line.answer.as_deref(), Some("y"));
    assert_eq!(line.stop_reason, Some(StopReason::TokenBudget));
    let note = line.triage.as_ref().unwrap();
    assert_eq!((note.second_stage, note.stages), (false, 1), "{note:?}");
}

#[tokio::test]
async fn a_problem_that_never_made_a_call_is_not_answered_when_the_run_budget_runs_out() {
    // p1's first stage makes no call and asks for the next; the run's 8 tokens go to p2's
    // first stage, so p1 never gets one: not started (it was recorded as answered, with
    // nothing written).
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let problems = vec![Problem::new("p1", "skip this"), Problem::new("p2", "Q2?")];
    let (backend, runner) = triage_runner(Some(8), texts(&["x:0.9"]));
    let summary = runner.run(&problems, &out, |_| {}).await.unwrap();
    assert_eq!(prompts(&backend), ["Q2?"]);
    assert_eq!((summary.solved, summary.not_started), (1, 1));
    assert_eq!(by_id(&out).keys().collect::<Vec<_>>(), ["p2"]);
    // With budget to spare, a rerun goes on from p1's recorded first stage.
    let (backend, runner) = triage_runner(Some(30), texts(&["0123"]));
    let summary = runner.run(&problems, &out, |_| {}).await.unwrap();
    assert_eq!(prompts(&backend), ["think skip this"]);
    assert_eq!(summary.solved, 1);
    assert_eq!(by_id(&out)["p1"].answer.as_deref(), Some("0123"));
}

#[tokio::test]
async fn a_stage_deferred_behind_one_that_asks_again_goes_first_when_it_needs_more() {
    // Two at a time; tokens are bytes; thinking may write 30. First stages: 8 each (p3
    // settled), 30 left. p1 (0.1) and p2 (0.2) think at once: p1's "think Q1?" is shortened
    // to the 21 tokens after its prompt and so holds all 30, and p2, finding none, is
    // deferred. p1 writes "a:0.3" (14 spent, 16 left) and asks again, now less in need than
    // p2: p2 goes next and takes what is left ("b"), and p1 keeps "a". (p1 went again first,
    // took it and wrote "b", and p2 kept "q".)
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    // Thinking takes a moment, so p1 holds its reservation while p2 asks.
    let backend = Arc::new(SlowThinking(crate::scripted::ScriptedBackend::new([
        "p:0.1", "q:0.2", "r:0.9", "a:0.3", "b",
    ])));
    let summary = Runner::new(
        Arc::new(TwoStage {
            think_tokens: 30,
            again: true,
        }),
        Arc::clone(&backend) as Arc<dyn Backend>,
    )
    .with_allocation(Allocation::Triage)
    .with_concurrency(2)
    .with_run_budget(Budget::unlimited().with_max_tokens(24 + 30))
    .run(&numbered(3), &out, |_| {})
    .await
    .unwrap();
    let mut first = prompts(&backend.0);
    let later = first.split_off(3);
    first.sort();
    assert_eq!(first, ["Q1?", "Q2?", "Q3?"]);
    assert_eq!(later, ["think Q1?", "think Q2?"]);
    let lines = by_id(&out);
    assert_eq!(lines["p1"].answer.as_deref(), Some("a"));
    assert_eq!(lines["p2"].answer.as_deref(), Some("b"));
    assert_eq!(summary.usage.total_tokens(), 24 + 14 + 10);
}

#[tokio::test]
async fn a_stage_deferred_behind_one_that_failed_thinks_with_what_it_gave_back() {
    // As above, but p1's thinking fails (a server gone for a moment) after holding all 30:
    // p2, deferred behind it, thinks with them, rather than keep its first stage for want of a
    // budget nobody spent.
    use crate::scripted::Reply::{Fail, Text};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let backend = Arc::new(SlowThinking(
        crate::scripted::ScriptedBackend::from_replies([
            Text("p:0.1".into()),
            Text("q:0.2".into()),
            Text("r:0.9".into()),
            Fail("connection reset".into()),
            Text("b".into()),
        ]),
    ));
    let summary = Runner::new(
        Arc::new(TwoStage {
            think_tokens: 30,
            again: false,
        }),
        Arc::clone(&backend) as Arc<dyn Backend>,
    )
    .with_allocation(Allocation::Triage)
    .with_concurrency(2)
    .with_run_budget(Budget::unlimited().with_max_tokens(24 + 30))
    .run(&numbered(3), &out, |_| {})
    .await
    .unwrap();
    let later = prompts(&backend.0).split_off(3);
    assert_eq!(later, ["think Q1?", "think Q2?"]);
    let lines = by_id(&out);
    assert_eq!(lines["p2"].answer.as_deref(), Some("b"));
    assert_eq!(lines["p2"].stop_reason, Some(StopReason::Completed));
    let p1 = &lines["p1"];
    assert!(p1.error.is_some(), "{p1:?}");
    // Its second stage ran (and failed): not an answer kept from the first.
    assert!(p1.triage.as_ref().is_some_and(|t| t.second_stage), "{p1:?}");
    assert_eq!(
        (summary.errors, summary.second_stage, summary.first_only),
        (1, 1, 0),
        "{summary:?}"
    );
}

/// Second stages (prompts starting `think`) take a moment; first stages none.
struct SlowThinking(crate::scripted::ScriptedBackend);

#[async_trait::async_trait]
impl Backend for SlowThinking {
    async fn generate(
        &self,
        request: crate::backend::GenerationRequest,
    ) -> Result<crate::backend::Generation> {
        if crate::scripted::ScriptedBackend::render(&request.prompt).starts_with("think") {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.0.generate(request).await
    }

    fn capabilities(&self) -> crate::backend::Capabilities {
        self.0.capabilities()
    }

    async fn tokenize(&self, input: crate::backend::TokenizeInput<'_>) -> Result<Vec<u32>> {
        self.0.tokenize(input).await
    }

    async fn detokenize(&self, ids: &[u32]) -> Result<String> {
        self.0.detokenize(ids).await
    }
}

#[tokio::test]
async fn a_second_stage_that_does_not_fit_beside_reservations_waits_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let backend = Arc::new(SlowThinking(crate::scripted::ScriptedBackend::new([
        "x:0.9", "y:0.2", "z:0.1", "w:0.4", "A", "B", "C",
    ])));
    let events = crate::scripted::Recorder::new();
    let (sink, missing) = line_before_end(&events, &out);
    // First stages 32 tokens; then 47. A second stage reserves 9 + 30 and spends 9 + 1:
    // while p3's is in flight only 8 are free, less than p2's prompt, but once it is done
    // there is room for p2's and then p4's.
    let summary = Runner::new(
        Arc::new(TwoStage {
            think_tokens: 30,
            again: false,
        }),
        Arc::clone(&backend) as Arc<dyn Backend>,
    )
    .with_concurrency(2)
    .with_run_budget(Budget::unlimited().with_max_tokens(32 + 47))
    .with_allocation(Allocation::Triage)
    .with_events(sink)
    .run(&numbered(4), &out, |_| {})
    .await
    .unwrap();
    assert_eq!(
        prompts(&backend.0),
        [
            "Q1?",
            "Q2?",
            "Q3?",
            "Q4?",
            "think Q3?",
            "think Q2?",
            "think Q4?"
        ]
    );
    assert_eq!((summary.second_stage, summary.first_only), (3, 0));
    let lines = by_id(&out);
    for (id, answer) in [("p3", "A"), ("p2", "B"), ("p4", "C")] {
        assert_eq!(lines[id].answer.as_deref(), Some(answer), "{id}");
        assert!(lines[id].triage.as_ref().is_some_and(|t| t.second_stage));
    }
    assert_eq!(summary.usage.total_tokens(), 32 + 30);
    // p2's events say its call, which did not fit beside p3's reservation, waited in the
    // meter for p3's thought to settle, then thought in what was left (shortened: said so).
    let names: Vec<String> = events
        .kinds("p2")
        .iter()
        .map(|k| {
            serde_json::to_value(k).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        ["started", "call", "deferred", "started", "limited", "call", "finished"]
    );
    assert!(missing.lock().unwrap().is_empty(), "{missing:?}");
}

/// A strategy in as many stages as it takes: each stage one call answering
/// `answer:confidence`, asking for another below 0.9 (prompts `Q?`, then `more Q?`).
struct Steps;

#[async_trait::async_trait]
impl Strategy for Steps {
    fn name(&self) -> &'static str {
        "steps"
    }

    async fn solve(&self, problem: &Problem, cx: &Context) -> Result<Solution> {
        crate::solve_in_stages(self, problem, cx).await
    }

    fn staged(&self) -> Option<&dyn crate::Staged> {
        Some(self)
    }
}

impl Steps {
    /// A stage after `so_far` (none: the first).
    async fn stage(
        &self,
        prompt: String,
        so_far: Option<Solution>,
        cx: &Context,
    ) -> Result<crate::Stage> {
        let calls = so_far.as_ref().map_or(0, |s| {
            s.details["calls"].as_u64().expect("the last stage's")
        });
        // Sampled: a seeded run seeds it.
        let request =
            text_request(prompt).with_sampling(crate::backend::Sampling::with_temperature(1.0));
        let text = match cx.backend().generate(request).await {
            Ok(generation) => generation.into_first_choice()?.text,
            Err(Error::BudgetExhausted { resource }) => {
                let solution = match so_far {
                    Some(so_far) => Solution {
                        stop_reason: resource.into(),
                        ..so_far
                    },
                    None => Solution::exhausted("steps", resource),
                };
                return Ok(crate::Stage {
                    solution,
                    pending: None,
                });
            }
            Err(e) => return Err(e),
        };
        let (answer, confidence) = text.split_once(':').expect("answer:confidence");
        let confidence: f64 = confidence.parse().expect("a confidence");
        let mut solution =
            Solution::single("steps", candidate(answer, &text), StopReason::Completed);
        solution.details = serde_json::json!({ "calls": calls + 1 });
        Ok(crate::Stage {
            solution,
            pending: (confidence < 0.9).then(|| crate::Pending {
                confidence,
                why: format!("confidence {confidence}"),
            }),
        })
    }
}

#[async_trait::async_trait]
impl crate::Staged for Steps {
    async fn first(&self, problem: &Problem, cx: &Context) -> Result<crate::Stage> {
        self.stage(problem.question.clone(), None, cx).await
    }

    async fn next(
        &self,
        problem: &Problem,
        so_far: Solution,
        cx: &Context,
    ) -> Result<crate::Stage> {
        self.stage(format!("more {}", problem.question), Some(so_far), cx)
            .await
    }
}

/// Answers `Q?` with `s:0.5`, the first `more Q?` with `s:0.5` and the next with `s:0.95`
/// (s: the request's seed), and keeps each prompt with its seed.
#[derive(Default)]
struct EchoSeeds {
    seen: std::sync::Mutex<Vec<(String, Option<u64>)>>,
}

#[async_trait::async_trait]
impl Backend for EchoSeeds {
    async fn generate(
        &self,
        request: crate::backend::GenerationRequest,
    ) -> Result<crate::backend::Generation> {
        let prompt = crate::scripted::ScriptedBackend::render(&request.prompt);
        let seed = request.sampling.seed;
        let mut seen = self.seen.lock().unwrap();
        let before = seen.iter().filter(|(p, _)| *p == prompt).count();
        seen.push((prompt.clone(), seed));
        let confidence = if prompt.starts_with("more") && before == 1 {
            0.95
        } else {
            0.5
        };
        Ok(crate::backend::Generation {
            choices: vec![crate::backend::Choice {
                text: format!("{}:{confidence}", seed.unwrap_or(0) % 1000),
                completion_tokens: 1,
                finish_reason: crate::backend::FinishReason::Stop,
                stop_sequence: None,
                logprobs: None,
            }],
            usage: Usage {
                prompt_tokens: 1,
                completion_tokens: 1,
                calls: 1,
                ..Usage::default()
            },
            cut_by: None,
        })
    }

    fn capabilities(&self) -> crate::backend::Capabilities {
        crate::backend::Capabilities {
            backend: "echo_seeds",
            native_n: true,
            // As the in-process backend: meters send prompts on as token ids.
            tokenizer: true,
            ..Default::default()
        }
    }

    async fn tokenize(&self, input: crate::backend::TokenizeInput<'_>) -> Result<Vec<u32>> {
        let text = match input {
            crate::backend::TokenizeInput::Prompt(prompt) => {
                crate::scripted::ScriptedBackend::render(prompt)
            }
            crate::backend::TokenizeInput::Piece(text) => text.to_string(),
        };
        Ok(text.bytes().map(u32::from).collect())
    }
}

#[tokio::test]
async fn a_seeded_triage_run_draws_each_stage_as_a_plain_run_does() {
    // Three stages a problem (`Q?`, then `more Q?` twice), seeded: run stage by stage under
    // triage, or each problem whole, the same prompts draw the same seeds.
    let seeds = |allocation: Allocation| async move {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(EchoSeeds::default());
        let summary = Runner::new(Arc::new(Steps), Arc::clone(&backend) as Arc<dyn Backend>)
            .with_allocation(allocation)
            .with_seed(3)
            .run(&numbered(2), &dir.path().join("r.jsonl"), |_| {})
            .await
            .unwrap();
        assert_eq!(summary.solved, 2);
        let mut seen = backend.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 6, "{seen:?}");
        assert!(seen.iter().all(|(_, seed)| seed.is_some()), "{seen:?}");
        seen.sort();
        seen
    };
    let plain = seeds(Allocation::FirstCome).await;
    let triage = seeds(Allocation::Triage).await;
    assert_eq!(plain, triage);
    // And as a solve of one problem seeded as the run seeds it (`ponder solve`, a library
    // caller's `Context::seeded`).
    let backend = Arc::new(EchoSeeds::default());
    let problem = Problem::new("p1", "Q1?");
    let cx = Context::new(
        Arc::clone(&backend) as Arc<dyn Backend>,
        Budget::unlimited(),
    )
    .seeded(crate::seed_for(3, "p1"));
    crate::strategy::solve_in(&Steps, &problem, &cx)
        .await
        .unwrap();
    let mut alone = backend.seen.lock().unwrap().clone();
    alone.sort();
    let p1: Vec<_> = plain
        .iter()
        .filter(|(p, _)| p.contains("Q1"))
        .cloned()
        .collect();
    assert_eq!(alone, p1);
    // The two stages of one prompt (`more Q1?`) draw apart.
    assert_eq!(plain[2].0, plain[3].0);
    assert_ne!(plain[2].1, plain[3].1, "{plain:?}");
}

fn steps_runner(
    replies: &[&str],
    budget: Option<u64>,
) -> (Arc<crate::scripted::ScriptedBackend>, Runner) {
    let backend = Arc::new(crate::scripted::ScriptedBackend::new(
        replies.iter().copied(),
    ));
    let mut runner = Runner::new(Arc::new(Steps), Arc::clone(&backend) as Arc<dyn Backend>)
        .with_allocation(Allocation::Triage);
    if let Some(tokens) = budget {
        runner = runner.with_run_budget(Budget::unlimited().with_max_tokens(tokens));
    }
    (backend, runner)
}

#[tokio::test]
async fn triage_goes_on_a_stage_at_a_time_by_need_fewest_stages_first_among_equals() {
    // p1 and p2 are as unsure after their first stage; p3 is settled. p1 goes first (file
    // order) and stays at 0.5: p2, as unsure with fewer stages, goes next; it rises to 0.75,
    // so p1 is the least sure again.
    let replies = [
        "a:0.5", "b:0.5", "c:0.95", "a:0.5", "b:0.75", "a:0.95", "b:0.95",
    ];
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let (backend, runner) = steps_runner(&replies, None);
    let summary = runner.run(&numbered(3), &out, |_| {}).await.unwrap();
    assert_eq!(
        prompts(&backend),
        ["Q1?", "Q2?", "Q3?", "more Q1?", "more Q2?", "more Q1?", "more Q2?"]
    );
    assert_eq!(
        (summary.solved, summary.second_stage, summary.later_stages),
        (3, 2, 4)
    );
    let lines = by_id(&out);
    for id in ["p1", "p2"] {
        let line = &lines[id];
        assert_eq!(line.usage.calls, 3, "{id}: every stage counted once");
        assert_eq!(
            line.details["calls"], 3,
            "{id}: each stage went on from the last"
        );
        let note = line.triage.as_ref().unwrap();
        assert_eq!(
            (note.stages, note.second_stage, note.confidence),
            (3, true, 0.5),
            "{id}: the note keeps the first stage's confidence"
        );
    }
    // Stages 8 + 13 + 14 bytes (prompt and reply).
    assert_eq!(lines["p1"].usage.total_tokens(), 8 + 13 + 14);
    assert_eq!(lines["p3"].triage, None);
    // The side file holds each stage that asked for more: two first stages, two later.
    let side = std::fs::read_to_string(triage_path(&out)).unwrap();
    assert_eq!(side.lines().count(), 4);

    // A budget for the first stages (8 + 8 + 9) and two later ones (13 + 14), with 4 left
    // (less than a prompt): p1 and p2 get one more stage each, not p1 two, and keep its
    // answer, stopped by the budget.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let (backend, runner) = steps_runner(&replies, Some(25 + 13 + 14 + 4));
    let summary = runner.run(&numbered(3), &out, |_| {}).await.unwrap();
    assert_eq!(
        prompts(&backend),
        ["Q1?", "Q2?", "Q3?", "more Q1?", "more Q2?"]
    );
    assert_eq!(
        (
            summary.second_stage,
            summary.later_stages,
            summary.first_only
        ),
        (2, 2, 0)
    );
    let lines = by_id(&out);
    for (id, answer) in [("p1", "a"), ("p2", "b")] {
        let line = &lines[id];
        assert_eq!(line.answer.as_deref(), Some(answer));
        assert_eq!(line.stop_reason, Some(StopReason::TokenBudget), "{id}");
        assert_eq!(line.usage.calls, 2, "{id}");
        assert_eq!(line.triage.as_ref().map(|t| t.stages), Some(2), "{id}");
    }
    assert_eq!(summary.usage.total_tokens(), 25 + 13 + 14);
}

#[tokio::test]
async fn a_resumed_triage_run_goes_on_from_each_problems_last_recorded_stage() {
    use crate::scripted::Reply::{Fail, Text};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let problems = numbered(2);
    // p1's second stage is recorded (asking for more); then every call fails.
    let backend = Arc::new(crate::scripted::ScriptedBackend::from_replies(
        ["a:0.5", "b:0.6", "a:0.5"]
            .into_iter()
            .map(|t| Text(t.into()))
            .chain((0..2).map(|_| Fail("down".into())))
            .collect::<Vec<_>>(),
    ));
    let summary = Runner::new(Arc::new(Steps), Arc::clone(&backend) as Arc<dyn Backend>)
        .with_allocation(Allocation::Triage)
        .run(&problems, &out, |_| {})
        .await
        .unwrap();
    assert_eq!(
        prompts(&backend),
        ["Q1?", "Q2?", "more Q1?", "more Q1?", "more Q2?"]
    );
    assert_eq!(summary.errors, 2);
    assert_eq!(
        std::fs::read_to_string(triage_path(&out))
            .unwrap()
            .lines()
            .count(),
        3
    );

    // Resumed: p1 from its second stage (the least sure, first), p2 from its first; no
    // stage done twice.
    let (backend, runner) = steps_runner(&["a:0.95", "b:0.95"], None);
    let summary = runner.run(&problems, &out, |_| {}).await.unwrap();
    assert_eq!(prompts(&backend), ["more Q1?", "more Q2?"]);
    assert_eq!((summary.solved, summary.later_stages), (2, 3));
    let lines = by_id(&out);
    assert_eq!(lines["p1"].answer.as_deref(), Some("a"));
    assert_eq!(lines["p1"].usage.calls, 3);
    assert_eq!(lines["p1"].details["calls"], 3);
    assert_eq!(lines["p1"].usage.total_tokens(), 8 + 13 + 14);
    assert_eq!(lines["p2"].usage.calls, 2);
    assert_eq!(lines["p2"].triage.as_ref().map(|t| t.stages), Some(2));
}

#[tokio::test]
async fn triage_needs_a_staged_strategy() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(crate::scripted::ScriptedBackend::new(["1"]));
    let err = Runner::new(Arc::new(OneCall), backend as Arc<dyn Backend>)
        .with_allocation(Allocation::Triage)
        .run(&numbered(1), &dir.path().join("r.jsonl"), |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("one_call") && err.contains("first stage"),
        "{err}"
    );
}

#[tokio::test]
async fn a_triage_run_whose_engine_went_away_starts_no_more_stages_and_resumes_after() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    // Four first stages, then the engine is gone at the first second stage (p3's, the least
    // sure).
    let dying = Arc::new(DiesAfter {
        inner: crate::scripted::ScriptedBackend::new(["x:0.9", "y:0.2", "z:0.1", "w:0.4"]),
        alive: 4,
        calls: std::sync::atomic::AtomicUsize::new(0),
    });
    let summary = Runner::new(Arc::new(TWO_STAGE), Arc::clone(&dying) as Arc<dyn Backend>)
        .with_allocation(Allocation::Triage)
        .run(&numbered(4), &out, |_| {})
        .await
        .unwrap();
    assert_eq!((summary.solved, summary.errors), (1, 1), "{summary:?}");
    assert_eq!(summary.halted.as_ref().map(|h| h.not_started), Some(2));
    assert_eq!(dying.calls.load(Ordering::SeqCst), 5);
    let lines = by_id(&out);
    assert_eq!(lines.keys().collect::<Vec<_>>(), ["p1", "p3"]);
    assert!(lines["p3"].error.is_some());

    // Again, the engine back: the three go on from their recorded first stages.
    let again = vec![crate::scripted::Reply::Text("0123456789".into()); 3];
    let (backend, runner) = triage_runner(None, again);
    let summary = runner.run(&numbered(4), &out, |_| {}).await.unwrap();
    assert_eq!((summary.resumed, summary.solved, summary.errors), (1, 3, 0));
    assert_eq!(summary.halted, None);
    assert_eq!(prompts(&backend), ["think Q3?", "think Q2?", "think Q4?"]);
    let lines = by_id(&out);
    assert!(["p2", "p3", "p4"]
        .iter()
        .all(|id| lines[*id].answer.as_deref() == Some("0123456789")));
}

#[tokio::test]
async fn a_solution_graded_again_under_triage_costs_its_stages_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let grader = Arc::new(FlakyGrader {
        working: AtomicBool::new(false),
    });
    let run = |replies: Vec<&'static str>| {
        Runner::new(
            Arc::new(TWO_STAGE),
            Arc::new(crate::scripted::ScriptedBackend::new(replies)) as Arc<dyn Backend>,
        )
        .with_run_budget(Budget::unlimited().with_max_tokens(1000))
        .with_allocation(Allocation::Triage)
        .with_grader(Arc::clone(&grader) as Arc<dyn Grader>)
    };
    // p1 is settled by its first stage, p2 thinks again; neither can be graded.
    let summary = run(vec!["x:0.9", "y:0.2", "0123456789"])
        .run(&numbered(2), &out, |_| {})
        .await
        .unwrap();
    assert_eq!(summary.errors, 2);
    let spent = recorded_spend(&out, &read_results(&out).unwrap(), Allocation::Triage).unwrap();
    assert_eq!(
        spent.total_tokens(),
        8 + 8 + 19,
        "both first stages and p2's second"
    );

    // Graded again, not solved again (the model has nothing more to say): the run has spent
    // what it had, and p2's line costs both its stages.
    grader.working.store(true, Ordering::Relaxed);
    let summary = run(vec![]).run(&numbered(2), &out, |_| {}).await.unwrap();
    assert_eq!(
        (
            summary.solved,
            summary.regraded,
            summary.correct,
            summary.errors
        ),
        (0, 2, 2, 0)
    );
    let lines = read_results(&out).unwrap();
    let again = recorded_spend(&out, &lines, Allocation::Triage).unwrap();
    assert_eq!(again, spent);
    let by_id = by_id(&out);
    assert_eq!(by_id["p1"].usage.total_tokens(), 8);
    assert_eq!(by_id["p2"].usage.total_tokens(), 8 + 19);
    assert!(by_id
        .values()
        .all(|l| l.grade_retried && l.correct == Some(true)));
}
