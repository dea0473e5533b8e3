//! The distribution a sampler draws a token from: the probabilities at a temperature, kept to
//! the `top_k` most likely and then to the `top_p` nucleus as mistral.rs keeps them. Ponder's
//! seeded draw draws from it; [`draw_probability`] says how likely a draw lands on some tokens
//! (budget forcing: how often a sampled decode would have ended its thinking).

/// The tokens a sampler may draw at one position, with their weights.
pub(crate) struct Distribution {
    /// The tokens kept, with their unnormalised probabilities.
    pub(crate) kept: Vec<(usize, f64)>,
    /// The weight of every possible token, kept or not (what a draw's log-probability is
    /// reported against).
    #[cfg_attr(not(feature = "mistralrs"), allow(dead_code))]
    pub(crate) total: f64,
}

impl Distribution {
    /// The distribution `logits` give at `temperature`, kept to the `top_k` most likely, then
    /// to the most likely whose probabilities first reach `top_p` (as mistral.rs samples: the
    /// probabilities over the whole vocabulary, the token that crosses `top_p` kept). `None`
    /// where no token is possible (every logit minus infinity or NaN).
    pub(crate) fn of(
        logits: &[f32],
        temperature: f64,
        top_k: Option<usize>,
        top_p: Option<f64>,
    ) -> Option<Self> {
        // A logit of plus infinity is a token forced.
        if let Some(forced) = logits.iter().position(|&l| l == f32::INFINITY) {
            return Some(Self {
                kept: vec![(forced, 1.0)],
                total: 1.0,
            });
        }
        keep(logits, temperature, top_k, top_p)
    }

    /// The probability a draw lands on one of `ids`.
    fn share(&self, ids: &[u32]) -> f64 {
        let (mut part, mut sum) = (0.0, 0.0);
        for &(token, weight) in &self.kept {
            sum += weight;
            if ids.contains(&(token as u32)) {
                part += weight;
            }
        }
        if sum > 0.0 {
            part / sum
        } else {
            0.0
        }
    }
}

/// The probability that a sampler at `temperature` (positive), kept to `top_k` and `top_p`
/// (the most likely whose probabilities first reach `top_p` kept, the one that crosses it
/// included, as mistral.rs samples), draws one of `ids` from `logits`; 0 where no token is
/// possible.
pub fn draw_probability(
    logits: &[f32],
    ids: &[u32],
    temperature: f64,
    top_k: Option<usize>,
    top_p: Option<f64>,
) -> f64 {
    // Most steps the tokens more likely than any of `ids` already fill the nucleus, and none
    // of them can be drawn: no sort.
    if let Some(p) = top_p.filter(|&p| p > 0.0 && p < 1.0) {
        let max = logits
            .iter()
            .copied()
            .filter(|l| l.is_finite())
            .fold(f32::NEG_INFINITY, f32::max);
        let best = ids
            .iter()
            .filter_map(|&id| logits.get(id as usize))
            .copied()
            .filter(|l| l.is_finite())
            .fold(f32::NEG_INFINITY, f32::max);
        if max.is_finite() && best.is_finite() {
            let weight = |l: f32| (f64::from(l - max) / temperature).exp();
            let (mut total, mut above) = (0.0, 0.0);
            for &l in logits.iter().filter(|l| l.is_finite()) {
                let w = weight(l);
                total += w;
                if l > best {
                    above += w;
                }
            }
            if above >= p * total {
                return 0.0;
            }
        }
    }
    Distribution::of(logits, temperature, top_k, top_p).map_or(0.0, |d| d.share(ids))
}

/// Most likely first; of equals, the lower id.
pub(crate) fn most_likely_first(a: &(usize, f64), b: &(usize, f64)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// The distribution of finite `logits` (see [`Distribution::of`]).
fn keep(
    logits: &[f32],
    temperature: f64,
    top_k: Option<usize>,
    top_p: Option<f64>,
) -> Option<Distribution> {
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
    Some(Distribution { kept, total })
}
