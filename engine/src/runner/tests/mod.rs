//! Tests of [`Runner`](super::Runner): the strategies, backends and graders they run with,
//! and runs sharing a budget; triage runs and resuming from a run's files in their own modules.

use super::*;

mod resume;
mod triage;

fn line(id: &str) -> String {
    let l = ResultLine {
        id: id.into(),
        strategy: "direct".into(),
        answer: Some("4".into()),
        reference: Some("4".into()),
        correct: Some(true),
        usage: Usage::default(),
        stop_reason: Some(StopReason::Completed),
        details: serde_json::Value::Null,
        completion: "4".into(),
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
    serde_json::to_string(&l).unwrap()
}

/// One call of up to 10 tokens; the completion is the answer.
struct OneCall;

#[async_trait::async_trait]
impl Strategy for OneCall {
    fn name(&self) -> &'static str {
        "one_call"
    }

    async fn solve(&self, problem: &Problem, cx: &Context) -> Result<Solution> {
        let request = crate::backend::GenerationRequest::new(crate::backend::Prompt::Text(
            problem.question.clone(),
        ))
        .with_max_tokens(10);
        match cx.backend().generate(request).await {
            Ok(generation) => {
                let choice = generation.into_first_choice()?;
                let candidate = crate::solution::Candidate {
                    answer: Some(choice.text.clone()),
                    tokens: choice.text.len() as u64,
                    text: choice.text,
                    score: None,
                };
                Ok(Solution::single(
                    "one_call",
                    candidate,
                    StopReason::Completed,
                ))
            }
            Err(Error::BudgetExhausted { resource }) => {
                Ok(Solution::exhausted("one_call", resource))
            }
            Err(e) => Err(e),
        }
    }
}

/// Events for `recorder` that also check, at each problem's `finished` or `failed` event,
/// that its line is already in `out`: a watcher reading the file on that event finds it.
/// The ids found missing are pushed to the returned list.
fn line_before_end(
    recorder: &Arc<crate::scripted::Recorder>,
    out: &Path,
) -> (Arc<dyn EventSink>, Arc<std::sync::Mutex<Vec<String>>>) {
    let missing = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (recorder, out, found_missing) = (
        Arc::clone(recorder),
        out.to_path_buf(),
        Arc::clone(&missing),
    );
    let sink = move |event: &crate::Event| {
        if matches!(
            event.kind,
            EventKind::Finished { .. } | EventKind::Failed { .. }
        ) {
            let written =
                read_results(&out).is_ok_and(|lines| lines.iter().any(|l| l.id == event.problem));
            if !written {
                found_missing.lock().unwrap().push(event.problem.clone());
            }
        }
        recorder.emit(event);
    };
    (Arc::new(sink), missing)
}

#[tokio::test]
async fn problems_the_run_budget_cut_short_record_only_their_spend_and_resume_solves_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let problems: Vec<Problem> = ["p1", "p2", "p3"]
        .into_iter()
        .map(|id| Problem::new(id, "Q?"))
        .collect();
    // Scripted tokens are bytes: a call is 2 prompt + 10 completion tokens. 19 tokens let
    // p1 finish, shorten p2's call to 5 completion tokens (cut short) and leave none for p3.
    let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["0123456789"; 3]));
    let events = crate::scripted::Recorder::new();
    let (sink, missing) = line_before_end(&events, &out);
    let mut seen_by_callback = Vec::new();
    let summary = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
        .with_run_budget(Budget::unlimited().with_max_tokens(19))
        .with_events(sink)
        .run(&problems, &out, |line| {
            seen_by_callback.push((line.id.clone(), line.cut_short))
        })
        .await
        .unwrap();
    assert_eq!(
        (summary.solved, summary.cut_short, summary.not_started),
        (1, 1, 1)
    );
    // The callback sees every line written, the cut one too (a progress display counts it).
    assert_eq!(
        seen_by_callback,
        [("p1".to_string(), false), ("p2".to_string(), true)]
    );
    // Each problem's events say how it went: p1 finished, p2's call was shortened and it
    // was cut, p3 never started.
    let call = |completion_tokens, spent| EventKind::Call {
        n: 1,
        prompt_tokens: 2,
        completion_tokens,
        call_ms: 0,
        spent,
    };
    assert_eq!(
        events.kinds("p1"),
        [
            EventKind::Started,
            call(10, 12),
            EventKind::Finished {
                answer: Some("0123456789".into()),
                correct: None,
                stop_reason: StopReason::Completed,
                tokens: 12
            }
        ]
    );
    assert_eq!(
        events.kinds("p2"),
        [
            EventKind::Started,
            EventKind::Limited {
                resource: crate::Resource::Tokens,
                max_tokens: Some(5)
            },
            call(5, 7),
            EventKind::Cut
        ]
    );
    assert_eq!(events.kinds("p3"), []);
    assert!(missing.lock().unwrap().is_empty(), "{missing:?}");
    // p1's answer; of p2 only what it spent, marked cut short and retried on resume.
    let lines = read_results(&out).unwrap();
    let seen: Vec<(&str, Option<&str>, bool, u64)> = lines
        .iter()
        .map(|l| {
            (
                l.id.as_str(),
                l.answer.as_deref(),
                l.cut_short && l.error.is_some(),
                l.usage.total_tokens(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [("p1", Some("0123456789"), false, 12), ("p2", None, true, 7)]
    );

    // The budget is the whole job's: rerun with the same one, the 19 tokens are spent (p2's
    // cut attempt included), so nothing starts and nothing is written.
    let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["0123456789"; 2]));
    let summary = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
        .with_run_budget(Budget::unlimited().with_max_tokens(19))
        .run(&problems, &out, |_| {})
        .await
        .unwrap();
    assert_eq!(
        (summary.resumed, summary.solved, summary.not_started),
        (1, 0, 2)
    );
    assert!(backend.requests().is_empty());
    assert_eq!(read_results(&out).unwrap().len(), 2);

    // With budget to spare, a rerun solves exactly the two left.
    let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["0123456789"; 2]));
    let summary = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
        .run(&problems, &out, |_| {})
        .await
        .unwrap();
    assert_eq!((summary.resumed, summary.solved), (1, 2));
    let lines = read_results(&out).unwrap();
    let mut ids: Vec<&str> = lines
        .iter()
        .filter(|l| !l.cut_short)
        .map(|l| l.id.as_str())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, vec!["p1", "p2", "p3"]);
    assert!(lines
        .iter()
        .filter(|l| !l.cut_short)
        .all(|l| l.answer.as_deref() == Some("0123456789")));
}

