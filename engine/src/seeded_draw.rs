//! Per-request seeds for the in-process mistral.rs backend.
//!
//! mistral.rs 0.8.1 samples every sequence from one generator for the whole engine (seeded once,
//! at start), in the order its batches run, and takes no seed with a request: a sampled text
//! depends on what else the engine did before it and beside it (other problems under
//! `--concurrency`, another strategy's calls, a resumed run). A request that brings a seed is
//! therefore drawn by ponder: a logits processor, last after every other, draws each token
//! from the request's distribution with a generator seeded by the request's seed, the choice
//! and the token's position, and leaves that token the only choice (mistral.rs is asked for
//! greedy decoding, which takes it). A choice's text is then a function of its prompt, its
//! seed and the model's arithmetic alone.
//!
//! mistral.rs, decoding greedily, then reports as the log-probability of the token left alone
//! log10 of its logit (0): minus infinity. So a request that asks for log-probabilities has the
//! draw record, at each position, the drawn token's probability and
//! the most likely tokens', as mistral.rs reports a sampled token's (the probabilities at the
//! temperature over the whole vocabulary; tokens top-k or top-p leaves out have none), and the
//! backend reads them from that record.

use std::sync::{Arc, Mutex};

use crate::backend::{LogitsProcessor, Sampling};
use crate::distribution::{most_likely_first, Distribution};

/// 2^64 over the golden ratio: spreads consecutive numbers over the whole range.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Draws each token of one choice from its seed (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct SeededDraw {
    /// The choice's seed.
    seed: u64,
    temperature: f64,
    top_k: Option<usize>,
    top_p: Option<f64>,
    /// Where the draws are recorded, for a request that asks for log-probabilities.
    record: Option<Arc<Record>>,
    /// Takes the most likely token instead of drawing (a greedy request that asks for
    /// log-probabilities, [`SeededDraw::most_likely`]).
    greedy: bool,
}

/// One position's draw, as a sampler reports it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Drawn {
    /// The drawn token.
    pub(crate) token: u32,
    /// Its natural-log probability.
    pub(crate) logprob: f32,
    /// The most likely tokens the filters left, most likely first: id and natural-log
    /// probability.
    pub(crate) top: Vec<(u32, f32)>,
}

/// The draws of one choice, by generated position.
#[derive(Debug)]
pub(crate) struct Record {
    /// The prompt's length: a context this long is the first generated token's.
    prompt_len: usize,
    /// How many of the most likely tokens to keep at each position.
    top_n: usize,
    drawn: Mutex<Vec<Option<Drawn>>>,
}

impl Record {
    /// The draws recorded, by generated position (`None` where the draw was not asked: no
    /// possible token).
    pub(crate) fn drawn(&self) -> Vec<Option<Drawn>> {
        self.drawn.lock().map(|d| d.clone()).unwrap_or_default()
    }

    fn note(&self, position: usize, drawn: Drawn) {
        let Some(at) = position.checked_sub(self.prompt_len) else {
            return;
        };
        if let Ok(mut record) = self.drawn.lock() {
            if record.len() <= at {
                record.resize(at + 1, None);
            }
            // A position drawn again (a recomputed step) keeps the last draw, the one taken.
            record[at] = Some(drawn);
        }
    }
}

impl SeededDraw {
    /// The draw of choice `choice` (0, 1, ...) of a request sampled by `sampling` with `seed`.
    pub(crate) fn for_choice(seed: u64, choice: usize, sampling: &Sampling) -> Self {
        // Mixed, not added: seed s's choice 1 is not seed s + 1's choice 0.
        let base = fastrand::Rng::with_seed(seed).u64(..);
        Self {
            seed: fastrand::Rng::with_seed(base ^ (choice as u64).wrapping_mul(GOLDEN)).u64(..),
            temperature: sampling.temperature,
            top_k: sampling.top_k,
            top_p: sampling.top_p,
            record: None,
            greedy: false,
        }
    }

