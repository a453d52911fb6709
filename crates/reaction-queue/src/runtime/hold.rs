//! Held lanes: an item that could not be settled delivered is kept at the head of its
//! lane and tried again; nothing behind it is applied meanwhile.
//!
//! Why hold rather than settle the rest as failed: a position-idempotent consumer (the
//! PostgreSQL writer) skips any position at or below its checkpoint, so a later item applied
//! ahead of an earlier one turns the earlier one's redelivery into a silent skip. Holding
//! keeps order whatever the source's redelivery looks like (same positions or new ones), and
//! the queue behind the lane fills, so the wait reaches the source as backpressure. The price
//! is that other keys sharing the lane wait too, and once the lane's buffer is full the
//! dispatcher waits, so the whole reaction does; the hold is visible in
//! [`ReactionRuntime::health`](super::ReactionRuntime::health), counted in
//! `surefoot.queue.lanes_held`, and logged once when it begins and once when it ends. A stop
//! while a lane is held settles the held item and everything behind it as failed (redelivered
//! in order after the restart).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use surefoot_core_model::{Batch, Position, SourceId};

/// A lane held at an item that could not be settled delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLane {
    /// The held item's source.
    pub source: SourceId,
    /// Its first position.
    pub first: Position,
    /// Its last position.
    pub last: Position,
    /// Why it is not settled (the last failure).
    pub reason: String,
    /// When the hold began.
    pub since: DateTime<Utc>,
}

/// The lanes held now, shared by the workers of one runtime (or the partitions of one Redis
/// worker). A leaf lock, never held across an `.await`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Holds {
    inner: Arc<HoldsInner>,
}

#[derive(Debug, Default)]
struct HoldsInner {
    next: AtomicU64,
    held: Mutex<BTreeMap<u64, HeldLane>>,
}

/// One hold; released (and logged) when dropped.
pub(crate) struct HoldGuard {
    holds: Holds,
    id: u64,
    reaction: String,
    rounds: u64,
}

impl Holds {
    /// Records that the lane of `batch` holds it because of `reason`; logs it once.
    pub(crate) fn hold(&self, reaction: &str, batch: &Batch, reason: String) -> HoldGuard {
        tracing::error!(reaction, source = %batch.source, first = %batch.first, %reason, "lane held: the item is not settled delivered, so nothing behind it is applied; trying it again until it is (or until stop)");
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(
            id,
            HeldLane {
                source: batch.source.clone(),
                first: batch.first,
                last: batch.last,
                reason,
                since: Utc::now(),
            },
        );
        HoldGuard {
            holds: self.clone(),
            id,
            reaction: reaction.to_owned(),
            rounds: 0,
        }
    }

    /// The lanes held now, oldest first.
    pub(crate) fn held(&self) -> Vec<HeldLane> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, HeldLane>> {
        // Each update inserts or removes one entry; a panic cannot leave it half-done.
        self.inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl HoldGuard {
    /// Records another failed round and updates the reason shown.
    pub(crate) fn failed_again(&mut self, reason: String) {
        self.rounds = self.rounds.saturating_add(1);
        if let Some(held) = self.holds.lock().get_mut(&self.id) {
            held.reason = reason;
        }
    }

    /// How long to wait before the next round: the backoff's ceiling for this round.
    pub(crate) fn delay(&self, backoff: surefoot_core_lifecycle::Backoff) -> Duration {
        backoff.delay(u32::try_from(self.rounds).unwrap_or(u32::MAX))
    }
}

impl Drop for HoldGuard {
    fn drop(&mut self) {
        let removed = self.holds.lock().remove(&self.id);
        if let Some(held) = removed {
            tracing::info!(reaction = %self.reaction, source = %held.source, first = %held.first, rounds = self.rounds, "lane released");
        }
    }
}
