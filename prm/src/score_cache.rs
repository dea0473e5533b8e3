//! The scores a scorer has read, remembered by a key of what was scored.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// Scores by key, at most `capacity` of them: the memory is cleared when full (a search's
/// scores are wanted again within a round or two, so a cleared memory costs one re-read of
/// each live path, and no order of use need be kept).
///
/// Only finite scores are remembered: a score that could not be read is asked again.
pub(crate) struct ScoreCache {
    capacity: usize,
    scores: Mutex<HashMap<u64, f64>>,
}

/// Shows how full it is, not the scores.
impl std::fmt::Debug for ScoreCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScoreCache")
            .field("capacity", &self.capacity)
            .field("len", &self.lock().len())
            .finish()
    }
}

impl ScoreCache {
    /// An empty memory of at most `capacity` scores.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            scores: Mutex::new(HashMap::new()),
        }
    }

    /// A poisoned lock still holds whole entries (each insert is one map operation).
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, f64>> {
        self.scores.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The score remembered for `key`.
    pub(crate) fn get(&self, key: u64) -> Option<f64> {
        self.lock().get(&key).copied()
    }

    /// The scores remembered for `keys`, in order.
    pub(crate) fn get_all(&self, keys: &[u64]) -> Vec<Option<f64>> {
        let scores = self.lock();
        keys.iter().map(|key| scores.get(key).copied()).collect()
    }

    /// Remembers `score` for `key` unless it is not finite.
    pub(crate) fn insert(&self, key: u64, score: f64) {
        self.insert_all(&[key], &[score]);
    }

    /// Remembers each finite score for its key (pairs in order; the shorter list ends it).
    pub(crate) fn insert_all(&self, keys: &[u64], scores: &[f64]) {
        let mut memory = self.lock();
        for (&key, &score) in keys.iter().zip(scores) {
            if !score.is_finite() {
                continue;
            }
            if memory.len() >= self.capacity && !memory.contains_key(&key) {
                memory.clear();
            }
            memory.insert(key, score);
        }
    }

    /// How many scores are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_finite_scores_and_clears_when_full() {
        let cache = ScoreCache::new(2);
        cache.insert_all(&[1, 2, 3], &[0.5, f64::NAN, 0.25]);
        assert_eq!(cache.get_all(&[1, 2, 3]), vec![Some(0.5), None, Some(0.25)]);
        // Rewriting a key held does not clear the memory.
        cache.insert(1, 0.75);
        assert_eq!(cache.get(1), Some(0.75));
        assert_eq!(cache.len(), 2);
        // A new key when full clears it first.
        cache.insert(4, 1.0);
        assert_eq!(cache.get_all(&[1, 3, 4]), vec![None, None, Some(1.0)]);
        cache.insert(5, f64::INFINITY);
        assert_eq!(cache.get(5), None);
    }
}
