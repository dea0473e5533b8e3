//! Unit tests of the controller and the text split.

use super::processor::argmax;
use super::*;

const EOS: u32 = 0;
const CLOSE: [u32; 2] = [7, 8];
const CUE: u32 = 9;

fn tokens() -> ForcingTokens {
    ForcingTokens {
        close: CLOSE.to_vec(),
        close_variants: vec![vec![6, 8]],
        leads: Vec::new(),
        cue: vec![CUE],
        waits: vec![vec![3, 4]],
        // "Wait" at the start of a line: one token.
        bare_waits: vec![vec![BARE_WAIT]],
        blanks: vec![BLANK],
        line_ends: vec![LINE_END],
        eos: vec![EOS],
    }
}

/// A newline.
const BLANK: u32 = 10;
/// The wait written after whitespace.
const BARE_WAIT: u32 = 11;
/// A full stop and the newline after it.
const LINE_END: u32 = 12;

fn config(min: usize, max: usize, waits: usize) -> BudgetForcingConfig {
    BudgetForcingConfig {
        min_thinking_tokens: min,
        max_thinking_tokens: max,
        max_waits: waits,
        max_answer_tokens: NonZeroUsize::new(3).unwrap(),
        ..BudgetForcingConfig::default()
    }
}

/// Greedy decoding of a toy model whose favourite next token is `want(generated)`.
/// Budget forcing under `config` solving "What is 2 + 2?" on `backend` within `budget`: the
/// solution and its details.
async fn solved(
    config: BudgetForcingConfig,
    backend: &Arc<ponder_engine::scripted::ScriptedBackend>,
    budget: ponder_engine::Budget,
) -> (Solution, ForcingDetails) {
    let strategy = BudgetForcing::new(config).unwrap();
    let solution = ponder_engine::solve(
        &strategy,
        &Problem::new("p", "What is 2 + 2?"),
        Arc::clone(backend) as Arc<dyn ponder_engine::Backend>,
        budget,
    )
    .await
    .unwrap();
    let details = serde_json::from_value(solution.details.clone()).unwrap();
    (solution, details)
}

fn decode(processor: &ForcingProcessor, want: impl Fn(&[u32]) -> u32, limit: usize) -> Vec<u32> {
    let prompt = [1u32, 2, 1];
    let mut context = prompt.to_vec();
    for _ in 0..limit {
        let generated = &context[prompt.len()..];
        let mut logits = vec![0.0f32; 1300];
        logits[want(generated) as usize] = 5.0;
        processor.process(&mut logits, &context);
        let next = argmax(&logits);
        context.push(next);
        if next == EOS {
            break;
        }
    }
    context[prompt.len()..].to_vec()
}

#[test]
fn the_cap_forces_the_delimiter_the_cue_and_a_bounded_answer() {
    let p = ForcingProcessor::new(tokens(), &config(0, 4, 0), 7);
    let out = decode(&p, |_| 5, 40);
    assert_eq!(out, vec![5, 5, 5, 5, 7, 8, CUE, 5, 5, 5, EOS]);
    let d = p.details();
    assert_eq!((d.thinking_tokens, d.waits, d.forced_end), (4, 0, true));
}

#[test]
fn a_budget_that_grants_fewer_tokens_lowers_the_thinking_cap() {
    // Cap 20, but only 9 tokens granted: the delimiter (2), the cue (1), the answer (3) and the
    // final end (1) leave 2 for thinking, so the answer still fits.
    let p = ForcingProcessor::new(tokens(), &config(0, 20, 0), 7);
    p.limit_max_tokens(12);
    p.limit_max_tokens(9);
    let out = decode(&p, |_| 5, 9);
    assert_eq!(out, vec![5, 5, 7, 8, CUE, 5, 5, 5, EOS]);
    let d = p.details();
    assert_eq!((d.thinking_tokens, d.forced_end), (2, true));
    assert_eq!(d.budget_thinking_cap, Some(2));
    // Forced to end at the cap the grant lowered: the grant shortened it.
    assert_eq!(p.shortened_by(), Some(9));
}

#[test]
fn a_lowered_cap_that_thinking_never_reached_shortened_nothing() {
    // Cap 20 lowered to 5 by a grant of 12; the model closes its thinking after 2 tokens, with
    // no wait owed: it ended as it would have.
    let think_two = |g: &[u32]| match g.len() {
        0 | 1 => 5,
        2 => 7,
        3 => 8,
        _ => EOS,
    };
    let p = ForcingProcessor::new(tokens(), &config(0, 20, 0), 7);
    p.limit_max_tokens(12);
    decode(&p, think_two, 20);
    assert!(!p.details().forced_end);
    assert_eq!(p.shortened_by(), None);
    // With a wait owed that fit under the configured cap but not the lowered one (2 thought,
    // a 2-token wait, cap 3), the grant ended it sooner.
    let p = ForcingProcessor::new(tokens(), &config(0, 20, 1), 7);
    p.limit_max_tokens(10);
    decode(&p, think_two, 20);
    assert_eq!(p.details().waits, 0);
    assert_eq!(p.shortened_by(), Some(10));
    // Without a grant, nothing was shortened.
    let p = ForcingProcessor::new(tokens(), &config(0, 4, 0), 7);
    decode(&p, |_| 5, 40);
    assert_eq!(p.shortened_by(), None);
}

#[test]
fn a_zero_cap_skips_thinking() {
    let p = ForcingProcessor::new(tokens(), &config(0, 0, 0), 7);
    let out = decode(&p, |g| if g.len() > 4 { EOS } else { 5 }, 40);
    assert_eq!(&out[..3], &[7, 8, CUE]);
    assert_eq!(p.details().thinking_tokens, 0);
}

#[test]
fn below_the_minimum_an_early_stop_becomes_a_wait() {
    // The model wants to stop at once, every time.
    // It thinks a token after each wait, then wants to stop again.
    let p = ForcingProcessor::new(tokens(), &config(8, 100, 0), 7);
    let out = decode(&p, |g| if g.last() == Some(&4) { 5 } else { EOS }, 40);
    // Three waits (two tokens each, a token thought after each) pass the minimum of 8; then
    // the end of sequence it still wants becomes the delimiter, the cue, and it may stop.
    assert_eq!(out, vec![3, 4, 5, 3, 4, 5, 3, 4, 5, 7, 8, CUE, EOS]);
    let d = p.details();
    assert_eq!((d.thinking_tokens, d.waits, d.forced_end), (9, 3, false));
    assert!(!d.waits_ignored);
}

#[test]
fn a_model_that_ends_at_once_after_each_wait_is_let_end() {
    // It wants to stop at once, every time, after waits too: after MAX_IDLE_WAITS waits
    // running it is let end, short of the minimum (more would only repeat the wait).
    let p = ForcingProcessor::new(tokens(), &config(60, 100, 0), 7);
    let out = decode(&p, |_| EOS, 40);
    assert_eq!(out, vec![3, 4, 3, 4, 7, 8, CUE, EOS]);
    let d = p.details();
    assert_eq!((d.thinking_tokens, d.waits, d.waits_ignored), (4, 2, true));
    assert_eq!(MAX_IDLE_WAITS, 2);
}

