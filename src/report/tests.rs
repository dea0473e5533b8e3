//! Unit tests of the report: the last line per problem, regrading, budget cut-offs, routes,
//! coverage, the comparison across runs, labels and the plot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use ponder_engine::{Solution, StopReason, Usage};

fn line(id: &str, correct: Option<bool>, tokens: u64, error: bool) -> ResultLine {
    ResultLine {
        id: id.into(),
        strategy: "direct".into(),
        answer: Some("1".into()),
        reference: Some("1".into()),
        correct,
        usage: Usage {
            prompt_tokens: tokens / 2,
            completion_tokens: tokens - tokens / 2,
            calls: 1,
            elapsed_ms: 1000,
            ..Usage::default()
        },
        stop_reason: (!error).then_some(StopReason::Completed),
        details: serde_json::Value::Null,
        completion: String::new(),
        error: error.then(|| "backend gone".into()),
        allotted: None,
        triage: None,
        question_sha: None,
        cut_short: false,
        candidates: None,
        attempt: None,
        to_grade: None,
        grade_retried: false,
    }
}

#[test]
fn regrading_uses_this_grader_on_math_lines_only() {
    let graded = |id: &str, answer: &str, reference: Option<&str>, correct: bool| ResultLine {
        answer: Some(answer.into()),
        reference: reference.map(Into::into),
        ..line(id, Some(correct), 10, false)
    };
    let mut lines = vec![
        // An older grader missed plain-text sqrt; this one reads it.
        graded("a", "sqrt(3)/3", Some("\\frac{\\sqrt{3}}{3}"), false),
        // Recorded right, but the answer is not the reference.
        graded("b", "7", Some("8"), true),
        graded("c", "8", Some("8"), true),
        // A code problem: graded by its tests, kept.
        graded("d", "def f(): pass", None, true),
        // An earlier line of a problem that has a later one: regraded, not counted.
        graded("e", "2", Some("1"), true),
        graded("e", "1", Some("1"), true),
        line("f", None, 10, true),
    ];
    let changed = regrade(&mut lines, None);
    assert_eq!(
        changed,
        Regraded {
            graded: 4,
            now_right: 1,
            now_wrong: 1,
            ..Regraded::default()
        }
    );
    let correct: Vec<Option<bool>> = lines.iter().map(|l| l.correct).collect();
    let expected = [true, false, true, true, false, true].map(Some);
    assert_eq!(correct[..6], expected);
    assert_eq!(correct[6], None);
    let run = RunReport::from_lines("r", &lines);
    assert_eq!((run.graded, run.correct), (5, 4));

    // A code problem's line with a reference (its row had an `answer` field, in files written
    // before the loader dropped it) and no answer, passed by its tests: kept.
    let mut code = [ResultLine {
        answer: None,
        reference: Some("x".into()),
        ..line("g", Some(true), 10, false)
    }];
    assert_eq!(regrade(&mut code, None), Regraded::default());
    assert_eq!(code[0].correct, Some(true));
    // Passed by its tests, with a number an older ponder read from a candidate program.
    let mut code = [ResultLine {
        answer: None,
        reference: Some("x".into()),
        details: serde_json::json!({ "candidates": [{ "answer": "3" }, { "answer": null }] }),
        ..line("i", Some(true), 10, false)
    }];
    assert_eq!(regrade(&mut code, None), Regraded::default());
    assert_eq!(code[0].correct, Some(true));
    // Failed by its tests, its candidates (best-of-N over programs) listed without answers:
    // their grades stand.
    let mut code = [ResultLine {
        answer: None,
        reference: Some("x".into()),
        candidates: Some(CandidateGrades {
            graded: 4,
            right: 2,
        }),
        details: serde_json::json!({ "candidates": [
            { "answer": null }, { "answer": null }, { "answer": null }, { "answer": null }
        ] }),
        ..line("h", Some(false), 10, false)
    }];
    assert_eq!(regrade(&mut code, None), Regraded::default());
    assert_eq!(
        code[0].candidates,
        Some(CandidateGrades {
            graded: 4,
            right: 2
        })
    );
}