/// Two sampled calls, one after the other, then the first's text.
struct TwoDraws;

#[async_trait::async_trait]
impl Strategy for TwoDraws {
    fn name(&self) -> &'static str {
        "two_draws"
    }

    async fn solve(&self, problem: &Problem, cx: &Context) -> Result<Solution> {
        let mut texts = Vec::new();
        for _ in 0..2 {
            let request = text_request(problem.question.clone())
                .with_sampling(crate::Sampling::with_temperature(1.0));
            texts.push(
                cx.backend()
                    .generate(request)
                    .await?
                    .into_first_choice()?
                    .text,
            );
        }
        Ok(Solution::single(
            "two_draws",
            candidate(&texts[0], &texts[0]),
            StopReason::Completed,
        ))
    }
}

#[tokio::test]
async fn a_seeded_run_gives_each_problem_the_same_seeds_whatever_the_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let problems = numbered(6);
    let seeds_at = |concurrency: usize, seed: Option<u64>, name: &str| {
        let out = dir.path().join(name);
        let problems = problems.clone();
        async move {
            let backend = Arc::new(
                crate::scripted::ScriptedBackend::new(vec!["x"; 12])
                    .with_delay(std::time::Duration::from_millis(2)),
            );
            let mut runner =
                Runner::new(Arc::new(TwoDraws), Arc::clone(&backend) as Arc<dyn Backend>)
                    .with_concurrency(concurrency);
            if let Some(seed) = seed {
                runner = runner.with_seed(seed);
            }
            runner.run(&problems, &out, |_| {}).await.unwrap();
            let mut seeds: BTreeMap<String, Vec<Option<u64>>> = BTreeMap::new();
            for request in backend.requests() {
                let prompt = crate::scripted::ScriptedBackend::render(&request.prompt);
                seeds.entry(prompt).or_default().push(request.sampling.seed);
            }
            seeds
        }
    };
    let one = seeds_at(1, Some(7), "a.jsonl").await;
    assert_eq!(one.len(), 6);
    let all: HashSet<Option<u64>> = one.values().flatten().copied().collect();
    assert_eq!(all.len(), 12, "every draw its own seed: {one:?}");
    assert!(!all.contains(&None));
    assert_eq!(seeds_at(4, Some(7), "b.jsonl").await, one);
    assert_ne!(seeds_at(1, Some(8), "c.jsonl").await, one);
    let unseeded = seeds_at(4, None, "d.jsonl").await;
    assert!(unseeded.values().flatten().all(Option::is_none));
}

#[tokio::test]
async fn an_even_allocation_starves_no_problem_and_passes_savings_on() {
    let dir = tempfile::tempdir().unwrap();
    let problems: Vec<Problem> = ["p1", "p2", "p3", "p4"]
        .into_iter()
        .map(|id| Problem::new(id, "Q?"))
        .collect();
    let run = |replies: Vec<&str>, allocation: Allocation, out: PathBuf| {
        let backend = Arc::new(crate::scripted::ScriptedBackend::new(replies));
        let problems = problems.clone();
        async move {
            let summary = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
                .with_run_budget(Budget::unlimited().with_max_tokens(20))
                .with_allocation(allocation)
                .run(&problems, &out, |_| {})
                .await
                .unwrap();
            let asked: Vec<usize> = backend.requests().iter().map(|r| r.max_tokens).collect();
            (summary, read_results(&out).unwrap(), asked)
        }
    };
    // 20 tokens, calls of 2 prompt + 10 completion tokens. First come: p1 takes 12, p2 is
    // cut short, p3 and p4 never start.
    let long = vec!["0123456789"; 4];
    let (summary, lines, _) = run(
        long.clone(),
        Allocation::FirstCome,
        dir.path().join("first.jsonl"),
    )
    .await;
    assert_eq!(
        (summary.solved, summary.cut_short, summary.not_started),
        (1, 1, 2)
    );
    let cut: Vec<bool> = lines.iter().map(|l| l.cut_short).collect();
    assert_eq!(cut, [false, true], "p1's answer, p2's spend");
    // Even: each gets 5 (3 completion tokens), all four are recorded with their share.
    let (summary, lines, asked) = run(long, Allocation::Even, dir.path().join("even.jsonl")).await;
    assert_eq!((summary.solved, summary.not_started), (4, 0));
    assert_eq!(asked, vec![3, 3, 3, 3]);
    assert!(lines
        .iter()
        .all(|l| l.answer.as_deref() == Some("012")
            && l.allotted.and_then(|b| b.max_tokens) == Some(5)));
    assert!(summary.usage.total_tokens() <= 20);
    // Savings roll over: three one-token answers (3 tokens each) leave the last problem
    // 20 - 9 = 11 tokens, room for its whole reply.
    let (_, lines, asked) = run(
        vec!["1", "1", "1", "012345678"],
        Allocation::Even,
        dir.path().join("rollover.jsonl"),
    )
    .await;
    let shares: Vec<Option<u64>> = lines
        .iter()
        .map(|l| l.allotted.and_then(|b| b.max_tokens))
        .collect();
    // 20/4 = 5 (2 back), 17/3 = 5 (2 back), 14/2 = 7 (4 back), then the 11 left.
    assert_eq!(shares, vec![Some(5), Some(5), Some(7), Some(11)]);
    assert_eq!(asked, vec![3, 3, 5, 9]);
    assert_eq!(lines[3].answer.as_deref(), Some("012345678"));
}

