//! [`ScoreReader`]: reads reward probabilities inside one decode by teacher forcing.
//!
//! The continuation to score is forced token by token; at the listed positions the processor
//! reads the probability of the "good" tokens against the "bad" ones from the logits, before
//! the forced token is applied. One request thus scores every step of a candidate, and
//! requests for different candidates run concurrently, so mistral.rs batches them.

use std::sync::Mutex;

use ponder_engine::LogitsProcessor;

/// Forces `target` after the prompt and reads `P(good) / (P(good) + P(bad))` where the
/// generated length equals one of `reads`.
#[derive(Debug)]
pub struct ScoreReader {
    target: Vec<u32>,
    reads: Vec<usize>,
    good: Vec<u32>,
    bad: Vec<u32>,
    state: Mutex<ReaderState>,
}

#[derive(Debug, Default)]
struct ReaderState {
    prompt_len: Option<usize>,
    scores: Vec<Option<f64>>,
    /// A label id past the logits (the model's vocabulary), and their length.
    out_of_vocabulary: Option<(u32, usize)>,
}

impl ScoreReader {
    /// Forces `target`; reads at each generated length in `reads` (0 = the first token).
    pub fn new(target: Vec<u32>, reads: Vec<usize>, good: Vec<u32>, bad: Vec<u32>) -> Self {
        let n = reads.len();
        Self {
            target,
            reads,
            good,
            bad,
            state: Mutex::new(ReaderState {
                prompt_len: None,
                scores: vec![None; n],
                out_of_vocabulary: None,
            }),
        }
    }

    /// Tokens the request must generate for every read to happen.
    pub fn tokens_needed(&self) -> usize {
        let last_read = self.reads.iter().max().map_or(0, |r| r + 1);
        self.target.len().max(last_read).max(1)
    }

    /// The scores read, one per read position (`None` where the decode did not get there).
    pub fn scores(&self) -> Vec<Option<f64>> {
        self.state
            .lock()
            .map(|s| s.scores.clone())
            .unwrap_or_else(|p| p.into_inner().scores.clone())
    }

    /// A good or bad id the model has no logit for (a `good_id` past its vocabulary), and the
    /// vocabulary's size: seen at a read, where it would have left that side empty and every
    /// score 0 or 1.
    pub fn out_of_vocabulary(&self) -> Option<(u32, usize)> {
        self.state
            .lock()
            .map(|s| s.out_of_vocabulary)
            .unwrap_or_else(|p| p.into_inner().out_of_vocabulary)
    }
}

/// `P(good) / (P(good) + P(bad))` from raw logits, summing over each set of ids.
pub fn good_probability(logits: &[f32], good: &[u32], bad: &[u32]) -> Option<f64> {
    let pick = |ids: &[u32]| -> Vec<f64> {
        ids.iter()
            .filter_map(|&i| logits.get(i as usize).map(|&l| f64::from(l)))
            .filter(|l| l.is_finite())
            .collect()
    };
    let (g, b) = (pick(good), pick(bad));
    if g.is_empty() && b.is_empty() {
        return None;
    }
    let max = g
        .iter()
        .chain(&b)
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    let sum = |v: &[f64]| v.iter().map(|l| (l - max).exp()).sum::<f64>();
    let (pg, pb) = (sum(&g), sum(&b));
    // An empty side is 0, not the -0.0 an empty float sum is (which would sort below 0).
    let (pg, pb) = (pg + 0.0, pb + 0.0);
    Some(pg / (pg + pb))
}

impl LogitsProcessor for ScoreReader {
    fn process(&self, logits: &mut [f32], context: &[u32]) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let prompt_len = *state.prompt_len.get_or_insert(context.len());
        let k = context.len().saturating_sub(prompt_len);
        for (slot, &read) in self.reads.iter().enumerate() {
            if read == k {
                if state.out_of_vocabulary.is_none() {
                    state.out_of_vocabulary = self
                        .good
                        .iter()
                        .chain(&self.bad)
                        .find(|&&id| id as usize >= logits.len())
                        .map(|&id| (id, logits.len()));
                }
                if let Some(score) = state.scores.get_mut(slot) {
                    *score = good_probability(logits, &self.good, &self.bad);
                }
            }
        }
        if let Some(&next) = self.target.get(k) {
            for (i, l) in logits.iter_mut().enumerate() {
                if i != next as usize {
                    *l = f32::NEG_INFINITY;
                }
            }
            if let Some(l) = logits.get_mut(next as usize) {
                if !l.is_finite() {
                    *l = 0.0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_then_forces() {
        let reader = ScoreReader::new(vec![4, 5], vec![0, 2], vec![1], vec![2]);
        assert_eq!(reader.tokens_needed(), 3);
        let mut logits = vec![0.0f32, 2.0, 0.0, 0.0, 0.0, 0.0];
        reader.process(&mut logits, &[9, 9]);
        assert_eq!(logits.iter().position(|l| l.is_finite()), Some(4));
        let mut logits = vec![0.0f32; 6];
        reader.process(&mut logits, &[9, 9, 4]);
        let mut logits = vec![0.0f32, 0.0, 3.0, 0.0, 0.0, 0.0];
        reader.process(&mut logits, &[9, 9, 4, 5]);
        let scores = reader.scores();
        let e2 = 2f64.exp();
        assert!((scores[0].unwrap() - e2 / (e2 + 1.0)).abs() < 1e-9);
        let e3 = 3f64.exp();
        assert!((scores[1].unwrap() - 1.0 / (1.0 + e3)).abs() < 1e-9);
    }

    #[test]
    fn probability_sums_over_ids() {
        let logits = [0.0f32, 0.0, 0.0, f32::NEG_INFINITY];
        assert!((good_probability(&logits, &[0, 1], &[2]).unwrap() - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(good_probability(&logits, &[3], &[3]), None);
        assert_eq!(good_probability(&logits, &[9], &[]), None);
        // A side with nothing to read is 0, +0.0 (helper-124: -0.0 sorted below 0).
        let none_good = good_probability(&logits, &[9], &[0]).unwrap();
        assert!(none_good == 0.0 && none_good.is_sign_positive());
    }

    #[test]
    fn a_label_past_the_vocabulary_is_told() {
        let reader = ScoreReader::new(vec![], vec![0], vec![1], vec![7]);
        reader.process(&mut [0.0f32; 6], &[9]);
        assert_eq!(reader.out_of_vocabulary(), Some((7, 6)));
        let reader = ScoreReader::new(vec![], vec![0], vec![1], vec![5]);
        reader.process(&mut [0.0f32; 6], &[9]);
        assert_eq!(reader.out_of_vocabulary(), None);
    }
}