#[test]
fn regrading_against_a_problem_file_takes_its_references_where_the_question_is_the_same() {
    let problems = [
        ponder_engine::Problem::new("a", "Q a").with_reference("2"),
        ponder_engine::Problem::new("b", "Q b").with_reference("1"),
        ponder_engine::Problem::new("c", "Q c"),
    ];
    let references = References::of(&problems);
    let sha = |i: usize| Some(ponder_engine::runner::question_fingerprint(&problems[i]));
    let mut lines = vec![
        // Reference corrected from 1 to 2: the answer 1 is now wrong.
        ResultLine {
            question_sha: sha(0),
            ..line("a", Some(true), 10, false)
        },
        // Another question under the id: graded against the reference it records.
        ResultLine {
            question_sha: Some("0123456789abcdef".into()),
            ..line("b", Some(false), 10, false)
        },
        // Not in the file: graded against its own.
        line("d", Some(false), 10, false),
        // The file gives no reference now: no grade.
        ResultLine {
            question_sha: sha(2),
            ..line("c", Some(true), 10, false)
        },
    ];
    let changed = regrade(&mut lines, Some(&references));
    assert_eq!(
        changed,
        Regraded {
            graded: 3,
            now_right: 2,
            now_wrong: 1,
            references_changed: 1,
            not_in_problems: 1,
            other_question: 1,
            no_reference_now: 1,
            unfingerprinted: 0,
            newly_graded: 0,
            newly_right: 0,
        }
    );
    assert_eq!(lines[0].reference.as_deref(), Some("2"));
    // b keeps its own reference (1), and is graded against it.
    assert_eq!(lines[1].reference.as_deref(), Some("1"));
    let correct: Vec<Option<bool>> = lines.iter().map(|l| l.correct).collect();
    assert_eq!(correct, [Some(false), Some(true), Some(true), None]);

    // Error lines are not graded, and not counted however they were matched (not in the
    // file; by id alone).
    let mut errors = vec![line("d", None, 10, true), line("a", None, 10, true)];
    let changed = regrade(&mut errors, Some(&references));
    assert_eq!(changed, Regraded::default());
    assert!(errors.iter().all(|l| l.correct.is_none()));

    // A line graded for the first time: its listed candidates are graded too; a line without
    // a fingerprint is matched by id and said so.
    let mut first = vec![ResultLine {
        reference: None,
        correct: None,
        details: serde_json::json!({ "candidates": [{ "answer": "2" }, { "answer": "3" }] }),
        ..line("a", None, 10, false)
    }];
    let changed = regrade(&mut first, Some(&references));
    assert_eq!(
        (
            changed.references_changed,
            changed.unfingerprinted,
            changed.newly_graded,
            changed.newly_right
        ),
        (1, 1, 1, 0)
    );
    assert_eq!(first[0].correct, Some(false));
    assert_eq!(
        first[0].candidates,
        Some(CandidateGrades {
            graded: 2,
            right: 1
        })
    );
    // A math problem the file gives a reference first, answered by nothing: wrong, as a run
    // grades it. A code problem: as recorded, whatever the line says.
    let with_code = [
        ponder_engine::Problem::new("m", "Q m").with_reference("2"),
        ponder_engine::Problem {
            code: Some(ponder_engine::CodeTask {
                prompt: "def f():\n".into(),
                entry_point: "f".into(),
                test: "def check(c): pass\n".into(),
            }),
            ..ponder_engine::Problem::new("k", "def f():\n")
        },
    ];
    let mut lines = vec![
        ResultLine {
            answer: None,
            reference: None,
            correct: None,
            ..line("m", None, 10, false)
        },
        ResultLine {
            answer: None,
            reference: Some("x".into()),
            correct: Some(true),
            ..line("k", Some(true), 10, false)
        },
    ];
    let changed = regrade(&mut lines, Some(&References::of(&with_code)));
    assert_eq!(lines[0].correct, Some(false));
    assert_eq!(lines[1].correct, Some(true));
    assert_eq!((changed.graded, changed.newly_graded), (1, 1));
}

#[test]
fn regrading_grades_the_candidates_listed_in_the_details_again() {
    let with = |id: &str, answer: &str, candidates: serde_json::Value, right: usize| ResultLine {
        answer: Some(answer.into()),
        reference: Some("\\frac{\\sqrt{3}}{3}".into()),
        candidates: Some(CandidateGrades { graded: 3, right }),
        details: serde_json::json!({ "candidates": candidates }),
        ..line(id, Some(false), 10, false)
    };
    let listed = serde_json::json!([
        { "answer": "sqrt(3)/3", "score": 0.5, "tokens": 9 },
        { "answer": null, "score": null, "tokens": 9 },
        { "answer": "1/sqrt(3)", "score": 0.1, "tokens": 9 },
    ]);
    let mut lines = vec![
        // An older grader read none of the three forms; this one reads two.
        with("a", "sqrt(3)/3", listed, 0),
        // No answers listed: its own grade changed, so the old candidate grades go.
        with("b", "sqrt(3)/3", serde_json::json!("not a list"), 0),
        // No answers listed and its grade stands: they stay.
        with("c", "2", serde_json::Value::Null, 1),
        // One candidate, the answer itself (`direct`): graded as the answer now is, so
        // coverage never falls below accuracy.
        ResultLine {
            candidates: Some(CandidateGrades {
                graded: 1,
                right: 0,
            }),
            ..with("d", "sqrt(3)/3", serde_json::Value::Null, 0)
        },
    ];
    regrade(&mut lines, None);
    let grades: Vec<Option<CandidateGrades>> = lines.iter().map(|l| l.candidates).collect();
    assert_eq!(
        grades,
        [
            Some(CandidateGrades {
                graded: 3,
                right: 2
            }),
            None,
            Some(CandidateGrades {
                graded: 3,
                right: 1
            }),
            Some(CandidateGrades {
                graded: 1,
                right: 1
            }),
        ]
    );
    let run = RunReport::from_lines("r", &lines);
    assert_eq!((run.correct, run.with_candidates, run.covered), (3, 3, 3));
}

