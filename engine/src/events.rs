//! Events: what a solve does, as it happens.
//!
//! A search can run for minutes on one problem; its [`Solution`](crate::Solution) says what it
//! did only at the end. Events say it live: every backend call and what it cost (from the
//! context's meter, the one place calls are counted), and each strategy's decisions (a route
//! taken, a round of samples and how the vote stands, a beam step, a test run, a comparison, the
//! selection). A [`Context`](crate::Context) made with [`Events`] sends them to an
//! [`EventSink`]: a closure, a tokio channel, or an [`EventLog`] file of JSON lines.
//!
//! ```
//! use std::sync::Arc;
//! use ponder_engine::{Event, EventSink, Events};
//!
//! let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
//! let events = Events::new(Arc::new(tx), "q1");
//! events.emit("best_of_n", ponder_engine::EventKind::Started);
//! assert_eq!(rx.try_recv().unwrap().problem, "q1");
//! ```
//!
//! Without a sink (the default) nothing is built or sent.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::budget::Resource;
use crate::error::{Error, Result};
use crate::solution::StopReason;

/// Where events go. Implemented for closures taking `&Event`, for tokio's unbounded senders,
/// and by [`EventLog`]. Called on the solving task: it must not block for long.
pub trait EventSink: Send + Sync {
    /// Takes one event.
    fn emit(&self, event: &Event);
}

impl<F: Fn(&Event) + Send + Sync> EventSink for F {
    fn emit(&self, event: &Event) {
        self(event);
    }
}

impl EventSink for tokio::sync::mpsc::UnboundedSender<Event> {
    fn emit(&self, event: &Event) {
        // A receiver that has gone away no longer wants them.
        let _ = self.send(event.clone());
    }
}