#[tokio::test]
async fn an_even_share_of_part_of_a_set_leaves_the_rest_theirs() {
    // 40 tokens for a set of 8 problems, run as two parts of 4 into one file (`--limit`):
    // each problem's share is 40/8 = 5 in both parts, not 40/4 = 10 for the first part and
    // nothing for the second.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let set: Vec<Problem> = (1..=8)
        .map(|i| Problem::new(format!("p{i}"), "Q?"))
        .collect();
    let run = |part: Vec<Problem>| {
        let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["0123456789"; 4]));
        let out = out.clone();
        async move {
            let summary = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
                .with_run_budget(Budget::unlimited().with_max_tokens(40))
                .with_allocation(Allocation::Even)
                .with_set((1..=8).map(|i| format!("p{i}")))
                .run(&part, &out, |_| {})
                .await
                .unwrap();
            let asked: Vec<usize> = backend.requests().iter().map(|r| r.max_tokens).collect();
            (summary, asked)
        }
    };
    let (summary, asked) = run(set[..4].to_vec()).await;
    assert_eq!((summary.solved, summary.not_started), (4, 0));
    assert_eq!(asked, vec![3, 3, 3, 3], "5-token shares, 2 of them prompt");
    let (summary, asked) = run(set.clone()).await;
    assert_eq!(
        (summary.resumed, summary.solved, summary.not_started),
        (4, 4, 0)
    );
    assert_eq!(asked, vec![3, 3, 3, 3]);
    let lines = read_results(&out).unwrap();
    assert_eq!(lines.len(), 8);
    assert!(lines
        .iter()
        .all(|l| l.allotted.and_then(|b| b.max_tokens) == Some(5)));
    assert!(lines.iter().map(|l| l.usage.total_tokens()).sum::<u64>() <= 40);

    // Another file's part already in the results file (answered, with the ids of no set
    // given now) does not shrink the set: 80 tokens, 8 answered elsewhere spent 32 of them
    // (2 prompt and 2 completion tokens each), and the 48 left are shared by this set's 8
    // problems, 2 of them run now: 6 each.
    let out = dir.path().join("parts.jsonl");
    let other: Vec<Problem> = (1..=8)
        .map(|i| Problem::new(format!("a{i}"), "Q?"))
        .collect();
    let part = |problems: &[Problem], set: Vec<String>, reply: &'static str| {
        let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec![reply; 8]));
        let out = out.clone();
        let problems = problems.to_vec();
        async move {
            Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
                .with_run_budget(Budget::unlimited().with_max_tokens(80))
                .with_allocation(Allocation::Even)
                .with_set(set)
                .run(&problems, &out, |_| {})
                .await
                .unwrap();
            backend
                .requests()
                .iter()
                .map(|r| r.max_tokens)
                .collect::<Vec<usize>>()
        }
    };
    let ids = |problems: &[Problem]| problems.iter().map(|p| p.id.clone()).collect();
    assert_eq!(part(&other, ids(&other), "01").await.len(), 8);
    let spent: u64 = read_results(&out)
        .unwrap()
        .iter()
        .map(|l| l.usage.total_tokens())
        .sum();
    assert_eq!(spent, 32);
    assert_eq!(
        part(&set[..2], ids(&set), "0123456789").await,
        vec![4, 4],
        "48 / 8 = 6 each"
    );
}

#[tokio::test]
async fn an_even_share_with_nothing_of_one_kind_gives_the_rest_back() {
    // 20 tokens and 1 call for two problems: p1's share has 10 tokens and no call, so it does
    // not start, and its 10 tokens go to p2 with the call (they were lost).
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let backend = Arc::new(crate::scripted::ScriptedBackend::new(["0123456789"]));
    let summary = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
        .with_run_budget(Budget::unlimited().with_max_tokens(20).with_max_calls(1))
        .with_allocation(Allocation::Even)
        .run(&numbered(2), &out, |_| {})
        .await
        .unwrap();
    assert_eq!((summary.solved, summary.not_started), (1, 1));
    let lines = read_results(&out).unwrap();
    assert_eq!(lines.len(), 1);
    let share = lines[0].allotted.unwrap();
    assert_eq!((share.max_tokens, share.max_calls), (Some(20), Some(1)));
    assert_eq!(lines[0].answer.as_deref(), Some("0123456789"));
}

/// A staged strategy. First stage: one call on the question whose reply is
/// `answer:confidence`, settled at confidence 0.5 or more. Second: one call of up to
/// `think_tokens` tokens on `think <question>` whose reply is the answer.
struct TwoStage {
    think_tokens: usize,
    /// Whether a later stage's reply `answer:confidence` asks for yet another below 0.5 (as
    /// adaptive best-of-N does); else every later stage is final.
    again: bool,
}

const TWO_STAGE: TwoStage = TwoStage {
    think_tokens: 10,
    again: false,
};

fn text_request(prompt: String) -> crate::backend::GenerationRequest {
    crate::backend::GenerationRequest::new(crate::backend::Prompt::Text(prompt)).with_max_tokens(10)
}

fn candidate(answer: &str, text: &str) -> crate::solution::Candidate {
    crate::solution::Candidate {
        answer: Some(answer.into()),
        text: text.into(),
        score: None,
        tokens: text.len() as u64,
    }
}

#[async_trait::async_trait]
impl Strategy for TwoStage {
    fn name(&self) -> &'static str {
        "two_stage"
    }

    async fn solve(&self, problem: &Problem, cx: &Context) -> Result<Solution> {
        crate::solve_in_stages(self, problem, cx).await
    }

    fn staged(&self) -> Option<&dyn crate::Staged> {
        Some(self)
    }
}

#[async_trait::async_trait]
impl crate::Staged for TwoStage {
    async fn first(&self, problem: &Problem, cx: &Context) -> Result<crate::Stage> {
        if problem.question.starts_with("skip") {
            // Straight to the next stage, without a call (as the router's first stage does for
            // a code problem).
            return Ok(crate::Stage {
                solution: Solution::single("two_stage", candidate("", ""), StopReason::Completed),
                pending: Some(crate::Pending {
                    confidence: 0.0,
                    why: "skipped".into(),
                }),
            });
        }
        let request = text_request(problem.question.clone());
        let text = cx
            .backend()
            .generate(request)
            .await?
            .into_first_choice()?
            .text;
        let (answer, confidence) = text.split_once(':').expect("answer:confidence");
        let confidence: f64 = confidence.parse().expect("a confidence");
        Ok(crate::Stage {
            solution: Solution::single(
                "two_stage",
                candidate(answer, &text),
                StopReason::Completed,
            ),
            pending: (confidence < 0.5).then(|| crate::Pending {
                confidence,
                why: format!("confidence {confidence}"),
            }),
        })
    }