#[test]
fn the_last_line_of_a_problem_counts() {
    let lines = vec![
        line("a", None, 10, true),
        line("b", Some(false), 100, false),
        line("a", Some(true), 300, false),
        line("c", None, 50, true),
    ];
    let run = RunReport::from_lines("r", &lines);
    assert_eq!((run.problems, run.errors, run.solved()), (3, 1, 2));
    assert_eq!((run.graded, run.correct), (2, 1));
    assert_eq!(run.tokens, 400);
    assert_eq!(run.tokens_per_problem(), Some(200.0));
    assert_eq!(run.accuracy(), Some(0.5));
    // 1 of 2: Wilson's interval (Newcombe 1998, method 3).
    let (low, high) = run.interval().unwrap();
    assert!(
        (low - 0.0945).abs() < 5e-4 && (high - 0.9055).abs() < 5e-4,
        "{low} {high}"
    );
    assert_eq!(run.stop_reasons.get("completed"), Some(&2));
}

#[test]
fn problems_cut_short_by_the_run_budget_are_neither_solved_nor_errors() {
    let cut = |id: &str| ResultLine {
        answer: None,
        correct: None,
        cut_short: true,
        ..line(id, None, 40, true)
    };
    // "a" was cut, then solved by a rerun; "b" is still cut.
    let lines = vec![
        cut("a"),
        line("a", Some(true), 100, false),
        cut("b"),
        line("c", None, 10, true),
    ];
    let report = Comparison::new(vec![RunReport::from_lines("r", &lines)]);
    let run = &report.runs[0];
    assert_eq!(
        (run.problems, run.errors, run.cut_short, run.solved()),
        (3, 1, 1, 1)
    );
    assert_eq!((run.graded, run.correct, run.tokens), (1, 1, 100));
    let notes = report.notes().join("\n");
    assert!(
        notes.contains("r: 1 problem was cut short by the run's budget"),
        "{notes}"
    );
}

#[test]
fn unanswered_problems_count_as_wrong_beside_the_graded_accuracy() {
    // Two runs under one budget over a set of 10: one answered 4 (3 right) and never started
    // the rest, the other answered all 10 (5 right). Graded accuracy alone ranks the first
    // above; counting what each left unanswered ranks them as the budget spent them.
    let few: Vec<ResultLine> = (0..4)
        .map(|i| line(&format!("p{i}"), Some(i < 3), 10, false))
        .collect();
    let all: Vec<ResultLine> = (0..10)
        .map(|i| line(&format!("p{i}"), Some(i < 5), 10, false))
        .collect();
    let mut first = RunReport::from_lines("few", &few);
    first.set = Some(10);
    let mut second = RunReport::from_lines("all", &all);
    second.set = Some(10);
    assert_eq!(first.accuracy(), Some(0.75));
    assert_eq!(first.unanswered(), 6);
    assert_eq!(first.accuracy_with_unanswered(), Some((0.3, 10)));
    assert_eq!(second.unanswered(), 0);
    assert_eq!(second.accuracy_with_unanswered(), None);
    let comparison = Comparison::new(vec![first.clone(), second]);
    let table = comparison.table().to_string();
    assert!(
        table.contains("30.0% (3/10) counting 6 unanswered as wrong"),
        "{table}"
    );
    // Its interval in --json, as the plot draws it (3 of 10).
    let json = comparison.to_json();
    let interval = &json["runs"][0]["interval_counting_unanswered"];
    assert!(
        (interval[0].as_f64().unwrap() - 0.1078).abs() < 5e-4
            && (interval[1].as_f64().unwrap() - 0.6032).abs() < 5e-4,
        "{interval}"
    );
    assert!(json["runs"][1]["interval_counting_unanswered"].is_null());
    // Without a recorded set: errors and cut-short problems are the unanswered ones.
    first.set = None;
    let mut lines = few.clone();
    lines.push(line("p9", None, 10, true));
    let run = RunReport::from_lines("few", &lines);
    assert_eq!(run.unanswered(), 1);
    assert_eq!(run.accuracy_with_unanswered(), Some((0.6, 5)));
}

#[test]
fn the_plot_interval_is_wilsons() {
    // 20 of 20: [0.839, 1], not a bar of nothing.
    let (low, high) = wilson(1.0, 20);
    assert!((low - 0.8389).abs() < 1e-3 && high == 1.0, "{low} {high}");
    let (low, high) = wilson(0.5, 100);
    assert!((low - 0.4038).abs() < 1e-3 && (high - 0.5962).abs() < 1e-3);
}

#[test]
fn runs_with_one_label_are_told_apart() {
    let lines = vec![line("a", Some(true), 10, false)];
    let at = |path: &str| {
        let mut run = RunReport::from_lines("r", &lines);
        run.path = PathBuf::from(path);
        run
    };
    let report = Comparison::new(vec![
        at("base/r.jsonl"),
        at("tuned/r.jsonl"),
        at("tuned/r.jsonl"),
        at("other.jsonl"),
    ]);
    let labels: Vec<&str> = report.runs.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(labels, ["base/r", "tuned/r #2", "tuned/r #3", "r"]);
}