/// One thing that happened while solving a problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The problem's id.
    pub problem: String,
    /// The strategy that did it (`None` for calls, which the meter reports, and for the
    /// runner's own events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// Milliseconds since the solve started (in a batch run: since the run started).
    pub ms: u64,
    /// In a batch run, the attempt at the problem, as its results line (`attempt`) and the
    /// spend ledger name it: a resumed run's events of a problem tell its attempts apart
    /// (a killed attempt's calls from the one whose line counts them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u64>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened; serialized with its name under `"event"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The runner started a problem (or, under triage, its second stage).
    Started,
    /// A backend call came back.
    Call {
        /// Completions asked for.
        n: usize,
        /// Prompt tokens sent.
        prompt_tokens: u64,
        /// Completion tokens generated, over all `n`.
        completion_tokens: u64,
        /// How long the call took.
        call_ms: u64,
        /// Tokens (prompt and completion) spent so far by the context that made the call (the
        /// problem's solve; under triage, its stage), this call included.
        spent: u64,
    },
    /// A budget refused a call, shortened it, or its deadline ended it (shown as "stopped").
    Limited {
        /// The resource that ran out.
        resource: Resource,
        /// The most tokens each completion may have now, for a shortened call (`None`: the
        /// call was refused or ended).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_tokens: Option<usize>,
    },
    /// A router chose whether to think.
    Routed {
        /// `short` or `think`; `short (no budget to think)` after a `think` whose thinking the
        /// budget refused (a plain solve's; a triage run records such a stage kept); mode_token's
        /// `none` where the model wrote neither mode token.
        route: String,
        /// Why, in words.
        why: String,
    },
    /// Budget forcing finished a sample's thinking.
    Thought {
        /// Tokens of thinking (forced waits included).
        thinking_tokens: usize,
        /// Wait strings inserted.
        waits: usize,
        /// Whether the cap forced the end of thinking.
        forced_end: bool,
    },
    /// Best-of-N drew a round of samples.
    Round {
        /// Samples drawn so far.
        samples: usize,
        /// Samples it may draw in all.
        of: usize,
        /// The answer leading the vote.
        leader: Option<String>,
        /// The leader's share of the vote (of the reward, when weighted; the best reward, for
        /// `naive`).
        share: f64,
        /// Whether the vote is settled (adaptive sampling stops).
        decided: bool,
    },
    /// Beam search or DVTS finished a step.
    Step {
        /// The step, from 1.
        step: usize,
        /// Steps it may take.
        of: usize,
        /// Candidate steps generated and scored.
        expanded: usize,
        /// Beams kept for the next step.
        kept: usize,
        /// Solutions finished so far.
        finished: usize,
        /// The best aggregate score among the kept and finished.
        best_score: Option<f64>,
    },
    /// S* ran a sample's code against the public tests.
    Tested {
        /// The sample, from 0.
        sample: usize,
        /// 0 for the sample as drawn, then one per round of debugging.
        round: usize,
        /// Tests passed.
        passed: usize,
        /// Tests run.
        total: usize,
    },
    /// S* compared two samples on inputs the model wrote.
    Compared {
        /// The samples compared.
        a: usize,
        /// The samples compared.
        b: usize,
        /// Inputs on which their outputs differed.
        differing: usize,
        /// The one the judge preferred, if any (see S*'s `Comparison::winner`).
        winner: Option<usize>,
    },
    /// A strategy chose its answer among candidates.
    Selected {
        /// The answer chosen.
        answer: Option<String>,
        /// Candidates it chose among.
        candidates: usize,
        /// How, in words.
        why: String,
    },
    /// Anything else a strategy reports (strategies written outside ponder).
    Custom {
        /// What happened, in a word or two.
        name: String,
        /// Its particulars.
        #[serde(default)]
        data: serde_json::Value,
    },
    /// Under triage: the first stage asked for a second, which waits for the others' first
    /// stages.
    Deferred {
        /// How sure the first stage is, in [0, 1].
        confidence: f64,
        /// Why it wants more.
        why: String,
    },
    /// The runner recorded the problem's result.
    Finished {
        /// The final answer.
        answer: Option<String>,
        /// Whether it was right (when graded).
        correct: Option<bool>,
        /// Why the strategy stopped.
        stop_reason: StopReason,
        /// Tokens the problem spent (prompt and completion).
        tokens: u64,
    },
    /// The run's budget cut the problem short: its line records only what it spent (no answer),
    /// so a resumed run redoes it.
    Cut,
    /// The runner could not solve or grade the problem (recorded; retried on resume).
    Failed {
        /// What went wrong.
        error: String,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:>7.1}s] {}", self.ms as f64 / 1000.0, self.problem)?;
        if let Some(strategy) = &self.strategy {
            write!(f, " {strategy}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let answer = |a: &Option<String>| a.clone().unwrap_or_else(|| "(none)".into());
        match self {
            Self::Started => f.write_str("started"),
            Self::Call {
                n,
                prompt_tokens,
                completion_tokens,
                call_ms,
                spent,
            } => {
                write!(
                    f,
                    "call: {prompt_tokens} prompt + {completion_tokens} completion tokens"
                )?;
                if *n > 1 {
                    write!(f, " over {n} samples")?;
                }
                write!(f, " in {:.1}s; {spent} spent", *call_ms as f64 / 1000.0)
            }
            Self::Limited {
                resource,
                max_tokens: Some(max),
            } => write!(f, "call shortened to {max} tokens: little {resource} left"),
            Self::Limited {
                resource,
                max_tokens: None,
            } => write!(f, "call stopped: out of {resource}"),
            Self::Routed { route, why } => write!(f, "route {route}: {why}"),
            Self::Thought {
                thinking_tokens,
                waits,
                forced_end,
            } => write!(
                f,
                "thought {thinking_tokens} tokens, {waits} wait(s){}",
                if *forced_end { ", end forced" } else { "" }
            ),
            Self::Round {
                samples,
                of,
                leader,
                share,
                decided,
            } => write!(
                f,
                "{samples} of {of} samples; {} leads with {share:.2} of the vote{}",
                answer(leader),
                if *decided { ", decided" } else { "" }
            ),
            Self::Step {
                step,
                of,
                expanded,
                kept,
                finished,
                best_score,
            } => {
                write!(
                    f,
                    "step {step}/{of}: {expanded} expanded, {kept} kept, {finished} finished"
                )?;
                match best_score {
                    Some(score) => write!(f, ", best {score:.3}"),
                    None => Ok(()),
                }
            }
            Self::Tested {
                sample,
                round,
                passed,
                total,
            } => write!(
                f,
                "sample {sample} round {round}: {passed}/{total} public tests"
            ),
            Self::Compared {
                a,
                b,
                differing,
                winner,
            } => match winner {
                Some(winner) => write!(
                    f,
                    "compared {a} and {b}: {differing} differing input(s), {winner} preferred"
                ),
                None => write!(
                    f,
                    "compared {a} and {b}: {differing} differing input(s), no verdict"
                ),
            },
            Self::Selected {
                answer: chosen,
                candidates,
                why,
            } => match chosen {
                // "selected 5 of 4 candidates" would read as a count.
                Some(chosen) => write!(f, "selected `{chosen}` of {candidates} candidates: {why}"),
                // A program, or no candidate with an answer.
                None => write!(f, "selected one of {candidates} candidates: {why}"),
            },
            Self::Custom { name, data } if data.is_null() => f.write_str(name),
            Self::Custom { name, data } => write!(f, "{name}: {data}"),
            Self::Deferred { confidence, why } => {
                write!(f, "deferred (confidence {confidence:.3}): {why}")
            }
            Self::Finished {
                answer: final_answer,
                correct,
                stop_reason,
                tokens,
            } => {
                // Graded without an answer: a program, or no answer (wrong).
                match (final_answer, correct) {
                    (Some(a), _) => write!(f, "finished: {a}")?,
                    (None, Some(_)) => f.write_str("finished")?,
                    (None, None) => f.write_str("finished: no answer")?,
                }
                match correct {
                    Some(true) => f.write_str(" (right)")?,
                    Some(false) => f.write_str(" (wrong)")?,
                    None => {}
                }
                write!(
                    f,
                    ", {tokens} tokens, {}",
                    crate::runner::stop_reason_name(*stop_reason)
                )
            }
            Self::Cut => {
                f.write_str("cut short by the run's budget: its spend recorded, redone on resume")
            }
            Self::Failed { error } => write!(f, "failed: {error}"),
        }
    }
}

