//! Resuming from a run's files: half-written and unended last lines, damage, refused resumes,
//! and what the results file, the kept stages and the spend ledger count against the budget.

use super::*;

/// What a resuming run does to a results file first: reads its finished lines and mends its
/// end (the newline a whole last line lacks added, half a line cut off).
fn mend(path: &Path) -> Result<Vec<ResultLine>> {
    let (lines, tail) = scan_results(path)?;
    repair(path, tail, files::RESULT_LOST)?;
    Ok(lines)
}

#[test]
fn half_written_last_line_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    let full = format!("{}\n{}\n", line("a"), line("b"));
    let cut = &line("c")[..20];
    std::fs::write(&path, format!("{full}{cut}")).unwrap();
    // Read only: a run may be writing it.
    assert_eq!(read_results(&path).unwrap().len(), 2);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{full}{cut}")
    );
    let lines = mend(&path).unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), full);

    // A whole last line (its newline written) that does not read was not cut by a kill:
    // damage (a hand edit, another program's line), named, and the file left as it is.
    let damaged = format!("{full}{{\"id\": \"c\"\n");
    std::fs::write(&path, &damaged).unwrap();
    let err = mend(&path).unwrap_err().to_string();
    assert!(
        err.contains("r.jsonl:3:") && err.contains("(column 10)"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), damaged);

    // Whole JSON after the last newline that is not a results line: damage too, not half a
    // line (half a line never reads as JSON), so it is named and nothing is cut.
    let unended = format!("{full}{{\"id\":\"c\",\"strategy\":\"direct\",\"correct\":\"yes\"}}");
    std::fs::write(&path, &unended).unwrap();
    let err = mend(&path).unwrap_err().to_string();
    assert!(err.contains("r.jsonl:3:"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), unended);

    // Text after the last line, or a file that is not a run's given as --out (one line, no
    // newline): not the start of a line a run writes, so not cut (that would delete it).
    for (text, at) in [
        (format!("{full}note: rerun with n = 16"), "r.jsonl:3:"),
        ("my notes on the run".to_string(), "r.jsonl:1:"),
    ] {
        std::fs::write(&path, &text).unwrap();
        let err = mend(&path).unwrap_err().to_string();
        assert!(err.contains(at) && err.contains("not JSON"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }
    // NUL bytes where an append never reached the disk (the machine crashed): cut.
    std::fs::write(&path, format!("{full}\0\0\0\0")).unwrap();
    assert_eq!(mend(&path).unwrap().len(), 2);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), full);
    // And zeros over whole lines, or the start of one, before lines that did reach the disk:
    // skipped, the rest read.
    let torn = format!(
        "{}\n\0\0\0\0\n\0\0\0\0{}\n{}\n",
        line("a"),
        &line("b")[9..],
        line("c")
    );
    std::fs::write(&path, &torn).unwrap();
    let ids: Vec<String> = mend(&path).unwrap().into_iter().map(|l| l.id).collect();
    assert_eq!(ids, ["a", "c"]);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), torn, "only read");
    // NULs all through a line (UTF-16 text, a binary file given as --out) are damage.
    let utf16: Vec<u8> = format!("{}\n", line("a"))
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    std::fs::write(&path, &utf16).unwrap();
    assert!(mend(&path).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), utf16);
}

#[tokio::test]
async fn a_problems_last_line_counts_when_resuming() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    // p1 answered, then failed (two runs at once, say); p2 answered twice.
    let failed = serde_json::json!({
        "id": "p1", "strategy": "direct", "answer": null, "reference": null,
        "correct": null, "usage": {}, "stop_reason": null, "error": "backend gone"
    });
    let text = format!("{}\n{failed}\n{}\n{}\n", line("p1"), line("p2"), line("p2"));
    std::fs::write(&out, text).unwrap();
    let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["4"]));
    let summary = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
        .run(&numbered(2), &out, |_| {})
        .await
        .unwrap();
    assert_eq!(
        (summary.resumed, summary.graded, summary.solved),
        (1, 1, 1),
        "{summary:?}"
    );
    assert_eq!(prompts(&backend), ["Q1?"]);
}

