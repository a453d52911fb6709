//! The acknowledgement token that travels with a batch.

use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

/// How a batch ended, once every holder of its token has settled.
///
/// Ordered from best to worst; when holders disagree, the worst outcome wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AckOutcome {
    /// Every holder delivered the batch.
    Delivered,
    /// At least one holder reported that it could not deliver the batch.
    Failed,
    /// At least one holder dropped its token without settling it (its task was aborted or
    /// panicked). Counts as a failure.
    Abandoned,
}

impl AckOutcome {
    /// True only for [`AckOutcome::Delivered`].
    pub fn is_delivered(self) -> bool {
        self == AckOutcome::Delivered
    }

    fn to_code(self) -> u8 {
        match self {
            AckOutcome::Delivered => 0,
            AckOutcome::Failed => 1,
            AckOutcome::Abandoned => 2,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            0 => AckOutcome::Delivered,
            1 => AckOutcome::Failed,
            _ => AckOutcome::Abandoned,
        }
    }
}

type OnSettled = Box<dyn FnOnce(AckOutcome) + Send + 'static>;

struct Shared {
    /// Clones not yet settled.
    holders: AtomicUsize,
    /// Worst outcome reported so far, as [`AckOutcome::to_code`].
    worst: AtomicU8,
    /// Called once, by the last holder to settle.
    on_settled: Mutex<Option<OnSettled>>,
}

/// A batch's acknowledgement token.
///
/// Clone it once for every consumer the batch fans out to; each holder settles its clone exactly
/// once with [`AckToken::delivered`] or [`AckToken::failed`]. Dropping a clone without settling it
/// settles it as [`AckOutcome::Abandoned`]. When the last clone settles, the token's owner is told
/// the worst outcome. A holder that only forwards the batch (a query that filters the change out,
/// say) settles its clone as delivered.
pub struct AckToken {
    shared: Option<Arc<Shared>>,
}

impl AckToken {
    /// A token that calls `on_settled` once, with the worst outcome, when its last clone settles.
    ///
    /// `on_settled` runs on the thread of the last settler, which may be inside an async task:
    /// it must not block.
    pub fn new(on_settled: impl FnOnce(AckOutcome) + Send + 'static) -> Self {
        Self {
            shared: Some(Arc::new(Shared {
                holders: AtomicUsize::new(1),
                worst: AtomicU8::new(AckOutcome::Delivered.to_code()),
                on_settled: Mutex::new(Some(Box::new(on_settled))),
            })),
        }
    }

    /// A token and a receiver that resolves with the outcome once every clone has settled.
    ///
    /// For producers that wait for delivery, such as an HTTP handler answering only after the
    /// batch is delivered.
    pub fn observed() -> (Self, oneshot::Receiver<AckOutcome>) {
        let (sender, receiver) = oneshot::channel();
        let token = Self::new(move |outcome| {
            if sender.send(outcome).is_err() {
                // The receiver is gone: nobody waits for this outcome any more.
            }
        });
        (token, receiver)
    }

    /// A token whose outcome nobody waits for (snapshots in tests, one-off batches).
    pub fn detached() -> Self {
        Self::new(|_| {})
    }

    /// Settles this clone as delivered.
    pub fn delivered(mut self) {
        self.settle(AckOutcome::Delivered);
    }

    /// Settles this clone as failed: the batch must be delivered again.
    pub fn failed(mut self) {
        self.settle(AckOutcome::Failed);
    }

    /// Settles this clone with `outcome`.
    pub fn settle_with(mut self, outcome: AckOutcome) {
        self.settle(outcome);
    }

    fn settle(&mut self, outcome: AckOutcome) {
        let Some(shared) = self.shared.take() else {
            return;
        };
        shared.worst.fetch_max(outcome.to_code(), Ordering::AcqRel);
        if shared.holders.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let worst = AckOutcome::from_code(shared.worst.load(Ordering::Acquire));
        let callback = shared
            .on_settled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(callback) = callback {
            callback(worst);
        }
    }
}

impl Clone for AckToken {
    /// Another holder of the same batch, which must settle too.
    fn clone(&self) -> Self {
        if let Some(shared) = &self.shared {
            // A live clone exists (this one), so the count cannot have reached zero.
            shared.holders.fetch_add(1, Ordering::AcqRel);
        }
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for AckToken {
    fn drop(&mut self) {
        self.settle(AckOutcome::Abandoned);
    }
}

impl fmt::Debug for AckToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let holders = self
            .shared
            .as_ref()
            .map(|shared| shared.holders.load(Ordering::Acquire));
        f.debug_struct("AckToken")
            .field("holders", &holders)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded() -> (AckToken, oneshot::Receiver<AckOutcome>) {
        AckToken::observed()
    }

    #[test]
    fn last_clone_reports_the_worst_outcome() {
        let (token, mut outcome) = recorded();
        let second = token.clone();
        let third = token.clone();
        token.delivered();
        third.failed();
        assert!(outcome.try_recv().is_err(), "settled before the last clone");
        second.delivered();
        assert_eq!(outcome.try_recv().unwrap(), AckOutcome::Failed);
    }

    #[test]
    fn a_clone_dropped_unsettled_counts_as_failed() {
        let (token, mut outcome) = recorded();
        let clone = token.clone();
        token.delivered();
        drop(clone);
        let result = outcome.try_recv().unwrap();
        assert_eq!(result, AckOutcome::Abandoned);
        assert!(!result.is_delivered());
    }

    #[test]
    fn all_delivered_is_delivered() {
        let (token, mut outcome) = recorded();
        let clones: Vec<AckToken> = (0..5).map(|_| token.clone()).collect();
        token.delivered();
        clones.into_iter().for_each(AckToken::delivered);
        assert_eq!(outcome.try_recv().unwrap(), AckOutcome::Delivered);
    }
}