/// One problem's events: where they go and when its clock started. Cheap to clone; the default
/// sends nothing.
#[derive(Clone, Default)]
pub struct Events {
    to: Option<Arc<To>>,
}

struct To {
    sink: Arc<dyn EventSink>,
    problem: String,
    started: Instant,
    attempt: Option<u64>,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.to {
            Some(to) => f
                .debug_struct("Events")
                .field("problem", &to.problem)
                .finish(),
            None => f.write_str("Events(off)"),
        }
    }
}

impl Events {
    /// Events of `problem`, sent to `sink`; the clock starts now.
    pub fn new(sink: Arc<dyn EventSink>, problem: impl Into<String>) -> Self {
        Self::since(sink, problem, Instant::now())
    }

    /// Events of `problem`, sent to `sink`, timed from `started` (a batch's start, so that
    /// events of problems solved at once line up).
    pub fn since(sink: Arc<dyn EventSink>, problem: impl Into<String>, started: Instant) -> Self {
        Self {
            to: Some(Arc::new(To {
                sink,
                problem: problem.into(),
                started,
                attempt: None,
            })),
        }
    }

    /// These events, each naming `attempt` (a batch run's attempt at the problem).
    pub fn with_attempt(&self, attempt: Option<u64>) -> Self {
        Self {
            to: self.to.as_ref().map(|to| {
                Arc::new(To {
                    sink: Arc::clone(&to.sink),
                    problem: to.problem.clone(),
                    started: to.started,
                    attempt,
                })
            }),
        }
    }

    /// No events.
    pub fn off() -> Self {
        Self::default()
    }

    /// Whether events go anywhere (to skip work that only builds an event).
    pub fn is_on(&self) -> bool {
        self.to.is_some()
    }

    /// Sends `kind`, done by `strategy` (empty: the meter's or the runner's own).
    pub fn emit(&self, strategy: &str, kind: EventKind) {
        let Some(to) = &self.to else {
            return;
        };
        let event = Event {
            problem: to.problem.clone(),
            strategy: (!strategy.is_empty()).then(|| strategy.to_string()),
            ms: u64::try_from(to.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            attempt: to.attempt,
            kind,
        };
        to.sink.emit(&event);
    }
}

/// A file of events, one JSON object a line, appended to and flushed line by line (a run killed
/// midway keeps what it logged; a resumed one appends). Each line also has `unix_ms`, the wall
/// clock when it was written: `ms` counts from each run's start, so a resumed run's events are
/// told from the earlier run's by it. Write errors do not stop the solve: the first is kept
/// for [`EventLog::finish`].
#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
    state: Mutex<LogState>,
}

#[derive(Debug)]
struct LogState {
    file: std::fs::File,
    error: Option<std::io::Error>,
}

impl EventLog {
    /// Opens `path` for appending (creating it).
    pub fn append(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            state: Mutex::new(LogState { file, error: None }),
        })
    }

    /// The first write error, if any.
    pub fn finish(&self) -> Result<()> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match state.error.take() {
            Some(e) => Err(Error::io(&self.path, e)),
            None => Ok(()),
        }
    }
}

