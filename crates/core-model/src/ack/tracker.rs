//! The source-side tracker that turns settled tokens into a confirmable watermark.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use tokio::sync::watch;

use crate::ack::token::{AckOutcome, AckToken};
use crate::position::Position;

/// Why a batch could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackerError {
    /// The batch's first position is after its last.
    #[error("batch range {first}..={last} is inverted")]
    InvertedRange {
        /// First position of the batch.
        first: Position,
        /// Last position of the batch.
        last: Position,
    },
    /// Batches must be registered in position order without overlap.
    #[error(
        "batch starting at {first} does not follow the previous batch, which ended at {previous}"
    )]
    OutOfOrder {
        /// First position of the rejected batch.
        first: Position,
        /// Last position of the batch registered before it (or the watermark after a rewind).
        previous: Position,
    },
}

/// A batch whose token settled as anything but delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedBatch {
    /// First position of the batch.
    pub first: Position,
    /// Last position of the batch.
    pub last: Position,
    /// How it settled.
    pub outcome: AckOutcome,
}

#[derive(Debug, Clone)]
struct InFlight {
    first: Position,
    last: Position,
    settled: Option<AckOutcome>,
}

/// The tracker's state, as observers see it through [`AckTracker::subscribe`].
#[derive(Debug, Clone, Default)]
pub struct TrackerSnapshot {
    watermark: Option<Position>,
    last_registered: Option<Position>,
    in_flight: BTreeMap<u64, InFlight>,
    next_id: u64,
    generation: u64,
    failure: Option<(u64, FailedBatch)>,
}

impl TrackerSnapshot {
    /// The highest position below which every batch is delivered; `None` before the first.
    ///
    /// This, and only this, may be confirmed upstream.
    pub fn watermark(&self) -> Option<Position> {
        self.watermark
    }

    /// The last position registered (or the watermark, after a rewind): a source that reconnects
    /// skips what it already sent up to here.
    pub fn last_registered(&self) -> Option<Position> {
        self.last_registered
    }

    /// Batches registered and not yet part of the watermark (settled out of order, or pending).
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The earliest batch that settled as failed or abandoned since the last rewind. While one
    /// exists the watermark cannot pass it; the source should [`AckTracker::rewind`] and deliver
    /// again from the watermark.
    pub fn failure(&self) -> Option<FailedBatch> {
        self.failure.map(|(_, failed)| failed)
    }

    fn settle(&mut self, id: u64, generation: u64, outcome: AckOutcome) {
        if generation != self.generation {
            return; // A batch from before a rewind: it will be (or was) delivered again.
        }
        let Some(entry) = self.in_flight.get_mut(&id) else {
            return;
        };
        entry.settled = Some(outcome);
        if !outcome.is_delivered() && self.failure.is_none_or(|(failed_id, _)| id < failed_id) {
            let failed = FailedBatch {
                first: entry.first,
                last: entry.last,
                outcome,
            };
            self.failure = Some((id, failed));
        }
        self.advance();
    }

    fn advance(&mut self) {
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.get().settled != Some(AckOutcome::Delivered) {
                break;
            }
            self.watermark = Some(entry.remove().last);
        }
    }
}

/// Tracks a source's batches from emission to settlement and computes the watermark.
///
/// Register every batch in position order with [`AckTracker::register`], which returns the token
/// to send along with it. The watermark only moves forward, and only over a prefix of batches that
/// all settled as delivered. A failed or abandoned batch holds it back until the source rewinds.
///
/// Cloning gives another handle to the same tracker. All state lives behind the one lock of a
/// `tokio::sync::watch` channel; no other lock is taken while it is held.
#[derive(Debug, Clone)]
pub struct AckTracker {
    state: Arc<watch::Sender<TrackerSnapshot>>,
}

impl AckTracker {
    /// A tracker resuming after `watermark` (the last position known delivered, if any).
    pub fn new(watermark: Option<Position>) -> Self {
        let state = TrackerSnapshot {
            watermark,
            last_registered: watermark,
            ..TrackerSnapshot::default()
        };
        Self {
            state: Arc::new(watch::Sender::new(state)),
        }
    }

    /// Registers the batch covering `first..=last` and returns its token.
    pub fn register(&self, first: Position, last: Position) -> Result<AckToken, TrackerError> {
        if first > last {
            return Err(TrackerError::InvertedRange { first, last });
        }
        let mut registered = Err(TrackerError::InvertedRange { first, last });
        self.state.send_modify(|state| {
            if let Some(previous) = state.last_registered.filter(|previous| first <= *previous) {
                registered = Err(TrackerError::OutOfOrder { first, previous });
                return;
            }
            let id = state.next_id;
            state.next_id += 1;
            state.last_registered = Some(last);
            let entry = InFlight {
                first,
                last,
                settled: None,
            };
            state.in_flight.insert(id, entry);
            registered = Ok((id, state.generation));
        });
        let (id, generation) = registered?;
        let tracker = Arc::downgrade(&self.state);
        Ok(AckToken::new(move |outcome| {
            settle(&tracker, id, generation, outcome);
        }))
    }

    /// The current watermark.
    pub fn watermark(&self) -> Option<Position> {
        self.state.borrow().watermark
    }

