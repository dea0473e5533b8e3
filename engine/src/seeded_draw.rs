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

use crate::backend::{LogitsProcessor, Sampling};

/// 2^64 over the golden ratio: spreads consecutive numbers over the whole range.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Draws each token of one choice from its seed (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeededDraw {
    /// The choice's seed.
    seed: u64,
    temperature: f64,
    top_k: Option<usize>,
    top_p: Option<f64>,
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
        }
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
        let u = self.uniform(context.len());
        if let Some(token) = draw(logits, self.temperature, self.top_k, self.top_p, u) {
            for (i, logit) in logits.iter_mut().enumerate() {
                *logit = if i == token { 0.0 } else { f32::NEG_INFINITY };
            }
        }
    }
}

/// The token at `u` (in [0, 1)) of the distribution `logits` give at `temperature`, kept to
/// the `top_k` most likely, then to the most likely whose probabilities first reach `top_p`
/// (as mistral.rs samples: the probabilities over the whole vocabulary, the token that crosses
/// `top_p` kept). `None` where no token is possible (every logit minus infinity or NaN).
fn draw(
    logits: &[f32],
    temperature: f64,
    top_k: Option<usize>,
    top_p: Option<f64>,
    u: f64,
) -> Option<usize> {
    // A logit of plus infinity is a token forced.
    if let Some(forced) = logits.iter().position(|&l| l == f32::INFINITY) {
        return Some(forced);
    }
    let max = logits
        .iter()
        .copied()
        .filter(|l| l.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return None;
    }
    // Each possible token and its probability, unnormalised.
    let mut kept: Vec<(usize, f64)> = logits
        .iter()
        .enumerate()
        .filter(|(_, l)| l.is_finite())
        .map(|(i, &l)| (i, (f64::from(l - max) / temperature).exp()))
        .filter(|&(_, weight)| weight > 0.0)
        .collect();
    let total: f64 = kept.iter().map(|&(_, weight)| weight).sum();
    let most_likely_first =
        |a: &(usize, f64), b: &(usize, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if let Some(k) = top_k.filter(|&k| k > 0 && k < kept.len()) {
        kept.select_nth_unstable_by(k - 1, most_likely_first);
        kept.truncate(k);
    }
    if let Some(p) = top_p.filter(|&p| p > 0.0 && p < 1.0) {
        kept.sort_unstable_by(most_likely_first);
        let mut mass = 0.0;
        let within = kept
            .iter()
            .take_while(|&&(_, weight)| {
                let below = mass < p * total;
                mass += weight;
                below
            })
            .count();
        kept.truncate(within.max(1));
    }
    let sum: f64 = kept.iter().map(|&(_, weight)| weight).sum();
    let mut target = u * sum;
    for &(token, weight) in &kept {
        if target < weight {
            return Some(token);
        }
        target -= weight;
    }
    kept.last().map(|&(token, _)| token)
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