    /// Greedy decoding, which records (see [`SeededDraw::recording`]) the token taken and the
    /// most likely ones with their probabilities at temperature 1 over the whole vocabulary,
    /// as a sampler reports them: mistral.rs's own greedy path reports log10 of the logits.
    pub(crate) fn most_likely() -> Self {
        Self {
            seed: 0,
            temperature: 1.0,
            top_k: None,
            top_p: None,
            record: None,
            greedy: true,
        }
    }

    /// The same draw, recording at each position after a prompt of `prompt_len` tokens the
    /// drawn token's probability and the `top_n` most likely tokens'.
    pub(crate) fn recording(mut self, prompt_len: usize, top_n: usize) -> (Self, Arc<Record>) {
        let record = Arc::new(Record {
            prompt_len,
            top_n,
            drawn: Mutex::new(Vec::new()),
        });
        self.record = Some(Arc::clone(&record));
        (self, record)
    }

    /// A number in [0, 1) for the token at `position` (the length of its context).
    fn uniform(&self, position: usize) -> f64 {
        // A different generator state for each position; wyrand's output mixes it.
        let state = self.seed ^ (position as u64).wrapping_mul(GOLDEN);
        fastrand::Rng::with_seed(state).f64()
    }
}

impl LogitsProcessor for SeededDraw {
    fn process(&self, logits: &mut [f32], context: &[u32]) {
        let Some(distribution) = Distribution::of(logits, self.temperature, self.top_k, self.top_p)
        else {
            return;
        };
        let token = if self.greedy {
            distribution.most_likely()
        } else {
            distribution.draw(self.uniform(context.len()))
        };
        if let Some(record) = &self.record {
            record.note(context.len(), distribution.drawn(token, record.top_n));
        }
        for (i, logit) in logits.iter_mut().enumerate() {
            *logit = if i == token { 0.0 } else { f32::NEG_INFINITY };
        }
    }
}

impl Distribution {
    /// The token at `u` (in [0, 1)).
    fn draw(&self, u: f64) -> usize {
        let sum: f64 = self.kept.iter().map(|&(_, weight)| weight).sum();
        let mut target = u * sum;
        for &(token, weight) in &self.kept {
            if target < weight {
                return token;
            }
            target -= weight;
        }
        self.kept.last().map_or(0, |&(token, _)| token)
    }

    /// The most likely token; of equals, the higher id, as mistral.rs's greedy pick takes the
    /// last of the largest logits (`argmax_f32`): asking for log-probabilities does not change
    /// a greedy text.
    fn most_likely(&self) -> usize {
        self.kept
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
            .map_or(0, |&(token, _)| token)
    }