#[test]
fn adaptive_thinking_runs_count_their_routes() {
    let routed = |id: &str, route: &str, correct: bool| ResultLine {
        strategy: "router".into(),
        details: serde_json::json!({ "route": route, "why": "x" }),
        ..line(id, Some(correct), 10, false)
    };
    let unthought = ResultLine {
        triage: Some(ponder_engine::TriageNote {
            confidence: 0.1,
            why: "confidence 0.100 < 0.2".into(),
            second_stage: false,
            stages: 1,
        }),
        ..routed("e", "short", false)
    };
    let lines = vec![
        routed("a", "short", true),
        routed("b", "think", false),
        routed("c", "think", true),
        line("d", Some(true), 10, false),
        unthought,
    ];
    let run = RunReport::from_lines("r", &lines);
    assert_eq!(
        run.routes.get("think"),
        Some(&Route {
            problems: 2,
            graded: 2,
            correct: 1
        })
    );
    assert_eq!(run.routes.get("short").map(|r| r.correct), Some(1));
    let notes = Comparison::new(vec![run]).notes();
    assert!(
        notes.contains(
            &"r: routes: short 1 (1/1 right), short (no budget to think) 1 (0/1 right), think 2 (1/2 right)"
                .to_string()
        ),
        "{notes:?}"
    );
    // Other strategies' lines have no routes.
    let plain = RunReport::from_lines("p", &[line("d", Some(true), 10, false)]);
    assert!(plain.routes.is_empty());
}

#[test]
fn coverage_counts_the_problems_with_a_right_candidate() {
    let with = |id: &str, correct: bool, graded: usize, right: usize| ResultLine {
        candidates: Some(ponder_engine::CandidateGrades { graded, right }),
        ..line(id, Some(correct), 10, false)
    };
    let lines = vec![
        with("1", true, 4, 3),
        // All right (four copies of one answer, say): no choice to tell of.
        with("5", true, 4, 4),
        // A right candidate, the wrong one chosen.
        with("2", false, 4, 1),
        with("3", false, 4, 0),
        // A line from before candidates were graded: not counted either way.
        line("4", Some(true), 10, false),
    ];
    let run = RunReport::from_lines("s", &lines);
    assert_eq!(
        (run.with_candidates, run.covered, run.covered_correct),
        (4, 3, 2)
    );
    let plain = RunReport::from_lines("p", &[line("1", Some(true), 10, false)]);
    // One candidate a problem: its answer, no choice to tell of.
    let single = RunReport::from_lines("one", &[with("1", true, 1, 1)]);
    let comparison = Comparison::new(vec![run, plain, single]);
    let table = comparison.table().to_string();
    assert!(
        table.contains("any candidate right") && table.contains("75.0% (3/4)"),
        "{table}"
    );
    let notes = comparison.notes().join("\n");
    assert!(
        notes.contains(
            "s: of the 2 problems with both right and wrong candidates, the answer chosen was right in 1 (50.0%)"
        ) && !notes.contains("one: of the"),
        "{notes}"
    );
    // The same for scripts.
    let json = comparison.to_json();
    assert_eq!(
        json["runs"][0]["selection"],
        serde_json::json!({ "problems": 2, "right": 1 })
    );
}

#[test]
fn runs_compare_on_the_problems_all_graded() {
    let a = RunReport::from_lines(
        "a",
        &[
            line("1", Some(true), 10, false),
            line("2", Some(true), 10, false),
            line("3", Some(false), 10, false),
        ],
    );
    let b = RunReport::from_lines(
        "b",
        &[
            line("1", Some(false), 10, false),
            line("2", Some(true), 10, false),
        ],
    );
    let comparison = Comparison::new(vec![a, b]);
    assert_eq!(comparison.common, 2);
    assert_eq!(comparison.accuracy_on_common, vec![Some(1.0), Some(0.5)]);
    assert_eq!(
        comparison.head_to_head,
        Some(HeadToHead {
            both: 1,
            first_only: 1,
            second_only: 0,
            neither: 0
        })
    );
    let table = comparison.table().to_string();
    assert!(
        table.contains("on common") && table.contains("66.7% [20.8-93.9] (2/3)"),
        "{table}"
    );
    let notes = comparison.notes().join("\n");
    assert!(
        notes.contains(
            "only a 1, only b 0, neither 0; McNemar's exact test over the 1 problem \
             only one got right: p = 1.000, no difference beyond chance at 5%"
        ),
        "{notes}"
    );
    let p = comparison.to_json()["head_to_head"]["p_value"]
        .as_f64()
        .unwrap();
    assert!((p - 1.0).abs() < 1e-9, "{p}");
}

#[test]
fn head_to_head_tests_the_split_exactly() {
    let split = |first_only, second_only| HeadToHead {
        both: 7,
        first_only,
        second_only,
        neither: 9,
    };
    // 2 P(X <= 5), X ~ Binomial(15, 1/2) = 2 (1 + 15 + 105 + 455 + 1365 + 3003) / 2^15.
    assert!((split(10, 5).p_value() - 2.0 * 4944.0 / 32768.0).abs() < 1e-9);
    assert!((split(10, 5).p_value() - split(5, 10).p_value()).abs() < 1e-12);
    // 17 to 3 (the README's triage against even): 2 (1 + 20 + 190 + 1140) / 2^20.
    assert!((split(17, 3).p_value() - 2.0 * 1351.0 / 1048576.0).abs() < 1e-9);
    // An even split, or none, is no evidence either way.
    assert!((split(3, 3).p_value() - 1.0).abs() < 1e-9);
    assert_eq!(split(0, 0).p_value(), 1.0);
    // Large splits stay finite and small.
    let p = split(700, 500).p_value();
    assert!(p > 0.0 && p < 1e-7, "{p}");
    let one_sided = |a: usize, b: usize| {
        let mut a_runs = Vec::new();
        let mut b_runs = Vec::new();
        for i in 0..a + b {
            a_runs.push(line(&i.to_string(), Some(i < a), 10, false));
            b_runs.push(line(&i.to_string(), Some(i >= a), 10, false));
        }
        Comparison::new(vec![
            RunReport::from_lines("a", &a_runs),
            RunReport::from_lines("b", &b_runs),
        ])
        .notes()
        .join("\n")
    };
    let notes = one_sided(17, 3);
    assert!(
        notes.contains(
            "over the 20 problems only one got right: p = 0.003, a difference beyond chance at 5%"
        ),
        "{notes}"
    );
}