impl EventSink for EventLog {
    fn emit(&self, event: &Event) {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut line = match serde_json::to_value(event) {
            Ok(serde_json::Value::Object(mut fields)) => {
                fields.insert("unix_ms".into(), unix_ms.into());
                serde_json::Value::Object(fields).to_string()
            }
            // Plain data, an object: cannot fail.
            _ => return,
        };
        line.push('\n');
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.error.is_some() {
            return;
        }
        // One write of a whole line: lines from concurrent problems never interleave.
        if let Err(e) = state.file.write_all(line.as_bytes()) {
            state.error = Some(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_json_lines_with_their_name_under_event() {
        let event = Event {
            problem: "p1".into(),
            strategy: Some("best_of_n".into()),
            ms: 1500,
            attempt: None,
            kind: EventKind::Round {
                samples: 4,
                of: 8,
                leader: Some("42".into()),
                share: 0.75,
                decided: false,
            },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"problem": "p1", "strategy": "best_of_n", "ms": 1500,
                "event": "round", "samples": 4, "of": 8, "leader": "42", "share": 0.75,
                "decided": false})
        );
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
        assert_eq!(
            event.to_string(),
            "[    1.5s] p1 best_of_n: 4 of 8 samples; 42 leads with 0.75 of the vote"
        );
        let call = Event {
            problem: "p1".into(),
            strategy: None,
            ms: 0,
            attempt: None,
            kind: EventKind::Started,
        };
        assert_eq!(
            serde_json::to_string(&call).unwrap(),
            r#"{"problem":"p1","ms":0,"event":"started"}"#
        );
        // A batch run's: with the attempt.
        let attempted = Event {
            attempt: Some(77),
            ..call
        };
        assert_eq!(
            serde_json::to_string(&attempted).unwrap(),
            r#"{"problem":"p1","ms":0,"attempt":77,"event":"started"}"#
        );
    }

    #[test]
    fn an_ending_without_an_answer_says_so_and_a_graded_program_shows_only_its_grade() {
        let finished = |answer: Option<&str>, correct| EventKind::Finished {
            answer: answer.map(str::to_string),
            correct,
            stop_reason: StopReason::Completed,
            tokens: 40,
        };
        let told = [
            (
                finished(Some("7"), Some(true)),
                "finished: 7 (right), 40 tokens, completed",
            ),
            (
                finished(None, Some(true)),
                "finished (right), 40 tokens, completed",
            ),
            (
                finished(None, None),
                "finished: no answer, 40 tokens, completed",
            ),
        ];
        for (kind, text) in told {
            assert_eq!(kind.to_string(), text);
        }
        let selected = |answer: Option<&str>| EventKind::Selected {
            answer: answer.map(str::to_string),
            candidates: 4,
            why: "most public tests".into(),
        };
        assert_eq!(
            selected(None).to_string(),
            "selected one of 4 candidates: most public tests"
        );
        assert_eq!(
            selected(Some("5")).to_string(),
            "selected `5` of 4 candidates: most public tests"
        );
    }

    #[test]
    fn a_log_appends_whole_lines_and_keeps_its_first_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "{\"earlier\":true}\n").unwrap();
        let log = Arc::new(EventLog::append(&path).unwrap());
        let events = Events::new(Arc::clone(&log) as Arc<dyn EventSink>, "p");
        events.emit("", EventKind::Started);
        events.emit(
            "router",
            EventKind::Routed {
                route: "think".into(),
                why: "unsure".into(),
            },
        );
        log.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let routed: Event = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(routed.strategy.as_deref(), Some("router"));
        assert!(matches!(routed.kind, EventKind::Routed { ref route, .. } if route == "think"));
        // The wall clock at each line, in milliseconds since 1970 (2026 is past 1.7e12).
        let line: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert!(
            line["unix_ms"]
                .as_u64()
                .is_some_and(|at| at > 1_700_000_000_000),
            "{line}"
        );