#[tokio::test]
async fn results_without_their_record_resume_only_under_the_strategy_their_lines_name() {
    // Lines of `direct`, their `.config.json` lost (the file copied alone).
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    std::fs::write(&out, format!("{}\n", line("p1"))).unwrap();
    let kind = |kind: &str| serde_json::json!({ "strategy": { "kind": kind } });
    let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["4"]));
    let err = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
        .with_identity(kind("budget_forcing"))
        .run(&numbered(2), &out, |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("holds results of `direct` (problem `p1`'s line, the first)")
            && err.contains("this run's strategy is `budget_forcing`"),
        "{err}"
    );
    assert!(check_resumable(&out, &kind("router"), Allocation::FirstCome, &[]).is_err());
    assert!(backend.requests().is_empty());
    // The same strategy: assumed this run's, and resumed.
    let summary = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
        .with_identity(kind("direct"))
        .run(&numbered(2), &out, |_| {})
        .await
        .unwrap();
    assert_eq!((summary.resumed, summary.solved), (1, 1));
}

#[tokio::test]
async fn resuming_with_another_question_under_a_recorded_id_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["4"; 4]));
    let runner = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>);
    runner.run(&numbered(2), &out, |_| {}).await.unwrap();
    // The same questions: nothing to do.
    let summary = runner.run(&numbered(2), &out, |_| {}).await.unwrap();
    assert_eq!((summary.resumed, summary.solved), (2, 0));
    // Rows named by line number, one inserted: `p2` now asks what `p1` did.
    let moved = vec![Problem::new("p1", "New?"), Problem::new("p2", "Q1?")];
    let err = runner
        .run(&moved, &out, |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("r.jsonl") && err.contains("`p1` to another question"),
        "{err}"
    );
    assert_eq!(backend.requests().len(), 2, "nothing solved");
    // What the CLI checks before it loads the model finds it too.
    let identity = serde_json::json!({ "strategy": { "kind": "one_call" } });
    let err = check_resumable(&out, &identity, Allocation::FirstCome, &moved)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`p1` to another question"), "{err}");
    let ok = check_resumable(&out, &identity, Allocation::FirstCome, &numbered(2));
    assert!(ok.is_ok(), "{ok:?}");
}

#[tokio::test]
async fn a_failed_problem_whose_question_was_fixed_is_asked_again() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    // p1 failed on its old question (too long for the context window, say); p2 answered.
    let old = Problem::new("p1", "Old?");
    let failed = serde_json::json!({
        "id": "p1", "strategy": "direct", "answer": null, "reference": null,
        "correct": null, "usage": {}, "stop_reason": null, "error": "prompt too long",
        "question_sha": crate::runner::question_fingerprint(&old),
    });
    std::fs::write(&out, format!("{failed}\n{}\n", line("p2"))).unwrap();
    let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["4"]));
    let summary = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
        .run(&numbered(2), &out, |_| {})
        .await
        .unwrap();
    assert_eq!((summary.resumed, summary.solved), (1, 1), "{summary:?}");
    assert_eq!(prompts(&backend), ["Q1?"], "p1 asked as it is now");
}

#[test]
fn a_half_written_line_after_crlf_lines_cuts_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    let full = format!("{}\r\n{}\r\n", line("a"), line("b"));
    std::fs::write(&path, format!("{full}{{\"id\": \"c\"\r")).unwrap();
    assert_eq!(mend(&path).unwrap().len(), 2);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), full);
}

#[test]
fn a_byte_order_mark_an_editor_wrote_reads_and_a_compressed_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    // Saved by a Windows editor: a mark before the first line; the half line after is still
    // cut at its exact byte.
    let full = format!("\u{feff}{}\n{}\n", line("a"), line("b"));
    std::fs::write(&path, format!("{full}{{\"id\": \"c")).unwrap();
    let lines = mend(&path).unwrap();
    assert_eq!(
        lines.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), full);
    // One line alone, without its newline.
    std::fs::write(&path, format!("\u{feff}{}", line("a"))).unwrap();
    assert_eq!(read_results(&path).unwrap().len(), 1);
    std::fs::write(&path, b"\x1f\x8b\x08\x00\x00\x00\x00\x00").unwrap();
    let err = read_results(&path).unwrap_err().to_string();
    assert!(
        err.contains("r.jsonl:1: not a results line: the file is gzip-compressed: decompress"),
        "{err}"
    );
}