#[test]
fn the_same_id_on_different_questions_is_not_compared() {
    let asked = |id: &str, sha: &str, correct: bool| ResultLine {
        question_sha: Some(sha.into()),
        ..line(id, Some(correct), 10, false)
    };
    let a = RunReport::from_lines("a", &[asked("1", "aa", true), asked("2", "bb", true)]);
    let b = RunReport::from_lines("b", &[asked("1", "aa", false), asked("2", "cc", false)]);
    let comparison = Comparison::new(vec![a, b]);
    assert_eq!(comparison.mismatched, ["2"]);
    assert_eq!(comparison.common, 1);
    let notes = comparison.notes().join("\n");
    assert!(
        notes.contains("1 problem id graded in every run names different questions")
            && notes.contains("head to head on 1 problem:"),
        "{notes}"
    );
    let json = comparison.to_json();
    assert_eq!(json["mismatched"], serde_json::json!(["2"]));
    assert_eq!(json["runs"][0]["accuracy"], serde_json::json!(1.0));
    assert_eq!(json["runs"][1]["unanswered"], serde_json::json!(0));
    assert!(json["runs"][0]["interval"][0].as_f64().unwrap() < 1.0);
}

/// `dir/o.jsonl`: a results file of one right answer, without a side file.
fn one_line_results(dir: &Path) -> PathBuf {
    let out = dir.join("o.jsonl");
    let text = serde_json::to_string(&line("1", Some(true), 10, false)).unwrap();
    std::fs::write(&out, format!("{text}\n")).unwrap();
    out
}

/// The notes of a comparison of `run` alone.
fn notes_alone(run: RunReport) -> String {
    Comparison::new(vec![run]).notes().join("\n")
}

#[test]
fn a_results_file_without_its_side_file_says_unanswered_problems_may_be_missed() {
    let dir = tempfile::tempdir().unwrap();
    let out = one_line_results(dir.path());
    let alone = notes_alone(RunReport::load(&out, None).unwrap());
    assert!(
        alone.contains("no set size recorded (")
            && alone.contains("o.jsonl.config.json is missing)"),
        "{alone}"
    );
    // Damaged, or from before set sizes were recorded: said as such.
    std::fs::write(config_path(&out), "{\"strategy\": ").unwrap();
    let damaged = notes_alone(RunReport::load(&out, None).unwrap());
    assert!(
        damaged.contains("config.json is damaged, not the JSON a run writes"),
        "{damaged}"
    );
    std::fs::write(config_path(&out), "{\"strategy\": {}}").unwrap();
    let older = notes_alone(RunReport::load(&out, None).unwrap());
    assert!(older.contains("config.json predates set sizes)"), "{older}");
    // With the side file `ponder run` writes: a set of 3, so 2 were never started.
    std::fs::write(
        config_path(&out),
        format!("{{\"{}\": 3}}", ponder_engine::runner::PROBLEMS_IN_SET),
    )
    .unwrap();
    let run = RunReport::load(&out, None).unwrap();
    assert_eq!((run.set, run.unanswered()), (Some(3), 2));
    assert!(!notes_alone(run).contains("no set size recorded"));
}

#[test]
fn a_file_a_run_is_writing_is_told_as_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let out = one_line_results(dir.path());
    let idle = RunReport::load(&out, None).unwrap();
    assert!(!idle.in_progress);
    // As `ponder run` holds it while it writes.
    let writer = std::fs::OpenOptions::new().append(true).open(&out).unwrap();
    writer.lock().unwrap();
    let busy = RunReport::load(&out, None).unwrap();
    assert!(busy.in_progress);
    assert!(notes_alone(busy).contains("a run is writing this file now"));
    drop(writer);
    assert!(!RunReport::load(&out, None).unwrap().in_progress);
}

