//! A strategy of your own, composed with ponder's, watched as it runs.
//!
//! `CheckTwice` answers step by step, then shows the model its working and asks it to check
//! each step and answer again (a light self-refinement). Best-of-N runs it three times and takes
//! the majority answer. Every call, each check and the vote are printed as they happen, from a
//! channel the context sends its events to.
//!
//! The point is the plumbing, not the method: on the 135M default model the check is no
//! verifier (in one trial it turned a right first answer, 36, into a wrong one). Load a stronger
//! model (`ModelConfig { source: ..., ..ModelConfig::default() }`) to try it for real.
//!
//! `cargo run --release --example custom_strategy -- "A farmer has 3 pens of 12 sheep. How many sheep?"`

use std::num::NonZeroUsize;
use std::sync::Arc;

use ponder::engine::answer::extract_answer;
use ponder::engine::{
    Budget, Candidate, Choice, Context, Error, Event, EventKind, Events, GenerationRequest,
    Message, ModelConfig, Prompt, Sampling,
};
use ponder::strategies::{BestOfN, BestOfNConfig};
use ponder::{async_trait, Problem, Solution, StopReason, Strategy};

/// Answer, then check the working and answer again.
struct CheckTwice {
    max_tokens: usize,
}

impl CheckTwice {
    /// One completion of `messages`, or the budget that refused it.
    async fn ask(
        &self,
        cx: &Context,
        messages: Vec<Message>,
    ) -> ponder::Result<Result<Choice, ponder::engine::Resource>> {
        let request = GenerationRequest::new(Prompt::chat(messages))
            .with_max_tokens(self.max_tokens)
            .with_sampling(Sampling::with_temperature(0.7));
        match cx.backend().generate(request).await {
            Ok(generation) => Ok(Ok(generation.into_first_choice()?)),
            // Running out of budget is an outcome: answer with what there is.
            Err(Error::BudgetExhausted { resource }) => Ok(Err(resource)),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Strategy for CheckTwice {
    fn name(&self) -> &'static str {
        "check_twice"
    }

    async fn solve(&self, problem: &Problem, cx: &Context) -> ponder::Result<Solution> {
        let mut messages = vec![Message::user(format!(
            "{}\nSolve it step by step, then end with \"Final Answer: <answer>\".",
            problem.question
        ))];
        let first = match self.ask(cx, messages.clone()).await? {
            Ok(choice) => choice,
            Err(resource) => return Ok(Solution::exhausted(self.name(), resource)),
        };
        let first_answer = extract_answer(&first.text);
        messages.push(Message::assistant(first.text.clone()));
        messages.push(Message::user(
            "Check each step of your working. If a step is wrong, correct it and work on from \
             there. End with \"Final Answer: <answer>\".",
        ));
        let (last, stop_reason, check_tokens) = match self.ask(cx, messages).await? {
            Ok(checked) => {
                let stop = StopReason::from(checked.finish_reason);
                let tokens = checked.completion_tokens;
                (checked, stop, tokens)
            }
            // No budget left to check: the first answer stands (and cost nothing more).
            Err(resource) => (first.clone(), StopReason::from(resource), 0),
        };
        let checked_answer = extract_answer(&last.text);
        // A strategy of your own reports what it did with a custom event.
        cx.emit(
            self.name(),
            EventKind::Custom {
                name: "checked".into(),
                data: serde_json::json!({ "first": first_answer, "after_check": checked_answer }),
            },
        );
        let candidate = Candidate {
            answer: checked_answer.or(first_answer),
            text: last.text,
            score: None,
            tokens: (first.completion_tokens + check_tokens) as u64,
        };
        Ok(Solution::single(self.name(), candidate, stop_reason))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let question = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "A farmer has 3 pens of 12 sheep. How many sheep?".into());

    // The built-in SmolLM2-135M on CPU, fetched and checksummed on first use.
    let backend = ModelConfig::default().load().await?;

    // Best-of-N's majority vote over three runs of the custom strategy.
    let n = NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN);
    let strategy = BestOfN::self_consistency(BestOfNConfig::self_consistency(n))?
        .with_inner(Box::new(CheckTwice { max_tokens: 192 }));

    // Events go down a channel; a task prints them as they come.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let printer = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            eprintln!("{event}");
        }
    });
    let problem = Problem::new("example", question);
    // Seeded: the samples' draws, so the vote, are the same every run (each sample its own).
    let cx = Context::with_events(
        backend,
        Budget::unlimited().with_max_tokens(4096),
        Events::new(Arc::new(tx), problem.id.clone()),
    )
    .seeded(7);
    let solution = ponder::engine::solve_in(&strategy, &problem, &cx).await?;
    // The context holds the sender: dropping it ends the printer.
    drop(cx);
    printer.await?;

    println!("answer: {}", solution.answer.as_deref().unwrap_or("(none)"));
    println!(
        "usage: {} tokens in {} calls, {} ms; stop: {:?}",
        solution.usage.total_tokens(),
        solution.usage.calls,
        solution.usage.elapsed_ms,
        solution.stop_reason
    );
    Ok(())
}