#[test]
fn a_wait_answered_with_a_newline_and_an_ending_is_unheeded_and_said_bare_after_it() {
    // After each wait the model writes a newline, then wants to end: the wait went unheeded
    // as surely as one the model ends right after (resubmission reads the whitespace written
    // as nothing written), so after MAX_IDLE_WAITS of those it is let end, however far the
    // minimum. The wait said after the newline has no space of its own ("\nWait").
    let p = ForcingProcessor::new(tokens(), &config(60, 100, 0), 7);
    let want = |g: &[u32]| match g.last() {
        Some(&4 | &BARE_WAIT) => BLANK,
        _ => EOS,
    };
    let out = decode(&p, want, 40);
    assert_eq!(out, vec![3, 4, BLANK, BARE_WAIT, BLANK, 7, 8, CUE, EOS]);
    let d = p.details();
    assert_eq!((d.thinking_tokens, d.waits, d.waits_ignored), (5, 2, true));
    // A model that thinks on after the newline heeded the wait: no limit on those.
    let p = ForcingProcessor::new(tokens(), &config(12, 100, 0), 7);
    let want = |g: &[u32]| match g.last() {
        Some(&4 | &BARE_WAIT) => BLANK,
        Some(&BLANK) => 5,
        _ => EOS,
    };
    let out = decode(&p, want, 40);
    assert_eq!(
        out,
        vec![3, 4, BLANK, 5, 3, 4, BLANK, 5, 3, 4, BLANK, 5, 7, 8, CUE, EOS]
    );
    assert!(!p.details().waits_ignored);
}

#[test]
fn a_wait_after_punctuation_merged_with_its_newline_is_said_bare() {
    // "5.\n" as "5", ".\n": the wait starts a line.
    let p = ForcingProcessor::new(tokens(), &config(4, 100, 0), 7);
    let want = |g: &[u32]| match g {
        [] | [5, LINE_END, BARE_WAIT] => 5,
        [5] => LINE_END,
        _ => EOS,
    };
    let out = decode(&p, want, 40);
    assert_eq!(out, vec![5, LINE_END, BARE_WAIT, 5, 7, 8, CUE, EOS]);
    assert_eq!(p.details().waits, 1);
}

#[test]
fn a_sampled_decode_let_end_after_unheeded_waits_is_made_to_end() {
    // Sampling, the processor's own draw says where the model ends; once the waits are given
    // up on, the ending drawn is written (the sampler would draw again, and might think on
    // with the minimum no longer kept).
    let sampled = BudgetForcingConfig {
        temperature: 0.7,
        ..config(60, 100, 0)
    };
    let p = ForcingProcessor::new(tokens(), &sampled, 3);
    let mut context = vec![1u32, 2, 1];
    for _ in 0..8 {
        let mut logits = vec![0.0f32; 12];
        logits[EOS as usize] = 30.0;
        p.process(&mut logits, &context);
        let next = argmax(&logits);
        if p.details().waits_ignored {
            assert_eq!(next, CLOSE[0]);
            assert!(
                logits
                    .iter()
                    .enumerate()
                    .all(|(id, &l)| id == CLOSE[0] as usize || l == f32::NEG_INFINITY),
                "the delimiter is forced: {logits:?}"
            );
            assert_eq!(p.details().waits, 2);
            return;
        }
        context.push(next);
    }
    panic!("never let end: {context:?}");
}

#[test]
fn max_waits_ignores_the_end_of_thinking_past_the_minimum() {
    // Thinks one token, then wants to close the thinking with the delimiter.
    let want = |g: &[u32]| match g.last() {
        None => 5,
        Some(7) => 8,
        Some(_) if g.ends_with(&CLOSE) => CUE,
        _ => 7,
    };
    let p = ForcingProcessor::new(tokens(), &config(0, 100, 2), 7);
    let out = decode(&p, want, 40);
    assert_eq!(&out[..9], &[5, 3, 4, 3, 4, 7, 8, CUE, 7]);
    assert_eq!(p.details().waits, 2);
    assert_eq!(p.details().thinking_tokens, 5);
}

#[test]
fn a_wait_that_would_fill_the_cap_is_not_said() {
    // Thinks one token, then wants to close; a wait (two tokens) would reach the cap of 3 and
    // be cut at once: the thinking closes instead.
    let want = |g: &[u32]| match g.last() {
        None => 5,
        Some(7) => 8,
        Some(_) if g.ends_with(&CLOSE) => CUE,
        _ => 7,
    };
    let p = ForcingProcessor::new(tokens(), &config(0, 3, 1), 7);
    let out = decode(&p, want, 40);
    assert_eq!(&out[..4], &[5, 7, 8, CUE]);
    let d = p.details();
    assert_eq!((d.thinking_tokens, d.waits, d.forced_end), (1, 0, false));
    // With room to think after it, it is said.
    let p = ForcingProcessor::new(tokens(), &config(0, 4, 1), 7);
    let out = decode(&p, want, 40);
    assert_eq!(&out[..3], &[5, 3, 4]);
    assert_eq!(p.details().waits, 1);
}

#[tokio::test]
async fn resubmitting_says_no_wait_that_would_fill_the_cap() {
    use ponder_engine::scripted::ScriptedBackend;
    use ponder_engine::Budget;

    // Ten tokens of thinking (one a byte) that stop by themselves (the delimiter within the
    // call's 20) under a cap of 20: the wait (nineteen) would pass it, so the thinking ends
    // as the model ended it.
    let backend = Arc::new(ScriptedBackend::new(vec![
        "abcdefghij</think>",
        "Final Answer: 4",
    ]));
    let config = BudgetForcingConfig {
        max_thinking_tokens: 20,
        max_waits: 1,
        wait: WaitStrings::One("Wait, let me check".into()),
        ..BudgetForcingConfig::default()
    };
    let (solution, details) = solved(config, &backend, Budget::unlimited()).await;
    assert_eq!(
        (details.thinking_tokens, details.waits, details.forced_end),
        (10, 0, false)
    );
    assert!(
        !solution.completion.contains("Wait"),
        "{}",
        solution.completion
    );
    assert_eq!(solution.answer.as_deref(), Some("4"));
    assert_eq!(backend.requests().len(), 2);
}

#[tokio::test]
async fn thinking_a_template_opens_is_not_opened_again() {
    use ponder_engine::scripted::ScriptedBackend;
    use ponder_engine::Budget;

    let prefixes = |opening: &'static str| async move {
        // One wait: three calls (think, think on after " Wait", answer).
        let backend = Arc::new(
            ScriptedBackend::new(vec!["2 + 2 is 4.</think>", " yes, 4.</think>", "4"])
                .with_opening(opening),
        );
        let config = BudgetForcingConfig {
            max_waits: 1,
            ..BudgetForcingConfig::default()
        };
        let (solution, details) = solved(config, &backend, Budget::unlimited()).await;
        assert_eq!(details.waits, 1);
        assert_eq!(solution.answer.as_deref(), Some("4"));
        // The assistant turn of each prompt sent (the meter sends them as tokens).
        let prefixes: Vec<String> = backend
            .requests()
            .iter()
            .map(|r| {
                let text = ScriptedBackend::render(&r.prompt);
                let (_, turn) = text.rsplit_once("assistant: ").unwrap();
                turn.to_string()
            })
            .collect();
        (prefixes, details.opened_by_template, solution.details)
    };
    // A template like DeepSeek-R1's, whose assistant turn starts "<think>\n": every request
    // goes on from it, never opening the block a second time.
    let (opened, by_template, details) = prefixes("<think>\n").await;
    assert_eq!(
        opened,
        [
            "<think>\n",
            "<think>\n2 + 2 is 4. Wait",
            "<think>\n2 + 2 is 4. Wait yes, 4.</think>\nFinal Answer:"
        ]
    );
    assert!(by_template);
    assert_eq!(details["opened_by_template"], true);
    // A template that opens nothing: ponder opens the block, and says nothing of it.
    let (opened, by_template, details) = prefixes("").await;
    assert_eq!(
        opened,
        [
            "<think>",
            "<think>2 + 2 is 4. Wait",
            "<think>2 + 2 is 4. Wait yes, 4.</think>\nFinal Answer:"
        ]
    );
    assert!(!by_template);
    assert!(details.get("opened_by_template").is_none(), "{details}");
}

