//! Reads of one scorer call (a judgement, a PRM's step read) that fail on their own call's
//! error, or that the budget refuses: left unscored, so that one refused request among many
//! does not fail the whole call, nor lose the reads already paid for.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use ponder_engine::{Error, Result};

/// Counts the reads of one scorer call and keeps the errors of those that failed on their own
/// call ([`Error::is_per_call`]: a server's error for that request, its timeout) or that a
/// budget refused. A read that failed so is unscored; where none was read and some failed, the
/// call fails with a budget's refusal if there was one (the caller's stop), else the first
/// error (a judge that cannot answer at all is a failure to see, not a run of unscored
/// candidates). Reads not made (a prompt past the context window) are not counted at all. The
/// caller learns of refusals among reads that were made from its meter
/// ([`ponder_engine::Meter::refused`]).
#[derive(Debug, Default)]
pub(crate) struct FailedReads {
    reads: AtomicUsize,
    failed: Mutex<Vec<Error>>,
}

impl FailedReads {
    /// One read's result: its value, `unread` for a read that failed on its own call, or the
    /// error of any other failure.
    pub(crate) fn read<T>(&self, result: Result<T>, unread: impl FnOnce() -> T) -> Result<T> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(value) => Ok(value),
            Err(e) if e.is_per_call() || e.is_budget() => {
                if let Ok(mut failed) = self.failed.lock() {
                    failed.push(e);
                }
                Ok(unread())
            }
            Err(e) => Err(e),
        }
    }

    /// After the call's reads: where every read counted failed, a budget's refusal among them
    /// (the caller's stop, not a failure) or else the first error; otherwise (said) fine.
    pub(crate) fn finish(self, scorer: &str) -> Result<()> {
        let reads = self.reads.into_inner();
        let mut failed = self.failed.into_inner().unwrap_or_default();
        let count = failed.len();
        if count == reads && count > 0 {
            let at = failed.iter().position(Error::is_budget).unwrap_or(0);
            return Err(failed.swap_remove(at));
        }
        if let Some(first) = failed.first() {
            tracing::warn!(
                failed = count,
                reads,
                "{scorer}: reads that failed or a budget refused are left unscored (the first: \
                 {first})"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> Error {
        Error::Inference {
            message: "refused".into(),
        }
    }

    #[test]
    fn a_failed_read_is_unscored_unless_every_read_failed() {
        let reads = FailedReads::default();
        assert_eq!(reads.read(Ok(0.9), || f64::NAN).unwrap(), 0.9);
        assert!(reads.read(Err(refused()), || f64::NAN).unwrap().is_nan());
        reads.finish("judge").unwrap();

        let reads = FailedReads::default();
        assert!(reads.read(Err(refused()), || f64::NAN).unwrap().is_nan());
        assert!(reads.read(Err(refused()), || f64::NAN).unwrap().is_nan());
        assert_eq!(
            reads.finish("judge").unwrap_err().to_string(),
            refused().to_string()
        );

        // A budget's refusal leaves its read unscored too; where every read failed, it is the
        // error (the caller's stop).
        let budget = || Error::BudgetExhausted {
            resource: ponder_engine::Resource::Calls,
        };
        let reads = FailedReads::default();
        assert_eq!(reads.read(Ok(0.9), || f64::NAN).unwrap(), 0.9);
        assert!(reads.read(Err(budget()), || f64::NAN).unwrap().is_nan());
        reads.finish("judge").unwrap();
        let reads = FailedReads::default();
        assert!(reads.read(Err(refused()), || f64::NAN).unwrap().is_nan());
        assert!(reads.read(Err(budget()), || f64::NAN).unwrap().is_nan());
        assert!(reads.finish("judge").unwrap_err().is_budget());

        // Not one call's failure: the error at once.
        let reads = FailedReads::default();
        let gone = Error::EngineGone { context: "test" };
        assert!(reads.read(Err::<f64, _>(gone), || f64::NAN).is_err());
    }
}