    /// Batches registered and not yet part of the watermark. Does not copy the state.
    pub fn in_flight(&self) -> usize {
        self.state.borrow().in_flight.len()
    }

    /// The earliest failed batch since the last rewind. Does not copy the state.
    pub fn failure(&self) -> Option<FailedBatch> {
        self.state.borrow().failure()
    }

    /// The last position registered. Does not copy the state.
    pub fn last_registered(&self) -> Option<Position> {
        self.state.borrow().last_registered
    }

    /// A copy of the current state (including every batch in flight: prefer the accessors above
    /// on hot paths).
    pub fn snapshot(&self) -> TrackerSnapshot {
        self.state.borrow().clone()
    }

    /// A receiver notified on every change of state. Do not hold its `borrow()` across an await.
    pub fn subscribe(&self) -> watch::Receiver<TrackerSnapshot> {
        self.state.subscribe()
    }

    /// With nothing in flight, moves the watermark to `position` (a keepalive's WAL end, say) if
    /// that is ahead of it. Returns whether it moved.
    pub fn advance_idle(&self, position: Position) -> bool {
        self.state.send_if_modified(|state| {
            let idle = state.in_flight.is_empty();
            let ahead = state.watermark.is_none_or(|watermark| position > watermark);
            if idle && ahead {
                state.watermark = Some(position);
                state.last_registered = Some(position);
            }
            idle && ahead
        })
    }

    /// Forgets every batch in flight, so the source can deliver again from the watermark, which
    /// it returns. Tokens issued before the rewind no longer affect the tracker when they settle.
    pub fn rewind(&self) -> Option<Position> {
        let mut watermark = None;
        self.state.send_modify(|state| {
            state.generation += 1;
            state.in_flight.clear();
            state.failure = None;
            state.last_registered = state.watermark;
            watermark = state.watermark;
        });
        watermark
    }
}

fn settle(
    tracker: &Weak<watch::Sender<TrackerSnapshot>>,
    id: u64,
    generation: u64,
    outcome: AckOutcome,
) {
    if let Some(state) = tracker.upgrade() {
        state.send_modify(|state| state.settle(id, generation, outcome));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(n: u64) -> Position {
        Position::Sequence(n)
    }

    #[test]
    fn watermark_follows_the_delivered_prefix_only() {
        let tracker = AckTracker::new(None);
        let first = tracker.register(seq(1), seq(2)).unwrap();
        let second = tracker.register(seq(3), seq(3)).unwrap();
        second.delivered();
        assert_eq!(tracker.watermark(), None, "passed an unsettled batch");
        first.delivered();
        assert_eq!(tracker.watermark(), Some(seq(3)));
        assert_eq!(tracker.snapshot().in_flight(), 0);
    }

    #[test]
    fn a_failure_holds_the_watermark_until_rewind() {
        let tracker = AckTracker::new(Some(seq(0)));
        let first = tracker.register(seq(1), seq(1)).unwrap();
        let second = tracker.register(seq(2), seq(2)).unwrap();
        let third = tracker.register(seq(3), seq(3)).unwrap();
        first.delivered();
        drop(second);
        third.delivered();
        assert_eq!(tracker.watermark(), Some(seq(1)));
        assert_eq!(tracker.failure(), tracker.snapshot().failure());
        assert_eq!(tracker.in_flight(), 2);
        assert_eq!(tracker.last_registered(), Some(seq(3)));
        let failure = tracker.snapshot().failure().unwrap();
        assert_eq!(
            (failure.first, failure.outcome),
            (seq(2), AckOutcome::Abandoned)
        );
        assert_eq!(tracker.rewind(), Some(seq(1)));
        let again = tracker.register(seq(2), seq(3)).unwrap();
        again.delivered();
        assert_eq!(tracker.watermark(), Some(seq(3)));
    }

    #[test]
    fn tokens_from_before_a_rewind_are_ignored() {
        let tracker = AckTracker::new(None);
        let stale = tracker.register(seq(1), seq(1)).unwrap();
        tracker.rewind();
        let fresh = tracker.register(seq(1), seq(1)).unwrap();
        stale.failed();
        assert!(tracker.snapshot().failure().is_none());
        fresh.delivered();
        assert_eq!(tracker.watermark(), Some(seq(1)));
    }

    #[test]
    fn out_of_order_and_inverted_batches_are_rejected() {
        let tracker = AckTracker::new(Some(seq(5)));
        assert!(matches!(
            tracker.register(seq(5), seq(6)),
            Err(TrackerError::OutOfOrder { .. })
        ));
        assert!(matches!(
            tracker.register(seq(8), seq(7)),
            Err(TrackerError::InvertedRange { .. })
        ));
    }

    #[test]
    fn idle_tracker_advances_to_keepalive_position_only_when_idle() {
        let tracker = AckTracker::new(Some(seq(1)));
        assert!(tracker.advance_idle(seq(4)));
        let pending = tracker.register(seq(5), seq(5)).unwrap();
        assert!(!tracker.advance_idle(seq(9)));
        assert!(!tracker.advance_idle(seq(2)));
        pending.delivered();
        assert_eq!(tracker.watermark(), Some(seq(5)));
    }
}