    async fn next(&self, problem: &Problem, first: Solution, cx: &Context) -> Result<crate::Stage> {
        let text = match cx
            .backend()
            .generate(
                text_request(format!("think {}", problem.question))
                    .with_max_tokens(self.think_tokens),
            )
            .await
        {
            Ok(generation) => generation.into_first_choice()?.text,
            Err(Error::BudgetExhausted { resource }) => {
                return Ok(crate::Stage {
                    solution: Solution {
                        stop_reason: resource.into(),
                        ..first
                    },
                    pending: None,
                })
            }
            Err(e) => return Err(e),
        };
        let (answer, confidence) = match text.split_once(':') {
            Some((answer, confidence)) if self.again => (answer, confidence.parse().ok()),
            _ => (text.as_str(), None),
        };
        Ok(crate::Stage {
            solution: Solution::single(
                "two_stage",
                candidate(answer, &text),
                StopReason::Completed,
            ),
            pending: confidence
                .filter(|&c: &f64| c < 0.5)
                .map(|confidence| crate::Pending {
                    confidence,
                    why: format!("confidence {confidence}"),
                }),
        })
    }
}

#[tokio::test]
async fn a_second_run_on_the_same_results_file_is_refused_while_the_first_writes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let backend = Arc::new(
        crate::scripted::ScriptedBackend::new(vec!["4"; 4])
            .with_delay(std::time::Duration::from_millis(30)),
    );
    let runner = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>);
    let problems = numbered(2);
    let second = async {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        // Checked before a model would load, and by the run.
        let checked = check_resumable(
            &out,
            &serde_json::Value::Null,
            Allocation::FirstCome,
            &problems,
        );
        (checked, runner.run(&problems, &out, |_| {}).await)
    };
    let (first, (checked, second)) = tokio::join!(runner.run(&problems, &out, |_| {}), second);
    assert_eq!(first.unwrap().solved, 2);
    for err in [checked.unwrap_err(), second.unwrap_err()] {
        let err = err.to_string();
        assert!(err.contains("another run is writing to it"), "{err}");
    }
    assert_eq!(backend.requests().len(), 2, "each problem solved once");
    // Once the first is done, the file is free again.
    let again = runner.run(&problems, &out, |_| {}).await.unwrap();
    assert_eq!(again.resumed, 2);
}

#[tokio::test]
async fn problems_made_in_code_with_one_id_are_refused_before_anything_is_solved() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["4"; 3]));
    let runner = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>);
    let mut problems = numbered(3);
    problems[2].id = "p1".into();
    let err = runner.run(&problems, &out, |_| {}).await.unwrap_err();
    assert!(
        err.to_string().contains(
            "problems 1 and 3 (counting from 1) of those given to the run have the same id `p1`"
        ),
        "{err}"
    );
    assert!(backend.requests().is_empty());
    assert!(!out.exists() || std::fs::read(&out).unwrap().is_empty());
}

#[tokio::test]
async fn reservations_of_calls_in_flight_neither_stop_nor_cut_problems_the_budget_pays_for() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    // Each call reserves 3 + 10 tokens and spends 3 + 2. Four in flight reserve 52, more
    // than the run's 45; all six problems (30 tokens) fit in it.
    let backend = Arc::new(
        crate::scripted::ScriptedBackend::new(vec!["ab"; 6])
            .with_delay(std::time::Duration::from_millis(30)),
    );
    let summary = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
        .with_concurrency(4)
        .with_run_budget(Budget::unlimited().with_max_tokens(45))
        .run(&numbered(6), &out, |_| {})
        .await
        .unwrap();
    assert_eq!(
        (summary.solved, summary.cut_short, summary.not_started),
        (6, 0, 0)
    );
    assert_eq!(summary.usage.total_tokens(), 30);
    let lines = by_id(&out);
    assert!(
        lines.values().all(|l| l.answer.as_deref() == Some("ab")),
        "{lines:?}"
    );
    // Requests asked for their whole ten tokens: none was shortened.
    assert!(backend.requests().iter().all(|r| r.max_tokens == 10));
}

fn numbered(n: usize) -> Vec<Problem> {
    (1..=n)
        .map(|i| Problem::new(format!("p{i}"), format!("Q{i}?")))
        .collect()
}

fn prompts(backend: &crate::scripted::ScriptedBackend) -> Vec<String> {
    backend
        .requests()
        .iter()
        .map(|r| crate::scripted::ScriptedBackend::render(&r.prompt))
        .collect()
}

fn by_id(out: &Path) -> BTreeMap<String, ResultLine> {
    read_results(out)
        .unwrap()
        .into_iter()
        .map(|l| (l.id.clone(), l))
        .collect()
}

/// Four first stages, three of them unsure (p3, p2, p4 in order of need), then three
/// failing second stages.
fn undecided_then_failing() -> Vec<crate::scripted::Reply> {
    use crate::scripted::Reply::{Fail, Text};
    let mut replies: Vec<_> = ["x:0.9", "y:0.2", "z:0.1", "w:0.4"]
        .into_iter()
        .map(|t| Text(t.into()))
        .collect();
    replies.extend((0..3).map(|_| Fail("down".into())));
    replies
}

/// Replies of these texts.
fn texts(replies: &[&str]) -> Vec<crate::scripted::Reply> {
    replies
        .iter()
        .map(|t| crate::scripted::Reply::Text((*t).into()))
        .collect()
}

/// A triage run of [`TWO_STAGE`] over `replies`, under a run budget of `budget` tokens.
fn triage_runner(
    budget: Option<u64>,
    replies: Vec<crate::scripted::Reply>,
) -> (Arc<crate::scripted::ScriptedBackend>, Runner) {
    let backend = Arc::new(crate::scripted::ScriptedBackend::from_replies(replies));
    let mut runner = Runner::new(
        Arc::new(TWO_STAGE),
        Arc::clone(&backend) as Arc<dyn Backend>,
    )
    .with_allocation(Allocation::Triage);
    if let Some(tokens) = budget {
        runner = runner.with_run_budget(Budget::unlimited().with_max_tokens(tokens));
    }
    (backend, runner)
}

#[test]
fn a_problem_that_spent_past_its_share_takes_the_excess_from_the_pool() {
    let mut pool = Pool::new(
        Budget::unlimited().with_max_tokens(100).with_max_calls(4),
        2,
    );
    let share = pool.take();
    assert_eq!((share.max_tokens, share.max_calls), (Some(50), Some(2)));
    // The backend counted 70 tokens where 50 were reserved; one call of two.
    let used = Usage {
        prompt_tokens: 60,
        completion_tokens: 10,
        calls: 1,
        ..Usage::default()
    };
    pool.give_back(&share, &used);
    let last = pool.take();
    assert_eq!((last.max_tokens, last.max_calls), (Some(30), Some(3)));
}