        // A write that fails: the solve goes on, the first error is kept for `finish`, and
        // nothing more is tried.
        let full = Arc::new(EventLog::append(Path::new("/dev/full")).unwrap());
        let events = Events::new(Arc::clone(&full) as Arc<dyn EventSink>, "p");
        events.emit("", EventKind::Started);
        events.emit("", EventKind::Started);
        let err = full.finish().unwrap_err().to_string();
        assert!(
            err.starts_with("/dev/full: No space left on device"),
            "{err}"
        );
        full.finish().unwrap();
    }

    #[tokio::test]
    async fn a_call_is_reported_once_however_deep_the_context_that_made_it() {
        use crate::backend::{Backend, GenerationRequest, Prompt};
        use crate::budget::Budget;
        use crate::scripted::ScriptedBackend;
        use crate::strategy::Context;

        let seen = crate::scripted::Recorder::new();
        // Tokens are bytes: a call is 1 prompt token + its reply.
        let backend = Arc::new(ScriptedBackend::new(vec!["abc", "de", "f"]));
        let cx = Context::with_events(
            backend as Arc<dyn Backend>,
            Budget::unlimited().with_max_tokens(9),
            seen.events_of("p"),
        );
        let ask = || GenerationRequest::new(Prompt::Text("q".into())).with_max_tokens(10);
        cx.backend().generate(ask()).await.unwrap();
        let grandchild = cx.child().child();
        grandchild.backend().generate(ask()).await.unwrap();
        grandchild.emit("inner", EventKind::Started);
        // 7 spent, 2 left: 1 completion token, then nothing.
        cx.backend().generate(ask()).await.unwrap();
        assert!(cx.backend().generate(ask()).await.is_err());

        let kinds: Vec<(Option<String>, EventKind)> = seen
            .events()
            .into_iter()
            .map(|e| e.strategy)
            .zip(seen.kinds("p"))
            .collect();
        let call = |completion_tokens, spent| EventKind::Call {
            n: 1,
            prompt_tokens: 1,
            completion_tokens,
            call_ms: 0,
            spent,
        };
        let limited = |max_tokens| {
            (
                None,
                EventKind::Limited {
                    resource: Resource::Tokens,
                    max_tokens,
                },
            )
        };
        // Every call asks for 10 tokens where the budget has fewer left: each is shortened to
        // what is left, then the last refused.
        assert_eq!(
            kinds,
            [
                limited(Some(8)),
                (None, call(3, 4)),
                limited(Some(4)),
                (None, call(2, 7)),
                (Some("inner".to_string()), EventKind::Started),
                limited(Some(1)),
                (None, call(1, 9)),
                limited(None),
            ]
        );
        assert_eq!(seen.events().len(), kinds.len(), "all of problem p");
    }

    #[tokio::test]
    async fn another_model_is_metered_and_reported_as_the_policy_is() {
        use crate::backend::{Backend, GenerationRequest, Prompt};
        use crate::budget::Budget;
        use crate::metered::{Meter, Metered};
        use crate::scripted::{Recorder, ScriptedBackend};
        use crate::strategy::{Context, Metering};

        // A run's meter below the problem's, as the batch runner sets it up.
        let run = Meter::new(Budget::unlimited().with_max_tokens(100));
        let below: Metering = {
            let run = Arc::clone(&run);
            Arc::new(move |b| Arc::new(Metered::with_meter(b, Arc::clone(&run))))
        };
        let policy = Arc::new(ScriptedBackend::new(vec!["ab"])) as Arc<dyn Backend>;
        let judge = Arc::new(ScriptedBackend::new(vec!["yes"])) as Arc<dyn Backend>;
        let seen = Recorder::new();
        let cx = Context::with_events(
            below(policy),
            Budget::unlimited().with_max_tokens(50),
            seen.events_of("p"),
        )
        .metered_below(below);
        let child = cx.child();
        let ask = || GenerationRequest::new(Prompt::Text("q".into())).with_max_tokens(10);
        // Tokens are bytes: 1 + 2, then 1 + 3 on the judge.
        child.backend().generate(ask()).await.unwrap();
        child.metered(judge).generate(ask()).await.unwrap();
        for (meter, what) in [
            (child.meter(), "child"),
            (cx.meter(), "problem"),
            (&run, "run"),
        ] {
            assert_eq!(meter.usage().total_tokens(), 7, "{what}");
            assert_eq!(meter.usage().calls, 2, "{what}");
        }
        let spent: Vec<u64> = seen
            .kinds("p")
            .into_iter()
            .filter_map(|k| match k {
                EventKind::Call { spent, .. } => Some(spent),
                _ => None,
            })
            .collect();
        assert_eq!(
            spent,
            [3, 7],
            "each call reported once, by the problem's meter"
        );
    }

    #[test]
    fn off_sends_nothing_and_closures_are_sinks() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = Arc::clone(&seen);
        let events = Events::new(
            Arc::new(move |e: &Event| into.lock().unwrap().push(e.kind.clone())),
            "p",
        );
        assert!(events.is_on() && !Events::off().is_on());
        Events::off().emit("x", EventKind::Started);
        events.emit("x", EventKind::Started);
        assert_eq!(*seen.lock().unwrap(), vec![EventKind::Started]);
    }
}