#[test]
fn damage_in_the_middle_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    std::fs::write(&path, format!("{}\nnot json\n{}\n", line("a"), line("b"))).unwrap();
    let err = read_results(&path).unwrap_err().to_string();
    assert!(err.contains("r.jsonl:2: not a results line"), "{err}");
    // In the spend ledger beside it, the error says which file's line it is.
    std::fs::write(ledger::path_of(&path), "not json\n").unwrap();
    let err = ledger::scan(&path).unwrap_err().to_string();
    assert!(
        err.contains("r.jsonl.spend.jsonl:1: not a line of a run's spend ledger"),
        "{err}"
    );
}

#[test]
fn a_whole_last_line_without_its_newline_is_kept_and_ended() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    // Edited by hand, or written by `jq`: every line whole, the last without its newline.
    let text = format!("{}\n{}", line("a"), line("b"));
    std::fs::write(&path, &text).unwrap();
    let (lines, half_written) = peek_results(&path).unwrap();
    assert_eq!((lines.len(), half_written), (2, false));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "only read");
    let lines = mend(&path).unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1].id, "b");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{text}\n"),
        "its newline added, nothing cut"
    );
}

#[tokio::test]
async fn a_resumed_run_keeps_a_last_line_without_its_newline_and_writes_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    std::fs::write(&out, line("p1")).unwrap();
    let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["4"]));
    let summary = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
        .run(&numbered(2), &out, |_| {})
        .await
        .unwrap();
    assert_eq!((summary.resumed, summary.solved), (1, 1));
    assert_eq!(prompts(&backend), ["Q2?"]);
    let lines = by_id(&out);
    assert_eq!(lines.keys().collect::<Vec<_>>(), ["p1", "p2"]);
}

#[tokio::test]
async fn a_triage_side_file_whose_last_line_lacks_its_newline_keeps_that_stage() {
    use crate::scripted::Reply::Text;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let problems = numbered(4);
    let (_, runner) = triage_runner(None, undecided_then_failing());
    runner.run(&problems, &out, |_| {}).await.unwrap();
    let side = triage_path(&out);
    let kept = std::fs::read_to_string(&side).unwrap();
    assert_eq!(kept.lines().count(), 3);
    std::fs::write(&side, kept.trim_end()).unwrap();
    // Read only: p4's first stage (8 tokens) counts, the file is left as it is.
    let recorded = recorded_spend(&out, &read_results(&out).unwrap(), Allocation::Triage).unwrap();
    assert_eq!(recorded.total_tokens(), 8 * 4);
    assert_eq!(std::fs::read_to_string(&side).unwrap(), kept.trim_end());
    // Resumed: no first stage is done again, and the side file's last line is ended.
    let text = |t: &str| Text(t.into());
    let (backend, runner) = triage_runner(None, vec![text("Z:0.9"), text("Y"), text("W")]);
    let summary = runner.run(&problems, &out, |_| {}).await.unwrap();
    assert_eq!(prompts(&backend), ["think Q3?", "think Q2?", "think Q4?"]);
    assert_eq!(summary.solved, 3);
    assert_eq!(std::fs::read_to_string(&side).unwrap(), kept);
}

