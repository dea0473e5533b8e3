//! Token ids of short pieces of text, kept for a backend's life.
//!
//! Strategies ask for the same pieces on every solve (budget forcing's delimiter in each way a
//! model may write it, its cue and waits: some 45 pieces). Each is an engine round trip in
//! process, which waits for the step of every sequence being decoded, or a request to a
//! server; a backend's tokenizer does not change, so each piece is asked once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use crate::Result;

/// Most pieces kept, and the longest kept: strategies' pieces are few and short; text of a
/// caller's own (a reward model's steps) is not kept where long, nor kept for good.
const MAX_PIECES: usize = 1024;
const MAX_PIECE_BYTES: usize = 256;

/// Pieces' token ids (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct PieceCache {
    ids: Mutex<HashMap<String, Vec<u32>>>,
}

impl PieceCache {
    /// The ids of `piece`: kept ones, else `tokenize`'s (kept where it succeeds).
    pub(crate) async fn get_or_tokenize<F, Fut>(&self, piece: &str, tokenize: F) -> Result<Vec<u32>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<u32>>>,
    {
        if let Some(ids) = self.ids.lock().ok().and_then(|m| m.get(piece).cloned()) {
            return Ok(ids);
        }
        let ids = tokenize().await?;
        if piece.len() <= MAX_PIECE_BYTES {
            if let Ok(mut map) = self.ids.lock() {
                if map.len() >= MAX_PIECES {
                    // Pieces of a caller's own (a reward model's steps) filled it: start again.
                    map.clear();
                }
                map.insert(piece.to_owned(), ids.clone());
            }
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_piece_is_tokenized_once_and_a_failure_is_not_kept() {
        let cache = PieceCache::default();
        let calls = AtomicUsize::new(0);
        let tokenize = |ids: Vec<u32>| {
            calls.fetch_add(1, Ordering::Relaxed);
            async move { Ok(ids) }
        };
        assert_eq!(
            cache
                .get_or_tokenize("</think>", || tokenize(vec![1, 2]))
                .await
                .unwrap(),
            [1, 2]
        );
        assert_eq!(
            cache
                .get_or_tokenize("</think>", || tokenize(vec![9]))
                .await
                .unwrap(),
            [1, 2]
        );
        assert_eq!(calls.load(Ordering::Relaxed), 1);

        let failed = cache
            .get_or_tokenize(" Wait", || async {
                Err(crate::Error::Inference {
                    message: "down".into(),
                })
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(
            cache
                .get_or_tokenize(" Wait", || tokenize(vec![7]))
                .await
                .unwrap(),
            [7]
        );
        assert_eq!(calls.load(Ordering::Relaxed), 2);

        let long = "x".repeat(MAX_PIECE_BYTES + 1);
        cache
            .get_or_tokenize(&long, || tokenize(vec![3]))
            .await
            .unwrap();
        cache
            .get_or_tokenize(&long, || tokenize(vec![3]))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 4, "a long piece is not kept");
    }
}