#[test]
fn an_end_of_sequence_that_might_be_sampled_goes_to_the_delimiter() {
    // Past the minimum with no wait owed, the model favours 5 but gives the end of sequence
    // some probability: sampled, it would end the sample with no answer. Its probability moves
    // to the delimiter's first token; the favourite is left alone.
    let sampled = BudgetForcingConfig {
        temperature: 1.0,
        ..config(0, 100, 0)
    };
    let p = ForcingProcessor::new(tokens(), &sampled, 7);
    let mut logits = vec![0.0f32; 12];
    logits[5] = 5.0;
    logits[EOS as usize] = 2.0;
    logits[CLOSE[0] as usize] = 1.0;
    p.process(&mut logits, &[1, 2, 1, 5]);
    assert_eq!(logits[EOS as usize], f32::NEG_INFINITY);
    let moved = (2.0f32.exp() + 1.0f32.exp()).ln();
    assert!(
        (logits[CLOSE[0] as usize] - moved).abs() < 1e-5,
        "{logits:?}"
    );
    assert_eq!(logits[5], 5.0);
    assert_eq!(argmax(&logits), 5);
    let total: f32 = logits.iter().map(|l| l.exp()).sum();
    let before = 5.0f32.exp() + 2.0f32.exp() + 1.0f32.exp() + 9.0;
    assert!(
        (total - before).abs() < 1e-3,
        "probability is moved, not made"
    );
}

/// The probabilities `logits` give at `temperature`.
fn tempered(logits: &[f32], temperature: f32) -> Vec<f32> {
    let weights: Vec<f32> = logits.iter().map(|l| (l / temperature).exp()).collect();
    let total: f32 = weights.iter().sum();
    weights.iter().map(|w| w / total).collect()
}

#[test]
fn probability_moves_at_the_sampling_temperature_and_greedy_decoding_only_bans() {
    // At temperature 0.5 the end of sequence's probability at that temperature is the one
    // that moves: the delimiter's token gains exactly it.
    let config_at = |temperature| BudgetForcingConfig {
        temperature,
        ..config(0, 100, 0)
    };
    let mut logits = vec![0.0f32; 12];
    logits[5] = 3.0;
    logits[EOS as usize] = 2.0;
    logits[CLOSE[0] as usize] = 1.0;
    let before = tempered(&logits, 0.5);
    let p = ForcingProcessor::new(tokens(), &config_at(0.5), 7);
    let mut moved = logits.clone();
    p.process(&mut moved, &[1, 2, 1, 5]);
    let after = tempered(&moved, 0.5);
    let (eos, close) = (EOS as usize, CLOSE[0] as usize);
    assert_eq!(after[eos], 0.0);
    assert!(
        (after[close] - (before[close] + before[eos])).abs() < 1e-5,
        "{after:?}"
    );
    assert!((after[5] - before[5]).abs() < 1e-5);
    // Greedy: the favourite stays the favourite (moving the mass would have made the
    // delimiter, at ln(e^2.9 + e^2.9), outrank 3.0); the end of sequence is only banned.
    let p = ForcingProcessor::new(tokens(), &config_at(0.0), 7);
    let mut greedy = logits.clone();
    greedy[EOS as usize] = 2.9;
    greedy[CLOSE[0] as usize] = 2.9;
    p.process(&mut greedy, &[1, 2, 1, 5]);
    assert_eq!(greedy[EOS as usize], f32::NEG_INFINITY);
    assert_eq!(greedy[CLOSE[0] as usize], 2.9);
    assert_eq!(argmax(&greedy), 5);
}