#[tokio::test]
async fn a_refused_resume_leaves_the_results_and_side_files_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let problems = numbered(4);
    let runner = |identity: &str, replies| {
        let (backend, runner) = triage_runner(None, replies);
        let runner = runner.with_identity(serde_json::json!({ "strategy": identity }));
        (backend, runner)
    };
    let (_, first) = runner("two_stage", undecided_then_failing());
    first.run(&problems, &out, |_| {}).await.unwrap();
    // A kill left half a line in each file.
    let side = triage_path(&out);
    for path in [&out, &side] {
        let mut text = std::fs::read_to_string(path).unwrap();
        text.push_str("{\"id\": \"p");
        std::fs::write(path, text).unwrap();
    }
    let files = || [&out, &side].map(|p| std::fs::read_to_string(p).unwrap());
    let before = files();

    // Another configuration: refused, and neither file is cut.
    let (backend, other) = runner("other", Vec::new());
    let err = other
        .run(&problems, &out, |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("strategy"), "{err}");
    assert!(backend.requests().is_empty());
    assert_eq!(files(), before);

    // Another question under an answered id: refused, and neither file is cut.
    let mut moved = problems.clone();
    moved[0] = Problem::new("p1", "New?");
    let (backend, same) = runner("two_stage", Vec::new());
    let err = same
        .run(&moved, &out, |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("`p1` to another question"), "{err}");
    assert!(backend.requests().is_empty());
    assert_eq!(files(), before);

    // The same run resumed: the half lines are cut, the kept stages go on.
    use crate::scripted::Reply::Text;
    let (backend, same) = runner(
        "two_stage",
        ["Z", "Y", "W"].map(|t| Text(t.into())).to_vec(),
    );
    let summary = same.run(&problems, &out, |_| {}).await.unwrap();
    assert_eq!(summary.solved, 3);
    assert_eq!(prompts(&backend).len(), 3);
    assert!(!std::fs::read_to_string(&side)
        .unwrap()
        .contains("{\"id\": \"p\n"));
    assert_eq!(by_id(&out).len(), 4);
}

/// A triage run's files as if killed after the first stages: p1's answer in the results, p2 to
/// p4 waiting beside it (8 tokens each so far). Returns the problems as the file asks them now:
/// p3's question fixed since its first stage.
async fn killed_after_first_stages(out: &Path) -> Vec<Problem> {
    let mut problems = numbered(4);
    let (_, runner) = triage_runner(None, undecided_then_failing());
    runner.run(&problems, out, |_| {}).await.unwrap();
    let p1 = std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .find(|l| l.contains("\"p1\""))
        .unwrap()
        .to_string();
    std::fs::write(out, format!("{p1}\n")).unwrap();
    problems[2] = Problem::new("p3", "New?");
    problems
}

fn spent(out: &Path) -> u64 {
    recorded_spend(out, &read_results(out).unwrap(), Allocation::Triage)
        .unwrap()
        .total_tokens()
}

#[tokio::test]
async fn a_triage_stage_kept_for_another_question_is_done_again() {
    use crate::scripted::Reply::{Fail, Text};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let moved = killed_after_first_stages(&out).await;
    let before = spent(&out);

    // p3's question fixed since its first stage: that stage answered the old one, so p3 starts
    // over; p2 and p4 go on from theirs. Its new first stage fails first.
    let replies = vec![Fail("down".into()), Text("A".into()), Text("B".into())];
    let (backend, runner) = triage_runner(None, replies);
    let summary = runner.run(&moved, &out, |_| {}).await.unwrap();
    assert_eq!((summary.solved, summary.errors), (2, 1), "{summary:?}");
    assert_eq!(prompts(&backend)[0], "New?");
    // What the file records grew by this run's calls: the old stage counted once.
    let after_failure = spent(&out);
    assert_eq!(after_failure, before + summary.spent.total_tokens());

    // Resumed again: p3's old stage is still the one kept, and still stale. Its new first
    // stage waits for a second, then answers: the old stage's 8 tokens carried to the answer.
    let (backend, runner) = triage_runner(None, texts(&["n:0.1", "C"]));
    let summary = runner.run(&moved, &out, |_| {}).await.unwrap();
    assert_eq!(summary.solved, 1, "{summary:?}");
    assert_eq!(prompts(&backend), ["New?", "think New?"]);
    let after = spent(&out);
    assert_eq!(after, after_failure + summary.spent.total_tokens());
    let p3 = by_id(&out).remove("p3").unwrap();
    assert_eq!(
        p3.question_sha.as_deref(),
        Some(question_fingerprint(&moved[2]).as_str())
    );
    assert_eq!(p3.usage.total_tokens(), summary.spent.total_tokens() + 8);
    // Resumed once more: nothing to do, nothing counted twice.
    let (backend, runner) = triage_runner(None, Vec::new());
    runner.run(&moved, &out, |_| {}).await.unwrap();
    assert!(backend.requests().is_empty());
    assert_eq!(spent(&out), after);
}