    /// `token`'s draw as a sampler reports it, with the `top_n` most likely tokens kept.
    fn drawn(&self, token: usize, top_n: usize) -> Drawn {
        let ln = |weight: f64| (weight / self.total).ln() as f32;
        let weight = self
            .kept
            .iter()
            .find(|&&(t, _)| t == token)
            .map_or(0.0, |&(_, weight)| weight);
        // The `top_n` most likely in one pass, in order: no copy of the vocabulary per token.
        let mut top: Vec<(usize, f64)> = Vec::with_capacity(top_n + 1);
        for entry in &self.kept {
            let beats_last = top
                .last()
                .is_none_or(|last| most_likely_first(entry, last).is_lt());
            if top.len() < top_n || (top_n > 0 && beats_last) {
                let at = top.partition_point(|t| most_likely_first(t, entry).is_lt());
                top.insert(at, *entry);
                top.truncate(top_n);
            }
        }
        Drawn {
            token: token as u32,
            logprob: ln(weight),
            top: top
                .into_iter()
                .map(|(id, weight)| (id as u32, ln(weight)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How often each of `logits`' tokens is drawn at 40,000 positions of one seed.
    fn shares(draw_of: &SeededDraw, logits: &[f32]) -> Vec<f64> {
        let mut counts = vec![0usize; logits.len()];
        let context = vec![0u32; 40_000];
        for position in 0..context.len() {
            let mut l = logits.to_vec();
            draw_of.process(&mut l, &context[..position]);
            let chosen: Vec<usize> = (0..l.len()).filter(|&i| l[i].is_finite()).collect();
            assert_eq!(chosen.len(), 1, "one token left: {l:?}");
            counts[chosen[0]] += 1;
        }
        counts
            .iter()
            .map(|&c| c as f64 / context.len() as f64)
            .collect()
    }

    fn sampling(temperature: f64, top_k: Option<usize>, top_p: Option<f64>) -> Sampling {
        Sampling {
            temperature,
            top_k,
            top_p,
            seed: Some(7),
        }
    }

    fn near(got: &[f64], want: &[f64]) -> bool {
        got.iter().zip(want).all(|(g, w)| (g - w).abs() < 0.012)
    }

    /// Logits of probabilities 0.5, 0.3, 0.15 and 0.05.
    fn logits() -> [f32; 4] {
        [0.5f32.ln(), 0.3f32.ln(), 0.15f32.ln(), 0.05f32.ln()]
    }

    #[test]
    fn tokens_are_drawn_as_the_distribution_gives_them() {
        let got = shares(
            &SeededDraw::for_choice(7, 0, &sampling(1.0, None, None)),
            &logits(),
        );
        assert!(near(&got, &[0.5, 0.3, 0.15, 0.05]), "{got:?}");
        // At temperature 0.5 the probabilities are squared, then normalised.
        let squared: f64 = [0.25, 0.09, 0.0225, 0.0025].iter().sum();
        let want: Vec<f64> = [0.25, 0.09, 0.0225, 0.0025]
            .iter()
            .map(|p| p / squared)
            .collect();
        let got = shares(
            &SeededDraw::for_choice(7, 0, &sampling(0.5, None, None)),
            &logits(),
        );
        assert!(near(&got, &want), "{got:?} against {want:?}");
    }

    #[test]
    fn top_k_and_top_p_keep_the_most_likely() {
        let got = shares(
            &SeededDraw::for_choice(7, 0, &sampling(1.0, Some(2), None)),
            &logits(),
        );
        assert!(near(&got, &[0.625, 0.375, 0.0, 0.0]), "{got:?}");
        // 0.5 is below 0.6, so the next is kept too (it crosses it); no more after that.
        let got = shares(
            &SeededDraw::for_choice(7, 0, &sampling(1.0, None, Some(0.6))),
            &logits(),
        );
        assert!(near(&got, &[0.625, 0.375, 0.0, 0.0]), "{got:?}");
        // Top-k first, then top-p of the probabilities over the whole vocabulary: of the two
        // kept, 0.5 is below 0.55, so both stay (of the two alone, 0.625 would keep one).
        let got = shares(
            &SeededDraw::for_choice(7, 0, &sampling(1.0, Some(2), Some(0.55))),
            &logits(),
        );
        assert!(near(&got, &[0.625, 0.375, 0.0, 0.0]), "{got:?}");
        let got = shares(
            &SeededDraw::for_choice(7, 0, &sampling(1.0, Some(3), Some(0.45))),
            &logits(),
        );
        assert_eq!(got, [1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn a_seed_choice_and_position_give_one_draw_and_others_another() {
        let logits = [0.0f32; 1000];
        let pick = |seed: u64, choice: usize, position: usize| {
            let mut l = logits;
            SeededDraw::for_choice(seed, choice, &sampling(1.0, None, None))
                .process(&mut l, &vec![1; position]);
            l.iter().position(|x| x.is_finite()).unwrap()
        };
        let drawn: Vec<usize> = (0..20).map(|p| pick(3, 0, p)).collect();
        assert_eq!(drawn, (0..20).map(|p| pick(3, 0, p)).collect::<Vec<_>>());
        assert_ne!(drawn, (0..20).map(|p| pick(4, 0, p)).collect::<Vec<_>>());
        assert_ne!(drawn, (0..20).map(|p| pick(3, 1, p)).collect::<Vec<_>>());
        assert_ne!(drawn[..10], drawn[10..]);
        // Neighbouring seeds share no choice's draws (seed 3's choice 1 is not seed 4's 0).
        for (a, b) in [(0, 0), (0, 1), (1, 0), (1, 2), (2, 1)] {
            let of = |seed: u64, choice: usize| {
                (0..20).map(|p| pick(seed, choice, p)).collect::<Vec<_>>()
            };
            assert_ne!(of(3, a), of(4, b), "seed 3 choice {a}, seed 4 choice {b}");
        }
    }

    #[test]
    fn a_recording_draw_reports_each_positions_probabilities_as_a_sampler_does() {
        // Top-k 2 of 0.5, 0.3, 0.15, 0.05: the two drawn in proportion, each reported with
        // its probability over the whole vocabulary (as mistral.rs reports a sampled token's),
        // and only the tokens kept among the most likely.
        let (seeded, record) =
            SeededDraw::for_choice(5, 0, &sampling(1.0, Some(2), None)).recording(3, 3);
        let context = [9u32; 40];
        for position in [3, 4, 6] {
            let mut l = logits();
            seeded.process(&mut l, &context[..position]);
        }
        // Before the prompt's end: no generated position.
        seeded.process(&mut logits(), &context[..2]);
        let drawn = record.drawn();
        assert_eq!(drawn.len(), 4, "{drawn:?}");
        assert!(drawn[2].is_none());
        let top = vec![(0, 0.5f32.ln()), (1, 0.3f32.ln())];
        for d in [&drawn[0], &drawn[1], &drawn[3]] {
            let d = d.as_ref().unwrap();
            let want = [0.5f32, 0.3][d.token as usize].ln();
            assert!((d.logprob - want).abs() < 1e-6, "{d:?}");
            assert_eq!(d.top.len(), 2);
            for ((id, lp), (want_id, want_lp)) in d.top.iter().zip(&top) {
                assert_eq!(id, want_id);
                assert!((lp - want_lp).abs() < 1e-6, "{d:?}");
            }
        }
        // At temperature 0.5 the probabilities are squared and normalised; one of the top.
        let (seeded, record) =
            SeededDraw::for_choice(5, 0, &sampling(0.5, None, None)).recording(0, 1);
        seeded.process(&mut logits(), &[]);
        let d = record.drawn()[0].clone().unwrap();
        let squared: f32 = [0.25f32, 0.09, 0.0225, 0.0025].iter().sum();
        let want = ([0.25f32, 0.09, 0.0225, 0.0025][d.token as usize] / squared).ln();
        assert!((d.logprob - want).abs() < 1e-5, "{d:?} against {want}");
        assert_eq!(d.top.len(), 1);
        assert!((d.top[0].1 - (0.25 / squared).ln()).abs() < 1e-5, "{d:?}");
        // A token forced is certain.
        let (seeded, record) =
            SeededDraw::for_choice(5, 0, &sampling(1.0, None, None)).recording(0, 2);
        seeded.process(&mut [f32::NEG_INFINITY, f32::INFINITY, 1.0], &[]);
        assert_eq!(
            record.drawn(),
            [Some(Drawn {
                token: 1,
                logprob: 0.0,
                top: vec![(1, 0.0)]
            })]
        );
    }

    #[test]
    fn a_forced_token_stays_and_no_possible_token_is_left_alone() {
        let seeded = SeededDraw::for_choice(1, 0, &sampling(1.0, None, None));
        let mut forced = [f32::NEG_INFINITY, 3.0, f32::NEG_INFINITY];
        seeded.process(&mut forced, &[1, 2]);
        assert_eq!(forced, [f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY]);
        let mut none = [f32::NEG_INFINITY, f32::NAN];
        seeded.process(&mut none, &[1, 2]);
        assert!(none[0] == f32::NEG_INFINITY && none[1].is_nan());
    }
}