#[test]
fn the_plot_names_every_run() {
    let dir = tempfile::tempdir().unwrap();
    let runs = vec![
        RunReport::from_lines("cap 64", &[line("1", Some(true), 100, false)]),
        RunReport::from_lines("cap 256", &[line("1", Some(false), 900, false)]),
        RunReport::from_lines("all errors", &[line("1", None, 5, true)]),
    ];
    let svg = dir.path().join("plot.svg");
    let left_out = Comparison::new(runs).plot(&svg).unwrap();
    assert_eq!(
        left_out,
        ["all errors: not plotted: every problem failed (1 error)"]
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg"));
    assert!(text.contains("cap 64") && text.contains("cap 256"));
    assert!(!text.contains("all errors"));
    // The legend says what each point is over; the token axis is labelled from the power of
    // ten below the least spend to the one above the most (100 and 900 tokens: 10 to 1000, ticks
    // at 1, 2 and 5 of each).
    assert!(text.contains("100.0% of 1 problem, 100 tokens"), "{text}");
    for tick in ["10", "20", "50", "100", "200", "500", "1k"] {
        assert!(
            text.contains(&format!(">\n{tick}\n</text>")),
            "{tick}: {text}"
        );
    }
    let none = Comparison::new(vec![RunReport::from_lines(
        "x",
        &[line("1", None, 5, true)],
    )]);
    assert!(none
        .plot(&svg)
        .unwrap_err()
        .to_string()
        .contains("no run to plot: x: not plotted: every problem failed (1 error)"),);
    // A run whose every problem failed but whose spend is known is not a point at 0% either.
    let mut down = RunReport::from_lines("down", &[line("1", None, 5, true)]);
    down.spent = Some(Usage {
        prompt_tokens: 5,
        ..Usage::default()
    });
    let up = RunReport::from_lines("up", &[line("1", Some(true), 100, false)]);
    let left_out = Comparison::new(vec![down, up]).plot(&svg).unwrap();
    assert_eq!(
        left_out,
        ["down: not plotted: every problem failed (1 error)"]
    );
}

#[test]
fn a_server_asked_for_its_default_model_is_named_by_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.jsonl");
    let model_of_config = |model: &str| {
        let toml = format!("[model]\n{model}\n[strategy]\nkind = \"direct\"\n");
        let config: crate::Config =
            ponder_engine::config::parse_str(&toml, ponder_engine::config::Format::Toml).unwrap();
        std::fs::write(config_path(&out), config.identity().to_string()).unwrap();
        side_file(&out).ok().as_ref().and_then(model_of)
    };
    let openai = "backend = \"openai\"\nbase_url = ";
    assert_eq!(
        model_of_config(&format!("{openai}\"http://a:8000/v1\"")).as_deref(),
        Some("http://a:8000/v1")
    );
    assert_eq!(
        model_of_config(&format!("{openai}[\"http://a:8000\", \"http://b:8000\"]")).as_deref(),
        Some("http://a:8000,http://b:8000")
    );
    assert_eq!(
        model_of_config(&format!("{openai}\"http://a:8000\"\nmodel = \"qwen\"")).as_deref(),
        Some("qwen")
    );
    assert_eq!(
        model_of_config("source = \"smollm2-135m\"").as_deref(),
        Some("smollm2-135m")
    );
}

#[test]
fn the_token_axis_spans_whole_powers_of_ten_with_no_run_at_zero() {
    let axis = |tokens: &[u64]| {
        let (range, ticks) = axis_of(tokens);
        (range.start, range.end, ticks.len())
    };
    // 172 to 319 tokens: 100 to 1000, ticks 100, 200, 500 and 1000.
    assert_eq!(axis(&[172, 319]), (100.0, 1000.0, 4));
    // No tokens at all: plotted at 1, on an axis from 0.1, off the y axis.
    let (low, high, ticks) = axis(&[0]);
    assert!(
        (low - 0.1).abs() < 1e-12 && high == 10.0 && ticks == 7,
        "{low} {high} {ticks}"
    );
}

#[test]
fn tick_labels_stay_apart_over_many_powers_of_ten() {
    assert_eq!(tokens_label(500.0), "500");
    assert_eq!(tokens_label(2000.0), "2k");
    assert_eq!(tokens_label(1_500_000.0), "1.5M");
    assert_eq!(tokens_label(0.5), "0.5");
    assert_eq!(tokens_label(0.0), "0");
    let axis = |tokens: &[u64]| axis_of(tokens).1;
    // 100 to 900,000 tokens: five powers from 10, a tick at each.
    assert_eq!(
        axis(&[100, 900_000]),
        [10.0, 100.0, 1e3, 1e4, 1e5, 1e6].to_vec()
    );
    // Past six powers, every other one: 0.1, 10, 1k, 100k, 10M.
    assert_eq!(axis(&[1, 9_000_000]).len(), 5);
}

/// The token axis of a plot of one-problem runs that spent `tokens` each.
fn axis_of(tokens: &[u64]) -> (std::ops::Range<f64>, Vec<f64>) {
    let runs: Vec<RunReport> = tokens
        .iter()
        .map(|&t| RunReport::from_lines("r", &[line("1", Some(true), t, false)]))
        .collect();
    let points: Vec<Point<'_>> = runs
        .iter()
        .map(|run| Point {
            run,
            problems: 1,
            tokens: run.tokens_per_problem().unwrap(),
            accuracy: 100.0,
            interval: (50.0, 100.0),
        })
        .collect();
    token_axis(&points)
}