#[tokio::test]
async fn a_stale_triage_stage_answered_at_once_carries_its_spend_to_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let moved = killed_after_first_stages(&out).await;
    let before = spent(&out);
    // The new first stage is sure: p3 answered at once; the old stage, still the one kept
    // beside it, is not counted again.
    let (_, runner) = triage_runner(None, texts(&["n:0.9", "A", "B"]));
    let summary = runner.run(&moved, &out, |_| {}).await.unwrap();
    assert_eq!(summary.solved, 3, "{summary:?}");
    assert_eq!(spent(&out), before + summary.spent.total_tokens());
    let p3 = by_id(&out).remove("p3").unwrap();
    // Its own 9 tokens (`New?`, `n:0.9`: the scripted backend counts a token a character) and
    // the old stage's 8.
    assert_eq!(
        (p3.answer.as_deref(), p3.usage.total_tokens()),
        (Some("n"), 9 + 8)
    );
}

#[tokio::test]
async fn the_run_budget_counts_every_line_of_its_file_whatever_the_problems() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let problems = numbered(3);
    // Each call is 3 prompt + 10 completion tokens: the first invocation spends 26 of 26.
    let run = |replies: Vec<&'static str>| {
        let backend = Arc::new(crate::scripted::ScriptedBackend::new(replies));
        let runner = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
            .with_run_budget(Budget::unlimited().with_max_tokens(26));
        (backend, runner)
    };
    let (_, runner) = run(vec!["0123456789"; 2]);
    let summary = runner.run(&problems[..2], &out, |_| {}).await.unwrap();
    assert_eq!(summary.solved, 2);
    // Another slice of the set on the same file: the job's budget is spent.
    let recorded =
        recorded_spend(&out, &read_results(&out).unwrap(), Allocation::FirstCome).unwrap();
    assert_eq!(recorded.total_tokens(), 26);
    let (backend, runner) = run(vec!["0123456789"]);
    let summary = runner.run(&problems[2..], &out, |_| {}).await.unwrap();
    assert!(backend.requests().is_empty());
    assert_eq!((summary.solved, summary.not_started), (0, 1));
}

#[tokio::test]
async fn a_triage_runs_budget_counts_kept_stages_of_problems_not_in_the_set() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let (_, runner) = triage_runner(None, undecided_then_failing());
    runner.run(&numbered(4), &out, |_| {}).await.unwrap();
    // p1's answer and the first stages kept for p2 to p4, 8 tokens each.
    let recorded = recorded_spend(&out, &read_results(&out).unwrap(), Allocation::Triage).unwrap();
    assert_eq!(recorded.total_tokens(), 8 * 4);
    let (backend, runner) = triage_runner(
        Some(8 * 4),
        vec![crate::scripted::Reply::Text("v:0.9".into())],
    );
    let p5 = [Problem::new("p5", "Q5?")];
    let summary = runner.run(&p5, &out, |_| {}).await.unwrap();
    assert!(backend.requests().is_empty());
    assert_eq!(summary.not_started, 1);
}

/// Answers its first `answer` calls from `inner`, then hangs (a slow model mid-call), saying
/// so through `hung`.
struct HangAfter {
    inner: crate::scripted::ScriptedBackend,
    answer: usize,
    calls: std::sync::atomic::AtomicUsize,
    hung: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl Backend for HangAfter {
    async fn generate(
        &self,
        request: crate::backend::GenerationRequest,
    ) -> Result<crate::backend::Generation> {
        if self.calls.fetch_add(1, Ordering::SeqCst) >= self.answer {
            self.hung.notify_one();
            futures::future::pending::<()>().await;
        }
        self.inner.generate(request).await
    }

    fn capabilities(&self) -> crate::backend::Capabilities {
        self.inner.capabilities()
    }
}

/// [`OneCall`] twice; the second call's answer stands.
struct CallTwice;

#[async_trait::async_trait]
impl Strategy for CallTwice {
    fn name(&self) -> &'static str {
        "call_twice"
    }