/// Fails to grade until `working` is set (a sandbox that cannot start, then can).
struct FlakyGrader {
    working: AtomicBool,
}

#[async_trait::async_trait]
impl Grader for FlakyGrader {
    async fn grade(&self, _problem: &Problem, _solution: &Solution) -> Result<Option<bool>> {
        if self.working.load(Ordering::Relaxed) {
            Ok(Some(true))
        } else {
            Err(Error::Sandbox {
                doing: "grading".into(),
                source: "python3 not found".into(),
            })
        }
    }
}

/// A runner of [`OneCall`] on `replies`, graded by `grader`.
fn graded_by(grader: &Arc<FlakyGrader>, replies: Vec<&'static str>) -> Runner {
    let backend = Arc::new(crate::scripted::ScriptedBackend::new(replies));
    Runner::new(Arc::new(OneCall), backend as Arc<dyn Backend>)
        .with_grader(Arc::clone(grader) as Arc<dyn Grader>)
}

#[tokio::test]
async fn grading_that_fails_again_on_resume_is_an_error_again() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let problems = vec![Problem::new("p1", "Q?")];
    let grader = Arc::new(FlakyGrader {
        working: AtomicBool::new(false),
    });
    let summary = graded_by(&grader, vec!["7"])
        .run(&problems, &out, |_| {})
        .await
        .unwrap();
    assert_eq!(summary.errors, 1);
    // Still no sandbox: the run says so (its exit status follows `errors`), and nothing was
    // graded.
    let summary = graded_by(&grader, vec![])
        .run(&problems, &out, |_| {})
        .await
        .unwrap();
    assert_eq!(
        (
            summary.errors,
            summary.regraded,
            summary.graded,
            summary.solved
        ),
        (1, 0, 0, 0)
    );
    let last = read_results(&out).unwrap().pop().unwrap();
    assert!(last.grade_retried && last.error.is_some() && last.to_grade.is_some());
}

#[tokio::test]
async fn a_problem_that_could_not_be_graded_is_recorded_failed_and_graded_again_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let problems = vec![Problem::new("p1", "Q?")];
    let grader = Arc::new(FlakyGrader {
        working: AtomicBool::new(false),
    });
    let run = |replies: Vec<&'static str>| graded_by(&grader, replies);
    let summary = run(vec!["7"]).run(&problems, &out, |_| {}).await.unwrap();
    assert_eq!((summary.solved, summary.errors), (0, 1));
    let lines = read_results(&out).unwrap();
    assert_eq!(
        lines[0].answer.as_deref(),
        Some("7"),
        "what it found is kept"
    );
    assert_eq!(lines[0].correct, None);
    let error = lines[0].error.as_deref().unwrap();
    assert!(
        error.starts_with("grading: ") && error.contains("python3 not found"),
        "{error}"
    );

    assert_eq!(lines[0].to_grade.as_ref().map(Vec::len), Some(1));
    let paid = lines[0].usage;
    assert_eq!(paid.calls, 1);

    // The sandbox works now: the solution is graded, not solved again (the model has nothing
    // more to say), and what it cost is the first line's, spent once.
    grader.working.store(true, Ordering::Relaxed);
    let summary = run(vec![]).run(&problems, &out, |_| {}).await.unwrap();
    assert_eq!(
        (
            summary.resumed,
            summary.solved,
            summary.regraded,
            summary.correct,
            summary.errors
        ),
        (0, 0, 1, 1, 0)
    );
    // Its spend is the earlier run's.
    assert_eq!(summary.usage, Usage::default());
    let lines = read_results(&out).unwrap();
    assert_eq!(lines.len(), 2);
    let again = &lines[1];
    assert_eq!(
        (
            again.correct,
            again.answer.as_deref(),
            again.error.as_deref()
        ),
        (Some(true), Some("7"), None)
    );
    assert!(again.grade_retried && again.to_grade.is_none());
    assert_eq!((again.usage, again.attempt), (paid, lines[0].attempt));
    let spent = recorded_spend(&out, &lines, Allocation::FirstCome).unwrap();
    assert_eq!(spent, paid);

    // Done: a third run has nothing to do.
    let summary = run(vec![]).run(&problems, &out, |_| {}).await.unwrap();
    assert_eq!((summary.resumed, summary.solved), (1, 0));
    assert_eq!(read_results(&out).unwrap().len(), 2);
}

/// Answers "6" among the candidates "5", "6", "5", without a call.
struct ThreeCandidates;

#[async_trait::async_trait]
impl Strategy for ThreeCandidates {
    fn name(&self) -> &'static str {
        "three"
    }

    async fn solve(&self, _problem: &Problem, _cx: &Context) -> Result<Solution> {
        let candidate = |a: &str| crate::solution::Candidate {
            answer: Some(a.into()),
            text: format!("it is {a}"),
            score: None,
            tokens: 1,
        };
        Ok(Solution {
            answer: Some("6".into()),
            candidates: vec![candidate("5"), candidate("6"), candidate("5")],
            ..Solution::single("three", candidate("6"), StopReason::Completed)
        })
    }
}

/// Grades a solution with candidates (the one chosen) as [`MathGrader`] does, and fails on
/// one without (a candidate graded alone).
struct ChosenOnly;

#[async_trait::async_trait]
impl Grader for ChosenOnly {
    async fn grade(&self, problem: &Problem, solution: &Solution) -> Result<Option<bool>> {
        if solution.candidates.is_empty() {
            return Err(Error::Sandbox {
                doing: "grading".into(),
                source: "out of processes".into(),
            });
        }
        crate::grader::MathGrader.grade(problem, solution).await
    }
}