#[test]
fn the_spend_counts_every_attempt_and_the_plot_places_a_run_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.jsonl");
    let cut = ResultLine {
        answer: None,
        correct: None,
        cut_short: true,
        ..line("2", None, 30, true)
    };
    // "1" failed (40 tokens), then was answered right (100); "2" was cut short (30); "3" and
    // "4" have no line.
    let lines = [
        line("1", None, 40, true),
        line("1", Some(true), 100, false),
        cut,
    ];
    let text: String = lines
        .iter()
        .map(|l| serde_json::to_string(l).unwrap() + "\n")
        .collect();
    std::fs::write(&out, text).unwrap();
    let set = |allocation: &str| {
        format!(
            "{{\"{}\": 4{allocation}}}",
            ponder_engine::runner::PROBLEMS_IN_SET
        )
    };
    std::fs::write(config_path(&out), set("")).unwrap();
    // The ledger: an attempt at "3" killed in flight after a call of 20 tokens.
    std::fs::write(
        dir.path().join("o.jsonl.spend.jsonl"),
        "{\"id\": \"3\", \"attempt\": 7, \"usage\": {\"prompt_tokens\": 12, \"completion_tokens\": 8, \"calls\": 1}}\n",
    )
    .unwrap();
    // Under triage, "4"'s kept first stage (25 tokens) counts too; not otherwise.
    let stage = Solution {
        strategy: "router".into(),
        answer: Some("5".into()),
        completion: "5".into(),
        candidates: Vec::new(),
        stop_reason: StopReason::Completed,
        usage: Usage {
            prompt_tokens: 20,
            completion_tokens: 5,
            calls: 1,
            ..Usage::default()
        },
        details: serde_json::Value::Null,
        trace: None,
    };
    let side = serde_json::json!({
        "id": "4", "first": stage, "pending": { "confidence": 0.1, "why": "unsure" }
    });
    std::fs::write(dir.path().join("o.jsonl.triage.jsonl"), format!("{side}\n")).unwrap();

    let run = RunReport::load(&out, None).unwrap();
    assert_eq!(run.spent.map(|u| u.total_tokens()), Some(190));
    assert_eq!((run.tokens, run.spent_elsewhere()), (100, Some(90)));
    assert_eq!(run.spent_per_problem(), Some(47.5));
    assert_eq!(run.tokens_per_problem(), Some(100.0));
    let notes = notes_alone(run.clone());
    assert!(
        notes.contains("o: 190 tokens spent in all, 48 per problem of the set of 4")
            && notes.contains("90 of them on no answer that counts"),
        "{notes}"
    );
    let json = Comparison::new(vec![run.clone()]).to_json();
    assert_eq!(
        json["runs"][0]["spent_per_problem"],
        serde_json::json!(47.5)
    );
    assert_eq!(json["runs"][0]["spent"]["calls"], serde_json::json!(4));
    // The plot places the run by what it spent over the set: 1 right of 4, at 48 tokens.
    let svg = dir.path().join("plot.svg");
    Comparison::new(vec![run]).plot(&svg).unwrap();
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(drawn.contains("25.0% of 4 problems, 48 tokens"), "{drawn}");

    std::fs::write(
        config_path(&out),
        set(", \"allocation\": {\"triage\": {\"max_run_tokens\": 500}}"),
    )
    .unwrap();
    let triage = RunReport::load(&out, None).unwrap();
    assert_eq!(triage.spent.map(|u| u.total_tokens()), Some(215));
    // The record cut short (a full disk): triage's own file says how the run allocated.
    std::fs::write(config_path(&out), "{\"strategy\": {\"ki").unwrap();
    let cut = RunReport::load(&out, None).unwrap();
    assert_eq!(cut.spent.map(|u| u.total_tokens()), Some(215));

    // A damaged ledger: the spend is unknown, and said so; the report still reads.
    std::fs::write(dir.path().join("o.jsonl.spend.jsonl"), "not json\n").unwrap();
    let damaged = RunReport::load(&out, None).unwrap();
    assert_eq!(damaged.spent, None);
    let notes = notes_alone(damaged);
    assert!(
        notes.contains("what the run spent in all is unknown ("),
        "{notes}"
    );
}

#[test]
fn a_run_that_answered_its_whole_set_at_once_has_no_spend_note() {
    let dir = tempfile::tempdir().unwrap();
    let out = one_line_results(dir.path());
    std::fs::write(
        config_path(&out),
        format!("{{\"{}\": 1}}", ponder_engine::runner::PROBLEMS_IN_SET),
    )
    .unwrap();
    let run = RunReport::load(&out, None).unwrap();
    assert_eq!(run.spent_per_problem(), run.tokens_per_problem());
    assert_eq!(run.spent_elsewhere(), Some(0));
    assert!(!notes_alone(run).contains("spent in all"));
}

#[test]
fn tiny_p_values_are_not_printed_as_zero() {
    let mut a_runs = Vec::new();
    let mut b_runs = Vec::new();
    for i in 0..30 {
        a_runs.push(line(&i.to_string(), Some(true), 10, false));
        b_runs.push(line(&i.to_string(), Some(false), 10, false));
    }
    let notes = Comparison::new(vec![
        RunReport::from_lines("a", &a_runs),
        RunReport::from_lines("b", &b_runs),
    ])
    .notes()
    .join("\n");
    assert!(
        notes.contains("only one got right: p < 0.001, a difference"),
        "{notes}"
    );
}