    async fn solve(&self, problem: &Problem, cx: &Context) -> Result<Solution> {
        OneCall.solve(problem, cx).await?;
        OneCall.solve(problem, cx).await
    }
}

fn ledger_lines(out: &Path) -> Vec<ledger::Entry> {
    ledger::scan(out).unwrap().0
}

#[tokio::test]
async fn what_a_problem_killed_in_flight_spent_counts_against_the_resumed_runs_budget() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let problems = numbered(3);
    // p1's first call (3 prompt + 10 completion tokens) comes back; its second never does,
    // and the run is dropped (killed) there: no line records the 13 tokens.
    let hung = Arc::new(tokio::sync::Notify::new());
    let backend = HangAfter {
        inner: crate::scripted::ScriptedBackend::new(vec!["0123456789"]),
        answer: 1,
        calls: std::sync::atomic::AtomicUsize::new(0),
        hung: Arc::clone(&hung),
    };
    let runner = Runner::new(Arc::new(CallTwice), Arc::new(backend));
    tokio::select! {
        done = runner.run(&problems, &out, |_| {}) => panic!("the run ended: {done:?}"),
        () = hung.notified() => {}
    }
    drop(runner);
    assert!(read_results(&out).unwrap().is_empty());
    let calls = ledger_lines(&out);
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (calls[0].id.as_str(), calls[0].usage.total_tokens()),
        ("p1", 13)
    );
    assert_eq!(calls[0].usage.calls, 1);
    let recorded = recorded_spend(&out, &[], Allocation::FirstCome).unwrap();
    assert_eq!((recorded.total_tokens(), recorded.calls), (13, 1));

    // A run of 26 tokens has 13 left: p1 (13 again), and nothing for p2. (Without the
    // ledger p2 would be solved too, and the job spend 39.)
    let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["0123456789"; 3]));
    let summary = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
        .with_run_budget(Budget::unlimited().with_max_tokens(26))
        .run(&problems, &out, |_| {})
        .await
        .unwrap();
    assert_eq!((summary.solved, summary.not_started), (1, 2));
    assert_eq!(prompts(&backend), ["Q1?"]);
    let lines = read_results(&out).unwrap();
    let recorded = recorded_spend(&out, &lines, Allocation::FirstCome).unwrap();
    assert_eq!(recorded.total_tokens(), 26);
    assert_eq!(ledger_lines(&out).len(), 2);
}

#[tokio::test]
async fn the_calls_of_a_problem_with_a_line_are_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let problems = numbered(3);
    let run = |budget: u64| {
        let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["0123456789"; 3]));
        let runner = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
            .with_run_budget(Budget::unlimited().with_max_tokens(budget));
        (backend, runner)
    };
    let (_, runner) = run(26);
    let summary = runner.run(&problems, &out, |_| {}).await.unwrap();
    assert_eq!((summary.solved, summary.not_started), (2, 1));
    // Each line names the attempt whose call the ledger records.
    let lines = read_results(&out).unwrap();
    let calls = ledger_lines(&out);
    assert_eq!(calls.len(), 2);
    for (line, call) in lines.iter().zip(&calls) {
        assert_eq!((line.attempt, &line.id), (Some(call.attempt), &call.id));
        assert_eq!(line.usage.total_tokens(), call.usage.total_tokens());
    }
    let recorded = recorded_spend(&out, &lines, Allocation::FirstCome).unwrap();
    assert_eq!(recorded.total_tokens(), 26);
    // 13 more pay for p3 (counting p1's and p2's calls twice would leave none).
    let (backend, runner) = run(39);
    let summary = runner.run(&problems, &out, |_| {}).await.unwrap();
    assert_eq!((summary.resumed, summary.solved), (2, 1));
    assert_eq!(prompts(&backend), ["Q3?"]);
}