#[tokio::test]
async fn a_line_records_how_its_candidates_grade_and_a_failure_there_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let problems = vec![Problem::new("p1", "2 + 3?").with_reference("5")];
    let backend = || Arc::new(crate::scripted::ScriptedBackend::new(Vec::<&str>::new()));
    let out = dir.path().join("r.jsonl");
    Runner::new(Arc::new(ThreeCandidates), backend() as Arc<dyn Backend>)
        .run(&problems, &out, |_| {})
        .await
        .unwrap();
    let line = read_results(&out).unwrap().pop().unwrap();
    // The wrong answer was chosen though two of three candidates were right.
    assert_eq!(line.correct, Some(false));
    assert_eq!(
        line.candidates,
        Some(CandidateGrades {
            graded: 3,
            right: 2
        })
    );
    // Grading the candidates failed: the line stands, without their grades.
    let out = dir.path().join("r2.jsonl");
    let summary = Runner::new(Arc::new(ThreeCandidates), backend() as Arc<dyn Backend>)
        .with_grader(Arc::new(ChosenOnly))
        .run(&problems, &out, |_| {})
        .await
        .unwrap();
    assert_eq!((summary.solved, summary.errors), (1, 0));
    let line = read_results(&out).unwrap().pop().unwrap();
    assert_eq!((line.correct, line.candidates), (Some(false), None));
}

/// Accepts a solution of a code problem only without answers: grading reads the programs.
struct ProgramsOnly;

#[async_trait::async_trait]
impl Grader for ProgramsOnly {
    async fn grade(&self, _problem: &Problem, solution: &Solution) -> Result<Option<bool>> {
        let answered =
            solution.answer.is_some() || solution.candidates.iter().any(|c| c.answer.is_some());
        Ok(Some(!answered))
    }
}

#[tokio::test]
async fn a_code_problem_records_no_number_from_the_prose_as_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    let problem = Problem {
        code: Some(crate::problem::CodeTask {
            prompt: "def f():\n".into(),
            entry_point: "f".into(),
            test: "def check(candidate): pass".into(),
        }),
        ..Problem::new("HumanEval/0", "def f():\n")
    };
    let out = dir.path().join("r.jsonl");
    let backend = Arc::new(crate::scripted::ScriptedBackend::new(Vec::<&str>::new()));
    Runner::new(Arc::new(ThreeCandidates), backend as Arc<dyn Backend>)
        .with_grader(Arc::new(ProgramsOnly))
        .run(&[problem], &out, |_| {})
        .await
        .unwrap();
    let line = read_results(&out).unwrap().pop().unwrap();
    assert_eq!((line.answer, line.correct), (None, Some(true)));
    assert_eq!(
        line.completion, "it is 6",
        "the text stays, for grading and reading"
    );
}

/// One call of up to 10 tokens, stopped by `max_tokens` where its reply was cut there.
struct Capped;

#[async_trait::async_trait]
impl Strategy for Capped {
    fn name(&self) -> &'static str {
        "capped"
    }

    async fn solve(&self, problem: &Problem, cx: &Context) -> Result<Solution> {
        one_call(cx, "capped", text_request(problem.question.clone())).await
    }
}

/// One call of `request`, its text the answer, stopped as the completion ended.
async fn one_call(
    cx: &Context,
    name: &str,
    request: crate::backend::GenerationRequest,
) -> Result<Solution> {
    let choice = cx.backend().generate(request).await?.into_first_choice()?;
    let stop = StopReason::from(choice.finish_reason);
    Ok(Solution::single(
        name,
        candidate(&choice.text, &choice.text),
        stop,
    ))
}

#[tokio::test]
async fn a_reply_the_problems_budget_shortened_is_recorded_as_a_budget_stop() {
    // `ponder solve` says token_budget; a run recorded max_tokens, which hid the budget.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let backend = Arc::new(crate::scripted::ScriptedBackend::new(["0123456789", "01"]));
    // 2 prompt tokens and 4 of the 10 asked for; the second problem's reply ends within them.
    Runner::new(Arc::new(Capped), backend as Arc<dyn Backend>)
        .with_problem_budget(Budget::unlimited().with_max_tokens(6))
        .run(&numbered(2), &out, |_| {})
        .await
        .unwrap();
    let stops: Vec<Option<StopReason>> = read_results(&out)
        .unwrap()
        .iter()
        .map(|l| l.stop_reason)
        .collect();
    assert_eq!(
        stops,
        [Some(StopReason::TokenBudget), Some(StopReason::Completed)]
    );
}

#[tokio::test]
async fn a_child_solve_reports_its_own_cost_and_the_parents_budget_stop() {
    let backend = Arc::new(crate::scripted::ScriptedBackend::new([
        "0123456789",
        "0123456789",
    ]));
    // 2 prompt + 10 completion tokens for the first call; the second is granted 4 of its 10.
    let cx = Context::new(backend, Budget::unlimited().with_max_tokens(18));
    let problem = Problem::new("p", "Q?");
    let first = cx.solve_child(&Capped, &problem).await.unwrap();
    assert_eq!(
        (
            first.usage.calls,
            first.usage.total_tokens(),
            first.stop_reason
        ),
        (1, 12, StopReason::Completed)
    );
    let second = cx.solve_child(&Capped, &problem).await.unwrap();
    assert_eq!(
        (
            second.usage.calls,
            second.usage.total_tokens(),
            second.stop_reason
        ),
        (1, 6, StopReason::TokenBudget)
    );
    assert_eq!(cx.meter().usage().total_tokens(), 18);
}

/// One call of up to 50 tokens, with a logits processor that says a grant of 38 ended its
/// completion sooner (as budget forcing does at a cap the grant lowered), so that the grant
/// counts as a cut even where the reply stops within it.
struct Told;

struct Replans;

impl crate::backend::LogitsProcessor for Replans {
    fn process(&self, _: &mut [f32], _: &[u32]) {}

    fn shortened_by(&self) -> Option<usize> {
        Some(38)
    }
}

#[async_trait::async_trait]
impl Strategy for Told {
    fn name(&self) -> &'static str {
        "told"
    }

    async fn solve(&self, problem: &Problem, cx: &Context) -> Result<Solution> {
        let request = text_request(problem.question.clone())
            .with_max_tokens(50)
            .with_logits_processor(Arc::new(Replans));
        one_call(cx, "told", request).await
    }
}

#[tokio::test]
async fn a_child_solve_is_not_marked_by_a_cut_of_an_earlier_one() {
    let backend = Arc::new(crate::scripted::ScriptedBackend::new([
        "0123",
        "0123456789AB",
    ]));
    // The first solve is granted 38 of its 50 tokens (its processor told), and stops after 4:
    // a cut. The second fits whole and runs to its own max_tokens: not the budget's doing.
    let cx = Context::new(backend, Budget::unlimited().with_max_tokens(40));
    let problem = Problem::new("p", "Q?");
    let first = cx.solve_child(&Told, &problem).await.unwrap();
    assert_eq!(first.usage.total_tokens(), 6);
    assert_eq!(cx.meter().cut_by(), Some(crate::budget::Resource::Tokens));
    let second = cx.solve_child(&Capped, &problem).await.unwrap();
    assert_eq!(
        (second.usage.total_tokens(), second.stop_reason),
        (12, StopReason::MaxTokens)
    );
}