#[test]
fn runs_under_a_budget_are_also_compared_over_the_whole_set() {
    // Set of 4. `a` answered 1 and 2 (both right), the budget left 3 and 4 unanswered; `b`
    // answered all four, 1 right, 2 wrong, 3 and 4 right. On the two both answered `a` leads
    // 1:0; over the set `b` does, 2:1, as the table's accuracy over the set (50% to 75%) says.
    let mut a = RunReport::from_lines(
        "a",
        &[
            line("1", Some(true), 10, false),
            line("2", Some(true), 10, false),
        ],
    );
    a.set = Some(4);
    let mut b = RunReport::from_lines(
        "b",
        &[
            line("1", Some(true), 10, false),
            line("2", Some(false), 10, false),
            line("3", Some(true), 10, false),
            line("4", Some(true), 10, false),
        ],
    );
    b.set = Some(4);
    let comparison = Comparison::new(vec![a.clone(), b.clone()]);
    let on_common = comparison.head_to_head.unwrap();
    assert_eq!((on_common.first_only, on_common.second_only), (1, 0));
    let over_set = comparison.head_to_head_over_set.unwrap();
    assert_eq!(
        (
            over_set.both,
            over_set.first_only,
            over_set.second_only,
            over_set.neither
        ),
        (1, 1, 2, 0)
    );
    let notes = comparison.notes().join("\n");
    assert!(
        notes.contains("head to head over the set of 4, an unanswered problem wrong: both right 1, only a 1, only b 2, neither 0"),
        "{notes}"
    );
    assert!(
        notes.contains("head to head on the 2 problems both answered (which a budget chose)"),
        "{notes}"
    );
    let json = comparison.to_json();
    assert!(
        json["head_to_head_over_set"]["p_value"].is_number(),
        "{json}"
    );

    // Sets of different sizes, or no set recorded: only the common problems.
    b.set = Some(5);
    assert!(Comparison::new(vec![a.clone(), b.clone()])
        .head_to_head_over_set
        .is_none());
    b.set = None;
    assert!(Comparison::new(vec![a, b]).head_to_head_over_set.is_none());

    // Problems in common naming different questions: not runs over one set.
    let mut c = RunReport::from_lines("c", &[line("1", Some(true), 10, false)]);
    let mut d = RunReport::from_lines("d", &[line("1", Some(true), 10, false)]);
    c.questions.insert("1".into(), "aaa".into());
    d.questions.insert("1".into(), "bbb".into());
    c.set = Some(4);
    d.set = Some(4);
    assert!(Comparison::new(vec![c, d]).head_to_head_over_set.is_none());

    // Nothing in common: no head to head at all, rather than a split of zeros.
    let mut c = RunReport::from_lines("c", &[line("9", Some(true), 10, false)]);
    let mut d = RunReport::from_lines("d", &[line("8", Some(true), 10, false)]);
    c.set = Some(4);
    d.set = Some(4);
    let comparison = Comparison::new(vec![c, d]);
    assert!(comparison.head_to_head.is_none());
    assert!(comparison.head_to_head_over_set.is_none());
    assert!(comparison.to_json()["head_to_head"].is_null());
}

#[test]
fn a_problem_answered_twice_and_answers_with_failed_calls_are_said() {
    let mut degraded = line("2", Some(true), 10, false);
    degraded.details = serde_json::json!({"failed": ["a server said 400"]});
    // A router's thinking records its failures in its own details (helper-125).
    let mut routed = line("4", Some(true), 10, false);
    routed.details = serde_json::json!({"route": "think", "think": {"failed": ["refused"]}});
    let mut clean = line("5", Some(true), 10, false);
    clean.details = serde_json::json!({"think": {"failed": []}, "candidates": [{"failed": 1}]});
    let lines = vec![
        line("1", None, 10, true),
        line("1", Some(true), 10, false),
        degraded,
        line("3", Some(true), 10, false),
        line("3", Some(false), 10, false),
        routed,
        clean,
    ];
    let run = RunReport::from_lines("r", &lines);
    // An error redone is not an answer given twice; 3 is.
    assert_eq!((run.answered_again, run.with_failed_calls), (1, 2));
    let notes = Comparison::new(vec![run]).notes().join("\n");
    assert!(
        notes.contains("r: 1 problem has a line after an answer"),
        "{notes}"
    );
    assert!(
        notes.contains("r: 2 problems had calls that failed on their own"),
        "{notes}"
    );
}

#[test]
fn a_file_given_twice_is_said() {
    let dir = tempfile::tempdir().unwrap();
    let out = one_line_results(dir.path());
    let again = dir.path().join(".").join("o.jsonl");
    let notes = Comparison::new(vec![
        RunReport::load(&out, None).unwrap(),
        RunReport::load(&again, None).unwrap(),
    ])
    .notes()
    .join("\n");
    assert!(
        notes.contains("o.jsonl: given more than once (compared with itself)"),
        "{notes}"
    );
    let other = dir.path().join("p.jsonl");
    std::fs::copy(&out, &other).unwrap();
    let notes = Comparison::new(vec![
        RunReport::load(&out, None).unwrap(),
        RunReport::load(&other, None).unwrap(),
    ])
    .notes()
    .join("\n");
    assert!(!notes.contains("given more than once"), "{notes}");
}

#[test]
fn a_results_file_named_in_bytes_other_than_utf8_is_still_reported_in_json() {
    use std::os::unix::ffi::OsStrExt;
    let mut run = RunReport::from_lines("r", &[line("a", Some(true), 10, false)]);
    run.path = PathBuf::from(std::ffi::OsStr::from_bytes(b"r\xff.jsonl"));
    let json = Comparison::new(vec![run]).to_json();
    // serde refuses such a path: the whole report was `null`.
    assert_eq!(
        json["runs"][0]["path"],
        serde_json::json!("r\u{fffd}.jsonl")
    );
    assert_eq!(json["runs"][0]["solved"], serde_json::json!(1));
}