#[tokio::test]
async fn a_results_file_without_a_ledger_resumes_and_a_half_written_ledger_line_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    // Written before the ledger: lines without attempts, no ledger beside them.
    let old = ResultLine {
        usage: Usage {
            prompt_tokens: 3,
            completion_tokens: 10,
            calls: 1,
            ..Usage::default()
        },
        ..serde_json::from_str(&line("p1")).unwrap()
    };
    std::fs::write(&out, format!("{}\n", serde_json::to_string(&old).unwrap())).unwrap();
    let ledger = spend_path(&out);
    assert!(!ledger.exists());
    let recorded =
        recorded_spend(&out, &read_results(&out).unwrap(), Allocation::FirstCome).unwrap();
    assert_eq!(recorded.total_tokens(), 13);
    let run = |budget: u64| {
        let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["0123456789"; 2]));
        let runner = Runner::new(Arc::new(OneCall), Arc::clone(&backend) as Arc<dyn Backend>)
            .with_run_budget(Budget::unlimited().with_max_tokens(budget));
        (backend, runner)
    };
    let (backend, runner) = run(26);
    let summary = runner.run(&numbered(3), &out, |_| {}).await.unwrap();
    assert_eq!(
        (summary.resumed, summary.solved, summary.not_started),
        (1, 1, 1)
    );
    assert_eq!(prompts(&backend), ["Q2?"]);
    // A kill while writing a ledger line leaves half of it: cut off, the next line whole.
    let mut text = std::fs::read_to_string(&ledger).unwrap();
    assert_eq!(text.lines().count(), 1);
    text.push_str("{\"id\": \"p3\", \"attem");
    std::fs::write(&ledger, &text).unwrap();
    let (backend, runner) = run(39);
    let summary = runner.run(&numbered(3), &out, |_| {}).await.unwrap();
    assert_eq!(summary.solved, 1);
    assert_eq!(prompts(&backend), ["Q3?"]);
    let calls = ledger_lines(&out);
    assert_eq!(
        calls.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["p2", "p3"]
    );
    let recorded =
        recorded_spend(&out, &read_results(&out).unwrap(), Allocation::FirstCome).unwrap();
    assert_eq!(recorded.total_tokens(), 39);
}

#[tokio::test]
async fn a_spend_ledger_is_counted_only_for_the_configuration_that_made_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let problems = numbered(1);
    let run = |identity: &str| {
        let backend = Arc::new(crate::scripted::ScriptedBackend::new(vec!["0123456789"]));
        Runner::new(Arc::new(OneCall), backend as Arc<dyn Backend>)
            .with_identity(serde_json::json!({ "strategy": identity }))
    };
    // A ledger left beside no results and no record (deleted to start over): refused, not
    // counted against this run's budget.
    let entry = ledger::Entry {
        id: "p1".into(),
        attempt: 7,
        usage: Usage {
            prompt_tokens: 3,
            completion_tokens: 10,
            calls: 1,
            ..Usage::default()
        },
    };
    let ledger_path = ledger::path_of(&out);
    std::fs::write(
        &ledger_path,
        format!("{}\n", serde_json::to_string(&entry).unwrap()),
    )
    .unwrap();
    let err = run("a")
        .run(&problems, &out, |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("r.jsonl.spend.jsonl") && err.contains("Delete it too"),
        "{err}"
    );
    assert!(read_results(&out).unwrap().is_empty());
    assert!(!identity::path_of(&out).exists());
    // A run killed before its first line left its record and its calls: another
    // configuration is refused; the same one resumes.
    std::fs::remove_file(&ledger_path).unwrap();
    run("a").run(&problems, &out, |_| {}).await.unwrap();
    std::fs::remove_file(&out).unwrap();
    assert!(!ledger_lines(&out).is_empty());
    let err = run("b")
        .run(&problems, &out, |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("strategy") && err.contains("side files"),
        "{err}"
    );
    let summary = run("a").run(&problems, &out, |_| {}).await.unwrap();
    assert_eq!(summary.solved, 1);
}