#[tokio::test]
async fn an_even_share_too_small_for_the_prompt_leaves_its_problem_not_started() {
    let dir = tempfile::tempdir().unwrap();
    let problems: Vec<Problem> = (1..=4)
        .map(|i| Problem::new(format!("p{i}"), "What is it?"))
        .collect();
    let run = |tokens: u64, name: &str, problem: Budget| {
        let out = dir.path().join(name);
        let problems = problems.clone();
        async move {
            let backend = Arc::new(crate::scripted::ScriptedBackend::new(["4"; 4]));
            let events = crate::scripted::Recorder::new();
            let summary = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
                .with_problem_budget(problem)
                .with_run_budget(Budget::unlimited().with_max_tokens(tokens))
                .with_allocation(Allocation::Even)
                .with_events(events.clone())
                .run(&problems, &out, |_| {})
                .await
                .unwrap();
            // A problem refused at its first call after its `started` was sent ends, as cut.
            let cut = problems
                .iter()
                .filter(|p| events.kinds(&p.id).last() == Some(&EventKind::Cut))
                .count();
            assert_eq!(cut, summary.not_started);
            for problem in &problems {
                let kinds = events.kinds(&problem.id);
                assert!(
                    kinds.is_empty()
                        || matches!(
                            (kinds.first(), kinds.last()),
                            (
                                Some(EventKind::Started),
                                Some(EventKind::Cut | EventKind::Finished { .. })
                            )
                        ),
                    "{}: {kinds:?}",
                    problem.id
                );
            }
            let ids: Vec<String> = read_results(&out)
                .unwrap()
                .into_iter()
                .map(|l| l.id)
                .collect();
            (
                summary.solved,
                summary.not_started,
                backend.requests().len(),
                ids,
            )
        }
    };
    // Prompts of 11 tokens. Shares of 2, 2, 4 and 8 tokens: none reaches the model, nothing is
    // recorded (they were recorded "solved" with no answer and graded wrong).
    let unlimited = Budget::unlimited();
    assert_eq!(run(8, "small.jsonl", unlimited).await, (0, 4, 0, vec![]));
    // A refused share goes back to the pool: 4, 5 and 8 refused, the last gets all 16.
    assert_eq!(
        run(16, "last.jsonl", unlimited).await,
        (1, 3, 1, vec!["p4".to_string()])
    );
    // The problem's own budget, not its share, cannot pay for the prompt: recorded as under
    // first come (a rerun could do no better).
    let (solved, not_started, requests, ids) =
        run(1000, "own.jsonl", Budget::unlimited().with_max_tokens(5)).await;
    assert_eq!((solved, not_started, requests, ids.len()), (4, 0, 0, 4));
}

#[tokio::test]
async fn a_problem_out_of_its_own_wall_time_is_recorded_not_taken_for_the_runs_budget() {
    // The backend gives up at the deadline the problem's meter set; the run's meter, which the
    // call passes through, noted that as its own budget running out, and the problem was
    // left unstarted (redone on every rerun, out of time again).
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let backend = Arc::new(
        crate::scripted::ScriptedBackend::new(["4"]).with_delay(std::time::Duration::from_secs(10)),
    );
    let summary = Runner::new(Arc::new(OneCall), backend as Arc<dyn Backend>)
        .with_problem_budget(
            Budget::unlimited().with_max_wall(std::time::Duration::from_millis(50)),
        )
        .with_run_budget(Budget::unlimited().with_max_tokens(1000))
        .run(&numbered(1), &out, |_| {})
        .await
        .unwrap();
    assert_eq!(
        (summary.solved, summary.cut_short, summary.not_started),
        (1, 0, 0)
    );
    let lines = read_results(&out).unwrap();
    assert_eq!(lines[0].stop_reason, Some(StopReason::TimeBudget));
}

/// A backend whose engine dies after `alive` calls: every later call fails as the in-process
/// backend's do once its engine thread is gone.
struct DiesAfter {
    inner: crate::scripted::ScriptedBackend,
    alive: usize,
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl Backend for DiesAfter {
    async fn generate(
        &self,
        request: crate::backend::GenerationRequest,
    ) -> Result<crate::backend::Generation> {
        if self.calls.fetch_add(1, Ordering::SeqCst) >= self.alive {
            return Err(Error::EngineGone {
                context: "no engine for the default model",
            });
        }
        self.inner.generate(request).await
    }

    fn capabilities(&self) -> crate::backend::Capabilities {
        self.inner.capabilities()
    }
}

#[tokio::test]
async fn a_run_whose_engine_went_away_starts_no_more_problems_and_resumes_after() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let problems = numbered(6);
    let dying = Arc::new(DiesAfter {
        inner: crate::scripted::ScriptedBackend::new(["7"; 6]),
        alive: 2,
        calls: std::sync::atomic::AtomicUsize::new(0),
    });
    let summary = Runner::new(Arc::new(OneCall), Arc::clone(&dying) as Arc<dyn Backend>)
        .run(&problems, &out, |_| {})
        .await
        .unwrap();
    // Two solved, the third failed when the engine was gone, and none started after it.
    assert_eq!((summary.solved, summary.errors), (2, 1));
    let halt = summary.halted.unwrap();
    assert_eq!(halt.not_started, 3);
    assert!(
        halt.error.contains("inference engine is gone"),
        "{}",
        halt.error
    );
    assert_eq!(dying.calls.load(Ordering::SeqCst), 3);
    let lines = by_id(&out);
    assert_eq!(lines.keys().collect::<Vec<_>>(), ["p1", "p2", "p3"]);
    assert!(lines["p3"].error.as_deref().unwrap().contains("gone"));

    // The same command again, the engine back: the failed one and those never started.
    let backend = Arc::new(crate::scripted::ScriptedBackend::new(["7"; 4]));
    let summary = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
        .run(&problems, &out, |_| {})
        .await
        .unwrap();
    assert_eq!((summary.resumed, summary.solved, summary.errors), (2, 4, 0));
    assert_eq!(summary.halted, None);
    assert_eq!(backend.remaining(), 0);
    assert_eq!(by_id(&out).len(), 6);
}