#[test]
fn sampling_a_wait_is_as_likely_as_ending_was() {
    // Below the minimum the model favours 5 but might end (the end of sequence, the
    // delimiter in either of its forms): sampled, s1 would say a wait there. The processor
    // says one as often as ending would have been drawn at the temperature; otherwise the
    // endings are banned and the rest keep their logits.
    let sampled = BudgetForcingConfig {
        temperature: 0.7,
        ..config(10, 100, 0)
    };
    let mut logits = vec![0.0f32; 12];
    logits[5] = 3.0;
    logits[EOS as usize] = 2.0;
    logits[CLOSE[0] as usize] = 1.5;
    logits[6] = 1.0;
    let before = tempered(&logits, 0.7);
    let ended = f64::from(before[EOS as usize] + before[CLOSE[0] as usize] + before[6]);
    let trials = 4000;
    let mut waits = 0;
    for seed in 0..trials {
        let p = ForcingProcessor::new(tokens(), &sampled, seed);
        let mut out = logits.clone();
        p.process(&mut out, &[1, 2, 1, 5]);
        if p.details().waits == 1 {
            waits += 1;
            assert_eq!(argmax(&out), 3, "the wait's first token, forced");
            // Its second follows.
            let mut next = logits.clone();
            p.process(&mut next, &[1, 2, 1, 5, 3]);
            assert_eq!(argmax(&next), 4);
        } else {
            for id in [EOS, CLOSE[0], 6] {
                assert_eq!(out[id as usize], f32::NEG_INFINITY);
            }
            assert_eq!((out[5], out[3]), (3.0, 0.0));
        }
    }
    let share = f64::from(waits) / trials as f64;
    // Binomial standard error at 4000 trials is under 0.008.
    assert!((share - ended).abs() < 0.03, "{share} vs {ended}");
    // The same seed draws the same.
    let draw = |seed| {
        let p = ForcingProcessor::new(tokens(), &sampled, seed);
        (0..20)
            .map(|i| {
                let mut out = logits.clone();
                let context: Vec<u32> = [1, 2, 1].into_iter().chain(vec![5; i]).collect();
                p.process(&mut out, &context);
                p.details().waits
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(draw(11), draw(11));
}

#[test]
fn a_delimiter_written_another_way_is_recognised() {
    let want = |g: &[u32]| match g.len() {
        0 | 1 => 5,
        2 => 6,
        3 => 8,
        _ => EOS,
    };
    let p = ForcingProcessor::new(tokens(), &config(0, 100, 0), 7);
    let out = decode(&p, want, 40);
    assert_eq!(out, vec![5, 5, 6, 8, CUE, EOS]);
    assert_eq!(p.details().thinking_tokens, 2);
}

/// A tokenizer that merges as BPE does: longest match in a small vocabulary (ids from 1), each
/// other byte a token of its own (ids from 1000). Where `lone_blank_line`, "\n\n" alone is one
/// token ([`BLANK_LINE`]), and two before "</" (GPT-2's pre-tokenizer splits whitespace so that
/// its last character stays with what follows).
#[derive(Default)]
struct Merging {
    lone_blank_line: bool,
}

/// The id [`Merging`] gives "\n\n" alone where `lone_blank_line`.
const BLANK_LINE: u32 = 2000;

const VOCAB: [&str; 8] = ["</", ".</", "!</", "think", ">", " Wait", ">\n", ">\n\n"];

#[async_trait::async_trait]
impl Backend for Merging {
    async fn generate(
        &self,
        _: ponder_engine::GenerationRequest,
    ) -> ponder_engine::Result<ponder_engine::Generation> {
        unreachable!("only tokenized")
    }

    fn capabilities(&self) -> ponder_engine::Capabilities {
        ponder_engine::scripted::ScriptedBackend::new(Vec::<String>::new()).capabilities()
    }

    async fn tokenize(&self, input: TokenizeInput<'_>) -> ponder_engine::Result<Vec<u32>> {
        let TokenizeInput::Piece(mut text) = input else {
            unreachable!("pieces only")
        };
        if self.lone_blank_line && text == "\n\n" {
            return Ok(vec![BLANK_LINE]);
        }
        let mut ids = Vec::new();
        while !text.is_empty() {
            let longest = (0..VOCAB.len())
                .filter(|&i| text.starts_with(VOCAB[i]))
                .max_by_key(|&i| VOCAB[i].len());
            match longest {
                Some(i) => {
                    ids.push(i as u32 + 1);
                    text = &text[VOCAB[i].len()..];
                }
                None => {
                    ids.push(1000 + u32::from(text.as_bytes()[0]));
                    text = &text[1..];
                }
            }
        }
        Ok(ids)
    }
}

#[tokio::test]
async fn whitespace_tokens_and_the_wait_on_a_line_of_its_own_are_read_from_the_tokenizer() {
    let byte = |c: char| 1000 + c as u32;
    for lone_blank_line in [false, true] {
        let strategy = BudgetForcing::new(BudgetForcingConfig::default()).unwrap();
        let tokens = strategy.tokens(&Merging { lone_blank_line }).await.unwrap();
        // " Wait" is a token of its own; "Wait" after a newline is spelt out.
        assert_eq!(tokens.waits, vec![vec![6]]);
        let bare: Vec<u32> = "Wait".chars().map(byte).collect();
        assert_eq!(tokens.bare_waits, vec![bare]);
        // A blank line after text is two newlines here (alone it would be one token); a
        // carriage return is a token of its own.
        assert_eq!(
            tokens.blanks,
            vec![byte(' '), byte('\n'), byte('\r')],
            "{lone_blank_line}"
        );
        // ">" merges with the newline and the blank line after it.
        assert_eq!(tokens.line_ends, vec![7, 8]);
    }
}

#[tokio::test]
async fn a_delimiter_merged_with_the_punctuation_before_it_is_a_variant() {
    let strategy = BudgetForcing::new(BudgetForcingConfig::default()).unwrap();
    let mut tokens = strategy.tokens(&Merging::default()).await.unwrap();
    tokens.eos = vec![EOS];
    assert_eq!(tokens.close, vec![1, 4, 5]);
    for merged in [vec![2, 4, 5], vec![3, 4, 5]] {
        assert!(
            tokens.close_variants.contains(&merged),
            "{merged:?} in {:?}",
            tokens.close_variants
        );
    }
    // A model that ends its thinking with "done.</think>" is seen to have closed it: the cue
    // follows, no second delimiter.
    let ids = [1000 + u32::from(b'd'), 2, 4, 5];
    let p = ForcingProcessor::new(tokens.clone(), &config(0, 100, 0), 7);
    let out = decode(&p, |g: &[u32]| ids.get(g.len()).copied().unwrap_or(EOS), 40);
    assert_eq!(&out[..4], &ids);
    assert_eq!(&out[4..4 + tokens.cue.len()], tokens.cue.as_slice());
}

#[tokio::test]
async fn a_wait_said_where_the_model_ended_after_a_full_stop_keeps_the_full_stop() {
    let strategy = BudgetForcing::new(BudgetForcingConfig::default()).unwrap();
    let mut tokens = strategy.tokens(&Merging::default()).await.unwrap();
    tokens.eos = vec![EOS];
    let (dot, d) = (1000 + u32::from(b'.'), 1000 + u32::from(b'd'));
    assert!(tokens.leads.contains(&(2, vec![dot])), "{:?}", tokens.leads);
    assert_eq!(tokens.waits, [vec![6]]);
    // Thinks "d", then ends it with "d.</think>": below the minimum the ".</" becomes ". Wait"
    // (as resubmission writes it), not " Wait" with the full stop lost.
    let want = |g: &[u32]| match g.last() {
        Some(2) => 4,
        Some(4) => 5,
        Some(&t) if t == d => 2,
        _ => d,
    };
    let p = ForcingProcessor::new(tokens.clone(), &config(4, 100, 0), 7);
    let out = decode(&p, want, 40);
    assert_eq!(&out[..7], &[d, dot, 6, d, 2, 4, 5]);
    let details = p.details();
    assert_eq!((details.waits, details.thinking_tokens), (1, 4));
}

#[tokio::test]
async fn a_delimiter_merged_with_the_newlines_after_it_is_a_variant() {
    let strategy = BudgetForcing::new(BudgetForcingConfig::default()).unwrap();
    let mut tokens = strategy.tokens(&Merging::default()).await.unwrap();
    tokens.eos = vec![EOS];
    // "</think>\n" and "</think>\n\n" end in one token, after the plain delimiter and after
    // one merged with what came before it.
    for merged in [vec![1, 4, 7], vec![1, 4, 8], vec![2, 4, 8], vec![3, 4, 7]] {
        assert!(
            tokens.close_variants.contains(&merged),
            "{merged:?} in {:?}",
            tokens.close_variants
        );
    }
    // A model that closes its thinking and starts a paragraph is seen to have closed it: the
    // cue follows at once, its thinking is what came before, and the answer is not thinking.
    let ids = [1000 + u32::from(b'd'), 1000 + u32::from(b'd'), 1, 4, 8];
    let p = ForcingProcessor::new(tokens.clone(), &config(0, 100, 0), 7);
    let out = decode(&p, |g: &[u32]| ids.get(g.len()).copied().unwrap_or(EOS), 40);
    assert_eq!(&out[..5], &ids);
    assert_eq!(&out[5..5 + tokens.cue.len()], tokens.cue.as_slice());
    assert_eq!(p.details().thinking_tokens, 2);
    assert!(!p.details().forced_end);
    // At the cap the delimiter is still forced plain, not with a newline.
    let p = ForcingProcessor::new(tokens.clone(), &config(0, 2, 0), 7);
    let out = decode(&p, |_| 1000 + u32::from(b'd'), 40);
    assert_eq!(&out[2..5], &[1, 4, 5]);
}

#[tokio::test]
async fn a_lead_tokenized_apart_from_the_delimiter_is_no_start_of_it() {
    let strategy = BudgetForcing::new(BudgetForcingConfig::default()).unwrap();
    let tokens = strategy
        .tokens(&Merging {
            lone_blank_line: true,
        })
        .await
        .unwrap();
    let newline = 1000 + u32::from(b'\n');
    assert_eq!(
        Merging::default()
            .tokenize(TokenizeInput::Piece("\n\n</think>"))
            .await
            .unwrap(),
        [newline, newline, 1, 4, 5]
    );
    // Every variant starts with a token that holds the delimiter's "<" (not with a newline,
    // which would then be taken for the start of a close).
    assert!(!tokens.close_variants.is_empty());
    for variant in &tokens.close_variants {
        assert!(
            [1, 2, 3].contains(&variant[0]),
            "{:?}",
            tokens.close_variants
        );
    }
}

#[test]
fn the_room_after_thinking_holds_the_longest_form_of_the_delimiter() {
    let mut t = tokens();
    t.close_variants.push(vec![6, 6, 7, 8]);
    let p = ForcingProcessor::new(t, &config(0, 40, 0), 7);
    // A form of four tokens, the cue, three answer tokens, the end of sequence.
    assert_eq!(p.after_thinking(), 4 + 1 + 3 + 1);
}

#[test]
fn a_partial_delimiter_at_the_cap_is_completed_not_restarted() {
    let want = |g: &[u32]| if g.len() == 3 { 7 } else { 5 };
    let p = ForcingProcessor::new(tokens(), &config(0, 4, 0), 7);
    let out = decode(&p, want, 40);
    assert_eq!(&out[..6], &[5, 5, 5, 7, 8, CUE]);
    assert_eq!(p.details().thinking_tokens, 3);
    // Of a variant ([6, 8]: the delimiter merged with what came before) too.
    let want = |g: &[u32]| if g.len() == 3 { 6 } else { 5 };
    let p = ForcingProcessor::new(tokens(), &config(0, 4, 0), 7);
    let out = decode(&p, want, 40);
    assert_eq!(&out[..6], &[5, 5, 5, 6, 8, CUE]);
    assert_eq!(p.details().thinking_tokens, 3);
}

#[test]
fn config_rules() {
    assert!(config(10, 5, 0)
        .validate()
        .unwrap_err()
        .to_string()
        .contains("min_thinking_tokens"));
    let mut c = config(0, 5, 0);
    c.wait = WaitStrings::Many(vec![]);
    assert!(c.validate().is_err());
    c.wait = WaitStrings::Many(vec!["Hmm".into(), "Alternatively".into()]);
    assert!(c.validate().is_ok());
}

#[test]
fn split_finds_thinking_and_answer() {
    let (t, a) = split("a b</think>\nFinal Answer: 4", "</think>", "Final Answer:");
    assert_eq!((t.as_str(), a.as_str()), ("a b", " 4"));
}

#[test]
fn the_answer_is_what_follows_the_cue_not_the_last_number_after_it() {
    let outcome = |text: &str| {
        let (thinking, answer) = split(text, "</think>", "Final Answer:");
        Outcome {
            text: text.to_string(),
            thinking,
            answer,
            details: ForcingDetails::default(),
            tokens: 0,
            finish: FinishReason::Stop,
            budget_stop: None,
        }
    };
    let cue = "Final Answer:";
    let forced = outcome(
        "16 - 3 - 4 = 9, 9 * 2 = 18</think>\nFinal Answer: 18\n\nShe sells 9 eggs at $2 each.",
    );
    assert_eq!(final_answer(&forced, cue).as_deref(), Some("18"));
    let boxed = outcome("work</think>\nFinal Answer: so \\boxed{18}, from 9 eggs at $2.");
    assert_eq!(final_answer(&boxed, cue).as_deref(), Some("18"));
    // No cue after the thinking: the answer phase as a whole, else the thinking.
    let no_cue = outcome("work</think>\nso 9 eggs, 18 dollars in all: 18");
    assert_eq!(final_answer(&no_cue, cue).as_deref(), Some("18"));
    let unfinished = outcome("9 * 2 = 18");
    assert_eq!(final_answer(&unfinished, cue).as_deref(), Some("18"));
}

#[tokio::test]
async fn a_budget_stop_before_the_answer_keeps_the_thinking_paid_for() {
    use ponder_engine::scripted::ScriptedBackend;
    use ponder_engine::{Backend, Budget};

    // Resubmit mode (the scripted backend runs no logits processors): one call thinks, the
    // answer call is refused by the budget; the answer comes from the thinking.
    let backend = Arc::new(ScriptedBackend::new(vec![
        "Two and two make 2 + 2 = 4.</think>",
        "4",
    ]));
    let strategy = BudgetForcing::new(BudgetForcingConfig::default()).unwrap();
    let events = ponder_engine::scripted::Recorder::new();
    let cx = Context::with_events(
        backend as Arc<dyn Backend>,
        Budget::unlimited().with_max_calls(1),
        events.events_of("p"),
    );
    let solution = ponder_engine::solve_in(&strategy, &Problem::new("p", "What is 2 + 2?"), &cx)
        .await
        .unwrap();
    assert_eq!(solution.stop_reason, StopReason::CallBudget);
    // The meter says why the answer call did not happen; the strategy what the thinking was.
    let details: ForcingDetails = serde_json::from_value(solution.details.clone()).unwrap();
    assert!(details.thinking_tokens > 0);
    let kinds = events.kinds("p");
    assert!(
        matches!(
            kinds.as_slice(),
            [
                EventKind::Call { .. },
                EventKind::Limited {
                    resource: Resource::Calls,
                    max_tokens: None
                },
                EventKind::Thought {
                    thinking_tokens,
                    waits: 0,
                    forced_end: false
                }
            ] if *thinking_tokens == details.thinking_tokens
        ),
        "{kinds:?}"
    );
    assert_eq!(solution.answer.as_deref(), Some("4"));
    assert!(
        solution.completion.contains("2 + 2 = 4"),
        "{}",
        solution.completion
    );
}

#[tokio::test]
async fn a_wait_whose_call_the_budget_refused_is_not_counted_and_resubmissions_are() {
    use ponder_engine::scripted::ScriptedBackend;
    use ponder_engine::Budget;

    // The model stops thinking at once every time; the minimum asks for waits. Two calls are
    // allowed: think, wait, think again (a resubmission), wait, and the third call is refused.
    let backend = Arc::new(ScriptedBackend::new(vec![
        "2 + 2 = 4.</think>",
        " So \\boxed{4}.</think>",
        "4",
    ]));
    let config = BudgetForcingConfig {
        min_thinking_tokens: 100,
        mode: ForcingMode::Resubmit,
        ..BudgetForcingConfig::default()
    };
    let (solution, details) = solved(config, &backend, Budget::unlimited().with_max_calls(2)).await;
    assert_eq!(solution.stop_reason, StopReason::CallBudget);
    // One wait was continued after; the second was never sent.
    assert_eq!(details.waits, 1, "{details:?}");
    assert_eq!(
        solution.completion.matches("Wait").count(),
        1,
        "{}",
        solution.completion
    );
    assert!(
        solution.completion.trim_end().ends_with("So \\boxed{4}."),
        "{}",
        solution.completion
    );
    // Thinking never closed, and says so: what it tried is not a stated answer.
    assert!(
        solution.completion.starts_with("<think>"),
        "{}",
        solution.completion
    );
    assert_eq!(
        ponder_engine::answer::stated_answer(&solution.completion),
        None
    );
    // The second call sent the first one's prompt again, with the thinking so far.
    let requests = backend.requests();
    assert_eq!(requests.len(), 2);
    assert!(details.resubmitted_prompt_tokens > 0, "{details:?}");
    let thought = "2 + 2 = 4. Wait So \\boxed{4}.".len();
    assert_eq!(details.thinking_tokens, thought, "{details:?}");
}

#[tokio::test]
async fn resubmitted_thinking_leaves_the_answer_room_in_the_context_window() {
    use ponder_engine::scripted::ScriptedBackend;
    use ponder_engine::Budget;

    let config = BudgetForcingConfig {
        max_thinking_tokens: 100,
        max_answer_tokens: NonZeroUsize::new(5).unwrap(),
        mode: ForcingMode::Resubmit,
        ..BudgetForcingConfig::default()
    };
    // The first prompt's length (a token a byte), from a run without a window.
    let measure = Arc::new(ScriptedBackend::new(vec!["x</think>", "4"]));
    solved(config.clone(), &measure, Budget::unlimited()).await;
    let first = measure.prompt_tokens(&measure.requests()[0].prompt);
    // Room for the delimiter, the cue (22 bytes) and 5 answer tokens, and 10 of thinking.
    let backend = Arc::new(
        ScriptedBackend::new(vec!["abcdefghijklmnopqrstuvwxyz</think>", "4"])
            .with_context(first + 27 + 10),
    );
    let (solution, details) = solved(config.clone(), &backend, Budget::unlimited()).await;
    let requests = backend.requests();
    assert_eq!(requests.len(), 2, "thinking, then the answer");
    assert_eq!(requests[0].max_tokens, 10);
    assert_eq!((details.thinking_tokens, details.forced_end), (10, true));
    assert_eq!(solution.answer.as_deref(), Some("4"));

    // Thinking that stops by itself below the minimum: a wait would pass the window's room,
    // so none is said (it would end the thinking at once, unanswered after).
    let backend =
        Arc::new(ScriptedBackend::new(vec!["ab</think>", "4"]).with_context(first + 27 + 10));
    let config = BudgetForcingConfig {
        min_thinking_tokens: 100,
        wait: WaitStrings::One("Wait, let me check".into()),
        ..config
    };
    let (solution, details) = solved(config, &backend, Budget::unlimited()).await;
    assert_eq!(
        (details.waits, details.thinking_tokens),
        (0, 2),
        "{details:?}"
    );
    assert!(
        !solution.completion.contains("Wait"),
        "{}",
        solution.completion
    );
    assert_eq!(backend.requests().len(), 2);
}

#[tokio::test]
async fn the_switch_penalty_needs_the_decode() {
    let with_penalty = |mode| BudgetForcingConfig {
        mode,
        switch_penalty: Some(SwitchPenaltyConfig::default()),
        ..BudgetForcingConfig::default()
    };
    let err = with_penalty(ForcingMode::Resubmit).validate().unwrap_err();
    assert!(err.to_string().contains("in_decode"), "{err}");
    // A backend without logits processors would fall back to resubmission: an error instead.
    let config = with_penalty(ForcingMode::InDecode);
    config.validate().unwrap();
    let backend: std::sync::Arc<dyn Backend> =
        std::sync::Arc::new(ponder_engine::scripted::ScriptedBackend::new(["x"]));
    let err = ponder_engine::solve(
        &BudgetForcing::new(config).unwrap(),
        &Problem::new("p", "Q?"),
        backend,
        ponder_engine::Budget::unlimited(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("switch_penalty"), "{err}");
}

/// Resubmission thinking up to 100 tokens and answering in 4, and a thinking the budget cuts.
fn resubmit_in_budget() -> (BudgetForcingConfig, &'static str) {
    let config = BudgetForcingConfig {
        max_thinking_tokens: 100,
        max_answer_tokens: NonZeroUsize::new(4).unwrap(),
        mode: ForcingMode::Resubmit,
        ..BudgetForcingConfig::default()
    };
    (
        config,
        "2 + 2: I count two, then two more, which makes five? No: four.</think>",
    )
}

#[tokio::test]
async fn resubmitted_thinking_leaves_the_answer_room_in_the_budget() {
    use ponder_engine::scripted::ScriptedBackend;
    use ponder_engine::Budget;

    let (config, thinking) = resubmit_in_budget();
    // A budget of completion tokens: the thinking gets what the answer's 4 leave, and the
    // answer is forced after it, as in decode.
    let backend = Arc::new(ScriptedBackend::new(vec![thinking, "4"]));
    let (solution, details) = solved(
        config.clone(),
        &backend,
        Budget::unlimited().with_max_completion_tokens(40),
    )
    .await;
    let requests = backend.requests();
    assert_eq!(requests.len(), 2, "thinking, then the answer");
    assert_eq!(requests[0].max_tokens, 36);
    assert_eq!((details.thinking_tokens, details.forced_end), (36, true));
    assert_eq!(details.budget_thinking_cap, Some(36));
    assert_eq!(solution.answer.as_deref(), Some("4"));
    // The budget ended the thinking, as in decode.
    assert_eq!(solution.stop_reason, StopReason::CompletionBudget);

    // Thinking that stops by itself short of the minimum, where the budget leaves no room for
    // a wait and the answer: the budget ended the thinking, not the model.
    let backend = Arc::new(ScriptedBackend::new(vec!["ab</think>", "4"]));
    let short_of_min = BudgetForcingConfig {
        min_thinking_tokens: 50,
        ..config.clone()
    };
    let budget = Budget::unlimited().with_max_completion_tokens(14);
    let (solution, details) = solved(short_of_min.clone(), &backend, budget).await;
    assert_eq!(backend.requests()[0].max_tokens, 10);
    assert_eq!(
        (details.waits, details.thinking_tokens),
        (0, 2),
        "{details:?}"
    );
    assert_eq!(details.budget_thinking_cap, Some(2), "{details:?}");
    assert_eq!(solution.answer.as_deref(), Some("4"));
    assert_eq!(solution.stop_reason, StopReason::CompletionBudget);
    // Past the minimum, a wait the budget refuses leaves the model's own end.
    let backend = Arc::new(ScriptedBackend::new(vec!["ab</think>", "4"]));
    let waits_only = BudgetForcingConfig {
        max_waits: 1,
        ..config.clone()
    };
    let (solution, details) = solved(waits_only, &backend, budget).await;
    assert_eq!(details.waits, 0, "{details:?}");
    assert_eq!(solution.stop_reason, StopReason::Completed);

    // Both budgets: the completion budget is the tighter, and the all-tokens one leaves room.
    let backend = Arc::new(ScriptedBackend::new(vec![thinking, "4"]));
    let (_, details) = solved(
        config.clone(),
        &backend,
        Budget::unlimited()
            .with_max_tokens(1 << 20)
            .with_max_completion_tokens(40),
    )
    .await;
    assert_eq!(backend.requests()[0].max_tokens, 36);
    assert_eq!(details.thinking_tokens, 36);

    // The same budget as a parent's, through best-of-N's samples: each sample's context
    // reads its parent's budget too.
    let backend = Arc::new(ScriptedBackend::new(vec![thinking, "4"]));
    let best = crate::BestOfN::new(crate::BestOfNConfig::self_consistency(NonZeroUsize::MIN))
        .unwrap()
        .with_inner(Box::new(BudgetForcing::new(config.clone()).unwrap()));
    let solution = ponder_engine::solve(
        &best,
        &Problem::new("p", "What is 2 + 2?"),
        Arc::clone(&backend) as Arc<dyn ponder_engine::Backend>,
        Budget::unlimited().with_max_completion_tokens(40),
    )
    .await
    .unwrap();
    assert_eq!(backend.requests().len(), 2, "thinking, then the answer");
    assert_eq!(backend.requests()[0].max_tokens, 36);
    assert_eq!(solution.answer.as_deref(), Some("4"));

    // A budget of all tokens: the answer's call sends the question and the thinking again,
    // so each token thought costs two.
    let measure = Arc::new(ScriptedBackend::new(vec!["x</think>", "4"]));
    solved(config.clone(), &measure, Budget::unlimited()).await;
    let prompt = measure.prompt_tokens(&measure.requests()[0].prompt) as u64;
    // The delimiter, a token, the cue and the answer: 8 + 1 + 13 + 4.
    let answer_room = 26;
    let backend = Arc::new(ScriptedBackend::new(vec![thinking, "4"]));
    let (solution, details) = solved(
        config,
        &backend,
        Budget::unlimited().with_max_tokens(2 * prompt + answer_room + 2 * 20),
    )
    .await;
    let requests = backend.requests();
    assert_eq!(requests.len(), 2, "thinking, then the answer");
    assert_eq!(requests[0].max_tokens, 20);
    assert_eq!(details.thinking_tokens, 20);
    assert_eq!(solution.stop_reason, StopReason::TokenBudget);
    assert_eq!(solution.answer.as_deref(), Some("4"));
    assert!(
        solution.usage.total_tokens() <= 2 * prompt + answer_room + 2 * 20,
        "{:?}",
        solution.usage
    );
}

#[tokio::test]
async fn a_resubmitted_wait_after_whitespace_has_no_space_of_its_own() {
    use ponder_engine::scripted::ScriptedBackend;

    // s1 appends "Wait" to the text as it is: after a newline, "\nWait", not "\n Wait" (a
    // line starting with a space, which models seldom write); after a word, " Wait".
    let config = BudgetForcingConfig {
        max_waits: 2,
        mode: ForcingMode::Resubmit,
        ..BudgetForcingConfig::default()
    };
    let backend = Arc::new(ScriptedBackend::new(vec![
        "2 + 2 = 4.\n</think>",
        ", yes, 4</think>",
        ", still 4.</think>",
        "4",
    ]));
    let (solution, details) = solved(config, &backend, ponder_engine::Budget::unlimited()).await;
    assert_eq!(details.waits, 2, "{details:?}");
    assert!(
        solution
            .completion
            .contains("2 + 2 = 4.\nWait, yes, 4 Wait, still 4."),
        "{}",
        solution.completion
    );
}

#[tokio::test]
async fn resubmitted_thinking_a_run_budget_shortened_cuts_the_problem_short() {
    use ponder_engine::scripted::ScriptedBackend;
    use ponder_engine::{Budget, Context, Meter, Metered, Resource};
    use std::sync::atomic::{AtomicBool, Ordering};

    // As a batch run meters a problem: the run's budget in the backend and told to the
    // context, with the flag it raises where that budget cut the problem short (redone on a
    // resumed run). Resubmission plans its thinking shorter for the answer's room, so no meter
    // shortens a call: the strategy says so itself, as decode's meters see it.
    // Crowded: after the answer another problem spends what the run has left, below what the
    // problem's own budget leaves; the budget that bound was still the problem's own when the
    // thinking was planned.
    let (config, thinking) = resubmit_in_budget();
    let problem = Problem::new("p", "What is 2 + 2?");
    for (run, own, crowded, run_cut) in [
        (40, None, false, true),
        (1000, Some(40), false, false),
        (1000, Some(40), true, false),
    ] {
        let run_meter = Meter::new(Budget::unlimited().with_max_completion_tokens(run));
        let scripted = Arc::new(ScriptedBackend::new(vec![thinking, "4"]));
        let metered = |backend: Arc<dyn ponder_engine::Backend>| {
            Arc::new(Metered::with_meter(backend, Arc::clone(&run_meter)))
                as Arc<dyn ponder_engine::Backend>
        };
        let backend = Arc::new(Crowded {
            inner: metered(Arc::clone(&scripted) as Arc<dyn ponder_engine::Backend>),
            other: crowded.then(|| {
                metered(Arc::new(ScriptedBackend::new(vec![
                    "y".repeat(run as usize)
                ])))
            }),
            calls: std::sync::atomic::AtomicUsize::new(0),
        });
        let cut = Arc::new(AtomicBool::new(false));
        let budget = own.map_or(Budget::unlimited(), |own| {
            Budget::unlimited().with_max_completion_tokens(own)
        });
        let cx =
            Context::new(backend, budget).within_noting(Arc::clone(&run_meter), Arc::clone(&cut));
        let solution = BudgetForcing::new(config.clone())
            .unwrap()
            .solve(&problem, &cx)
            .await
            .unwrap();
        assert_eq!(scripted.requests()[0].max_tokens, 36, "{run}");
        assert_eq!(solution.answer.as_deref(), Some("4"));
        assert_eq!(cx.meter().cut_by(), Some(Resource::CompletionTokens));
        // Only where the run's budget was the one that bound.
        assert_eq!(
            cut.load(Ordering::Relaxed),
            run_cut,
            "run {run}, own {own:?}, crowded {crowded}"
        );
        if crowded {
            assert_eq!(
                run_meter.remaining(Resource::CompletionTokens),
                Some(0),
                "the run was spent out"
            );
        }
    }
}

/// A backend whose second call (resubmission's answer), once returned, is followed by one of
/// `other` (another problem's, spending the run's budget).
struct Crowded {
    inner: Arc<dyn ponder_engine::Backend>,
    other: Option<Arc<dyn ponder_engine::Backend>>,
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl ponder_engine::Backend for Crowded {
    async fn generate(
        &self,
        request: ponder_engine::GenerationRequest,
    ) -> ponder_engine::Result<ponder_engine::Generation> {
        let generation = self.inner.generate(request).await?;
        let call = self
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let (1, Some(other)) = (call, &self.other) {
            let spend = ponder_engine::GenerationRequest::new(Prompt::Text("x".into()))
                .with_max_tokens(usize::MAX >> 1);
            other.generate(spend).await?;
        }
        Ok(generation)
    }

    fn capabilities(&self) -> ponder_engine::Capabilities {
        self.inner.capabilities()
    }

    async fn tokenize(
        &self,
        input: ponder_engine::TokenizeInput<'_>,
    ) -> ponder_engine::Result<Vec<u32>> {
        self.inner.tokenize(input).await
    }
}

#[tokio::test]
async fn resubmitted_thinking_cut_inside_its_delimiter_drops_the_part_written() {
    use ponder_engine::scripted::ScriptedBackend;
    use ponder_engine::Budget;

    // Eight tokens of thinking, then the delimiter, under a cap of 12: the call is cut four
    // tokens into the delimiter ("</th"), which is not thinking.
    let backend = Arc::new(ScriptedBackend::new(vec!["abcdefgh</think>", "4"]));
    let config = BudgetForcingConfig {
        max_thinking_tokens: 12,
        mode: ForcingMode::Resubmit,
        ..BudgetForcingConfig::default()
    };
    let (solution, details) = solved(config, &backend, Budget::unlimited()).await;
    // The thinking is the eight tokens kept (the four of the delimiter begun were spent).
    assert_eq!((details.thinking_tokens, details.forced_end), (8, true));
    assert!(
        solution.completion.contains("abcdefgh</think>")
            && !solution.completion.contains("</th</think>"),
        "{}",
        solution.completion
    );
    assert_eq!(solution.answer.as_deref(), Some("4"));

    // One character of a delimiter whose characters are several bytes is not taken for it.
    let backend = Arc::new(ScriptedBackend::new(vec!["abcdefghi◁xyz", "4"]));
    let config = BudgetForcingConfig {
        max_thinking_tokens: 12,
        think_open: "◁think▷".into(),
        think_close: "◁/think▷".into(),
        mode: ForcingMode::Resubmit,
        ..BudgetForcingConfig::default()
    };
    let (solution, _) = solved(config, &backend, Budget::unlimited()).await;
    assert!(
        solution.completion.contains("abcdefghi◁◁/think▷"),
        "{}",
        solution.completion
    );
}

/// A scripted backend made more like a real one: each call takes 20 ms where `slow` (calls
/// sent together overlap); where `counts_end`, it counts the end-of-sequence token it
/// generates to end a choice at a stop string, as mistral.rs and vLLM do.
struct Wrapped {
    inner: Arc<ponder_engine::scripted::ScriptedBackend>,
    slow: bool,
    counts_end: bool,
}

#[async_trait::async_trait]
impl ponder_engine::Backend for Wrapped {
    async fn generate(
        &self,
        request: ponder_engine::GenerationRequest,
    ) -> ponder_engine::Result<ponder_engine::Generation> {
        if self.slow {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let mut generation = self.inner.generate(request).await?;
        for choice in &mut generation.choices {
            if self.counts_end && choice.stop_sequence.is_some() {
                choice.completion_tokens += 1;
                generation.usage.completion_tokens += 1;
            }
        }
        Ok(generation)
    }

    fn capabilities(&self) -> ponder_engine::Capabilities {
        self.inner.capabilities()
    }

    async fn tokenize(
        &self,
        input: ponder_engine::TokenizeInput<'_>,
    ) -> ponder_engine::Result<Vec<u32>> {
        self.inner.tokenize(input).await
    }
}

#[tokio::test]
async fn samples_thinking_at_once_plan_from_what_is_spent_not_what_the_others_reserved() {
    use ponder_engine::scripted::ScriptedBackend;
    use ponder_engine::Budget;

    // Four samples thinking at once under one budget of 165 completion tokens: each call
    // reserves its 40, and all four fit. Planning from the others' reservations would leave
    // the last one 165 - 3 x 40 - 10 = 35.
    let scripted = Arc::new(ScriptedBackend::new(vec![
        "abc</think>",
        "abc</think>",
        "abc</think>",
        "abc</think>",
        "4",
        "4",
        "4",
        "4",
    ]));
    let config = BudgetForcingConfig {
        max_thinking_tokens: 40,
        max_answer_tokens: NonZeroUsize::new(10).unwrap(),
        mode: ForcingMode::Resubmit,
        ..BudgetForcingConfig::default()
    };
    let best = crate::BestOfN::new(crate::BestOfNConfig::self_consistency(
        NonZeroUsize::new(4).unwrap(),
    ))
    .unwrap()
    .with_inner(Box::new(BudgetForcing::new(config).unwrap()));
    let solution = ponder_engine::solve(
        &best,
        &Problem::new("p", "What is 2 + 2?"),
        Arc::new(Wrapped {
            inner: Arc::clone(&scripted),
            slow: true,
            counts_end: false,
        }) as Arc<dyn ponder_engine::Backend>,
        Budget::unlimited().with_max_completion_tokens(165),
    )
    .await
    .unwrap();
    let thinking: Vec<usize> = scripted
        .requests()
        .iter()
        .filter(|r| !r.stop.is_empty())
        .map(|r| r.max_tokens)
        .collect();
    assert_eq!(thinking, [40, 40, 40, 40]);
    assert_eq!(solution.stop_reason, StopReason::Completed);
    assert_eq!(solution.answer.as_deref(), Some("4"));
}

/// A scripted backend whose second call finds its prompt too long for a window it does not
/// declare (a server whose prompt grew on being tokenized again).
#[derive(Debug)]
struct WindowAtSecondCall {
    inner: ponder_engine::scripted::ScriptedBackend,
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl Backend for WindowAtSecondCall {
    async fn generate(
        &self,
        request: ponder_engine::GenerationRequest,
    ) -> ponder_engine::Result<ponder_engine::Generation> {
        if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            return Err(Error::PromptTooLong {
                prompt_tokens: 90,
                max_tokens: request.max_tokens,
                context_tokens: 100,
            });
        }
        self.inner.generate(request).await
    }

    fn capabilities(&self) -> ponder_engine::Capabilities {
        self.inner.capabilities()
    }

    async fn tokenize(&self, input: TokenizeInput<'_>) -> ponder_engine::Result<Vec<u32>> {
        self.inner.tokenize(input).await
    }
}

#[tokio::test]
async fn resubmitting_into_a_full_window_keeps_the_thinking_so_far() {
    // The model stops below the minimum; the wait's resubmission does not fit the window: the
    // thinking so far is kept (the wait taken back) and the answer read from it.
    let backend = WindowAtSecondCall {
        inner: ponder_engine::scripted::ScriptedBackend::new(vec!["2 + 2 = 4</think>"]),
        calls: Default::default(),
    };
    let config = BudgetForcingConfig {
        min_thinking_tokens: 100,
        mode: ForcingMode::Resubmit,
        ..BudgetForcingConfig::default()
    };
    let solution = ponder_engine::solve(
        &BudgetForcing::new(config).unwrap(),
        &Problem::new("p", "What is 2 + 2?"),
        Arc::new(backend) as Arc<dyn Backend>,
        ponder_engine::Budget::unlimited(),
    )
    .await
    .unwrap();
    let details: ForcingDetails = serde_json::from_value(solution.details.clone()).unwrap();
    assert_eq!(details.waits, 0, "{details:?}");
    assert_eq!(solution.answer.as_deref(), Some("4"));
    assert!(
        !solution.completion.contains("Wait"),
        "{}",
        solution.completion
    );
}

#[tokio::test]
async fn resubmitting_stops_when_the_model_ends_at_once_after_each_wait() {
    // Below a minimum of 100 the model ends at once after each wait: after MAX_IDLE_WAITS of
    // those, no more resubmissions (each sends the whole prefix again), and the answer. Also
    // on a backend that counts the end-of-sequence token it generates after a stop string
    // (mistral.rs, vLLM): an idle wait still costs a token, but wrote nothing.
    let mut thought = Vec::new();
    for counts_end in [false, true] {
        let scripted = Arc::new(ponder_engine::scripted::ScriptedBackend::new(vec![
            "2 + 2 = 4</think>",
            "</think>",
            "</think>",
            "4",
        ]));
        let backend = Arc::new(Wrapped {
            inner: Arc::clone(&scripted),
            slow: false,
            counts_end,
        });
        let config = BudgetForcingConfig {
            min_thinking_tokens: 100,
            mode: ForcingMode::Resubmit,
            ..BudgetForcingConfig::default()
        };
        let solution = ponder_engine::solve(
            &BudgetForcing::new(config).unwrap(),
            &Problem::new("p", "What is 2 + 2?"),
            backend,
            ponder_engine::Budget::unlimited(),
        )
        .await
        .unwrap();
        let details: ForcingDetails = serde_json::from_value(solution.details.clone()).unwrap();
        assert_eq!(
            scripted.requests().len(),
            4,
            "three thinking calls, then the answer ({counts_end})"
        );
        assert_eq!(
            (details.waits, details.waits_ignored),
            (2, true),
            "{details:?}"
        );
        assert_eq!(solution.answer.as_deref(), Some("4"));
        thought.push(details.thinking_tokens);
    }
    // The end-of-sequence tokens counted are not thinking: "2 + 2 = 4" and two " Wait"s.
    assert_eq!(thought, [19, 19]);
}

#[test]
fn a_sampled_wait_is_drawn_only_where_the_nucleus_holds_an_ending() {
    // Waits said over 200 steps of thinking a wait is owed at, each step's logits `probs`.
    let waits = |probs: &[(u32, f32)], top_p: Option<f64>| {
        let config = BudgetForcingConfig {
            temperature: 1.0,
            top_p,
            ..config(1000, 2000, 0)
        };
        let p = ForcingProcessor::new(tokens(), &config, 7);
        let mut generated = Vec::new();
        for _ in 0..200 {
            let mut logits = vec![f32::NEG_INFINITY; 12];
            for &(id, prob) in probs {
                logits[id as usize] = prob.ln();
            }
            p.process(&mut logits, &generated);
            generated.push(argmax(&logits));
        }
        p.details().waits
    };
    // The end of sequence has 5%, outside a 0.9 nucleus (the favourite's 92% fills it): the
    // sampler would never draw it, so no wait; without the filter, about one step in 20.
    let outside = [(5, 0.92), (EOS, 0.05), (10, 0.03)];
    assert_eq!(waits(&outside, Some(0.9)), 0);
    assert!(waits(&outside, None) > 0);
    // Inside the nucleus (50% then 45%): about half the steps.
    let inside = [(5, 0.5), (EOS, 0.45), (10, 0.05)];
    assert!(waits(&inside, Some(0.9)) > 0);
}

#[test]
fn the_nucleus_counts_a_tied_ending_once_and_in_its_place() {
    use super::processor::probability_of;
    // Weights .4, .2, .2, .2 (ids 1, 0 = EOS, 2, 3); top_p 0.5: the nucleus is ids 1 and 0
    // (0 ranks before 2 and 3 among equals): the ending's share is .2 / .6.
    let logits: Vec<f32> = [0.2f32, 0.4, 0.2, 0.2].iter().map(|p| p.ln()).collect();
    let p = probability_of(&logits, &[EOS], 0.4f32.ln(), 1.0, Some(0.5));
    assert!((p - 0.2 / 0.6).abs() < 1e-6, "{p}");
    // Past it (id 3 ranks after 0 and 2, whose mass already reaches 0.5): never.
    let p = probability_of(&logits, &[3], 0.4f32.ln(), 1.0, Some(0.5));
    assert_eq!(p, 0.0);
    // The favourite fills the nucleus alone: never, by the pass without a sort.
    let p = probability_of(&logits, &[EOS], 0.4f32.ln(), 1.0, Some(0.3));
    assert_eq!(p, 0.0);
}