#[tokio::test]
async fn concurrent_problems_in_flight_when_the_engine_went_away_are_recorded_failed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let problems = numbered(8);
    let dying = Arc::new(DiesAfter {
        inner: crate::scripted::ScriptedBackend::new(["7"; 8]),
        alive: 0,
        calls: std::sync::atomic::AtomicUsize::new(0),
    });
    let summary = Runner::new(Arc::new(OneCall), dying as Arc<dyn Backend>)
        .with_concurrency(3)
        .run(&problems, &out, |_| {})
        .await
        .unwrap();
    // However many had started before the first failure was seen, each is recorded, failed,
    // and every problem is either recorded or counted as not started.
    let halt = summary.halted.clone().unwrap();
    assert_eq!(summary.solved, 0);
    assert!((1..=3).contains(&summary.errors), "{summary:?}");
    assert_eq!(summary.errors + halt.not_started, 8);
    assert_eq!(read_results(&out).unwrap().len(), summary.errors);
}

/// One call of up to 10 tokens, then a failure of its own (a server's 500, say).
struct CallThenFail;

#[async_trait::async_trait]
impl Strategy for CallThenFail {
    fn name(&self) -> &'static str {
        "call_then_fail"
    }

    async fn solve(&self, problem: &Problem, cx: &Context) -> Result<Solution> {
        OneCall.solve(problem, cx).await?;
        Err(Error::Http {
            url: "http://server/v1/completions".into(),
            status: 500,
            message: "the server broke".into(),
        })
    }
}

#[tokio::test]
async fn a_failure_after_the_run_budget_shortened_a_call_is_a_failure_not_a_cut() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let problems = [Problem::new("p1", "Q?")];
    // 2 prompt + 10 completion tokens asked, 7 left: the call is shortened, then it fails.
    let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["0123456789"]));
    let summary = Runner::new(
        Arc::new(CallThenFail),
        Arc::clone(&backend) as Arc<dyn Backend>,
    )
    .with_run_budget(Budget::unlimited().with_max_tokens(7))
    .run(&problems, &out, |_| {})
    .await
    .unwrap();
    assert_eq!((summary.errors, summary.cut_short), (1, 0), "{summary:?}");
    let lines = read_results(&out).unwrap();
    assert_eq!(lines.len(), 1);
    assert!(!lines[0].cut_short);
    assert!(
        lines[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("the server broke")),
        "{:?}",
        lines[0].error
    );
}

/// Panics on a problem whose question says so; else [`OneCall`].
struct PanicsOn;

#[async_trait::async_trait]
impl Strategy for PanicsOn {
    fn name(&self) -> &'static str {
        "panics_on"
    }

    async fn solve(&self, problem: &Problem, cx: &Context) -> Result<Solution> {
        if problem.question == "panic" {
            panic!("a defect on {}", problem.id);
        }
        OneCall.solve(problem, cx).await
    }
}

/// Panics grading a problem whose question says so.
struct PanickingGrader;

#[async_trait::async_trait]
impl crate::grader::Grader for PanickingGrader {
    async fn grade(&self, problem: &Problem, solution: &Solution) -> Result<Option<bool>> {
        if problem.question == "panic" {
            panic!("a grader defect");
        }
        crate::grader::MathGrader.grade(problem, solution).await
    }
}

/// Runs `strategy` over a problem that asks to panic and one that does not, graded by
/// `grader`: the summary, and the panicking problem's error.
async fn run_with_a_panic(
    strategy: Arc<dyn Strategy>,
    grader: Arc<dyn crate::grader::Grader>,
) -> (RunSummary, Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let problems = [Problem::new("p1", "panic"), Problem::new("p2", "Q?")];
    let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["4", "4"]));
    let summary = Runner::new(strategy, Arc::clone(&backend) as Arc<dyn Backend>)
        .with_grader(grader)
        .run(&problems, &out, |_| {})
        .await
        .unwrap();
    let lines = read_results(&out).unwrap();
    let failed = lines
        .iter()
        .find(|l| l.id == "p1")
        .and_then(|l| l.error.clone());
    (summary, failed)
}

#[tokio::test]
async fn a_strategy_or_grader_that_panics_on_one_problem_fails_that_problem_not_the_run() {
    let (summary, error) =
        run_with_a_panic(Arc::new(PanicsOn), Arc::new(crate::grader::MathGrader)).await;
    assert_eq!((summary.solved, summary.errors), (1, 1), "{summary:?}");
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("panicked: a defect on p1")),
        "{error:?}"
    );
    let (summary, error) = run_with_a_panic(Arc::new(OneCall), Arc::new(PanickingGrader)).await;
    assert_eq!((summary.solved, summary.errors), (1, 1), "{summary:?}");
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.starts_with("grading: ") && e.contains("panicked: a grader defect")),
        "{error:?}"
    );
}

#[test]
fn an_error_that_says_its_cause_is_not_told_twice() {
    let error = Error::Sandbox {
        doing: "running the hidden tests (4 tries)".into(),
        source: "sandbox busy: no process to spare".into(),
    };
    assert_eq!(
        super::error_chain(&error),
        "sandbox failed running the hidden tests (4 tries): sandbox busy: no process to spare"
    );
    // A cause the message leaves out is added.
    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("writing the results")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let outer = Outer(std::io::Error::other("disk on fire"));
    assert_eq!(
        super::error_chain(&outer),
        "writing the results: disk on fire"
    );
}

#[tokio::test]
async fn a_solution_whose_question_changed_since_is_solved_again_not_graded_again() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let grader = Arc::new(FlakyGrader {
        working: AtomicBool::new(false),
    });
    let run = |replies: Vec<&'static str>| graded_by(&grader, replies);
    run(vec!["7"])
        .run(&[Problem::new("p1", "Q?")], &out, |_| {})
        .await
        .unwrap();
    grader.working.store(true, Ordering::Relaxed);
    // The problem file asks another question under that id now: its old program is no answer
    // to it.
    let summary = run(vec!["8"])
        .run(&[Problem::new("p1", "Another?")], &out, |_| {})
        .await
        .unwrap();
    assert_eq!((summary.solved, summary.correct), (1, 1));
    let last = read_results(&out).unwrap().pop().unwrap();
    assert_eq!(last.answer.as_deref(), Some("8"));
    assert!(!last.grade_retried);
}
